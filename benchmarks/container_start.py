"""Warm start of the container backend next to the bubblewrap backend, in the same run.

    python benchmarks/container_start.py [-n 20] [--engine podman,docker] [--image TAG] [--modes none,proxy]

For each backend and network mode: compile the real plan for `true` in a throwaway git project (probe +
compile_plan, as `rcc run` does), run it once to warm caches (image layers, keep-id mapping), then time N runs of
backend.run(plan) end to end (placeholders, engine start, proxy listener, teardown). Prints median / p90 / min in
milliseconds. As root it measures rootful podman and docker; as a normal user, rootless podman (and docker if
the user can reach a daemon). An engine that cannot run here is reported as skipped. Needs the base image
(tests/container/setup_podman.sh, setup_docker.sh) unless --image names another.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--engine", default="podman,docker", help="comma-separated engines")
    ap.add_argument("--image", default="")
    ap.add_argument("--modes", default="none,proxy")
    a = ap.parse_args()

    from rcc.backends.bwrap import BwrapBackend
    from rcc.backends.container import ContainerBackend
    from rcc.backends.container_image import base_image_tag
    from rcc.compile import Session, compile_plan, interesting_paths
    from rcc.policy import NetworkPolicy, Policy
    from rcc.probe import probe

    state = tempfile.mkdtemp(prefix="rcc-bench-state-")
    os.environ["XDG_STATE_HOME"] = state  # the proxy's audit log goes here, not into the real home
    project = tempfile.mkdtemp(prefix="rcc-bench-proj-")
    subprocess.run(["git", "init", "-q", project], check=True)
    backends: list[tuple[str, BwrapBackend | ContainerBackend]] = [("bwrap", BwrapBackend())]
    for engine in a.engine.split(","):
        rootless = " (rootless)" if os.geteuid() != 0 else ""
        backends.append((f"{engine}{rootless}", ContainerBackend(engine, a.image or base_image_tag())))
    print(f"warm start of `true`, n={a.n}, uid={os.geteuid()}, {os.cpu_count()} cpus")
    print(f"{'backend':22} {'network':8} {'median':>8} {'p90':>8} {'min':>8}  (ms)")
    for mode in a.modes.split(","):
        policy = Policy(network=NetworkPolicy(mode="allowlist" if mode == "proxy" else "none"))
        facts = probe(project, interesting_paths(policy, project), cwd=project)
        plan = compile_plan(policy, facts, Session(argv=("true",)), session_id="bench")
        for label, backend in backends:
            problems = backend.problems()
            if not problems and isinstance(backend, ContainerBackend):
                problems = backend.image_problems()
            if problems:
                print(f"{label:22} {mode:8} skipped: {problems[0].message}")
                continue
            if backend.run(plan) != 0:  # warm-up
                print(f"{label:22} {mode:8} failed to run")
                continue
            times = []
            for _ in range(a.n):
                t0 = time.perf_counter()
                rc = backend.run(plan)
                times.append((time.perf_counter() - t0) * 1000)
                assert rc == 0
            times.sort()
            p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
            print(f"{label:22} {mode:8} {statistics.median(times):8.0f} {p90:8.0f} {times[0]:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
