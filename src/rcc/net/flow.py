"""One proxied connection's flow, sans-IO: a handshake event in, commands out; outcomes back in as events.

    flow = ConnectionFlow(decider, session, when)
    commands = flow.start(handshake_event)        # http1.Connect | Forward | Reject, socks5.Request | Reject
    commands = flow.feed(Resolved(...))           # ... one event per command that asks for one
    commands = flow.feed(Ended(up, down, ms))     # always last: -> [Audit(record)] when there is a decision

The server (proxy.py) executes the commands with sockets and feeds back what happened; this module has no
sockets, no clock and no event loop, so every decision path is a transcript test (tests/net/test_flow.py).

    start ─ Reject ─────────────────────────────────────────────► SendClient(reply), Close
          └ Connect/Forward/Request ─ decide(name) ─ deny ──────► Notify, SendClient(refusal), Close
                                          ├ no rule + asker ─► Ask ─ Answered(deny) ─► Notify, refusal, Close
                                          │                        └ Answered(allow) ─ deny rule now? ─► refusal
                                          │                                          └ as allow below
                                          └ allow ─ literal/override ─┐
                                                  └ Resolve ─ Resolved ┴► ReadHostAddresses
            HostAddresses ─ check_address(each) ─ any refused ──► Notify, SendClient(refusal), Close
                                              └ all fine ───────► Connect(addresses)
            Connected ─► SendClient(200 / SOCKS5 success) + Relay(inspect)   (plain HTTP: SendUpstream(head) + Relay)
            FirstFlight ─ SNI names another host ───────────────► Notify, Close
                        └ fine ─────────────────────────────────► StartUpstream(first bytes)
            Connected, a credential host (CONNECT/SOCKS5) ──────► SendClient(200 / success) + Inspect
            FirstFlight ─ SNI is not exactly the host ──────────► Notify, Close
                        ├ not TLS ──────────────────────────────► Relay (a plain tunnel: nothing injected)
                        └ SNI == host ──────────────────────────► Terminate ─ Terminated ─► (audit), Close
            ResolveFailed / HostAddressesFailed / ConnectFailed ► SendClient(502 / SOCKS5 code), Close

Invariants:
1. Fail closed: the only way to a Connect command is an allow Decision for the name and an allowed
   check_address() for every address of the one lookup; Connect carries exactly those addresses (the server
   connects to one of them and to nothing else: no second lookup, DNS rebinding cannot swap it).
2. If any resolved address of a name is forbidden, the whole name is refused.
3. The host is normalised once, here (hosts.normalize_host); the Decider and the audit record get that form.
4. Every connection that got a decision ends in exactly one Audit command (on Ended).
5. TLS is terminated (Terminate) only for a host in `terminated` (the session's credential hosts), only through
   CONNECT or SOCKS5 (never plain HTTP: no credential over cleartext), and only when the ClientHello's SNI is
   exactly that host (an SNI of another host, or none, is refused: a credential host's leaf is never shown
   for another name).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from rcc.net import http1, socks5, tls
from rcc.net.audit import AuditRecord
from rcc.net.decider import Decider
from rcc.net.hosts import Host, HostError, IPAddress, format_hostport, normalize_host, unmap
from rcc.net.notices import refusal_sentence
from rcc.net.rules import Decision

Proto = Literal["http", "connect", "socks5"]
HandshakeEvent = http1.Connect | http1.Forward | http1.Reject | socks5.Request | socks5.Reject

# ------------------------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class SendClient:
    data: bytes


@dataclass(frozen=True)
class Notify:
    """Tell the user (rate-limited: notices.DenialNotifier). `host` as the client wrote it."""

    host: str
    port: int
    decision: Decision


@dataclass(frozen=True)
class Resolve:
    """Look the name up once; feed Resolved or ResolveFailed."""

    name: str
    port: int


@dataclass(frozen=True)
class ReadHostAddresses:
    """This host's own addresses; feed HostAddresses or HostAddressesFailed."""


@dataclass(frozen=True)
class Connect:
    """Connect to the first of these that answers; feed Connected or ConnectFailed."""

    addresses: tuple[IPAddress, ...]
    port: int


@dataclass(frozen=True)
class SendUpstream:
    data: bytes


@dataclass(frozen=True)
class Relay:
    """Relay bytes both ways. inspect: relay server->client only, peek at the client's first flight (after
    `first_up`, bytes that came with the handshake) and feed FirstFlight; else start both directions now."""

    inspect: bool
    first_up: bytes = b""


