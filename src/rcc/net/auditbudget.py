"""The per-session audit budget: how many records one session may write one by one. Pure (clock injected).

The audit log is shared by every session and rotated by size (audit.py: four files). Without a budget, a sandbox
that opens connections as fast as it can (about 160,000 allowed CONNECTs a minute, or 4,600 denials a second
here) rotates every earlier record out of all four files: other sessions' and its own earlier connections. So:

Invariants:
1. Every connection attempt is accounted for in the log: as its own record, or counted into a summary record.
   A summary's reason starts with the number of connections it stands for and says "not recorded one by one".
2. Records written one by one come out of two token buckets per session, one for allowed connections and one
   for denials and errors (a denial flood never hides where allowed connections sent data): each a burst of
   `burst` bytes, refilled at `rate` bytes a second. On top, a session writes at most `cap` bytes one by one
   in its whole life (burst and rate alone would let a flood of many hours fill the log).
   The proxy uses burst = a quarter of one log file and cap = half of one, the host-service forwarders
   (rcc.forward) half of that: with the bounded summaries, one session writes well under one file in all,
   so however it behaves it rotates the log at most once. Records from before it are moved down at most one
   file of the four: it cannot push another session's records out of the log.
3. Over the budget, allowed connections are summed per (protocol, rule, port): one record each, with the
   count, the bytes each way and the durations added up, and the host and address when they were all the same.
   At most MAX_SUMMARIES such keys (the rest share one catch-all summary), so what a flood costs in summaries
   is bounded too. Denials and errors over the budget are counted into one record (their hosts and ports come
   from the sandbox: summing them per host would let the sandbox choose how many summaries there are).
4. Summaries are written when the budget has room again (they pay for themselves) and, unconditionally, at
   close(): a bounded handful of records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from rcc.net.audit import AuditRecord, utc_now

MAX_SUMMARIES = 64
# Refill of each bucket, bytes a second: about four records. Ordinary sessions (an npm install's burst, an
# agent's API calls) stay well inside burst + rate; a flood is summed up.
RATE = 1024.0
NOT_ONE_BY_ONE = "not recorded one by one (over the audit budget)"


@dataclass
class _Sum:
    """Allowed connections summed up under one key."""

    time: str
    host: str | None  # None once two different hosts were summed
    addr: str | None
    count: int = 0
    up: int = 0
    down: int = 0
    ms: int = 0

    def add(self, rec: AuditRecord) -> None:
        if self.host is not None and self.host != rec.host:
            self.host = None
        if self.addr is not None and self.addr != rec.addr:
            self.addr = None
        self.count += 1
        self.up += rec.bytes_up
        self.down += rec.bytes_down
        self.ms += rec.duration_ms


class _Bucket:
    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens, self.at = burst, now

    def take(self, size: int, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < size:
            return False
        self.tokens -= size
        return True


class AuditBudget:
    """Feed every record of one session to record(); call close() when the session ends. `write` appends one
    record to the log (AuditLog.write); its OSErrors are swallowed (the connection was already decided)."""

    def __init__(
        self,
        write: Callable[[AuditRecord], None],
        session: str,
        *,
        burst: float,
        cap: float,
        rate: float = RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write, self.session, self._clock = write, session, clock
        now = clock()
        self._allowed = _Bucket(burst, rate, now)
        self._denied = _Bucket(burst, rate, now)
        self._left = cap  # bytes this session may still write one by one
        self._sums: dict[tuple[str, str, int], _Sum] = {}
        self._unrecorded = 0  # denials and errors over the budget

    @classmethod
    def for_log(
        cls, write: Callable[[AuditRecord], None], session: str, max_bytes: int, share: float = 1.0
    ) -> AuditBudget:
        """The budget for a log rotated at `max_bytes`: burst a quarter of one file, cap half of one, times
        `share` (the proxy 1, the host-service forwarders 0.5: together under one file, see invariant 2)."""
        return cls(write, session, burst=max_bytes / 4 * share, cap=max_bytes / 2 * share)

    def record(self, rec: AuditRecord) -> None:
        size = len(rec.to_json()) + 1
        bucket = self._allowed if rec.decision == "allow" else self._denied
        if not self._take(bucket, size):
            if rec.decision == "allow":
                self._sum(rec)
            else:
                self._unrecorded += 1
            return
        self._emit(rec)
        self._flush(budgeted=True)

    def close(self) -> None:
        """Write every pending summary (bounded: at most MAX_SUMMARIES + 2 records)."""
        self._flush(budgeted=False)

    def pending(self) -> int:
        """Connections counted but not yet written in a summary."""
        return self._unrecorded + sum(s.count for s in self._sums.values())

    def _take(self, bucket: _Bucket, size: int) -> bool:
        if self._left < size or not bucket.take(size, self._clock()):
            return False
        self._left -= size
        return True

    def _sum(self, rec: AuditRecord) -> None:
        key = (rec.proto, rec.rule, rec.port)
        if key not in self._sums and len(self._sums) >= MAX_SUMMARIES:
            key = ("-", "", 0)  # the catch-all
        s = self._sums.get(key)
        if s is None:
            s = self._sums[key] = _Sum(rec.time, rec.host, rec.addr)
        s.add(rec)

    def _flush(self, budgeted: bool) -> None:
        if self._unrecorded:
            rec = self._denial_summary()
            if not budgeted or self._take(self._denied, len(rec.to_json()) + 1):
                self._unrecorded = 0
                self._emit(rec)
        for key in list(self._sums):
            rec = self._allowed_summary(key, self._sums[key])
            if budgeted and not self._take(self._allowed, len(rec.to_json()) + 1):
                return
            del self._sums[key]
            self._emit(rec)

    def _denial_summary(self) -> AuditRecord:
        reason = f"{self._unrecorded} more denied or failed connections {NOT_ONE_BY_ONE}"
        return AuditRecord(utc_now(), self.session, "-", "", 0, "", "deny", "", reason)

    def _allowed_summary(self, key: tuple[str, str, int], s: _Sum) -> AuditRecord:
        proto, rule, port = key
        reason = f"{s.count} allowed connections {NOT_ONE_BY_ONE}: one record for them all, bytes and durations summed"
        return AuditRecord(s.time, self.session, proto, s.host or "", port, s.addr or "", "allow", rule, reason,
                           s.up, s.down, s.ms)  # fmt: skip

    def _emit(self, rec: AuditRecord) -> None:
        with contextlib.suppress(OSError):
            self._write(rec)
