"""Time from starting `rcc claude -p` to Claude Code's first Messages API request, next to plain `claude -p`.

    sudo python benchmarks/agent_startup.py [-n 10] [--claude PATH]

Both talk to the same scripted fake API (tests/agents/fake_anthropic.py) on a test host in a network namespace
this script creates (root needed): plain claude directly at http://<test host>:8080, rcc through its proxy at
http://api.test:8080 with --resolve. The runs alternate (plain, rcc, plain, ...) after one warm-up of each, with
the same HOME, settings and env (CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 for both, so neither tries the
internet). The clock is the same for both sides: t0 just before spawning, t1 the server's receive time of the
first POST /v1/messages that carries tools (the agent loop's request). Prints median / p90 / min in ms and the
difference of medians (goal: <= 150 ms).
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


def first_request_time(log: Path, after: float) -> float | None:
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "request" and r.get("tools") and r["t"] >= after:
            return float(r["t"])
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--claude", default="/var/cache/rcc-test/npm/node_modules/.bin/claude")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (creates a network namespace for the fake API)", file=sys.stderr)
        return 2
    from agentworld import start_fake_api

    from testhosts import test_host

    claude = Path(a.claude)
    tmp = Path(tempfile.mkdtemp(prefix="rcc-bench-"))
    try:
        home = tmp / "home"
        project = tmp / "proj"
        project.mkdir(parents=True)
        home.mkdir()
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        base_env = {
            "HOME": str(home),
            "PATH": f"{claude.parent}:/usr/local/bin:/usr/bin:/bin",
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
            plain_cmd = [str(claude), "-p", "hi"]
            plain_env["ANTHROPIC_BASE_URL"] = f"http://{host.address}:8080"
            rcc_env = {**base_env, "ANTHROPIC_BASE_URL": "http://api.test:8080"}
            rcc_cmd = [sys.executable, "-m", "rcc", "claude", "--resolve", f"api.test={host.address}", "-p", "hi"]
            times: dict[str, list[float]] = {"plain": [], "rcc": []}
            for i in range(a.n + 1):
                for name, cmd, env in (("plain", plain_cmd, plain_env), ("rcc", rcc_cmd, rcc_env)):
                    t0 = time.time()
                    r = subprocess.run(cmd, env=env, cwd=project, capture_output=True, text=True,
                                       stdin=subprocess.DEVNULL, timeout=60, check=False)
                    t1 = first_request_time(api.log, t0)
                    if r.returncode != 0 or t1 is None:
                        print(f"{name} failed: rc={r.returncode}\n{r.stderr[-2000:]}", file=sys.stderr)
                        return 1
                    if i > 0:  # run 0 warms caches
                        times[name].append((t1 - t0) * 1000)
        for name, xs in times.items():
            xs.sort()
            p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
            print(f"{name:6s} first API request after: median {statistics.median(xs):7.1f} ms  p90 {p90:7.1f} ms  "
                  f"min {xs[0]:7.1f} ms  (n={len(xs)})")
        added = statistics.median(times["rcc"]) - statistics.median(times["plain"])
        print(f"added by rcc (median): {added:.1f} ms  (goal, issue 12: <= 30 ms)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