@dataclass(frozen=True)
class StartUpstream:
    """The first flight passed: send `first_up` upstream, then relay client->server too, until the end."""

    first_up: bytes


@dataclass(frozen=True)
class Inspect:
    """A credential host: peek at the client's first flight (nothing relayed yet) and feed FirstFlight."""


@dataclass(frozen=True)
class Terminate:
    """Terminate the client's TLS, judge and rewrite its requests, re-encrypt upstream; feed Terminated."""

    host: str
    port: int


@dataclass(frozen=True)
class Ask:
    """Ask mode: hold the connection and ask the Decider's asker; feed Answered."""

    host: Host
    port: int
    decision: Decision  # the name phase's "no allow rule"


@dataclass(frozen=True)
class Audit:
    record: AuditRecord


@dataclass(frozen=True)
class Close:
    """The connection is over: close both sides (then feed Ended)."""


Command = (
    SendClient
    | Notify
    | Resolve
    | ReadHostAddresses
    | Connect
    | SendUpstream
    | Relay
    | StartUpstream
    | Inspect
    | Terminate
    | Ask
    | Audit
    | Close
)

# ------------------------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class Resolved:
    addresses: tuple[str, ...]  # as the resolver returned them (getaddrinfo: may carry %scope, be mapped)


@dataclass(frozen=True)
class ResolveFailed:
    error: str


@dataclass(frozen=True)
class HostAddresses:
    addresses: frozenset[IPAddress]


@dataclass(frozen=True)
class HostAddressesFailed:
    error: str


@dataclass(frozen=True)
class Connected:
    address: IPAddress


@dataclass(frozen=True)
class ConnectFailed:
    reason: str
    failure: int  # the SOCKS5 reply code for it (socks5.HOST_UNREACHABLE, CONNECTION_REFUSED, TTL_EXPIRED, ...)
    address: IPAddress  # the last address tried


@dataclass(frozen=True)
class FirstFlight:
    verdict: tls.Verdict


@dataclass(frozen=True)
class Answered:
    decision: Decision


@dataclass(frozen=True)
class Terminated:
    """The terminated connection ended. `refused`: a request (or the TLS setup) broke a rule; `error`: TLS to
    either side failed; `requests`: how many went upstream."""

    refused: str = ""
    error: str = ""
    requests: int = 0


@dataclass(frozen=True)
class Ended:
    bytes_up: int
    bytes_down: int
    duration_ms: int


FlowEvent = (
    Resolved
    | ResolveFailed
    | HostAddresses
    | HostAddressesFailed
    | Connected
    | ConnectFailed
    | FirstFlight
    | Answered
    | Terminated
    | Ended
)

# ------------------------------------------------------------------------------------------------ the flow


