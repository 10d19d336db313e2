"""EgressProxy: the one module that owns sockets. HTTP proxy (absolute-URI + CONNECT) and SOCKS5 on one port.

Per connection: sniff the first byte (0x05 = SOCKS5, else HTTP) -> sans-IO handshake (http1 / socks5) ->
decide() on the *name* (no DNS for a denied name) -> resolve once (policy override, literal, or getaddrinfo in
a thread) -> check_address() on every resolved address -> connect to a checked address -> reply -> relay.

Invariants:
1. Fail closed. Any error in a connection closes that connection; there is no path that connects anywhere
   without an allow Decision and a checked address. If the proxy's thread dies, the listeners are closed, so
   the sandbox gets "connection refused", never an open door.
2. The address connected to is one that check_address() judged, from the single lookup (no second lookup
   for the connect: DNS rebinding cannot swap it).
3. If any resolved address of a name is forbidden (loopback, metadata, ...), the whole name is refused.
4. After the handshake, bytes are relayed by loop readiness callbacks: recv_into one large buffer shared by all
   tunnels, then send (relay="copy", the default), or splice(2) through a pipe (relay="splice"; measured slower
   here, kept for comparison in benchmarks/net_throughput.py). A slow reader stops the other side from being
   read (back-pressure); memory is bounded by one pipe, or one parked read per direction, with reads shrinking
   once PENDING_BUDGET is parked. EOF on one side becomes shutdown(SHUT_WR) on the other (half-close); the
   tunnel ends when both directions ended, on error, or after `idle_timeout` of silence.
5. Every decision is one audit record (see audit.py), within the session's budget (auditbudget.py: past it,
   connections are counted into summary records); denials also go to `notify`, rate-limited.
6. All state is per EgressProxy instance; the event loop runs in one background thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import ipaddress
import os
import resource
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from rcc.net import http1, socks5, tls
from rcc.net.audit import AuditLog, AuditRecord, utc_now
from rcc.net.auditbudget import AuditBudget
from rcc.net.hostaddrs import host_addresses
from rcc.net.hosts import HostError, IPAddress, format_hostport, normalize_host, printable, unmap
from rcc.net.rules import Decision, Rules, check_address, decide, suggest_allow

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
SPLICE_FLAGS = 0x01 | 0x02  # SPLICE_F_MOVE | SPLICE_F_NONBLOCK
CHUNK = 1 << 20
RECV = 64 * 1024  # handshake reads
COPY_BUF = 4 << 20  # one buffer per proxy, shared by all tunnels: reads this big are what make copying fast
COPY_SMALL = 64 << 10  # read size once parked data passes the budget below
PENDING_BUDGET = 64 << 20  # bytes parked for slow readers, all tunnels together, before reads shrink
READ_ROUNDS = 4
# Request-head bytes buffered by unfinished handshakes, all connections together. Past it, the connection whose
# read crosses it is closed: slow, never-finished heads (slowloris) cannot make the proxy, which runs outside the
# sandbox and its memory limit, hold hundreds of MiB (4096 connections x 64 KiB heads).
HANDSHAKE_BUDGET = 16 << 20
SMALL_HEAD = 8 << 10

Relay = Literal["copy", "splice"]
# async (name, port) -> addresses; default: getaddrinfo in the loop's thread pool. Tests pass one that records.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class _Blocked(Exception):
    """Raised inside a connection handler to end it with a refusal already decided."""


@dataclass
class _Conn:
    proto: str
    host: str = ""
    port: int = 0
    addr: str = ""
    decision: str = ""
    rule: str = ""
    reason: str = ""
    up: int = 0
    down: int = 0
    failure: int = socks5.GENERAL_FAILURE  # SOCKS5 reply code when decision == "error"


class DenialNotifier:
    """Turns denials into short stderr lines: each host:port at most once per `per_key` seconds, and at most
    `burst` lines per `window` seconds overall (then one "suppressed" note)."""

    def __init__(
        self,
        notify: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        per_key: float = 60.0,
        burst: int = 10,
        window: float = 10.0,
    ) -> None:
        self._notify, self._clock = notify, clock
        self._per_key, self._burst, self._window = per_key, burst, window
        self._last: dict[tuple[str, int], float] = {}
        self._window_start = -1e18
        self._count = 0
        self._suppressed = 0

    def __call__(self, host: str, port: int, decision: Decision) -> None:
        now = self._clock()
        key = (host, port)
        if now - self._last.get(key, -1e18) < self._per_key:
            return
        if now - self._window_start >= self._window:
            if self._suppressed:
                self._emit(f"rcc: {self._suppressed} more denials not shown (see `rcc log --denied`)")
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count >= self._burst:
            self._suppressed += 1
            return
        self._count += 1
        self._last[key] = now
        if len(self._last) > 4096:  # bounded memory
            self._last.clear()
        self._emit(denial_message(host, port, decision))

    def emit(self, line: str) -> None:
        """Send a line that is not rate-limited (rare events: the proxy stopping)."""
        self._emit(line)

    def _emit(self, line: str) -> None:
        with contextlib.suppress(Exception):  # a broken notifier never breaks the proxy
            self._notify(line)


def denial_message(host: str, port: int, decision: Decision) -> str:
    """One line for stderr naming what would allow it. Host and reason come from the sandbox: made printable."""
    hp, reason = printable(format_hostport(host, port)), printable(decision.reason)
    if decision.rule:
        return f"rcc: denied {hp} ({reason}) — remove it from network.deny / --deny to allow it"
    if decision.reason.startswith("resolves to"):
        addr = decision.address or decision.reason.rsplit(" ", 1)[-1]
        return (
            f"rcc: denied {hp} ({reason}) — allow that address itself with "
            f"--allow {printable(suggest_allow(addr, port))} if you mean it"
        )
    if decision.reason.startswith(("invalid host", "TLS server name", "unparseable TLS", "Host header")):
        return f"rcc: denied {hp} ({reason})"
    s = printable(suggest_allow(host, port))
    return f"rcc: denied {hp} ({reason}) — allow with --allow {s} or network.allow in config"


class _Direction:
    """One way of a tunnel, src -> dst, driven by loop readiness callbacks. Back-pressure: while dst cannot take
    more, src is not read. EOF on src becomes shutdown(SHUT_WR) on dst once everything read was written."""

    def __init__(self, tunnel: _Tunnel, src: socket.socket, dst: socket.socket) -> None:
        self.t, self.src_sock, self.dst_sock = tunnel, src, dst
        self.src, self.dst = src.fileno(), dst.fileno()
        self.count = 0
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    def start(self) -> None:
        self._want_read()

    def _want_read(self) -> None:
        if not self.reading:
            self.t.loop.add_reader(self.src, self._on_read)
            self.reading = True

    def _stop_read(self) -> None:
        if self.reading:
            self.t.loop.remove_reader(self.src)
            self.reading = False

    def _want_write(self) -> None:
        self._stop_read()
        if not self.writing:
            self.t.loop.add_writer(self.dst, self._on_write)
            self.writing = True

    def _stop_write(self) -> None:
        if self.writing:
            self.t.loop.remove_writer(self.dst)
            self.writing = False

    def _on_read(self) -> None:
        raise NotImplementedError

    def _on_write(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.dst_sock.shutdown(socket.SHUT_WR)
        self.t.direction_done()

    def close(self) -> None:
        self._stop_read()
        self._stop_write()


class _CopyBuffer:
    """The read buffer all copy-relay tunnels of one proxy share (callbacks run one at a time on the loop's
    thread, and each read is written out before the callback returns), and the count of bytes parked for slow
    readers, which bounds memory: past PENDING_BUDGET, reads shrink to COPY_SMALL."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(COPY_BUF))
        self.parked = 0


