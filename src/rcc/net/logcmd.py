"""`rcc log [--json] [--denied] [--session ID|last] [--limit N]`: show the egress audit log.

Reads the current file and its rotated predecessors, oldest first. `last` means the session of the newest
record. Output goes to stdout; errors are RccError (cli.py prints them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence

from rcc.errors import UsageError
from rcc.net.audit import AuditRecord, read_records
from rcc.net.hosts import format_hostport, printable


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"rcc log: {message}", hint="rcc log [--json] [--denied] [--session ID|last] [--limit N]")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"


def select(records: Iterable[AuditRecord], denied: bool, session: str | None) -> list[AuditRecord]:
    recs = list(records)
    if session == "last":
        session = recs[-1].session if recs else None
        if session is None:
            return []
    return [r for r in recs if (not denied or r.decision == "deny") and (session is None or r.session == session)]


def render_table(records: Sequence[AuditRecord]) -> str:
    raw: list[tuple[str, ...]] = [
        ("TIME", "SESSION", "PROTO", "DESTINATION", "ADDRESS", "DECISION", "UP", "DOWN", "MS", "RULE / REASON")
    ]
    for r in records:
        why = r.rule if r.decision == "allow" and r.rule else r.reason
        raw.append(
            (
                r.time.replace("T", " ").rstrip("Z")[:19],
                r.session[:12],
                r.proto,
                r.host if r.proto == "seatbelt" else format_hostport(r.host, r.port),  # a path or an address
                r.addr or "-",
                r.decision,
                _human_bytes(r.bytes_up),
                _human_bytes(r.bytes_down),
                str(r.duration_ms),
                why,
            )
        )
    rows = [tuple(printable(c) for c in row) for row in raw]  # hosts and reasons come from the sandbox
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        out.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(out) + "\n"


def command(argv: list[str], path: str | None = None) -> int:
    p = _Parser(prog="rcc log", description="Show the egress audit log.")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--denied", action="store_true", help="only denials")
    p.add_argument("--session", metavar="ID|last", help="only this session ('last': the most recent one)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the newest N records")
    args = p.parse_args(argv)
    if path is None:
        from rcc.paths import audit_log_file

        path = audit_log_file()
    recs = select(read_records(path), args.denied, args.session)
    if args.limit > 0:
        recs = recs[-args.limit :]
    if args.json:
        sys.stdout.write("".join(r.to_json() + "\n" for r in recs))
    elif recs:
        sys.stdout.write(render_table(recs))
    elif not os.path.exists(path):
        sys.stdout.write(f"no audit log yet ({path})\n")
    else:
        sys.stdout.write("no matching records\n")
    return 0
