"""Red-team tests for the egress proxy: each test is named after an attack by a hostile agent inside the sandbox,
with a control test beside it showing the legitimate version still works. Real sockets only: the proxy on
127.0.0.1, origins on loopback or on test hosts in network namespaces the tests create (tests/testhosts.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from testhosts import TestHost

ROOT = Path(__file__).resolve().parents[2]


def connect_via(port: int, target: str, timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    """CONNECT target through the proxy on 127.0.0.1:port; returns the socket and the proxy's first reply bytes."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    try:
        reply = c.recv(4096)
    except OSError as e:
        reply = f"<{type(e).__name__}>".encode()
    return c, reply


# ------------------------------------------------------------------------------------------ descriptor exhaustion

# The proxy in a process of its own, with a low descriptor limit (hard limits of 1024-8192 are common on
# servers and CI; the proxy can only lift its soft limit up to the hard one).
_PROXY_WITH_LIMIT = r"""
import resource, socket, sys
from rcc.net.proxy import EgressProxy
from rcc.net.rules import compile_rules
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
rules = compile_rules([a for a in sys.argv[2].split(",") if a], [], {"own.test": sys.argv[3]} if sys.argv[3] else {})
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1024)
proxy = EgressProxy(rules, sys.argv[4], "redteam", lambda line: None)
proxy.start([listener])
print(listener.getsockname()[1], flush=True)
sys.stdin.read()
proxy.close()
"""


@dataclass
class LimitedProxy:
    proc: subprocess.Popen[bytes]
    port: int
    limit: int

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_mib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")) // 1024


@contextmanager
def limited_proxy(allow: list[str], own_address: str, tmp_path: Path, limit: int = 64) -> Iterator[LimitedProxy]:
    """The proxy in a subprocess with RLIMIT_NOFILE = limit; `own.test` resolves to own_address (if not "")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROXY_WITH_LIMIT, str(limit), ",".join(allow), own_address, str(tmp_path / "a.jsonl")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield LimitedProxy(proc, port, limit)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _exhaust(lp: LimitedProxy, echo_port: int) -> list[socket.socket]:
    """Hold allowed tunnels (two descriptors each in the proxy) until the proxy has exactly one descriptor left."""
    held: list[socket.socket] = []
    while lp.open_fds() < lp.limit - 2:
        c, reply = connect_via(lp.port, f"127.0.0.1:{echo_port}")
        assert reply.startswith(b"HTTP/1.1 200"), reply
        held.append(c)
    if lp.open_fds() == lp.limit - 2:
        held.append(socket.create_connection(("127.0.0.1", lp.port)))  # one handshake in progress: one descriptor
        time.sleep(0.2)
    assert lp.open_fds() == lp.limit - 1
    return held


@pytest.fixture
def own_service(testhost: TestHost) -> Iterator[tuple[str, int]]:
    """A service bound on one of this host's own addresses (the host side of a test veth)."""
    s = socket.socket()
    s.bind((testhost.gateway, 0))
    s.listen(16)
    yield testhost.gateway, s.getsockname()[1]
    s.close()


