"""A tiny network peer for the firewall tests, run inside a test network namespace (`ip netns exec NS`).

    netpeer.py serve --tcp 3128,8080 --udp 53   listen on every address (IPv4 and IPv6), greet/echo; prints
                                                "ready" once all sockets listen
    netpeer.py probe tcp ADDR PORT              connect and read the greeting: prints "ok", "refused" or
                                                "timeout" (a dropped packet), exit 0 only for "ok"
    netpeer.py probe udp ADDR PORT              send one datagram, wait for the echo: "ok" or "timeout"
    netpeer.py hammer ADDR PORT SECONDS         a datagram per millisecond; prints how many echoes came back

Only the test harness runs it, and only against addresses inside namespaces the tests created.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys

TIMEOUT = 1.0


def _bind(kind: int, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # one socket, IPv4 and IPv6
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    s.setblocking(False)
    return s


def serve(tcp: list[int], udp: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for p in tcp:
        sel.register(_bind(socket.SOCK_STREAM, p), selectors.EVENT_READ, "tcp")
    for p in udp:
        sel.register(_bind(socket.SOCK_DGRAM, p), selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "tcp":
                conn, _addr = sock.accept()
                try:
                    conn.sendall(b"hello from %d\n" % sock.getsockname()[1])
                finally:
                    conn.close()
            else:
                data, addr = sock.recvfrom(2048)
                sock.sendto(data, addr)


def probe(kind: str, addr: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    if kind == "tcp":
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            try:
                s.connect((addr, port))
                return "ok" if s.recv(64).startswith(b"hello") else "bad greeting"
            except ConnectionRefusedError:
                return "refused"
            except TimeoutError:
                return "timeout"
            except OSError as e:
                return f"error {e.errno}"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(b"ping", (addr, port))
        try:
            return "ok" if s.recv(64) == b"ping" else "bad echo"
        except TimeoutError:
            return "timeout"
        except OSError as e:
            return f"error {e.errno}"


def hammer(addr: str, port: int, seconds: float) -> int:
    """Send a UDP datagram every millisecond for `seconds`; return how many echoes came back. Used to show
    there is no moment, while rules are replaced, when anything gets through."""
    import time

    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    echoes = 0
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                s.sendto(b"ping", (addr, port))
            time.sleep(0.001)
            while True:
                try:
                    s.recv(64)
                    echoes += 1
                except BlockingIOError:
                    break
                except OSError:
                    break
        time.sleep(0.2)
        while True:
            try:
                s.recv(64)
                echoes += 1
            except OSError:
                break
    return echoes


def main(argv: list[str]) -> int:
    if argv[0] == "serve":
        opts = dict(zip(argv[1::2], argv[2::2], strict=True))

        def ports(s: str) -> list[int]:
            return [int(p) for p in s.split(",") if p]

        serve(ports(opts.get("--tcp", "")), ports(opts.get("--udp", "")))
        return 0
    if argv[0] == "hammer":
        print(hammer(argv[1], int(argv[2]), float(argv[3])), flush=True)
        return 0
    result = probe(argv[1], argv[2], int(argv[3]))
    print(result)
    return 0 if result == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
