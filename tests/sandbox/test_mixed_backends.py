"""Sessions of different backends in one project share its placeholders (the empty read-only mount points for
protected files that do not exist yet, e.g. .mcp.json). Whichever session ends first must leave them to the last
one: removing a placeholder another session has bound detaches that session's mount (the kernel lazily unmounts a
deleted mount point in every namespace), and its sandbox can then create the protected file, an MCP server the
host's agent runs next. The session host (rcc.sessionhost) keeps one per-project ledger and lock for every backend.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from escape_world import World, base_image

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.backends("podman", why="pairs a container session with a bwrap session in one project"),
]

WAIT_FOR_B = "while [ ! -e b-started ]; do sleep 0.05; done; touch a-done"
ATTACK = (
    "touch b-started; while [ ! -e a-done ]; do sleep 0.05; done; sleep 1; "
    'echo \'{"mcpServers": {"x": {"command": "evil"}}}\' > .mcp.json 2>/dev/null && echo PLANTED; '
    "echo evil > .envrc 2>/dev/null && echo PLANTED; echo fine > b-wrote; true"
)


def _run_argv(world: World, engine: str, script: str) -> list[str]:
    backend = ["--backend", engine, *(["--image", base_image()] if engine != "bwrap" else [])]
    return world.as_user(
        [world.python, "-m", "rcc", "run", "--no-network", *backend, "--", "sh", "-c", script], world.host_env()
    )


@pytest.mark.parametrize("first", ["container", "bwrap"])
def test_ending_session_of_one_backend_does_not_unprotect_another_backends_session(world: World, first: str) -> None:
    """A (one backend) creates the placeholders; B (the other backend) starts and binds them; A ends. If A
    removed them, B's sandbox could write .mcp.json and .envrc. Control: B writes an ordinary file, both succeed,
    and the last session removes every placeholder."""
    engines = [world.engine, "bwrap"] if first == "container" else ["bwrap", world.engine]
    a = subprocess.Popen(
        _run_argv(world, engines[0], WAIT_FOR_B),
        cwd=world.project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (world.project / ".mcp.json").exists() and time.monotonic() < deadline:
            assert a.poll() is None, a.communicate()
            time.sleep(0.02)
        b = subprocess.run(
            _run_argv(world, engines[1], ATTACK),
            cwd=world.project,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        _, a_err = a.communicate(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert "PLANTED" not in b.stdout, (b.stdout, b.stderr)
    assert a.returncode == 0 and b.returncode == 0, (a_err, b.stderr)
    assert (world.project / "b-wrote").read_text() == "fine\n"  # control: B's ordinary writes land
    left = sorted(p.name for p in world.project.iterdir())
    assert left == [".git", "README.md", "a-done", "b-started", "b-wrote"], left  # the last one removed them all
