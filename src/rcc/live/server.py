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
from rcc.net.audit import AuditRecord, utc_now
from rcc.net.decider import RuleDecider
from rcc.net.rules import RuleError, compile_rules

CHANGES = "policy-changes.jsonl"
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
    ) -> None:
        self.record = record
        self.decider = decider
        self.base_allow, self.base_deny, self.resolve = tuple(allow), tuple(deny), dict(resolve)
        self.live_allow: list[str] = []
        self.live_deny: list[str] = []
        self.allowed = 0
        self.denied = 0
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._dirfd = -1
        self._sock: socket.socket | None = None
        self._closed = False

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
        elif rec.decision == "deny":
            self.denied += 1

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
            while data := conn.recv(4096):
                for line in buf.feed(data):
                    conn.sendall(protocol.encode(self.handle(line, peer)))
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
        if req.op == "status":
            return {"ok": True, **self.status()}
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