def test_fd_exhaustion_does_not_disable_the_own_address_guard(own_service, echo_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Attack: fill the proxy's descriptor table so its periodic read of this host's addresses (/proc/net/fib_trie)
    fails; that failure used to be cached as "this host has no addresses" for 2 s, during which a name pointing at
    the host's own address (a service bound on the host's LAN/veth address) was let through."""
    gw, own_port = own_service
    with limited_proxy([f"own.test:{own_port}", f"127.0.0.1:{echo_server}"], gw, tmp_path) as lp:
        c, reply = connect_via(lp.port, f"own.test:{own_port}")  # first read of the host's addresses succeeds
        c.close()
        assert b"403" in reply and b"own address" in reply, reply
        held = _exhaust(lp, echo_server)
        try:
            time.sleep(2.3)  # past the cache period: the next connection re-reads /proc with no descriptor free
            c, reply = connect_via(lp.port, f"own.test:{own_port}")
            c.close()
            assert not reply.startswith(b"HTTP/1.1 200"), reply
            held.pop(0).close()  # free descriptors again
            time.sleep(0.3)
            c, reply = connect_via(lp.port, f"own.test:{own_port}")
            c.close()
            assert reply.startswith(b"HTTP/1.1 403") and b"own address" in reply, reply
        finally:
            for s in held:
                s.close()


def test_fd_exhaustion_control_allowed_tunnels_work_again_after(own_service, echo_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Control: the same exhaustion, then an allowed tunnel once descriptors are free again carries data."""
    gw, own_port = own_service
    with limited_proxy([f"own.test:{own_port}", f"127.0.0.1:{echo_server}"], gw, tmp_path) as lp:
        held = _exhaust(lp, echo_server)
        try:
            time.sleep(2.3)
            c, _ = connect_via(lp.port, f"127.0.0.1:{echo_server}")
            c.close()
            for s in held[:3]:
                s.close()
            time.sleep(0.3)
            c, reply = connect_via(lp.port, f"127.0.0.1:{echo_server}")
            with c:
                assert reply.startswith(b"HTTP/1.1 200"), reply
                c.sendall(b"ping")
                assert c.recv(4) == b"ping"
        finally:
            for s in held[3:]:
                s.close()


# ------------------------------------------------------------------------------------------ audit log flooding


def _deny_many(port: int, n: int, tag: str) -> None:
    for i in range(n):
        c, reply = connect_via(port, f"{tag}-{i}.flood.example:443")
        c.close()
        assert reply.startswith(b"HTTP/1.1 403"), reply


