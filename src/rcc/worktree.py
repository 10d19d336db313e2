"""`--worktree NAME`: a git worktree of the project on branch NAME, made on the host before the session starts.

Where: `<main>/../<main's name>-worktrees/NAME`, beside the main working tree (never inside it: a session in the
main repository would see the worktree's `.git` pointer file as project content, and could redirect it). An
existing worktree of this repository at that place is reused; a path there that is anything else is refused.

Invariants:
1. The name is a plain branch name: components of letters, digits, `.`, `_`, `-`, separated by `/`; no `..`,
   no leading `-` or `.`, no `.lock` ending, at most 100 characters. It becomes both a branch and a path.
2. The host's git runs as an argv list with the repository named by `-C`, no GIT_* variable from rcc's
   environment (GIT_DIR or GIT_WORK_TREE would point it elsewhere) and everything that could run a program from
   the repository or its config turned off for this one command: hooks (`post-checkout` runs on `worktree
   add`: core.hooksPath=/dev/null), core.fsmonitor, submodule recursion, auto-gc, and every filter driver the
   config defines (`.gitattributes` in the checked-out tree chooses which driver runs on which file, and the
   tree may be the agent's own branch): the files are checked out as stored. The agent cannot define drivers
   or hooks (the config and hooks are never writable inside rcc), but a driver the user set up (git-lfs) would
   otherwise run on paths the agent picked.
"""

from __future__ import annotations

import os
import subprocess

from rcc.errors import ExitCode, RccError, UsageError

MAX_NAME = 100
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# Config that would make `git worktree add` run a program: hooks, the fsmonitor daemon or hook, submodule
# recursion (clones and checkouts in each submodule), gc (its own hooks and pruning).
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
)


def check_name(name: str) -> str:
    """The branch (and directory) name, or UsageError."""
    parts = name.split("/")
    ok = (
        0 < len(name) <= MAX_NAME
        and all(p and set(p) <= _NAME_CHARS and not p.startswith((".", "-")) for p in parts)
        and not any(p.endswith(".lock") for p in parts)
        and ".." not in name
    )
    if not ok:
        raise UsageError(
            f"--worktree {name!r} is not a plain branch name",
            hint="use letters, digits, '.', '_', '-' (and '/' between parts), e.g. --worktree fix-login",
        )
    return name


def worktrees_dir(main: str) -> str:
    """Where rcc puts the worktrees of the repository whose main working tree is `main`."""
    parent, base = os.path.split(main.rstrip("/"))
    return os.path.join(parent, f"{base}-worktrees")


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_PAGER"] = "cat"
    return env


def _git(main: str, *args: str, check: bool = True, what: str = "") -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(
            ["git", "-C", main, *args],
            capture_output=True,
            text=True,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
    except FileNotFoundError as e:
        raise RccError("--worktree needs git on the host", hint="install git", code=ExitCode.DEPENDENCY) from e
    if check and res.returncode != 0:
        raise RccError(
            f"git {what or args[0]} in {main} failed: {res.stderr.strip() or res.stdout.strip()}",
            hint="--worktree needs a git repository with at least one commit",
            code=ExitCode.PROJECT,
        )
    return res


def _filter_overrides(main: str) -> list[str]:
    """`-c filter.X.smudge= -c filter.X.process= -c filter.X.required=false` for each driver X the config
    defines (`git config` reads config only: it runs nothing). An empty command is no filter to git."""
    res = _git(main, "config", "--null", "--name-only", "--get-regexp", r"^filter\.", check=False)
    drivers = set()
    for key in res.stdout.split("\0"):
        section, _, rest = key.partition(".")
        driver, _, _var = rest.rpartition(".")
        if section == "filter" and driver:
            drivers.add(driver)
    out: list[str] = []
    for d in sorted(drivers):
        out += ["-c", f"filter.{d}.smudge=", "-c", f"filter.{d}.process=", "-c", f"filter.{d}.required=false"]
    return out


def top_level(path: str) -> str:
    """The nearest directory at or above `path` that has a `.git` (directory or pointer file); "" if none.
    Looked up on the disk, without running git."""
    here = path
    while True:
        if os.path.lexists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return ""
        here = parent


def main_tree(project: str) -> str:
    """The main working tree of the repository `project` (or a directory in it) belongs to: its top level, or
    for a linked worktree or a submodule the tree its common dir belongs to."""
    from rcc.probe import git_anchor, linked_git_dirs

    top = top_level(project) or project
    if os.path.isdir(os.path.join(top, ".git")) and not os.path.islink(os.path.join(top, ".git")):
        return top
    _, common = linked_git_dirs(top)
    anchor = git_anchor(common)
    if not anchor or anchor == common:
        raise RccError(
            f"--worktree: {project} is not the working tree of a git repository",
            hint="run it in a git repository (`git init` and one commit first)",
            code=ExitCode.PROJECT,
        )
    return anchor


def _ensure_locked(main: str, name: str) -> str:
    """The worktree NAME of `main`'s repository: reused if it is one already, else made on a new branch NAME
    (or on the existing branch NAME) from the main tree's HEAD. Returns its real path."""
    from rcc.probe import linked_git_dirs

    path = os.path.join(worktrees_dir(main), name)
    common = os.path.realpath(os.path.join(main, ".git"))
    if os.path.lexists(path):
        real = os.path.realpath(path)
        git_dir, found = linked_git_dirs(real) if os.path.isdir(real) and not os.path.islink(path) else ("", "")
        if not git_dir or found != common:
            raise RccError(
                f"{path} exists and is not a worktree of {main}",
                hint="move it away, or choose another --worktree name",
                code=ExitCode.PROJECT,
            )
        return real
    branch_exists = _git(main, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0
    safe = [a for c in _SAFE_CONFIG for a in ("-c", c)] + _filter_overrides(main)
    where = [path, name] if branch_exists else ["-b", name, path]
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    _git(main, *safe, "worktree", "add", "--quiet", *where, what="worktree add")
    return os.path.realpath(path)


def ensure(project: str, name: str) -> tuple[str, str]:
    """(main tree, worktree path): ensure_locked() under a per-repository lock in rcc's state dir, since two
    `git worktree add` at once in one repository fail in git itself (sessions started side by side)."""
    import fcntl

    from rcc.sessionhost import _project_lock

    check_name(name)
    main = main_tree(os.path.realpath(project))
    lock = _project_lock(main, "worktree")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return main, _ensure_locked(main, name)
    finally:
        os.close(lock)