class _CopyDirection(_Direction):
    """recv_into a large shared buffer, send from it. On this kernel this beats splice(2) (see
    benchmarks/net_throughput.py): few, large reads matter more than the copy splice saves, and splice's
    pipe holds at most 1 MiB for an unprivileged process. Whatever dst does not take at once is parked
    (a copy, counted in _CopyBuffer.parked) and src is not read until dst has taken it all."""

    def __init__(self, tunnel: _Tunnel, src: socket.socket, dst: socket.socket) -> None:
        super().__init__(tunnel, src, dst)
        assert tunnel.buf is not None
        self.buf = tunnel.buf
        self.parked = memoryview(b"")

    def _on_read(self) -> None:
        buf = self.buf
        for _ in range(READ_ROUNDS):
            view = buf.view if buf.parked < PENDING_BUDGET else buf.view[:COPY_SMALL]
            try:
                n = self.src_sock.recv_into(view)
            except BlockingIOError:
                return
            except OSError:
                self.t.abort()
                return
            if n == 0:
                self.eof = True
                self._stop_read()
                self._finish()
                return
            self.t.last = self.t.loop.time()
            try:
                m = self.dst_sock.send(view[:n])
            except BlockingIOError:
                m = 0
            except OSError:
                self.t.abort()
                return
            self.count += m
            if m < n:
                self.parked = memoryview(bytes(view[m:n]))
                buf.parked += n - m
                self._want_write()
                return

    def _on_write(self) -> None:
        try:
            m = self.dst_sock.send(self.parked)
        except BlockingIOError:
            return
        except OSError:
            self.t.abort()
            return
        self.count += m
        self.buf.parked -= m
        self.parked = self.parked[m:]
        self.t.last = self.t.loop.time()
        if not self.parked:
            self.parked = memoryview(b"")
            self._stop_write()
            if not self.t.closed:
                self._want_read()

    def close(self) -> None:
        super().close()
        self.buf.parked -= len(self.parked)
        self.parked = memoryview(b"")


