"""`rcc run --worktree NAME` (and every agent command): a git worktree of the project on branch NAME, made on the
host with the host's git but nothing of the repository run (hooks, filters, fsmonitor), beside the project at
PROJECT-worktrees/NAME; several sessions side by side, each in its own worktree and sandbox, listed by
`rcc sessions` with their branch; their commits visible from the main repository afterwards."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from escape_world import World, kill_tree

pytestmark = [pytest.mark.sandbox]


def _wt(world: World, name: str) -> Path:
    return world.base / "project-worktrees" / name


def test_control_worktree_is_made_then_reused_and_commits_land_on_its_branch(world: World) -> None:
    script = 'set -e; echo $RUN > f.txt; git add f.txt; git commit -q -m "run $RUN"; pwd; git branch --show-current'
    first = world.rcc("run", "--no-network", "--worktree", "fix-1", "--env", "RUN=1", "--", "sh", "-c", script)
    assert first.returncode == 0, first.stderr
    wt = _wt(world, "fix-1")
    assert first.stdout.split() == [str(wt), "fix-1"], first.stdout
    assert f"rcc: worktree {wt} (branch fix-1)" in first.stderr
    second = world.rcc("run", "--no-network", "--worktree", "fix-1", "--env", "RUN=2", "--", "sh", "-c", script)
    assert second.returncode == 0, second.stderr
    log = world.git("log", "--format=%s", "fix-1").stdout.split("\n")
    assert log[:3] == ["run 2", "run 1", "initial"], log
    assert world.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"
    assert not (world.project / "f.txt").exists()  # the main tree is untouched
    listed = world.git("worktree", "list", "--porcelain").stdout
    assert listed.count("worktree ") == 2 and f"worktree {wt}\n" in listed, listed


def test_control_session_in_a_subdirectory_starts_in_the_same_subdirectory_of_the_worktree(world: World) -> None:
    world.write(world.project / "src/lib/x.txt", "x\n")
    world.git("add", "src")
    world.git("commit", "-q", "-m", "src")
    res = world.rcc("run", "--no-network", "--worktree", "sub", "--", "pwd", cwd=world.project / "src/lib")
    assert res.stdout.strip() == str(_wt(world, "sub") / "src/lib"), (res.stdout, res.stderr)


def test_worktree_add_on_the_host_runs_no_hook_filter_or_fsmonitor_of_the_repository(world: World) -> None:
    """The repository's post-checkout hook, a smudge filter and a process filter the config defines (chosen by
    `.gitattributes` in the tree), core.fsmonitor: `rcc run --worktree` runs none of them on the host."""
    flags = {n: world.outside / f"ran-{n}" for n in ("hook", "smudge", "process", "fsmonitor")}
    world.write(world.project / ".gitattributes", "a.txt filter=evil\nb.txt filter=proc\n")
    world.write(world.project / "a.txt", "a\n")
    world.write(world.project / "b.txt", "b\n")
    world.git("add", "-A")
    world.git("commit", "-q", "-m", "attributes")
    world.write(world.project / ".git/hooks/post-checkout", f"#!/bin/sh\ntouch {flags['hook']}\n", 0o755)
    world.git("config", "filter.evil.smudge", f"sh -c 'touch {flags['smudge']}; cat'")
    world.git("config", "filter.evil.clean", "cat")
    world.git("config", "filter.proc.process", f"sh -c 'touch {flags['process']}'")
    world.git("config", "filter.proc.required", "true")
    world.git("config", "core.fsmonitor", f"touch {flags['fsmonitor']}")
    res = world.rcc("run", "--no-network", "--worktree", "quiet", "--", "cat", "a.txt", "b.txt")
    assert res.returncode == 0 and res.stdout == "a\nb\n", (res.stdout, res.stderr)
    assert [n for n, f in flags.items() if f.exists()] == []


def test_control_plain_worktree_add_does_run_them(world: World) -> None:
    """The attack above is real: the host's own `git worktree add` runs the hook and the smudge filter (the
    required process filter that speaks no protocol would stop it: left out here, rcc's run above shows it is
    not started either)."""
    flags = {n: world.outside / f"ran-{n}" for n in ("hook", "smudge")}
    world.write(world.project / ".gitattributes", "a.txt filter=evil\n")
    world.write(world.project / "a.txt", "a\n")
    world.git("add", "-A")
    world.git("commit", "-q", "-m", "attributes")
    world.write(world.project / ".git/hooks/post-checkout", f"#!/bin/sh\ntouch {flags['hook']}\n", 0o755)
    world.git("config", "filter.evil.smudge", f"sh -c 'touch {flags['smudge']}; cat'")
    res = world.git("worktree", "add", "-q", "-b", "loud", str(world.base / "loud"), check=False)
    assert [n for n, f in flags.items() if f.exists()] == ["hook", "smudge"], res.stderr


def test_bad_worktree_names_and_foreign_paths_are_refused(world: World) -> None:
    for name in ("../escape", "-x", "a b"):
        res = world.rcc("run", "--no-network", "--worktree", name, "--", "true")
        assert res.returncode == 64 and "not a plain branch name" in res.stderr, (name, res.stderr)
    assert not (world.base / "escape").exists()
    taken = _wt(world, "taken")
    taken.mkdir(parents=True)
    world.own_tree(world.base / "project-worktrees")
    res = world.rcc("run", "--no-network", "--worktree", "taken", "--", "true")
    assert res.returncode == 66 and "is not a worktree of" in res.stderr, res.stderr


def test_two_worktree_sessions_side_by_side(world: World) -> None:
    """Two sessions at once, each in its own worktree and sandbox (the proxy on: `rcc sessions` lists them with
    their branches); each commits on its own branch while both run; neither sees the other's worktree."""
    script = (
        'set -e; echo $NAME > work.txt; git add work.txt; git commit -q -m "work of $NAME"; '
        "(ls ../$OTHER 2>&1 | grep -c work.txt > seen) || true; touch started; "
        "i=0; while [ ! -e go ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done"
    )
    procs = {}
    try:
        for name in ("alpha", "beta"):
            other = "beta" if name == "alpha" else "alpha"
            env = ["--env", f"NAME={name}", "--env", f"OTHER={other}"]
            argv = world.rcc_argv(["run", "--worktree", name, *env, "--", "sh", "-c", script])
            procs[name] = subprocess.Popen(argv, cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not all((_wt(world, n) / "started").exists() for n in procs):
            assert time.monotonic() < deadline, {n: p.poll() for n, p in procs.items()}
            assert all(p.poll() is None for p in procs.values()), [p.communicate() for p in procs.values()]
            time.sleep(0.1)
        # A session's record is written when its proxy starts serving, which may come a little after its command
        # (the proxy's imports run on a thread after a short grace): wait for both, as a user would see them.
        while True:
            listed = world.rcc("sessions", "--json")
            assert listed.returncode == 0, listed.stderr
            rows = {r["branch"]: r for r in json.loads(listed.stdout)}
            if set(rows) == {"alpha", "beta"} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert set(rows) == {"alpha", "beta"}, rows
        for name in procs:
            assert rows[name]["project"] == str(_wt(world, name))
        table = world.rcc("sessions").stdout
        assert "BRANCH" in table and "alpha" in table and "beta" in table, table
        for name in procs:
            (_wt(world, name) / "go").touch()
        for name, p in procs.items():
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, (name, out, err)
    finally:
        for p in procs.values():
            kill_tree(p)
    for name in procs:
        assert world.git("log", "-1", "--format=%s", name).stdout.strip() == f"work of {name}"
        assert (_wt(world, name) / "seen").read_text().strip() == "0"  # the other worktree is not visible
    assert world.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"
