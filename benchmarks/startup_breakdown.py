"""Where `rcc run --no-network -- true` spends its time: each phase of rcc's own work timed inside the process
(median of N runs), beside `python3 -c pass` and bare bubblewrap. Complements benchmarks/startup.py (which times
whole runs side by side); this one says which part of the difference is which.

Each run is a fresh `python3 <this file> --child ...` that wraps rcc's phase functions with timers, runs rcc's CLI
as `python3 -m rcc` would and prints the timings as JSON when rcc exits. The wrappers add a few microseconds per
call. "bwrap + command" is the time rcc waits for bubblewrap (its namespaces and ~100 mount operations, the
command, the teardown); "cgroups" is limits.start (root: moving bwrap into the session's cgroup waits for an RCU
grace period, overlapped with bwrap's set-up, so it mostly hides inside "bwrap + command").

With --agent the command is `rcc claude --version` instead (the proxy on; Claude Code must be on PATH): the
agent's fresh state, the proxy listener and `claude --version` itself (inside "bwrap + command") come in.

usage: python benchmarks/startup_breakdown.py [--runs N] [--proxy] [--agent]   (run from a compiled tree: no
PYTHONDONTWRITEBYTECODE, or every run compiles rcc's sources)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = (
    ("rcc.config", "load", "config"),
    ("rcc.probe", "probe", "probe"),
    ("rcc.agents.state", "prepare", "agent: fresh state made"),
    ("rcc.agents.state", "finish", "agent: state kept, run removed"),
    ("rcc.compile", "compile_plan", "compile"),
    ("rcc.sessionhost", "SessionHost.__enter__", "host: placeholders, devices"),
    ("rcc.runner", "_sweep_git", "git sweep"),
    ("rcc.sessionhost", "SessionHost.seccomp_fd", "seccomp program"),
    ("rcc.limits", "SessionLimits.start", "cgroups (start)"),
    ("rcc.limits", "SessionLimits.apply", "cgroups/rlimits (apply)"),
    ("rcc.netns", "listen_in_netns", "proxy listener"),
    ("rcc.backends._proxy", "ProxyStarter.__init__", "proxy thread start"),
    ("rcc.backends.bwrap", "_wait", "bwrap + command (wait)"),
    ("rcc.limits", "SessionLimits.close", "cgroups (close)"),
    ("rcc.sessionhost", "SessionHost.__exit__", "host: undo"),
)


def child(argv: list[str]) -> None:
    import importlib

    t0 = time.perf_counter()
    times: dict[str, float] = {}
    for mod, attr, label in PHASES:
        m = importlib.import_module(mod)
        owner: object = m
        name = attr
        if "." in attr:
            cls, name = attr.split(".")
            owner = getattr(m, cls)
        f = getattr(owner, name)

        def timed(*a: object, _f: object = f, _label: str = label, **k: object) -> object:
            t = time.perf_counter()
            try:
                return _f(*a, **k)  # type: ignore[operator]
            finally:
                times[_label] = times.get(_label, 0.0) + (time.perf_counter() - t) * 1000

        setattr(owner, name, timed)
    times["imports (rcc's modules)"] = (time.perf_counter() - t0) * 1000
    real_exit = os._exit

    def done(code: int) -> None:
        if os.getpid() == me:
            times["total in python"] = (time.perf_counter() - t0) * 1000
            sys.stderr.write("BREAKDOWN " + json.dumps(times) + "\n")
            sys.stderr.flush()
        real_exit(code)

    me = os.getpid()
    os._exit = done  # type: ignore[assignment]
    sys.argv = ["rcc", *argv]
    from rcc.cli import main

    main()


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return 0
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 20
    net = [] if "--proxy" in sys.argv or "--agent" in sys.argv else ["--no-network"]
    command = ["claude", *net, "--", "--version"] if "--agent" in sys.argv else ["run", *net, "--", "true"]
    project = tempfile.mkdtemp(prefix="rcc-bench-")
    subprocess.run(["git", "init", "-q", project], check=True)
    rows: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {"python3 -c pass": [], "bare bwrap true": [], "rcc run (wall)": []}
    bare = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    for i in range(runs + 2):
        for label, argv in (
            ("python3 -c pass", [sys.executable, "-c", "pass"]),
            ("bare bwrap true", bare),
            ("rcc run (wall)", [sys.executable, __file__, "--child", *command]),
        ):
            t = time.perf_counter()
            r = subprocess.run(argv, cwd=project, capture_output=True, text=True, check=False)
            dt = (time.perf_counter() - t) * 1000
            if r.returncode != 0:
                raise SystemExit(f"{argv} failed: {r.stderr}")
            if i < 2:
                continue
            walls[label].append(dt)
            for line in r.stderr.splitlines():
                if line.startswith("BREAKDOWN "):
                    for k, v in json.loads(line[len("BREAKDOWN ") :]).items():
                        rows.setdefault(k, []).append(v)
    print(f"`rcc {' '.join(command)}`, medians of {runs} runs (ms)")
    for k, v in walls.items():
        print(f"  {k:34s} {statistics.median(v):7.1f}")
    for k, v in rows.items():
        print(f"  {k:34s} {statistics.median(v):7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
