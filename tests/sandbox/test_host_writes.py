"""rcc's own writes on the host never follow a link planted in its state dir (rcc.hostfs), with real `rcc run`
as root and as rccuser: the session locks, root's private device directory, the audit log. Each attack has its
control: the same run without the planted link works. (Every component and the other places: tests/core/
test_hostfs.py; agent state: tests/agents/test_agent_state.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from escape_world import World

ONLY_BWRAP = "bwrap's devices dir and session locks; the container cases: tests/container/test_host_writes_container.py"
pytestmark = [pytest.mark.sandbox, pytest.mark.backends("bwrap", why=ONLY_BWRAP)]

UNSAFE_PATH = 73


def plant(world: World, rel: str, target: Path) -> Path:
    """A symlink at ~/.local/state/<rel> (rcc's state dir is ~/.local/state/rcc) pointing at `target`."""
    link = world.home / ".local/state" / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    world.own(link)
    return link


def outside_untouched(world: World) -> None:
    assert sorted(p.name for p in world.outside.iterdir()) == ["marker.txt"]
    assert (world.outside / "marker.txt").read_text() == "OUTSIDE-marker\n"


@pytest.mark.parametrize("rel", ["rcc", "rcc/sessions", "rcc/devices"])
def test_state_dir_link_planted_makes_run_refuse(world: World, rel: str) -> None:
    if rel == "rcc/devices" and world.who != "root":
        pytest.skip("only root's sandbox gets private device nodes (rcc/devices)")
    plant(world, rel, world.outside)
    r = world.sh("echo ran")
    assert r.returncode == UNSAFE_PATH, (r.returncode, r.stdout, r.stderr)
    assert "symbolic link" in r.stderr and "ran" not in r.stdout
    outside_untouched(world)


def test_session_lock_file_link_planted_makes_run_refuse(world: World) -> None:
    assert world.sh("echo ran").stdout == "ran\n"  # control: the locks are made normally
    sessions = world.home / ".local/state/rcc/sessions"
    for lock in sessions.iterdir():
        lock.unlink()
        lock.symlink_to(world.outside / "marker.txt")
    r = world.sh("echo ran")
    assert r.returncode == UNSAFE_PATH, (r.returncode, r.stderr)
    outside_untouched(world)


def test_audit_log_link_planted_makes_run_refuse(world: World) -> None:
    plant(world, "rcc/audit.jsonl", world.outside / "marker.txt")
    r = world.rcc("run", "--allow", "example.invalid", "--", "sh", "-c", "echo ran")
    assert r.returncode == UNSAFE_PATH, (r.returncode, r.stdout, r.stderr)
    outside_untouched(world)


def test_control_state_files_made_without_links(world: World) -> None:
    r = world.rcc("run", "--allow", "example.invalid", "--", "sh", "-c", "echo ran")
    assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
    state = world.home / ".local/state/rcc"
    for p in (state / "sessions", state / "audit.jsonl"):
        assert p.exists() and not p.is_symlink()
    assert all(not p.is_symlink() for p in state.rglob("*"))
    assert os.stat(state).st_uid == world.uid
