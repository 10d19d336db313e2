"""Start-up cost of `rcc run -- true`, side by side with bare bubblewrap, bare Python and sandbox-runtime (srt).

Goals (issue 12): `rcc run -- true` (proxy on) within 5 ms of `rcc run --no-network -- true`, and that within
20 ms of `python3 -c pass`; `rcc claude -p` to its first API request within 30 ms of plain `claude -p` (--agent).
Runs are interleaved round by round so that machine noise hits every variant alike; medians are reported.

Rows that split the cost up rather than being goals themselves: bubblewrap alone with rcc's exact mount plan,
the same without the binds that protect paths inside the project (the never-writable files and their
placeholders; bubblewrap re-reads /proc/self/mountinfo for every bind, so each costs more the more mounts there
are), and with nothing but / read-only; "rcc's modules for --no-network, imported" (what
`rcc run --no-network` imports, without running anything) and "the proxy's modules, imported" (what starting the
proxy imports on top: rcc.net, asyncio, rcc.live). Each is measured as a separate `python3 -c import ...`.

usage: python benchmarks/startup.py [--rounds N] [--agent]   (--agent: also benchmarks/agent_startup.py; root)

Run it with a Python whose start-up is not padded by site hooks (a virtualenv's, or `python3 -I` semantics):
a `.pth` file in the interpreter's site-packages runs at every start, in `python3 -c pass` and rcc alike, and
only adds noise (this VM's pyenv Python has one that imports certifi: +20 ms each).
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
    under_project = project.rstrip("/") + "/"
    unprotected, i = [], 0  # the same, without the binds that protect paths inside the project
    while i < len(bare):
        if bare[i] in ("--ro-bind", "--bind") and bare[i + 2].startswith(under_project):
            i += 3
            continue
        unprotected.append(bare[i])
        i += 1
    minimal = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    core_mods = "rcc.cli, rcc.runner, rcc.config, rcc.compile, rcc.probe, rcc.backends.bwrap, rcc.sessionhost"
    proxy_mods = "rcc.backends._proxy, rcc.net.proxy, rcc.net.rules, rcc.net.decider, rcc.net.audit, rcc.live.server"
    variants: dict[str, list[str]] = {
        "python3 -c pass": [py, "-c", "pass"],
        "rcc's modules for --no-network, imported": [py, "-c", f"import {core_mods}"],
        "... and the proxy's modules": [py, "-c", f"import {core_mods}, {proxy_mods}"],
        "bwrap, / read-only, true": minimal,
        "bare bwrap true (rcc's mounts)": bare,
        "... without the project's protected paths": unprotected,
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
    print(f"{'variant':42} {'median ms':>10} {'p90 ms':>8} {'vs python':>10}")
    for k, xs in results.items():
        med = statistics.median(xs)
        p90 = sorted(xs)[int(len(xs) * 0.9) - 1]
        print(f"{k:42} {med:10.1f} {p90:8.1f} {med - base:+9.1f}")
    if not srt:
        print("srt: not installed (benchmarks/install_alternatives.sh) - not compared")
    med = {k: statistics.median(xs) for k, xs in results.items()}
    nonet, proxy = med["rcc run --no-network -- true"], med["rcc run -- true (proxy on)"]
    print(f"--no-network over bare Python: {nonet - base:+.1f} ms (goal: <= 20 ms)")
    print(f"proxy on over --no-network:    {proxy - nonet:+.1f} ms (goal: <= 5 ms)")
    imports = med["... and the proxy's modules"] - med["rcc's modules for --no-network, imported"]
    print(f"  of which the proxy's imports alone: {imports:+.1f} ms")
    if "--agent" in sys.argv:
        here = os.path.dirname(os.path.abspath(__file__))
        print("\n`rcc claude -p` to its first API request, beside plain `claude -p` (benchmarks/agent_startup.py):")
        sys.stdout.flush()
        subprocess.run([py, os.path.join(here, "agent_startup.py"), "-n", str(max(5, rounds // 3))], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
