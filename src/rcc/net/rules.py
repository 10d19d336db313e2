"""Egress rules: parse allow/deny entries, expand presets, and decide(rules, host, port) -> Decision. Pure.

Rule syntax (one string per entry; see docs/network.md):
    example.com            exactly that name
    *.example.com          any name *below* example.com (not example.com itself)
    example.com:8443       an explicit port (any entry may carry one)
    10.1.2.3, [2001:db8::1]:443, 0x7f.1   IP literals (any inet_aton spelling; IPv6 in brackets)
    @npm                   a named preset (PRESETS)

Invariants:
1. Deny wins: any matching deny rule refuses, whatever allows it.
2. An allow entry without a port allows ports 80 and 443 only; a deny entry without a port denies every port
   (a forgotten port never widens anything).
3. Over-broad wildcards are errors, never silently accepted: `*`, `*.<tld>`, `*.<public suffix>` (see
   PUBLIC_SUFFIXES), and any `*` that is not a whole leftmost label.
4. decide() never does I/O and never resolves names; check_address() judges an address the proxy already
   resolved (the proxy connects to exactly that address).
5. Compiled once: compile_rules() parses every entry, preset and override address into Rules; matching
   compares normalised hosts and parsed addresses and never parses again. A Decision says what it is (kind)
   and which normalised host it is about, so nothing downstream parses its reason text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from rcc.net.hosts import Host, HostError, IPAddress, embedded_ipv4, normalize_host, normalize_name, unmap
from rcc.net.presets import PRESETS

DEFAULT_ALLOW_PORTS: tuple[int, ...] = (80, 443)

# Multi-label suffixes under which unrelated parties register names (a hand-picked subset of the Public Suffix
# List: common country second-levels and shared hosting/cloud domains). `*.<one of these>` or `*.<tld>` is
# rejected as over-broad. A wildcard one label deeper (`*.mybucket.s3.amazonaws.com`) is fine.
PUBLIC_SUFFIXES: frozenset[str] = frozenset(
    {
        # country second levels
        *(f"{sl}.uk" for sl in ("co", "org", "ac", "gov", "ltd", "plc", "me", "net", "nhs", "police", "sch")),
        *(f"{sl}.au" for sl in ("com", "net", "org", "edu", "gov", "asn", "id")),
        *(f"{sl}.nz" for sl in ("co", "org", "net", "ac", "govt", "school")),
        *(f"{sl}.jp" for sl in ("co", "ne", "or", "ac", "go", "ed", "gr", "lg")),
        *(f"{sl}.kr" for sl in ("co", "or", "ne", "ac", "go", "re")),
        *(f"{sl}.cn" for sl in ("com", "net", "org", "gov", "edu", "ac")),
        *(f"{sl}.br" for sl in ("com", "net", "org", "gov", "edu")),
        *(f"{sl}.in" for sl in ("co", "net", "org", "firm", "gen", "ind", "ac", "gov", "edu")),
        *(f"{sl}.za" for sl in ("co", "org", "net", "gov", "ac")),
        *(f"{sl}.il" for sl in ("co", "org", "net", "ac", "gov")),
        *(
            f"com.{cc}"
            for cc in (
                "mx",
                "tw",
                "hk",
                "sg",
                "my",
                "ar",
                "tr",
                "ua",
                "pl",
                "ru",
                "pk",
                "ng",
                "eg",
                "sa",
                "vn",
                "ph",
                "co",
                "pe",
                "uy",
                "ve",
                "ec",
                "bd",
                "np",
                "lb",
                "kw",
                "qa",
            )
        ),
        *(f"co.{cc}" for cc in ("id", "th", "ke", "tz", "ug", "zw", "at", "hu", "ve", "cr")),
        "or.at",
        "ac.at",
        "gv.at",
        "org.tw",
        "net.tw",
        "edu.tw",
        "org.hk",
        "edu.hk",
        "gov.hk",
        # shared hosting and cloud: anyone can get a name directly below these
        "github.io",
        "githubusercontent.com",
        "gitlab.io",
        "herokuapp.com",
        "vercel.app",
        "netlify.app",
        "pages.dev",
        "workers.dev",
        "appspot.com",
        "web.app",
        "firebaseapp.com",
        "cloudfront.net",
        "amazonaws.com",
        "s3.amazonaws.com",
        "elasticbeanstalk.com",
        "azurewebsites.net",
        "cloudapp.net",
        "blob.core.windows.net",
        "azureedge.net",
        "trafficmanager.net",
        "googleapis.com",
        "storage.googleapis.com",
        "run.app",
        "ngrok.io",
        "ngrok-free.app",
        "ngrok.app",
        "trycloudflare.com",
        "r2.dev",
        "fly.dev",
        "onrender.com",
        "glitch.me",
        "repl.co",
        "replit.dev",
        "deno.dev",
        "surge.sh",
        "blogspot.com",
        "duckdns.org",
        "no-ip.org",
        "dyndns.org",
        "readthedocs.io",
        "pythonanywhere.com",
        "ddns.net",
    }
)

RuleKind = Literal["name", "wildcard", "ip", "preset"]
_PORT = re.compile(r"^(?P<host>.*?)(?::(?P<port>[0-9]{1,5}))?\Z")
_PRESET = re.compile(r"^@(?P<name>[a-z][a-z0-9_-]*)\Z")


class RuleError(ValueError):
    """An invalid allow/deny entry; the message names the entry."""


@dataclass(frozen=True)
class HostRule:
    """One compiled entry: parsed once (its address too), matched many times without re-parsing."""

    text: str  # as written (what the audit log and messages show)
    kind: RuleKind
    host: str  # name, wildcard base ("example.com" for "*.example.com"), address, or preset name
    ports: tuple[int, ...] = ()  # () = default: allow -> 80, 443; deny -> every port
    preset: str = ""  # "@npm" when this rule came from a preset
    addr: IPAddress | None = field(default=None, compare=False, repr=False)  # kind "ip": host, parsed
    suffix: str = field(default="", compare=False, repr=False)  # kind "wildcard": "." + host

    def __post_init__(self) -> None:
        if self.kind == "ip" and self.addr is None:
            object.__setattr__(self, "addr", unmap(ipaddress.ip_address(self.host)))
        if self.kind == "wildcard":
            object.__setattr__(self, "suffix", "." + self.host)

    def address(self) -> IPAddress:
        assert self.addr is not None, "only IP rules have an address"
        return self.addr

    def matches(self, host: Host, port: int, default_ports: tuple[int, ...] | None) -> bool:
        """`host` already normalised (normalize_host); default_ports None = every port (deny semantics)."""
        ports = self.ports or default_ports
        if ports is not None and port not in ports:
            return False
        if self.kind == "ip":
            return not isinstance(host, str) and host == self.addr
        if not isinstance(host, str):
            return False
        if self.kind == "name":
            return host == self.host
        if self.kind == "wildcard":
            return host.endswith(self.suffix)
        return False  # presets are expanded before matching

    @property
    def origin(self) -> str:
        return f"{self.text} (from {self.preset})" if self.preset else self.text


@dataclass(frozen=True)
class Rules:
    """Compiled rules (compile_rules()): every entry parsed and every override address parsed once, here."""

    allow: tuple[HostRule, ...]
    deny: tuple[HostRule, ...]
    resolve: tuple[tuple[str, str], ...] = ()  # normalised name -> address text (like curl --resolve)
    overrides: Mapping[str, IPAddress] = field(default_factory=dict, compare=False, repr=False)  # from resolve

    def __post_init__(self) -> None:
        parsed = {name: unmap(ipaddress.ip_address(addr)) for name, addr in self.resolve}
        object.__setattr__(self, "overrides", MappingProxyType(parsed))

    def override(self, host: Host) -> IPAddress | None:
        return self.overrides.get(host) if isinstance(host, str) else None


# What a decision is, for whoever acts on it (the denial notice, the audit log, a future ask mode), so that
# nobody parses the reason text back:
#   allowed            an allow rule matched (decide), or the address may be connected to (check_address)
#   no-allow-rule      nothing allows this host:port
#   denied-by-rule     a deny rule matched (`rule` names it)
#   forbidden-address  the name resolves to loopback, metadata, ... (`address` names it)
#   invalid            not a usable request: bad host or port, a TLS hello that does not parse or names
#                      another host, a Host header that disagrees
DecisionKind = Literal["allowed", "learned", "no-allow-rule", "denied-by-rule", "forbidden-address", "invalid"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str | None  # the rule text that decided, or None (no rule matched / invalid input)
    reason: str  # short, for the wire header, the audit log and the stderr line
    kind: DecisionKind
    host: Host | None = None  # the normalised host decided on (None when it did not normalise)
    address: str = ""  # check_address(): the address judged (what --allow would have to name)

    @classmethod
    def invalid(cls, reason: str, host: Host | None = None) -> Decision:
        return cls(False, None, reason, "invalid", host)


def _err(text: str, problem: str) -> RuleError:
    return RuleError(f"network rule {text!r}: {problem}")


def _check_wildcard_base(text: str, base: str) -> None:
    if base.rsplit(".", 1)[-1].isdigit():
        raise _err(text, "wildcards are for names, not IP addresses")
    if "." not in base:
        raise _err(text, f"'*.{base}' is over-broad (every name under the top-level domain .{base})")
    if base in PUBLIC_SUFFIXES:
        raise _err(text, f"'*.{base}' is over-broad ({base} is a public suffix: anyone can register below it)")


def parse_rule(text: str) -> HostRule:
    """One allow/deny entry -> HostRule. Presets come back as kind "preset" (validated, expanded later)."""
    if not isinstance(text, str):
        raise RuleError(f"network rule {text!r}: must be a string")
    s = text.strip()
    if not s:
        raise _err(text, "empty")
    if any(c.isspace() or not c.isprintable() for c in s):
        raise _err(text, "whitespace or control characters inside the entry")
    if s.startswith("@"):
        m = _PRESET.match(s)
        if not m or m.group("name") not in PRESETS:
            raise _err(text, f"unknown preset (known: {', '.join('@' + p for p in sorted(PRESETS))})")
        return HostRule(s, "preset", m.group("name"))
    if "/" in s or "@" in s or "://" in s:
        raise _err(text, "write a host name, *.domain or an IP address, optionally with :port (no URL or CIDR)")
    # Split off the port without splitting on ':' blindly: IPv6 literals must be bracketed.
    if s.startswith("["):
        m6 = re.match(r"^\[(?P<host>[^\]]*)\](?::(?P<port>[0-9]{1,5}))?\Z", s)
        if not m6:
            raise _err(text, "bracketed IPv6 literal expected, like [2001:db8::1] or [2001:db8::1]:443")
        host_s, port_s = m6.group("host"), m6.group("port")
        if ":" not in host_s:
            raise _err(text, "brackets are only for IPv6 literals")
    else:
        if s.count(":") > 1:
            raise _err(text, "IPv6 literals need brackets: [2001:db8::1] or [2001:db8::1]:443")
        m = _PORT.match(s)
        assert m is not None  # the pattern matches every string
        host_s, port_s = m.group("host"), m.group("port")
        if ":" in host_s:
            raise _err(text, "port must be a number from 1 to 65535")
    ports: tuple[int, ...] = ()
    if port_s is not None:
        port = int(port_s)
        if not 1 <= port <= 65535:
            raise _err(text, "port must be a number from 1 to 65535")
        ports = (port,)
    if host_s == "*" or (host_s.startswith("*") and not host_s.startswith("*.")):
        raise _err(text, "over-broad: a wildcard must be a whole leftmost label, like *.example.com")
    if host_s.startswith("*."):
        if "*" in host_s[2:]:
            raise _err(text, "only one leading '*.' is allowed")
        try:
            base = normalize_name(host_s[2:])
        except HostError as e:
            raise _err(text, str(e)) from None
        _check_wildcard_base(text, base)
        return HostRule(s, "wildcard", base, ports)
    if "*" in host_s:
        raise _err(text, "'*' is only allowed as the whole leftmost label (*.example.com)")
    try:
        host = normalize_host(host_s)
    except HostError as e:
        raise _err(text, str(e)) from None
    if isinstance(host, str):
        return HostRule(s, "name", host, ports)
    return HostRule(s, "ip", str(host), ports)


def expand(rule: HostRule) -> tuple[HostRule, ...]:
    if rule.kind != "preset":
        return (rule,)
    out = []
    for entry in PRESETS[rule.host]:
        r = parse_rule(entry)
        out.append(HostRule(r.text, r.kind, r.host, rule.ports or r.ports, preset=rule.text))
    return tuple(out)


def _compile(entries: Iterable[str]) -> tuple[HostRule, ...]:
    seen: dict[HostRule, None] = {}
    for e in entries:
        for r in expand(parse_rule(e)):
            seen.setdefault(r)
    return tuple(seen)


def compile_rules(
    allow: Sequence[str], deny: Sequence[str], resolve: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> Rules:
    """Validate and expand allow/deny entries and resolve overrides. Raises RuleError naming the bad entry."""
    pairs = resolve.items() if isinstance(resolve, Mapping) else resolve
    res: dict[str, str] = {}
    for name, addr in pairs:
        try:
            n = normalize_name(name)
        except HostError as e:
            raise RuleError(f"network.resolve {name!r}: {e}") from None
        try:
            a = unmap(ipaddress.ip_address(addr.strip().strip("[]")))
        except ValueError:
            raise RuleError(f"network.resolve {name!r} = {addr!r}: not an IP address") from None
        res[n] = str(a)
    return Rules(_compile(allow), _compile(deny), tuple(sorted(res.items())))


def decide(rules: Rules, host: str | Host, port: int) -> Decision:
    """May a connection to host:port be attempted? Checked before any DNS lookup. `host` as written (it is
    normalised here) or already normalised (an IP address object; a name: use decide_host)."""
    if isinstance(host, str):
        try:
            target = normalize_host(host)
        except HostError as e:
            return Decision.invalid(f"invalid host: {e}")
    else:
        target = unmap(host)
    return decide_host(rules, target, port)


def decide_host(rules: Rules, host: Host, port: int) -> Decision:
    """decide() for a host normalize_host() already returned: the proxy normalises each host once."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return Decision.invalid(f"invalid port {port!r}", host)
    for r in rules.deny:
        if r.matches(host, port, None):
            return Decision(False, r.origin, f"denied by rule {r.origin}", "denied-by-rule", host)
    for r in rules.allow:
        if r.matches(host, port, DEFAULT_ALLOW_PORTS):
            return Decision(True, r.origin, f"allowed by rule {r.origin}", "allowed", host)
    return Decision(False, None, "no allow rule", "no-allow-rule", host)


