"""Hypothesis fuzzing of the pure parts: parsers never raise, split-feeding never changes the result,
normalisation and decide() are total (like mitmproxy's test_socks5_fuzz.py)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.net import http1, socks5
from rcc.net.hosts import HostError, normalize_host, parse_ipv4_loose
from rcc.net.rules import RuleError, compile_rules, decide, parse_rule

RULES = compile_rules(["*.example.com", "10.0.0.1", "[2001:db8::1]:22", "@pypi"], ["bad.example.com"])

header_bytes = st.binary(max_size=300) | st.builds(
    lambda m, t, hs, tail: m + b" " + t + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in hs) + b"\r\n" + tail,
    st.sampled_from([b"GET", b"CONNECT", b"POST", b"G\x00T"]),
    st.sampled_from([b"http://example.com/", b"example.com:443", b"[::1]:80", b"http://a@b/", b"http://[::1]:8/x"])
    | st.binary(max_size=40),
    st.lists(
        st.sampled_from(
            [
                b"Host: example.com",
                b"Host: x",
                b"Content-Length: 1",
                b"Transfer-Encoding: chunked",
                b" folded",
                b"X:\x00",
                b"Connection: x",
                b"x",
            ]
        )
        | st.binary(max_size=30),
        max_size=5,
    ),
    st.binary(max_size=20),
)


@settings(max_examples=800, deadline=None)
@given(header_bytes)
def test_http_parser_never_raises(data: bytes) -> None:
    ev = http1.ProxyRequestParser().feed(data)
    assert isinstance(ev, http1.NeedMore | http1.Connect | http1.Forward | http1.Reject)
    if isinstance(ev, http1.Forward):
        assert ev.head.endswith(b"\r\n\r\n") and b"\r\nConnection: close\r\n" in ev.head
        assert b"\r\nproxy-" not in ev.head.lower()


@settings(max_examples=400, deadline=None)
@given(header_bytes, st.lists(st.integers(1, 50), max_size=10))
def test_http_parser_split_feeding_gives_the_same_request(data: bytes, cuts: list[int]) -> None:
    whole = http1.ProxyRequestParser().feed(data)
    p = http1.ProxyRequestParser()
    ev: http1.Event = http1.NeedMore()
    pos = 0
    for c in [*cuts, len(data)]:
        ev = p.feed(data[pos : pos + c])
        pos += c
        if not isinstance(ev, http1.NeedMore):
            break
    if isinstance(whole, http1.Connect | http1.Forward) and isinstance(ev, http1.Connect | http1.Forward):
        assert (type(ev), ev.host, ev.port) == (type(whole), whole.host, whole.port)
    if not isinstance(whole, http1.NeedMore) and not isinstance(ev, http1.NeedMore):
        assert type(ev) is type(whole)


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=600))
def test_socks5_never_raises(data: bytes) -> None:
    hs = socks5.Socks5Handshake()
    ev = hs.feed(data)
    assert isinstance(ev, socks5.NeedMore | socks5.Request | socks5.Reject)


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9-]{1,20}){0,3}\.[a-z]{2,6}", fullmatch=True),
    st.integers(1, 65535),
    st.binary(max_size=20),
    st.integers(1, 8),
)
def test_socks5_domain_roundtrip_any_split(name: str, port: int, extra: bytes, step: int) -> None:
    data = b"\x05\x02\x00\x02\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + port.to_bytes(2, "big") + extra
    hs = socks5.Socks5Handshake()
    sent = b""
    ev: socks5.Event = socks5.NeedMore()
    for i in range(0, len(data), step):
        ev = hs.feed(data[i : i + step])
        if isinstance(ev, socks5.NeedMore):
            sent += ev.send
            continue
        break
    assert isinstance(ev, socks5.Request)
    assert (ev.host, ev.port) == (name, port) and sent + ev.send == b"\x05\x00"


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"[0-9a-fA-FxX.:\[\]]{0,40}", fullmatch=True))
def test_normalize_and_decide_are_total(text: str) -> None:
    with contextlib.suppress(HostError):
        normalize_host(text)
    d = decide(RULES, text, 443)
    assert d.allowed in (True, False)
    with contextlib.suppress(RuleError):
        parse_rule(text)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.sampled_from(["0x", "0", "1", "7", "8", "9", "f", "255", "256", "4294967295", "00"]), min_size=1, max_size=3
    )
    .map("".join)
    .flatmap(
        lambda part: st.lists(
            st.just(part) | st.from_regex(r"(0x[0-9a-f]{0,3}|0[0-7]{0,4}|[1-9][0-9]{0,4})", fullmatch=True),
            min_size=1,
            max_size=5,
        ).map(".".join)
    )
)
def test_ipv4_spellings_agree_with_inet_aton(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    try:
        got: ipaddress.IPv4Address | None = parse_ipv4_loose(text)
    except HostError:
        got = None
    assert got == expected, text


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4) | st.ip_addresses(v=6))
def test_any_ip_spelling_judged_as_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    r = compile_rules([], [f"[{addr}]" if addr.version == 6 else str(addr)])
    spellings = [str(addr)]
    if addr.version == 4:
        spellings += [str(int(addr)), hex(int(addr)), f"[::ffff:{addr}]"]
    for s in spellings:
        assert not decide(r, s, 443).allowed


# ------------------------------------------------------------------------------------------------ the flow

ipv6_addresses = st.integers(0, 2**128 - 1).map(lambda v: str(ipaddress.IPv6Address(v)))
some_addresses = st.lists(
    st.sampled_from(["127.0.0.1", "169.254.169.254", "10.0.0.1", "203.0.113.7", "::1", "64:ff9b::7f00:1", "junk"])
    | st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v)))
    | ipv6_addresses,
    max_size=4,
)


@settings(max_examples=400, deadline=None)
@given(
    host=st.text(max_size=40) | st.sampled_from(["a.example.com", "bad.example.com", "10.0.0.1", "2001:db8::1"]),
    port=st.sampled_from([22, 80, 443, 8080]),
    found=some_addresses,
)
def test_flow_connects_only_after_both_checks(host: str, port: int, found: list[str]) -> None:
    """Whatever the sandbox asks and DNS answers: a Connect command comes only for an allowed name, and carries
    only addresses check_address() allows (fail closed: everything else is refused or an error)."""
    from rcc.net import flow
    from rcc.net.decider import RuleDecider
    from rcc.net.rules import check_address

    f = flow.ConnectionFlow(RuleDecider(RULES), "s", "t")
    cmds = f.start(socks5.Request(host, port, b""))
    if isinstance(cmds[-1], flow.Resolve):
        cmds = f.feed(flow.Resolved(tuple(found)))
    if isinstance(cmds[-1], flow.ReadHostAddresses):
        cmds = f.feed(flow.HostAddresses(frozenset()))
    connects = [c for c in cmds if isinstance(c, flow.Connect)]
    if connects:
        assert decide(RULES, host, port).allowed
        assert all(check_address(RULES, a, port).allowed for a in connects[0].addresses)
    else:
        assert isinstance(cmds[-1], flow.Close)
