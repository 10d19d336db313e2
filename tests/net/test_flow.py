"""Transcript tests of the connection flow (rcc.net.flow), without sockets: a handshake event in, the commands
the server must execute out, each outcome fed back. Every decision path of the proxy, as data."""

from __future__ import annotations

import ipaddress
import ssl

import pytest

from rcc.net import http1, socks5, tls
from rcc.net.audit import AuditRecord
from rcc.net.decider import RuleDecider
from rcc.net.flow import (
    Audit,
    Close,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionFlow,
    Ended,
    FirstFlight,
    HostAddresses,
    HostAddressesFailed,
    Notify,
    ReadHostAddresses,
    Relay,
    Resolve,
    Resolved,
    ResolveFailed,
    SendClient,
    SendUpstream,
    StartUpstream,
)
from rcc.net.hosts import IPAddress
from rcc.net.rules import Decision, Rules, compile_rules

A = ipaddress.ip_address
NONE: frozenset[IPAddress] = frozenset()


def make(allow: list[str], deny: list[str] | None = None, resolve: dict[str, str] | None = None) -> ConnectionFlow:
    return ConnectionFlow(RuleDecider(compile_rules(allow, deny or [], resolve or {})), "s1", "T")


def record(f: ConnectionFlow, up: int = 0, down: int = 0, ms: int = 0) -> AuditRecord:
    (cmd,) = f.feed(Ended(up, down, ms))
    assert isinstance(cmd, Audit)
    return cmd.record


def test_allowed_connect_by_name_full_transcript() -> None:
    f = make(["Example.COM"])
    assert f.start(http1.Connect("EXAMPLE.com.", 443, b"")) == [Resolve("example.com", 443)]
    assert f.feed(Resolved(("203.0.113.7", "::ffff:203.0.113.7", "2001:db8::7%eth0"))) == [ReadHostAddresses()]
    assert f.feed(HostAddresses(NONE)) == [Connect((A("203.0.113.7"), A("2001:db8::7")), 443)]
    assert f.feed(Connected(A("203.0.113.7"))) == [SendClient(http1.CONNECT_OK), Relay(inspect=True)]
    assert f.feed(FirstFlight(tls.ClientHello("example.com"))) == [StartUpstream(b"")]
    assert record(f, 10, 20, 5) == AuditRecord(
        "T", "s1", "connect", "example.com", 443, "203.0.113.7", "allow", "Example.COM", "allowed by rule Example.COM",
        10, 20, 5,
    )  # fmt: skip


def test_denied_name_is_never_resolved() -> None:
    f = make(["example.com"])
    cmds = f.start(http1.Connect("secret.example.org", 443, b""))
    assert not any(isinstance(c, Resolve | Connect) for c in cmds)
    notify, reply, close = cmds
    assert notify == Notify("secret.example.org", 443, Decision(False, None, "no allow rule", "no-allow-rule",
                                                                 "secret.example.org"))  # type: ignore[arg-type]  # fmt: skip
    assert isinstance(reply, SendClient) and reply.data.startswith(b"HTTP/1.1 403") and b"X-Rcc-Denied" in reply.data
    assert close == Close()
    r = record(f)
    assert (r.decision, r.reason, r.addr) == ("deny", "no allow rule", "")


def test_deny_rule_wins_and_names_itself() -> None:
    f = make(["*.example.com"], ["secret.example.com"])
    notify = f.start(http1.Connect("secret.example.com", 443, b""))[0]
    assert isinstance(notify, Notify) and notify.decision.kind == "denied-by-rule"
    assert record(f).rule == "secret.example.com"


def test_invalid_host_is_denied_as_written() -> None:
    f = make(["example.com"])
    cmds = f.start(socks5.Request("bad host!", 443, b""))
    assert cmds[0] == Notify("bad host!", 443, cmds[0].decision)  # type: ignore[union-attr]
    assert cmds[1:] == [SendClient(socks5.reply(socks5.NOT_ALLOWED)), Close()]
    r = record(f)
    assert r.host == "bad host!" and r.reason.startswith("invalid host:")


def test_name_resolving_to_loopback_refuses_the_whole_name() -> None:
    f = make(["api.test"])
    f.start(http1.Connect("api.test", 443, b""))
    f.feed(Resolved(("203.0.113.1", "127.0.0.1")))
    notify, reply, close = f.feed(HostAddresses(NONE))
    assert isinstance(notify, Notify) and notify.decision.kind == "forbidden-address"
    assert notify.decision.address == "127.0.0.1"
    assert isinstance(reply, SendClient) and b"loopback address 127.0.0.1" in reply.data and close == Close()
    assert record(f).addr == "127.0.0.1"


