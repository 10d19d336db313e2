"""A project that is a linked git worktree: its `.git` is a pointer file to MAIN/.git/worktrees/NAME, whose
`commondir` names MAIN/.git (objects, refs, config, hooks). rcc binds the common dir (writable, with today's `.git`
protections: hooks, config, info, worktrees, ... read-only) and the worktree's git dir (writable but for its
`commondir`, `gitdir` and `config.worktree`), nothing of the main working tree. Attacks are judged by what the
host's git does afterwards, in the main repository and in the worktree."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from escape_world import World, kill_tree

pytestmark = [pytest.mark.sandbox]  # every backend (attacks.BACKENDS)

HOOK = "#!/bin/sh\necho PWNED-BY-HOOK >&2\ntouch {flag}\n"


def _flag(world: World) -> Path:
    return world.outside / f"pwned-{uuid.uuid4().hex[:8]}"


def _worktree(world: World, name: str = "wt") -> Path:
    """`git worktree add` on the host, as the user does it: WORLD/wt on a new branch NAME."""
    wt = world.base / name
    world.git("worktree", "add", "-q", "-b", name, str(wt))
    return wt


def _run(world: World, wt: Path, script: str) -> subprocess.CompletedProcess[str]:
    return world.rcc("run", "--no-network", "--", "sh", "-c", script, cwd=wt)


def _host_git(world: World, where: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = world.as_user(["git", *args], world.host_env())
    try:
        return subprocess.run(argv, cwd=where, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the host's git {args} in {where} hangs") from None


def _host_git_runs_nothing(world: World, wt: Path, flag: Path) -> None:
    """The user's next status and commit, in the main repository and in the worktree, run nothing planted."""
    out = ""
    for where in (world.project, wt):
        change = where / f"host-change-{uuid.uuid4().hex[:6]}.txt"
        world.write(change, "by the host user\n")
        for args in (("add", change.name), ("commit", "-q", "-m", "host commit"), ("status", "--short")):
            res = _host_git(world, where, *args)
            out += res.stdout + res.stderr
            assert res.returncode == 0, (where, args, res.stderr)
    assert "PWNED" not in out, out
    assert not flag.exists(), "the host ran code planted by the sandbox"


# ------------------------------------------------------------------------------------------------ controls


