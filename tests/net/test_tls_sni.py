"""Domain-fronting guard: the SNI in a tunnel's TLS ClientHello must name the allowed host.

Pure tests parse real ClientHellos produced by Python's ssl module (OpenSSL), re-fragmented; loopback tests run
a real TLS server (test CA) behind the proxy."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxyhelpers import RunningProxy, serve

from rcc.net import tls
from testhosts import TestCA


def client_hello(server_name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def refragment(hello: bytes, cut: int) -> bytes:
    """Split the handshake message of a one-record hello into two records at `cut`."""
    body = hello[5:]
    hdr = hello[:3]
    a, b = body[:cut], body[cut:]
    return hdr + len(a).to_bytes(2, "big") + a + hdr + len(b).to_bytes(2, "big") + b


def test_parses_sni_of_a_real_client_hello() -> None:
    assert tls.parse_client_hello(client_hello("api.example.com")) == tls.ClientHello("api.example.com")


def test_no_sni_when_connecting_without_a_name() -> None:
    assert tls.parse_client_hello(client_hello(None)) == tls.ClientHello(None)


@pytest.mark.parametrize("cut", [1, 4, 40, 100])
def test_hello_fragmented_over_records(cut: int) -> None:
    assert tls.parse_client_hello(refragment(client_hello("a.example"), cut)) == tls.ClientHello("a.example")


def test_partial_hello_needs_more() -> None:
    h = client_hello("a.example")
    for n in (1, 5, 6, 50, len(h) - 1):
        assert tls.parse_client_hello(h[:n]) == tls.NeedMore(), n


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH_9.2\r\n", b"GET / HTTP/1.1\r\n", b"\x00\x01"])
def test_other_protocols_pass(data: bytes) -> None:
    assert tls.parse_client_hello(data) == tls.NotTls()


def test_duplicate_server_name_extension_is_malformed() -> None:
    """Attack: two SNI extensions, hoping the proxy reads the first and the server the second."""
    h = client_hello("a.example")
    # Append a second server_name extension (for b.example) and fix up the lengths.
    name = b"b.example"
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    ext = b"\x00\x00" + (len(entry) + 2).to_bytes(2, "big") + len(entry).to_bytes(2, "big") + entry
    body = h[9:]  # after record header (5) and handshake header (4)
    # extensions are at the end of the body; their 2-byte length precedes them
    r = tls._Reader(body)
    r.take(34)
    r.vec(1)
    r.vec(2)
    r.vec(1)
    ext_len_at = r.pos
    old_len = int.from_bytes(body[ext_len_at : ext_len_at + 2], "big")
    new_body = body[:ext_len_at] + (old_len + len(ext)).to_bytes(2, "big") + body[ext_len_at + 2 :] + ext
    hs = b"\x01" + len(new_body).to_bytes(3, "big") + new_body
    forged = h[:3] + len(hs).to_bytes(2, "big") + hs
    v = tls.parse_client_hello(forged)
    assert isinstance(v, tls.Malformed) and "duplicate" in v.reason


def test_truncated_inside_complete_message_is_malformed() -> None:
    h = client_hello("a.example")
    hs_len = int.from_bytes(h[6:9], "big")
    cut = h[:5] + h[5:6] + (hs_len - 200).to_bytes(3, "big") + h[9 : 9 + hs_len - 200]
    cut = cut[:3] + (len(cut) - 5).to_bytes(2, "big") + cut[5:]
    assert isinstance(tls.parse_client_hello(cut), tls.Malformed)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400) | st.binary(max_size=300).map(lambda b: b"\x16\x03\x01" + b))
def test_parser_never_raises(data: bytes) -> None:
    assert isinstance(tls.parse_client_hello(data), tls.NeedMore | tls.NotTls | tls.Malformed | tls.ClientHello)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.integers(1, 64))
def test_real_hello_any_split_and_fragmentation(cut: int, step: int) -> None:
    h = client_hello("x.example")
    data = refragment(h, 1 + cut % (len(h) - 6))
    for n in range(0, len(data), step):
        v = tls.parse_client_hello(data[:n])
        assert isinstance(v, tls.NeedMore | tls.ClientHello), (n, v)
    assert tls.parse_client_hello(data) == tls.ClientHello("x.example")


# ------------------------------------------------------------------------------------------------ on the wire


@pytest.fixture
def tls_origin(tmp_path: Path):  # type: ignore[no-untyped-def]
    ca = TestCA(tmp_path / "ca")
    ctx = ca.server_context(["allowed.test", "other.test"])
    seen: list[str] = []

    def handler(c: socket.socket) -> None:
        try:
            with ctx.wrap_socket(c, server_side=True) as t:
                seen.append("handshake")
                t.sendall(t.recv(100))
        except (OSError, ssl.SSLError):
            c.close()

    lsock, port = serve(handler)
    yield ca, port, seen
    lsock.close()


def tunnel_then_tls(rp: RunningProxy, target: str, sni: str, ca: TestCA) -> bytes:
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=5)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    assert b" 200 " in head
    ctx = ca.client_context()
    with ctx.wrap_socket(s, server_hostname=sni) as t:
        t.sendall(b"hi")
        return t.recv(100)


def test_domain_fronting_sni_for_other_host_is_refused(start_proxy, tls_origin) -> None:  # type: ignore[no-untyped-def]
    """Attack: CONNECT to an allowed name, then ask the server (a shared front) for another host via SNI."""
    ca, port, seen = tls_origin
    rp = start_proxy([f"allowed.test:{port}", f"127.0.0.1:{port}"], resolve={"allowed.test": "127.0.0.1"})
    with pytest.raises((ssl.SSLError, OSError)):
        tunnel_then_tls(rp, f"allowed.test:{port}", "other.test", ca)
    assert seen == []  # the hello never reached the server
    rec = rp.records()[-1]
    assert rec["decision"] == "deny" and "TLS server name other.test does not match allowed.test" in str(rec["reason"])
    assert any("other.test" in n for n in rp.notes)


def test_sni_matching_the_tunnel_host_works(start_proxy, tls_origin) -> None:  # type: ignore[no-untyped-def]
    ca, port, seen = tls_origin
    rp = start_proxy([f"allowed.test:{port}", f"127.0.0.1:{port}"], resolve={"allowed.test": "127.0.0.1"})
    assert tunnel_then_tls(rp, f"allowed.test:{port}", "ALLOWED.test", ca) == b"hi"
    assert seen == ["handshake"]


def test_sni_naming_another_allowed_host_works(start_proxy, tls_origin) -> None:  # type: ignore[no-untyped-def]
    ca, port, _seen = tls_origin
    rp = start_proxy(
        [f"allowed.test:{port}", f"other.test:{port}", f"127.0.0.1:{port}"], resolve={"allowed.test": "127.0.0.1"}
    )
    assert tunnel_then_tls(rp, f"allowed.test:{port}", "other.test", ca) == b"hi"


def test_server_speaks_first_protocols_still_work(start_proxy) -> None:  # type: ignore[no-untyped-def]
    """SSH-like: the server sends a banner and waits; the proxy's ClientHello peek must not block it."""

    def banner(c: socket.socket) -> None:
        with c:
            c.sendall(b"SSH-2.0-test\r\n")
            c.sendall(c.recv(100))

    lsock, port = serve(banner)
    rp = start_proxy([f"127.0.0.1:{port}"])
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=5)
    s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
    assert s.recv(2) == b"\x05\x00"
    rep = b""
    while len(rep) < 10:
        rep += s.recv(10 - len(rep))
    got = b""
    while not got.endswith(b"\r\n"):
        got += s.recv(100)
    assert got == b"SSH-2.0-test\r\n"
    s.sendall(b"SSH-2.0-client\r\n")
    assert s.recv(100) == b"SSH-2.0-client\r\n"
    s.close()
    lsock.close()


def test_pipelined_client_hello_is_checked(start_proxy, tls_origin) -> None:  # type: ignore[no-untyped-def]
    """Attack: send the ClientHello in the same packet as CONNECT so it arrives as handshake leftover."""
    _ca, port, seen = tls_origin
    rp = start_proxy([f"allowed.test:{port}", f"127.0.0.1:{port}"], resolve={"allowed.test": "127.0.0.1"})
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=5)
    s.sendall(f"CONNECT allowed.test:{port} HTTP/1.1\r\n\r\n".encode() + client_hello("other.test"))
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data == b"HTTP/1.1 200 Connection established\r\n\r\n" and seen == []
    assert rp.records()[-1]["decision"] == "deny"
