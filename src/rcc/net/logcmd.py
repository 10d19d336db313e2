"""`rcc log [--json] [--denied] [--session ID|last] [--limit N] [--follow]`: show the egress audit log.

Reads the current file and its rotated predecessors, oldest first. `last` means the session of the newest
record. --follow then keeps printing new records as they are written (like `tail -F`: across rotation, a
partial last line waits for its end). Output goes to stdout; errors are RccError (cli.py prints them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence

from rcc.errors import UsageError
from rcc.net.audit import AuditRecord, read_records
from rcc.net.hosts import format_hostport, printable


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(
            f"rcc log: {message}", hint="rcc log [--json] [--denied] [--session ID|last] [--limit N] [--follow]"
        )


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
    p.add_argument("--follow", "-f", action="store_true", help="then print new records as they come (Ctrl-C ends)")
    args = p.parse_args(argv)
    if path is None:
        from rcc.paths import audit_log_file

        path = audit_log_file()
    all_recs = list(read_records(path))
    recs = select(all_recs, args.denied, args.session)
    if args.limit > 0:
        recs = recs[-args.limit :]
    if args.follow:
        session = args.session
        if session == "last":
            session = all_recs[-1].session if all_recs else None
        for r in recs[-20:] if args.limit <= 0 else recs:
            sys.stdout.write(_line(r, args.json))
        sys.stdout.flush()

        def emit(r: AuditRecord) -> None:
            if (not args.denied or r.decision == "deny") and (session is None or r.session == session):
                sys.stdout.write(_line(r, args.json))
                sys.stdout.flush()

        try:
            follow(path, emit)
        except KeyboardInterrupt:
            return 0
        return 0
    if args.json:
        sys.stdout.write("".join(r.to_json() + "\n" for r in recs))
    elif recs:
        sys.stdout.write(render_table(recs))
    elif not os.path.exists(path):
        sys.stdout.write(f"no audit log yet ({path})\n")
    else:
        sys.stdout.write("no matching records\n")
    return 0


def _line(r: AuditRecord, as_json: bool) -> str:
    if as_json:
        return r.to_json() + "\n"
    why = r.rule if r.decision == "allow" and r.rule else r.reason
    dest = r.host if r.proto == "seatbelt" else format_hostport(r.host, r.port)
    cells = (r.time.replace("T", " ").rstrip("Z")[:19], r.session[:12], r.proto, dest, r.decision, why)
    return "  ".join(printable(c) for c in cells) + "\n"  # hosts and reasons come from the sandbox


class Tail:
    """Sans-IO line assembly for --follow: bytes in, complete lines out; a partial line waits for its end."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        *lines, self._buf = (self._buf + data).split(b"\n")
        if len(self._buf) > 1 << 20:  # a line that never ends: drop it (records are small)
            self._buf = b""
        return lines


def follow(
    path: str,
    emit: Callable[[AuditRecord], None],
    *,
    poll: float = 0.2,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Print records appended to `path` from now on, following rotation (the file renamed to .1 and a new one
    made): the old file is drained first, then the new one is read from its start."""
    import json
    import time

    def open_current() -> tuple[int, int] | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        return fd, os.fstat(fd).st_ino

    tail = Tail()

    def drain(fd: int) -> None:
        while chunk := os.read(fd, 65536):
            for line in tail.feed(chunk):
                try:
                    d = json.loads(line)
                    if isinstance(d, dict):
                        emit(AuditRecord.from_dict(d))
                except (ValueError, KeyError, TypeError):
                    continue

    cur = open_current()
    if cur is not None:
        os.lseek(cur[0], 0, os.SEEK_END)
    try:
        while not stop():
            if cur is None:
                cur = open_current()  # a new file (or the first one): from its start
            if cur is not None:
                drain(cur[0])
                try:
                    rotated = os.stat(path).st_ino != cur[1]
                except FileNotFoundError:
                    rotated = True
                if rotated:
                    drain(cur[0])  # what was written between the read above and the rename
                    os.close(cur[0])
                    cur = None
                    tail = Tail()
                    continue
            time.sleep(poll)
    finally:
        if cur is not None:
            os.close(cur[0])
