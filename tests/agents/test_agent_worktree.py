"""`rcc claude --worktree NAME`: the real Claude Code, driven by the scripted model, works in a git worktree of the
project on branch NAME; its commit is on that branch in the main repository, the main tree untouched."""

from __future__ import annotations

import subprocess

import pytest
from agentworld import FakeApi, World, claude_args

pytestmark = [pytest.mark.agent, pytest.mark.sandbox, pytest.mark.netns]


def _host_git(world: World, *args: str) -> str:
    res = subprocess.run(["git", "-C", str(world.project), *args], capture_output=True, text=True, check=True)
    return res.stdout


def test_claude_in_a_worktree_commits_on_its_branch(claude_world: tuple[World, FakeApi]) -> None:
    world, api = claude_world
    (world.home / ".gitconfig").write_text("[user]\n\tname = Agent\n\temail = agent@example.invalid\n")
    _host_git(world, "add", "README.md")
    _host_git(world, "-c", "user.name=T", "-c", "user.email=t@e.invalid", "commit", "-q", "-m", "initial")
    step = "pwd; git branch --show-current; echo work > agent.txt; git add agent.txt; git commit -q -m 'by claude'"
    api.set_turns([{"calls": [{"name": "Bash", "input": {"command": step, "description": "s"}}]}, {"text": "done"}])
    proc = world.rcc(claude_args(api, "--worktree", "agent-1", "-p", "go", "--dangerously-skip-permissions"))
    assert proc.returncode == 0 and "done" in proc.stdout, (proc.stdout, proc.stderr)
    wt = world.project.parent / "proj-worktrees" / "agent-1"
    (result,) = api.results().values()
    assert not result["is_error"] and f"{wt}\nagent-1" in str(result["content"]), result
    assert _host_git(world, "log", "-1", "--format=%s", "agent-1").strip() == "by claude"
    assert not (world.project / "agent.txt").exists()
    assert (wt / "agent.txt").read_text() == "work\n"


def test_two_claude_worktrees_one_applied_one_discarded(claude_world: tuple[World, FakeApi]) -> None:
    """The README's side-by-side flow with the real Claude Code: two sessions in worktrees, one's work reviewed
    and applied into the main tree, the other's discarded with its worktree and branch."""
    world, api = claude_world
    (world.home / ".gitconfig").write_text("[user]\n\tname = Agent\n\temail = agent@example.invalid\n")
    _host_git(world, "add", "README.md")
    _host_git(world, "-c", "user.name=T", "-c", "user.email=t@e.invalid", "commit", "-q", "-m", "initial")
    for name, step in (
        ("feat-a", "echo from-a > a.txt; git add a.txt; git commit -q -m 'a'; echo more >> README.md"),
        ("feat-b", "echo from-b > b.txt"),
    ):
        api.set_turns([{"calls": [{"name": "Bash", "input": {"command": step, "description": "s"}}]}, {"text": "ok"}])
        proc = world.rcc(claude_args(api, "--worktree", name, "-p", "go", "--dangerously-skip-permissions"))
        assert proc.returncode == 0 and "ok" in proc.stdout, (proc.stdout, proc.stderr)
    review = world.rcc(["review", "--worktree", "feat-a", "--stat"])
    assert review.returncode == 0, review.stderr
    assert [ln for ln in review.stdout.splitlines() if ln[:2] in ("A ", "M ")] == ["M README.md", "A a.txt"]
    applied = world.rcc(["apply", "--worktree", "feat-a"])
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (world.project / "a.txt").read_text() == "from-a\n"
    assert (world.project / "README.md").read_text().endswith("more\n")
    dropped = world.rcc(["discard", "--worktree", "feat-b"])
    assert dropped.returncode == 0, dropped.stderr
    assert not (world.project.parent / "proj-worktrees" / "feat-b").exists()
    assert _host_git(world, "branch", "--list", "feat-b").strip() == ""
    assert not (world.project / "b.txt").exists()