def test_hosts_own_address_refused_control_other_address_connects() -> None:
    own = frozenset({A("192.0.2.2")})
    f = make(["own.test"])
    f.start(http1.Connect("own.test", 443, b""))
    f.feed(Resolved(("192.0.2.2",)))
    assert isinstance(f.feed(HostAddresses(own))[0], Notify)
    g = make(["own.test"])
    g.start(http1.Connect("own.test", 443, b""))
    g.feed(Resolved(("192.0.2.3",)))
    assert g.feed(HostAddresses(own)) == [Connect((A("192.0.2.3"),), 443)]


def test_resolve_override_and_ip_literal_skip_dns() -> None:
    f = make(["pkgs.test"], resolve={"pkgs.test": "10.200.1.2"})
    assert f.start(http1.Connect("pkgs.test", 443, b"")) == [ReadHostAddresses()]
    assert f.feed(HostAddresses(NONE)) == [Connect((A("10.200.1.2"),), 443)]
    g = make(["0x7f.1:8080", "[2001:db8::1]"])
    assert g.start(http1.Connect("127.1", 8080, b"")) == [ReadHostAddresses()]
    assert g.feed(HostAddresses(NONE)) == [Connect((A("127.0.0.1"),), 8080)]  # the literal itself is allowed
    h = make(["[2001:db8::1]"])
    assert h.start(socks5.Request("2001:db8::1", 443, b"")) == [ReadHostAddresses()]


def test_embedded_ipv4_override_is_refused() -> None:
    f = make(["evil.test"], resolve={"evil.test": "64:ff9b::a9fe:a9fe"})
    f.start(http1.Connect("evil.test", 443, b""))
    notify = f.feed(HostAddresses(NONE))[0]
    assert isinstance(notify, Notify) and "embeds cloud metadata address 169.254.169.254" in notify.decision.reason


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (ResolveFailed("timeout"), "could not resolve: timeout"),
        (Resolved(()), "could not resolve: no addresses"),
        (Resolved(("not-an-address",)), "could not resolve: "),
    ],
)
def test_resolution_failures_are_errors_never_a_bypass(event: Resolved | ResolveFailed, reason: str) -> None:
    f = make(["example.com"])
    f.start(http1.Connect("example.com", 443, b""))
    reply, close = f.feed(event)
    assert isinstance(reply, SendClient) and reply.data.startswith(b"HTTP/1.1 502") and close == Close()
    r = record(f)
    assert r.decision == "error" and r.reason.startswith(reason)


def test_host_addresses_unreadable_fails_closed() -> None:
    f = make(["example.com"])
    f.start(socks5.Request("example.com", 443, b""))
    f.feed(Resolved(("203.0.113.7",)))
    assert f.feed(HostAddressesFailed("Too many open files")) == [
        SendClient(socks5.reply(socks5.GENERAL_FAILURE)),
        Close(),
    ]
    assert record(f).reason == "could not read this host's addresses: Too many open files"


def test_connect_failure_gives_the_socks5_code_and_records_the_address() -> None:
    f = make(["example.com"])
    f.start(socks5.Request("example.com", 443, b""))
    f.feed(Resolved(("203.0.113.7",)))
    f.feed(HostAddresses(NONE))
    fail = ConnectFailed("connect failed: Connection refused", socks5.CONNECTION_REFUSED, A("203.0.113.7"))
    assert f.feed(fail) == [SendClient(socks5.reply(socks5.CONNECTION_REFUSED)), Close()]
    r = record(f)
    assert (r.decision, r.addr, r.rule) == ("error", "203.0.113.7", "example.com")


def test_socks5_owed_handshake_bytes_go_first_and_success_reply() -> None:
    f = make(["example.com"])
    assert f.start(socks5.Request("example.com", 443, b"hello", send=b"\x05\x00")) == [
        SendClient(b"\x05\x00"),
        Resolve("example.com", 443),
    ]
    f.feed(Resolved(("203.0.113.7",)))
    f.feed(HostAddresses(NONE))
    assert f.feed(Connected(A("203.0.113.7"))) == [
        SendClient(socks5.reply(socks5.SUCCEEDED)),
        Relay(inspect=True, first_up=b"hello"),
    ]
    assert f.feed(FirstFlight(tls.NotTls())) == [StartUpstream(b"hello")]


