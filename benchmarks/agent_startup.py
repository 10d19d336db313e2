"""Time from starting `rcc claude -p` to Claude Code's first Messages API request, next to plain `claude -p`.

    sudo python benchmarks/agent_startup.py [-n 10] [--claude PATH] [--split]

Both talk to the same scripted fake API (tests/agents/fake_anthropic.py) on a test host in a network namespace
this script creates (root needed): plain claude directly at http://<test host>:8080, rcc through its proxy at
http://api.test:8080 with --resolve. The runs alternate (plain, rcc, plain, ...) after one warm-up of each, with
the same HOME, settings and env (CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 for both, so neither tries the
internet). The clock is the same for both sides: t0 just before spawning, t1 the server's receive time of the
first POST /v1/messages that carries tools (the agent loop's request). Prints median / p90 / min in ms and the
difference of medians (goal, issue 12: <= 30 ms).

--split says where rcc's difference goes. claude is started through a small bash shim (placed inside claude's
own node_modules tree, so the sandbox sees it) that notes $EPOCHREALTIME when it runs: "launch" is t0 to the
shim (for rcc: Python, rcc's work, bubblewrap's set-up), "in claude" the shim to the first request. Two more
variants run alongside:
  - "plain, fresh state": plain claude with a new empty CLAUDE_CONFIG_DIR every run. rcc gives every session a
    fresh ~/.claude (only filtered login keys carry over: rcc.agents.state), so claude redoes its first-run
    work each time; this variant prices that choice without any sandbox.
  - "bwrap, direct": plain claude in a bare bubblewrap (/ read-only, own pid/ipc/uts namespaces, host
    network): the namespaces' cost without rcc's mounts, seccomp, proxy or state.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "agents")]

SHIM = '#!/bin/bash\necho $EPOCHREALTIME >> "$PWD/.rcc-bench-started"\nexec {claude} "$@"\n'


def first_request_time(log: Path, after: float) -> float | None:
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "request" and r.get("tools") and r["t"] >= after:
            return float(r["t"])
    return None


def node_modules_of(path: Path) -> Path | None:
    parts = path.resolve().parts
    return Path(*parts[: parts.index("node_modules") + 1]) if "node_modules" in parts else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--claude", default="/var/cache/rcc-test/npm/node_modules/.bin/claude")
    ap.add_argument("--split", action="store_true", help="also time launch vs claude, fresh state, bare bwrap")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (creates a network namespace for the fake API)", file=sys.stderr)
        return 2
    from agentworld import start_fake_api

    from testhosts import test_host

    claude = Path(a.claude)
    tmp = Path(tempfile.mkdtemp(prefix="rcc-bench-"))
    shim_dir = None
    try:
        home = tmp / "home"
        project = tmp / "proj"
        project.mkdir(parents=True)
        home.mkdir()
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        bin_dir = claude.parent
        if a.split:
            nm = node_modules_of(claude)
            if nm is None:
                print("--split needs claude installed from npm (a node_modules tree)", file=sys.stderr)
                return 2
            shim_dir = nm / f".rcc-bench-shim-{os.getpid()}"
            shim_dir.mkdir()
            (shim_dir / "claude").write_text(SHIM.format(claude=claude.resolve()))
            (shim_dir / "claude").chmod(0o755)
            bin_dir = shim_dir
        base_env = {
            "HOME": str(home),
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "ANTHROPIC_API_KEY": "sk-ant-bench",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "PYTHONPATH": str(ROOT / "src"),
        }
        # Plain claude gets the same fixed env and config location as the sandboxed one.
        plain_cfg = home / "plain-claude"
        plain_cfg.mkdir()
        plain_env = {**base_env, "IS_SANDBOX": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CONFIG_DIR": str(plain_cfg)}
        with test_host() as host:
            api = start_fake_api(host, tmp, [{"text": "done"}])
            plain_cmd = [str(bin_dir / "claude"), "-p", "hi"]
            plain_env["ANTHROPIC_BASE_URL"] = f"http://{host.address}:8080"
            rcc_env = {**base_env, "ANTHROPIC_BASE_URL": "http://api.test:8080"}
            rcc_cmd = [sys.executable, "-m", "rcc", "claude", "--resolve", f"api.test={host.address}", "-p", "hi"]
            variants = {"plain": (plain_cmd, plain_env), "rcc": (rcc_cmd, rcc_env)}
            if a.split:
                bare = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                        "--bind", str(tmp), str(tmp), "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                        "--die-with-parent", "--new-session", "--chdir", str(project), "--"]  # fmt: skip
                variants["plain, fresh state"] = (plain_cmd, plain_env)
                variants["bwrap, direct"] = ([*bare, *plain_cmd], plain_env)
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
            started = project / ".rcc-bench-started"
            for i in range(a.n + 1):
                for name, (cmd, fixed) in variants.items():
                    env = fixed
                    if name == "plain, fresh state":
                        env = {**fixed, "CLAUDE_CONFIG_DIR": tempfile.mkdtemp(dir=home)}
                    started.unlink(missing_ok=True)
                    t0 = time.time()
                    r = subprocess.run(cmd, env=env, cwd=project, capture_output=True, text=True,
                                       stdin=subprocess.DEVNULL, timeout=60, check=False)  # fmt: skip
                    t1 = first_request_time(api.log, t0)
                    if r.returncode != 0 or t1 is None:
                        print(f"{name} failed: rc={r.returncode}\n{r.stderr[-2000:]}", file=sys.stderr)
                        return 1
                    ts = float(started.read_text().split()[0]) if a.split else t0
                    if i > 0:  # run 0 warms caches
                        times[name].append(((t1 - t0) * 1000, (ts - t0) * 1000))
        for name, rows in times.items():
            xs = sorted(r[0] for r in rows)
            p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
            line = (f"{name:18s} first API request after: median {statistics.median(xs):7.1f} ms  p90 {p90:7.1f} ms  "
                    f"min {xs[0]:7.1f} ms  (n={len(xs)})")  # fmt: skip
            if a.split:
                launch = statistics.median(r[1] for r in rows)
                inside = statistics.median(r[0] - r[1] for r in rows)
                line += f"   launch {launch:6.1f}  in claude {inside:6.1f}"
            print(line)
        med = {k: statistics.median(r[0] for r in v) for k, v in times.items()}
        print(f"added by rcc (median): {med['rcc'] - med['plain']:.1f} ms  (goal, issue 12: <= 30 ms)")
        if a.split:
            fresh = med["plain, fresh state"] - med["plain"]
            print(f"  a fresh claude state alone (no sandbox): {fresh:+.1f} ms; bare bwrap alone: "
                  f"{med['bwrap, direct'] - med['plain']:+.1f} ms")  # fmt: skip
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if shim_dir is not None:
            shutil.rmtree(shim_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
