"""Byte relays: a tunnel's two directions driven by event-loop readiness callbacks, after the handshake.

Two relays: "copy" (the default) reads into one large buffer shared by all tunnels and sends from it;
"splice" moves bytes through a pipe with splice(2) (measured slower here; kept so benchmarks/net_throughput.py
can show both). Only proxy.py (the server) creates tunnels; the sockets are the server's.

Invariants:
1. Back-pressure: while dst cannot take more, src is not read. Memory is bounded by one pipe, or one parked read
   per direction, with reads shrinking to COPY_SMALL once PENDING_BUDGET is parked across all tunnels.
2. EOF on one side becomes shutdown(SHUT_WR) on the other (half-close) once everything read was written; the
   tunnel ends when both directions ended, on any error (abort), or when the server's janitor closes it idle.
3. Callbacks run one at a time on the loop's thread, and each read is written out (or parked as a copy) before
   the callback returns: that is what makes one shared read buffer safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from typing import Literal

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
SPLICE_FLAGS = 0x01 | 0x02  # SPLICE_F_MOVE | SPLICE_F_NONBLOCK
CHUNK = 1 << 20
COPY_BUF = 4 << 20  # one buffer per proxy, shared by all tunnels: reads this big are what make copying fast
COPY_SMALL = 64 << 10  # read size once parked data passes the budget below
PENDING_BUDGET = 64 << 20  # bytes parked for slow readers, all tunnels together, before reads shrink
READ_ROUNDS = 4

Relay = Literal["copy", "splice"]


class Direction:
    """One way of a tunnel, src -> dst, driven by loop readiness callbacks. Back-pressure: while dst cannot take
    more, src is not read. EOF on src becomes shutdown(SHUT_WR) on dst once everything read was written."""

    def __init__(self, tunnel: Tunnel, src: socket.socket, dst: socket.socket) -> None:
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


class CopyBuffer:
    """The read buffer all copy-relay tunnels of one proxy share (callbacks run one at a time on the loop's
    thread, and each read is written out before the callback returns), and the count of bytes parked for slow
    readers, which bounds memory: past PENDING_BUDGET, reads shrink to COPY_SMALL."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(COPY_BUF))
        self.parked = 0


class CopyDirection(Direction):
    """recv_into a large shared buffer, send from it. On this kernel this beats splice(2) (see
    benchmarks/net_throughput.py): few, large reads matter more than the copy splice saves, and splice's
    pipe holds at most 1 MiB for an unprivileged process. Whatever dst does not take at once is parked
    (a copy, counted in CopyBuffer.parked) and src is not read until dst has taken it all."""

    def __init__(self, tunnel: Tunnel, src: socket.socket, dst: socket.socket) -> None:
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


class SpliceDirection(Direction):
    """src -> pipe -> dst with splice(2): the kernel moves page references, Python only counts."""

    def __init__(self, tunnel: Tunnel, src: socket.socket, dst: socket.socket) -> None:
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


class Tunnel:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        upstream: socket.socket,
        kind: type[Direction],
        buf: CopyBuffer | None,
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
