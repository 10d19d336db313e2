"""The refusal a sandboxed program (and the model reading its output) gets: one plain ASCII sentence naming the
host, saying the user's sandbox policy refused it and the exact `rcc allow` command; in the 403's status line and
body. Pure: notices.refusal_sentence and http1.denied; the real clients are in test_proxy_sandbox.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rcc.net import http1
from rcc.net.notices import refusal_sentence
from rcc.net.rules import Decision, compile_rules, decide_host


def test_no_allow_rule_names_host_policy_and_command() -> None:
    d = decide_host(compile_rules(["other.example"], []), "docs.example.org", 443)
    s = refusal_sentence("docs.example.org", 443, d)
    assert s == (
        "rcc sandbox: the user's sandbox policy refused a connection to docs.example.org:443 (no allow rule); "
        "to allow it the user can run: rcc allow docs.example.org"
    )


def test_other_port_suggests_the_port() -> None:
    d = decide_host(compile_rules([], []), "example.org", 8443)
    assert refusal_sentence("example.org", 8443, d).endswith("rcc allow example.org:8443")


def test_deny_rule_says_only_the_user_can_change_it() -> None:
    d = decide_host(compile_rules(["*.example.org"], ["evil.example.org"]), "evil.example.org", 443)
    s = refusal_sentence("evil.example.org", 443, d)
    assert "denies evil.example.org:443 with the rule evil.example.org" in s and "rcc allow" not in s


def test_forbidden_address_names_the_address() -> None:
    d = Decision(False, None, "resolves to loopback", "forbidden-address", None, "127.0.0.1")
    s = refusal_sentence("sneaky.example", 443, d)
    assert "refused sneaky.example:443: it resolves to loopback" in s and s.endswith("rcc allow 127.0.0.1")


def test_escape_sequences_in_host_never_reach_the_status_line() -> None:
    """Attack: a host name carrying a terminal escape or CR LF (header injection into the 403 head)."""
    d = Decision.invalid("invalid host")
    s = refusal_sentence("a\x1b]0;pwned\x07\r\nX-Evil: 1", 443, d)
    assert all(0x20 <= ord(c) < 0x7F for c in s)
    head = http1.denied("invalid host", "x", 443, s).split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Evil" not in head and b"\x1b" not in head


@given(st.text(max_size=80), st.integers(1, 65535))
def test_refusal_head_is_always_one_well_formed_status_line(host: str, port: int) -> None:
    s = refusal_sentence(host, port, Decision.invalid("x"))
    reply = http1.denied("x", host, port, s)
    status = reply.split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 403 Forbidden - rcc sandbox: ")
    assert all(0x20 <= b < 0x7F for b in status)


def test_denied_keeps_forbidden_first_and_the_header() -> None:
    r = http1.denied("no allow rule", "example.org", 443, "rcc sandbox: refused")
    assert r.startswith(b"HTTP/1.1 403 Forbidden - rcc sandbox: refused\r\n")
    assert b"\r\nX-Rcc-Denied: no allow rule\r\n" in r and r.endswith(b"\r\n\r\nrcc sandbox: refused\n")
