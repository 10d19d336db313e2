"""Audit log: records, rotation, concurrent writers, `rcc log`; the denial notifier's rate limit; /proc parsers."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
from pathlib import Path

import pytest

from rcc.errors import UsageError
from rcc.net import logcmd
from rcc.net.audit import AuditLog, AuditRecord, read_records
from rcc.net.auditbudget import AuditBudget
from rcc.net.hostaddrs import host_addresses, parse_fib_trie, parse_if_inet6
from rcc.net.notices import DenialNotifier, denial_message
from rcc.net.rules import Decision


def rec(i: int = 0, session: str = "s1", decision: str = "allow", host: str = "example.com") -> AuditRecord:
    return AuditRecord(
        time=f"2026-01-01T00:00:{i % 60:02d}.000Z",
        session=session,
        proto="connect",
        host=host,
        port=443,
        addr="203.0.113.1" if decision == "allow" else "",
        decision=decision,
        rule="example.com" if decision == "allow" else "",
        reason="r",
        bytes_up=i,
        bytes_down=2 * i,
        duration_ms=i,
    )


def test_records_round_trip(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "a.jsonl"))
    for i in range(3):
        log.write(rec(i))
    log.close()
    assert list(read_records(str(tmp_path / "a.jsonl"))) == [rec(0), rec(1), rec(2)]
    assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o600


def test_rotation_keeps_a_few_files(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(str(path), max_bytes=2000, keep=3)
    for i in range(200):
        log.write(rec(i))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["a.jsonl", "a.jsonl.1", "a.jsonl.2", "a.jsonl.3"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.glob("a.jsonl*"))
    got = [r.bytes_up for r in read_records(str(path), keep=3)]
    assert got == sorted(got) and got[-1] == 199  # oldest first, newest kept


def _writer(path: str, who: int) -> None:
    log = AuditLog(path, max_bytes=20_000, keep=3)
    for i in range(300):
        log.write(rec(i, session=f"w{who}"))
    log.close()


def test_concurrent_sessions_write_whole_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "a.jsonl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    for f in tmp_path.glob("a.jsonl*"):
        if f.name.endswith(".lock"):
            continue
        for line in f.read_text().splitlines():
            json.loads(line)  # every line is a whole record


def test_reader_skips_garbage(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(rec(1).to_json() + "\n{not json\n[1,2]\n" + '{"time": 1}\n' + rec(2).to_json() + "\n")
    assert [r.bytes_up for r in read_records(str(path))] == [1, 2]


# ------------------------------------------------------------------------------------------------ rcc log


def test_log_select_last_session_and_denied() -> None:
    recs = [rec(1, "a"), rec(2, "b", "deny"), rec(3, "b"), rec(4, "a", "deny")]
    assert logcmd.select(recs, False, "last") == [rec(1, "a"), rec(4, "a", "deny")]
    assert logcmd.select(recs, True, None) == [rec(2, "b", "deny"), rec(4, "a", "deny")]
    assert logcmd.select(recs, True, "b") == [rec(2, "b", "deny")]
    assert logcmd.select([], False, "last") == []


def test_log_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(str(path))
    log.write(rec(5))
    log.write(
        AuditRecord("2026-01-01T00:00:06.000Z", "s1", "socks5", "2001:db8::1", 22, "", "deny", "", "no allow rule")
    )
    log.close()
    assert logcmd.command([], str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "TIME",
        "SESSION",
        "PROTO",
        "DESTINATION",
        "ADDRESS",
        "DECISION",
        "UP",
        "DOWN",
        "MS",
        "RULE",
        "/",
        "REASON",
    ]
    assert "example.com:443" in out[1] and "allow" in out[1] and out[1].endswith("example.com")
    assert "[2001:db8::1]:22" in out[2] and out[2].endswith("no allow rule")


def test_log_json_and_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(str(path))
    for i in range(5):
        log.write(rec(i))
    log.close()
    logcmd.command(["--json", "--limit", "2"], str(path))
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["bytes_up"] for x in lines] == [3, 4]


def test_log_without_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert logcmd.command([], str(tmp_path / "none.jsonl")) == 0
    assert "no audit log yet" in capsys.readouterr().out


def test_log_bad_flag_is_usage_error() -> None:
    with pytest.raises(UsageError):
        logcmd.command(["--nope"], "/nonexistent")


def test_rcc_log_via_cli(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    state = tmp_path / "state"
    (state / "rcc").mkdir(parents=True)
    (state / "rcc" / "audit.jsonl").write_text(rec(1, decision="deny", host="denied.example").to_json() + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "rcc", "log", "--denied"],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "denied.example:443" in r.stdout


# ------------------------------------------------------------------------------------------------ notifier


def test_notifier_rate_limits_per_destination_and_overall() -> None:
    now = [0.0]
    lines: list[str] = []
    n = DenialNotifier(lines.append, clock=lambda: now[0], per_key=60, burst=3, window=10)
    d = Decision(False, None, "no allow rule", "no-allow-rule")
    for _ in range(5):
        n("a.example", 443, d)
    assert len(lines) == 1
    for h in ("b", "c", "d", "e"):
        n(f"{h}.example", 443, d)
    assert len(lines) == 3  # burst
    now[0] = 11
    n("f.example", 443, d)
    assert lines[3] == "rcc: 2 more denials not shown (see `rcc log --denied`)"
    assert lines[4].startswith("rcc: denied f.example:443")
    now[0] = 100
    n("a.example", 443, d)  # per-destination limit expired
    assert lines[-1].startswith("rcc: denied a.example:443")


def test_notifier_survives_a_broken_callback() -> None:
    def boom(_line: str) -> None:
        raise OSError("stderr closed")

    DenialNotifier(boom)("a.example", 443, Decision(False, None, "no allow rule", "no-allow-rule"))


def test_denial_messages_name_what_would_allow() -> None:
    assert denial_message("example.org", 8080, Decision(False, None, "no allow rule", "no-allow-rule")) == (
        "rcc: denied example.org:8080 (no allow rule) — allow with --allow example.org:8080 or network.allow in config"
    )
    assert "--deny" in denial_message(
        "x.example", 443, Decision(False, "x.example", "denied by rule x.example", "denied-by-rule")
    )
    loopback = Decision(False, None, "resolves to loopback address 127.0.0.1", "forbidden-address", address="127.0.0.1")
    m = denial_message("api.test", 443, loopback)
    assert "--allow 127.0.0.1 " in m


# ------------------------------------------------------------------------------------------------ /proc parsers

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 192.0.2.2
        /32 host LOCAL
     |-- 192.0.2.255
        /32 link BROADCAST
"""


