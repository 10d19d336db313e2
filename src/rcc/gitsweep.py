"""Remove what a session left in the project's git directory that would make the host's git hang.

The host's git opens `.git/index`, `HEAD`, refs, `packed-refs` and objects with a plain open(2), following
symlinks: a fifo there (or a symlink to one that exists on the host, `/run/initctl`, or to a terminal,
`/proc/self/fd/0`) blocks the user's next `git status` forever. Seccomp stops a session from making fifos and
device nodes (rcc.seccomp: mknod), but not from making a symlink to a host fifo; rcc therefore sweeps the git
directory when a session starts and when it ends.

Invariants:
1. The walk opens every directory relative to its parent with O_NOFOLLOW|O_DIRECTORY (rcc.hostfs): it never
   leaves the git directory through a link, and never opens a file (a fifo cannot hang rcc either).
2. Removed: fifos and character/block devices, and symlinks whose target (followed on the host) is not a regular
   file or directory, dangling ones included (the target could appear later). Unix sockets stay (git's own
   fsmonitor daemon keeps one in .git, and opening a socket fails at once). Regular files, directories and links
   to files are never touched.
3. A link to a directory (`refs/tags -> /run/systemd/inhibit`, a directory of host fifos that `git log
   --decorate` would enumerate) is removed at the end of a session only if the session made or changed it: the
   start's sweep records the links to directories that exist (tools like `repo` link `.git/objects` elsewhere on
   purpose), and the end's sweep removes those not in that record.
4. Failures (a directory rcc cannot read) are skipped: the sweep only ever removes, it cannot weaken anything.
Pure stdlib: `rcc run` imports it on its hot path.
"""

from __future__ import annotations

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_DEPTH = 32


_KERNEL_TREES = ("/proc", "/sys", "/dev")
_MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


def _in_kernel_tree(path: str) -> bool:
    return any(path == t or path.startswith(t + "/") for t in _KERNEL_TREES)


def _leads_into_kernel_files(dirfd: int, name: str) -> bool:
    """Whether the link `name` leads, at any step of its chain, into /proc, /sys or /dev. Files there that stat
    calls regular can block a reader (/proc/kmsg) or stand for the reader's own descriptors (/proc/self/fd/0: the
    host's git would read its own stdin), so a stat of the target from rcc's process cannot judge them. Each step
    is judged by its path, the directories on the way resolved (a link to a directory that leads into /proc)."""
    try:
        here = os.readlink(f"/proc/self/fd/{dirfd}")
        target = os.readlink(name, dir_fd=dirfd)
    except OSError:
        return True  # cannot judge: remove (fail closed; git needs no links in its directory)
    for _ in range(_MAX_LINKS):
        path = os.path.normpath(os.path.join(here, target))
        real_dir = os.path.realpath(os.path.dirname(path))
        full = os.path.join(real_dir, os.path.basename(path))
        if _in_kernel_tree(path) or _in_kernel_tree(full):
            return True
        try:
            target = os.readlink(full)
        except OSError:  # not a link, or absent: the end of the chain
            return False
        here = real_dir
    return True  # a chain longer than the kernel follows


def _hangs(dirfd: int, name: str, st: os.stat_result) -> bool:
    mode = st.st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return True
    if not stat.S_ISLNK(mode):
        return False
    if _leads_into_kernel_files(dirfd, name):
        return True
    try:
        target = os.stat(name, dir_fd=dirfd, follow_symlinks=True)  # stat never opens: a fifo cannot block it
    except OSError:
        return True  # dangling or a loop: nothing git needs, and its target could become a fifo later
    return not (stat.S_ISREG(target.st_mode) or stat.S_ISDIR(target.st_mode))


def _sweep(dirfd: int, shown: str, depth: int, removed: list[str], links: _Links) -> None:
    try:
        entries = list(os.scandir(dirfd))  # d_type: regular files and directories cost no stat
    except OSError:
        return
    for entry in entries:
        name, path = entry.name, f"{shown}/{entry.name}"
        try:
            if entry.is_file(follow_symlinks=False):
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth < _MAX_DEPTH:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
                    try:
                        _sweep(sub, path, depth + 1, removed, links)
                    finally:
                        os.close(sub)
                continue
            if _hangs(dirfd, name, entry.stat(follow_symlinks=False)):
                os.unlink(name, dir_fd=dirfd)
                removed.append(path)
            elif entry.is_symlink() and entry.is_dir():  # a link to a directory (to a file: harmless, _hangs)
                link = (path, os.readlink(name, dir_fd=dirfd))
                if links.keep is None or link in links.keep:
                    links.seen.add(link)
                else:
                    os.unlink(name, dir_fd=dirfd)
                    removed.append(path)
        except OSError:
            continue


class _Links:
    """Links to directories: those to keep (None: all, at the start), and those seen."""

    def __init__(self, keep: frozenset[tuple[str, str]] | None) -> None:
        self.keep = keep
        self.seen: set[tuple[str, str]] = set()


def _open_below(top: int, rel: str) -> int:
    fd = top
    for part in rel.split("/"):
        try:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            nfd = -1
        if fd != top:
            os.close(fd)
        if nfd < 0:
            return -1
        fd = nfd
    return fd


def sweep_git_dirs(
    project: str, git_dirs: tuple[str, ...] = (".git",), keep_dir_links: frozenset[tuple[str, str]] | None = None
) -> tuple[list[str], frozenset[tuple[str, str]]]:
    """Sweep each project-relative git directory (`.git`, a `--separate-git-dir` inside the project). Returns
    the project-relative paths removed, and the links to directories left ((path, target) pairs): pass those
    of the start's sweep as `keep_dir_links` to the end's, which then removes every other link to a directory."""
    removed: list[str] = []
    links = _Links(keep_dir_links)
    try:
        top = os.open(project, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the anchor: the user's own choice
    except OSError:
        return removed, frozenset()
    try:
        for rel in git_dirs:
            fd = _open_below(top, rel)
            if fd < 0:
                continue  # missing, a pointer file or a link: nothing to sweep (a link is refused at start)
            try:
                _sweep(fd, rel, 0, removed, links)
            finally:
                os.close(fd)
    finally:
        os.close(top)
    return removed, frozenset(links.seen)