def test_control_git_works_in_a_worktree_and_the_commit_lands_on_its_branch(world: World) -> None:
    wt = _worktree(world)
    res = _run(
        world,
        wt,
        "set -e; git status --short; echo new > new.txt; git add new.txt; git commit -q -m 'from sandbox'; "
        "git branch side; git branch -q -d side; git tag v1; git tag -d v1 >/dev/null; git stash list; "
        "git rev-parse --abbrev-ref HEAD; git log --format=%s | head -1",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["wt", "from sandbox"], res.stdout
    assert world.git("log", "-1", "--format=%s", "wt").stdout.strip() == "from sandbox"
    assert world.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"  # the main tree's HEAD stays
    assert _host_git(world, wt, "status", "--short").stdout == ""
    assert not list((world.project / ".git").glob("commondir")), "a placeholder was left in the common dir"
    assert not (world.project / ".git/worktrees/wt/config.worktree").exists()


def test_main_working_tree_is_not_visible_in_a_worktree_session(world: World) -> None:
    """Only the main repository's git dir is bound: its working tree (README.md, any file) stays invisible."""
    world.write(world.project / "main-only.txt", "main tree secret\n")
    wt = _worktree(world)
    res = _run(world, wt, f"ls -A {world.project}; cat {world.project}/main-only.txt; ls {world.project}/.git")
    assert res.stdout.split("\n")[0] == ".git", res.stdout
    assert "main tree secret" not in res.stdout
    assert "objects" in res.stdout and "refs" in res.stdout, res.stdout  # control: the git dir is there


# ------------------------------------------------------------------------------------------------ attacks


def test_plant_hook_in_the_common_dir_from_a_worktree_runs_nothing(world: World) -> None:
    wt = _worktree(world)
    flag = _flag(world)
    hook = HOOK.format(flag=flag)
    common = world.project / ".git"
    res = _run(
        world,
        wt,
        f"for h in pre-commit post-commit post-checkout; do printf '{hook}' > {common}/hooks/$h; "
        f"chmod +x {common}/hooks/$h; done; mv {common}/hooks {common}/hooks-old; "
        f"rm -rf {common}/hooks; mkdir -p {common}/hooks; ls {common}/hooks; true",
    )
    assert res.returncode == 0, res.stderr
    assert not (common / "hooks-old").exists()
    assert not any(p.name in ("pre-commit", "post-commit", "post-checkout") for p in (common / "hooks").iterdir())
    _host_git_runs_nothing(world, wt, flag)


def test_rewrite_common_config_from_a_worktree_runs_nothing(world: World) -> None:
    """core.hooksPath, core.fsmonitor, an alias, extensions.worktreeConfig + config.worktree in the common dir
    (read by the host's git in the main repository and in every worktree)."""
    wt = _worktree(world)
    flag = _flag(world)
    common = world.project / ".git"
    before = (common / "config").read_text()
    res = _run(
        world,
        wt,
        f"git config core.fsmonitor 'touch {flag}'; git config core.hooksPath /tmp; "
        f"git config alias.st '!touch {flag}'; echo '[core]' >> {common}/config; "
        f"git config extensions.worktreeConfig true; git config --worktree core.fsmonitor 'touch {flag}'; "
        f"printf '[core]\\n\\tfsmonitor = touch {flag}\\n' > {common}/config.worktree; "
        f"printf '[core]\\n\\tfsmonitor = touch {flag}\\n' > {common}/worktrees/wt/config.worktree; "
        f"mkdir -p {common}/info && echo '* filter=x' > {common}/info/attributes; true",
    )
    assert res.returncode == 0, res.stderr
    assert (common / "config").read_text() == before
    assert not (common / "config.worktree").exists() and not (common / "worktrees/wt/config.worktree").exists()
    _host_git_runs_nothing(world, wt, flag)
    st = _host_git(world, world.project, "st")
    assert not flag.exists() and "is not a git command" in st.stderr, st.stderr


def test_rewrite_commondir_or_gitdir_pointers_from_a_worktree_runs_nothing(world: World) -> None:
    """The worktree's `commondir` (redirects its config and hooks), its `gitdir` (where the main repository's
    `git worktree` commands think it lives) and the worktree's `.git` pointer file, each rewritten to an
    agent-made git dir full of hooks and fsmonitor config."""
    wt = _worktree(world)
    flag = _flag(world)
    common = world.project / ".git"
    gdir = common / "worktrees/wt"
    before = {n: (gdir / n).read_text() for n in ("commondir", "gitdir")}
    evil_cfg = f"[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {flag}\\n"
    res = _run(
        world,
        wt,
        f"cp -r {common} evil 2>/dev/null; printf '{evil_cfg}' > evil/config; "
        f"printf '{HOOK.format(flag=flag)}' > evil/hooks/pre-commit; chmod +x evil/hooks/pre-commit; "
        f"echo {wt}/evil > {gdir}/commondir; echo {wt}/evil/.git > {gdir}/gitdir; "
        f"mv {gdir} {common}/worktrees/old; rm -f {gdir}/commondir; "
        "echo 'gitdir: evil' > .git; rm -f .git; "
        f"echo {wt}/evil > {common}/commondir; true",
    )
    assert res.returncode == 0, res.stderr
    assert {n: (gdir / n).read_text() for n in ("commondir", "gitdir")} == before
    assert (wt / ".git").read_text().strip() == f"gitdir: {gdir}"
    assert not (common / "commondir").exists()
    _host_git_runs_nothing(world, wt, flag)
    listed = _host_git(world, world.project, "worktree", "list", "--porcelain").stdout
    assert f"worktree {wt}\n" in listed, listed


def test_main_tree_head_and_index_cannot_be_changed_from_a_worktree(world: World) -> None:
    """The main working tree's HEAD and index live in the common dir: a worktree session's git never writes
    them, so they are read-only (an agent could otherwise move the user's checked-out branch under them)."""
    wt = _worktree(world)
    common = world.project / ".git"
    head, index = (common / "HEAD").read_text(), (common / "index").read_bytes()
    res = _run(world, wt, f"echo 'ref: refs/heads/wt' > {common}/HEAD; (true > {common}/index); true")
    assert res.returncode == 0, res.stderr
    assert (common / "HEAD").read_text() == head and (common / "index").read_bytes() == index


def test_git_worktree_add_from_inside_is_refused(world: World) -> None:
    """`git worktree add` would write a new MAIN/.git/worktrees/NAME (with its own commondir/gitdir) and a
    directory outside the project: `worktrees/` is read-only, so git stops before either exists."""
    wt = _worktree(world)
    res = _run(world, wt, f"git worktree add {world.base}/inside-wt; echo rc=$?")
    assert "rc=0" not in res.stdout, (res.stdout, res.stderr)
    assert "Read-only file system" in res.stderr, res.stderr
    assert not (world.base / "inside-wt").exists()
    assert sorted(p.name for p in (world.project / ".git/worktrees").iterdir()) == ["wt"]
    listed = _host_git(world, world.project, "worktree", "list", "--porcelain").stdout
    assert listed.count("worktree ") == 2, listed


def test_links_into_kernel_files_in_common_and_worktree_git_dirs_are_removed(world: World) -> None:
    """`ORIG_HEAD -> /proc/kmsg` in the common dir and `-> /proc/self/fd/0` in the worktree's git dir (the
    host's git would block on them) are swept at the end of the session. Control: a link to a file stays."""
    wt = _worktree(world)
    common = world.project / ".git"
    gdir = common / "worktrees/wt"
    fifo = world.outside / "host-fifo"
    os.mkfifo(fifo)
    world.own(fifo)
    res = _run(
        world,
        wt,
        f"ln -s /proc/kmsg {common}/ORIG_HEAD && rm -f {gdir}/ORIG_HEAD && ln -s /proc/self/fd/0 {gdir}/ORIG_HEAD && "
        f"ln -s {fifo} {common}/refs/heads/stuck && ln -s {fifo} {gdir}/FETCH_HEAD && "
        f"ln -s HEAD {common}/my-link && echo PLANTED",
    )
    assert "PLANTED" in res.stdout, res.stderr
    for path in (common / "ORIG_HEAD", gdir / "ORIG_HEAD", common / "refs/heads/stuck", gdir / "FETCH_HEAD"):
        assert not os.path.lexists(path), path
        assert f"removed {path}" in res.stderr, res.stderr
    assert os.readlink(common / "my-link") == "HEAD"
    for where in (world.project, wt):
        assert _host_git(world, where, "status", "--short", timeout=20).returncode == 0
        assert _host_git(world, where, "for-each-ref", timeout=20).returncode == 0


# ------------------------------------------------------------------------------------------------ submodules


def _submodule(world: World) -> Path:
    """A submodule of the project, its git dir in the project's .git/modules/sub (git's own layout)."""
    src = world.base / "subsrc"
    src.mkdir()
    world.own(src)
    ident = ["-c", "user.name=T", "-c", "user.email=t@e.invalid"]
    _host_git(world, src, "init", "-q", "-b", "main")
    _host_git(world, src, *ident, "commit", "-q", "--allow-empty", "-m", "s")
    res = world.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(src), "sub", check=False)
    assert res.returncode == 0, res.stderr
    world.git("commit", "-q", "-m", "add sub")
    world.git("-C", "sub", "config", "user.name", "Test")
    world.git("-C", "sub", "config", "user.email", "test@example.invalid")
    return world.project / "sub"


