"""Review mode's effects: the review directory, the overlay mount, scanning the layer, applying and discarding.

A review lives in rcc's state dir (hidden from every sandbox), reviews/ID/ (0700):
  meta.json      the session's facts: project, start time (ns), whether the overlay used user xattrs, rcc's pid
  upper/, work/  overlayfs's upper and work directories: what the session wrote, deletions as whiteouts
  manifest.json  written when the session ends: the project's fingerprint of every path the session touched

Invariants:
1. The overlay is mounted only in a private mount namespace of the process that then execs the backend (root:
   a new mount namespace; any other user: a new user namespace mapping only its own uid and gid, and the
   `userxattr` option). The host's mount table never shows it; the user's tree is never written by the session.
2. Always `metacopy=off`, and redirect_dir `off` (`nofollow` with userxattr): no redirect is ever created.
   Every changed file's data and every directory's full content is in upper/ itself (no redirect to another
   lower directory, no metadata-only copy-up), so scanning upper/ is the whole story.
3. `rcc apply` writes the project only through descriptors opened without following links (rcc.hostfs): new
   files with O_EXCL beside the target, then renamed over it; set-uid/set-gid bits are dropped. What it may
   write is rcc.workspace.changes' decision.
4. A file the user changed after the session started (ctime later than the start, or its fingerprint differs
   from the one recorded at the end of the session) is a conflict, never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat

from rcc import hostfs
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
    Change,
    Entry,
    Lower,
    Summary,
    classify,
    summarize,
)
from rcc.workspace.mount import REVIEWS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_META = 64 * 1024
MAX_MANIFEST = 64 * 1024 * 1024
_COMPARE_LIMIT = 64 * 1024 * 1024  # files up to this size are compared byte for byte (equal size only)


def valid_id(sid: str) -> bool:
    return 0 < len(sid) <= 32 and all(c in "0123456789abcdef" for c in sid)


# ------------------------------------------------------------------------------------------- the review dir
@record
class Review:
    id: str
    dir: str  # reviews/ID
    project: str
    started_ns: int
    userxattr: bool
    pid: int
    command: str = ""

    @property
    def upper(self) -> str:
        return os.path.join(self.dir, "upper")


def load(state_dir: str, sid: str) -> Review:
    fd = hostfs.open_state(state_dir, os.path.join(REVIEWS, sid), create=False)
    try:
        data = hostfs.read_file(fd, "meta.json", MAX_META)
    finally:
        os.close(fd)
    if data is None:
        raise ValueError("no meta.json")
    doc = json.loads(data)
    if doc["id"] != sid:
        raise ValueError("id mismatch")
    return Review(
        sid,
        os.path.join(state_dir, REVIEWS, sid),
        os.fsdecode(bytes.fromhex(doc["project_hex"])),
        int(doc["started_ns"]),
        bool(doc["userxattr"]),
        int(doc["pid"]),
        bytes.fromhex(doc.get("command_hex", "")).decode("utf-8", "replace"),
    )


def pending(state_dir: str) -> list[Review]:
    """The reviews kept in the state dir, oldest first (unreadable ones are skipped)."""
    top = os.path.join(state_dir, REVIEWS)
    if not os.path.isdir(top):
        return []
    out = []
    for name in os.listdir(top):
        if not valid_id(name):
            continue
        try:
            out.append(load(state_dir, name))
        except (OSError, ValueError, KeyError, TypeError, RccError):
            continue
    return sorted(out, key=lambda r: r.started_ns)


def running(review: Review) -> bool:
    """The session that writes this layer is still running (its rcc process is alive)."""
    if review.pid == os.getpid():
        return False
    try:
        os.kill(review.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{review.pid}/cmdline", "rb") as f:
        return b"rcc" in f.read()  # a recycled pid: not an rcc process any more
    return False


def discard(review: Review) -> None:
    fd = hostfs.open_state(os.path.dirname(os.path.dirname(review.dir)), REVIEWS, create=False)
    try:
        _remove_tree(fd, review.id)
    finally:
        os.close(fd)


def _remove_tree(dirfd: int, name: str) -> None:
    """Remove a review's tree: the session may have left directories without write or search permission (and
    overlayfs' work/work is mode 000; rootless podman's belongs to a subordinate uid), so permissions are opened
    up first and empty directories removed as found, never following a link."""
    try:
        hostfs.remove_tree(dirfd, name)
        return
    except PermissionError:
        pass
    for top, dirs, _files, tfd in os.fwalk(name, dir_fd=dirfd, follow_symlinks=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(d, 0o700, dir_fd=tfd, follow_symlinks=False)
            with contextlib.suppress(OSError):  # an empty one this user cannot open: rootless podman's work/work
                os.rmdir(d, dir_fd=tfd)  # belongs to a subordinate uid; removing it needs only our parent
        del top
    hostfs.remove_tree(dirfd, name)


# ------------------------------------------------------------------------------------------- scanning
def _opaque_attr(review: Review) -> str:
    return "user.overlay.opaque" if review.userxattr else "trusted.overlay.opaque"


def entries(review: Review) -> list[Entry]:
    """The upper directory's entries (a directory's own entry before its children), never following links."""
    out: list[Entry] = []
    attr = _opaque_attr(review)
    root = review.upper

    def walk(rel: str) -> None:
        path = os.path.join(root, rel) if rel else root
        with os.scandir(path) as it:
            items = sorted(it, key=lambda e: e.name)
        for e in items:
            r = os.path.join(rel, e.name) if rel else e.name
            st = e.stat(follow_symlinks=False)
            m = st.st_mode
            if stat.S_ISDIR(m):
                opaque = False
                with contextlib.suppress(OSError):
                    opaque = os.getxattr(e.path, attr, follow_symlinks=False) == b"y"
                out.append(Entry(r, DIR, stat.S_IMODE(m), 0, "", opaque))
                walk(r)
            elif stat.S_ISREG(m):
                out.append(Entry(r, FILE, stat.S_IMODE(m), st.st_size))
            elif stat.S_ISLNK(m):
                out.append(Entry(r, SYMLINK, 0, 0, os.readlink(e.path)))
            elif stat.S_ISCHR(m) and st.st_rdev == 0:
                out.append(Entry(r, WHITEOUT))
            else:
                out.append(Entry(r, SPECIAL, stat.S_IMODE(m)))

    walk("")
    return out


def _lower_kind(st: os.stat_result | None) -> str:
    if st is None:
        return MISSING
    m = st.st_mode
    return FILE if stat.S_ISREG(m) else DIR if stat.S_ISDIR(m) else SYMLINK if stat.S_ISLNK(m) else SPECIAL


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _fingerprint(st: os.stat_result | None) -> list[int] | None:
    return None if st is None else [st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino]


def _same_content(a: str, b: str, size: int) -> bool:
    if size > _COMPARE_LIMIT:
        return False
    try:
        fa = os.open(a, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fb = os.open(b, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        os.close(fa)
        return False
    try:
        if not (stat.S_ISREG(os.fstat(fa).st_mode) and stat.S_ISREG(os.fstat(fb).st_mode)):
            return False
        while True:
            x, y = os.read(fa, 1 << 20), os.read(fb, 1 << 20)
            if x != y:
                return False
            if not x:
                return True
    finally:
        os.close(fa)
        os.close(fb)


def _with_opaque_deletions(review: Review, found: list[Entry]) -> list[Entry]:
    """An opaque directory hides the project's directory: what is there and not in the layer is deleted."""
    names = {e.rel for e in found}
    out = list(found)
    for e in found:
        if e.kind == DIR and e.opaque:
            lower = os.path.join(review.project, e.rel)
            st = _lstat(lower)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            with contextlib.suppress(OSError):
                for name in sorted(os.listdir(lower)):
                    rel = os.path.join(e.rel, name)
                    if rel not in names:
                        out.append(Entry(rel, WHITEOUT))
    return out


