"""`rcc review/apply/discard --worktree NAME`: a `--worktree` session's changes (its commits, its uncommitted and
untracked files) seen, written into the main working tree, or dropped with the worktree and its branch
(rcc.workspace.trees). The main tree is untouched until `rcc apply`; what apply may write is review mode's rule
(never-writable paths, links leaving the project, special and huge files refused; conflicts kept). Each attack
has its control."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from escape_world import World

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.backends("bwrap", "podman-root", why="worktree sessions are backend-independent on the host side"),
]


def _wt(world: World, name: str) -> Path:
    return world.base / "project-worktrees" / name


def _session(world: World, name: str, script: str) -> None:
    res = world.rcc("run", "--no-network", "--worktree", name, "--", "sh", "-c", script)
    assert res.returncode == 0, res.stderr


def test_two_worktree_sessions_one_applied_one_discarded(world: World) -> None:
    """The README's flow: two sessions in worktrees alpha and beta; alpha's changes (a commit, an uncommitted
    edit, a deletion, a new file in a new directory) reviewed then applied; beta's discarded with its branch."""
    world.write(world.project / "keep.txt", "keep\n")
    world.write(world.project / "old.txt", "old\n")
    world.git("add", "-A")
    world.git("commit", "-q", "-m", "files")
    alpha = 'set -e; echo one > committed.txt; git add committed.txt; git commit -q -m "alpha 1"; '
    _session(world, "alpha", alpha + "echo edited > README.md; rm old.txt; mkdir -p src/new; echo two > src/new/f.txt")
    _session(world, "beta", "echo beta > README.md; echo beta > beta.txt")
    assert (world.project / "README.md").read_text() == "hello\n"  # nothing reached the main tree yet
    listed = world.rcc("sessions").stdout
    assert f"worktree alpha  {_wt(world, 'alpha')}" in listed and f"worktree beta  {_wt(world, 'beta')}" in listed

    review = world.rcc("review", "--worktree", "alpha")
    assert review.returncode == 0, review.stderr
    listing = [ln for ln in review.stdout.splitlines() if ln[:2] in ("A ", "M ", "D ")]
    assert listing == ["M README.md", "A committed.txt", "D old.txt", "A src/new/f.txt"], review.stdout
    assert "+edited" in review.stdout and "-hello" in review.stdout
    stat = world.rcc("review", "--worktree", "alpha", "--stat")
    assert "+edited" not in stat.stdout and "M README.md" in stat.stdout

    applied = world.rcc("apply", "--worktree", "alpha")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (world.project / "README.md").read_text() == "edited\n"
    assert (world.project / "committed.txt").read_text() == "one\n"
    assert (world.project / "src/new/f.txt").read_text() == "two\n"
    assert not (world.project / "old.txt").exists()
    assert (world.project / "keep.txt").read_text() == "keep\n"
    assert _wt(world, "alpha").is_dir() and "rcc discard --worktree alpha" in applied.stdout  # kept until dropped

    discarded = world.rcc("discard", "--worktree", "beta")
    assert discarded.returncode == 0, discarded.stderr
    assert not _wt(world, "beta").exists()
    assert world.git("branch", "--list", "beta").stdout.strip() == ""
    assert not (world.project / "beta.txt").exists()
    assert world.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"
    assert "worktree beta" not in world.rcc("sessions").stdout
    gone = world.rcc("review", "--worktree", "beta")
    assert gone.returncode == 67 and "no worktree 'beta'" in gone.stderr


def test_file_the_user_changed_meanwhile_is_a_conflict_not_overwritten(world: World) -> None:
    world.write(world.project / "b.txt", "b\n")
    world.git("add", "-A")
    world.git("commit", "-q", "-m", "b")
    _session(world, "w", "echo agent > README.md; echo agent > b.txt")
    world.write(world.project / "README.md", "the user's edit\n")  # after the worktree was made
    res = world.rcc("apply", "--worktree", "w")
    assert res.returncode == 65, res.stdout + res.stderr
    assert "CONFLICT: modified README.md" in res.stdout
    assert (world.project / "README.md").read_text() == "the user's edit\n"
    # control: the file the user left alone is applied
    assert (world.project / "b.txt").read_text() == "agent\n" and "applied modified b.txt" in res.stdout


def test_never_writable_path_in_the_worktree_is_not_applied(world: World) -> None:
    """A worktree holding files at never-writable paths (the session cannot write them, but a tool outside could
    have, or a commit made by plumbing checked out later): review flags them, apply refuses them."""
    _session(world, "w", "echo fine > fine.txt")
    wt = _wt(world, "w")
    world.write(wt / ".envrc", "touch /tmp/pwned\n")
    world.write(wt / ".vscode/settings.json", '{"terminal.integrated.shellArgs.linux": ["-c", "id"]}\n')
    res = world.rcc("apply", "--worktree", "w")
    assert res.returncode == 65, res.stdout + res.stderr
    assert "refused: added .envrc: never writable" in res.stdout
    assert not (world.project / ".envrc").exists() and not (world.project / ".vscode/settings.json").exists()
    assert (world.project / "fine.txt").read_text() == "fine\n"  # control


