"""Long-session soak: many short tunnels, denials and aborted handshakes against one proxy process; prints the
proxy's descriptor count, thread count and RSS at intervals. A leak shows as growth after the warm-up.

    .venv/bin/python benchmarks/net_soak.py [--rounds 20] [--per-round 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import net_throughput as nt


def proc_stats(pid: int) -> tuple[int, int, float]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, threads, rss / 1024


def one_round(n: int, dport: int, pport: int) -> int:
    errors = 0
    for i in range(n):
        kind = i % 4
        try:
            if kind in (0, 1):  # a tunnel with one exchange
                s = nt.open_conn("connect" if kind else "socks5", dport, pport)
                s.sendall(b"P")
                if s.recv(1) != b"p":
                    errors += 1
                s.close()
            elif kind == 2:  # a denial
                s = socket.create_connection(("127.0.0.1", pport))
                s.sendall(b"CONNECT denied.example:443 HTTP/1.1\r\n\r\n")
                if b" 403 " not in s.recv(4096):
                    errors += 1
                s.close()
            else:  # a client that goes away mid-handshake
                s = socket.create_connection(("127.0.0.1", pport))
                s.sendall(b"\x05\x01")
                s.close()
        except OSError:
            errors += 1
    return errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=1000)
    a = ap.parse_args()
    data, dport = nt.start(["--role", "data"])
    proxy, pport = nt.start(["--role", "proxy", "--relay", "splice", "--dest", str(dport)])
    try:
        t0 = time.perf_counter()
        print("round  connections  errors  proxy_fds  threads  rss_MiB")
        total_err = 0
        for r in range(a.rounds):
            total_err += one_round(a.per_round, dport, pport)
            time.sleep(0.2)  # let the last records be written
            fds, threads, rss = proc_stats(proxy.pid)
            print(f"{r + 1:5d}  {(r + 1) * a.per_round:11d}  {total_err:6d}  {fds:9d}  {threads:7d}  {rss:7.1f}")
        print(f"{a.rounds * a.per_round} connections in {time.perf_counter() - t0:.1f} s")
    finally:
        assert proxy.stdin is not None
        proxy.stdin.close()
        proxy.wait(10)
        data.kill()
        data.wait()


if __name__ == "__main__":
    main()
