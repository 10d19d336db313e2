"""A reader and a structural checker for the Seatbelt profiles rcc renders (SBPL: a Scheme dialect).

This is test code, written from the public descriptions of SBPL (Apple's own profiles in
/System/Library/Sandbox/Profiles, and the profiles of sandbox-runtime, Codex CLI and Gemini CLI): it proves that
rcc's profiles are well formed in the subset rcc uses and keep rcc's invariants. It does NOT prove that macOS
accepts them: only the macOS release workflow (.github/workflows/macos.yml) runs them under sandbox-exec.

Reader: `(`, `)`, strings "..." with \\ and \" escapes, regex literals #"..." (a Regex), symbols, integers,
`;` comments to the end of the line. Anything else is a syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_STRING = 1024

# Operations rcc's profiles may name (a subset of SBPL's; `default` and the `*` families included).
KNOWN_OPS = frozenset(
    {
        "default",
        "process-fork",
        "process-exec",
        "process-info*",
        "signal",
        "sysctl-read",
        "ipc-posix-sem",
        "mach-host*",
        "file-link",
        "pseudo-tty",
        "mach-lookup",
        "file-read*",
        "file-read-data",
        "file-read-metadata",
        "file-write*",
        "file-write-data",
        "file-write-create",
        "file-write-unlink",
        "file-ioctl",
        "network-outbound",
        "network-bind",
        "network-inbound",
        "lsopen",
        "appleevent-send",
    }
)
# Never allowed: each runs code outside the sandbox (opens an app through LaunchServices, scripts another app).
FORBIDDEN_ALLOW = frozenset({"lsopen", "appleevent-send", "default", "file-link"})  # file-link: hard-link aliases
KNOWN_FILTERS = frozenset(
    {
        "literal",
        "subpath",
        "regex",
        "require-all",
        "require-any",
        "require-not",
        "remote",
        "local",
        "global-name",
        "target",
    }
)
# Services that must never be reachable (keychain, LaunchServices, preferences, trust store).
FORBIDDEN_MACH = frozenset(
    {
        "com.apple.SecurityServer",
        "com.apple.securityd.xpc",
        "com.apple.secd",
        "com.apple.security.agent",
        "com.apple.coreservices.launchservicesd",
        "com.apple.lsd.mapdb",
        "com.apple.cfprefsd.daemon",
        "com.apple.cfprefsd.agent",
        "com.apple.trustd.agent",
    }
)


class Sym(str):
    pass


class Regex(str):
    pass


class Str(str):
    pass


class SbplError(ValueError):
    pass


_TOKEN = re.compile(r'\s+|;[^\n]*|\(|\)|#"(?:[^"\\]|\\.)*"|"(?:[^"\\]|\\.)*"|[^\s()";]+')


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1] not in '\\"':
                raise SbplError(f"unknown escape in {body!r}")
            out.append(body[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(text: str) -> list[object]:
    """The profile's top-level forms as nested lists of Sym/Str/Regex/int."""
    stack: list[list[object]] = [[]]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SbplError(f"cannot read at offset {pos}: {text[pos : pos + 20]!r}")
        tok = m.group(0)
        pos = m.end()
        if tok.isspace() or tok.startswith(";"):
            continue
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise SbplError("unbalanced )")
            done = stack.pop()
            stack[-1].append(done)
        elif tok.startswith('#"'):
            stack[-1].append(Regex(_unescape(tok[2:-1])))
        elif tok.startswith('"'):
            stack[-1].append(Str(_unescape(tok[1:-1])))
        elif re.fullmatch(r"-?[0-9]+", tok):
            stack[-1].append(int(tok))
        else:
            stack[-1].append(Sym(tok))
    if len(stack) != 1:
        raise SbplError("unbalanced (")
    return stack[0]


@dataclass(frozen=True)
class Rule:
    action: str  # allow | deny
    ops: tuple[str, ...]
    filters: tuple[object, ...]  # each a parsed filter form; none: the rule matches every instance of its ops
    message: str = ""


def rules(forms: list[object]) -> list[Rule]:
    out = []
    for f in forms:
        if not isinstance(f, list) or not f or not isinstance(f[0], Sym):
            raise SbplError(f"not a form: {f!r}")
        if f[0] == "version":
            continue
        if f[0] not in ("allow", "deny"):
            raise SbplError(f"unknown form {f[0]}")
        ops, filters, message = [], [], ""
        for item in f[1:]:
            if isinstance(item, Sym):
                ops.append(str(item))
            elif isinstance(item, list) and item and item[0] == "with":
                if item[1:2] != [Sym("message")] or len(item) != 3 or not isinstance(item[2], Str):
                    raise SbplError(f"only (with message STRING) is used by rcc, got {item!r}")
                message = str(item[2])
            elif isinstance(item, list):
                filters.append(item)
            else:
                raise SbplError(f"unexpected {item!r} in {f!r}")
        out.append(Rule(str(f[0]), tuple(ops), tuple(filters), message))
    return out