class ConnectionFlow:
    def __init__(self, decider: Decider, session: str, when: str, terminated: frozenset[str] = frozenset()) -> None:
        self.decider, self.session, self.when = decider, session, when
        self.terminated = terminated  # the credential hosts (normalised): TLS to them is terminated
        self.terminating = False
        self.proto: Proto = "http"
        self.host = ""  # as written; the normalised form once the name is allowed
        self.port = 0
        self.target: Host | None = None
        self.addr = ""
        self.decision = ""  # "" (none yet) | "allow" | "deny" | "error"
        self.rule = ""
        self.reason = ""
        self.failure = socks5.GENERAL_FAILURE
        self.addresses: tuple[IPAddress, ...] = ()
        self.first_up = b""
        self.learned = False  # learn mode let the name through (no rule): public addresses only
        self.overridden = False  # the address came from the user's network.resolve / --resolve

    # -------------------------------------------------------------------------------------------- entry points

    def start(self, ev: HandshakeEvent) -> list[Command]:
        if isinstance(ev, http1.Reject):
            if not ev.deny:
                return [SendClient(ev.reply), Close()]
            self.proto, self.host, self.port = "http", ev.host, ev.port
            d = Decision.invalid(ev.reason)
            self._set("deny", d)
            return [Notify(ev.host, ev.port, d), SendClient(ev.reply), Close()]
        if isinstance(ev, socks5.Reject):
            return [SendClient(ev.reply), Close()]
        first: list[Command] = []
        if isinstance(ev, http1.Connect):
            self.proto, self.first_up = "connect", ev.leftover
        elif isinstance(ev, http1.Forward):
            self.proto, self.first_up = "http", ev.head + ev.leftover
        else:
            self.proto, self.first_up = "socks5", ev.leftover
            if ev.send:
                first.append(SendClient(ev.send))
        self.host, self.port = ev.host, ev.port
        return first + self._decide_name()

    def feed(self, ev: FlowEvent) -> list[Command]:
        if isinstance(ev, Resolved):
            return self._resolved(ev.addresses)
        if isinstance(ev, ResolveFailed):
            return self._error(f"could not resolve: {ev.error}", socks5.HOST_UNREACHABLE)
        if isinstance(ev, HostAddresses):
            return self._check_addresses(ev.addresses)
        if isinstance(ev, HostAddressesFailed):
            return self._error(f"could not read this host's addresses: {ev.error}", socks5.GENERAL_FAILURE)
        if isinstance(ev, Connected):
            return self._connected(ev.address)
        if isinstance(ev, ConnectFailed):
            self.addr = str(ev.address)
            return self._error(ev.reason, ev.failure)
        if isinstance(ev, FirstFlight):
            return self._first_flight(ev.verdict)
        if isinstance(ev, Answered):
            return self._answered(ev.decision)
        if isinstance(ev, Terminated):
            return self._terminated(ev)
        return self._ended(ev)

    # -------------------------------------------------------------------------------------------- steps

    def _decide_name(self) -> list[Command]:
        try:
            target = normalize_host(self.host)
        except HostError as e:
            return self._deny(Decision.invalid(f"invalid host: {e}"))
        d = self.decider.decide(target, self.port)
        if not d.allowed and d.kind == "no-allow-rule" and self.decider.asker is not None:
            self.target = target
            return [Ask(target, self.port, d)]  # ask mode: never for a deny rule or an invalid name
        if not d.allowed:
            return self._deny(d)
        return self._allowed_name(target, d)

    def _answered(self, d: Decision) -> list[Command]:
        assert self.target is not None
        if d.allowed:
            # Deny rules stay absolute: one added while the question was open wins over the answer.
            now = self.decider.decide(self.target, self.port)
            if now.kind == "denied-by-rule":
                return self._deny(now)
            return self._allowed_name(self.target, d)
        return self._deny(d)

    def _allowed_name(self, target: Host, d: Decision) -> list[Command]:
        self._set("allow", d)
        self.learned = d.kind == "learned"
        self.target, self.host = target, str(target)
        if not isinstance(target, str):
            self.addresses = (target,)
            return [ReadHostAddresses()]
        override = self.decider.override(target)
        if override is not None:
            self.addresses, self.overridden = (override,), True
            return [ReadHostAddresses()]
        return [Resolve(target, self.port)]

    def _resolved(self, found: tuple[str, ...]) -> list[Command]:
        try:
            addrs = tuple(dict.fromkeys(unmap(ipaddress.ip_address(a.split("%")[0])) for a in found))
        except ValueError as e:
            return self._error(f"could not resolve: {e}", socks5.HOST_UNREACHABLE)
        if not addrs:
            return self._error("could not resolve: no addresses", socks5.HOST_UNREACHABLE)
        self.addresses = addrs
        return [ReadHostAddresses()]

    def _check_addresses(self, own: frozenset[IPAddress]) -> list[Command]:
        for a in self.addresses:
            if self.learned and not self.overridden and not a.is_global:
                self.addr = str(a)
                why = f"learn mode lets a name no rule covers reach public addresses only (not {a})"
                return self._deny(Decision(False, None, why, "forbidden-address", a, str(a)))
            d = self.decider.check_address(a, self.port, own)
            if not d.allowed:
                self.addr = str(a)
                return self._deny(d)
        return [Connect(self.addresses, self.port)]

    def _connected(self, addr: IPAddress) -> list[Command]:
        self.addr = str(addr)
        if self.proto == "http":  # plain HTTP: the rewritten head goes first, nothing to inspect
            first: list[Command] = [SendUpstream(self.first_up)] if self.first_up else []
            return [*first, Relay(inspect=False)]
        ok = http1.CONNECT_OK if self.proto == "connect" else socks5.reply(socks5.SUCCEEDED)
        if self.host in self.terminated:
            self.terminating = True
            return [SendClient(ok), Inspect()]
        return [SendClient(ok), Relay(inspect=True, first_up=self.first_up)]

    def _first_flight(self, verdict: tls.Verdict) -> list[Command]:
        """Domain fronting guard: a TLS tunnel's SNI must name the allowed host (or another allowed host)."""
        if self.terminating:
            return self._terminate(verdict)
        if isinstance(verdict, tls.Malformed):
            return self._deny_in_tunnel(Decision.invalid(f"unparseable TLS ClientHello ({verdict.reason})"))
        if isinstance(verdict, tls.ClientHello) and verdict.server_name is not None:
            try:
                sni = normalize_host(verdict.server_name)
            except HostError:
                return self._deny_in_tunnel(Decision.invalid("TLS server name is not a valid host name"))
            if str(sni) != self.host and not self.decider.decide(sni, self.port).allowed:
                return self._deny_in_tunnel(Decision.invalid(f"TLS server name {sni} does not match {self.host}"))
        return [StartUpstream(self.first_up)]

    def _terminate(self, verdict: tls.Verdict) -> list[Command]:
        """A credential host: only TLS whose SNI is exactly this host is terminated; anything else is refused
        (a tunnel to a credential host that is not TLS, or names another host, could carry the placeholder
        past rcc's request checks, or get this host's certificate shown for another name)."""
        if self.first_up:
            return self._deny_in_tunnel(Decision.invalid("bytes sent with the CONNECT request to a credential host"))
        if isinstance(verdict, tls.NotTls):
            # Not TLS (ssh to github.com:22, say): an ordinary tunnel. Nothing is injected into it, and a
            # placeholder sent through it is only the placeholder.
            self.terminating = False
            return [Relay(inspect=False)]
        if not isinstance(verdict, tls.ClientHello):
            what = verdict.reason if isinstance(verdict, tls.Malformed) else "incomplete"
            why = f"unparseable TLS ClientHello to a credential host ({what})"
            return self._deny_in_tunnel(Decision.invalid(why))
        try:
            sni = str(normalize_host(verdict.server_name or ""))
        except HostError:
            sni = ""
        if sni != self.host:
            shown = verdict.server_name or "none"
            why = f"TLS server name {shown} is not the credential host {self.host}"
            return self._deny_in_tunnel(Decision.invalid(why))
        return [Terminate(self.host, self.port)]

    def _terminated(self, ev: Terminated) -> list[Command]:
        if ev.refused:
            d = Decision.invalid(ev.refused)
            self._set("deny", d)
            return [Notify(self.host, self.port, d), Close()]
        if ev.error:
            self.decision, self.reason = "error", ev.error
        else:
            self.reason = f"{self.reason}; TLS terminated for a credential ({ev.requests} request(s))"
        return [Close()]

    def _ended(self, ev: Ended) -> list[Command]:
        if not self.decision:
            return []
        rec = AuditRecord(
            time=self.when,
            session=self.session,
            proto=self.proto,
            host=self.host,
            port=self.port,
            addr=self.addr,
            decision=self.decision,
            rule=self.rule,
            reason=self.reason,
            bytes_up=ev.bytes_up,
            bytes_down=ev.bytes_down,
            duration_ms=ev.duration_ms,
        )
        return [Audit(rec)]

    # -------------------------------------------------------------------------------------------- outcomes

    def _set(self, decision: str, d: Decision) -> None:
        self.decision, self.rule, self.reason = decision, d.rule or "", d.reason

    def _deny(self, d: Decision) -> list[Command]:
        self._set("deny", d)
        if self.proto == "socks5":
            refusal = socks5.reply(socks5.NOT_ALLOWED)
        else:
            refusal = http1.denied(d.reason, self.host, self.port, refusal_sentence(self.host, self.port, d))
        return [Notify(self.host, self.port, d), SendClient(refusal), Close()]

    def _deny_in_tunnel(self, d: Decision) -> list[Command]:
        """After the 200 / SOCKS5 success: nothing more to reply, the tunnel is just closed."""
        self._set("deny", d)
        return [Notify(self.host, self.port, d), Close()]

    def _error(self, reason: str, failure: int) -> list[Command]:
        self.decision, self.reason, self.failure = "error", reason, failure
        if self.proto == "socks5":
            return [SendClient(socks5.reply(failure)), Close()]
        return [SendClient(http1.bad_gateway(f"{format_hostport(self.host, self.port)}: {reason}")), Close()]
