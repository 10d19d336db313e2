"""Review mode on `rcc run`'s hot path: the review directory made before the session, the overlay mounted in the
process that execs the backend, and the quick end of a session that changed nothing. Stdlib `os` only (and
ctypes, in the forked child): the scanning and applying are rcc.workspace.layer's.

Invariants (with rcc.workspace.layer's):
1. The overlay is mounted only in a private mount namespace of the process that then execs the backend (root: a
   new mount namespace; any other user: a new user namespace mapping only its own uid and gid, and the
   `userxattr` option). The host's mount table never shows it; the user's tree is never written by the session.
2. Always `metacopy=off`, and redirect_dir `off` (`nofollow` with userxattr): no redirect is ever created, so
   upper/ holds every changed file's data and every directory's full content. Mounted `volatile` (the layer is
   never mounted twice); a layer the session wrote is synced after it (sync_layer).
3. A failure before exec is reported to the parent (REVIEW_UNAVAILABLE): never a session without its layer. The
   parent goes on while the child sets up (its cgroups are made meanwhile), and reads the report (failed())
   before it releases the command.
"""

from __future__ import annotations

import os

from rcc import hostfs
from rcc.errors import ExitCode, RccError
from rcc.plan import Overlay

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

REVIEWS = "reviews"
_UNSAFE_IN_OPTIONS = ",:\\\n"  # overlayfs' option syntax: these would need escaping


def unavailable(message: str) -> RccError:
    return RccError(
        f"review mode is not available: {message}",
        hint='run without --review (or workspace = "review"), or see docs/workspace.md for what it needs',
        code=ExitCode.REVIEW_UNAVAILABLE,
    )


def prepare(state_dir: str, sid: str, project: str, command: str) -> Overlay:
    """The review directory for a new session, before the sandbox starts; its Overlay for the plan."""
    import time

    base = os.path.join(state_dir, REVIEWS, sid)
    for what, p in (("the project path", project), ("rcc's state dir", base)):
        if any(c in p for c in _UNSAFE_IN_OPTIONS):
            raise unavailable(f"{what} {p!r} has a comma, colon, backslash or newline")
    fd = hostfs.open_state(state_dir, REVIEWS)
    try:
        os.fchmod(fd, 0o700)
        os.mkdir(sid, 0o700, dir_fd=fd)
        rfd = hostfs.walk_dir(fd, sid)
        try:
            os.mkdir("upper", 0o755, dir_fd=rfd)
            os.mkdir("work", 0o700, dir_fd=rfd)
            # hand-made JSON (the json module costs `rcc run` milliseconds): strings as hex, so any bytes fit
            meta = (
                f'{{"id": "{sid}", "project_hex": "{os.fsencode(project).hex()}", "started_ns": {time.time_ns()}, '
                f'"userxattr": {"true" if os.geteuid() != 0 else "false"}, "pid": {os.getpid()}, '
                f'"command_hex": "{command.encode("utf-8", "surrogateescape").hex()}"}}\n'
            )
            hostfs.replace_file(rfd, "meta.json", meta.encode(), 0o600)
        finally:
            os.close(rfd)
    finally:
        os.close(fd)
    return Overlay(project, os.path.join(base, "upper"), os.path.join(base, "work"), os.geteuid() != 0)


def remove_if_unchanged(state_dir: str, sid: str) -> bool:
    """At the end of a session: a layer the session did not write is removed at once (True). No link is
    followed: every step is relative to the review directory's descriptor."""
    fd = hostfs.open_state(state_dir, os.path.join(REVIEWS, sid), create=False)
    try:
        if _empty(fd, "upper"):
            _remove_empty_dirs(fd, "work")  # overlayfs' own work/work (volatile: work/work/incompat/volatile)
            os.rmdir("upper", dir_fd=fd)
            os.unlink("meta.json", dir_fd=fd)
        else:
            return False
    except OSError:
        return False
    finally:
        os.close(fd)
    top = hostfs.open_state(state_dir, REVIEWS, create=False)
    try:
        os.rmdir(sid, dir_fd=top)
    finally:
        os.close(top)
    return True