def _strings(form: object) -> list[str]:
    if isinstance(form, list):
        return [s for x in form for s in _strings(x)]
    return [form] if isinstance(form, str) and not isinstance(form, Sym) else []


def _check_filter(rule: Rule, f: object, problems: list[str]) -> None:
    if not isinstance(f, list) or not f or not isinstance(f[0], Sym):
        problems.append(f"bad filter {f!r}")
        return
    name = str(f[0])
    if name not in KNOWN_FILTERS:
        problems.append(f"unknown filter {name}")
        return
    if name in ("require-all", "require-any", "require-not"):
        for sub in f[1:]:
            _check_filter(rule, sub, problems)
        return
    if name in ("literal", "subpath"):
        p = f[1]
        if len(f) != 2 or not isinstance(p, Str):
            problems.append(f"{name} takes one string: {f!r}")
        elif not p.startswith("/") or "//" in p or "/./" in p or "/../" in p or p.endswith(("/.", "/..")):
            problems.append(f"non-canonical path {p!r}")
        elif p != "/" and p.endswith("/"):
            problems.append(f"trailing slash {p!r}")
        elif re.match(r"^/(tmp|var|etc)(/|$)", p):
            problems.append(f"{p!r}: Seatbelt sees /private{p}")
    elif name == "regex":
        if len(f) != 2 or not isinstance(f[1], Regex):
            problems.append(f'regex takes one #"...": {f!r}')
        else:
            try:
                re.compile(f[1])
            except re.error as e:
                problems.append(f"regex {f[1]!r} does not compile: {e}")
    elif name == "remote":
        if len(f) != 3 or f[1] not in ("ip", "unix-socket"):
            problems.append(f"bad remote filter {f!r}")
        elif f[1] == "ip":
            addr = f[2]
            host, _, port = str(addr).rpartition(":")
            if host not in ("localhost", "*"):
                problems.append(f"ip host must be localhost or *: {addr!r}")
            if not (port == "*" or port.isdigit()):
                problems.append(f"ip port must be a number or *: {addr!r}")
            if rule.action == "allow" and host == "*":
                problems.append(f"allows every host: {addr!r}")
        else:
            problems.append(f"rcc allows no unix socket: {f!r}")
    elif name == "local":
        if "network-outbound" in rule.ops or not set(rule.ops) <= {"network-bind", "network-inbound"}:
            problems.append(f"a (local ip) filter only on network-bind/network-inbound: {rule.ops}")
        if len(f) != 3 or f[1] != "ip" or not re.fullmatch(r"localhost:[0-9]+", str(f[2])):
            problems.append(f"local ip must be localhost:PORT: {f!r}")
    elif name == "global-name":
        if len(f) != 2 or not isinstance(f[1], Str):
            problems.append(f"bad global-name {f!r}")
        elif rule.action == "allow" and f[1] in FORBIDDEN_MACH:
            problems.append(f"forbidden mach service {f[1]}")
    elif name == "target" and f[1:] != [Sym("same-sandbox")]:
        problems.append(f"target must be same-sandbox: {f!r}")


def check(text: str) -> list[str]:
    """Every problem found (empty: the profile keeps the invariants rcc/backends/seatbelt_profile.py states)."""
    problems: list[str] = []
    try:
        forms = parse(text)
        rs = rules(forms)
    except SbplError as e:
        return [str(e)]
    if not forms or forms[0] != [Sym("version"), 1]:
        problems.append("the first form must be (version 1)")
    if not rs or rs[0].action != "deny" or rs[0].ops != ("default",) or rs[0].filters:
        problems.append("the first rule must be (deny default)")
    if "no-sandbox" in text:
        problems.append("no-sandbox appears in the profile")
    for s in _strings(forms):
        if len(s.encode()) > MAX_STRING:
            problems.append(f"string longer than {MAX_STRING} bytes: {s[:40]!r}...")
    for r in rs:
        if not r.ops:
            problems.append(f"rule without an operation: {r}")
        for op in r.ops:
            if op not in KNOWN_OPS:
                problems.append(f"unknown operation {op}")
            if r.action == "allow" and op in FORBIDDEN_ALLOW:
                problems.append(f"allows {op}")
        if r.action == "allow" and "mach-lookup" in r.ops and not r.filters:
            problems.append("allows every mach service")
        network = {"network-outbound", "network-bind", "network-inbound"}
        if r.action == "allow" and set(r.ops) & network and not r.filters:
            problems.append("allows all network of a kind")
        for f in r.filters:
            _check_filter(r, f, problems)
    return problems