def test_control_git_works_in_a_submodule_whose_git_dir_is_in_the_main_repository(world: World) -> None:
    sub = _submodule(world)
    res = _run(world, sub, "set -e; echo x > x.txt; git add x.txt; git commit -q -m 'in sub'; git log -1 --format=%s")
    assert res.returncode == 0 and res.stdout.strip() == "in sub", (res.stdout, res.stderr)
    assert _host_git(world, sub, "log", "-1", "--format=%s").stdout.strip() == "in sub"


def test_plant_hook_or_config_in_a_submodules_git_dir_runs_nothing(world: World) -> None:
    sub = _submodule(world)
    flag = _flag(world)
    modules = world.project / ".git/modules/sub"
    before = (modules / "config").read_text()
    res = _run(
        world,
        sub,
        f"printf '{HOOK.format(flag=flag)}' > {modules}/hooks/pre-commit; chmod +x {modules}/hooks/pre-commit; "
        f"git config core.fsmonitor 'touch {flag}'; echo x > {modules}/commondir; true",
    )
    assert res.returncode == 0, res.stderr
    assert (modules / "config").read_text() == before and not (modules / "commondir").exists()
    assert not (modules / "hooks/pre-commit").exists()
    world.write(sub / "h.txt", "host\n")
    for args in (("add", "h.txt"), ("commit", "-q", "-m", "host"), ("status", "--short")):
        r = _host_git(world, sub, *args)
        assert r.returncode == 0 and "PWNED" not in r.stderr, r.stderr
    assert world.git("status", "--short").returncode == 0  # the main repository recurses into the submodule
    assert not flag.exists()