class _SpliceDirection(_Direction):
    """src -> pipe -> dst with splice(2): the kernel moves page references, Python only counts."""

    def __init__(self, tunnel: _Tunnel, src: socket.socket, dst: socket.socket) -> None:
        super().__init__(tunnel, src, dst)
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, F_SETPIPE_SZ, PIPE_SIZE)
        self.pending = 0

    def _on_read(self) -> None:
        # A few rounds per wake-up: fewer trips through the event loop while data streams; bounded for fairness.
        for _ in range(READ_ROUNDS):
            try:
                n = os.splice(self.src, self.w, CHUNK, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError:
                self.t.abort()
                return
            if n == 0:
                self.eof = True
                self._stop_read()
                if self.pending == 0:
                    self._finish()
                return
            self.pending += n
            self.t.last = self.t.loop.time()
            self._on_write()
            if not self.reading:  # dst is full (now waiting for it) or the tunnel closed
                return

    def _on_write(self) -> None:
        while self.pending:
            try:
                m = os.splice(self.r, self.dst, self.pending, flags=SPLICE_FLAGS)
            except BlockingIOError:
                self._want_write()  # back-pressure: read no more until dst drains
                return
            except OSError:
                self.t.abort()
                return
            self.pending -= m
            self.count += m
        self._stop_write()
        if self.eof:
            self._finish()
        elif not self.t.closed:
            self._want_read()

    def close(self) -> None:
        super().close()
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.r = self.w = -1


class _Tunnel:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        upstream: socket.socket,
        kind: type[_Direction],
        buf: _CopyBuffer | None,
    ) -> None:
        self.loop = loop
        self.buf = buf
        self.done: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self.last = loop.time()
        self.up = kind(self, client, upstream)
        try:
            self.down = kind(self, upstream, client)
        except OSError:
            self.up.close()
            raise

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def direction_done(self) -> None:
        if self.up.done and self.down.done:
            self.close()

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.up.close()
        self.down.close()
        if not self.done.done():
            self.done.set_result(None)


