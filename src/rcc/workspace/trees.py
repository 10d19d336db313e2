"""A `--worktree NAME` session's changes, reviewed, applied into the main working tree, or discarded.

A session started with `--worktree NAME` writes only its own git worktree (rcc.worktree): the user's tree is not
touched, as in review mode, and the worktree is the layer. `rcc review --worktree NAME` shows what it changed
since it was made, `rcc apply --worktree NAME` writes that into the main working tree, `rcc discard --worktree
NAME` removes the worktree and its branch.

What "changed" means: the worktree's files now against the commit it was made from (the merge base of branch
NAME and the main tree's HEAD), so the agent's commits on NAME count as well as its uncommitted and untracked
files; ignored files (build output, dependencies) do not. The paths come from git (`git diff --name-only BASE`
and `git ls-files --others --exclude-standard` in the worktree, `git ls-tree -r BASE` in the main repository);
what each path is now is read from the disk, never following a link (a path whose directory is now a link is a
deletion; the link is its own change).

Invariants (on top of rcc.workspace.changes' and rcc.workspace.layer's):
1. A path is a conflict, never written, when the main tree's copy differs from the base commit's (the user
   changed or added it meanwhile, or the main tree's HEAD moved past it): git object ids are compared, so
   content, the executable bit and a link's target count.
2. git runs as in rcc.worktree (its invariant 2): an argv list, no GIT_* variable from rcc's environment, hooks,
   fsmonitor and filter drivers off, no external diff or textconv. It reads and refreshes the worktree's index,
   nothing else of the worktree.
3. Nothing is applied or discarded while an rcc session runs in that worktree.
"""

from __future__ import annotations

import contextlib
import os
import stat

from rcc import hostfs, worktree
from rcc.errors import ExitCode, RccError
from rcc.record import record
from rcc.workspace.changes import (
    DIR,
    FILE,
    MAX_APPLY,
    MISSING,
    SPECIAL,
    SYMLINK,
    WHITEOUT,
    Entry,
    Lower,
    Summary,
    classify,
)
from rcc.workspace.changes import summarize as _summarize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


@record
class Tree:
    """A worktree rcc made for --worktree NAME, and the main working tree its changes are applied to."""

    name: str
    path: str  # the worktree (the "upper": what the session wrote)
    project: str  # the main working tree
    base: str  # the commit the worktree started from

    @property
    def upper(self) -> str:
        return self.path


def _git(repo: str, *args: str, what: str = "") -> str:
    """git's output, names decoded as os.fsdecode does (invalid UTF-8 kept as surrogates)."""
    import subprocess

    safe = [a for c in worktree._SAFE_CONFIG for a in ("-c", c)]
    filters = worktree._filter_overrides(repo)  # smudge= and process= for each driver; clean= too (git add, diff)
    cleans = [a.replace(".smudge=", ".clean=") for a in filters if a.endswith(".smudge=")]
    safe += ["-c", "diff.external=", *filters, *(x for c in cleans for x in ("-c", c))]
    try:
        res = subprocess.run(
            ["git", "-C", repo, *safe, *args], capture_output=True, env=worktree._git_env(),
            stdin=subprocess.DEVNULL, timeout=300, check=False,
        )  # fmt: skip
    except FileNotFoundError as e:
        raise RccError("--worktree needs git on the host", hint="install git", code=ExitCode.DEPENDENCY) from e
    if res.returncode != 0:
        raise RccError(
            f"git {what or args[0]} in {repo} failed: {os.fsdecode(res.stderr).strip()}", code=ExitCode.PROJECT
        )
    return os.fsdecode(res.stdout)


def find(start: str, name: str) -> Tree:
    """The worktree NAME of the repository `start` is in (the main tree or any of its worktrees)."""
    from rcc.probe import linked_git_dirs

    worktree.check_name(name)
    main = worktree.main_tree(os.path.realpath(start))
    path = os.path.join(worktree.worktrees_dir(main), name)
    common = os.path.realpath(os.path.join(main, ".git"))
    real = os.path.realpath(path)
    ok = os.path.isdir(path) and not os.path.islink(path) and linked_git_dirs(real)[1] == common
    if not ok:
        raise RccError(
            f"no worktree {name!r} of {main} (looked for {path})",
            hint="`git worktree list` shows them; rcc makes one with `rcc claude --worktree NAME`",
            code=ExitCode.NO_REVIEW,
        )
    base = _git(main, "merge-base", "HEAD", f"refs/heads/{name}", what="merge-base").strip()
    if not base:
        raise RccError(f"branch {name} has no commit in common with {main}'s HEAD", code=ExitCode.NO_REVIEW)
    return Tree(name, real, main, base)


@contextlib.contextmanager
def quiet(tree: Tree) -> Iterator[None]:
    """Invariant 3: every session holds its project's in-use lock shared while it runs (rcc.sessionhost); this
    holds the worktree's exclusively, or fails (exit 67) while a session runs there. A session starting
    meanwhile waits."""
    import fcntl

    from rcc.sessionhost import _project_lock

    fd = _project_lock(tree.path, "in-use")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RccError(
                f"an rcc session runs in worktree {tree.name}",
                hint="let it end first (its changes are still being made)",
                code=ExitCode.NO_REVIEW,
            ) from None
        yield
    finally:
        os.close(fd)


def _candidates(tree: Tree) -> list[str]:
    changed = _git(tree.path, "diff", "--no-ext-diff", "--no-textconv", "--no-renames", "--name-only", "-z",
                   tree.base, "--", what="diff")  # fmt: skip
    untracked = _git(tree.path, "ls-files", "--others", "--exclude-standard", "-z", what="ls-files")
    paths = {p for p in (changed + untracked).split("\0") if p}
    return sorted(p for p in paths if p != ".git" and not p.startswith(".git/"))