def test_control_git_works_in_a_submodule_from_a_session_of_the_main_project(world: World) -> None:
    """The submodule's git dir is the project's .git/modules/sub (read-only as a whole before): bound writable
    over it, so a commit in the submodule works from a session of the main project."""
    sub = _submodule(world)
    res = world.sh("set -e; cd sub; echo y > y.txt; git add y.txt; git commit -q -m 'sub from main'; git status -s")
    assert res.returncode == 0, res.stderr
    assert _host_git(world, sub, "log", "-1", "--format=%s").stdout.strip() == "sub from main"


def test_plant_hook_or_config_in_a_submodules_git_dir_from_the_main_project_runs_nothing(world: World) -> None:
    sub = _submodule(world)
    flag = _flag(world)
    modules = world.project / ".git/modules/sub"
    before = (modules / "config").read_text()
    res = world.sh(
        f"printf '{HOOK.format(flag=flag)}' > .git/modules/sub/hooks/pre-commit; "
        "chmod +x .git/modules/sub/hooks/pre-commit; mv .git/modules/sub/hooks .git/modules/sub/h2; "
        f"cd sub && git config core.fsmonitor 'touch {flag}'; echo x > ../.git/modules/sub/commondir; "
        "mv ../.git/modules/sub ../.git/modules/sub2; true"
    )
    assert res.returncode == 0, res.stderr
    assert (modules / "config").read_text() == before and not (modules / "commondir").exists()
    assert not (modules / "hooks/pre-commit").exists() and not (modules.parent / "sub2").exists()
    world.write(sub / "h.txt", "host\n")
    for args in (("add", "h.txt"), ("commit", "-q", "-m", "host"), ("status", "--short")):
        r = _host_git(world, sub, *args)
        assert r.returncode == 0 and "PWNED" not in r.stderr, r.stderr
    assert world.git("status", "--short").returncode == 0  # recurses into the submodule
    assert not flag.exists()


