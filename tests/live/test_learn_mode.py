"""Learn mode for real: `rcc run --learn` (bubblewrap) lets hosts no rule covers through and records them;
`rcc policy suggest --write` turns them into an allow list; a second run of the same task without --learn passes
with no denial. The guards stay on: a learned name goes to public addresses only (unless the user mapped it with
--resolve), loopback is refused, deny rules win."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rcctest import require
from testhosts import TestHost

pytestmark = [pytest.mark.sandbox, pytest.mark.netns]

RCC = [sys.executable, "-m", "rcc"]
NAMES = ["a.pkgs.test", "b.pkgs.test", "c.pkgs.test", "mirror.test"]
TASK = " && ".join(f"curl -sSf --max-time 10 http://{n}/hello.txt" for n in NAMES)


def rcc(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RCC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def audit(home: Path) -> list[dict[str, object]]:
    f = home / ".local" / "state" / "rcc" / "audit.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()]


def test_learn_then_suggest_then_the_same_task_passes_with_no_denial(tmp_path: Path, testhost: TestHost) -> None:
    require(shutil.which("bwrap") is not None and shutil.which("curl") is not None, "needs bwrap and curl")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello\n")
    testhost.serve_http(www, port=80)
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    resolve = [a for n in NAMES for a in ("--resolve", f"{n}={testhost.address}")]
    # control: without learn mode the task is refused
    r = rcc(env, project, "run", *resolve, "--", "sh", "-c", TASK)
    assert r.returncode != 0
    r = rcc(env, project, "run", "--learn", *resolve, "--", "sh", "-c", TASK)
    assert r.returncode == 0, r.stderr
    assert "rcc: learn mode: hosts no rule covers are let through" in r.stderr
    assert "learn mode ended: 4 host(s)" in r.stderr
    r = rcc(env, project, "policy", "suggest", "--write")
    assert r.returncode == 0, r.stderr
    assert '"*.pkgs.test",' in r.stdout and '"mirror.test",' in r.stdout
    before = len(audit(home))
    r = rcc(env, project, "run", *resolve, "--", "sh", "-c", TASK)
    assert r.returncode == 0, r.stderr
    second = audit(home)[before:]
    assert len(second) == 4 and all(x["decision"] == "allow" for x in second)
    assert {x["rule"] for x in second} == {"*.pkgs.test", "mirror.test"}


def test_learn_mode_keeps_the_guards(tmp_path: Path, testhost: TestHost) -> None:
    """Attack: use learn mode to reach the local network or the host: a learned name (here an address literal)
    pointing at a private address is refused, loopback is refused, a deny rule wins. Control: the same test host
    by a name the user mapped with --resolve is let through."""
    require(shutil.which("bwrap") is not None and shutil.which("curl") is not None, "needs bwrap and curl")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello\n")
    testhost.serve_http(www, port=80)
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    script = (
        f"curl -s -o /dev/null -w '%{{http_code}} ' http://{testhost.address}/hello.txt; "
        "curl -s -o /dev/null -w '%{http_code} ' http://lo.test/; "
        "curl -s -o /dev/null -w '%{http_code} ' http://denied.test/hello.txt; "
        "curl -s -o /dev/null -w '%{http_code}' http://mapped.test/hello.txt"
    )
    r = rcc(env, project, "run", "--learn", "--deny", "denied.test", "--resolve", f"mapped.test={testhost.address}",
            "--resolve", f"denied.test={testhost.address}", "--resolve", "lo.test=127.0.0.1",
            "--", "sh", "-c", script)  # fmt: skip
    assert r.stdout == "403 403 403 200", r.stderr
    reasons = {x["host"]: x["reason"] for x in audit(home)}
    assert "public addresses only" in str(reasons[testhost.address])
    assert "denied by rule" in str(reasons["denied.test"])
    assert "loopback" in str(reasons["lo.test"])
