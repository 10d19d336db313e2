"""EgressProxy: the server, the one module of the proxy that touches sockets. HTTP proxy (absolute-URI and
CONNECT) and SOCKS5 on one port.

How the layers fit (each below knows nothing of those above it):
    proxy.py       this server: accepts, reads the handshake, executes the flow's commands, owns the loop
    flow.py        sans-IO: handshake event -> decide / resolve / connect / reply / audit commands
    decider.py     the decision point the flow asks (RuleDecider: compiled Rules, replaceable at run time)
    relay.py       byte relays for established tunnels (copy, the default; splice, for comparison)
    notices.py     rate-limited denial lines for the user's terminal
    auditbudget.py the per-session audit budget in front of audit.AuditLog
    http1.py, socks5.py, tls.py   sans-IO parsers

Per connection: sniff the first byte (0x05 = SOCKS5, else HTTP) -> sans-IO handshake (http1 / socks5) ->
ConnectionFlow.start(event) -> execute its commands (resolve in a thread, read this host's addresses, connect,
reply, relay), feeding each outcome back -> Ended -> the audit record, through the session's budget.

Invariants:
1. Fail closed. Any error in a connection closes that connection; the server connects only where a Connect
   command says (the flow issues one only after an allow Decision and checked addresses). If the proxy's thread
   dies, the listeners are closed, so the sandbox gets "connection refused", never an open door.
2. The address connected to is one of the Connect command's, from the flow's single lookup.
3. Every decision is one audit record (audit.py), within the session's budget (auditbudget.py: past it,
   connections are counted into summary records); denials also go to `notify`, rate-limited (notices.py).
4. All state is per EgressProxy instance; the event loop runs in one background thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import resource
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from rcc.net import flow, http1, socks5, tls
from rcc.net.audit import AuditLog, AuditRecord, utc_now
from rcc.net.auditbudget import AuditBudget
from rcc.net.decider import Decider, RuleDecider
from rcc.net.hostaddrs import host_addresses
from rcc.net.hosts import IPAddress
from rcc.net.notices import DenialNotifier, denial_message
from rcc.net.relay import CopyBuffer, CopyDirection, Direction, Relay, SpliceDirection, Tunnel
from rcc.net.rules import Rules

TYPE_CHECKING = False  # typing costs the proxy's start an import
if TYPE_CHECKING:  # terminate.py needs `cryptography`: imported by whoever makes a Terminator
    from rcc.net.terminate import Terminator

__all__ = ["DenialNotifier", "EgressProxy", "Relay", "Resolver", "denial_message"]

RECV = 64 * 1024  # handshake reads
# Request-head bytes buffered by unfinished handshakes, all connections together. Past it, the connection whose
# read crosses it is closed: slow, never-finished heads (slowloris) cannot make the proxy, which runs outside the
# sandbox and its memory limit, hold hundreds of MiB (4096 connections x 64 KiB heads).
HANDSHAKE_BUDGET = 16 << 20
SMALL_HEAD = 8 << 10

# async (name, port) -> addresses; default: getaddrinfo in the loop's thread pool. Tests pass one that records.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class _Connection:
    """The server's side of one connection: its sockets, tunnel and byte counts."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.tunnel: Tunnel | None = None
        self.up = 0
        self.down = 0


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
        decider: Decider | None = None,
        on_record: Callable[[AuditRecord], None] | None = None,
        terminator: Terminator | None = None,
    ) -> None:
        # The decision point: rules compiled once (compile_rules) before this; `decider` replaces it entirely.
        self.decider: Decider = decider if decider is not None else RuleDecider(rules)
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
        self._on_record = on_record  # each connection's record, before the budget (live counters: rcc.live)
        # credentials (terminate.py): TLS to these hosts is terminated and their placeholders swapped
        self._terminator = terminator
        self._terminated = terminator.hosts() if terminator is not None else frozenset()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tunnels: set[Tunnel] = set()
        self._copybuf: CopyBuffer | None = None
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
        warm = asyncio.ensure_future(self._warm())
        for t in (*accepters, janitor):
            t.add_done_callback(self._on_essential_done)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for t in (*accepters, janitor, warm):
                t.cancel()
            for s in self._listeners:
                s.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*accepters, janitor, warm, *self._tasks, return_exceptions=True)

    async def _warm(self) -> None:
        """What a session's first connection would otherwise wait for, done while nobody is connected: the
        relay buffer (4 MiB zeroed: 2.5 ms here) and the host's addresses (which also starts the resolver pool's
        first thread). A failed read is left for the connection that needs it (it refuses: fail closed)."""
        if self.relay == "copy" and self._copybuf is None:
            self._copybuf = CopyBuffer()
        with contextlib.suppress(OSError):
            await self._own_addresses()

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
        started, when = time.monotonic(), utc_now()
        client.setblocking(False)
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(client)
        f: flow.ConnectionFlow | None = None
        try:
            try:
                ev = await asyncio.wait_for(self._handshake(client), self.handshake_timeout)
            except (TimeoutError, OSError):
                return
            if ev is None:
                return
            f = flow.ConnectionFlow(self.decider, self.session, when, self._terminated)
            commands = deque(f.start(ev))
            while commands:
                cmd = commands.popleft()
                if isinstance(cmd, flow.Close):
                    break
                outcome = await self._execute(cmd, conn)
                if outcome is not None:
                    commands.extend(f.feed(outcome))
        except OSError:
            pass
        finally:
            if conn.tunnel is not None:
                conn.tunnel.close()
                self._tunnels.discard(conn.tunnel)
                conn.up += conn.tunnel.up.count
                conn.down += conn.tunnel.down.count
            client.close()
            if conn.upstream is not None:
                conn.upstream.close()
            if f is not None:
                ms = int((time.monotonic() - started) * 1000)
                for cmd in f.feed(flow.Ended(conn.up, conn.down, ms)):
                    if isinstance(cmd, flow.Audit):
                        if self._on_record is not None:
                            with contextlib.suppress(Exception):  # a broken observer never breaks the proxy
                                self._on_record(cmd.record)
                        self._budget.record(cmd.record)

    async def _execute(self, cmd: flow.Command, conn: _Connection) -> flow.FlowEvent | None:
        """Carry out one command of the flow; returns the event to feed back, if the command asks for one."""
        loop = asyncio.get_running_loop()
        if isinstance(cmd, flow.SendClient):
            await loop.sock_sendall(conn.client, cmd.data)
        elif isinstance(cmd, flow.Notify):
            self._denied(cmd.host, cmd.port, cmd.decision)
        elif isinstance(cmd, flow.Resolve):
            try:
                found = await asyncio.wait_for(self._resolve(cmd.name, cmd.port), self.resolve_timeout)
            except (OSError, TimeoutError) as e:
                return flow.ResolveFailed(str(e) or "timeout")
            return flow.Resolved(tuple(found))
        elif isinstance(cmd, flow.ReadHostAddresses):
            try:
                return flow.HostAddresses(await self._own_addresses())
            except OSError as e:
                return flow.HostAddressesFailed(str(e))
        elif isinstance(cmd, flow.Connect):
            return await self._connect(cmd, conn)
        elif isinstance(cmd, flow.SendUpstream):
            assert conn.upstream is not None
            await loop.sock_sendall(conn.upstream, cmd.data)
            conn.up += len(cmd.data)
        elif isinstance(cmd, flow.Relay):
            return await self._start_relay(cmd, conn)
        elif isinstance(cmd, flow.StartUpstream):
            await self._finish_relay(cmd.first_up, conn)
        elif isinstance(cmd, flow.Inspect):
            never: asyncio.Future[None] = loop.create_future()
            return flow.FirstFlight(await self._first_flight(conn.client, b"", never))
        elif isinstance(cmd, flow.Terminate):
            return await self._terminate(cmd, conn)
        elif isinstance(cmd, flow.Ask):
            asker = self.decider.asker
            assert asker is not None
            return flow.Answered(await asker.ask(cmd.host, cmd.port, cmd.decision))
        elif isinstance(cmd, flow.Audit):  # the flow audits on Ended (see _serve); never earlier
            self._budget.record(cmd.record)
        return None

    async def _connect(self, cmd: flow.Connect, conn: _Connection) -> flow.Connected | flow.ConnectFailed:
        """Connect to the first address that answers, in order; only to the addresses the flow checked."""
        loop = asyncio.get_running_loop()
        last, failure = "connection failed", socks5.GENERAL_FAILURE
        for a in cmd.addresses:
            family = socket.AF_INET6 if a.version == 6 else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await asyncio.wait_for(loop.sock_connect(s, (str(a), cmd.port)), self.connect_timeout)
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
            conn.upstream = s
            return flow.Connected(a)
        return flow.ConnectFailed(last, failure, cmd.addresses[-1])

    async def _start_relay(self, cmd: flow.Relay, conn: _Connection) -> flow.FirstFlight | None:
        """Make the tunnel and relay server->client. To inspect: peek at the client's first flight and hand the
        verdict to the flow (which answers StartUpstream or Close); else relay client->server too, to the end."""
        assert conn.upstream is not None
        loop = asyncio.get_running_loop()
        if self.relay == "copy":
            kind: type[Direction] = CopyDirection
            if self._copybuf is None:
                self._copybuf = CopyBuffer()  # made at start (_warm), unless a connection came first
        else:
            kind = SpliceDirection
        tunnel = conn.tunnel = Tunnel(loop, conn.client, conn.upstream, kind, self._copybuf)
        self._tunnels.add(tunnel)
        tunnel.down.start()
        if cmd.inspect:
            return flow.FirstFlight(await self._first_flight(conn.client, cmd.first_up, tunnel.done))
        await self._finish_relay(cmd.first_up, conn)
        return None

    async def _finish_relay(self, first_up: bytes, conn: _Connection) -> None:
        tunnel = conn.tunnel
        assert tunnel is not None and conn.upstream is not None
        if tunnel.closed:
            return
        if first_up:
            await asyncio.get_running_loop().sock_sendall(conn.upstream, first_up)
            conn.up += len(first_up)
        tunnel.up.start()
        await tunnel.done

    async def _terminate(self, cmd: flow.Terminate, conn: _Connection) -> flow.Terminated:
        """A credential host: terminate.py serves the connection (TLS both ways, every request judged)."""
        assert self._terminator is not None and conn.upstream is not None
        host, port = cmd.host, cmd.port

        def on_request(line: str, used: tuple[str, ...]) -> None:  # one audit record per request sent upstream
            what = f"credential {', '.join(used)} injected" if used else "no credential in it"
            rule = f"credential:{','.join(used)}" if used else ""
            self._budget.record(
                AuditRecord(utc_now(), self.session, "https", host, port, "", "allow", rule, f"{line} ({what})")
            )

        out = await self._terminator.serve(
            client=conn.client,
            upstream=conn.upstream,
            host=host,
            port=port,
            on_request=on_request,
            notify=self._denied.emit,
            idle_timeout=self.idle_timeout,
        )
        conn.up += out.up
        conn.down += out.down
        return flow.Terminated(out.refused, out.error, out.requests)

    async def _handshake(self, client: socket.socket) -> flow.HandshakeEvent | None:
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