def write_manifest(review: Review) -> int:
    """At the end of the session: the project's fingerprint of each touched path. Returns how many entries
    the layer holds (0: the session changed nothing)."""
    found = entries(review)
    doc = {e.rel: _fingerprint(_lstat(os.path.join(review.project, e.rel))) for e in found if e.kind != DIR}
    fd = hostfs.open_state(os.path.dirname(os.path.dirname(review.dir)), os.path.join(REVIEWS, review.id))
    try:
        hostfs.replace_file(fd, "manifest.json", json.dumps(doc, ensure_ascii=True).encode(), 0o600)
    finally:
        os.close(fd)
    return len(found)


def _manifest(review: Review) -> dict[str, object]:
    fd = hostfs.open_state(os.path.dirname(os.path.dirname(review.dir)), os.path.join(REVIEWS, review.id))
    try:
        data = hostfs.read_file(fd, "manifest.json", MAX_MANIFEST)
    finally:
        os.close(fd)
    if data is None:
        return {}
    doc = json.loads(data)
    return doc if isinstance(doc, dict) else {}


def changes(review: Review, protected: tuple[str, ...]) -> Summary:
    """Everything the session changed, classified against the project as it is now."""
    manifest = _manifest(review)
    out: list[Change] = []
    digests: dict[str, str] = {}
    for e in _with_opaque_deletions(review, entries(review)):
        path = os.path.join(review.project, e.rel)
        st = _lstat(path)
        kind = _lower_kind(st)
        changed = False
        if kind not in (DIR, MISSING) and st is not None and st.st_ctime_ns > review.started_ns:
            changed = True
        if e.rel in manifest and e.kind != DIR and manifest[e.rel] != _fingerprint(st):
            changed = True
        target = ""
        if kind == SYMLINK:
            with contextlib.suppress(OSError):
                target = os.readlink(path)
        same = False
        if kind == FILE and e.kind == FILE and st is not None and st.st_size == e.size:
            same = _same_content(path, os.path.join(review.upper, e.rel), e.size)
        lower = Lower(kind, stat.S_IMODE(st.st_mode) if st else 0, st.st_size if st else 0, target, same, changed)
        out.append(classify(e, lower, protected, review.project))
    # renames: only an added file as large as a deleted one is hashed (most sessions delete nothing)
    deleted = [c for c in out if c.action == "deleted" and c.lower.kind == FILE and 0 < c.lower.size <= 1 << 20]
    sizes = {c.lower.size for c in deleted}
    for c in deleted:
        digests[c.rel] = _digest(os.path.join(review.project, c.rel))
    for c in out:
        if c.action == "added" and c.kind == FILE and c.entry.size in sizes:
            digests[c.rel] = _digest(os.path.join(review.upper, c.rel))
    return summarize(out, digests)