def test_plain_http_sends_the_rewritten_head_and_is_not_inspected() -> None:
    f = make(["example.com"])
    head = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    f.start(http1.Forward("example.com", 80, "GET", head, b"body"))
    f.feed(Resolved(("203.0.113.7",)))
    f.feed(HostAddresses(NONE))
    assert f.feed(Connected(A("203.0.113.7"))) == [SendUpstream(head + b"body"), Relay(inspect=False)]
    assert record(f).proto == "http"


def test_host_header_mismatch_reject_is_a_recorded_denial() -> None:
    f = make(["example.com"])
    rej = http1.Reject(b"HTTP/1.1 403 ...", "Host header does not match the request target", True, "example.com", 80)
    notify, reply, close = f.start(rej)
    assert isinstance(notify, Notify) and notify.decision.kind == "invalid"
    assert reply == SendClient(rej.reply) and close == Close()
    assert record(f).decision == "deny"


def test_malformed_request_reject_is_not_a_decision() -> None:
    f = make(["example.com"])
    assert f.start(http1.Reject(b"HTTP/1.1 400 Bad Request\r\n\r\n", "bad")) == [
        SendClient(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        Close(),
    ]
    assert f.feed(Ended(0, 0, 0)) == []  # no decision, no record


def _tunnel(allow: list[str], target: str) -> ConnectionFlow:
    f = make(allow)
    f.start(http1.Connect(target, 443, b""))
    f.feed(Resolved(("203.0.113.7",)))
    f.feed(HostAddresses(NONE))
    f.feed(Connected(A("203.0.113.7")))
    return f


@pytest.mark.parametrize(
    ("verdict", "passes"),
    [
        (tls.ClientHello("allowed.example"), True),
        (tls.ClientHello("ALLOWED.example."), True),
        (tls.ClientHello("other-allowed.example"), True),  # another allowed name: fine
        (tls.ClientHello(None), True),  # no SNI (connecting to an address)
        (tls.NotTls(), True),  # SSH and friends
        (tls.ClientHello("fronted.example"), False),  # domain fronting
        (tls.ClientHello("bad name!"), False),
        (tls.Malformed("truncated"), False),
    ],
)
def test_first_flight_domain_fronting_guard(verdict: tls.Verdict, passes: bool) -> None:
    f = _tunnel(["allowed.example", "other-allowed.example"], "allowed.example")
    cmds = f.feed(FirstFlight(verdict))
    if passes:
        assert cmds == [StartUpstream(b"")]
        assert record(f).decision == "allow"
    else:
        notify, close = cmds  # after the 200: no refusal bytes, the tunnel is closed
        assert isinstance(notify, Notify) and notify.decision.kind == "invalid" and close == Close()
        assert record(f).decision == "deny"


def test_real_client_hello_is_judged() -> None:
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="fronted.example")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    f = _tunnel(["allowed.example"], "allowed.example")
    assert isinstance(f.feed(FirstFlight(tls.parse_client_hello(out.read())))[0], Notify)


def test_rules_can_be_replaced_at_run_time() -> None:
    """The decision seam: a RuleDecider given new rules decides the next connection by them."""
    decider = RuleDecider(compile_rules([], []))
    f = ConnectionFlow(decider, "s1", "T")
    assert isinstance(f.start(http1.Connect("example.com", 443, b""))[0], Notify)
    decider.replace(compile_rules(["example.com"], []))
    g = ConnectionFlow(decider, "s1", "T")
    assert g.start(http1.Connect("example.com", 443, b"")) == [Resolve("example.com", 443)]


def test_any_decider_plugs_in() -> None:
    """The flow only asks its decider: one that allows a name but forbids every address is obeyed."""

    class Strict(RuleDecider):
        def check_address(self, addr: IPAddress, port: int, host_addresses: frozenset[IPAddress]) -> Decision:
            return Decision(False, None, f"resolves to nothing allowed {addr}", "forbidden-address", addr, str(addr))

    f = ConnectionFlow(Strict(compile_rules(["example.com"], [])), "s1", "T")
    f.start(http1.Connect("example.com", 443, b""))
    f.feed(Resolved(("203.0.113.7",)))
    assert isinstance(f.feed(HostAddresses(NONE))[0], Notify)


def test_rules_are_compiled_once() -> None:
    """Matching never parses: IP rules and overrides carry parsed addresses from compile_rules()."""
    r: Rules = compile_rules(["10.1.2.3", "[::ffff:10.1.2.4]:8080"], [], {"a.test": "[::ffff:10.0.0.1]"})
    assert [x.addr for x in r.allow] == [A("10.1.2.3"), A("10.1.2.4")]
    assert r.override("a.test") == A("10.0.0.1")  # type: ignore[arg-type]
