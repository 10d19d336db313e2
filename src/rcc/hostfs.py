"""rcc's own writes on the host, never through a link or a directory a sandbox could have planted.

A sandbox can write in the project and in what rcc binds read-write (an agent's session state); rcc itself later
creates files and directories there and in its state directory (placeholders, private device nodes, agent state,
imported settings, locks, the audit log, the trust store). A path string resolved by the kernel follows every
symlink on the way, so a session that turned `~/.claude/skills` into a link to `~/.ssh` would make rcc write there.

Invariants:
1. An *anchor* is a directory the user chose (the project, the directory that holds rcc's state dir): it is
   opened following links, as the user's own setup may (`~/.local` a stow link). No sandbox can write it.
2. Every component below an anchor is opened relative to its parent's descriptor with O_NOFOLLOW|O_DIRECTORY
   (openat), and created with mkdirat; a component that is a symlink or not a directory fails closed with
   UnsafePathError (exit 73), naming the path. Nothing is written before the walk succeeds.
3. New files are created with O_CREAT|O_EXCL|O_NOFOLLOW; a file is replaced atomically by a fresh temporary file
   beside it and renameat over the name (rename replaces a planted link itself, never its target).
4. An existing file is opened with O_NOFOLLOW|O_NONBLOCK (a planted fifo cannot hang rcc) and must be a regular
   file; reads are bounded.
Pure stdlib (os, stat): `rcc run` imports this on its hot path.
"""

from __future__ import annotations

import os
import stat

from rcc.errors import ExitCode, RccError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(RccError):
    """A component of a path rcc writes on the host is a symlink or not a directory (or a file not regular)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"refusing to write {path}: {problem}",
            hint="something (perhaps a sandboxed session) replaced part of this path with a link or another kind of "
            f"file; rcc never writes through it. Inspect it, then remove it: rm -r -- '{path}'",
            code=ExitCode.UNSAFE_PATH,
        )
        self.path = path


def _components(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p and p != "."]
    if any(p == ".." for p in parts):
        raise RccError(f"internal: '..' in host path {rel!r}", code=ExitCode.INTERNAL)
    return parts


def open_anchor(anchor: str, *, create: bool = False, mode: int = 0o700) -> int:
    """The anchor directory's descriptor (links in its own path are followed: the user's choice)."""
    try:
        if create:
            os.makedirs(anchor, mode=mode, exist_ok=True)
        return os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise UnsafePathError(anchor, "it is not a directory") from None
    except OSError as e:
        raise RccError(f"cannot open {anchor}: {e.strerror}", code=ExitCode.SETUP) from e


def open_dir(anchor: str, rel: str = "", *, create: bool = False, mode: int = 0o700) -> int:
    """A descriptor of anchor/rel, walking rel one component at a time without following links.

    With create, missing components are made with `mode` (and the anchor itself with os.makedirs). Raises
    UnsafePathError for a link or non-directory on the way, RccError(SETUP) for other failures."""
    return _descend(open_anchor(anchor, create=create, mode=mode), rel, anchor, create, mode)


def walk_dir(dirfd: int, rel: str, *, create: bool = False, mode: int = 0o700, shown: str = "") -> int:
    """Like open_dir, from an open directory descriptor (which stays open); returns a new descriptor."""
    fd = os.dup(dirfd)
    os.set_inheritable(fd, False)
    return _descend(fd, rel, shown or ".", create, mode)


def _descend(fd: int, rel: str, path: str, create: bool, mode: int) -> int:
    """Walk `rel` down from `fd` (which this takes over: closed on the way or on failure); returns the last one."""
    try:
        for name in _components(rel):
            path = os.path.join(path, name)
            nfd = _step(fd, name, path, create, mode)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _step(fd: int, name: str, path: str, create: bool, mode: int) -> int:
    """Open `name` in directory `fd` as a directory, never through a link."""
    try:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise RccError(f"cannot open {path}: it does not exist", code=ExitCode.SETUP) from None
        import contextlib

        with contextlib.suppress(FileExistsError):  # made meanwhile (another rcc, a planted link): checked below
            os.mkdir(name, mode, dir_fd=fd)
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        kind = _kind(fd, name)
        if kind:
            raise UnsafePathError(path, kind) from None
        raise RccError(f"cannot open {path}: {e.strerror}", code=ExitCode.SETUP) from e


def _kind(dirfd: int, name: str) -> str:
    """Why `name` cannot be walked through: "" when it is a directory (the failure was something else)."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError:
        return ""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    return ""


def lstat_at(dirfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def create_file(dirfd: int, name: str, data: bytes = b"", mode: int = 0o600) -> int:
    """Create a new file (never an existing one, never through a link); returns its inode.
    Raises FileExistsError when the name is taken (by anything, a dangling link included)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)
    try:
        _write_all(fd, data)
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def replace_file(dirfd: int, name: str, data: bytes, mode: int = 0o600, *, shown: str = "") -> None:
    """Write `data` as `name` atomically: a fresh temporary file beside it, renamed over the name. A link at
    the name is replaced itself (its target is untouched); a directory there is refused."""
    st = lstat_at(dirfd, name)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(shown or name, "it is a directory")
    tmp = f".{name}.rcc-{os.getpid()}-{os.urandom(4).hex()}"
    create_file(dirfd, tmp, data, mode)
    try:
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dirfd)
        finally:
            raise


def open_file(dirfd: int, name: str, flags: int, mode: int = 0o600, *, shown: str = "") -> int:
    """Open (or with O_CREAT create) a regular file without following a link; refuses anything else."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dirfd)
    except OSError:
        st = lstat_at(dirfd, name)  # ELOOP (a link), ENXIO (a fifo with no reader), EISDIR, ...
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(shown or name, "it is a symbolic link") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(shown or name, "it is not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(shown or name, "it is not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_file(dirfd: int, name: str, limit: int, *, shown: str = "") -> bytes | None:
    """The content of a regular file (None when missing); links, fifos, devices and files over `limit` bytes
    are refused with UnsafePathError."""
    try:
        fd = open_file(dirfd, name, os.O_RDONLY, shown=shown)
    except FileNotFoundError:
        return None
    try:
        if os.fstat(fd).st_size > limit:
            raise UnsafePathError(shown or name, f"it is larger than {limit} bytes")
        out = b""
        while chunk := os.read(fd, 65536):
            out += chunk
            if len(out) > limit:
                raise UnsafePathError(shown or name, f"it is larger than {limit} bytes")
        return out
    finally:
        os.close(fd)


def remove_tree(dirfd: int, name: str) -> None:
    """Remove `name` (a directory tree, a file or a link) in dirfd without following any link below it."""
    import shutil

    st = lstat_at(dirfd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dirfd)  # fd-based: never follows links (shutil.rmtree.avoids_symlink_attacks)
    else:
        os.unlink(name, dir_fd=dirfd)


def split_under(anchor: str, path: str) -> str:
    """path relative to anchor; an internal error when path is not below it (callers build paths themselves)."""
    rel = os.path.relpath(path, anchor)
    if rel == ".":
        return ""
    if rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        raise RccError(f"internal: {path} is not under {anchor}", code=ExitCode.INTERNAL)
    return rel


def open_state(state_dir: str, rel: str = "", *, create: bool = True) -> int:
    """A descriptor of state_dir/rel (rcc's state dir, rcc.paths.state_dir()): its parent (XDG_STATE_HOME or
    ~/.local/state, the user's own) is the anchor; from `rcc` down nothing is followed."""
    anchor, base = os.path.split(state_dir.rstrip("/"))
    return open_dir(anchor or "/", os.path.join(base, rel) if rel else base, create=create)
