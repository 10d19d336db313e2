"""Helpers for the proxy tests (imported by tests/net/conftest.py and the test modules)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rcc.net.proxy import EgressProxy


@dataclass
class RunningProxy:
    proxy: EgressProxy
    port: int
    audit: Path
    notes: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self, at_least: int = 1, timeout: float = 5.0) -> list[dict[str, object]]:
        """Audit records so far; waits (up to `timeout`) until there are `at_least` (records are written when a
        connection ends, which may be just after the client saw its reply)."""
        import time

        end = time.monotonic() + timeout
        while True:
            recs = [json.loads(x) for x in self.audit.read_text().splitlines()] if self.audit.exists() else []
            if len(recs) >= at_least or time.monotonic() > end:
                return recs
            time.sleep(0.01)


def serve(handler: Callable[[socket.socket], None]) -> tuple[socket.socket, int]:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)

    def loop() -> None:
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return lsock, lsock.getsockname()[1]


def echo_handler(c: socket.socket) -> None:
    with c:
        try:
            while data := c.recv(1 << 16):
                c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def http_handler(c: socket.socket) -> None:
    """A minimal HTTP/1.1 origin: answers one request with the request head echoed in the body."""
    with c:
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                return
            buf += d
        head = buf.split(b"\r\n\r\n", 1)[0]
        body = b"origin saw:\n" + head
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
