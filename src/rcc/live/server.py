"""ControlServer: the running session's end of the control channel (see protocol.py for the wire format).

Invariants:
1. Reachable only by the same account on the host: a unix socket (never TCP) in rcc's state dir
   (sessions/ID.sock, directory 0700, socket 0600; the state dir is hidden in every sandbox). Each peer is
   checked with SO_PEERCRED: another uid is refused, and so is a peer in another network namespace (every
   rcc sandbox has its own: defence in depth should a sandbox ever reach the socket).
2. A change is applied by compiling the session's rules plus the live rules afresh and handing them to the
   proxy's RuleDecider (net/decider.py): an invalid rule changes nothing. Deny rules still win; the address
   guards (loopback, metadata, this host) are untouched by any allow of a name.
3. Every change, applied or refused, is an audit record in rcc's state dir (policy-changes.jsonl): when, which
   session, what, and who (uid and pid from the kernel, never from the request).
4. Bounded: at most MAX_CLIENTS connections at a time, each with a timeout and a line limit.
5. Linux only (SO_PEERCRED, /proc); elsewhere start() does nothing and the session has no control channel.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from rcc import hostfs
from rcc.errors import RccError
from rcc.live import protocol, sessions
from rcc.live.ask import AskBroker, Watcher
from rcc.net.audit import AuditRecord, utc_now
from rcc.net.decider import RuleDecider
from rcc.net.rules import RuleError, compile_rules

CHANGES = "policy-changes.jsonl"
LEARNED = "learned:"  # the reason of a connection learn mode let through (net/decider.py)
MAX_CLIENTS = 8
CLIENT_TIMEOUT = 10.0


class ControlServer:
    def __init__(
        self,
        record: sessions.SessionRecord,
        decider: RuleDecider,
        *,
        allow: Sequence[str],
        deny: Sequence[str],
        resolve: dict[str, str],
        state_dir: str,
        ask_timeout: float = 60.0,
    ) -> None:
        self.record = record
        self.decider = decider
        self.base_allow, self.base_deny, self.resolve = tuple(allow), tuple(deny), dict(resolve)
        self.live_allow: list[str] = []
        self.live_deny: list[str] = []
        self.allowed = 0
        self.denied = 0
        self.learned: set[str] = set()  # host:port let through by learn mode
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._dirfd = -1
        self._sock: socket.socket | None = None
        self._closed = False
        # Watchers attach here in every session (the live view); it asks only once set as the decider's asker.
        self.broker = AskBroker(ask_timeout, self._apply_for_answer)

    # ---------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> bool:
        """Bind, write the session record, serve in a daemon thread. False (nothing started) off Linux."""
        if not sys.platform.startswith("linux") or not hasattr(socket, "SO_PEERCRED"):
            return False
        self._dirfd = sessions.open_dir(self.state_dir)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sessions.remove_record(self._dirfd, self.record.id)
            # Bound through the directory's descriptor: no link followed, and no 108-byte sun_path limit.
            s.bind(f"/proc/self/fd/{self._dirfd}/{self.record.socket}")
            os.chmod(self.record.socket, 0o600, dir_fd=self._dirfd, follow_symlinks=False)
            s.listen(MAX_CLIENTS)
            sessions.write_record(self._dirfd, self.record)
        except BaseException:
            s.close()
            raise
        self._sock = s
        threading.Thread(target=self._accept_loop, name="rcc-control", daemon=True).start()
        return True

    def close(self) -> None:
        self._closed = True
        self.broker.broadcast({"event": "end"})
        self.broker.close()  # open questions are denied, watchers let go
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._dirfd >= 0:
            with contextlib.suppress(OSError):
                sessions.remove_record(self._dirfd, self.record.id)
            os.close(self._dirfd)
            self._dirfd = -1

    def on_record(self, rec: AuditRecord) -> None:
        """Called by the proxy for each connection's audit record (its thread)."""
        if rec.decision == "allow":
            self.allowed += 1
            if rec.reason.startswith(LEARNED) and len(self.learned) < 10000:
                self.learned.add(f"{rec.host}:{rec.port}")
        elif rec.decision == "deny":
            self.denied += 1
        if self.broker.watchers():
            self.broker.broadcast(
                {
                    "event": "decision",
                    "time": rec.time,
                    "host": rec.host,
                    "port": rec.port,
                    "decision": rec.decision,
                    "rule": rec.rule,
                    "reason": rec.reason,
                }
            )

    # ---------------------------------------------------------------------------------------------- serving

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.05)
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="rcc-control-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(CLIENT_TIMEOUT)
            peer = peer_of(conn)
            if peer is None:
                return
            buf = protocol.LineBuffer()
            send_lock = threading.Lock()
            watcher: Watcher | None = None

            def send(obj: dict[str, Any]) -> None:
                with send_lock:
                    conn.sendall(protocol.encode(obj))

            try:
                while data := conn.recv(4096):
                    for line in buf.feed(data):
                        op = _watch_op(line) if watcher is None else ""
                        if op:
                            conn.settimeout(None)  # a watcher stays as long as it likes
                            send({"ok": True, "asking": self.decider.asker is not None, **self.status()})
                            watcher = Watcher(send)
                            self.broker.attach(watcher, answers=op == "watch")
                            continue
                        send(self.handle(line, peer))
            finally:
                if watcher is not None:
                    self.broker.detach(watcher)
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            conn.close()
            self._slots.release()

    def handle(self, line: bytes, peer: tuple[int, int]) -> dict[str, Any]:
        try:
            req = protocol.parse_request(line)
        except protocol.ProtocolError as e:
            return {"ok": False, "error": str(e)}
        if req.op in ("status", "watch", "view"):
            return {"ok": True, **self.status()}
        if req.op == "answer":
            err = self.broker.answer(req.id, req.answer, peer)
            self._audit(req, peer, err)
            return {"ok": not err, "id": req.id, **({"error": err} if err else {})}
        return self._change(req, peer)

    def _apply_for_answer(self, rule: str, peer: Any) -> str:
        """The broker's answer "session"/"always": a session allow rule, audited like `rcc allow`."""
        reply = self._change(protocol.Request("allow", rule), peer)
        return "" if reply["ok"] else str(reply.get("error", "refused"))

    def _change(self, req: protocol.Request, peer: tuple[int, int]) -> dict[str, Any]:
        with self._lock:
            allow, deny = list(self.live_allow), list(self.live_deny)
            if req.op == "allow":
                if req.rule not in allow:
                    allow.append(req.rule)
                deny = [d for d in deny if d != req.rule]
            else:
                if req.rule not in deny:
                    deny.append(req.rule)
                allow = [a for a in allow if a != req.rule]
            try:
                rules = compile_rules([*self.base_allow, *allow], [*self.base_deny, *deny], self.resolve)
            except RuleError as e:
                self._audit(req, peer, str(e))
                return {"ok": False, "error": str(e)}
            self.decider.replace(rules)
            self.live_allow, self.live_deny = allow, deny
            self._audit(req, peer, "")
        return {"ok": True, **self.status()}

    def status(self) -> dict[str, Any]:
        return {
            "session": self.record.id,
            "allowed": self.allowed,
            "denied": self.denied,
            "live_allow": list(self.live_allow),
            "live_deny": list(self.live_deny),
        }

    def _audit(self, req: protocol.Request, peer: tuple[int, int], error: str) -> None:
        pid, uid = peer
        doc = {
            "time": utc_now(),
            "session": self.record.id,
            "action": req.op,
            "rule": req.rule,
            **({"question": req.id, "answer": req.answer} if req.op == "answer" else {}),
            "applied": not error,
            "error": error,
            "by_uid": uid,
            "by_pid": pid,
            "by_command": _cmdline(pid),
        }
        line = json.dumps(doc, ensure_ascii=True).encode() + b"\n"
        try:
            fd = hostfs.open_state(self.state_dir)
            try:
                f = hostfs.open_file(fd, CHANGES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(f, line)
                finally:
                    os.close(f)
            finally:
                os.close(fd)
        except (OSError, RccError) as e:
            sys.stderr.write(f"rcc: could not record a policy change in {CHANGES}: {e}\n")


def _watch_op(line: bytes) -> str:
    """ "watch" or "view" when the line asks to become a watcher, else ""."""
    try:
        op = protocol.parse_request(line).op
    except protocol.ProtocolError:
        return ""
    return op if op in ("watch", "view") else ""


def peer_of(conn: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of a peer rcc accepts: same uid, same network namespace as this process. None otherwise."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid() or pid <= 0:
        return None
    try:
        if os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            return None
    except OSError:
        return None  # cannot tell: refuse (fail closed)
    return pid, uid


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(512)
    except OSError:
        return ""
    return "".join(c if c.isprintable() else " " for c in raw.replace(b"\0", b" ").decode("utf-8", "replace")).strip()