class EgressProxy:
    """Serve the sandbox's egress on given listening sockets, in a background thread with its own loop."""

    def __init__(
        self,
        rules: Rules,
        audit_path: str,
        session: str,
        notify: Callable[[str], None],
        *,
        handshake_timeout: float = 15.0,
        connect_timeout: float = 15.0,
        resolve_timeout: float = 10.0,
        idle_timeout: float = 900.0,
        max_connections: int = 4096,
        relay: Relay = "copy",
        audit_max_bytes: int = 10 * 1024 * 1024,
        resolver: Resolver | None = None,
    ) -> None:
        self.rules = rules
        self.session = session
        self._audit = AuditLog(audit_path, max_bytes=audit_max_bytes)
        self._budget = AuditBudget.for_log(self._audit.write, session, audit_max_bytes)
        self._handshake_held = 0  # bytes fed to unfinished handshake parsers (HANDSHAKE_BUDGET)
        self._denied = DenialNotifier(notify)
        self.handshake_timeout = handshake_timeout
        self.connect_timeout = connect_timeout
        self.resolve_timeout = resolve_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.relay: Relay = relay
        self._resolver = resolver
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tunnels: set[_Tunnel] = set()
        self._copybuf: _CopyBuffer | None = None
        self._listeners: list[socket.socket] = []
        self._host_addrs: frozenset[IPAddress] = frozenset()
        self._host_addrs_at = -1e18
        self.failed: BaseException | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self, listeners: list[socket.socket]) -> None:
        """Serve on `listeners` (already listening; the proxy owns and closes them). Returns at once."""
        if self._thread is not None:
            raise RuntimeError("EgressProxy.start() called twice")
        _raise_nofile_limit(8 * self.max_connections)
        self._listeners = list(listeners)
        for s in self._listeners:
            s.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="rcc-egress-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def close(self) -> None:
        """Stop accepting, close every tunnel (writing its audit record), flush the audit log."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(30)
        for s in self._listeners:
            s.close()
        self._budget.close()
        self._audit.close()

    def active_tunnels(self) -> int:
        return len(self._tunnels)

    def active_connections(self) -> int:
        return len(self._tasks)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        # Our own pool for getaddrinfo and /proc reads, so close() need not wait for a hanging DNS lookup.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rcc-proxy-resolve")
        loop.set_default_executor(pool)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # recorded for the caller; listeners closed below (fail closed)
            self.failed = e
        finally:
            for s in self._listeners:
                s.close()
            self._ready.set()
            pool.shutdown(wait=False, cancel_futures=True)
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        accepters = [asyncio.ensure_future(self._accept_loop(s)) for s in self._listeners]
        janitor = asyncio.ensure_future(self._janitor())
        for t in (*accepters, janitor):
            t.add_done_callback(self._on_essential_done)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for t in (*accepters, janitor):
                t.cancel()
            for s in self._listeners:
                s.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*accepters, janitor, *self._tasks, return_exceptions=True)

    def _on_essential_done(self, task: asyncio.Future[None]) -> None:
        """An accept loop or the janitor ended on its own: stop everything (listeners close, so the sandbox
        gets "connection refused" instead of hanging) and say so."""
        if task.cancelled() or self._stop is None or self._stop.is_set():
            return
        exc = task.exception()
        self.failed = exc or RuntimeError("proxy task ended")
        self._denied.emit(f"rcc: the egress proxy stopped ({self.failed}); the sandbox has no network now")
        self._stop.set()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    await asyncio.sleep(0.05)  # out of descriptors: back off, never spin
                    continue
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            if len(self._tasks) >= self.max_connections:
                client.close()
                continue
            task = asyncio.ensure_future(self._serve(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _janitor(self) -> None:
        loop = asyncio.get_running_loop()
        period = max(0.05, min(5.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for t in list(self._tunnels):
                if now - t.last > self.idle_timeout:
                    t.abort()

    async def _own_addresses(self) -> frozenset[IPAddress]:
        """This host's addresses, re-read at most every 2 s, off the loop (/proc/net/fib_trie can be large).
        A failed read raises OSError and is not cached (fail closed: the caller refuses the connection)."""
        now = time.monotonic()
        if now - self._host_addrs_at > 2.0:
            self._host_addrs = await asyncio.get_running_loop().run_in_executor(None, host_addresses)
            self._host_addrs_at = now
        return self._host_addrs

    # ------------------------------------------------------------------------------------------ per connection

    async def _serve(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        started, when = time.monotonic(), utc_now()
        client.setblocking(False)
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream: socket.socket | None = None
        conn: _Conn | None = None
        try:
            try:
                ev = await asyncio.wait_for(self._handshake(client), self.handshake_timeout)
            except (TimeoutError, OSError):
                return
            if ev is None:
                return
            if isinstance(ev, socks5.Reject | http1.Reject):
                if isinstance(ev, http1.Reject) and ev.deny:
                    conn = _Conn("http", ev.host, ev.port, decision="deny", reason=ev.reason)
                    self._denied(ev.host, ev.port, Decision(False, None, ev.reason))
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(client, ev.reply)
                return
            if isinstance(ev, http1.Connect):
                conn, first_up = _Conn("connect", ev.host, ev.port), ev.leftover
            elif isinstance(ev, http1.Forward):
                conn, first_up = _Conn("http", ev.host, ev.port), ev.head + ev.leftover
            elif isinstance(ev, socks5.Request):
                conn, first_up = _Conn("socks5", ev.host, ev.port), ev.leftover
                if ev.send:
                    await loop.sock_sendall(client, ev.send)
            else:
                return
            try:
                upstream = await self._open_upstream(conn)
            except _Blocked:
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(client, self._refusal(conn))
                return
            if conn.proto == "connect":
                await loop.sock_sendall(client, http1.CONNECT_OK)
            elif conn.proto == "socks5":
                await loop.sock_sendall(client, socks5.reply(socks5.SUCCEEDED))
            if conn.proto == "http" and first_up:  # plain HTTP: the rewritten head goes first, nothing to inspect
                await loop.sock_sendall(upstream, first_up)
                conn.up += len(first_up)
                first_up = b""
            inspect = conn.proto != "http"
            await self._relay(client, upstream, conn, first_up, inspect)
        except OSError:
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()
            if conn is not None and conn.decision:
                self._record(conn, when, started)

    async def _handshake(self, client: socket.socket) -> http1.Event | socks5.Event | None:
        loop = asyncio.get_running_loop()
        data = await loop.sock_recv(client, RECV)
        if not data:
            return None
        parser: http1.ProxyRequestParser | socks5.Socks5Handshake
        parser = socks5.Socks5Handshake() if data[0] == socks5.VERSION else http1.ProxyRequestParser()
        held = 0
        try:
            while True:
                held += len(data)
                self._handshake_held += len(data)
                if self._handshake_held > HANDSHAKE_BUDGET and held > SMALL_HEAD:
                    return None  # ordinary heads (a few KiB) still pass while the budget is spent
                ev = parser.feed(data)
                if isinstance(ev, socks5.NeedMore):
                    if ev.send:
                        await loop.sock_sendall(client, ev.send)
                elif not isinstance(ev, http1.NeedMore):
                    return ev
                data = await loop.sock_recv(client, RECV)
                if not data:
                    return None
        finally:
            self._handshake_held -= held

    def _refusal(self, conn: _Conn) -> bytes:
        if conn.proto == "socks5":
            return socks5.reply(socks5.NOT_ALLOWED if conn.decision == "deny" else conn.failure)
        if conn.decision == "deny":
            return http1.denied(conn.reason, conn.host, conn.port)
        return http1.bad_gateway(f"{format_hostport(conn.host, conn.port)}: {conn.reason}")

    def _deny(self, conn: _Conn, d: Decision) -> _Blocked:
        conn.decision, conn.rule, conn.reason = "deny", d.rule or "", d.reason
        self._denied(conn.host, conn.port, d)
        return _Blocked()

    def _error(self, conn: _Conn, reason: str, failure: int) -> _Blocked:
        conn.decision, conn.reason, conn.failure = "error", reason, failure
        return _Blocked()

    async def _open_upstream(self, conn: _Conn) -> socket.socket:
        """Decide, resolve once, check every address, connect. Raises _Blocked with conn filled in."""
        loop = asyncio.get_running_loop()
        d = decide(self.rules, conn.host, conn.port)
        if not d.allowed:
            raise self._deny(conn, d)
        conn.decision, conn.rule, conn.reason = "allow", d.rule or "", d.reason
        target = normalize_host(conn.host)  # decide() accepted it, so it normalises
        conn.host = str(target)
        override = self.rules.override(target)
        addrs: list[IPAddress]
        if not isinstance(target, str):
            addrs = [target]
        elif override is not None:
            addrs = [override]
        else:
            try:
                found = await asyncio.wait_for(self._resolve(str(target), conn.port), self.resolve_timeout)
                addrs = list(dict.fromkeys(unmap(ipaddress.ip_address(a.split("%")[0])) for a in found))
            except (OSError, TimeoutError, ValueError) as e:
                raise self._error(conn, f"could not resolve: {e or 'timeout'}", socks5.HOST_UNREACHABLE) from None
            if not addrs:
                raise self._error(conn, "could not resolve: no addresses", socks5.HOST_UNREACHABLE)
        try:
            own = await self._own_addresses()
        except OSError as e:
            raise self._error(conn, f"could not read this host's addresses: {e}", socks5.GENERAL_FAILURE) from None
        for a in addrs:
            ad = check_address(self.rules, a, conn.port, own)
            if not ad.allowed:
                conn.addr = str(a)
                raise self._deny(conn, ad)
        last, failure = "connection failed", socks5.GENERAL_FAILURE
        for a in addrs:
            family = socket.AF_INET6 if a.version == 6 else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await asyncio.wait_for(loop.sock_connect(s, (str(a), conn.port)), self.connect_timeout)
            except TimeoutError:
                s.close()
                last, failure = "connect timed out", socks5.TTL_EXPIRED
                continue
            except OSError as e:
                s.close()
                last = f"connect failed: {e.strerror or e}"
                failure = socks5.CONNECTION_REFUSED if e.errno == errno.ECONNREFUSED else socks5.HOST_UNREACHABLE
                continue
            except BaseException:
                s.close()
                raise
            conn.addr = str(a)
            return s
        conn.addr = str(addrs[-1])
        raise self._error(conn, last, failure)

    async def _resolve(self, name: str, port: int) -> list[str]:
        if self._resolver is not None:
            return await self._resolver(name, port)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        return [str(i[4][0]) for i in infos]

    async def _first_flight(self, client: socket.socket, prefix: bytes, ended: asyncio.Future[None]) -> tls.Verdict:
        """Peek (MSG_PEEK: nothing is consumed) at what the client sends first through a tunnel, without
        blocking the server->client direction (server-speaks-first protocols such as SSH just wait here)."""
        loop = asyncio.get_running_loop()
        fd = client.fileno()
        deadline: float | None = None
        delay = 0.002
        while not ended.done():
            verdict = tls.parse_client_hello(prefix) if prefix else tls.NeedMore()
            if not isinstance(verdict, tls.NeedMore):
                return verdict
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, readable)
            try:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait({readable, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                loop.remove_reader(fd)
            if ended.done():
                break
            if not readable.done():
                return tls.Malformed("incomplete ClientHello")
            try:
                data = client.recv(tls.MAX_HELLO + 1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            except OSError:
                return tls.NotTls()  # the relay sees the error itself
            if not data:
                return tls.NotTls()  # EOF: the relay passes it on
            verdict = tls.parse_client_hello(prefix + data)
            if not isinstance(verdict, tls.NeedMore):
                return verdict
            if deadline is None:
                deadline = loop.time() + self.handshake_timeout
            # A partial hello: the socket stays readable (peeked bytes remain), so poll for the rest, backing off
            # (2 ms, doubling up to 250 ms): tunnels that never finish their hello must not keep the loop busy.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        return tls.NotTls()

    def _judge_first_flight(self, conn: _Conn, verdict: tls.Verdict) -> bool:
        """Domain fronting guard: a TLS tunnel's SNI must name the allowed host (or another allowed host)."""
        if isinstance(verdict, tls.NotTls | tls.NeedMore):
            return True
        if isinstance(verdict, tls.Malformed):
            raise self._deny(conn, Decision(False, None, f"unparseable TLS ClientHello ({verdict.reason})"))
        if verdict.server_name is None:
            return True
        try:
            sni = normalize_host(verdict.server_name)
        except HostError:
            raise self._deny(conn, Decision(False, None, "TLS server name is not a valid host name")) from None
        if str(sni) == conn.host or decide(self.rules, sni, conn.port).allowed:
            return True
        raise self._deny(conn, Decision(False, None, f"TLS server name {sni} does not match {conn.host}"))

    async def _relay(
        self, client: socket.socket, upstream: socket.socket, conn: _Conn, first_up: bytes, inspect: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        if self.relay == "copy":
            kind: type[_Direction] = _CopyDirection
            if self._copybuf is None:
                self._copybuf = _CopyBuffer()  # on first use: the buffer is 4 MiB
        else:
            kind = _SpliceDirection
        tunnel = _Tunnel(loop, client, upstream, kind, self._copybuf)
        self._tunnels.add(tunnel)
        try:
            tunnel.down.start()
            if inspect:
                try:
                    self._judge_first_flight(conn, await self._first_flight(client, first_up, tunnel.done))
                except _Blocked:
                    return
            if tunnel.closed:
                return
            if first_up:
                await loop.sock_sendall(upstream, first_up)
                conn.up += len(first_up)
            tunnel.up.start()
            await tunnel.done
        finally:
            tunnel.close()
            self._tunnels.discard(tunnel)
            conn.up += tunnel.up.count
            conn.down += tunnel.down.count

    def _record(self, conn: _Conn, when: str, started: float) -> None:
        rec = AuditRecord(
            time=when,
            session=self.session,
            proto=conn.proto,
            host=conn.host,
            port=conn.port,
            addr=conn.addr,
            decision=conn.decision,
            rule=conn.rule,
            reason=conn.reason,
            bytes_up=conn.up,
            bytes_down=conn.down,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        self._budget.record(rec)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _raise_nofile_limit(want: int) -> None:
    """Tunnels need six descriptors each (two sockets, two pipes); lift the soft limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
