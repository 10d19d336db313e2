"""Start-up cost of `rcc run --no-network -- true` in a linked git worktree, side by side with the same run in
the main working tree (issue 16: a worktree session binds the common git dir, protects it and sweeps it).

Runs are interleaved round by round so that machine noise hits both alike; medians and p90 are reported, and the
difference of medians. The repository has a few hundred commits' worth of objects and refs, like a small project.

usage: python benchmarks/worktree_startup.py [--rounds N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv: list[str], cwd: str) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed ({r.returncode}) in {cwd}: {argv}")
    return dt * 1000


def git(cwd: str, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=B", "-c", "user.email=b@e.invalid", *args], cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip


def main() -> int:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 30
    base = tempfile.mkdtemp(prefix="rcc-bench-wt-")
    main_tree = os.path.join(base, "app")
    os.mkdir(main_tree)
    git(main_tree, "init", "-q", "-b", "main")
    for i in range(300):
        with open(os.path.join(main_tree, f"f{i % 30}.txt"), "a") as f:
            f.write(f"{i}\n")
        git(main_tree, "add", "-A")
        git(main_tree, "commit", "-q", "-m", f"c{i}")
        if i % 20 == 0:
            git(main_tree, "tag", f"v{i}")
    worktree = os.path.join(base, "app-worktrees", "bench")
    git(main_tree, "worktree", "add", "-q", "-b", "bench", worktree)
    rcc = [sys.executable, "-m", "rcc", "run", "--no-network", "--", "true"]
    rows: dict[str, list[float]] = {"main working tree": [], "linked worktree": []}
    for where in (main_tree, worktree):  # warm-up
        timed(rcc, where)
    for _ in range(rounds):
        rows["main working tree"].append(timed(rcc, main_tree))
        rows["linked worktree"].append(timed(rcc, worktree))
    med = {k: statistics.median(v) for k, v in rows.items()}
    for k, v in rows.items():
        p90 = sorted(v)[int(len(v) * 0.9) - 1]
        print(f"{k:20s} median {med[k]:7.1f} ms   p90 {p90:7.1f} ms   min {min(v):7.1f} ms   ({len(v)} runs)")
    print(f"worktree - main: {med['linked worktree'] - med['main working tree']:+.1f} ms (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
