"""Ask mode: a connection to a host no rule covers is held while a `rcc watch` is attached, until a watcher
answers or the time is up. The AskBroker is the proxy's Asker (net/decider.py) and the watchers' side of it.

Invariants:
1. Never hang an unattended agent: with no watcher attached (or the broker closed) a question is denied at once;
   an open question is denied when its time is up (ask_timeout), when the last watcher leaves, or when the
   session ends. Every ask() returns within ask_timeout.
2. Bounded: at most MAX_PENDING open questions (host:port already asked joins the open question); past it a
   request is denied at once and counted, and watchers get one summary line per burst.
3. One answer per question: the first of answer / timeout / last-watcher-gone / close resolves it (under the
   lock); a later answer gets "already resolved". An answer names the question by its id, which is unique
   within the session; questions of another session are not in this broker.
4. Watchers get events through a bounded queue each (the proxy's thread never blocks on a slow watcher; events
   past the bound are dropped and counted).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from rcc.net.hosts import Host, format_hostport
from rcc.net.rules import Decision

MAX_PENDING = 16
WATCHER_QUEUE = 256
Answer = str  # "once" | "session" | "always" | "deny"
ANSWERS = ("once", "session", "always", "deny")


class Watcher:
    """One attached `rcc watch`: events go to `send` (blocking, on this watcher's own thread) via a queue."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        import queue

        self._send = send
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(WATCHER_QUEUE)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="rcc-watcher", daemon=True)
        self._thread.start()

    def push(self, event: dict[str, Any]) -> None:
        import queue

        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        import queue

        with contextlib.suppress(queue.Full):
            self._q.put_nowait(None)

    def _run(self) -> None:
        while (ev := self._q.get()) is not None:
            try:
                self._send(ev)
            except OSError:
                return


class _Question:
    def __init__(self, qid: int, host: Host, port: int, deadline: float) -> None:
        self.id, self.host, self.port, self.deadline = qid, host, port, deadline
        self.result: concurrent.futures.Future[tuple[str, str]] = concurrent.futures.Future()  # (answer, by)


class AskBroker:
    def __init__(
        self,
        timeout: float,
        apply_rule: Callable[[str, Any], str],
        *,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """apply_rule(rule, who) makes a session allow rule (the control server's path, audited; `who` is passed
        through from answer()); returns an error text, "" when applied."""
        self.timeout = timeout
        self.max_pending = max_pending
        self._apply_rule = apply_rule
        self._clock = clock
        self._lock = threading.Lock()
        self._watchers: set[Watcher] = set()
        self._answering: set[Watcher] = set()  # watchers on a terminal: questions are held only for these
        self._open: dict[int, _Question] = {}
        self._ids = itertools.count(1)
        self._overflow = 0
        self._closed = False

    # ------------------------------------------------------------------------------------------ watchers

    def attach(self, w: Watcher, answers: bool = True) -> None:
        with self._lock:
            self._watchers.add(w)
            if answers:
                self._answering.add(w)
            pending = [self._event(q) for q in self._open.values()]
        for ev in pending:
            w.push(ev)

    def detach(self, w: Watcher) -> None:
        with self._lock:
            self._watchers.discard(w)
            had = w in self._answering
            self._answering.discard(w)
            last = had and not self._answering
        w.close()
        if last:
            self._resolve_all("deny", "the last rcc watch left")

    def watchers(self) -> int:
        return len(self._watchers)

    def broadcast(self, event: dict[str, Any]) -> None:
        for w in list(self._watchers):
            w.push(event)

    # ------------------------------------------------------------------------------------------ the proxy's side

    async def ask(self, host: Host, port: int, decision: Decision) -> Decision:
        new_event: dict[str, Any] | None = None
        overflow = 0
        with self._lock:
            if self._closed or not self._answering:
                return _deny(decision, "no rcc watch attached to ask")
            q = next((o for o in self._open.values() if (o.host, o.port) == (host, port)), None)
            if q is None and len(self._open) >= self.max_pending:
                self._overflow += 1
                overflow = self._overflow
            elif q is None:
                q = _Question(next(self._ids), host, port, self._clock() + self.timeout)
                self._open[q.id] = q
                new_event = self._event(q)
        if q is None:
            if overflow == 1 or overflow % 100 == 0:  # one summary per burst (and a count every 100)
                self.broadcast({"event": "overflow", "denied": overflow, "max_pending": self.max_pending})
            return _deny(decision, f"the approval queue is full ({self.max_pending} open questions)")
        if new_event is not None:
            self.broadcast(new_event)
        try:
            answer, by = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(q.result)), max(0.0, q.deadline - self._clock())
            )
        except TimeoutError:
            self._resolve(q, "deny", f"no answer within {self.timeout:g} s")
            answer, by = q.result.result()
        except asyncio.CancelledError:  # the connection went away (or the session ends) while asking
            self._resolve(q, "deny", "the connection ended while asking")
            raise
        if answer in ("once", "session", "always"):
            return Decision(True, None, f"allowed by the user in rcc watch ({answer})", "allowed", host)
        return _deny(decision, by or "denied by the user in rcc watch")

    # ------------------------------------------------------------------------------------------ answers

    def answer(self, qid: int, answer: Answer, who: Any) -> str:
        """A watcher's answer; "" when it resolved the question, else why not."""
        if answer not in ANSWERS:
            return f"unknown answer {answer!r} (known: {', '.join(ANSWERS)})"
        with self._lock:
            q = self._open.get(qid)
            if q is None or q.result.done():
                return f"question {qid} is already resolved (or never was)"
        if answer in ("session", "always"):
            from rcc.net.rules import suggest_allow

            err = self._apply_rule(suggest_allow(q.host, q.port), who)
            if err:
                return err
        if not self._resolve(q, answer, "denied by the user in rcc watch"):
            return f"question {qid} was resolved first (timeout or another watcher)"
        return ""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watchers = list(self._watchers)
            self._watchers.clear()
            self._answering.clear()
        self._resolve_all("deny", "the session ended")
        for w in watchers:
            w.close()

    # ------------------------------------------------------------------------------------------ internals

    def _resolve(self, q: _Question, answer: str, why: str) -> bool:
        with self._lock:
            if q.result.done():
                return False
            q.result.set_result((answer, why if answer == "deny" else ""))
            self._open.pop(q.id, None)
            if not self._open:
                self._overflow = 0
        self.broadcast({"event": "resolved", "id": q.id, "answer": answer, "why": why})
        return True

    def _resolve_all(self, answer: str, why: str) -> None:
        with self._lock:
            qs = list(self._open.values())
        for q in qs:
            self._resolve(q, answer, why)

    def _event(self, q: _Question) -> dict[str, Any]:
        return {
            "event": "ask",
            "id": q.id,
            "host": str(q.host),
            "port": q.port,
            "target": format_hostport(str(q.host), q.port),
            "seconds": max(0, round(q.deadline - self._clock())),
        }


def _deny(d: Decision, why: str) -> Decision:
    return Decision(False, None, f"{d.reason}; {why}", "no-allow-rule", d.host)