def _digest(path: str) -> str:
    import hashlib

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- applying
def apply(review: Review, chosen: Sequence[Change]) -> list[tuple[Change, str]]:
    """Write the chosen (applicable) changes into the project: deletions deepest first, then the rest in path
    order (a directory before its contents). Returns the changes that failed, each with why (not written)."""
    return apply_from(review.upper, review.project, chosen)


def apply_from(upper: str, project: str, chosen: Sequence[Change]) -> list[tuple[Change, str]]:
    """apply() with the changed files read from `upper` (a review's layer, or a worktree: rcc.workspace.trees),
    each opened below it without following a link."""
    failed: list[tuple[Change, str]] = []
    removals = [c for c in chosen if c.action in ("deleted", "replaced")]
    for c in sorted(removals, key=lambda c: c.rel, reverse=True):
        if c.action == "replaced" and c.lower.kind == DIR and c.kind == DIR:
            continue  # an opaque directory over a directory: its deleted children are their own changes
        try:
            _in_parent(project, c.rel, hostfs.remove_tree, create=False)
        except (OSError, RccError) as e:
            failed.append((c, _why(e)))
    gone = {id(f[0]) for f in failed}
    parents: dict[str, int] = {}  # directory descriptors, opened once per directory (not once per file)
    try:
        for c in sorted(chosen, key=lambda c: c.rel):
            if c.action == "deleted" or id(c) in gone:
                continue
            try:
                _write(upper, project, c, parents)
            except (OSError, RccError) as e:
                failed.append((c, _why(e)))
    finally:
        for fd in parents.values():
            os.close(fd)
    return failed


def _why(e: BaseException) -> str:
    return e.message if isinstance(e, RccError) else str(e)


def _in_parent(project: str, rel: str, fn: object, create: bool) -> None:
    parent, name = os.path.split(rel)
    pfd = hostfs.open_dir(project, parent, create=create, mode=0o755)
    try:
        fn(pfd, name)  # type: ignore[operator]
    finally:
        os.close(pfd)


def _write(upper: str, project: str, c: Change, parents: dict[str, int]) -> None:
    e = c.entry

    def write(pfd: int, name: str) -> None:
        st = hostfs.lstat_at(pfd, name)
        if e.kind == DIR:
            if st is not None and stat.S_ISDIR(st.st_mode):
                return
            if st is not None:
                hostfs.remove_tree(pfd, name)
            os.mkdir(name, e.mode & 0o777, dir_fd=pfd)
            return
        tmp = f".{name[:200]}.rcc-apply-{os.urandom(4).hex()}"
        if e.kind == SYMLINK:
            os.symlink(e.target, tmp, dir_fd=pfd)
        elif e.kind == FILE:
            _copy_file(upper, c.rel, pfd, tmp, e.mode & 0o777)  # set-uid/set-gid never reach the project
        else:
            raise RccError(f"internal: cannot apply a {e.kind}", code=ExitCode.INTERNAL)
        try:
            if st is not None and stat.S_ISDIR(st.st_mode):
                hostfs.remove_tree(pfd, name)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)  # replaces a link itself, never its target
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=pfd)
            raise

    parent, name = os.path.split(c.rel)
    pfd = parents.get(parent)
    if pfd is None:
        pfd = parents[parent] = hostfs.open_dir(project, parent, create=True, mode=0o755)
    write(pfd, name)


def _copy_file(upper: str, rel: str, pfd: int, tmp: str, mode: int) -> None:
    src = os.path.join(upper, rel)
    sfd = hostfs.open_dir(upper, os.path.dirname(rel))
    try:
        fin = os.open(os.path.basename(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sfd)
    finally:
        os.close(sfd)
    try:
        st = os.fstat(fin)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_APPLY:
            raise RccError(f"{src} is not a regular file of at most {MAX_APPLY} bytes", code=ExitCode.APPLY_REFUSED)
        fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        try:
            left = MAX_APPLY + 1
            while left > 0:
                n = os.sendfile(fout, fin, None, min(left, 1 << 24))
                if n == 0:
                    break
                left -= n
            if left <= 0:
                raise RccError(f"{src} grew past {MAX_APPLY} bytes", code=ExitCode.APPLY_REFUSED)
            os.fchmod(fout, mode)
        except BaseException:
            os.close(fout)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=pfd)
            raise
        os.close(fout)
    finally:
        os.close(fin)
