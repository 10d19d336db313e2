"""The egress audit log: one JSON object per line, appended to rcc.paths.audit_log_file(), rotated by size.

Invariants:
1. Every decision the proxy makes is one AuditRecord: denials when they happen, allowed connections when they
   end (with bytes each way and duration), so a record is written exactly once per connection attempt.
   Exception: past a per-session budget (auditbudget.py), connections are counted into summary records
   instead, so a flood of connections, allowed or denied, cannot rotate other sessions' records out of the log.
2. A line is written with a single write(2) on an O_APPEND descriptor, so concurrent rcc sessions sharing
   the file interleave whole lines, never parts of lines.
3. Rotation (audit.jsonl -> .1 -> .2 ... keep `keep`) happens under an flock on a side file; a writer whose
   file was rotated away by another session notices (inode changed) and reopens.
4. Readers skip lines that are not valid records (a crash mid-write, a hand edit) instead of failing.
5. The log's directory is opened once without following links (rcc.hostfs, below its parent) and every file in
   it is opened, created and renamed relative to that descriptor with O_NOFOLLOW: a link planted at the log,
   its lock or a rotated name is refused (UnsafePathError), never written through.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

MAX_BYTES = 10 * 1024 * 1024
KEEP = 3


@dataclass(frozen=True)
class AuditRecord:
    time: str  # ISO 8601 UTC, when the connection was accepted
    session: str
    proto: str  # "http" | "connect" | "socks5"
    host: str
    port: int
    addr: str  # the address connected to ("" when none: denied before resolution, or resolution failed)
    decision: str  # "allow" | "deny" | "error" (allowed, but the connection could not be made)
    rule: str  # the rule that decided ("" when no rule matched)
    reason: str
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    duration_ms: int = 0

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        """Serialised once per record (the audit budget sizes it, the log writes it): the proxy's per-connection
        cost. The same keys, in field order, as asdict() would give (a flat record: no copy needed)."""
        return json.dumps({f: getattr(self, f) for f in _FIELDS}, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditRecord:
        return cls(
            time=str(d["time"]),
            session=str(d["session"]),
            proto=str(d["proto"]),
            host=str(d["host"]),
            port=int(d["port"]),
            addr=str(d.get("addr", "")),
            decision=str(d["decision"]),
            rule=str(d.get("rule", "")),
            reason=str(d.get("reason", "")),
            bytes_up=int(d.get("bytes_up", 0)),
            bytes_down=int(d.get("bytes_down", 0)),
            duration_ms=int(d.get("duration_ms", 0)),
        )


_FIELDS = tuple(f.name for f in fields(AuditRecord))


def utc_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def rotated_paths(path: str, keep: int = KEEP) -> list[str]:
    """Oldest first: path.N ... path.1, path."""
    return [f"{path}.{i}" for i in range(keep, 0, -1)] + [path]


class AuditLog:
    """Appends records. Not thread-safe by itself: the proxy writes from its one event-loop thread."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd = -1
        from rcc import hostfs

        directory = os.path.dirname(os.path.abspath(path))
        self._name = os.path.basename(path)
        self._dir = hostfs.open_state(directory)  # the directory's parent is the anchor; nothing below is followed
        try:
            self._open()
        except BaseException:
            os.close(self._dir)
            raise

    def _open(self) -> None:
        from rcc import hostfs

        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fd = hostfs.open_file(self._dir, self._name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, shown=self.path)

    def _stat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self._dir, follow_symlinks=False)

    def write(self, record: AuditRecord) -> None:
        if self._fd < 0:
            return
        line = (record.to_json() + "\n").encode()
        try:
            st = self._stat(self._name)
            if st.st_ino != os.fstat(self._fd).st_ino:
                self._open()  # another session rotated it
            elif st.st_size + len(line) > self.max_bytes:
                self._rotate()
        except FileNotFoundError:
            self._open()
        os.write(self._fd, line)

    def _rotate(self) -> None:
        from rcc import hostfs

        lock = hostfs.open_file(self._dir, self._name + ".lock", os.O_WRONLY | os.O_CREAT, shown=self.path + ".lock")
        d, n = self._dir, self._name
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Re-check under the lock: another session may have rotated already.
            if self._stat(n).st_size > self.max_bytes // 2:
                for i in range(self.keep - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{n}.{i}", f"{n}.{i + 1}", src_dir_fd=d, dst_dir_fd=d)
                os.replace(n, f"{n}.1", src_dir_fd=d, dst_dir_fd=d)
        finally:
            os.close(lock)
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1


def read_records(path: str, keep: int = KEEP) -> Iterator[AuditRecord]:
    """All records, oldest first, across rotated files. Unparseable lines are skipped."""
    for p in rotated_paths(path, keep):
        try:
            f = open(p, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                try:
                    d = json.loads(line)
                    if isinstance(d, dict):
                        yield AuditRecord.from_dict(d)
                except (ValueError, KeyError, TypeError):
                    continue
