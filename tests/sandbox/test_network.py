"""Network through `rcc run`: --no-network leaves loopback only; the default mode reaches only rcc's proxy on
127.0.0.1:3128 inside, which forwards allowed hosts only. Remote peers are test hosts in network namespaces
the test creates (10.200.0.0/16, removed afterwards); nothing else is ever contacted."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from escape_world import World
from rcctest import is_root, require
from testhosts import TestHost, test_host

pytestmark = [pytest.mark.sandbox, pytest.mark.netns]  # every backend (attacks.BACKENDS)

CONNECT = """
import socket, sys
for spec in sys.argv[1:]:
    host, _, port = spec.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close(); print("CONNECTED", spec)
    except OSError as e:
        print("failed", spec, e.errno)
"""

HTTP_GET = """
import os, sys, urllib.request
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            print("OK", url, r.read().decode().strip())
    except Exception as e:
        print("ERR", url, getattr(e, "code", None) or type(e).__name__)
"""


@pytest.fixture
def host() -> Iterator[TestHost]:
    require(is_root(), "test hosts live in network namespaces the test creates (root)")
    with test_host() as h:
        yield h


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    """A listener on the host's own loopback: must not be the sandbox's loopback."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                s.accept()[0].close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join()
    s.close()


def _serve_hello(host: TestHost) -> int:
    def hello(conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")

    return host.serve_tcp(hello)


def test_no_network_reaches_nothing_but_its_own_loopback(world: World, host: TestHost, loopback_listener: int) -> None:
    port = _serve_hello(host)
    assert socket.create_connection((host.address, port), timeout=3)  # control: the test host is up
    res = world.rcc(
        "run",
        "--no-network",
        "--",
        "python3",
        "-c",
        CONNECT,
        f"{host.address}:{port}",
        f"127.0.0.1:{loopback_listener}",
        f"{host.gateway}:{port}",
    )
    assert res.returncode == 0, res.stderr
    assert "CONNECTED" not in res.stdout, res.stdout
    links = world.sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    assert links.stdout.split() == ["lo"], links.stdout


def test_own_loopback_works_without_network(world: World) -> None:
    """Control: servers and clients inside the sandbox talk over its own loopback."""
    code = (
        "import socket, threading\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "threading.Thread(target=lambda: s.accept()[0].sendall(b'pong'), daemon=True).start()\n"
        "print(socket.create_connection(s.getsockname()).recv(4).decode())\n"
    )
    res = world.rcc("run", "--no-network", "--", "python3", "-c", code)
    assert res.stdout.strip() == "pong", res.stderr


def test_default_mode_reaches_only_the_proxy(world: World, host: TestHost, loopback_listener: int) -> None:
    port = _serve_hello(host)
    res = world.rcc(
        "run",
        "--",
        "python3",
        "-c",
        CONNECT,
        f"{host.address}:{port}",
        f"127.0.0.1:{loopback_listener}",
        "127.0.0.1:3128",
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "CONNECTED 127.0.0.1:3128" in lines, res.stdout  # the proxy is there
    assert not any(line.startswith("CONNECTED") and "3128" not in line for line in lines), res.stdout
    env = world.rcc("run", "--", "sh", "-c", "echo $HTTPS_PROXY $HTTP_PROXY")
    assert env.stdout.split() == ["http://127.0.0.1:3128"] * 2, env.stderr  # and the variables point at it


def test_proxy_denies_unlisted_host_and_forwards_allowed_one(world: World, host: TestHost) -> None:
    port = _serve_hello(host)
    url = f"http://{host.address}:{port}/"
    denied = world.rcc("run", "--", "python3", "-c", HTTP_GET, url)
    assert "OK" not in denied.stdout and "403" in denied.stdout, (denied.stdout, denied.stderr)
    allowed = world.rcc("run", "--allow", f"{host.address}:{port}", "--", "python3", "-c", HTTP_GET, url)
    assert f"OK {url} hello" in allowed.stdout, (allowed.stdout, allowed.stderr)  # control


def test_proxy_cannot_be_used_to_reach_the_hosts_own_services(
    world: World, host: TestHost, loopback_listener: int
) -> None:
    """SSRF through the proxy: the host's loopback and its own addresses (here the veth side, host.gateway) are
    refused even when a name that resolves to them is allowed."""
    port = _serve_hello(host)
    urls = [
        f"http://127.0.0.1:{loopback_listener}/",
        f"http://localhost:{loopback_listener}/",
        f"http://sneaky.test:{loopback_listener}/",
        f"http://{host.gateway}:{port}/",
    ]
    res = world.rcc(
        "run",
        "--allow",
        "sneaky.test",
        "--resolve",
        "sneaky.test=127.0.0.1",
        "--",
        "python3",
        "-c",
        HTTP_GET,
        *urls,
    )
    assert res.returncode == 0, res.stderr
    assert "OK" not in res.stdout, res.stdout


def test_proxy_refuses_ipv6_spellings_that_embed_loopback_or_metadata(
    world: World, host: TestHost, loopback_listener: int
) -> None:
    """Attack (issue 11 §5): an allowed name whose address is an IPv6 spelling of the host's loopback or the
    metadata service (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo, ISATAP). One route on the machine (sit0,
    a NAT64 gateway) makes them reach what they embed, so they are judged by it. Control: an ordinary address
    spelled IPv4-mapped (the test host) is reached."""
    port = _serve_hello(host)
    spellings = [
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::169.254.169.254",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:db8::5efe:7f00:1",
    ]
    args: list[str] = []
    urls = []
    for i, addr in enumerate(spellings):
        args += ["--allow", f"evil{i}.test:{loopback_listener}", "--resolve", f"evil{i}.test={addr}"]
        urls.append(f"http://evil{i}.test:{loopback_listener}/")
    args += ["--allow", f"ok.test:{port}", "--resolve", f"ok.test=::ffff:{host.address}"]
    res = world.rcc("run", *args, "--", "python3", "-c", HTTP_GET, *urls, f"http://ok.test:{port}/")
    assert res.returncode == 0, res.stderr
    for url in urls:
        assert f"ERR {url} 403" in res.stdout, (url, res.stdout, res.stderr)
    assert f"OK http://ok.test:{port}/ hello" in res.stdout, (res.stdout, res.stderr)  # control


FLOOD = """
import socket, sys
target, n = sys.argv[1].encode(), int(sys.argv[2])
req = b"CONNECT " + target + b" HTTP/1.1\\r\\nHost: " + target + b"\\r\\n\\r\\n"
ok = 0
for _ in range(n):
    with socket.create_connection(("127.0.0.1", 3128), timeout=10) as s:
        s.sendall(req)
        ok += s.recv(64).startswith(b"HTTP/1.1 200")
print("TUNNELS", ok)
"""
FLOOD_N = 12_000  # past the allowed-record burst (a quarter of one 10 MiB log file: ~10,000 records)


def _session_records(world: World) -> dict[str, list[dict[str, object]]]:
    import json

    out: dict[str, list[dict[str, object]]] = {}
    for f in sorted((world.home / ".local/state/rcc").glob("audit.jsonl*")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            out.setdefault(str(rec["session"]), []).append(rec)
    return out


def test_allowed_connection_flood_is_summed_up_not_logged_one_by_one(world: World, host: TestHost) -> None:
    """Attack (issue 11 §3), through a real session on every backend: 12,000 allowed CONNECTs in one session.
    Past its budget they are counted into summary records instead of written one by one, so one session cannot
    rotate other sessions' records out of the shared log; every connection is still accounted for. Control: an
    earlier ordinary session's record is still there, one by one (the budget is per session)."""

    def accept_close(conn: socket.socket) -> None:
        conn.close()

    port = host.serve_tcp(accept_close)
    target = f"{host.address}:{port}"
    before = world.rcc("run", "--allow", target, "--", "python3", "-c", FLOOD, target, "3")
    assert "TUNNELS 3" in before.stdout, (before.stdout, before.stderr)
    flood = world.rcc("run", "--allow", target, "--", "python3", "-c", FLOOD, target, str(FLOOD_N))
    assert f"TUNNELS {FLOOD_N}" in flood.stdout, (flood.stdout[-500:], flood.stderr[-2000:])
    sessions = _session_records(world)
    assert len(sessions) == 2, list(sessions)
    first, second = sessions.values()
    assert [r["decision"] for r in first] == ["allow"] * 3  # control: recorded one by one
    summaries = [r for r in second if "not recorded one by one" in str(r["reason"])]
    singles = [r for r in second if r not in summaries]
    assert summaries, "a flood past the budget must be summed up"
    assert len(singles) < FLOOD_N * 0.9, len(singles)
    counted = sum(int(str(r["reason"]).split()[0]) for r in summaries)
    assert counted + len(singles) == FLOOD_N  # every connection accounted for
