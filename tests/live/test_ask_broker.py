"""AskBroker (rcc.live.ask) with a real event loop and real threads: held only while an answering watcher is
attached, bounded in time and in number, one answer per question, and nothing left hanging."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from rcc.live.ask import AskBroker, Watcher
from rcc.net.rules import Decision

NO_RULE = Decision(False, None, "no allow rule", "no-allow-rule", "docs.example")


class Events:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def send(self, ev: dict[str, Any]) -> None:
        with self.cond:
            self.got.append(ev)
            self.cond.notify_all()

    def wait(self, kind: str, n: int = 1, timeout: float = 5) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(found := [e for e in self.got if e["event"] == kind]) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind} event: {self.got}"
                self.cond.wait(left)
        return found


def broker(timeout: float = 5, **kw: Any) -> tuple[AskBroker, list[str]]:
    applied: list[str] = []

    def apply(rule: str, who: Any) -> str:
        applied.append(rule)
        return ""

    return AskBroker(timeout, apply, **kw), applied


def ask_in_thread(b: AskBroker, host: str = "docs.example", port: int = 443) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(b.ask(host, port, NO_RULE))))
    t.start()
    return t, out


def test_no_watcher_denies_at_once() -> None:
    b, _ = broker()
    t0 = time.monotonic()
    d = asyncio.run(b.ask("docs.example", 443, NO_RULE))
    assert not d.allowed and "no rcc watch attached" in d.reason and time.monotonic() - t0 < 0.5


def test_view_only_watcher_does_not_hold_questions() -> None:
    b, _ = broker()
    ev = Events()
    b.attach(Watcher(ev.send), answers=False)
    assert not asyncio.run(b.ask("docs.example", 443, NO_RULE)).allowed


def test_answer_session_applies_a_rule_and_allows() -> None:
    b, applied = broker()
    ev = Events()
    b.attach(Watcher(ev.send))
    t, out = ask_in_thread(b)
    (q,) = ev.wait("ask")
    assert q["target"] == "docs.example:443"
    assert b.answer(q["id"], "session", None) == ""
    t.join(5)
    assert out[0].allowed and applied == ["docs.example"]
    assert b.answer(q["id"], "once", None).startswith("question 1 is already resolved")  # one answer only


def test_unanswered_question_is_denied_at_the_timeout() -> None:
    b, _ = broker(timeout=0.5)
    b.attach(Watcher(Events().send))
    t0 = time.monotonic()
    d = asyncio.run(b.ask("docs.example", 443, NO_RULE))
    assert not d.allowed and "no answer within 0.5 s" in d.reason and 0.4 < time.monotonic() - t0 < 3


def test_race_answer_against_timeout_resolves_once() -> None:
    """Answers arriving right at the deadline: each question ends allowed or denied, never both, never hung."""
    for _ in range(20):
        b, _ = broker(timeout=0.05)
        ev = Events()
        b.attach(Watcher(ev.send))
        t, out = ask_in_thread(b)
        (q,) = ev.wait("ask")
        time.sleep(0.045)
        err = b.answer(q["id"], "once", None)
        t.join(5)
        assert not t.is_alive()
        assert out[0].allowed == (err == ""), (err, out[0])
        assert len(ev.wait("resolved")) == 1


def test_last_watcher_leaving_denies_open_questions_at_once() -> None:
    b, _ = broker(timeout=30)
    w1, w2 = Watcher(Events().send), Watcher((e2 := Events()).send)
    b.attach(w1)
    b.attach(w2)
    t, out = ask_in_thread(b)
    e2.wait("ask")
    b.detach(w1)
    time.sleep(0.1)
    assert t.is_alive()  # another watcher is still there
    t0 = time.monotonic()
    b.detach(w2)
    t.join(5)
    assert not out[0].allowed and "the last rcc watch left" in out[0].reason and time.monotonic() - t0 < 1


def test_two_watchers_see_the_question_and_the_first_answer_wins() -> None:
    b, _ = broker()
    e1, e2 = Events(), Events()
    b.attach(Watcher(e1.send))
    b.attach(Watcher(e2.send))
    t, out = ask_in_thread(b)
    (q1,), (q2,) = e1.wait("ask"), e2.wait("ask")
    assert q1["id"] == q2["id"]
    assert b.answer(q1["id"], "deny", None) == ""
    assert b.answer(q2["id"], "once", None) != ""
    t.join(5)
    assert not out[0].allowed and "denied by the user" in out[0].reason
    assert e2.wait("resolved")[0]["answer"] == "deny"


def test_flooding_the_queue_is_bounded_with_a_summary() -> None:
    """Attack: the sandbox opens connections to hundreds of new hosts to bury the user in questions. Past
    max_pending they are denied at once, the watcher gets one summary; the open questions stay answerable
    (control)."""
    b, _ = broker(timeout=10, max_pending=4)
    ev = Events()
    b.attach(Watcher(ev.send))
    held = [ask_in_thread(b, f"h{i}.example") for i in range(4)]
    ev.wait("ask", 4)
    t0 = time.monotonic()
    for i in range(50):
        assert "queue is full" in asyncio.run(b.ask(f"x{i}.example", 443, NO_RULE)).reason
    assert time.monotonic() - t0 < 2
    (summary,) = ev.wait("overflow")
    assert summary["denied"] == 1 and summary["max_pending"] == 4
    for q in ev.wait("ask", 4):
        assert b.answer(q["id"], "once", None) == ""
    for t, out in held:
        t.join(5)
        assert out[0].allowed


def test_same_host_joins_the_open_question() -> None:
    b, _ = broker()
    ev = Events()
    b.attach(Watcher(ev.send))
    a, b1 = ask_in_thread(b), ask_in_thread(b)
    time.sleep(0.2)
    (q,) = ev.wait("ask")
    b.answer(q["id"], "once", None)
    for t, out in (a, b1):
        t.join(5)
        assert out[0].allowed


def test_session_ending_with_questions_open_denies_them() -> None:
    b, _ = broker(timeout=30)
    ev = Events()
    b.attach(Watcher(ev.send))
    t, out = ask_in_thread(b)
    ev.wait("ask")
    b.close()
    t.join(5)
    assert not out[0].allowed and "the session ended" in out[0].reason
    assert not asyncio.run(b.ask("late.example", 443, NO_RULE)).allowed  # closed: at once


def test_slow_watcher_never_blocks_the_proxy() -> None:
    gate = threading.Event()
    b, _ = broker()
    b.attach(Watcher(lambda ev: gate.wait()))
    t0 = time.monotonic()
    for i in range(1000):
        b.broadcast({"event": "decision", "n": i})
    assert time.monotonic() - t0 < 1
    gate.set()
