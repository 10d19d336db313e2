"""Published ports and host services: TCP forwarders between the host's loopback and the sandbox's own.

The sandbox has its own network namespace: its 127.0.0.1 is not the host's. Two kinds of door, each opened only
for the ports the policy names and only while the session runs:

- publish (host -> sandbox): rcc listens on HOSTADDR:HOSTPORT in the host's namespace (127.0.0.1 unless the
  user named another address) and connects each accepted connection to 127.0.0.1:PORT (else [::1]:PORT) inside
  the sandbox. The inside socket is made in the sandbox's namespace by a small child process that joined it
  (SocketFactory): a socket keeps the namespace it was created in, so rcc connects it from the host side.
- host service (sandbox -> host): rcc listens on 127.0.0.1:PORT and [::1]:PORT *inside* the sandbox
  (rcc.netns.listen_in_netns) and connects each accepted connection to the host's loopback on the same port.
  Only loopback, only that port: the sandbox names no address, so it cannot reach any other host or port.
  Every connection is an audit record (proto "host-service"), like the egress proxy's.

Invariants:
1. Every listener and the socket factory exist before the command starts (the backend holds it until then), so
   a failure (port in use) stops the session before it runs, never a session without its doors.
2. close() closes every listener and connection; the factory child dies with its channel (and with rcc:
   PR_SET_PDEATHSIG), so nothing outlives the session.
4. At most MAX_CONNECTIONS forwarded connections are open at once (each costs rcc two descriptors): a sandbox
   cannot starve rcc, and its proxy, of descriptors through a door.
3. The forwarder never parses the bytes it relays.
"""

from __future__ import annotations

import contextlib
import os
import socket

from rcc.errors import ExitCode, RccError
from rcc.policy import parse_publish  # noqa: F401 (its grammar is policy; callers may import it from here)

CLOSE_GRACE = 1.0  # seconds a connection still open when the session ends gets to finish (and be recorded whole)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import threading
    from typing import Any

    from rcc.plan import Plan, Publish


# ------------------------------------------------------------------------------------------- socket factory


class SocketFactory:
    """A child process inside the sandbox's network namespace that makes unconnected TCP sockets there and
    hands them over (SCM_RIGHTS). Forked before any thread of rcc's runs (setns(CLONE_NEWUSER) needs a
    single-threaded process; the fork itself copies only the calling thread)."""

    def __init__(self, pid: int) -> None:
        from rcc.netns import _join_netns, _wait_for_uid_map

        if os.geteuid() != 0:
            _wait_for_uid_map(pid)
        self._chan, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        kid = os.fork()
        if kid == 0:  # child: never returns
            code = 1
            try:
                self._chan.close()
                _die_with_parent()
                _join_netns(pid)
                child.sendall(b"r")
                while (req := child.recv(1)) in (b"4", b"6"):
                    s = socket.socket(socket.AF_INET6 if req == b"6" else socket.AF_INET, socket.SOCK_STREAM)
                    socket.send_fds(child, [b"s"], [s.fileno()])
                    s.close()
                code = 0
            except BaseException as e:
                with contextlib.suppress(OSError):
                    child.sendall(f"error: {e}".encode()[:500])
            finally:
                os._exit(code)
        child.close()
        self._kid = kid
        import threading

        self._lock = threading.Lock()
        ready = self._chan.recv(600)
        if ready != b"r":
            self.close()
            raise RccError(
                f"could not join the sandbox's network namespace to publish ports: {ready.decode(errors='replace')}",
                hint="run `rcc doctor`",
                code=ExitCode.SETUP,
            )

    def socket(self, family: int) -> socket.socket:
        with self._lock:
            self._chan.sendall(b"6" if family == socket.AF_INET6 else b"4")
            _msg, fds, _flags, _addr = socket.recv_fds(self._chan, 16, 1)
        if not fds:
            raise OSError("the sandbox's socket factory has ended")
        return socket.socket(fileno=fds[0])

    def close(self) -> None:
        self._chan.close()  # the child reads EOF and exits
        if self._kid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._kid, 0)
            self._kid = 0


def _die_with_parent() -> None:
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# ------------------------------------------------------------------------------------------- forwarders


