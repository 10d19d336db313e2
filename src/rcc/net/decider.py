"""The decision point of the egress proxy: the one object the connection flow asks. A seam on purpose.

The flow (flow.py) never looks at rules itself; it asks a Decider three questions: may this host:port be
attempted (before any DNS lookup), is there an address override for this name, and may this resolved address be
connected to. RuleDecider answers from compiled Rules (rules.py) and can be given new Rules while the proxy runs
(replace(): one attribute store, so each question sees either the old rules or the new, never a mix); a later
decider (asking the user, live allow/deny) plugs in here without touching the flow or the server.
"""

from __future__ import annotations

from typing import Protocol

from rcc.net.hosts import Host, IPAddress
from rcc.net.rules import Decision, Rules, check_address, decide_host


class Asker(Protocol):
    """Ask mode (rcc.live.ask): someone may be asked about a host no rule covers. The flow asks only after the
    name phase found no rule (never for a deny rule), and the address phase still judges whatever is allowed."""

    async def ask(self, host: Host, port: int, decision: Decision) -> Decision:
        """The answer for this connection: an allow Decision, or a deny Decision saying why (no watcher, the
        queue is full, no answer in time, the user said no). Must not raise, and must return in bounded time."""
        ...


class Decider(Protocol):
    asker: Asker | None  # None: a host no rule covers is denied at once

    def decide(self, host: Host, port: int) -> Decision:
        """The name phase: `host` is normalised (hosts.normalize_host). No I/O, no DNS."""
        ...

    def override(self, host: Host) -> IPAddress | None:
        """The address to use instead of DNS for this name (network.resolve / --resolve), if any."""
        ...

    def check_address(self, addr: IPAddress, port: int, host_addresses: frozenset[IPAddress]) -> Decision:
        """The address phase: judge one address the name resolved to (or the literal itself)."""
        ...


class RuleDecider:
    """Decides by compiled Rules (compiled once, by compile_rules(), before the proxy starts)."""

    def __init__(self, rules: Rules, asker: Asker | None = None, learn: bool = False) -> None:
        self.rules = rules
        self.asker = asker
        self.learn = learn  # learn mode: a name no rule covers is allowed as "learned" (public addresses only)

    def replace(self, rules: Rules) -> None:
        """New rules from the next question on (connections already relaying are not re-judged)."""
        self.rules = rules

    def decide(self, host: Host, port: int) -> Decision:
        d = decide_host(self.rules, host, port)
        if self.learn and d.kind == "no-allow-rule":
            return Decision(True, None, "learned: no rule covers it, let through by learn mode", "learned", host)
        return d

    def override(self, host: Host) -> IPAddress | None:
        return self.rules.override(host)

    def check_address(self, addr: IPAddress, port: int, host_addresses: frozenset[IPAddress]) -> Decision:
        return check_address(self.rules, addr, port, host_addresses)
