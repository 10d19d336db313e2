"""Test hosts in network namespaces the test creates: real addresses, real routing, no internet.

Usage (any test tier; needs root for `ip netns`, otherwise the fixtures skip via rcctest.require):

    from testhosts import TestCA, test_host

    with test_host() as host:                        # netns rcc-t-<hex>, veth pair, 10.200.X.2/30
        server = host.serve_http(root_dir)           # http.server in a thread, socket inside the netns
        print(host.name, host.address, server.url)   # ("rcc-t-1a2b3c", "10.200.17.2", "http://10.200.17.2:80")

    ca = TestCA(tmp_path)                            # self-signed CA made with the `openssl` CLI
    tls = host.serve_http(root_dir, port=443, tls=ca.server_context(["api.test"]))

Pytest fixtures (re-export them from your conftest: `from testhosts import testhost, test_ca  # noqa: F401`):
    testhost  -> TestHost (yields; removed at teardown)
    test_ca   -> TestCA (in tmp_path)

Invariants:
1. Addresses come from 10.200.0.0/16 only, one random /30 per host: .1 is the host side of the veth (in the
   namespace the test runs in), .2 the test host inside its own netns `rcc-t-<pid>-<6 hex>`.
2. Everything a TestHost creates (netns, veth, server threads, processes started with `run_bg`) is removed
   by `close()`, which the context manager and the fixture always call. Namespaces of test processes that
   died (killed mid-test) are removed by the next test_host() (remove_stale()).
3. Listening sockets are created inside the netns by a short-lived thread that setns()es there and back;
   the server itself runs in an ordinary thread of the test process (a socket keeps its netns for life).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.server
import ipaddress
import os
import secrets
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rcctest import is_root, require

_CLONE_NEWNET = 0x40000000
TEST_NET = ipaddress.ip_network("10.200.0.0/16")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _used_prefixes() -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True).stdout
    nets: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.add(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_prefixes()
    for _ in range(200):
        n = secrets.randbelow(2**14)
        net = ipaddress.IPv4Network((int(TEST_NET.network_address) + 4 * n, 30))
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /30 in 10.200.0.0/16")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        sock: socket.socket,
        handler: type[http.server.BaseHTTPRequestHandler],
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()[:2]
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake here (a per-connection thread), not in the accept loop.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def routes_handler(routes: Mapping[str, tuple[str, bytes]]) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler serving exact paths: {"/path": ("content/type", body)}; anything else is 404."""

    class Routes(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in routes:
                self.send_error(404)
                return
            ctype, body = routes[path]
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Routes


@dataclass
class HttpServer:
    server: _Server
    thread: threading.Thread
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class TestHost:
    """A host at `address` inside netns `name`, reachable from the test's namespace via a veth pair."""

    __test__ = False  # not a test class

    name: str
    address: str
    gateway: str  # our side of the veth
    veth: str
    _servers: list[HttpServer] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _socks: list[socket.socket] = field(default_factory=list)

    def listen(self, port: int = 0, kind: int = socket.SOCK_STREAM, backlog: int = 512) -> socket.socket:
        """A socket bound to address:port inside the netns (listening if TCP)."""
        result: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                with (
                    open("/proc/thread-self/ns/net", "rb") as orig,
                    open(f"/run/netns/{self.name}", "rb") as ns,
                ):
                    _setns(ns.fileno())
                    try:
                        s = socket.socket(socket.AF_INET, kind)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.bind((self.address, port))
                        if kind == socket.SOCK_STREAM:
                            s.listen(backlog)
                        result.append(s)
                    finally:
                        _setns(orig.fileno())
            except BaseException as e:  # handed to the caller
                result.append(e)

        t = threading.Thread(target=make)
        t.start()
        t.join()
        r = result[0]
        if isinstance(r, BaseException):
            raise r
        return r

    def serve_http(
        self,
        root: str | os.PathLike[str] | None = None,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
        handler: type[http.server.BaseHTTPRequestHandler] | None = None,
    ) -> HttpServer:
        """Serve files from `root` (or with `handler`) over HTTP, or HTTPS when `tls` is given."""
        if handler is None:
            directory = str(root or ".")

            class Files(_QuietFiles):
                def __init__(self, *a: Any, **kw: Any) -> None:
                    super().__init__(*a, directory=directory, **kw)

            handler = Files
        sock = self.listen(port if port is not None else (443 if tls else 80))
        server = _Server(sock, handler, tls)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        srv = HttpServer(server, thread, self.address, sock.getsockname()[1], tls is not None)
        self._servers.append(srv)
        return srv

    def serve_tcp(self, fn: Callable[[socket.socket], None], port: int = 0) -> int:
        """Raw TCP server: an accept loop in a daemon thread calls fn(conn) in a new thread per connection.
        Returns the port. fn owns conn (close it)."""
        lsock = self.listen(port)
        self._socks.append(lsock)

        def loop() -> None:
            while True:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    return
                threading.Thread(target=fn, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return int(lsock.getsockname()[1])

    def run(self, argv: Sequence[str], check: bool = False, **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run a command inside the netns and wait for it."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check, **kw)

    def run_bg(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a command inside the netns; it is killed at close()."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)
        self._procs.append(p)
        return p

    def close(self) -> None:
        for s in self._servers:
            with contextlib.suppress(Exception):
                s.stop()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], check=False, capture_output=True)


def remove_stale() -> None:
    """Delete test netns left behind by test processes that died (their pid is in the name)."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for n in names:
        parts = n.split("-")
        stale = len(parts) == 4 and parts[:2] == ["rcc", "t"] and parts[2].isdigit()
        if stale and not os.path.exists(f"/proc/{parts[2]}"):
            subprocess.run(["ip", "netns", "del", n], check=False, capture_output=True)


@contextlib.contextmanager
def test_host() -> Iterator[TestHost]:
    """Create a netns with one veth pair and a /30 from 10.200.0.0/16; remove it all on exit."""
    remove_stale()
    tag = secrets.token_hex(3)
    name, veth, peer = f"rcc-t-{os.getpid()}-{tag}", f"rt{tag}h", f"rt{tag}p"
    net = _pick_subnet()
    gw, addr = str(net.network_address + 1), str(net.network_address + 2)
    host = TestHost(name=name, address=addr, gateway=gw, veth=veth)
    try:
        _ip("netns", "add", name)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", name)
        _ip("addr", "add", f"{gw}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("-n", name, "addr", "add", f"{addr}/30", "dev", peer)
        _ip("-n", name, "link", "set", peer, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "default", "via", gw)
        yield host
    finally:
        host.close()


test_host.__test__ = False  # type: ignore[attr-defined]


class TestCA:
    """A throwaway certificate authority made with the `openssl` CLI (EC P-256, valid one day)."""

    __test__ = False

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = str(self.dir / "ca.pem")
        self.key = str(self.dir / "ca.key")
        self._n = 0
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                self.key,
                "-out",
                self.cert,
                "-days",
                "1",
                "-subj",
                "/CN=rcc test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            check=True,
            capture_output=True,
        )

    def issue(self, names: Sequence[str]) -> tuple[str, str]:
        """A server certificate for DNS names and/or IP addresses. Returns (cert_path, key_path)."""
        self._n += 1
        base = self.dir / f"srv{self._n}"
        sans = []
        for n in names:
            try:
                ipaddress.ip_address(n)
                sans.append(f"IP:{n}")
            except ValueError:
                sans.append(f"DNS:{n}")
        ext = base.with_suffix(".ext")
        ext.write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        key, csr, cert = f"{base}.key", f"{base}.csr", f"{base}.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                key,
                "-out",
                csr,
                "-subj",
                f"/CN={names[0]}",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                self.cert,
                "-CAkey",
                self.key,
                "-CAcreateserial",
                "-out",
                cert,
                "-days",
                "1",
                "-extfile",
                str(ext),
            ],
            check=True,
            capture_output=True,
        )
        return cert, key

    def server_context(self, names: Sequence[str]) -> ssl.SSLContext:
        cert, key = self.issue(names)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture
def testhost() -> Iterator[TestHost]:
    require(is_root(), "test hosts need root (ip netns add, veth)")
    with test_host() as host:
        yield host


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")
