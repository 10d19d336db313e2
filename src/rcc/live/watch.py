"""`rcc watch [--session ID|last]`: a live view of a running session's network decisions and, in ask mode, its
questions, answered with one key: o (allow once), s (allow for the session), a (always: the session and your
config), d (deny), q (quit). Line-oriented (usable over ssh and in any terminal); colour only on a terminal and
never with NO_COLOR. Everything shown that came from the sandbox (host names, reasons) is made printable first.
On a terminal the watcher answers, and questions are held for it; otherwise (output piped) it only views."""

from __future__ import annotations

import os
import select
import socket
import sys
from typing import Any

from rcc import paths
from rcc.errors import ExitCode, RccError, UsageError
from rcc.live import protocol, sessions
from rcc.net.hosts import printable

HELP = """\
usage: rcc watch [--session ID|last]

A live view of a running session's network decisions. In ask mode (network.on_unknown = "ask") a connection to a
host no rule covers waits for your answer here (network.ask_timeout, default 60 s):
  o  allow once          s  allow for this session
  a  allow always (this session, and network.allow in your config)      d  deny       q  quit
Questions are held only while a `rcc watch` on a terminal is attached; without one they are denied at once.
"""

KEYS = {"o": "once", "s": "session", "a": "always", "d": "deny"}


class View:
    """Formats events as lines (pure: tests drive it)."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.pending: dict[int, dict[str, Any]] = {}

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def line(self, ev: dict[str, Any]) -> str:
        kind = ev.get("event")
        if kind == "decision":
            target = printable(f"{ev.get('host', '')}:{ev.get('port', '')}")
            d = str(ev.get("decision", ""))
            tag = self._c("32" if d == "allow" else "31", f"{d:5}")
            why = printable(str(ev.get("rule") or ev.get("reason") or ""))
            return f"{str(ev.get('time', ''))[11:19]} {tag} {target}  {why}"
        if kind == "ask":
            self.pending[int(ev["id"])] = ev
            return self.prompt()
        if kind == "resolved":
            q = self.pending.pop(int(ev.get("id", 0)), None)
            target = printable(str(q["target"])) if q else f"question {ev.get('id')}"
            why = printable(str(ev.get("why", "")))
            out = f"  [{ev.get('id')}] {target}: {printable(str(ev.get('answer', '')))} ({why})"
            return out + ("\n" + self.prompt() if self.pending else "")
        if kind == "overflow":
            return self._c(
                "33", f"! {ev.get('denied')} requests denied at once: {ev.get('max_pending')} questions open"
            )
        if kind == "end":
            return "rcc watch: the session ended"
        return ""

    def prompt(self) -> str:
        if not self.pending:
            return ""
        q = self.pending[min(self.pending)]
        more = f" (+{len(self.pending) - 1} waiting)" if len(self.pending) > 1 else ""
        return self._c(
            "1",
            f"? [{q['id']}] {printable(str(q['target']))} wants to connect{more}: "
            f"o once, s session, a always, d deny ({q.get('seconds', '?')} s)",
        )


def command(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(HELP)
        return 0
    which = "last"
    if argv[:1] == ["--session"] and len(argv) == 2:
        which = argv[1]
    elif len(argv) == 1 and argv[0].startswith("--session="):
        which = argv[0].partition("=")[2]
    elif argv:
        raise UsageError(f"unexpected {argv[0]!r}", hint="usage: rcc watch [--session ID|last]")
    rec = sessions.pick(sessions.list_records(paths.state_dir(), prune=True), which)
    interactive = sys.stdin.isatty()
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    fd = sessions.open_dir(paths.state_dir(), create=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(f"/proc/self/fd/{fd}/{rec.socket}")
    except OSError as e:
        raise RccError(f"cannot reach session {rec.id}: {e}", code=ExitCode.NO_SESSION) from None
    finally:
        os.close(fd)
    s.sendall(protocol.request("watch" if interactive else "view"))
    return _loop(s, rec, View(color), interactive)


def _out(text: str) -> None:
    if text:
        sys.stdout.write(text.replace("\n", "\r\n") + "\r\n")
        sys.stdout.flush()


def _loop(s: socket.socket, rec: sessions.SessionRecord, view: View, interactive: bool) -> int:
    buf = protocol.LineBuffer(max_line=1 << 20)
    old = None
    if interactive:
        import termios
        import tty

        old = termios.tcgetattr(0)
        tty.setcbreak(0)
    answering: dict[int, dict[str, Any]] = {}
    try:
        first = True
        while True:
            fds = [s.fileno(), 0] if interactive else [s.fileno()]
            ready, _, _ = select.select(fds, [], [])
            if 0 in ready:
                key = os.read(0, 1).decode(errors="replace").lower()
                if key in ("q", "\x04"):
                    return 0
                if key in KEYS and view.pending:
                    qid = min(view.pending)
                    answering[qid] = {**view.pending[qid], "answer": KEYS[key]}
                    s.sendall(protocol.answer(qid, KEYS[key]))
            if s.fileno() in ready:
                data = s.recv(65536)
                if not data:
                    _out("rcc watch: the session ended")
                    return 0
                for line in buf.feed(data):
                    doc = _json(line)
                    if first:
                        first = False
                        mode = (
                            "asking: a host no rule covers waits for your answer"
                            if doc.get("asking")
                            else ('not asking (network.on_unknown is not "ask" here): decisions only')
                        )
                        _out(f"rcc watch: session {rec.id} ({printable(rec.command)[:60]}) — {mode}; q quits")
                        continue
                    if "event" in doc:
                        _out(view.line(doc))
                        if doc["event"] == "end":
                            return 0
                    elif "id" in doc:
                        _answered(doc, answering.pop(int(doc["id"]), None))
    except KeyboardInterrupt:
        return 130
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, old)
        s.close()


def _answered(reply: dict[str, Any], q: dict[str, Any] | None) -> None:
    if not reply.get("ok"):
        _out(f"rcc watch: not applied: {printable(str(reply.get('error', '?')))}")
        return
    if q is not None and q.get("answer") == "always":
        from rcc.live.config_edit import save_rule
        from rcc.net.rules import suggest_allow

        rule = suggest_allow(str(q["host"]), int(q["port"]))
        try:
            _out(f"rcc watch: saved {printable(rule)} to network.allow in {save_rule('allow', rule)}")
        except RccError as e:
            _out(f"rcc watch: allowed for this session, but not saved: {e.message}")


def _json(line: bytes) -> dict[str, Any]:
    import json

    try:
        doc = json.loads(line)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