def test_main_session_ending_does_not_unprotect_a_worktree_session(world: World) -> None:
    """A session in the main repository makes the placeholder .git/commondir; a worktree session starts and binds
    it read-only; the main session ends. Were the placeholders recorded per project, the main session would
    remove it, the worktree session's mount would go with it, and it could plant `commondir` (the host's git in
    the main repository would then read config and hooks from a directory the agent fills)."""
    wt = _worktree(world)
    common = world.project / ".git"
    wait_go = "while [ ! -e b-go ]; do sleep 0.05; done"
    main = subprocess.Popen(world.rcc_argv(["run", "--no-network", "--", "sh", "-c", wait_go]), cwd=world.project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    script = (
        "touch b-started; while [ ! -e main-done ]; do sleep 0.05; done; "
        f"(echo ../evil > {common}/commondir) 2>/dev/null && echo PLANTED; "
        f"(rm -f {common}/commondir && echo ../evil > {common}/commondir) 2>/dev/null && echo PLANTED; true"
    )
    b = None
    try:
        deadline = time.monotonic() + 30
        while not (common / "commondir").exists():
            assert time.monotonic() < deadline and main.poll() is None, main.communicate()
            time.sleep(0.02)
        b = subprocess.Popen(world.rcc_argv(["run", "--no-network", "--", "sh", "-c", script]), cwd=wt,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
        while not (wt / "b-started").exists():
            assert time.monotonic() < deadline and b.poll() is None, b.communicate()
            time.sleep(0.02)
        world.write(world.project / "b-go", "")
        main_out = main.communicate(timeout=60)
        assert main.returncode == 0, main_out
        assert (common / "commondir").exists(), "the worktree session still relies on it"
        world.write(wt / "main-done", "")
        out, err = b.communicate(timeout=60)
    finally:
        kill_tree(main)
        if b is not None:
            kill_tree(b)
    assert "PLANTED" not in out and b.returncode == 0, (out, err)
    assert not (common / "commondir").exists()  # the last session removed it


def test_worktree_session_cannot_move_or_delete_other_branches_or_tags(world: World) -> None:
    """A session in a worktree moves only its own branch: the main tree's branch, another loose branch, branches
    only in packed-refs (one nested, feature/x) and tags, loose and packed, can be neither moved (update-ref,
    branch -f, tag -f, a direct write of the ref file, a new loose file shadowing a packed one) nor deleted.
    Control: the session commits on its own branch and makes, moves and deletes a branch and a tag of its own;
    the host's git sees every other branch and tag unchanged."""
    for b in ("packed", "feature/x"):
        world.git("branch", b)
    world.git("tag", "v-packed")
    world.git("pack-refs", "--all")  # main, packed, feature/x and v-packed now live only in packed-refs
    world.git("branch", "loose")
    world.git("tag", "v-loose")
    wt = _worktree(world)
    branches = ("main", "packed", "feature/x", "loose")
    before = {b: world.git("rev-parse", b).stdout.strip() for b in (*branches, "v-packed", "v-loose")}
    common = world.project / ".git"
    attacks = "".join(
        f"git update-ref refs/heads/{b} HEAD; git branch -f {b} HEAD; git branch -D {b}; "
        f"(echo $(git rev-parse HEAD) > {common}/refs/heads/{b}); rm -f {common}/refs/heads/{b}; "
        for b in branches
    ) + "".join(
        f"git tag -f {t} HEAD; git tag -d {t}; git update-ref refs/tags/{t} HEAD; "
        f"(echo $(git rev-parse HEAD) > {common}/refs/tags/{t}); rm -f {common}/refs/tags/{t}; "
        for t in ("v-packed", "v-loose")
    )
    script = (
        "set +e; echo work > w.txt; git add w.txt; git commit -q -m 'own work' && echo OWN-COMMIT; "
        "git branch mine && git branch -D mine >/dev/null && echo OWN-BRANCH; "
        "git tag mytag && git tag -f mytag HEAD >/dev/null && git tag -d mytag >/dev/null && echo OWN-TAG; "
        + attacks
        + "true"
    )
    res = _run(world, wt, script)
    assert res.returncode == 0, res.stderr
    assert "OWN-COMMIT" in res.stdout and "OWN-BRANCH" in res.stdout and "OWN-TAG" in res.stdout, (
        res.stdout,
        res.stderr,
    )
    after = {b: world.git("rev-parse", b).stdout.strip() for b in before}
    assert after == before, (after, before)
    assert world.git("log", "-1", "--format=%s", "wt").stdout.strip() == "own work"
    assert world.git("status", "--short").returncode == 0
    assert world.git("branch", "--list", "mine").stdout.strip() == ""


def test_control_a_session_of_the_main_tree_still_manages_its_branches(world: World) -> None:
    """The protection is for worktree sessions: in the main repository the agent may move and delete branches
    as git allows (its own checkout)."""
    world.git("branch", "scratch")
    res = world.rcc("run", "--no-network", "--", "sh", "-c", "git branch -f scratch HEAD~0 && git branch -D scratch")
    assert res.returncode == 0, res.stderr
    assert world.git("branch", "--list", "scratch").stdout.strip() == ""