def test_parse_fib_trie() -> None:
    assert parse_fib_trie(FIB_TRIE) == {ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address("192.0.2.2")}


def test_parse_if_inet6() -> None:
    text = (
        "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000000000000000000001 02 40 20 80     eth0\n"
    )
    assert parse_if_inet6(text) == {ipaddress.IPv6Address("::1"), ipaddress.IPv6Address("fe80::1")}


def test_host_addresses_reads_this_namespace() -> None:
    assert ipaddress.ip_address("127.0.0.1") in host_addresses()


# ------------------------------------------------------------------------------------------------ the budget


def _budget(
    burst: float = 1000, cap: float = 1e9, rate: float = 0.0
) -> tuple[AuditBudget, list[AuditRecord], list[float]]:
    now = [0.0]
    out: list[AuditRecord] = []
    return AuditBudget(out.append, "s1", burst=burst, cap=cap, rate=rate, clock=lambda: now[0]), out, now


def _size(r: AuditRecord) -> int:
    return len(r.to_json()) + 1


def test_budget_writes_one_by_one_within_the_burst_and_refills() -> None:
    b, out, now = _budget(burst=_size(rec(1)) * 3, rate=100)
    for i in range(1, 4):
        b.record(rec(i))
    assert out == [rec(1), rec(2), rec(3)]
    b.record(rec(4))  # over the burst: summed up, not written
    assert out == [rec(1), rec(2), rec(3)] and b.pending() == 1
    now[0] = 100.0  # refilled: the next record goes out one by one, the pending summary after it
    b.record(rec(5))
    assert out[3] == rec(5) and "1 allowed connections not recorded one by one" in out[4].reason
    assert b.pending() == 0


def test_budget_sums_allowed_connections_per_rule_and_port_with_their_bytes() -> None:
    b, out, _ = _budget(burst=0)
    for i in range(1, 11):
        b.record(rec(i, host="a.example" if i % 2 else "b.example"))
    b.record(AuditRecord("t", "s1", "socks5", "c.example", 22, "192.0.2.1", "allow", "c.example:22", "r", 7, 8, 9))
    assert out == []
    b.close()
    assert len(out) == 2
    first, second = out
    assert (first.proto, first.rule, first.port, first.host, first.addr) == (
        "connect",
        "example.com",
        443,
        "",
        "203.0.113.1",
    )
    assert first.reason.startswith("10 allowed connections not recorded one by one")
    assert (first.bytes_up, first.bytes_down, first.duration_ms) == (55, 110, 55)
    assert (second.host, second.port, second.bytes_up, second.bytes_down) == ("c.example", 22, 7, 8)
    assert second.reason.startswith("1 allowed")


def test_budget_summaries_are_bounded_however_many_destinations() -> None:
    from rcc.net.auditbudget import MAX_SUMMARIES

    b, out, _ = _budget(burst=0)
    for port in range(1, 1001):  # a sandbox choosing 1000 different keys
        b.record(AuditRecord("t", "s1", "connect", "x.example", port, "", "allow", f"x.example:{port}", "r"))
    b.close()
    assert len(out) == MAX_SUMMARIES + 1
    assert sum(int(r.reason.split()[0]) for r in out) == 1000


def test_budget_counts_denials_into_one_record_and_keeps_allowed_separate() -> None:
    b, out, _ = _budget(burst=_size(rec(1)) * 2)
    for i in range(100):
        b.record(rec(i, decision="deny", host=f"h{i}.example"))
    b.record(rec(7))  # a denial flood does not spend the allowed connections' budget
    assert out[-1] == rec(7) and len(out) == 3
    b.close()
    assert out[-1].reason == "98 more denied or failed connections not recorded one by one (over the audit budget)"


def test_budget_has_a_lifetime_cap() -> None:
    """Burst and rate alone let a flood of many hours fill the log: past `cap` bytes, nothing more one by one."""
    b, out, now = _budget(burst=_size(rec(1)) * 10, cap=_size(rec(1)) * 4, rate=1e6)
    for i in range(1, 100):
        now[0] += 10.0
        b.record(rec(i))
    assert out == [rec(1), rec(2), rec(3), rec(4)]
    b.close()
    assert out[-1].reason.startswith("95 allowed connections")


def test_budget_for_log_fits_the_rotation() -> None:
    b = AuditBudget.for_log(lambda r: None, "s", 10 * 1024 * 1024)
    assert b._left == 5 * 1024 * 1024 and b._allowed.burst == b._denied.burst == 2.5 * 1024 * 1024
    f = AuditBudget.for_log(lambda r: None, "s", 10 * 1024 * 1024, share=0.5)
    assert b._left + f._left < 10 * 1024 * 1024
