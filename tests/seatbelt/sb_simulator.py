"""A decision simulator for the SBPL subset rcc renders: does the profile allow (operation, object)?

Semantics assumed (from the public descriptions of Seatbelt, not from Apple's source; the macOS release workflow
checks the real thing):
1. Rules are read in order; for one operation on one object, the LAST rule that matches decides. `(deny
   default)` matches every operation, so it decides when nothing later matches.
2. A rule matches when one of its operations matches and, if it has filters, ANY of them matches (filters
   listed in one rule are alternatives). `require-all` / `require-any` / `require-not` combine filters.
3. Operation names: exact, or a `*` family (`file-read*` matches `file-read-data`, `file-read-metadata`, ...);
   `default` matches every operation.
4. Path filters compare the RESOLVED path (the kernel resolves symlinks before Seatbelt checks): the caller
   passes resolved, canonical paths (/private/tmp, never /tmp). `literal` is equality, `subpath` is the path
   itself or anything below it (component-wise), `regex` is a search with the pattern (anchors as written).
5. `(remote ip "localhost:N")` matches a connection to 127.0.0.1:N or [::1]:N (not ::ffff:127.0.0.1, not
   any other address), `*` as host matches any address and as port any port. `(remote unix-socket ...)` is
   never produced by rcc; a unix socket connect is the operation network-outbound with a `unix:` object.
6. `(local ip "localhost:N")` on network-bind / network-inbound matches the LOCAL address 127.0.0.1:N or
   [::1]:N (Request.addr holds it for those operations).
7. `(global-name N)` matches a mach-lookup of N; `(target same-sandbox)` matches a signal/process-info aimed
   at a process in this sandbox.
Known difference this simulator does NOT model: srt reports that on a real Mac a specific
`(deny file-write-unlink ...)` is not overridden by a later broader allow; rcc's profiles put every deny after
every allow, so "last match wins" and that report agree on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sbpl import Regex, Rule, Str, Sym, parse, rules


@dataclass(frozen=True)
class Request:
    op: str
    path: str = ""  # file operations: resolved path
    addr: str = ""  # network-outbound: "127.0.0.1:443", "[::1]:22" or "unix:/private/var/run/x"
    name: str = ""  # mach-lookup: the service
    same_sandbox: bool = True  # signal / process-info*


def _op_matches(pattern: str, op: str) -> bool:
    if pattern == "default":
        return True
    if pattern.endswith("*"):
        return op.startswith(pattern[:-1])
    return pattern == op


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _split_addr(addr: str) -> tuple[str, str]:
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
        return host, port
    host, _, port = addr.rpartition(":")
    return host, port


def _filter_matches(f: object, req: Request) -> bool:
    assert isinstance(f, list) and f and isinstance(f[0], Sym), f
    name = str(f[0])
    if name == "require-all":
        return all(_filter_matches(x, req) for x in f[1:])
    if name == "require-any":
        return any(_filter_matches(x, req) for x in f[1:])
    if name == "require-not":
        return not _filter_matches(f[1], req)
    if name == "literal":
        return bool(req.path) and req.path == f[1]
    if name == "subpath":
        return bool(req.path) and _under(req.path, str(f[1]))
    if name == "regex":
        assert isinstance(f[1], Regex)
        return bool(req.path) and re.search(f[1], req.path) is not None
    if name == "remote":
        if f[1] != "ip" or not req.addr or req.addr.startswith("unix:"):
            return False
        host, port = _split_addr(str(f[2]))
        rhost, rport = _split_addr(req.addr)
        host_ok = host == "*" or (host == "localhost" and rhost in ("127.0.0.1", "::1"))
        return host_ok and (port == "*" or port == rport)
    if name == "local":  # network-bind / network-inbound: req.addr is the local address
        if f[1] != "ip" or not req.addr or req.addr.startswith("unix:"):
            return False
        host, port = _split_addr(str(f[2]))
        rhost, rport = _split_addr(req.addr)
        host_ok = host == "*" or (host == "localhost" and rhost in ("127.0.0.1", "::1"))
        return host_ok and (port == "*" or port == rport)
    if name == "global-name":
        return req.name == f[1]
    if name == "target":
        return req.same_sandbox
    raise AssertionError(f"the simulator does not know filter {name}")


def _rule_matches(r: Rule, req: Request) -> bool:
    if not any(_op_matches(op, req.op) for op in r.ops):
        return False
    return not r.filters or any(_filter_matches(f, req) for f in r.filters)


class Profile:
    def __init__(self, text: str) -> None:
        self.rules = rules(parse(text))

    def decide(self, req: Request) -> tuple[bool, Rule | None]:
        """(allowed, the rule that decided)."""
        decided: Rule | None = None
        for r in self.rules:
            if _rule_matches(r, req):
                decided = r
        return (decided is not None and decided.action == "allow"), decided

    def allows(self, req: Request) -> bool:
        return self.decide(req)[0]


__all__ = ["Profile", "Request", "Str"]
