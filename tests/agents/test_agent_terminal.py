"""Interactive sessions through a real pty (pexpect): the real Claude Code UI, and `rcc shell` for what a terminal
user expects: typing, window resize (SIGWINCH), Ctrl-C, Ctrl-Z, exit status, no stray processes afterwards."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pexpect
import pytest
from agentworld import RCC, FakeApi, World, claude_args, sandbox_ready

pytestmark = [pytest.mark.sandbox]

KEY = "sk-ant-test-key-0123456789abcdefghij"
PROMPT = r"bash-[0-9.]+[#$] "


def spawn(world: World, args: list[str], rows: int = 40, cols: int = 120) -> pexpect.spawn:
    child = pexpect.spawn(RCC[0], [*RCC[1:], *args], cwd=str(world.project), env=world.env, dimensions=(rows, cols),
                          encoding="utf-8", timeout=30)
    return child


def no_sandbox_left(marker: str) -> bool:
    """No process (bwrap, the sandboxed command) whose command line mentions `marker` (the test's own paths)."""
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(pid) != me and marker in cmdline:
            return False
    return True


def seed_claude_state(world: World) -> None:
    """Skip the first-run dialogs (theme, API key approval, folder trust): the user's own settings for claude in
    rcc's state dir (each session starts from a copy of them)."""
    st = world.home / ".local/state/rcc/agents/claude/settings/.claude"
    st.mkdir(parents=True)
    (st / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True,
        "theme": "dark",
        "numStartups": 1,
        "customApiKeyResponses": {"approved": [KEY[-20:]], "rejected": []},
        "projects": {str(world.project): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
    }))


@pytest.mark.agent
@pytest.mark.netns
def test_claude_interactive_type_resize_ctrl_c_exit(claude_world: tuple[World, FakeApi]) -> None:
    world, api = claude_world
    seed_claude_state(world)
    world.env["ANTHROPIC_API_KEY"] = KEY
    api.set_turns([{"text": "PONG-7731"}])
    child = spawn(world, claude_args(api))
    try:
        child.expect("for shortcuts|\u276f", timeout=30)  # the prompt box is up: raw mode and colours work
        time.sleep(1.0)
        child.send("hello there")
        child.expect("there")  # echoed by Claude Code's own line editor (raw mode)
        child.send("\r")
        child.expect("PONG-7731", timeout=30)
        child.setwinsize(50, 150)  # the UI redraws for the new width
        child.expect("─{140,}", timeout=10)
        child.sendcontrol("c")
        child.expect("again to exit", timeout=10)
        child.sendcontrol("c")
        child.expect(pexpect.EOF, timeout=15)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
    asked = [r for r in api.records() if r["kind"] == "request" and r.get("tools")]
    assert asked, "the typed prompt reached the model"
    assert no_sandbox_left(str(world.project))


def _world_shell(world: World) -> list[str]:
    world.env["SHELL"] = "/bin/bash"
    return ["shell", "--no-network", "--", "--norc", "--noprofile", "-i"]


def test_shell_exit_status_passes_through(world: World) -> None:
    sandbox_ready()
    child = spawn(world, _world_shell(world))
    child.expect(PROMPT)
    child.sendline("echo inside-$RCC_SANDBOX; exit 7")
    child.expect("inside-1")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7
    assert no_sandbox_left(str(world.project))