def _remove_empty_dirs(dirfd: int, name: str, depth: int = 0) -> None:
    """Remove a tree of directories and empty files only (OSError if it holds anything else). overlayfs leaves
    work/work mode 000 (and, mounted volatile, work/work/incompat/volatile/dirty): opened up only when not empty.
    The work dir is never visible to a sandbox; no link is followed all the same."""
    import errno
    import stat

    try:
        os.rmdir(name, dir_fd=dirfd)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR) or depth > 4:
            raise
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:  # volatile's marker: work/work/incompat/volatile/dirty
        os.unlink(name, dir_fd=dirfd)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{name}: not a directory or an empty file")
    os.chmod(name, 0o700, dir_fd=dirfd)
    sub = hostfs.walk_dir(dirfd, name)
    try:
        for child in os.listdir(sub):
            _remove_empty_dirs(sub, child, depth + 1)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=dirfd)


def _empty(dirfd: int, name: str) -> bool:
    sub = hostfs.walk_dir(dirfd, name)
    try:
        return not os.listdir(sub)
    finally:
        os.close(sub)


def mount_options(ov: Overlay) -> str:
    # redirects are never created either way: `off` as root; userxattr refuses `off` (it means "follow").
    # volatile: no sync of the upper filesystem when the session's namespace ends (2-3 ms of every start-up);
    # the layer is never mounted again, and a session that wrote anything is synced by sync_layer() instead.
    redirect = "nofollow,userxattr" if ov.userxattr else "off"
    opts = f"lowerdir={ov.lower},upperdir={ov.upper},workdir={ov.work},metacopy=off,redirect_dir={redirect}"
    return opts + ",volatile"


def sync_layer(state_dir: str, sid: str) -> None:
    """After a session that wrote its layer: the layer's filesystem synced (syncfs), as the volatile mount did
    not (fsync inside the session reached only the page cache)."""
    import ctypes

    fd = hostfs.open_state(state_dir, os.path.join(REVIEWS, sid), create=False)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    finally:
        os.close(fd)


_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_SIGPIPE, _SIGXFSZ, _SIG_DFL = 13, 25, 0


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def enter(ov: Overlay, reset_signals: bool = False, libc: Any = None) -> None:
    """In the process that will exec the backend: a private mount namespace with the overlay on the project
    (and, if asked, SIGPIPE/SIGXFSZ back to their defaults: Python ignores them, and that survives exec).
    Raises OSError naming the step that failed."""
    import ctypes

    libc = libc or _libc()

    def check(step: str, r: int) -> None:
        if r != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{step}: {os.strerror(e)}")

    uid, gid = os.getuid(), os.getgid()
    if ov.userxattr:
        check("unshare(user, mount)", libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS))
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
    else:
        check("unshare(mount)", libc.unshare(_CLONE_NEWNS))
    check("make / private", libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None))
    lower = ov.lower.encode()
    check("mount overlay", libc.mount(b"overlay", lower, b"overlay", 0, mount_options(ov).encode()))
    if reset_signals:
        for sig in (_SIGPIPE, _SIGXFSZ):
            libc.signal(sig, _SIG_DFL)


def spawn(argv: Sequence[str], env: dict[str, str], stdio: Sequence[tuple[int, int]], ov: Overlay) -> tuple[int, int]:
    """fork; in the child: enter the layer, set up stdio and default SIGPIPE/SIGXFSZ, exec argv. Returns the pid
    at once (the child's namespace and mount overlap the caller's next steps) and a descriptor: failed() on it
    says what failed before exec. The caller must call it before trusting the child (invariant 3)."""
    libc = _libc()  # loaded before the fork: in the child every page the import touches would be copied first
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            enter(ov, reset_signals=True, libc=libc)
            for fd, target in stdio:
                os.dup2(fd, target)
            os.execve(argv[0], list(argv), env)  # noqa: S606 - the backend's argv list, no shell
        except BaseException as e:  # reported to the parent, whatever it was
            try:
                os.write(w, str(e).encode("utf-8", "replace")[:2000] or b"failed")
            finally:
                os._exit(127)
        os._exit(127)
    os.close(w)
    return pid, r


def failed(errfd: int, ov: Overlay) -> RccError | None:
    """After spawn(): the child's report (read to EOF: the exec closed the pipe, or the child wrote why it
    stopped); closes the descriptor. None when the child exec'd the backend."""
    msg = b""
    try:
        while chunk := os.read(errfd, 4096):
            msg += chunk
    finally:
        os.close(errfd)
    if not msg:
        return None
    return unavailable(f"{msg.decode('utf-8', 'replace')} (the overlay on {ov.lower})")
