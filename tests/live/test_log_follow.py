"""`rcc log --follow`: new records as they are written, across rotation, partial lines held back; the CLI as a
real process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from rcc.net.audit import AuditLog, AuditRecord
from rcc.net.logcmd import Tail, follow


def rec(i: int, decision: str = "allow", session: str = "s1") -> AuditRecord:
    return AuditRecord("2026-01-01T00:00:00.000Z", session, "connect", f"h{i}.example", 443, "", decision, "", "r")


def test_tail_holds_back_a_partial_line() -> None:
    t = Tail()
    assert t.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert t.feed(b":2}\n") == [b'{"b":2}']


def test_follow_sees_every_new_record_in_order_across_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path, max_bytes=2000)  # rotates every dozen records
    log.write(rec(-1))  # before following: not shown
    seen: list[str] = []
    done = threading.Event()
    t = threading.Thread(target=follow, args=(path, lambda r: seen.append(r.host)), kwargs={"poll": 0.01,
                         "stop": done.is_set})  # fmt: skip
    t.start()
    time.sleep(0.1)
    for i in range(60):
        log.write(rec(i))
        if i % 7 == 0:
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while len(seen) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    done.set()
    t.join(5)
    log.close()
    assert os.path.exists(path + ".1")  # it did rotate
    assert seen == [f"h{i}.example" for i in range(60)]


def test_rcc_log_follow_cli_filters_and_prints_new_records(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = home / ".local" / "state" / "rcc"
    state.mkdir(parents=True)
    log = AuditLog(str(state / "audit.jsonl"))
    log.write(rec(0, session="old"))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    p = subprocess.Popen([sys.executable, "-m", "rcc", "log", "--follow", "--denied"], env=env,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(1.5)
        log.write(rec(1, "allow"))
        log.write(rec(2, "deny"))
        log.write(AuditRecord("2026-01-01T00:00:01.000Z", "s1", "connect", "evil\x1b[2J.example", 443, "", "deny",
                              "", "no allow rule"))  # fmt: skip
        assert p.stdout is not None
        first = p.stdout.readline()
        second = p.stdout.readline()
    finally:
        p.kill()
        p.wait()
        log.close()
    assert "h2.example:443  deny" in first and "h1.example" not in first
    assert "\x1b" not in second and "deny" in second  # a host from the sandbox never reaches the terminal raw
