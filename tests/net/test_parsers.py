"""Pure tests: the sans-IO HTTP proxy request parser (RFC 9110/9112) and SOCKS5 handshake (RFC 1928/1929)."""

from __future__ import annotations

import pytest

from rcc.net import http1, socks5


def feed_all(data: bytes, step: int = 0) -> http1.Event:
    p = http1.ProxyRequestParser()
    if not step:
        return p.feed(data)
    ev: http1.Event = http1.NeedMore()
    for i in range(0, len(data), step):
        ev = p.feed(data[i : i + step])
        if not isinstance(ev, http1.NeedMore):
            return ev
    return ev


# ------------------------------------------------------------------------------------------------ HTTP


@pytest.mark.parametrize("step", [0, 1, 7])
def test_connect_with_pipelined_bytes(step: int) -> None:
    data = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"
    ev = feed_all(data, step)
    assert isinstance(ev, http1.Connect) and (ev.host, ev.port) == ("example.com", 443)
    assert b"\x16\x03\x01".startswith(ev.leftover)  # fed byte-wise, the event comes before the rest arrives
    if not step:
        assert ev.leftover == b"\x16\x03\x01"


def test_connect_ipv6_authority() -> None:
    ev = feed_all(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n")
    assert ev == http1.Connect("2001:db8::1", 443, b"")


def test_connect_needs_port() -> None:
    ev = feed_all(b"CONNECT example.com HTTP/1.1\r\n\r\n")
    assert isinstance(ev, http1.Reject) and b"400" in ev.reply.split(b"\r\n")[0]


def test_absolute_form_rewritten_to_origin_form() -> None:
    ev = feed_all(
        b"GET http://example.com/a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nAccept: */*\r\n\r\n"
    )
    assert isinstance(ev, http1.Forward)
    assert (ev.host, ev.port, ev.method) == ("example.com", 80, "GET")
    assert ev.head == b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"


def test_absolute_form_without_path_and_without_host_header() -> None:
    ev = feed_all(b"GET http://example.com:8080 HTTP/1.0\r\n\r\n")
    assert isinstance(ev, http1.Forward)
    assert ev.head == b"GET / HTTP/1.0\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n"


def test_body_is_left_untouched() -> None:
    ev = feed_all(b"POST http://e.com/ HTTP/1.1\r\nHost: e.com\r\nContent-Length: 5\r\n\r\nhello")
    assert isinstance(ev, http1.Forward) and ev.leftover == b"hello"


def test_host_header_disagreeing_with_target_is_denied() -> None:
    """Attack: ask the proxy for an allowed host but tell the server behind it another name (virtual host)."""
    ev = feed_all(b"GET http://allowed.example/ HTTP/1.1\r\nHost: internal.example\r\n\r\n")
    assert isinstance(ev, http1.Reject) and ev.deny
    assert ev.reply.startswith(b"HTTP/1.1 403 ") and b"X-Rcc-Denied: Host header does not match" in ev.reply


def test_host_header_agreeing_in_another_spelling_is_fine() -> None:
    ev = feed_all(b"GET http://Allowed.Example:80/ HTTP/1.1\r\nHost: allowed.example.\r\n\r\n")
    assert isinstance(ev, http1.Forward)


def test_userinfo_in_url_is_refused() -> None:
    """Attack: http://allowed.example@evil.example/ — which host is meant depends on the parser."""
    ev = feed_all(b"GET http://allowed.example@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert isinstance(ev, http1.Reject) and not ev.deny and b"user information" in ev.reply


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"GET /path HTTP/1.1\r\nHost: e.com\r\n\r\n", b"absolute"),
        (b"GET https://e.com/ HTTP/1.1\r\nHost: e.com\r\n\r\n", b"CONNECT"),
        (b"GET ftp://e.com/ HTTP/1.1\r\n\r\n", b"absolute"),
        (b"GET http://e.com/ HTTP/2.0\r\n\r\n", b"request line"),
        (b"GET  http://e.com/ HTTP/1.1\r\n\r\n", b"request line"),
        (b"GET http://e.com/ HTTP/1.1\r\nHost: e.com\r\nHost: e.com\r\n\r\n", b"more than one Host"),
        (b"GET http://e.com/ HTTP/1.1\r\nHost : e.com\r\n\r\n", b"malformed header"),
        (b"GET http://e.com/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", b"folding"),
        (b"GET http://e.com/ HTTP/1.1\nHost: e.com\r\n\r\n", b"bare CR or LF"),
        (b"GET http://e.com/ HTTP/1.1\r\nX: a\rb\r\n\r\n", b"bare CR or LF"),
        (b"POST http://e.com/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", b"Transfer-Enc"),
        (b"GET http://e.com/ HTTP/1.1\r\nX: \x00\r\n\r\n", b"invalid character"),
        (b"GET http://[::1/ HTTP/1.1\r\n\r\n", b"request target"),
    ],
)
def test_malformed_requests_are_rejected_with_400(head: bytes, why: bytes) -> None:
    ev = feed_all(head)
    assert isinstance(ev, http1.Reject), ev
    assert ev.reply.startswith(b"HTTP/1.1 400 ") and why in ev.reply, ev.reply


