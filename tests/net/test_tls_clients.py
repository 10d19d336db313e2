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
API_KEY = "sk-ant-rcctest-REAL-key-0123456789"
FAKE_API = Path(__file__).resolve().parent.parent / "agents" / "fake_anthropic.py"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


class Client:
    """Runs real clients either straight at the test hosts' addresses or by name through rcc's proxy."""

    def __init__(self, via: str, sites: TlsSites, start_proxy: Callable[..., RunningProxy], home: Path) -> None:
        self.via, self.sites, self.home = via, sites, home
        self._start_proxy = start_proxy
        self.proxy: RunningProxy | None = None
        home.mkdir(exist_ok=True)

    def host(self, name: str) -> str:
        """What a URL names: the test host's address directly, its name through the proxy."""
        if self.via == "proxy" and self.proxy is None:
            self.proxy = self._start_proxy(list(self.sites.resolve), resolve=self.sites.resolve)
        return self.sites.hosts[name].address if self.via == "direct" else name

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
            "GIT_SSL_CAINFO": self.sites.ca.cert,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }

    def tunnelled(self, name: str) -> None:
        """Through the proxy, the connections were plain tunnels to `name` (audit records)."""
        if self.proxy is not None:
            recs = self.proxy.records()
            assert recs and {(r["proto"], r["host"], r["decision"]) for r in recs} == {("connect", name, "allow")}


@pytest.fixture(params=["direct", "proxy"])
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
    url = f"https://x-access-token:{TOKEN}@{client.host('github.test')}/repo.git"
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
    argv += ["--target", str(target), "--cert", client.sites.ca.cert]
    argv += ["--index-url", f"https://__token__:{token}@{client.host('pypi.test')}/simple/", PKG]
    r = client.run(argv, {"PIP_NO_INPUT": "1"})
    if token == WRONG:
        assert r.returncode != 0 and "401" in r.stderr + r.stdout
        assert not target.exists()
        return
    assert r.returncode == 0, r.stderr + r.stdout
    assert PKG_MESSAGE in (target / "rcc_probe_pkg" / "__init__.py").read_text()
    assert seen.all() and all(r.basic_password() == TOKEN for r in seen.all())
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
        f"registry=https://{reg}/\n//{reg}/:_authToken={token}\ncafile={client.sites.ca.cert}\n"
        "audit=false\nfund=false\nupdate-notifier=false\n"
    )
    r = client.run([npm, "install", PKG], {"npm_config_cache": str(tmp_path / "npm-cache")}, cwd=proj)
    if token == WRONG:
        assert r.returncode != 0 and "E401" in r.stderr + r.stdout, r.stderr
        return
    assert r.returncode == 0, r.stderr + r.stdout
    assert PKG_MESSAGE in (proj / "node_modules" / PKG / "index.js").read_text()
    assert seen.all() and all(r.bearer() == TOKEN for r in seen.all())
    client.tunnelled("npm.test")


# ------------------------------------------------------------------------------------------------ curl, Python


def test_curl_sends_what_it_is_given_to_the_recorder(client: Client) -> None:
    seen = Seen()
    client.sites.serve("other.test", recorder_handler(seen))
    url = f"https://{client.host('other.test')}/gist"
    auth = f"Authorization: token {TOKEN}"
    r = client.run(
        [tool("curl"), "-sS", "--max-time", "10", "--cacert", client.sites.ca.cert, "-H", auth, "-d", "hi", url]
    )
    assert r.returncode == 0 and r.stdout == "recorded\n", r.stderr
    (req,) = seen.all()
    assert (req.method, req.path, req.header("Authorization")) == ("POST", "/gist", f"token {TOKEN}")
    client.tunnelled("other.test")


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
    r = client.run([sys.executable, "-c", code, url], {"PYPI_TOKEN": TOKEN, "SSL_CERT_FILE": client.sites.ca.cert})
    assert r.returncode == 0 and "rcc_probe_pkg-0.1-py3-none-any.whl" in r.stdout, r.stderr
    assert [x.basic_password() for x in seen.all()] == [TOKEN]
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
    argv = [tool("curl"), "-sS", "--max-time", "10", "--cacert", sites.ca.cert, "-H", f"x-api-key: {API_KEY}"]
    argv += ["-H", "content-type: application/json", "--data", body]
    r = client.run([*argv, f"https://{client.host('api.test')}/v1/messages"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["content"][0]["text"] == "hello over tls"
    deadline = time.monotonic() + 5
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    (rec,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert rec["x_api_key_sha256"] == hashlib.sha256(API_KEY.encode()).hexdigest()
    assert API_KEY not in log.read_text()
    client.tunnelled("api.test")


def test_tls_servers_refuse_clients_without_the_test_ca(tls_sites: TlsSites) -> None:  # noqa: F811
    """Control for the TLS: the certificates are the test CA's, not trusted by default (so a client that passes
    was given the CA, and a terminating proxy must present a certificate the client trusts)."""
    host = tls_sites.serve("other.test", recorder_handler(Seen()))
    with pytest.raises(urllib.request.URLError) as e:
        urllib.request.urlopen(f"https://{host.address}/", timeout=10, context=ssl.create_default_context())
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)
