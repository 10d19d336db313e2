"""codex and gemini (real CLIs from npm) inside the sandbox.

gemini can be pointed at a local endpoint (GOOGLE_GEMINI_BASE_URL), so it answers from the fake API on a test
host. codex 0.171 ignores OPENAI_BASE_URL (it only takes a base URL from its own config), so for codex the test
is that it starts inside the sandbox, from its read-only install tree, and prints its version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agentworld import FakeApi, World, agent_bin, sandbox_ready, start_fake_api

from testhosts import TestHost

pytestmark = [pytest.mark.agent, pytest.mark.sandbox]


def _rcc(world: World, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rcc", *args], cwd=world.project, env={**world.env, **(env or {})},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize(("name", "expect"), [("codex", "codex-cli 0.171.0"), ("gemini", "0.61.0"),
                                              ("claude", "2.1.332 (Claude Code)")])
def test_agent_starts_in_sandbox_and_prints_version(world: World, name: str, expect: str) -> None:
    sandbox_ready()
    exe = agent_bin(name)
    world.env["PATH"] = f"{exe.parent}:/usr/local/bin:/usr/bin:/bin"
    r = _rcc(world, [name, "--no-network", "--version"])
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout


def test_agent_install_tree_is_read_only(world: World) -> None:
    """A hostile agent rewriting its own executable would run modified code on the host's next plain run."""
    sandbox_ready()
    exe = agent_bin("gemini")
    world.env["PATH"] = f"{exe.parent}:/usr/local/bin:/usr/bin:/bin"
    real = exe.resolve()
    r = _rcc(world, ["shell", "--agent", "gemini", "--no-network", "--", "-c",
                     f'echo x >> "{real}"; echo rc=$?; which gemini'])
    assert "Read-only file system" in r.stderr + r.stdout
    assert "rc=0" not in r.stdout
    assert str(exe) in r.stdout, "control: the agent is on PATH in `rcc shell --agent`"


@pytest.mark.netns
def test_gemini_answers_from_endpoint_named_in_its_env(world: World, testhost: TestHost) -> None:
    sandbox_ready()
    exe = agent_bin("gemini")
    api: FakeApi = start_fake_api(testhost, world.project.parent, [{"text": "GEMINI-SAYS-HI"}])
    state = world.home / ".local/state/rcc/agents/gemini/settings/.gemini"  # the user's own settings
    state.mkdir(parents=True)
    state.joinpath("settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
    }))
    world.env.update({"PATH": f"{exe.parent}:/usr/local/bin:/usr/bin:/bin", "GEMINI_API_KEY": "g-test-key",
                      "GOOGLE_GEMINI_BASE_URL": "http://api.test:8080"})
    r = _rcc(world, ["gemini", "--resolve", f"api.test={testhost.address}", "--skip-trust", "-m", "gemini-2.5-flash",
                     "-p", "say hi"])
    assert r.returncode == 0, r.stderr
    assert "GEMINI-SAYS-HI" in r.stdout
    reqs = [x for x in api.records() if x.get("api") == "gemini"]
    assert reqs and all(x["auth"] for x in reqs), "the key named by the profile reached gemini"


def _system_path_without_agents(bindir: Path) -> str:
    """A PATH with the system's programs (bwrap, git, ...) but no agent: the machine may have claude in /usr/bin,
    which PATH would find before the layout under test."""
    bindir.mkdir()
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for name in os.listdir(d) if os.path.isdir(d) else ():
            if name not in ("claude", "codex", "gemini", "aider") and not os.path.lexists(bindir / name):
                (bindir / name).symlink_to(os.path.join(d, name))
    return str(bindir)


def test_claude_from_native_installer_layout_runs_in_sandbox(world: World) -> None:
    """~/.local/bin/claude -> ~/.local/share/claude/versions/X (the native installer), not on PATH: rcc finds it,
    mounts the versions directory read-only, and Claude Code runs."""
    import os
    import shutil

    sandbox_ready()
    real = agent_bin("claude").resolve()
    versions = world.home / ".local/share/claude/versions"
    versions.mkdir(parents=True)
    target = versions / "2.1.332"
    try:
        os.link(real, target)  # same file system: no 400 MB copy
    except OSError:
        shutil.copy2(real, target)
    (world.home / ".local/bin").mkdir(parents=True)
    (world.home / ".local/bin/claude").symlink_to(target)
    world.env["PATH"] = _system_path_without_agents(world.home.parent / "sysbin")  # not on PATH, not on the host's
    r = _rcc(world, ["claude", "--no-network", "--version"])
    assert r.returncode == 0, r.stderr
    assert "2.1.332 (Claude Code)" in r.stdout
    plan = json.loads(_rcc(world, ["claude", "--dry-run", "--version"]).stdout)
    binds = {(m["src"], m["writable"]) for m in plan["mounts"] if m["op"] == "bind"}
    assert (os.path.realpath(versions), False) in binds
