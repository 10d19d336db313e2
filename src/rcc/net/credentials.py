"""Credentials the agent can use but never holds: placeholders inside, real values only in rcc's proxy.

How it fits:
    config `[credentials.NAME]` (rcc.config) -> rcc.compile sets the sandbox's variable to a per-session
    placeholder and points TLS clients at a bundle with the session CA (sessionca.py) -> the proxy terminates
    TLS for the credential hosts only (flow.py decides, terminate.py serves) -> each request's head is judged
    and its placeholders swapped (http_rewrite.py, using the CredentialSet below) -> re-encrypted upstream.

Invariants:
1. A real value lives in rcc's own process only (read from rcc's environment when the proxy starts); it is
   never in the plan, the sandbox's environment, a file, an audit record or a message (reprs hide it).
2. A placeholder is swapped only for the hosts of its own credential, only in request headers, only inside
   TLS that rcc terminated after checking CONNECT host == SNI == Host of every request. Over plain HTTP, or to
   any other host, the placeholder goes out as the meaningless string it is.
3. Pure: no sockets, no crypto; the host names are normalised (hosts.normalize_host) once, here.
"""

from __future__ import annotations

import fnmatch
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rcc.net import http_rewrite
from rcc.net.hosts import HostError, normalize_host, split_authority

PLACEHOLDER_PREFIX = "rcc-cred-"


def new_placeholder(name: str) -> str:
    """A per-session placeholder: means nothing anywhere else (128 random bits)."""
    return f"{PLACEHOLDER_PREFIX}{name}-{secrets.token_hex(16)}"


def value_problem(value: str) -> str:
    """Why `value` cannot go into an HTTP header (or "" when it can): visible ASCII only, no CR/LF."""
    if not value:
        return "it is empty"
    if not all(0x21 <= ord(c) <= 0x7E for c in value):
        return "it holds characters other than visible ASCII (it cannot go into an HTTP header as it is)"
    return ""


class RequestRuleError(ValueError):
    pass


@dataclass(frozen=True)
class RequestRule:
    """`HOST METHODS PATH`: e.g. "api.github.com GET,POST /repos/me/*". METHODS is a comma list or `*`; PATH
    starts with / and may hold `*` (any characters, `/` included); the query string is not part of the match."""

    host: str
    methods: frozenset[str] | None  # None: any method
    path: str
    text: str

    def matches(self, method: str, target: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        path = target.split("?", 1)[0]
        return fnmatch.fnmatchcase(path, self.path.replace("[", "[[]"))  # only * is special, never [...] sets


def parse_request_rule(text: str) -> RequestRule:
    parts = text.split()
    if len(parts) != 3:
        raise RequestRuleError(f"{text!r}: a request rule is HOST METHODS PATH, e.g. api.github.com GET,POST /repos/*")
    host_s, methods_s, path = parts
    try:
        host = normalize_host(host_s)
    except HostError as e:
        raise RequestRuleError(f"{text!r}: {e}") from e
    methods = None
    if methods_s != "*":
        ms = methods_s.split(",")
        if not all(m and m.isascii() and m.isalpha() and m.isupper() for m in ms):
            raise RequestRuleError(f"{text!r}: methods are upper-case names separated by commas (GET,POST) or *")
        methods = frozenset(ms)
    if not path.startswith("/") or "?" in path or "#" in path:
        raise RequestRuleError(f"{text!r}: the path starts with / (no query string)")
    return RequestRule(str(host), methods, path, text)


@dataclass(frozen=True)
class Credential:
    """One credential of a running session. `value` is the real secret: never printed (repr=False)."""

    name: str
    env: str
    hosts: tuple[str, ...]  # normalised host names
    placeholder: str
    value: str = field(repr=False)
    requests: tuple[str, ...] = ()  # request rules (parse_request_rule)


class CredentialSet:
    """The session's credentials, as the proxy asks about them."""

    def __init__(self, creds: Sequence[Credential]) -> None:
        self.creds = tuple(creds)
        self._by_host: dict[str, list[Credential]] = {}
        self._rules: dict[str, list[RequestRule]] = {}
        for c in self.creds:
            for h in c.hosts:
                self._by_host.setdefault(str(normalize_host(h)), []).append(c)
            for r in c.requests:
                rule = parse_request_rule(r)
                self._rules.setdefault(rule.host, []).append(rule)

    def __repr__(self) -> str:
        return f"CredentialSet({[c.name for c in self.creds]})"

    def hosts(self) -> frozenset[str]:
        """The hosts whose TLS the proxy terminates."""
        return frozenset(self._by_host)

    def names_for(self, host: str) -> tuple[str, ...]:
        return tuple(c.name for c in self._by_host.get(host, ()))

    def swaps_for(self, host: str) -> dict[bytes, tuple[str, bytes]]:
        """placeholder -> (name, real value) for the credentials of `host` only."""
        return {c.placeholder.encode(): (c.name, c.value.encode()) for c in self._by_host.get(host, ())}

    def judge_rules(self, head: http_rewrite.Head, host: str) -> str:
        """Why the request rules of `host` refuse this request ("" = no rules for the host, or one matches).
        Judged on every request of a keep-alive connection."""
        rules = self._rules.get(host)
        if not rules or any(r.matches(head.method, head.target) for r in rules):
            return ""
        return f"{head.method} {head.target.split('?', 1)[0][:200]} matches no request rule for {host}"

    def redactions(self) -> dict[bytes, bytes]:
        """real value -> a mask of the same length, every credential: what a server echoes back never reaches
        the sandbox. The same length, so Content-Length and chunk sizes stay true."""
        return {c.value.encode(): (b"rcc-redacted-" * len(c.value))[: len(c.value)] for c in self.creds}


def judge_request(head: http_rewrite.Head, host: str, port: int) -> str:
    """Why this request may not go to `host:port` through the terminated connection ("" = it may).

    Every request of a keep-alive connection is judged: a second request naming another host (request
    smuggling, or a client reusing the connection) must never carry this host's credential elsewhere."""
    if not head.target.startswith("/") and not (head.method == "OPTIONS" and head.target == "*"):
        return f"request target {head.target[:100]!r} is not origin-form"
    (raw,) = head.get(b"host")
    try:
        hh, hp = split_authority(raw.decode("ascii"), port)
        same = str(normalize_host(hh)) == host and hp == port
    except (HostError, UnicodeDecodeError):
        same = False
    if not same:
        shown = raw.decode("ascii", "replace")[:100]
        return f"request Host {shown!r} is not {host}:{port}, the host this connection was opened for"
    return ""


def request_line_for_audit(head: http_rewrite.Head) -> str:
    """METHOD path, shortened, for the audit record (the path carries placeholders at most, never values)."""
    return f"{head.method} {head.target[:200]}"


def placeholders_env(creds: Mapping[str, Credential]) -> dict[str, str]:
    return {c.env: c.placeholder for c in creds.values()}
