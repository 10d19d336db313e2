"""What TLS termination for a credential costs (issue 15), next to a plain tunnel and a direct connection.

    sudo .venv/bin/python benchmarks/net_credentials.py [--size-mib 64] [--runs 9] [--requests 100]

An HTTPS origin (HTTP/1.1, a certificate from a throwaway CA) runs in its own process on a test host in a network
namespace this benchmark creates (tests/testhosts.py; the proxy refuses loopback for a credential host, as it
must). Three ways to reach it, in one run, interleaved so machine load hits all alike:
  direct      the client's TLS straight to the origin;
  tunnel      CONNECT through rcc's EgressProxy, TLS end to end (a host without a credential);
  terminated  CONNECT through rcc's EgressProxy with a credential for the host: the proxy ends the client's TLS with
              a leaf from the session CA, swaps the placeholder in the request headers for the real value, and
              opens its own TLS to the origin.
Measured:
  1. time to first byte of a new connection (TCP + CONNECT + TLS handshake + request + first response byte), median
     of --requests after 5 warm-up connections (the first one through the terminating proxy makes the leaf);
  2. throughput of one --size-mib MiB response body, median of --runs (ratio to the tunnel per run, then median).
Each proxy runs in its own process; needs root (ip netns). Goal from the issue: termination adds <= 5 ms to a new
connection after the first and keeps >= 50% of the tunnel's throughput.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "src"))

NAME = "bench.test"
ENV_VAR = "RCC_BENCH_TOKEN"
REAL = "bench-real-token-0123456789"
BUF = 1 << 20


# ------------------------------------------------------------------------------------------------ origin


def serve_origin(addr: str, cert: str, key: str) -> None:
    """HTTP/1.1 over TLS: GET /ping -> 1 byte; GET /data/N -> N bytes; one request per connection. 401 unless
    the request carries `Authorization: Bearer <the real value>` (so the terminated path really injected it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((addr, 443))
    lsock.listen(1024)
    print("listening", flush=True)
    payload = memoryview(os.urandom(BUF))

    def handle(c: socket.socket) -> None:
        try:
            with ctx.wrap_socket(c, server_side=True) as s:
                head = b""
                while b"\r\n\r\n" not in head:
                    d = s.recv(4096)
                    if not d:
                        return
                    head += d
                if b"\r\nAuthorization: Bearer " + REAL.encode() + b"\r\n" not in head:
                    s.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                path = head.split(b" ", 2)[1].decode()
                size = int(path.rsplit("/", 1)[1]) if path.startswith("/data/") else 1
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
                while size > 0:
                    n = min(size, BUF)
                    s.sendall(payload[:n])
                    size -= n
        except (OSError, ssl.SSLError):
            pass

    while True:
        c, _ = lsock.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(c,), daemon=True).start()


# ------------------------------------------------------------------------------------------------- proxy


def serve_proxy(kind: str, address: str, origin_ca: str, out_dir: str) -> None:
    """rcc's EgressProxy allowing NAME (resolved to `address`); with kind="terminated" a credential for it."""
    from rcc.net.proxy import EgressProxy
    from rcc.net.rules import compile_rules

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    rules = compile_rules([NAME], [], {NAME: address})
    audit = os.path.join(out_dir, f"audit-{kind}.jsonl")
    kw: dict[str, object] = {}
    if kind == "terminated":
        kw = terminating_options(origin_ca, out_dir)
    proxy = EgressProxy(rules, audit, "bench", lambda s: None, **kw)  # type: ignore[arg-type]
    proxy.start([lsock])
    print(lsock.getsockname()[1], flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        proxy.close()


def terminating_options(origin_ca: str, out_dir: str) -> dict[str, object]:
    """The EgressProxy keyword arguments that terminate TLS for NAME with a credential (the real value from
    $RCC_BENCH_TOKEN), as rcc sets them up for a session; the session CA's certificate and the placeholder go to
    out_dir for the client."""
    try:
        from rcc.net.credentials import Credential, CredentialSet, new_placeholder
        from rcc.net.sessionca import SessionCA, upstream_context
        from rcc.net.terminate import Terminator
    except ImportError as e:
        raise SystemExit(f"rcc has no credential support here ({e}): cannot measure `terminated`") from e
    ca = SessionCA.create("bench")
    placeholder = new_placeholder("bench")
    creds = CredentialSet([Credential("bench", ENV_VAR, (NAME,), placeholder, os.environ[ENV_VAR])])
    with open(os.path.join(out_dir, "session-ca.pem"), "wb") as f:
        f.write(ca.cert_pem())
    with open(os.path.join(out_dir, "placeholder"), "w") as f:
        f.write(placeholder)
    return {"terminator": Terminator(ca, creds, upstream=upstream_context(origin_ca))}


# ------------------------------------------------------------------------------------------------ client


def open_tls(mode: str, address: str, pport: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    if mode == "direct":
        s = socket.create_connection((address, 443))
    else:
        s = socket.create_connection(("127.0.0.1", pport))
        s.sendall(f"CONNECT {NAME}:443 HTTP/1.1\r\nHost: {NAME}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(1024)
            if not d:
                raise ConnectionError("proxy closed")
            head += d
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname=NAME)


def request(s: ssl.SSLSocket, path: str, token: str) -> None:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())


def ttfb(mode: str, address: str, pport: int, ctx: ssl.SSLContext, token: str) -> float:
    t0 = time.perf_counter()
    with open_tls(mode, address, pport, ctx) as s:
        request(s, "/ping", token)
        if not s.recv(1):
            raise ConnectionError("no response")
        dt = time.perf_counter() - t0
        if not s.recv(64).startswith(b"TTP/1.1 200"):
            raise ConnectionError(f"{mode}: the origin did not answer 200 (no credential injected?)")
        return dt


def download(mode: str, address: str, pport: int, ctx: ssl.SSLContext, token: str, size: int) -> float:
    buf = bytearray(BUF)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open_tls(mode, address, pport, ctx) as s:
        request(s, f"/data/{size}", token)
        head = b""
        while b"\r\n\r\n" not in head:
            n = s.recv_into(view)
            if n == 0:
                raise ConnectionError("no response head")
            head += bytes(view[:n])
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"{mode}: {head[:40]!r} (no credential injected?)")
        got = len(head.split(b"\r\n\r\n", 1)[1])
        while got < size:
            n = s.recv_into(view)
            if n == 0:
                raise ConnectionError(f"short download {got}/{size}")
            got += n
    return time.perf_counter() - t0


