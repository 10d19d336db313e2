"""Denial notices for the user's terminal: one short line per denial naming what would allow it, rate-limited.

Invariants:
1. Host names and reasons come from the sandbox: every line is made printable (hosts.printable) before it is
   emitted, so an escape sequence in a host name never reaches the user's terminal.
2. The suggestion is chosen by the Decision's kind, never by parsing its reason text.
3. A broken notify callback (stderr closed) never breaks the proxy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from rcc.net.hosts import format_hostport, printable
from rcc.net.rules import Decision, suggest_allow


class DenialNotifier:
    """Turns denials into short stderr lines: each host:port at most once per `per_key` seconds, and at most
    `burst` lines per `window` seconds overall (then one "suppressed" note)."""

    def __init__(
        self,
        notify: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        per_key: float = 60.0,
        burst: int = 10,
        window: float = 10.0,
    ) -> None:
        self._notify, self._clock = notify, clock
        self._per_key, self._burst, self._window = per_key, burst, window
        self._last: dict[tuple[str, int], float] = {}
        self._window_start = -1e18
        self._count = 0
        self._suppressed = 0

    def __call__(self, host: str, port: int, decision: Decision) -> None:
        now = self._clock()
        key = (host, port)
        if now - self._last.get(key, -1e18) < self._per_key:
            return
        if now - self._window_start >= self._window:
            if self._suppressed:
                self._emit(f"rcc: {self._suppressed} more denials not shown (see `rcc log --denied`)")
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count >= self._burst:
            self._suppressed += 1
            return
        self._count += 1
        self._last[key] = now
        if len(self._last) > 4096:  # bounded memory
            self._last.clear()
        self._emit(denial_message(host, port, decision))

    def emit(self, line: str) -> None:
        """Send a line that is not rate-limited (rare events: the proxy stopping)."""
        self._emit(line)

    def _emit(self, line: str) -> None:
        with contextlib.suppress(Exception):  # a broken notifier never breaks the proxy
            self._notify(line)


def refusal_sentence(host: str, port: int, decision: Decision) -> str:
    """The one plain sentence the sandboxed program (and the model reading its output) gets with a refusal: which
    host, that the user's sandbox policy refused it, and the exact command the user would run to allow it.
    ASCII only (it goes into an HTTP status line and header); the host is made printable."""
    hp = _ascii(format_hostport(host, port))
    if decision.kind == "denied-by-rule":
        return (
            f"rcc sandbox: the user's sandbox policy denies {hp} with the rule {_ascii(decision.rule or '')}; "
            "only the user can change it (network.deny in their config), do not retry"
        )
    if decision.kind == "forbidden-address":
        return (
            f"rcc sandbox: the user's sandbox policy refused {hp}: it {_ascii(decision.reason)}; "
            f"the user would have to run: rcc allow {_ascii(suggest_allow(decision.address, port))}"
        )
    if decision.kind == "invalid":
        return f"rcc sandbox: the user's sandbox policy refused {hp}: {_ascii(decision.reason)}"
    return (
        f"rcc sandbox: the user's sandbox policy refused a connection to {hp} (no allow rule); "
        f"to allow it the user can run: rcc allow {_ascii(suggest_allow(host, port))}"
    )


def _ascii(text: str) -> str:
    """Printable ASCII only: the sentence goes into an HTTP status line and header (sandbox-chosen host names)."""
    return "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in printable(text))


def denial_message(host: str, port: int, decision: Decision) -> str:
    """One line for stderr naming what would allow it. Host and reason come from the sandbox: made printable."""
    hp, reason = printable(format_hostport(host, port)), printable(decision.reason)
    if decision.kind == "denied-by-rule":
        return f"rcc: denied {hp} ({reason}) — remove it from network.deny / --deny to allow it"
    if decision.kind == "forbidden-address":
        return (
            f"rcc: denied {hp} ({reason}) — allow that address itself with "
            f"--allow {printable(suggest_allow(decision.address, port))} if you mean it"
        )
    if decision.kind == "invalid":
        return f"rcc: denied {hp} ({reason})"
    s = printable(suggest_allow(host, port))
    return f"rcc: denied {hp} ({reason}) — allow with --allow {s} or network.allow in config"