# Cloud instance metadata and similar host-side services that are never a legitimate destination by name.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wireserver
        "192.0.0.192",  # Oracle Cloud
    )
)
_THIS_NET = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.x.y.z to the local host


def forbidden_kind(addr: IPAddress, host_addresses: frozenset[IPAddress] = frozenset()) -> str | None:
    """Why an address is never a destination by name (or None when it is an ordinary address). An IPv6 address
    that carries an IPv4 address (NAT64, 6to4, Teredo, IPv4-compatible, ISATAP: hosts.embedded_ipv4) is judged
    by each address it carries too, whatever routes this machine has: one route (a sit0 tunnel, a NAT64
    gateway) is all it takes for `::127.0.0.1` or `64:ff9b::a9fe:a9fe` to reach loopback or metadata."""
    found = _forbidden(unmap(addr), host_addresses)
    return None if found is None else found[0]


def _forbidden(a: IPAddress, host_addresses: frozenset[IPAddress]) -> tuple[str, IPAddress] | None:
    """(kind, the address that has it: `a` itself or an IPv4 address it carries) or None."""
    kind = _forbidden_kind(a, host_addresses)
    if kind is not None:
        return kind, a
    for e in embedded_ipv4(a):
        inner = _forbidden_kind(e, host_addresses)
        if inner is not None:
            return inner, e
    return None


