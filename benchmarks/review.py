"""Review mode's costs (issue 16), side by side in one run:

1. start-up of `rcc run --no-network --review -- true` beside the plain `rcc run --no-network -- true` in the same
   small git project (goal: review mode adds at most 10 ms). Each review run that changes nothing removes its
   review itself, so every round starts alike. Runs are interleaved round by round; medians, p90 and min.
2. `rcc apply` of a review holding 10,000 changed files (5,000 modified, 5,000 added in 100 directories),
   beside `cp -a` of the same upper directory into a copy of the project (the floor for writing that much).
   Each round makes a fresh session; only `rcc apply` / `cp` is timed.

usage: python benchmarks/review.py [--rounds N] [--apply-rounds N]   (as root or as a user; bwrap)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

N_FILES = 10_000


def run(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    dt = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed ({r.returncode}): {argv}\n{r.stderr.decode()}")
    return dt


def report(rows: dict[str, list[float]]) -> dict[str, float]:
    med = {k: statistics.median(v) for k, v in rows.items()}
    for k, v in rows.items():
        p90 = sorted(v)[max(0, int(len(v) * 0.9) - 1)]
        print(f"  {k:34s} median {med[k]:8.1f} ms   p90 {p90:8.1f} ms   min {min(v):8.1f} ms   ({len(v)} runs)")
    return med


def main() -> int:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 30
    apply_rounds = int(sys.argv[sys.argv.index("--apply-rounds") + 1]) if "--apply-rounds" in sys.argv else 5
    base = tempfile.mkdtemp(prefix="rcc-bench-review-")
    env = {**os.environ, "XDG_STATE_HOME": os.path.join(base, "state"), "XDG_CONFIG_HOME": os.path.join(base, "c")}
    project = os.path.join(base, "app")
    os.mkdir(project)
    for i in range(50):
        with open(os.path.join(project, f"f{i}.txt"), "w") as f:
            f.write(f"{i}\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    rcc = [sys.executable, "-m", "rcc", "run", "--no-network"]
    plain, review = [*rcc, "--", "true"], [*rcc, "--review", "--", "true"]
    run(plain, project, env)
    run(review, project, env)  # warm-up
    rows: dict[str, list[float]] = {"rcc run -- true": [], "rcc run --review -- true": []}
    for _ in range(rounds):
        rows["rcc run -- true"].append(run(plain, project, env))
        rows["rcc run --review -- true"].append(run(review, project, env))
    print(f"start-up ({rounds} rounds, interleaved):")
    med = report(rows)
    print(
        f"  review - plain: {med['rcc run --review -- true'] - med['rcc run -- true']:+.1f} ms (medians; goal <= +10)"
    )

    big = os.path.join(base, "big")
    os.mkdir(big)
    for d in range(100):
        os.mkdir(os.path.join(big, f"d{d}"))
        for i in range(N_FILES // 200):
            with open(os.path.join(big, f"d{d}", f"m{i}.txt"), "w") as f:
                f.write(f"original {d} {i}\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=big, check=True)
    script = "for d in d*; do for i in $(seq 0 49); do echo changed >> $d/m$i.txt; echo new > $d/n$i.txt; done; done"
    arows: dict[str, list[float]] = {f"rcc apply ({N_FILES} files)": [], f"cp -a upper/ ({N_FILES} files)": []}
    for _ in range(apply_rounds):
        work = os.path.join(base, "work")
        shutil.copytree(big, work, symlinks=True)
        subprocess.run([*rcc, "--review", "--", "sh", "-c", script], cwd=work, env=env, check=True,
                       capture_output=True)  # fmt: skip
        (rid,) = os.listdir(os.path.join(base, "state", "rcc", "reviews"))
        upper = os.path.join(base, "state", "rcc", "reviews", rid, "upper")
        floor = os.path.join(base, "floor")
        shutil.copytree(big, floor, symlinks=True)
        arows[f"cp -a upper/ ({N_FILES} files)"].append(run(["cp", "-a", upper + "/.", floor], base, env))
        arows[f"rcc apply ({N_FILES} files)"].append(
            run([sys.executable, "-m", "rcc", "apply", "--session", rid], work, env)
        )
        changed = sum(1 for d in os.listdir(work) if d.startswith("d") for n in os.listdir(os.path.join(work, d)))
        with open(os.path.join(work, "d7", "m3.txt")) as f:
            modified = f.read() == "original 7 3\nchanged\n"
        if changed != N_FILES or not modified:  # 50 modified + 50 new in each of 100 directories
            raise SystemExit(f"apply left {changed} files (expected {N_FILES}), modified: {modified}")
        shutil.rmtree(work)
        shutil.rmtree(floor)
    print(f"apply ({apply_rounds} rounds; each a fresh review of {N_FILES} changed files):")
    report(arows)
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