def _bind_host(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(128)
    except OSError as e:
        s.close()
        shown = f"[{addr}]" if family == socket.AF_INET6 else addr
        raise RccError(
            f"cannot publish {shown}:{port}: {e.strerror}",
            hint="another program holds that port: publish on another host port (--publish HOSTPORT:PORT)",
            code=ExitCode.SETUP,
        ) from e
    return s


class Forwarders:
    """Every published port and host service of one session. Construct (opens every listener) while the
    command is held, start() once rcc's threads may run, close() when the sandbox has ended."""

    MAX_CONNECTIONS = 256  # open forwarded connections per session, all doors together

    def __init__(self, plan: Plan, sandbox_pid: int, max_connections: int = MAX_CONNECTIONS) -> None:
        self.session = plan.session_id
        self.max_connections = max_connections
        self.published: list[tuple[Publish, socket.socket]] = []
        self.inside: list[tuple[int, str, socket.socket]] = []  # (port, inside loopback address, listener)
        self.factory: SocketFactory | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._audit: Any = None
        self._budget: Any = None
        try:
            for p in plan.net.publish:
                self.published.append((p, _bind_host(p.host, p.host_port)))
            if self.published:
                self.factory = SocketFactory(sandbox_pid)
            from rcc.netns import listen_in_netns

            for port in plan.net.host_services:
                self.inside.append((port, "127.0.0.1", listen_in_netns(sandbox_pid, port, "127.0.0.1", 128)))
                # IPv6 off in this kernel: 127.0.0.1 (and localhost) still reach the service
                with contextlib.suppress(RccError):
                    self.inside.append((port, "::1", listen_in_netns(sandbox_pid, port, "::1", 128)))
            if plan.net.host_services:
                from rcc import paths
                from rcc.net.audit import MAX_BYTES, AuditLog
                from rcc.net.auditbudget import AuditBudget

                audit = paths.audit_log_file()
                try:
                    self._audit = AuditLog(audit)
                    # Its own budget, half the proxy's: a flood of connections to a host service cannot rotate
                    # other sessions' records out of the log either (rcc.net.auditbudget).
                    self._budget = AuditBudget.for_log(self._audit.write, self.session, MAX_BYTES, share=0.5)
                except OSError as e:  # no audit log, no door: never an unrecorded connection
                    raise RccError(
                        f"cannot open the audit log {audit}: {e.strerror}",
                        hint="fix the permissions of rcc's state directory",
                        code=ExitCode.SETUP,
                    ) from e
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        import asyncio
        import threading

        if not self.published and not self.inside:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            tasks: set[asyncio.Task[None]] = set()
            servers = []
            for p, s in self.published:
                servers.append(loop.create_task(self._serve(s, lambda c, p=p: self._publish_one(c, p), tasks)))
            for port, inside_addr, s in self.inside:
                handler = lambda c, port=port, a=inside_addr: self._host_service_one(c, port, a)  # noqa: E731
                servers.append(loop.create_task(self._serve(s, handler, tasks)))
            tasks.update(servers)
            self._tasks = tasks
            loop.call_soon(ready.set)
            loop.run_forever()
            # The session has ended: no new connection; those still open get a moment to see their ends close
            # (their audit records carry the byte counts), then are cut (and recorded as far as they got).
            for t in servers:
                t.cancel()
            open_ones = [t for t in tasks if t not in servers]
            if open_ones:
                loop.run_until_complete(asyncio.wait(open_ones, timeout=CLOSE_GRACE))
            for t in list(tasks):
                t.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, *servers, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=main, name="rcc-forward", daemon=True)
        self._thread.start()
        ready.wait(5)

    async def _serve(self, listener: socket.socket, handle: Any, tasks: set[Any]) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        while True:
            try:
                conn, _peer = await loop.sock_accept(listener)
            except OSError:  # out of descriptors (EMFILE) and the like: the door stays open, try again
                await asyncio.sleep(0.05)
                continue
            if len(tasks) >= self.max_connections + len(self.published) + len(self.inside):
                # A sandbox holding thousands of connections open would take rcc's descriptors (its proxy's
                # too): past the cap a connection is closed at once; those open keep working.
                conn.close()
                continue
            t = loop.create_task(handle(conn))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    async def _publish_one(self, conn: socket.socket, p: Publish) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        assert self.factory is not None
        inside: socket.socket | None = None
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = self.factory.socket(family)
            s.setblocking(False)
            try:
                await loop.sock_connect(s, (addr, p.port))
            except OSError:
                s.close()
                continue
            inside = s
            break
        if inside is None:
            conn.close()  # nothing listens on that port inside (yet): the client sees the connection end
            return
        await _relay(conn, inside)

    async def _host_service_one(self, conn: socket.socket, port: int, inside_addr: str) -> None:
        import asyncio
        import time

        from rcc.net.audit import AuditRecord, utc_now

        loop = asyncio.get_running_loop()
        started, t0 = utc_now(), time.monotonic()
        order = ("::1", "127.0.0.1") if inside_addr == "::1" else ("127.0.0.1", "::1")
        out: socket.socket | None = None
        err = used = ""
        for addr in order:
            s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                await loop.sock_connect(s, (addr, port))
            except OSError as e:
                s.close()
                err = e.strerror or str(e)
                continue
            out, used = s, addr
            break
        rule = f"host_services {port}"
        if out is None:
            conn.close()
            self._record(AuditRecord(started, self.session, "host-service", "localhost", port, "", "error", rule, err))
            return
        counts = [0, 0]
        try:
            await _relay(conn, out, counts)
        finally:  # also when the session's end cut it: every connection is a record
            ms = int((time.monotonic() - t0) * 1000)
            self._record(
                AuditRecord(
                    started, self.session, "host-service", "localhost", port, used, "allow", rule,
                    "the host's loopback service", counts[0], counts[1], ms,
                )
            )  # fmt: skip

    def _record(self, rec: Any) -> None:
        self._budget.record(rec)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
        for _p, s in self.published:
            s.close()
        for _port, _a, s in self.inside:
            s.close()
        self.published, self.inside = [], []
        if self.factory is not None:
            self.factory.close()
            self.factory = None
        if self._budget is not None:
            self._budget.close()
            self._budget = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None


async def _relay(a: socket.socket, b: socket.socket, counts: list[int] | None = None) -> tuple[int, int]:
    """Copy both ways until both sides are done; half-closes pass through. Returns (bytes a->b, bytes b->a),
    kept up to date in `counts` as they pass (for a relay cut short)."""
    import asyncio

    loop = asyncio.get_running_loop()
    a.setblocking(False)
    b.setblocking(False)
    tally = counts if counts is not None else [0, 0]

    async def pump(src: socket.socket, dst: socket.socket) -> int:
        n = 0
        i = 0 if src is a else 1
        try:
            while data := await loop.sock_recv(src, 65536):
                await loop.sock_sendall(dst, data)
                n += len(data)
                tally[i] += len(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            with contextlib.suppress(OSError):
                src.shutdown(socket.SHUT_RDWR)
                dst.shutdown(socket.SHUT_RDWR)
        return n

    try:
        up, down = await asyncio.gather(pump(a, b), pump(b, a))
    finally:
        a.close()
        b.close()
    return up, down
