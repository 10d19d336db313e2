"""What one bind costs bubblewrap, by how many there are: `bwrap --ro-bind / / --bind D D` plus N read-only binds
of files in D, running `true`, N = 0, 25, 50, 100, 200 (medians of --runs). bubblewrap re-reads
/proc/self/mountinfo after every bind, so the cost per bind grows with the mounts already made: the reason rcc's
51 protective binds in a project cost ~11 ms of bubblewrap's ~19 (README, "Performance").

usage: python benchmarks/bwrap_binds.py [--runs 15]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 15
    d = tempfile.mkdtemp(prefix="rcc-binds-")
    try:
        for i in range(200):
            open(f"{d}/f{i}", "w").close()
        base = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--bind", d, d]
        times: dict[int, list[float]] = {n: [] for n in (0, 25, 50, 100, 200)}
        for _ in range(runs):
            for n, xs in times.items():
                argv = list(base)
                for i in range(n):
                    argv += ["--ro-bind", f"{d}/f{i}", f"{d}/f{i}"]
                t = time.perf_counter()
                subprocess.run([*argv, "true"], check=True)
                xs.append((time.perf_counter() - t) * 1000)
        zero = statistics.median(times[0])
        print(f"bubblewrap with N file binds, medians of {runs} runs (ms)")
        for n, xs in times.items():
            med = statistics.median(xs)
            per = f"{(med - zero) / n:6.3f} per bind" if n else ""
            print(f"  N={n:3d}  {med:7.2f}  +{med - zero:6.2f}  {per}")
        return 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