def start(argv: list[str], prefix: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [*(prefix or []), sys.executable, os.path.abspath(__file__), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if not line:
        raise SystemExit(f"{argv[:2]} did not start")
    return p, line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--role", choices=["origin", "proxy"])
    ap.add_argument("--kind", default="tunnel")
    ap.add_argument("--address", default="")
    ap.add_argument("--cert", default="")
    ap.add_argument("--key", default="")
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    if a.role == "origin":
        serve_origin(a.address, a.cert, a.key)
        return
    if a.role == "proxy":
        serve_proxy(a.kind, a.address, a.cert, a.dir)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root: the origin runs on a test host in a network namespace (ip netns)")

    from testhosts import TestCA, test_host

    with tempfile.TemporaryDirectory(prefix="rcc-bench-cred-") as tmp, test_host() as host:
        ca = TestCA(os.path.join(tmp, "ca"))
        cert, key = ca.issue([NAME, host.address])
        argv = [sys.executable, os.path.abspath(__file__), "--role", "origin", "--address", host.address]
        origin = host.run_bg([*argv, "--cert", cert, "--key", key], stdout=subprocess.PIPE)
        assert origin.stdout is not None
        origin.stdout.readline()
        proxies: dict[str, tuple[subprocess.Popen[str], int]] = {}
        for kind in ("tunnel", "terminated"):
            args = ["--role", "proxy", "--kind", kind, "--address", host.address, "--cert", ca.cert, "--dir", tmp]
            p, port = start(args, ["env", f"{ENV_VAR}={REAL}"])
            proxies[kind] = (p, int(port))
        origin_ctx = ssl.create_default_context(cafile=ca.cert)
        session_ctx = ssl.create_default_context(cafile=os.path.join(tmp, "session-ca.pem"))
        # The client holds the placeholder through the terminating proxy (as a sandboxed one would), the real
        # value where it talks to the origin itself.
        with open(os.path.join(tmp, "placeholder")) as f:
            placeholder = f.read().strip()
        modes = {
            "direct": (0, origin_ctx, REAL),
            "tunnel": (proxies["tunnel"][1], origin_ctx, REAL),
            "terminated": (proxies["terminated"][1], session_ctx, placeholder),
        }
        try:
            print(f"# time to first byte of a new HTTPS connection, median of {a.requests} (after 5 warm-ups)")
            first = ttfb("terminated", host.address, *modes["terminated"])
            for mode, (pport, ctx, tok) in modes.items():
                for _ in range(5):
                    ttfb(mode, host.address, pport, ctx, tok)
            samples: dict[str, list[float]] = {m: [] for m in modes}
            for i in range(a.requests):
                order = list(modes)[i % 3 :] + list(modes)[: i % 3]
                for mode in order:
                    pport, ctx, tok = modes[mode]
                    samples[mode].append(ttfb(mode, host.address, pport, ctx, tok))
            med = {m: statistics.median(v) for m, v in samples.items()}
            for m in modes:
                extra = "" if m == "direct" else f"  (+{(med[m] - med['direct']) * 1e3:.2f} ms vs direct)"
                print(f"{m:11s} {med[m] * 1e3:7.2f} ms{extra}")
            print(
                f"termination adds {(med['terminated'] - med['tunnel']) * 1e3:+.2f} ms to a new connection vs the "
                f"tunnel (goal <= 5 ms); the very first terminated connection took {first * 1e3:.2f} ms"
            )

            size = a.size_mib << 20
            print(f"\n# download {a.size_mib} MiB over one connection, median of {a.runs} (GB/s = 1e9 bytes/s)")
            times: dict[str, list[float]] = {m: [] for m in modes}
            ratios: list[float] = []
            for i in range(a.runs):
                order = list(modes)[i % 3 :] + list(modes)[: i % 3]
                got = {}
                for mode in order:
                    pport, ctx, tok = modes[mode]
                    got[mode] = download(mode, host.address, pport, ctx, tok, size)
                    times[mode].append(got[mode])
                ratios.append(got["tunnel"] / got["terminated"])
            for m in modes:
                print(f"{m:11s} {size / statistics.median(times[m]) / 1e9:6.3f} GB/s")
            print(f"terminated keeps {statistics.median(ratios):.0%} of the tunnel's throughput (goal >= 50%)")
            print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        finally:
            for p, _port in proxies.values():
                assert p.stdin is not None
                p.stdin.close()
                p.wait(10)


if __name__ == "__main__":
    main()
