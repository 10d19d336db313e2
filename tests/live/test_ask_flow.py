"""Ask mode in the connection flow (rcc.net.flow), as transcripts: only a host no rule covers is asked about;
deny rules and the address guards stay absolute whatever the answer."""

from __future__ import annotations

import ipaddress

from rcc.net import http1
from rcc.net.decider import RuleDecider
from rcc.net.flow import Answered, Ask, Close, Connect, ConnectionFlow, Ended, HostAddresses, Resolve, SendClient
from rcc.net.rules import Decision, compile_rules


class NeverCalled:
    async def ask(self, host: object, port: int, decision: Decision) -> Decision:
        raise AssertionError("the flow asks through commands, never directly")


def flow(allow: list[str], deny: list[str] | None = None, resolve: dict[str, str] | None = None) -> ConnectionFlow:
    d = RuleDecider(compile_rules(allow, deny or [], resolve or {}), asker=NeverCalled())
    return ConnectionFlow(d, "s1", "T")


YES = Decision(True, None, "allowed by the user in rcc watch (once)", "allowed", "docs.example")


def test_unknown_host_is_asked_about_and_an_allow_goes_on_to_resolve() -> None:
    f = flow(["other.example"])
    (ask,) = f.start(http1.Connect("docs.example", 443, b""))
    assert isinstance(ask, Ask) and (ask.host, ask.port, ask.decision.kind) == ("docs.example", 443, "no-allow-rule")
    assert f.feed(Answered(YES)) == [Resolve("docs.example", 443)]
    f.feed(Ended(0, 0, 1))


def test_a_no_answer_is_a_refusal_with_the_sentence() -> None:
    f = flow([])
    f.start(http1.Connect("docs.example", 443, b""))
    no = Decision(False, None, "no allow rule; no rcc watch attached to ask", "no-allow-rule", "docs.example")
    cmds = f.feed(Answered(no))
    assert isinstance(cmds[1], SendClient) and b"rcc allow docs.example" in cmds[1].data and cmds[-1] == Close()
    (audit,) = f.feed(Ended(0, 0, 1))
    assert audit.record.decision == "deny" and "no rcc watch" in audit.record.reason  # type: ignore[union-attr]


def test_deny_rule_is_never_asked_about() -> None:
    f = flow(["*.corp.example"], ["docs.corp.example"])
    cmds = f.start(http1.Connect("docs.corp.example", 443, b""))
    assert not any(isinstance(c, Ask) for c in cmds) and cmds[-1] == Close()


def test_deny_rule_added_while_asking_wins_over_the_answer() -> None:
    f = flow([])
    f.start(http1.Connect("docs.example", 443, b""))
    f.decider.replace(compile_rules([], ["docs.example"]))  # type: ignore[attr-defined]
    cmds = f.feed(Answered(YES))
    assert not any(isinstance(c, Resolve) for c in cmds) and cmds[-1] == Close()


def test_allowed_answer_still_meets_the_address_guards() -> None:
    """Attack: get a name approved that resolves to loopback (or metadata). The answer allows the name only."""
    f = flow([])
    f.start(http1.Connect("docs.example", 443, b""))
    assert f.feed(Answered(YES)) == [Resolve("docs.example", 443)]
    from rcc.net.flow import ReadHostAddresses, Resolved

    assert f.feed(Resolved(("127.0.0.1",))) == [ReadHostAddresses()]
    cmds = f.feed(HostAddresses(frozenset()))
    assert not any(isinstance(c, Connect) for c in cmds) and cmds[-1] == Close()
    # control: an ordinary address connects
    g = flow([])
    g.start(http1.Connect("docs.example", 443, b""))
    g.feed(Answered(YES))
    g.feed(Resolved(("203.0.113.9",)))
    assert g.feed(HostAddresses(frozenset())) == [Connect((ipaddress.ip_address("203.0.113.9"),), 443)]
