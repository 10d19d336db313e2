"""Egress proxy benchmarks, all on loopback, each party in its own process.

    .venv/bin/python benchmarks/net_throughput.py [--size-mib 256] [--runs 9] [--requests 200] [--tunnels 500]

Measures, in one run:
  1. download of --size-mib MiB: direct, via CONNECT and via SOCKS5, with the splice relay and the copy relay
     (medians over --runs, ratio to direct);
  2. --requests sequential new connections with a 1-byte request/response: direct vs via CONNECT and SOCKS5
     (median time per connection, added latency);
  3. --tunnels concurrent tunnels each exchanging a message (errors, wall time);
  4. peak RSS (VmHWM) of each proxy process;
  5. (--inside-rcc, default on) the same download from inside `rcc run`: the client runs in the sandbox's own
     network namespace and goes through rcc's proxy, as an agent does, next to the same client run directly.
CPU s/GB: "ends" is the data server plus this client, "proxy" the proxy process (softirq time of loopback TCP
is not always charged to a process, so these do not add up to the machine's busy time).
The data server: first byte b"D" + 8-byte size -> that many bytes then close; b"P" -> one byte back, close.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

BUF = 4 << 20


def serve_data() -> None:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    print(lsock.getsockname()[1], flush=True)
    payload = memoryview(os.urandom(BUF))

    def handle(c: socket.socket) -> None:
        with c:
            try:
                kind = c.recv(1)
                if kind == b"P":
                    c.sendall(b"p")
                elif kind == b"D":
                    size = int.from_bytes(recv_exact(c, 8), "big")
                    while size > 0:
                        n = min(size, BUF)
                        c.sendall(payload[:n])
                        size -= n
                elif kind == b"E":
                    while d := c.recv(65536):
                        c.sendall(d)
            except OSError:
                pass

    while True:
        c, _ = lsock.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def serve_proxy(relay: str, dest_port: int) -> None:
    from rcc.net.proxy import EgressProxy
    from rcc.net.rules import compile_rules

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    rules = compile_rules([f"127.0.0.1:{dest_port}"], [])
    audit = f"/tmp/rcc-bench-audit-{os.getpid()}.jsonl"
    proxy = EgressProxy(rules, audit, "bench", lambda s: None, relay=relay)  # type: ignore[arg-type]
    proxy.start([lsock])
    print(lsock.getsockname()[1], flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        proxy.close()
        os.unlink(audit)


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise ConnectionError("short read")
        out += d
    return bytes(out)


def open_conn(mode: str, dest: int, proxy: int) -> socket.socket:
    if mode == "direct":
        s = socket.create_connection(("127.0.0.1", dest))
    else:
        s = socket.create_connection(("127.0.0.1", proxy))
        if mode == "connect":
            s.sendall(f"CONNECT 127.0.0.1:{dest} HTTP/1.1\r\nHost: 127.0.0.1:{dest}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1024)
            assert b" 200 " in head, head
        else:
            s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + dest.to_bytes(2, "big"))
            rep = recv_exact(s, 12)
            assert rep[:2] == b"\x05\x00" and rep[3] == 0, rep
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def download(mode: str, dest: int, proxy: int, size: int) -> float:
    buf = bytearray(BUF)
    view = memoryview(buf)
    t0 = time.perf_counter()
    s = open_conn(mode, dest, proxy)
    s.sendall(b"D" + size.to_bytes(8, "big"))
    got = 0
    while got < size:
        n = s.recv_into(view)
        if n == 0:
            raise ConnectionError(f"short download {got}/{size}")
        got += n
    s.close()
    return time.perf_counter() - t0


def ping(mode: str, dest: int, proxy: int) -> float:
    t0 = time.perf_counter()
    s = open_conn(mode, dest, proxy)
    s.sendall(b"P")
    assert s.recv(1) == b"p"
    dt = time.perf_counter() - t0
    s.close()
    return dt


def concurrent(n: int, dest: int, proxy: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    socks: list[socket.socket] = []
    errors = 0
    for i in range(n):
        try:
            s = open_conn("connect" if i % 2 else "socks5", dest, proxy)
            s.sendall(b"E")
            socks.append(s)
        except (OSError, AssertionError):
            errors += 1
    for i, s in enumerate(socks):
        s.sendall(b"m%05d" % i)
    for i, s in enumerate(socks):
        try:
            if recv_exact(s, 6) != b"m%05d" % i:
                errors += 1
        except OSError:
            errors += 1
    for s in socks:
        s.close()
    return errors, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def vmhwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, __file__, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def client_main(mode: str, dest: int, size: int) -> None:
    """--role client: one download, seconds on stdout. Inside rcc the proxy port comes from HTTPS_PROXY."""
    proxy = int(os.environ.get("HTTPS_PROXY", "http://127.0.0.1:0").rsplit(":", 1)[1].strip("/"))
    print(download(mode, dest, proxy, size), flush=True)


def inside_rcc(runs: int, dport: int, size: int) -> None:
    """Direct download by a client process on the host vs the same client inside `rcc run` (own netns, rcc's
    proxy, bwrap), interleaved; each process downloads once and times only the download."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    py = "/usr/bin/python3"  # inside the sandbox the user's home (and a venv or pyenv in it) is not visible
    me = os.path.relpath(os.path.abspath(__file__), root)
    rcc = [sys.executable, "-m", "rcc", "run", "--allow", f"127.0.0.1:{dport}", "--"]
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "src"))

    def one(cmd: list[str]) -> float:
        out = subprocess.run(cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise SystemExit(f"inside-rcc client failed ({out.returncode}): {out.stderr.strip()[-500:]}")
        return float(out.stdout.split()[-1])

    times: dict[str, list[float]] = {"direct": [], "connect": [], "socks5": []}
    ratios: dict[str, list[float]] = {"connect": [], "socks5": []}
    for i in range(runs):
        d = one([py, me, "--role", "client", "--mode", "direct", "--dest", str(dport), "--size", str(size)])
        times["direct"].append(d)
        for mode in ("connect", "socks5")[:: 1 if i % 2 else -1]:
            t = one([*rcc, py, me, "--role", "client", "--mode", mode, "--dest", str(dport), "--size", str(size)])
            times[mode].append(t)
            ratios[mode].append(d / t)
    print(f"direct (host)          {size / statistics.median(times['direct']) / 1e9:6.2f} GB/s")
    for mode in ("connect", "socks5"):
        t, r = statistics.median(times[mode]), statistics.median(ratios[mode])
        print(f"{mode:8s} in rcc run    {size / t / 1e9:6.2f} GB/s  ({r:5.1%} of direct)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--tunnels", type=int, default=500)
    ap.add_argument("--role", choices=["data", "proxy", "client"])
    ap.add_argument("--mode", default="direct")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--no-inside-rcc", dest="inside_rcc", action="store_false")
    ap.add_argument("--relay", default="splice")
    ap.add_argument("--dest", type=int, default=0)
    a = ap.parse_args()
    if a.role == "data":
        serve_data()
        return
    if a.role == "proxy":
        serve_proxy(a.relay, a.dest)
        return
    if a.role == "client":
        client_main(a.mode, a.dest, a.size)
        return

    data, dport = start(["--role", "data"])
    proxies = {r: start(["--role", "proxy", "--relay", r, "--dest", str(dport)]) for r in ("splice", "copy")}
    size = a.size_mib << 20
    try:
        print(f"# download {a.size_mib} MiB, median of {a.runs} (GB/s = 1e9 bytes/s)")
        # Interleaved: each run downloads directly and then through every variant, so a change in machine load
        # hits both sides of a ratio alike; ratios are computed per run, then the median is taken.
        variants = [(relay, mode) for relay in proxies for mode in ("connect", "socks5")]
        direct_key = ("direct", "direct")
        times: dict[tuple[str, str], list[float]] = {direct_key: []}
        ratios: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
        # CPU seconds per variant: [server + client, proxy]; softirq time is not always charged to a process.
        cpu: dict[tuple[str, str], list[float]] = {k: [0.0, 0.0] for k in (direct_key, *variants)}

        def own_cpu() -> float:
            t = os.times()
            return t.user + t.system

        def measure(key: tuple[str, str], mode: str, pport: int, ppid: int | None) -> float:
            s0, c0, p0 = cpu_seconds(data.pid), own_cpu(), cpu_seconds(ppid) if ppid else 0.0
            t = download(mode, dport, pport, size)
            cpu[key][0] += cpu_seconds(data.pid) - s0 + own_cpu() - c0
            if ppid:
                cpu[key][1] += cpu_seconds(ppid) - p0
            times.setdefault(key, []).append(t)
            return t

        tot0, idle0 = machine_busy()
        for i in range(a.runs):
            d = measure(direct_key, "direct", 0, None)
            k = i % len(variants)  # rotate the order: whichever goes first after direct is not always the same
            for relay, mode in variants[k:] + variants[:k]:
                p, pport = proxies[relay]
                ratios[(relay, mode)].append(d / measure((relay, mode), mode, pport, p.pid))
        tot1, idle1 = machine_busy()
        gb = a.runs * size / 1e9
        direct = statistics.median(times[direct_key])
        print(
            f"direct                 {size / direct / 1e9:6.2f} GB/s"
            f"                   CPU s/GB: ends {cpu[direct_key][0] / gb:.2f}"
        )
        for v in variants:
            t = statistics.median(times[v])
            ratio = statistics.median(ratios[v])
            print(
                f"{v[1]:8s} relay={v[0]:6s} {size / t / 1e9:6.2f} GB/s  ({ratio:5.1%} of direct)"
                f"  CPU s/GB: ends {cpu[v][0] / gb:.2f} proxy {cpu[v][1] / gb:.2f}"
            )
        print(
            f"(machine CPU busy during downloads: {1 - (idle1 - idle0) / (tot1 - tot0):.0%} of "
            f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f})"
        )

        print(f"\n# {a.requests} sequential new connections, 1-byte request/response (median)")
        for _ in range(20):
            ping("direct", dport, 0)
        base = statistics.median(ping("direct", dport, 0) for _ in range(a.requests))
        print(f"direct                 {base * 1e3:6.3f} ms")
        pport = proxies["copy"][1]
        for mode in ("connect", "socks5"):
            for _ in range(20):
                ping(mode, dport, pport)
            t = statistics.median(ping(mode, dport, pport) for _ in range(a.requests))
            print(f"{mode:8s}               {t * 1e3:6.3f} ms  (+{(t - base) * 1e3:.3f} ms per connection)")

        print(f"\n# {a.tunnels} concurrent tunnels (half CONNECT, half SOCKS5), copy relay")
        errors, wall = concurrent(a.tunnels, dport, pport)
        print(f"errors {errors}, wall {wall:.2f} s")

        if a.inside_rcc:
            print(f"\n# download {a.size_mib} MiB inside `rcc run` (own netns, rcc's proxy), median of {a.runs}")
            inside_rcc(a.runs, dport, size)

        print("\n# peak RSS (VmHWM) of the proxy processes")
        for relay, (p, _port) in proxies.items():
            print(f"relay={relay:6s} {vmhwm_mib(p.pid):6.1f} MiB")
    finally:
        for p, _port in proxies.values():
            assert p.stdin is not None
            p.stdin.close()
            p.wait(10)
        data.kill()
        data.wait()


if __name__ == "__main__":
    main()
