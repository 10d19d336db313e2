"""Test-host tests: the proxy (in the test's namespace) reaches servers in network namespaces the test creates
(tests/testhosts.py), by name through `resolve` overrides, over TLS with a CA the test makes. Real curl, git,
pip and npm, configured only by proxy_env() and the test CA. Needs root (ip netns); skips otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from proxyhelpers import RunningProxy

from rcc.net.env import proxy_env
from testhosts import TestCA, TestHost, routes_handler
from tlsservers import build_npm_tarball, build_wheel

pytestmark = pytest.mark.netns

NAME = "pkgs.test"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(
    argv: list[str], rp: RunningProxy, home: Path, extra: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **proxy_env(rp.port), **(extra or {})}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False)


@pytest.fixture
def tls_host(testhost: TestHost, test_ca: TestCA, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello from the test host\n")
    server = testhost.serve_http(root, tls=test_ca.server_context([NAME]))
    return testhost, test_ca, root, server


def test_curl_https_through_connect_to_test_host(start_proxy, tls_host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host, ca, _root, _srv = tls_host
    rp = start_proxy([NAME], resolve={NAME: host.address})
    r = run([tool("curl"), "-sS", "--max-time", "10", "--cacert", ca.cert, f"https://{NAME}/hello.txt"], rp, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from the test host\n"
    rec = rp.records()[-1]
    assert (rec["proto"], rec["host"], rec["addr"], rec["decision"]) == ("connect", NAME, host.address, "allow")
    assert rec["bytes_down"] > 100 and rec["bytes_up"] > 100


def test_curl_https_socks5h_to_test_host(start_proxy, tls_host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host, ca, _root, _srv = tls_host
    rp = start_proxy([NAME], resolve={NAME: host.address})
    r = run(
        [
            tool("curl"),
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca.cert,
            "-x",
            f"socks5h://127.0.0.1:{rp.port}",
            f"https://{NAME}/hello.txt",
        ],
        rp,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert rp.records()[-1]["proto"] == "socks5"


def test_plain_http_to_test_host(start_proxy, testhost: TestHost, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f.txt").write_text("plain\n")
    testhost.serve_http(tmp_path)
    rp = start_proxy(["plain.test"], resolve={"plain.test": testhost.address})
    r = run([tool("curl"), "-sS", "--max-time", "10", "http://plain.test/f.txt"], rp, tmp_path)
    assert r.returncode == 0 and r.stdout == "plain\n", r.stderr


def test_unlisted_test_host_is_denied_and_not_contacted(start_proxy, tls_host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host, ca, _root, _srv = tls_host
    rp = start_proxy(["other.test"], resolve={NAME: host.address})
    r = run([tool("curl"), "-sS", "--max-time", "10", "--cacert", ca.cert, f"https://{NAME}/hello.txt"], rp, tmp_path)
    assert r.returncode != 0 and "403" in r.stderr
    assert rp.records()[-1]["addr"] == ""  # never resolved, never connected


def test_name_pointing_at_host_own_address_is_refused(start_proxy, testhost: TestHost, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Attack: reach services bound on the host's own interfaces (here the veth address 10.200.x.1)."""
    rp = start_proxy(["own.test:8080"], resolve={"own.test": testhost.gateway})
    r = run([tool("curl"), "-sS", "-i", "--max-time", "10", "http://own.test:8080/"], rp, tmp_path)
    assert "403 Forbidden" in r.stdout and "X-Rcc-Denied: resolves to this host's own address" in r.stdout
    rec = rp.records()[-1]
    assert rec["decision"] == "deny" and "own address" in str(rec["reason"])