def test_denial_flood_cannot_rotate_away_the_audit_log(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    """Attack: wipe the audit trail. The log is rotated at a fixed size and only a few old files are kept, so a
    sandbox that makes denied connections as fast as it can (about 4600/s here, ~256 bytes of record each) pushed
    every earlier record out of the log in ~35 s: those of earlier sessions and its own allowed connections
    (where it sent data). Denials past a per-session budget are now counted, not written one by one."""
    rp = start_proxy([f"127.0.0.1:{echo_server}"], audit_max_bytes=64 * 1024)  # small, so the test is quick
    c, reply = connect_via(rp.port, f"127.0.0.1:{echo_server}")
    with c:
        assert reply.startswith(b"HTTP/1.1 200"), reply
        c.sendall(b"exfil")
        assert c.recv(5) == b"exfil"
    rp.records(1)
    _deny_many(rp.port, 3000, "a")  # ~770 KB of records without a budget: 12 rotations of a 64 KiB log
    rp.proxy.close()
    from rcc.net.audit import read_records

    recs = list(read_records(str(rp.audit)))
    allowed = [r for r in recs if r.decision == "allow"]
    assert len(allowed) == 1 and allowed[0].bytes_up == 5, "the allowed connection's record was rotated away"
    summary = [r for r in recs if "not recorded one by one" in r.reason]
    assert summary, "the denials over the budget must still be counted in the log"
    counted = sum(int(r.reason.split()[0]) for r in summary)
    assert counted + sum(1 for r in recs if r.decision == "deny" and r not in summary) == 3000


def test_denial_flood_control_ordinary_denials_are_each_recorded(start_proxy) -> None:  # type: ignore[no-untyped-def]
    """Control: a normal number of denials is recorded one by one, each naming its host."""
    rp = start_proxy([])
    _deny_many(rp.port, 50, "b")
    recs = rp.records(50)
    assert sorted(str(r["host"]) for r in recs) == sorted(f"b-{i}.flood.example" for i in range(50))
    assert all(r["decision"] == "deny" and r["reason"] == "no allow rule" for r in recs)


def _earlier_session_record(path: Path) -> None:
    """What another rcc session sharing the audit log wrote before (a real AuditLog append, as its proxy does)."""
    from rcc.net.audit import AuditLog, AuditRecord

    log = AuditLog(str(path), max_bytes=64 * 1024)
    log.write(AuditRecord("2026-01-01T00:00:00.000Z", "earlier", "connect", "pypi.org", 443, "203.0.113.9", "allow",
                          "pypi.org", "allowed by rule pypi.org", 1234, 5678, 10))  # fmt: skip
    log.close()


def test_allowed_connection_flood_cannot_rotate_away_other_sessions_records(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    """Attack: wipe the audit trail with *allowed* traffic. Denials had a budget, but allowed connections were
    recorded one by one: about 160,000 allowed CONNECTs to an always-allowed host in under a minute rotated every
    earlier session's records out of all four files. Now a session writes a bounded number of records one by
    one; the rest are summed up per destination (count, bytes each way), so every connection is still counted."""
    rp = start_proxy([f"127.0.0.1:{echo_server}"], audit_max_bytes=64 * 1024)  # small, so the test is quick
    _earlier_session_record(rp.audit)
    n = 3000  # ~750 KB of records one by one: 12 rotations of a 64 KiB log, the earlier record long gone
    for i in range(n):
        c, reply = connect_via(rp.port, f"127.0.0.1:{echo_server}")
        with c:
            assert reply.startswith(b"HTTP/1.1 200"), reply
            if i % 100 == 0:  # some carry data: the summaries must add their bytes up
                c.sendall(b"exfil")
                assert c.recv(5) == b"exfil"
    rp.proxy.close()
    from rcc.net.audit import read_records

    recs = list(read_records(str(rp.audit)))
    assert [r.session for r in recs if r.session == "earlier"] == ["earlier"], "another session's record is gone"
    mine = [r for r in recs if r.session == "test-session"]
    assert all(r.decision == "allow" for r in mine)
    summaries = [r for r in mine if "not recorded one by one" in r.reason]
    assert summaries, "the connections over the budget must still be counted in the log"
    counted = sum(int(r.reason.split()[0]) for r in summaries) + sum(1 for r in mine if r not in summaries)
    assert counted == n
    assert sum(r.bytes_up for r in mine) == 5 * 30 and sum(r.bytes_down for r in mine) == 5 * 30
    assert all(r.host == "127.0.0.1" and r.port == echo_server for r in summaries)


def test_allowed_connection_flood_control_normal_sessions_are_recorded_one_by_one(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    """Control: a normal session's allowed connections (here 200, each with its own payload) are each recorded
    with their own bytes, next to the earlier session's record; nothing is summed up (the log at its default
    size: 10 MiB a file)."""
    rp = start_proxy([f"127.0.0.1:{echo_server}"])
    _earlier_session_record(rp.audit)
    for i in range(1, 201):
        c, reply = connect_via(rp.port, f"127.0.0.1:{echo_server}")
        with c:
            assert reply.startswith(b"HTTP/1.1 200"), reply
            c.sendall(b"x" * i)
            got = b""
            while len(got) < i:
                got += c.recv(i)
    rp.records(201)
    rp.proxy.close()
    from rcc.net.audit import read_records

    recs = list(read_records(str(rp.audit)))
    assert recs[0].session == "earlier"
    mine = [r for r in recs if r.session == "test-session"]
    assert not [r for r in mine if "not recorded one by one" in r.reason]
    assert sorted(r.bytes_up for r in mine) == list(range(1, 201))
    assert all(r.decision == "allow" and r.bytes_down == r.bytes_up for r in mine)


# ------------------------------------------------------------------------------------------ IPv6 carrying IPv4

# A name the sandbox may reach, resolving (here through --resolve, as DNS could answer with an AAAA record) to an
# IPv6 address that carries loopback or metadata inside: one route on this machine (sit0 for ::/96, a NAT64
# gateway, a 6to4 or Teredo relay) and the connection lands there. The guards judge the embedded address.
EMBEDDED = [
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::ffff:0:127.0.0.1", "loopback"),  # IPv4-translated
    ("64:ff9b::127.0.0.1", "loopback"),  # NAT64
    ("64:ff9b::169.254.169.254", "cloud metadata"),
    ("64:ff9b:1:7f00:0:100::", "loopback"),  # local-use NAT64, /48 format
    ("2002:7f00:1::1", "loopback"),  # 6to4
    ("2002:a9fe:a9fe::1", "cloud metadata"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo
    ("2001:db8::5efe:a9fe:a9fe", "cloud metadata"),  # ISATAP
]


@pytest.mark.parametrize(("spelling", "kind"), EMBEDDED)
def test_ipv6_spelling_embedding_loopback_or_metadata_is_refused(start_proxy, echo_server, spelling, kind) -> None:  # type: ignore[no-untyped-def]
    """Attack: reach the host's loopback services or the cloud metadata service through an allowed name whose
    address is an IPv6 spelling of them. Only ::ffff: was unmapped; the rest were "ordinary IPv6 addresses"."""
    rp = start_proxy([f"evil.test:{echo_server}"], resolve={"evil.test": spelling})
    c, reply = connect_via(rp.port, f"evil.test:{echo_server}")
    c.close()
    assert reply.startswith(b"HTTP/1.1 403"), reply
    assert f"{kind} address".encode() in reply
    rec = rp.records(1)[0]
    assert rec["decision"] == "deny" and kind in str(rec["reason"])
    if spelling != "::ffff:127.0.0.1":  # the notice names the very address to allow, not the embedded one
        assert any(f"--allow [{ipaddress.ip_address(spelling)}]:{echo_server}" in n for n in rp.notes), rp.notes


def test_ipv6_spelling_control_mapped_loopback_allowed_by_its_address_works(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    """Control: the user allows 127.0.0.1 on that port (a dev server); a name resolving to its IPv4-mapped
    spelling is judged as 127.0.0.1, so allowed, and carries data."""
    rp = start_proxy([f"dev.test:{echo_server}", f"127.0.0.1:{echo_server}"], resolve={"dev.test": "::ffff:127.0.0.1"})
    c, reply = connect_via(rp.port, f"dev.test:{echo_server}")
    with c:
        assert reply.startswith(b"HTTP/1.1 200"), reply
        c.sendall(b"v4")
        assert c.recv(2) == b"v4"
    assert rp.records(1)[0]["addr"] == "127.0.0.1"


def test_ipv6_spelling_control_ipv6_loopback_literal_still_refused_and_allowed_by_rule(start_proxy) -> None:  # type: ignore[no-untyped-def]
    """Control: an IPv6 service on ::1 is reached when ::1 itself is allowed, and refused by name otherwise."""
    lsock = socket.socket(socket.AF_INET6)
    try:
        lsock.bind(("::1", 0))
    except OSError as e:
        lsock.close()
        pytest.skip(f"no ::1 here: {e}")
    with lsock:
        lsock.listen(8)
        port = lsock.getsockname()[1]
        rp = start_proxy([f"v6.test:{port}", f"[::1]:{port}"], resolve={"v6.test": "::1"})
        c, reply = connect_via(rp.port, f"v6.test:{port}")
        c.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply
        rp2 = start_proxy([f"v6.test:{port}"], resolve={"v6.test": "::1"})
        c, reply = connect_via(rp2.port, f"v6.test:{port}")
        c.close()
        assert reply.startswith(b"HTTP/1.1 403") and b"loopback address ::1" in reply, reply


# ------------------------------------------------------------------------------------------ slow handshakes


def test_slowloris_heads_cannot_balloon_proxy_memory(echo_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Attack: make the proxy, which runs outside the sandbox (and outside a container's --memory limit), hold
    memory. Each connection sends most of a 64 KiB request head and never finishes it; every one was kept for
    the 15 s handshake timeout, renewable. 4000 of them took the proxy from 20 to 536 MiB here (485 MiB still
    held after they closed). Buffered handshake bytes now have a budget across all connections."""
    with limited_proxy([f"127.0.0.1:{echo_server}"], "", tmp_path, limit=8192) as lp:
        before = lp.rss_mib()
        held = []
        try:
            for _ in range(2000):
                c = socket.create_connection(("127.0.0.1", lp.port))
                c.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    c.send(b"GET http://x.example/ HTTP/1.1\r\nX-Pad: " + b"a" * 65000)
                held.append(c)
            time.sleep(2.0)
            grown = lp.rss_mib() - before
        finally:
            for c in held:
                c.close()
        assert grown < 80, f"proxy grew by {grown} MiB holding unfinished request heads"


def test_slowloris_control_large_valid_heads_and_tunnels_still_work(echo_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Control: a request head of 60 KB (big cookies) is still accepted, and tunnels carry data."""
    with limited_proxy([f"127.0.0.1:{echo_server}"], "", tmp_path, limit=8192) as lp:
        c = socket.create_connection(("127.0.0.1", lp.port), timeout=5)
        with c:
            target = f"127.0.0.1:{echo_server}"
            c.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nCookie: {'c' * 60000}\r\n\r\n".encode())
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
            c.sendall(b"ping")
            assert c.recv(4) == b"ping"


# ------------------------------------------------------------------------------------------ partial TLS hellos


def _client_hello(server_name: str) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _proxy_cpu_seconds(lp: LimitedProxy) -> float:
    with open(f"/proc/{lp.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_partial_client_hellos_do_not_pin_the_proxy_cpu(echo_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Attack: starve the proxy. Open tunnels and send only the first bytes of a TLS ClientHello: the proxy
    re-peeked every 2 ms for up to 15 s per tunnel (renewable), so 200 such tunnels kept its event loop at
    100% of a core, slowing every other tunnel. The re-peek now backs off."""
    with limited_proxy([f"127.0.0.1:{echo_server}"], "", tmp_path, limit=8192) as lp:
        held = []
        try:
            for _ in range(200):
                c, reply = connect_via(lp.port, f"127.0.0.1:{echo_server}")
                assert reply.startswith(b"HTTP/1.1 200"), reply
                c.sendall(bytes((22, 3, 1, 0x40, 0)) + b"\x01\x00\x3f\xfc")  # a 16 KiB hello, 9 bytes of it
                held.append(c)
            time.sleep(0.5)
            t0, c0 = time.monotonic(), _proxy_cpu_seconds(lp)
            time.sleep(3)
            share = (_proxy_cpu_seconds(lp) - c0) / (time.monotonic() - t0)
        finally:
            for c in held:
                c.close()
        assert share < 0.4, f"the proxy used {share:.0%} of a core polling partial ClientHellos"


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.5])
def test_partial_client_hellos_control_a_slow_hello_is_still_judged(start_proxy, echo_server, gap: float) -> None:  # type: ignore[no-untyped-def]
    """Control: a ClientHello that arrives in two pieces (`gap` seconds apart) is still read whole and judged:
    the allowed name passes (the echo server returns it), another name is refused (the tunnel is closed)."""
    rp = start_proxy([f"127.0.0.1:{echo_server}", f"origin.test:{echo_server}"], resolve={"origin.test": "127.0.0.1"})
    for sni, passes in (("origin.test", True), ("fronted.example", False)):
        hello = _client_hello(sni)
        c, reply = connect_via(rp.port, f"origin.test:{echo_server}")
        with c:
            assert reply.startswith(b"HTTP/1.1 200"), reply
            c.sendall(hello[:50])
            time.sleep(gap)
            c.sendall(hello[50:])
            got = b""
            with contextlib.suppress(OSError):
                while len(got) < len(hello) and (d := c.recv(65536)):
                    got += d
        assert (got == hello) is passes, (sni, len(got))