def test_shell_window_resize_reaches_sandboxed_process(world: World) -> None:
    sandbox_ready()
    child = spawn(world, _world_shell(world), rows=30, cols=100)
    child.expect(PROMPT)
    child.sendline("python3 -c 'import signal, os, time; signal.signal(signal.SIGWINCH, lambda *a: print(\"WIN\" + "
                   "\"CH\", *os.get_terminal_size(), flush=True)); print(\"rea\" + \"dy\", flush=True); "
                   "time.sleep(30)'")
    child.expect("ready")
    time.sleep(0.3)
    child.setwinsize(33, 111)
    child.expect("WINCH 111 33", timeout=10)
    child.sendcontrol("c")
    child.expect(PROMPT)
    child.sendline("exit 0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_shell_ctrl_c_interrupts_the_sandboxed_command(world: World) -> None:
    """Ctrl-C stops the command running in the sandbox, not the shell: rcc must not start the sandbox with
    SIGINT ignored (an ignored signal stays ignored across exec)."""
    sandbox_ready()
    child = spawn(world, _world_shell(world))
    child.expect(PROMPT)
    child.sendline("sleep 30")
    time.sleep(0.5)
    child.sendcontrol("c")  # bash then drops the rest of a command line, so ask for the status separately
    child.expect(PROMPT, timeout=10)
    child.sendline("echo after=$?")
    child.expect("after=130", timeout=10)
    child.sendline("exit 0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_shell_ctrl_z_suspends_job_inside(world: World) -> None:
    sandbox_ready()
    child = spawn(world, _world_shell(world))
    child.expect(PROMPT)
    child.sendline("sleep 30")
    time.sleep(0.5)
    child.sendcontrol("z")
    child.expect("Stopped", timeout=10)
    child.sendline("kill -9 %1; wait")  # reaped before `exit` (else, under load: "There are stopped jobs")
    child.expect(PROMPT)
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


def test_terminal_injection_with_tiocsti_is_blocked(world: World) -> None:
    """A sandboxed process pushing `rm -rf ~` into the terminal's input queue runs it in the user's shell after
    rcc exits (TIOCSTI). The seccomp filter refuses the ioctl; the control shows the terminal otherwise works."""
    sandbox_ready()
    child = spawn(world, _world_shell(world))
    child.expect(PROMPT)
    child.sendline("python3 -c 'import fcntl, termios\ntry:\n fcntl.ioctl(0, termios.TIOCSTI, b\"X\")\n"
                   " print(\"INJ\" + \"ECTED\")\nexcept OSError as e:\n print(\"ref\" + \"used\", e.errno)'")
    i = child.expect(["refused", "INJECTED"])
    assert i == 0, "TIOCSTI must be refused inside the sandbox"
    child.sendline("stty size; exit 0")  # control: ordinary terminal ioctls work
    child.expect(r"\d+ \d+")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("net", [["--no-network"], []], ids=["no-network", "proxy"])
def test_killing_rcc_leaves_no_sandbox_behind(world: World, tmp_path: Path, net: list[str]) -> None:
    sandbox_ready()
    marker = str(tmp_path / "marker-dir")
    child = spawn(world, ["run", *net, "--", "python3", "-c", "import time; time.sleep(1000)", marker])
    deadline = time.time() + 10
    while no_sandbox_left(f"time.sleep(1000) {marker}") and time.time() < deadline:
        time.sleep(0.1)
    assert not no_sandbox_left(f"time.sleep(1000) {marker}"), "the sandboxed command started"
    os.kill(child.pid, 9)
    deadline = time.time() + 5
    while not no_sandbox_left(marker) and time.time() < deadline:
        time.sleep(0.1)
    child.close(force=True)
    assert no_sandbox_left(marker), "bwrap and the command die with rcc (SIGKILL)"


def test_sandboxed_commands_start_with_default_signal_dispositions(world: World) -> None:
    """Python ignores SIGPIPE (and rcc SIGINT/SIGQUIT while a session runs); an ignored signal stays ignored across
    exec, so without resetting them an agent's `yes | head -1` would spew "Broken pipe" and Ctrl-C would not stop
    its commands. The sandboxed command must see SIGINT, SIGQUIT, SIGPIPE and SIGXFSZ at their defaults."""
    import signal
    import subprocess

    sandbox_ready()
    r = subprocess.run([*RCC, "run", "--no-network", "--", "grep", "SigIgn", "/proc/self/status"],
                       cwd=world.project, env=world.env, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    ignored = int(r.stdout.split()[-1], 16)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"{sig.name} is ignored inside the sandbox"