def _base_objects(tree: Tree) -> dict[str, tuple[str, str]]:
    """path -> (mode, object id) of every file and link in the base commit."""
    out: dict[str, tuple[str, str]] = {}
    for rec in _git(tree.project, "ls-tree", "-r", "-z", "--full-tree", tree.base, what="ls-tree").split("\0"):
        meta, _, path = rec.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            out[path] = (parts[0], parts[2])
    return out


def _stat_below(root: str, rel: str) -> os.stat_result | None:
    """lstat of root/rel, None when it is missing or a directory on the way is not one (a link)."""
    try:
        fd = hostfs.open_dir(root, os.path.dirname(rel))
    except RccError:
        return None
    try:
        return hostfs.lstat_at(fd, os.path.basename(rel))
    except (NotADirectoryError, OSError):
        return None
    finally:
        os.close(fd)


def _object_id(root: str, rel: str, st: os.stat_result, algo: str) -> tuple[str, str] | None:
    """(git mode, object id) of a file or link as `git hash-object` would give it, read without following links."""
    import hashlib

    if stat.S_ISLNK(st.st_mode):
        fd = hostfs.open_dir(root, os.path.dirname(rel))
        try:
            data = os.fsencode(os.readlink(os.path.basename(rel), dir_fd=fd))
        finally:
            os.close(fd)
        mode = "120000"
    elif stat.S_ISREG(st.st_mode):
        fd = hostfs.open_dir(root, os.path.dirname(rel))
        try:
            f = os.open(os.path.basename(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        h = hashlib.new(algo)
        h.update(b"blob %d\0" % st.st_size)
        try:
            while chunk := os.read(f, 1 << 20):
                h.update(chunk)
        finally:
            os.close(f)
        return ("100755" if st.st_mode & 0o100 else "100644"), h.hexdigest()
    else:
        return None
    h = hashlib.new(algo)
    h.update(b"blob %d\0" % len(data) + data)
    return mode, h.hexdigest()


def _entry(rel: str, st: os.stat_result | None, root: str) -> Entry:
    if st is None:
        return Entry(rel, WHITEOUT)
    m = st.st_mode
    if stat.S_ISREG(m):
        return Entry(rel, FILE, stat.S_IMODE(m), st.st_size)
    if stat.S_ISLNK(m):
        fd = hostfs.open_dir(root, os.path.dirname(rel))
        try:
            return Entry(rel, SYMLINK, 0, 0, os.readlink(os.path.basename(rel), dir_fd=fd))
        finally:
            os.close(fd)
    if stat.S_ISDIR(m):
        return Entry(rel, DIR, stat.S_IMODE(m))
    return Entry(rel, SPECIAL, stat.S_IMODE(m))


def changes(tree: Tree, protected: tuple[str, ...]) -> Summary:
    """What the worktree changed since its base, classified against the main tree as it is now."""
    algo = "sha256" if _git(tree.project, "rev-parse", "--show-object-format").strip() == "sha256" else "sha1"
    base = _base_objects(tree)
    out = []
    for rel in _candidates(tree):
        st = _stat_below(tree.path, rel)
        entry = _entry(rel, st, tree.path)
        if entry.kind == DIR:  # a file the base had is a directory now: its files are their own candidates
            entry = Entry(rel, DIR, entry.mode, 0, "", True)
        small = st is not None and st.st_size <= MAX_APPLY
        mine = _object_id(tree.path, rel, st, algo) if st is not None and small else None
        if mine is not None and mine == base.get(rel):
            continue  # the same as the base (changed back, or only the index differed)
        lst = _stat_below(tree.project, rel)
        kind = MISSING if lst is None else _kind(lst)
        now = _object_id(tree.project, rel, lst, algo) if lst is not None and lst.st_size <= MAX_APPLY else None
        was = base.get(rel)
        changed = (now != was) if kind != DIR else was is not None
        target = ""
        if kind == SYMLINK:
            with contextlib.suppress(OSError, RccError):
                fd = hostfs.open_dir(tree.project, os.path.dirname(rel))
                try:
                    target = os.readlink(os.path.basename(rel), dir_fd=fd)
                finally:
                    os.close(fd)
        same = mine is not None and now is not None and mine[1] == now[1]
        mode = stat.S_IMODE(lst.st_mode) if lst is not None else 0
        lower = Lower(kind, mode, lst.st_size if lst is not None else 0, target, same, changed)
        out.append(classify(entry, lower, protected, tree.project))
    return _summarize(out)


def _kind(st: os.stat_result) -> str:
    m = st.st_mode
    return FILE if stat.S_ISREG(m) else DIR if stat.S_ISDIR(m) else SYMLINK if stat.S_ISLNK(m) else SPECIAL


def discard(tree: Tree) -> None:
    """Remove the worktree (its files, whatever state they are in) and its branch."""
    _git(tree.project, "worktree", "remove", "--force", "--force", tree.path, what="worktree remove")
    _git(tree.project, "branch", "-D", tree.name, what="branch -D")


def listed(start: str) -> list[tuple[str, str]]:
    """(name, path) of the worktrees rcc made for the repository `start` is in, read from the disk (no git)."""
    try:
        main = worktree.main_tree(os.path.realpath(start))
    except (RccError, OSError):  # not in a repository (or cannot read it): nothing to list
        return []
    top = worktree.worktrees_dir(main)
    out: list[tuple[str, str]] = []
    for dirpath, dirs, _files in os.walk(top):
        if os.path.isfile(os.path.join(dirpath, ".git")):
            out.append((os.path.relpath(dirpath, top), dirpath))
            dirs[:] = []
    return sorted(out)
