"""Real-sandbox tests: real bubblewrap with its own network namespace, the proxy listener created inside it by
rcc.netns.listen_in_netns, real curl inside talking to a test host in another netns. The only way out is the proxy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rcc.net.env import proxy_env
from rcc.net.proxy import EgressProxy
from rcc.net.rules import compile_rules
from rcctest import is_root, require
from testhosts import TestCA, TestHost

pytestmark = [pytest.mark.sandbox, pytest.mark.netns]

PORT = 3128
NAME = "pkgs.test"

# Inside the sandbox: wait until the proxy listens, then exec the command (argv after the script).
WAIT_THEN_EXEC = f"""
import os, socket, sys, time
for _ in range(500):
    try:
        socket.create_connection(("127.0.0.1", {PORT}), timeout=1).close()
        break
    except OSError:
        time.sleep(0.01)
os.execvp(sys.argv[1], sys.argv[1:])
"""


def run_sandboxed(
    argv: list[str], allow: list[str], resolve: dict[str, str], audit: Path, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bwrap = shutil.which("bwrap")
    require(bwrap is not None, "bubblewrap (bwrap) is not installed")
    require(is_root(), "this test creates test-host network namespaces (root)")
    assert bwrap is not None
    from rcc.netns import listen_in_netns

    info_r, info_w = os.pipe()
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", **proxy_env(PORT), **(env_extra or {})}
    p = subprocess.Popen(
        [
            bwrap,
            "--dev-bind",
            "/",
            "/",
            "--unshare-net",
            "--unshare-pid",
            "--die-with-parent",
            "--info-fd",
            str(info_w),
            "--",
            sys.executable,
            "-c",
            WAIT_THEN_EXEC,
            *argv,
        ],
        pass_fds=(info_w,),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(info_w)
    data = b""
    while not data.rstrip().endswith(b"}"):
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(info_r)
    require(bool(data), "bubblewrap could not create namespaces here")
    child = json.loads(data)["child-pid"]
    notes: list[str] = []
    proxy = EgressProxy(compile_rules(allow, [], resolve), str(audit), "sandbox-test", notes.append)
    proxy.start([listen_in_netns(child, PORT)])
    try:
        out, err = p.communicate(timeout=60)
    finally:
        proxy.close()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), notes


@pytest.fixture
def served(testhost: TestHost, test_ca: TestCA, tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "hello.txt").write_text("hello from the test host\n")
    testhost.serve_http(tmp_path, tls=test_ca.server_context([NAME, testhost.address]))
    return testhost, test_ca


def test_sandbox_reaches_allowed_host_through_proxy(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host, ca = served
    r, notes = run_sandboxed(
        ["curl", "-sS", "--max-time", "10", "--cacert", ca.cert, f"https://{NAME}/hello.txt"],
        [NAME],
        {NAME: host.address},
        tmp_path / "audit.jsonl",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from the test host\n"
    assert notes == []


def test_sandbox_cannot_bypass_proxy_by_connecting_directly(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Attack: ignore the proxy variables and connect to the address directly. There is no route."""
    host, ca = served
    r, _ = run_sandboxed(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "5", "--cacert", ca.cert, f"https://{host.address}/hello.txt"],
        [NAME],
        {NAME: host.address},
        tmp_path / "a.jsonl",
    )
    assert r.returncode != 0
    assert "hello" not in r.stdout


def test_sandbox_denied_host_gets_403_and_notice(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host, ca = served
    r, notes = run_sandboxed(
        ["curl", "-sS", "--max-time", "10", "--cacert", ca.cert, f"https://{NAME}/hello.txt"],
        ["other.test"],
        {NAME: host.address},
        tmp_path / "audit.jsonl",
    )
    assert r.returncode != 0 and "403" in r.stderr
    assert notes == [f"rcc: denied {NAME}:443 (no allow rule) — allow with --allow {NAME} or network.allow in config"]


SENTENCE = (
    f"rcc sandbox: the user's sandbox policy refused a connection to {NAME}:443 (no allow rule); "
    f"to allow it the user can run: rcc allow {NAME}"
)
# What Python's http.client (pip's urllib3, requests) raises for a refused CONNECT: the status line's reason.
PY_CONNECT = f"""
import http.client, sys
c = http.client.HTTPSConnection("127.0.0.1", {PORT}, timeout=10)
c.set_tunnel("{NAME}", 443)
try:
    c.connect()
except OSError as e:
    print(e)
"""


def test_sandbox_refusal_sentence_reaches_real_clients(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """curl -v shows the status line (CONNECT), Python's http.client (pip) puts it in its error, plain HTTP gets it
    as the body; the control: an allowed host still gets its content (test_sandbox_allowed_host_via_https...)."""
    host, _ca = served
    allow, res = ["other.test"], {NAME: host.address}
    r, _ = run_sandboxed(["curl", "-sSv", "--max-time", "10", f"https://{NAME}/"], allow, res, tmp_path / "a.jsonl")
    assert f"< HTTP/1.1 403 Forbidden - {SENTENCE}" in r.stderr
    r, _ = run_sandboxed([sys.executable, "-c", PY_CONNECT], allow, res, tmp_path / "b.jsonl")
    assert r.stdout.strip() == f"Tunnel connection failed: 403 Forbidden - {SENTENCE}"
    r, _ = run_sandboxed(["curl", "-sS", "--max-time", "10", f"http://{NAME}/"], allow, res, tmp_path / "c.jsonl")
    assert r.stdout == SENTENCE.replace(":443", ":80") + "\n"
