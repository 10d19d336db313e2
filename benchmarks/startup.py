"""Start-up cost of `rcc run -- true`, side by side with bare bubblewrap, bare Python and sandbox-runtime (srt).

Goal (issue #2): rcc adds at most 40 ms over bare Python start-up. Runs are interleaved round by round so that
machine noise hits every variant alike; medians and ratios are reported.

usage: python benchmarks/startup.py [--rounds N]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed ({r.returncode}): {argv}")
    return dt * 1000


def main() -> int:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 30
    project = tempfile.mkdtemp(prefix="rcc-bench-")
    subprocess.run(["git", "init", "-q", project], check=True)
    env = dict(os.environ)
    py = sys.executable
    rcc = [py, "-m", "rcc"]
    dry = subprocess.run(
        [*rcc, "run", "--no-network", "--dry-run", "--", "true"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(dry.stdout)
    # Bare bwrap with the same mounts (and no seccomp program). Placeholders exist only while rcc runs:
    bare = list(plan["backend"]["argv"])
    while "--ro-bind-data" in bare:  # file contents travel on descriptors rcc makes at run time: leave them out
        i = bare.index("--ro-bind-data")
        del bare[i : i + 3]
    while "--dev-bind" in bare:  # root: private device nodes exist only while rcc runs (made per session)
        i = bare.index("--dev-bind")
        del bare[i : i + 3]
    for ph in plan["placeholders"]:  # create them so the bare command can bind them, as rcc does
        p = ph["path"]
        if ph["is_dir"]:
            os.makedirs(p, exist_ok=True)
        else:
            open(p, "a").close()
    variants: dict[str, list[str]] = {
        "python3 -c pass": [py, "-c", "pass"],
        "bare bwrap true": bare,
        "rcc run --no-network -- true": [*rcc, "run", "--no-network", "--", "true"],
        "... without limits": [*rcc, "run", "--no-network", "--memory=none", "--processes=none", "--", "true"],
        "rcc run -- true (proxy on)": [*rcc, "run", "--", "true"],
    }
    prefix = os.environ.get("RCC_BENCH_PREFIX", "/var/cache/rcc-bench")
    srt = shutil.which("srt") or next(
        (p for p in [os.path.join(prefix, "node_modules", ".bin", "srt")] if os.access(p, os.X_OK)), None
    )
    if srt:
        variants["srt true"] = [srt, "true"]
    results: dict[str, list[float]] = {k: [] for k in variants}
    for argv in variants.values():  # warm-up
        timed(argv, project, env)
    for _ in range(rounds):
        for k, argv in variants.items():
            results[k].append(timed(argv, project, env))
    base = statistics.median(results["python3 -c pass"])
    print(f"start-up, median of {rounds} interleaved runs ({os.cpu_count()} cores)")
    print(f"{'variant':34} {'median ms':>10} {'p90 ms':>8} {'vs python':>10}")
    for k, xs in results.items():
        med = statistics.median(xs)
        p90 = sorted(xs)[int(len(xs) * 0.9) - 1]
        print(f"{k:34} {med:10.1f} {p90:8.1f} {med - base:+9.1f}")
    if not srt:
        print("srt: not installed (benchmarks/install_alternatives.sh) - not compared")
    added = statistics.median(results["rcc run --no-network -- true"]) - base
    print(f"rcc adds {added:.1f} ms over bare Python start-up (goal: <= 40 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
