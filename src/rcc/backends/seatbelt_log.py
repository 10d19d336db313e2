"""Seatbelt's denials, made visible: read from macOS's unified log while a session runs, written to rcc's audit
log beside the proxy's decisions (`rcc log --session ID --denied` shows both), and summarised on stderr.

Every deny rule in rcc's profile carries `(with message "rcc-sbx-<session>")`, so
`log stream --style ndjson --predicate 'eventMessage CONTAINS "rcc-sbx-<session>"'` yields this session's
denials only. The kernel's message reads like `Sandbox: curl(4242) deny(1) network-outbound 1.1.1.1:443`
(the layout sandbox-runtime parses too); a line that does not is kept whole as the reason.

Invariants:
1. parse_denial() is pure. The watcher only reads `log`'s output: nothing in a log line is executed or used
   as a path; every string is printed through rcc.net.hosts.printable (it can come from the sandbox).
2. If `log` cannot run, the session still runs (the sandbox does not depend on it) and rcc says once that
   denials are not recorded.
3. /usr/bin/log by its absolute path; RCC_MACOS_LOG (absolute) replaces it for tests on Linux (the backend
   does not pass it on macOS).
"""

from __future__ import annotations

import os
import re
import sys

from rcc.net.audit import AuditRecord, utc_now

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

LOG = "/usr/bin/log"
PROTO = "seatbelt"
_MESSAGE = re.compile(r"Sandbox: (?P<proc>.+?)\((?P<pid>\d+)\) deny\(\d+\) (?P<op>[a-z0-9*-]+)(?: (?P<obj>.*))?$")
MAX_NOTICES = 5


def stream_argv(tag: str, log: str = LOG) -> list[str]:
    return [log, "stream", "--style", "ndjson", "--predicate", f'eventMessage CONTAINS "{tag}"']


def parse_denial(line: str, tag: str, session: str) -> AuditRecord | None:
    """One ndjson line of `log stream` -> an audit record of a denial of this session, or None."""
    import json

    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    msg = str(doc.get("eventMessage", ""))
    if tag not in msg:
        return None
    text = msg.replace(tag, "").strip()
    m = _MESSAGE.search(text)
    if m is None:
        return AuditRecord(utc_now(), session, PROTO, "", 0, "", "deny", "", text[:500])
    obj = (m.group("obj") or "").strip()
    return AuditRecord(
        time=utc_now(),
        session=session,
        proto=PROTO,
        host=obj[:500],
        port=0,
        addr="",
        decision="deny",
        rule=m.group("op"),
        reason=f"{m.group('proc')}[{m.group('pid')}]: seatbelt denied {m.group('op')}",
    )


class DenialWatcher:
    """Runs `log stream` for one session's tag; a thread turns its lines into audit records."""

    def __init__(self, tag: str, session: str, audit_path: str, env: Mapping[str, str], defer: bool) -> None:
        self.tag, self.session, self.defer = tag, session, defer
        self.count = 0
        self.notices: list[str] = []
        self.proc: Any = None
        self.thread: Any = None
        self.audit: Any = None
        log = env.get("RCC_MACOS_LOG", "") or LOG
        if not (os.path.isabs(log) and os.access(log, os.X_OK)):
            sys.stderr.write(f"rcc: note: {log} not available: the sandbox's denials are not recorded\n")
            return
        import subprocess
        import threading

        from rcc.net.audit import AuditLog

        try:
            self.audit = AuditLog(audit_path)
            self.proc = subprocess.Popen(
                stream_argv(tag, log),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                text=True,
                errors="replace",
            )
        except OSError as e:
            sys.stderr.write(f"rcc: note: cannot run {log} ({e}): the sandbox's denials are not recorded\n")
            self.proc = None
            return
        self.thread = threading.Thread(target=self._read, name="rcc-seatbelt-log", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from rcc.net.hosts import printable

        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            rec = parse_denial(line, self.tag, self.session)
            if rec is None:
                continue
            self.count += 1
            if self.audit is not None:
                self.audit.write(rec)
            if self.count <= MAX_NOTICES:
                note = printable(f"rcc: sandbox denied {rec.rule or '?'} {rec.host or rec.reason}")
                if self.defer:
                    self.notices.append(note)
                else:
                    sys.stderr.write(note + "\n")
                    sys.stderr.flush()

    def close(self, grace: float = 0.5) -> None:
        """Stop after a short grace (the unified log delivers with a delay), then say where the rest is."""
        if self.proc is None:
            return
        import subprocess

        if self.thread is not None:
            self.thread.join(grace)
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.thread is not None:
            self.thread.join(2)
        if self.audit is not None:
            self.audit.close()
        for note in self.notices:
            sys.stderr.write(note + "\n")
        if self.count:
            more = f" ({self.count - MAX_NOTICES} more)" if self.count > MAX_NOTICES else ""
            sys.stderr.write(f"rcc: sandbox denials{more}: rcc log --session {self.session} --denied\n")