def _forbidden_kind(a: IPAddress, host_addresses: frozenset[IPAddress]) -> str | None:
    if a in METADATA_ADDRESSES:
        return "cloud metadata"
    if a.is_loopback:
        return "loopback"
    if a.is_unspecified or (isinstance(a, ipaddress.IPv4Address) and a in _THIS_NET):
        return "unspecified"
    if a.is_link_local:
        return "link-local"
    if a.is_multicast:
        return "multicast"
    if isinstance(a, ipaddress.IPv4Address) and a == ipaddress.IPv4Address("255.255.255.255"):
        return "broadcast"
    if a in host_addresses:
        return "this host's own address"
    return None


def check_address(
    rules: Rules, addr: IPAddress, port: int, host_addresses: frozenset[IPAddress] = frozenset()
) -> Decision:
    """Judge an address the proxy resolved (or was given). Deny rules for IP literals apply; a forbidden kind
    of address (loopback, link-local, metadata, unspecified, multicast, the host's own) is refused unless that
    literal address is itself allowed on this port."""
    a = unmap(addr)
    carried = embedded_ipv4(a)
    for r in rules.deny:
        if r.kind == "ip":
            for x in (a, *carried):  # `deny 10.1.2.3` also stops 64:ff9b::a01:203
                if r.matches(x, port, None):
                    via = "" if x == a else f" (embedded {x})"
                    return Decision(False, r.origin, f"{a}{via} denied by rule {r.origin}", "denied-by-rule", a, str(a))
    found = _forbidden(a, host_addresses)
    if found is None:
        return Decision(True, None, "ordinary address", "allowed", a, str(a))
    kind, has = found
    what = f"{kind} address {a}" if has == a else f"{a}, which embeds {kind} address {has}"
    for r in rules.allow:  # only the very address allows it: `allow 127.0.0.1:8080` does not allow ::127.0.0.1
        if r.kind == "ip" and r.matches(a, port, DEFAULT_ALLOW_PORTS):
            return Decision(True, r.origin, f"{what} allowed by rule {r.origin}", "allowed", a, str(a))
    return Decision(False, None, f"resolves to {what}", "forbidden-address", a, str(a))


def suggest_allow(host: str | Host, port: int) -> str:
    """The --allow value that would allow host:port (port omitted when the default covers it)."""
    h = str(host)
    if ":" in h:
        h = f"[{h}]"
    return h if port in DEFAULT_ALLOW_PORTS else f"{h}:{port}"
