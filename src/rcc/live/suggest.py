"""`rcc policy suggest [--session ID|last] [--write [user|project]]`: the smallest allow list that covers what a
learn-mode session (`rcc run --learn`) let through.

suggest() is pure. Invariants:
1. Covers: compile_rules(suggest(L)) allows every learned (host, port) of L (tests check it with the real rules).
2. Never over-broad: a wildcard is proposed only for 3+ learned names directly below one parent, and only where
   rules.parse_rule accepts it (no `*.com`, no `*.<public suffix>`); a preset only when 2+ of its hosts were
   learned. Everything else is the exact name (with its port when not 80/443).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Iterable

from rcc import paths
from rcc.errors import ExitCode, RccError, UsageError
from rcc.net.presets import PRESETS
from rcc.net.rules import RuleError, parse_rule, suggest_allow

LEARNED = "learned:"
HELP = """\
usage: rcc policy suggest [--session ID|last] [--write [user|project]] [--project DIR]

The smallest allow list covering the hosts a `rcc run --learn` session let through (default: the newest such
session in the audit log). --write adds it to network.allow in your config (user, the default) or in the
project's .rcc.toml (which then needs `rcc trust` again).
"""


def suggest(learned: Iterable[tuple[str, int]], min_wildcard: int = 3) -> list[str]:
    todo = sorted(set(learned))
    out: list[str] = []
    default = {(h, p) for h, p in todo if p in (80, 443)}
    for name, hosts in PRESETS.items():
        hit = {(h, p) for h, p in default if h in hosts}
        if len({h for h, _ in hit}) >= 2:
            out.append(f"@{name}")
            todo = [t for t in todo if t not in hit]
    by_parent: dict[tuple[str, int], list[str]] = defaultdict(list)
    for h, p in todo:
        if "." in h and not h.replace(".", "").isdigit() and ":" not in h:
            by_parent[(h.split(".", 1)[1], 0 if p in (80, 443) else p)].append(h)
    covered: set[tuple[str, int]] = set()
    for (parent, port), names in sorted(by_parent.items()):
        if len(names) < min_wildcard or parent.count(".") < 1:
            continue
        rule = f"*.{parent}" + (f":{port}" if port else "")
        try:
            parse_rule(rule)
        except RuleError:
            continue  # over-broad: the names one by one
        out.append(rule)
        covered |= {(h, p) for h, p in todo if h in names and (p == port or (not port and p in (80, 443)))}
    out += [suggest_allow(h, p) for h, p in todo if (h, p) not in covered]
    return sorted(dict.fromkeys(out))


def learned_of(records: Iterable[object], session: str) -> tuple[str, list[tuple[str, int]]]:
    """(session id, its learned host:ports) from audit records; session "last" = the newest with any."""
    from rcc.net.audit import AuditRecord

    per: dict[str, list[tuple[str, int]]] = {}
    order: list[str] = []
    for r in records:
        assert isinstance(r, AuditRecord)
        if r.decision == "allow" and r.reason.startswith(LEARNED):
            if r.session not in per:
                order.append(r.session)
            per.setdefault(r.session, []).append((r.host, r.port))
    if session in ("", "last"):
        if not order:
            raise RccError(
                "no learn-mode session in the audit log",
                hint="run the task once with `rcc run --learn ...` (or `rcc claude --learn`)",
                code=ExitCode.NO_SESSION,
            )
        session = order[-1]
    found = [s for s in order if s.startswith(session)]
    if len(found) != 1:
        raise RccError(f"no single learn-mode session matches {session!r}", code=ExitCode.NO_SESSION)
    return found[0], per[found[0]]


def command(argv: list[str]) -> int:
    session, write, project = "last", "", os.getcwd()
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            sys.stdout.write(HELP)
            return 0
        if a == "--session" and args:
            session = args.pop(0)
        elif a == "--write":
            write = args.pop(0) if args and args[0] in ("user", "project") else "user"
        elif a.startswith("--write="):
            write = a.partition("=")[2]
            if write not in ("user", "project"):
                raise UsageError("--write takes user or project")
        elif a == "--project" and args:
            project = os.path.abspath(args.pop(0))
        else:
            raise UsageError(f"unknown option {a!r}", hint=HELP.splitlines()[0])
    from rcc.net.audit import read_records

    sid, learned = learned_of(read_records(paths.audit_log_file()), session)
    rules = suggest(learned)
    from rcc.net.hosts import printable

    sys.stdout.write(f"# session {sid}: {len(set(learned))} learned host:port(s)\n[network]\nallow = [\n")
    sys.stdout.write("".join(f'  "{printable(r)}",\n' for r in rules) + "]\n")
    if write and not rules:
        sys.stdout.write("rcc: nothing to write\n")
    elif write == "user":
        from rcc.live.config_edit import save_rule

        where = ""
        for r in rules:
            where = save_rule("allow", r)
        sys.stdout.write(f"rcc: added to network.allow in {where}\n")
    elif write == "project":
        _write_project(project, rules)
    return 0


def _write_project(project: str, rules: list[str]) -> None:
    from rcc import hostfs
    from rcc.live.config_edit import add_rule

    fd = hostfs.open_dir(project)
    try:
        data = hostfs.read_file(fd, paths.PROJECT_CONFIG_NAME, 1 << 20) or b""
        text = data.decode("utf-8")
        for r in rules:
            text = add_rule(text, "allow", r)
        hostfs.replace_file(fd, paths.PROJECT_CONFIG_NAME, text.encode(), 0o644)
    finally:
        os.close(fd)
    where = os.path.join(project, paths.PROJECT_CONFIG_NAME)
    sys.stdout.write(f"rcc: added to network.allow in {where}; it widens access, so run `rcc trust` to use it\n")
