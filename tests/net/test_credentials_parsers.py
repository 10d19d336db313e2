"""Pure tests of the credential pieces, no sockets: the flow's termination path as transcripts (rcc.net.flow),
the sans-IO request reader and the header swap (rcc.net.http_rewrite), the Host check (rcc.net.credentials).
Request-smuggling attacks on the reader are named after the attack, each next to the well-formed control."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.net import http1, socks5, tls
from rcc.net.credentials import Credential, CredentialSet, judge_request, new_placeholder, value_problem
from rcc.net.decider import RuleDecider
from rcc.net.flow import (
    Audit,
    Close,
    Connected,
    ConnectionFlow,
    Ended,
    FirstFlight,
    HostAddresses,
    Inspect,
    Notify,
    Relay,
    Resolved,
    SendClient,
    SendUpstream,
    Terminate,
    Terminated,
)
from rcc.net.http_rewrite import Body, Error, Head, Redactor, RequestReader, inject, render
from rcc.net.rules import compile_rules

A = ipaddress.ip_address
HOST = "api.example.com"


def flow_to_connected(proto: str = "connect", leftover: bytes = b"") -> ConnectionFlow:
    f = ConnectionFlow(RuleDecider(compile_rules([HOST], [], {})), "s1", "T", frozenset({HOST}))
    ev: http1.Connect | socks5.Request | http1.Forward
    if proto == "connect":
        ev = http1.Connect(HOST, 443, leftover)
    elif proto == "socks5":
        ev = socks5.Request(HOST, 443, b"", leftover)
    else:
        ev = http1.Forward(HOST, 80, "GET", b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", b"")
    f.start(ev)
    f.feed(Resolved(("203.0.113.7",)))
    f.feed(HostAddresses(frozenset()))
    return f


# ------------------------------------------------------------------------------------------------ the flow


def test_flow_terminates_a_credential_host_when_sni_matches() -> None:
    f = flow_to_connected()
    assert f.feed(Connected(A("203.0.113.7"))) == [SendClient(http1.CONNECT_OK), Inspect()]
    assert f.feed(FirstFlight(tls.ClientHello(HOST))) == [Terminate(HOST, 443)]
    assert f.feed(Terminated(requests=2)) == [Close()]
    (audit,) = f.feed(Ended(1, 2, 3))
    assert isinstance(audit, Audit) and audit.record.decision == "allow"
    assert "TLS terminated for a credential (2 request(s))" in audit.record.reason


def test_flow_socks5_to_a_credential_host_is_terminated_too() -> None:
    f = flow_to_connected("socks5")
    assert f.feed(Connected(A("203.0.113.7"))) == [SendClient(socks5.reply(socks5.SUCCEEDED)), Inspect()]
    assert f.feed(FirstFlight(tls.ClientHello(HOST.upper() + "."))) == [Terminate(HOST, 443)]


@pytest.mark.parametrize(
    ("verdict", "why"),
    [
        (tls.ClientHello("other.example.com"), "is not the credential host"),
        (tls.ClientHello(None), "TLS server name none"),
        (tls.Malformed("bad"), "unparseable TLS ClientHello"),
    ],
)
def test_flow_sni_of_another_host_or_none_or_not_tls_refused(verdict: tls.Verdict, why: str) -> None:
    f = flow_to_connected()
    f.feed(Connected(A("203.0.113.7")))
    out = f.feed(FirstFlight(verdict))
    assert isinstance(out[0], Notify) and out[-1] == Close() and not any(isinstance(c, Terminate) for c in out)
    (audit,) = f.feed(Ended(0, 0, 0))
    assert isinstance(audit, Audit) and audit.record.decision == "deny" and why in audit.record.reason


def test_flow_not_tls_to_a_credential_host_is_a_plain_tunnel() -> None:
    """ssh to github.com:22: not terminated, relayed as any tunnel (nothing can be injected into it)."""
    f = flow_to_connected()
    f.feed(Connected(A("203.0.113.7")))
    assert f.feed(FirstFlight(tls.NotTls())) == [Relay(inspect=False)]
    (audit,) = f.feed(Ended(0, 0, 0))
    assert isinstance(audit, Audit) and audit.record.decision == "allow" and "TLS terminated" not in audit.record.reason


def test_flow_bytes_sent_with_the_connect_to_a_credential_host_refused() -> None:
    f = flow_to_connected(leftover=b"\x16\x03\x01")
    f.feed(Connected(A("203.0.113.7")))
    out = f.feed(FirstFlight(tls.ClientHello(HOST)))
    assert out[-1] == Close() and not any(isinstance(c, Terminate) for c in out)


def test_flow_plain_http_to_a_credential_host_is_never_terminated() -> None:
    f = flow_to_connected("http")
    out = f.feed(Connected(A("203.0.113.7")))
    assert isinstance(out[0], SendUpstream) and out[-1] == Relay(inspect=False)


def test_flow_a_refused_request_is_a_deny_record() -> None:
    f = flow_to_connected()
    f.feed(Connected(A("203.0.113.7")))
    f.feed(FirstFlight(tls.ClientHello(HOST)))
    out = f.feed(Terminated(refused="request Host 'evil.example' is not api.example.com:443"))
    assert isinstance(out[0], Notify) and out[-1] == Close()
    (audit,) = f.feed(Ended(0, 0, 0))
    assert isinstance(audit, Audit) and audit.record.decision == "deny" and "evil.example" in audit.record.reason


def test_flow_without_credentials_is_unchanged() -> None:
    f = ConnectionFlow(RuleDecider(compile_rules([HOST], [], {})), "s1", "T")
    f.start(http1.Connect(HOST, 443, b""))
    f.feed(Resolved(("203.0.113.7",)))
    f.feed(HostAddresses(frozenset()))
    assert f.feed(Connected(A("203.0.113.7"))) == [SendClient(http1.CONNECT_OK), Relay(inspect=True)]


# ------------------------------------------------------------------------------------------------ the reader


def events(data: bytes, step: int = 0) -> list[object]:
    r = RequestReader()
    if not step:
        return list(r.feed(data))
    out: list[object] = []
    for i in range(0, len(data), step):
        out += r.feed(data[i : i + step])
    return out


def heads_and_body(evs: list[object]) -> tuple[list[Head], bytes, list[str]]:
    heads = [e for e in evs if isinstance(e, Head)]
    body = b"".join(e.data for e in evs if isinstance(e, Body))
    errors = [e.reason for e in evs if isinstance(e, Error)]
    return heads, body, errors


GET = b"GET /a HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
POST_CL = b"POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello"
POST_CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
)


@pytest.mark.parametrize("step", [0, 1, 3, 7])
def test_reader_splits_keepalive_pipelined_requests_whatever_the_reads(step: int) -> None:
    heads, body, errors = heads_and_body(events(GET + POST_CL + POST_CHUNKED + GET, step))
    assert not errors
    assert [h.target for h in heads] == ["/a", "/b", "/c", "/a"]
    assert body == b"hello" + b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"  # raw, framing included


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "other than chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "other"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", "malformed Content-Length"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "exactly one Host"),
        (b"GET / HTTP/1.1\r\n\r\n", "exactly one Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n X-Folded: b\r\n\r\n", "folding"),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", "bare CR or LF"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "malformed header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", "Upgrade"),
        (b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", "CONNECT"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX", "CRLF"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "too large"),
    ],
)
def test_request_smuggling_framings_are_errors(attack: bytes, reason: str) -> None:
    _heads, _body, errors = heads_and_body(events(attack))
    assert errors and reason in errors[0]


def test_nothing_after_an_error() -> None:
    r = RequestReader()
    assert isinstance(r.feed(b"GET / HTTP/1.1\r\n\r\n")[-1], Error)
    assert r.feed(GET) == []


def test_chunked_body_hides_no_second_request() -> None:
    """A request inside a chunk is body, not a request (no Head for it); the next real request is one."""
    inner = b"GET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    data = (
        b"POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(inner):x}\r\n".encode() + inner + b"\r\n0\r\n\r\n" + GET
    )  # fmt: skip
    heads, _body, errors = heads_and_body(events(data))
    assert not errors and [h.target for h in heads] == ["/c", "/a"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_reader_never_raises_and_ends_at_its_one_error(data: bytes, step: int) -> None:
    """Whatever follows a valid request, however it is split: Heads and Bodies, then at most one Error, last."""
    evs = events(GET + data, step)
    errors = [e for e in evs if isinstance(e, Error)]
    assert len(errors) <= 1 and (not errors or evs[-1] is errors[0])
    assert isinstance(evs[0], Head)


# ------------------------------------------------------------------------------------------------ the swap

PH = new_placeholder("gh")
OTHER_PH = new_placeholder("npm")
REAL = "ghp_0123456789abcdefREAL"


def creds() -> CredentialSet:
    return CredentialSet([
        Credential("gh", "GITHUB_TOKEN", ("api.example.com", "example.com"), PH, REAL),
        Credential("npm", "NPM_TOKEN", ("registry.example.org",), OTHER_PH, "npm_REAL"),
    ])  # fmt: skip


def head(*fields: tuple[bytes, bytes]) -> Head:
    return Head("GET", "/x", "1.1", ((b"Host", HOST.encode()), *fields))


def test_swap_in_bearer_and_any_header_only_for_this_hosts_credentials() -> None:
    h = head((b"Authorization", f"Bearer {PH}".encode()), (b"X-Other", f"{OTHER_PH}".encode()))
    new, used = inject(h, creds().swaps_for(HOST))
    assert used == ("gh",)
    assert new.fields[1] == (b"Authorization", f"Bearer {REAL}".encode())
    assert new.fields[2] == (b"X-Other", OTHER_PH.encode())  # another credential's placeholder stays
    assert render(new).startswith(b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n")


def test_swap_in_basic_auth_as_git_sends_it() -> None:
    b = base64.b64encode(f"x-access-token:{PH}".encode())
    new, used = inject(head((b"Authorization", b"Basic " + b)), creds().swaps_for(HOST))
    assert used == ("gh",)
    assert base64.b64decode(new.fields[1][1].split(b" ")[1]) == f"x-access-token:{REAL}".encode()


def test_no_swap_for_a_host_without_credentials() -> None:
    h = head((b"Authorization", f"Bearer {PH}".encode()))
    new, used = inject(h, creds().swaps_for("evil.example"))
    assert used == () and new == h


def test_request_line_is_never_swapped() -> None:
    h = Head("GET", f"/x?key={PH}", "1.1", ((b"Host", HOST.encode()),))
    new, used = inject(h, creds().swaps_for(HOST))
    assert new.target == f"/x?key={PH}" and used == ()


@pytest.mark.parametrize(
    ("host_field", "ok"),
    [
        ("api.example.com", True),
        ("API.example.com.", True),
        ("api.example.com:443", True),
        ("api.example.com:444", False),
        ("evil.example", False),
        ("api.example.com@evil.example", False),
        ("", False),
    ],
)
def test_host_of_every_request_must_be_the_connections_host(host_field: str, ok: bool) -> None:
    h = Head("GET", "/", "1.1", ((b"Host", host_field.encode()),))
    assert (judge_request(h, HOST, 443) == "") == ok


def test_absolute_form_target_refused() -> None:
    h = Head("GET", "https://evil.example/", "1.1", ((b"Host", HOST.encode()),))
    assert "origin-form" in judge_request(h, HOST, 443)


def test_credential_repr_never_shows_the_value() -> None:
    c = Credential("gh", "GITHUB_TOKEN", (HOST,), PH, REAL)
    assert REAL not in repr(c) and REAL not in repr(creds())


@pytest.mark.parametrize(("value", "ok"), [("sk-ant-abc", True), ("", False), ("a b", False), ("a\r\nX: y", False),
                                           ("é", False)])  # fmt: skip
def test_value_that_cannot_go_into_a_header_is_refused(value: str, ok: bool) -> None:
    assert (value_problem(value) == "") == ok


# ------------------------------------------------------------------------------------------------ the mask


@given(st.binary(max_size=200), st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=20))
def test_redactor_masks_an_echoed_value_across_any_split_and_keeps_length(
    pre: bytes, post: bytes, cuts: list[int]
) -> None:
    real = REAL.encode()
    mask = creds().redactions()[real]
    data = pre + real + post
    r = Redactor({real: mask})
    out, i = b"", 0
    for c in cuts:
        out += r.feed(data[i : i + c])
        i += c
    out += r.feed(data[i:]) + r.flush()
    assert len(out) == len(data) and real not in out


def test_redactor_holds_nothing_back_for_ordinary_stream_data() -> None:
    """Server-sent events: an event ending in a blank line is passed on at once, whole."""
    r = Redactor(creds().redactions())
    ev = b'event: message\ndata: {"x": 1}\n\n'
    assert r.feed(ev) == ev


# ------------------------------------------------------------------------------------------------ request rules


@pytest.mark.parametrize(
    ("method", "target", "ok"),
    [
        ("GET", "/repos/me/x", True),
        ("POST", "/repos/me/x/issues?x=1", True),
        ("DELETE", "/repos/me/x", False),
        ("GET", "/repos/other/x", False),
        ("GET", "/repos/me", False),
        ("GET", "/user", True),
    ],
)
def test_request_rules_name_methods_and_paths(method: str, target: str, ok: bool) -> None:
    c = CredentialSet([Credential("gh", "T", (HOST,), PH, REAL, (f"{HOST} GET,POST /repos/me/*", f"{HOST} * /user"))])
    h = Head(method, target, "1.1", ((b"Host", HOST.encode()),))
    assert (c.judge_rules(h, HOST) == "") == ok
    assert c.judge_rules(h, "example.com") == ""  # no rules for that host: any request


def test_request_rule_brackets_are_literal() -> None:
    c = CredentialSet([Credential("gh", "T", (HOST,), PH, REAL, (f"{HOST} GET /a[b]/*",))])
    assert c.judge_rules(Head("GET", "/a[b]/x", "1.1", ()), HOST) == ""
    assert c.judge_rules(Head("GET", "/ab/x", "1.1", ()), HOST) != ""