def test_name_pointing_at_test_host_address_is_fine(start_proxy, testhost: TestHost, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def answer(c: socket.socket) -> None:
        with c:
            c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    port = testhost.serve_tcp(answer)
    rp = start_proxy([f"peer.test:{port}"], resolve={"peer.test": testhost.address})
    r = run(
        [tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", f"http://peer.test:{port}/"],
        rp,
        tmp_path,
    )
    assert r.stdout == "204", r.stderr


# ------------------------------------------------------------------------------------------------ git


def test_git_clone_over_https_through_proxy(start_proxy, tls_host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host, ca, root, _srv = tls_host
    git = tool("git")
    home = tmp_path / "home"
    home.mkdir()
    genv = {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": os.environ["PATH"],
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    work = tmp_path / "work"
    subprocess.run([git, "init", "-q", "-b", "main", str(work)], check=True, env=genv)
    (work / "README").write_text("served over dumb https\n")
    subprocess.run([git, "-C", str(work), "add", "README"], check=True, env=genv)
    subprocess.run([git, "-C", str(work), "commit", "-qm", "init"], check=True, env=genv)
    subprocess.run([git, "clone", "-q", "--bare", str(work), str(root / "repo.git")], check=True, env=genv)
    subprocess.run([git, "-C", str(root / "repo.git"), "update-server-info"], check=True, env=genv)

    rp = start_proxy([NAME], resolve={NAME: host.address})
    r = run(
        [git, "clone", "-q", f"https://{NAME}/repo.git", str(tmp_path / "clone")],
        rp,
        home,
        {"GIT_SSL_CAINFO": ca.cert, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"},
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "clone" / "README").read_text() == "served over dumb https\n"


def test_git_clone_from_unlisted_host_fails(start_proxy, tls_host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host, ca, _root, _srv = tls_host
    rp = start_proxy([], resolve={NAME: host.address})
    r = run(
        [tool("git"), "clone", "-q", f"https://{NAME}/repo.git", str(tmp_path / "clone")],
        rp,
        tmp_path,
        {"GIT_SSL_CAINFO": ca.cert, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"},
    )
    assert r.returncode != 0 and "403" in r.stderr


# ------------------------------------------------------------------------------------------------ pip


def test_pip_install_from_test_index_through_proxy(start_proxy, testhost: TestHost, test_ca: TestCA, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wheel = build_wheel(tmp_path)
    data = wheel.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    index = (
        f'<!DOCTYPE html><html><body><a href="/packages/{wheel.name}#sha256={sha}">{wheel.name}</a></body></html>'
    ).encode()
    routes = {
        "/simple/rcc-probe-pkg/": ("text/html", index),
        f"/packages/{wheel.name}": ("application/octet-stream", data),
    }
    testhost.serve_http(tls=test_ca.server_context([NAME]), handler=routes_handler(routes))
    rp = start_proxy([NAME], resolve={NAME: testhost.address})
    target = tmp_path / "site"
    r = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(target),
            "--index-url",
            f"https://{NAME}/simple/",
            "--cert",
            test_ca.cert,
            "rcc-probe-pkg",
        ],
        rp,
        tmp_path,
        {"PIP_NO_INPUT": "1"},
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "installed through the rcc proxy" in (target / "rcc_probe_pkg" / "__init__.py").read_text()
    assert {rec["host"] for rec in rp.records()} == {NAME}


# ------------------------------------------------------------------------------------------------ npm


def test_npm_install_from_test_registry_through_proxy(  # type: ignore[no-untyped-def]
    start_proxy,
    testhost: TestHost,
    test_ca: TestCA,
    tmp_path,
) -> None:
    npm = tool("npm")
    tgz = build_npm_tarball()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    tar_url = f"https://{NAME}/rcc-probe-pkg/-/rcc-probe-pkg-1.0.0.tgz"
    packument = {
        "name": "rcc-probe-pkg",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {
            "1.0.0": {
                "name": "rcc-probe-pkg",
                "version": "1.0.0",
                "dist": {"tarball": tar_url, "integrity": integrity, "shasum": hashlib.sha1(tgz).hexdigest()},
            }
        },
    }
    routes = {
        "/rcc-probe-pkg": ("application/json", json.dumps(packument).encode()),
        "/rcc-probe-pkg/-/rcc-probe-pkg-1.0.0.tgz": ("application/octet-stream", tgz),
    }
    testhost.serve_http(tls=test_ca.server_context([NAME]), handler=routes_handler(routes))
    rp = start_proxy([NAME], resolve={NAME: testhost.address})
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "package.json").write_text('{"name": "p", "version": "0.0.0", "private": true}')
    r = run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--registry",
            f"https://{NAME}/",
            "--cafile",
            test_ca.cert,
            "rcc-probe-pkg",
        ],
        rp,
        tmp_path,
        {"npm_config_cache": str(tmp_path / "npm-cache"), "npm_config_update_notifier": "false"},
        cwd=proj,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "installed through the rcc proxy" in (proj / "node_modules" / "rcc-probe-pkg" / "index.js").read_text()
    assert {rec["host"] for rec in rp.records()} == {NAME}
