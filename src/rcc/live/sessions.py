"""The session registry: one JSON record per running session, in rcc's state dir (sessions/ID.json), beside the
session's control socket (sessions/ID.sock).

Invariants:
1. Everything is written and read through hostfs (no link followed below the state dir's parent; files
   replaced atomically, reads bounded). The directory is 0700 and hidden in every sandbox (it is inside
   rcc's state dir, which compile hides whatever XDG_STATE_HOME says).
2. A record whose process is gone is stale: list_records() leaves it out (and removes it when asked to).
3. Records are facts the session wrote about itself; live numbers (allowed/denied) come from its socket.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass

from rcc import hostfs
from rcc.errors import ExitCode, RccError

DIR = "sessions"
MAX_RECORD = 64 * 1024


@dataclass(frozen=True)
class SessionRecord:
    id: str
    pid: int
    project: str
    command: str
    backend: str
    started: str  # UTC, ISO 8601
    socket: str  # the control socket's file name in sessions/
    branch: str = ""  # the project is a linked git worktree on this branch (rcc claude --worktree NAME)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> SessionRecord:
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        rec = cls(
            id=str(doc["id"]),
            pid=int(doc["pid"]),
            project=str(doc["project"]),
            command=str(doc["command"]),
            backend=str(doc["backend"]),
            started=str(doc["started"]),
            socket=str(doc["socket"]),
            branch=str(doc.get("branch", "")),
        )
        if not _valid_id(rec.id) or rec.socket != f"{rec.id}.sock":
            raise ValueError("bad id")
        return rec


def _valid_id(sid: str) -> bool:
    return 0 < len(sid) <= 32 and all(c in "0123456789abcdef" for c in sid)


def open_dir(state_dir: str, create: bool = True) -> int:
    fd = hostfs.open_state(state_dir, DIR, create=create)
    os.fchmod(fd, 0o700)
    return fd


def write_record(dirfd: int, rec: SessionRecord) -> None:
    hostfs.replace_file(dirfd, f"{rec.id}.json", rec.to_json(), 0o600)


def remove_record(dirfd: int, sid: str) -> None:
    for name in (f"{sid}.json", f"{sid}.sock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dirfd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_records(state_dir: str, prune: bool = False) -> list[SessionRecord]:
    """The running sessions' records, oldest first. Unreadable or stale records are skipped (pruned if asked)."""
    if not os.path.isdir(os.path.join(state_dir, DIR)):
        return []  # no session ever ran (the walk below would fail closed on a missing anchor)
    try:
        fd = open_dir(state_dir, create=False)
    except FileNotFoundError:
        return []
    try:
        out: list[SessionRecord] = []
        for name in sorted(os.listdir(fd)):
            if not name.endswith(".json") or not _valid_id(name[:-5]):
                continue
            try:
                data = hostfs.read_file(fd, name, MAX_RECORD)
                if data is None:
                    continue
                rec = SessionRecord.from_json(data)
            except (OSError, ValueError, KeyError, RccError):
                continue
            if rec.id != name[:-5]:
                continue
            if not _alive(rec.pid):
                if prune:
                    remove_record(fd, rec.id)
                continue
            out.append(rec)
        return sorted(out, key=lambda r: r.started)
    finally:
        os.close(fd)


def pick(records: list[SessionRecord], which: str) -> SessionRecord:
    """`last` (the newest), or an id or a unique id prefix. RccError (usage) when none or several match."""
    if not records:
        raise RccError(
            "no running rcc session for this account",
            hint="start one with `rcc run` or `rcc claude`; `rcc sessions` lists them",
            code=ExitCode.NO_SESSION,
        )
    if which in ("", "last"):
        return records[-1]
    found = [r for r in records if r.id.startswith(which.lower())]
    if len(found) != 1:
        raise RccError(
            f"{'no' if not found else 'more than one'} running session matches {which!r}",
            hint="`rcc sessions` lists the running sessions and their ids",
            code=ExitCode.NO_SESSION,
        )
    return found[0]