def test_oversized_head_is_rejected() -> None:
    p = http1.ProxyRequestParser(max_head=1024)
    assert isinstance(p.feed(b"GET http://e.com/ HTTP/1.1\r\n"), http1.NeedMore)
    ev = p.feed(b"X: " + b"a" * 2000)
    assert isinstance(ev, http1.Reject) and b"431" in ev.reply


def test_denied_response_carries_header() -> None:
    r = http1.denied("no allow rule", "example.org", 443)
    assert r.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"\r\nX-Rcc-Denied: no allow rule\r\n" in r


# ------------------------------------------------------------------------------------------------ SOCKS5


def socks_request(atyp: int, addr: bytes, port: int, cmd: int = 1) -> bytes:
    return bytes((5, cmd, 0, atyp)) + addr + port.to_bytes(2, "big")


@pytest.mark.parametrize("split", [False, True])
def test_socks5_domain_connect(split: bool) -> None:
    hs = socks5.Socks5Handshake()
    data = b"\x05\x01\x00" + socks_request(3, b"\x0bexample.com", 443) + b"extra"
    if split:
        ev: socks5.Event = socks5.NeedMore()
        sent = b""
        for i in range(len(data)):
            ev = hs.feed(data[i : i + 1])
            if isinstance(ev, socks5.NeedMore):
                sent += ev.send
            else:
                break
        assert sent == b"\x05\x00"
        assert isinstance(ev, socks5.Request) and ev.leftover == b"" and (ev.host, ev.port) == ("example.com", 443)
    else:
        ev = hs.feed(data)
        assert ev == socks5.Request("example.com", 443, b"extra", b"\x05\x00")


def test_socks5_ipv4_and_ipv6() -> None:
    hs = socks5.Socks5Handshake()
    assert hs.feed(b"\x05\x01\x00") == socks5.NeedMore(b"\x05\x00")
    assert hs.feed(socks_request(1, bytes([10, 0, 0, 1]), 80)) == socks5.Request("10.0.0.1", 80, b"")
    hs = socks5.Socks5Handshake()
    ev = hs.feed(b"\x05\x01\x00" + socks_request(4, bytes(15) + b"\x01", 22))
    assert isinstance(ev, socks5.Request) and ev.host == "::1"


def test_socks5_userpass_is_accepted_and_ignored() -> None:
    hs = socks5.Socks5Handshake()
    assert hs.feed(b"\x05\x01\x02") == socks5.NeedMore(b"\x05\x02")
    assert hs.feed(b"\x01\x01u\x01p") == socks5.NeedMore(b"\x01\x00")
    assert isinstance(hs.feed(socks_request(3, b"\x01a", 80)), socks5.Request)


def test_socks5_no_acceptable_method() -> None:
    ev = socks5.Socks5Handshake().feed(b"\x05\x01\x80")
    assert isinstance(ev, socks5.Reject) and ev.reply == b"\x05\xff"


@pytest.mark.parametrize(("cmd", "code"), [(2, 7), (3, 7)])
def test_socks5_bind_and_udp_are_refused(cmd: int, code: int) -> None:
    ev = socks5.Socks5Handshake().feed(b"\x05\x01\x00" + socks_request(1, bytes(4), 80, cmd=cmd))
    assert isinstance(ev, socks5.Reject) and ev.reply[:2] == b"\x05\x00" and ev.reply[3] == code


def test_socks5_unknown_address_type() -> None:
    ev = socks5.Socks5Handshake().feed(b"\x05\x01\x00\x05\x01\x00\x09")
    assert isinstance(ev, socks5.Reject) and ev.reply[2:4] == bytes((5, 8))


def test_socks5_reply_bytes() -> None:
    assert socks5.reply(socks5.NOT_ALLOWED) == b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00"