def test_symlink_leaving_the_project_is_not_applied_or_followed(world: World) -> None:
    (world.outside / "target.txt").write_text("outside\n")
    world.write(world.project / "d/e.txt", "e\n")
    world.git("add", "-A")
    world.git("commit", "-q", "-m", "d")
    _session(world, "w", "echo inside > in.txt")
    wt = _wt(world, "w")
    os.symlink(str(world.outside / "target.txt"), wt / "out-link")
    os.symlink("in.txt", wt / "in-link")  # control: a link inside the project is applied
    subprocess.run(["rm", "-r", str(wt / "d")], check=True)
    os.symlink(str(world.outside), wt / "d")  # a directory replaced by a link out: never written through
    res = world.rcc("apply", "--worktree", "w")
    assert res.returncode == 65, res.stdout + res.stderr
    assert "refused: added out-link: a symlink pointing outside" in res.stdout
    assert not os.path.lexists(world.project / "out-link")
    assert os.readlink(world.project / "in-link") == "in.txt"
    assert (world.project / "d").is_dir() and not (world.project / "d").is_symlink()
    assert sorted(p.name for p in world.outside.iterdir()) == ["marker.txt", "target.txt"]
    assert (world.outside / "target.txt").read_text() == "outside\n"


def test_huge_sparse_file_and_odd_names(world: World) -> None:
    """A sparse file over 256 MiB is refused (it would fill the disk); names with a newline or invalid UTF-8 are
    shown escaped (no fake line in the listing) and applied under their own names."""
    _session(world, "w", "truncate -s 300M big.bin; printf 'x\\n' > \"$(printf 'a\\nM fake.txt')\"; "
                         "printf 'y\\n' > \"$(printf 'b\\377')\"")  # fmt: skip
    review = world.rcc("review", "--worktree", "w", "--stat")
    assert review.returncode == 0, review.stderr
    assert "\nM fake.txt" not in review.stdout, review.stdout
    res = world.rcc("apply", "--worktree", "w")
    assert res.returncode == 65, res.stdout + res.stderr
    assert "refused: added big.bin: larger than" in res.stdout
    assert not (world.project / "big.bin").exists()
    names = set(os.listdir(os.fsencode(world.project)))
    assert b"a\nM fake.txt" in names and b"b\xff" in names


def test_nothing_is_applied_or_discarded_while_a_session_runs_in_the_worktree(world: World) -> None:
    proc = subprocess.Popen(
        world.rcc_argv(["run", "--worktree", "w", "--", "sh", "-c", "echo x > x.txt; touch started; "
                        "i=0; while [ ! -e go ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done"]),
        cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wt = _wt(world, "w")
        import time

        deadline = time.monotonic() + 60
        while not (wt / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        for cmd in ("apply", "discard"):
            res = world.rcc(cmd, "--worktree", "w")
            assert res.returncode == 67 and "an rcc session runs in worktree w" in res.stderr, res.stderr
        assert wt.is_dir() and not (world.project / "x.txt").exists()
        (wt / "go").touch()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    ok = world.rcc("apply", "--worktree", "w", "x.txt")  # control: once it ended
    assert ok.returncode == 0 and (world.project / "x.txt").read_text() == "x\n", ok.stdout + ok.stderr


def test_review_runs_no_filter_or_fsmonitor_the_worktree_picks(world: World) -> None:
    """`.gitattributes` in the worktree is the agent's: it picks which driver runs on which file. The drivers
    and fsmonitor the user configured do not run when rcc reviews and applies (they would on a plain
    `git status` in the worktree: the control)."""
    flags = {n: world.outside / f"ran-{n}" for n in ("clean", "process", "fsmonitor")}
    world.git("config", "filter.evil.clean", f"sh -c 'touch {flags['clean']}; cat'")
    world.git("config", "filter.proc.process", f"sh -c 'touch {flags['process']}; exit 1'")
    world.git("config", "core.fsmonitor", f"sh -c 'touch {flags['fsmonitor']}'")
    _session(world, "w", "printf 'a.txt filter=evil\\nb.txt filter=proc\\n' > .gitattributes; echo a > a.txt; "
                         "echo b > b.txt; echo c >> README.md")  # fmt: skip
    for f in flags.values():
        f.unlink(missing_ok=True)
    res = world.rcc("review", "--worktree", "w")
    assert res.returncode == 0, res.stderr
    assert "A a.txt" in res.stdout and "M README.md" in res.stdout
    assert [n for n, f in flags.items() if f.exists()] == []
    subprocess.run(["git", "-C", str(_wt(world, "w")), "add", "-A"], capture_output=True, check=False,
                   user=world.uid if world.who != "root" else None)  # fmt: skip
    assert [n for n, f in flags.items() if f.exists()] != []  # control: plain git runs them
