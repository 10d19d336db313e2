"""The session host: every effect one session has on the host, made in order when it is entered and undone in
reverse when it is left, for every backend alike.

The runner (rcc.runner.run_session) enters it once per session, registers the session's own effects (the git
sweeps before and after, the session CA) and hands it to the backend, which renders the plan with the handles the
host gives it, spawns and waits; everything else the backend needs on the host comes from here:

    with SessionHost(plan) as host:       # private device nodes (root), then placeholders under the project lock
        fd = host.data_fd(content)        # descriptors the sandbox reads (file data, the seccomp program)
        stdio = host.private_stdio()      # stdio that is a host device node, replaced by the private copy
        ...spawn; host.spawned()          # closes the descriptors the child now holds
        host.serve_proxy(listener)        # rcc's egress proxy on the listener in the sandbox's netns
        ...wait
    # left: the proxy closed (its deferred notices printed), descriptors closed, placeholders removed if this
    # was the project's last session, private devices removed

Invariants:
1. Placeholders are created without following symlinks (rcc.hostfs: every component below the project) and
   removed only if still ours and empty, and only by the last session of the project, of whatever backend: every
   session holds the project's in-use lock shared while it runs (see _project_lock). A container session that
   removed placeholders a bwrap session still had bound would let that sandbox create .mcp.json.
2. Root's sandbox never gets the host's own /dev/null etc. (it owns them): plan.dev_nodes are made fresh for each
   session in plan.devices_dir; if they cannot be made, the command does not start.
3. If anything fails on entry, what was already made is undone and the error passes on: the command never starts
   with less protection than the plan says.
Stdlib only (os, contextlib; fcntl and stat when used): `rcc run` imports this on its hot path.
"""

from __future__ import annotations

import contextlib
import os

from rcc.errors import ExitCode, RccError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping
    from typing import Any

    from rcc.plan import DevNode, Placeholder, Plan


class SessionHost:
    """One session's host-side effects (see the module docstring). Enter once per session."""

    def __init__(self, plan: Plan, placeholders: bool = True) -> None:
        """placeholders=False: a backend that denies creating the protected paths by rule (Seatbelt) needs no
        placeholder files; the project's in-use lock is still held."""
        self.plan = plan
        self._placeholders = placeholders
        self._stack = contextlib.ExitStack()
        self._fds: list[int] = []  # descriptors made for the child: closed once it has them, or on exit

    def __enter__(self) -> SessionHost:
        try:
            if self.plan.dev_nodes:
                devices = make_private_devices(self.plan)
                self._stack.callback(remove_private_devices, self.plan, devices)
            plan = self.plan
            if not self._placeholders:
                from rcc.record import replace

                plan = replace(plan, placeholders=())
            self._stack.enter_context(project_placeholders(plan))
            self._stack.callback(self.spawned)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def callback(self, fn: Callable[[], object]) -> None:
        """Run `fn` when the session ends, before everything made earlier is undone."""
        self._stack.callback(fn)

    # ----------------------------------------------------------------------------------- descriptors
    def data_fd(self, data: bytes) -> int:
        """A pipe the child reads `data` from (bwrap --ro-bind-data, --seccomp)."""
        fd = data_fd(data)
        self._fds.append(fd)
        return fd

    def seccomp_fd(self) -> int:
        """rcc's seccomp program (rcc.seccomp) as a descriptor."""
        from rcc.seccomp import build_filter

        return self.data_fd(build_filter())

    def pipe(self) -> tuple[int, int]:
        """A pipe whose ends both close when the child has spawned (or the session ends), unless taken with
        keep()."""
        r, w = os.pipe()
        self._fds += [r, w]
        return r, w

    def keep(self, fd: int) -> int:
        """Take `fd` (from pipe()) out of the host's care: the caller keeps it past spawned() and closes it."""
        self._fds.remove(fd)
        return fd

    def private_stdio(self) -> list[tuple[int, int]]:
        """(descriptor, stdio number) pairs to dup2 in the child: see private_stdio()."""
        if not self.plan.dev_nodes:
            return []
        pairs = private_stdio(self.plan)
        self._fds += [fd for fd, _ in pairs]
        return pairs

    def spawned(self) -> None:
        """The child holds its copies now: close ours."""
        fds, self._fds = self._fds, []
        for fd in fds:
            _close_quietly(fd)

    # ----------------------------------------------------------------------------------- the proxy
    def serve_proxy(
        self, listener: socket.socket, serve: Callable[[Plan, Any], Any] | None = None, backend: str = ""
    ) -> Any:
        """Serve `listener` (inside the sandbox's network namespace) with rcc's egress proxy (rcc.backends._proxy,
        recorded as run by `backend`), or with `serve` (tests pass their own server); it is closed when the
        session ends."""
        if serve is None:
            from rcc.backends._proxy import start_proxy

            proxy = start_proxy(self.plan, listener, backend)
        else:
            proxy = serve(self.plan, listener)
        self._stack.callback(proxy.close)
        return proxy

    def serve_proxy_soon(self, listener: socket.socket, on_failure: Callable[[], None], backend: str = "") -> None:
        """Like serve_proxy(), but the proxy starts on a thread while the session runs (rcc.backends._proxy.
        ProxyStarter): a command that ends before it has started never waits for it. If it cannot start,
        `on_failure()` ends the sandbox and leaving the host raises the error."""
        from rcc.backends._proxy import ProxyStarter

        starter = ProxyStarter(self.plan, listener, backend, on_failure)
        self._stack.callback(starter.finish)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def data_fd(data: bytes) -> int:
    """A pipe whose read end yields `data` then EOF (bwrap reads it whole)."""
    if len(data) > 60000:
        raise RccError("internal: sandbox file data too large for a pipe", code=ExitCode.INTERNAL)
    r, w = os.pipe()
    os.write(w, data)  # fits in the pipe buffer
    os.close(w)
    return r


# ----------------------------------------------------------------------------------------------- placeholders


def make_placeholders(placeholders: tuple[Placeholder, ...], project: str) -> list[tuple[str, bool, int]]:
    """Create each missing mount point, walking from the project without following symlinks (a session may have
    turned a directory on the way into a link since the probe); return (path, is_dir, inode) of ours. Each
    parent directory is walked to once and its descriptor reused: most placeholders share the project's top."""
    from rcc import hostfs

    created: list[tuple[str, bool, int]] = []
    dirs: dict[str, int] = {}
    try:
        for ph in placeholders:
            parent, name = os.path.split(ph.path)
            dfd = dirs.get(parent)
            if dfd is None:
                dfd = dirs[parent] = hostfs.open_dir(project, hostfs.split_under(project, parent))
            if ph.is_dir:
                try:
                    os.mkdir(name, 0o755, dir_fd=dfd)
                except FileExistsError:
                    continue  # appeared since the probe: it is bound read-only as it is
                ino = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_ino
            else:
                try:
                    ino = hostfs.create_file(dfd, name, ph.content.encode(), 0o644)
                except FileExistsError:
                    continue
            created.append((ph.path, ph.is_dir, ino))
    except (OSError, RccError) as e:
        remove_placeholders(created, project)
        if isinstance(e, RccError) and e.code == ExitCode.UNSAFE_PATH:
            raise
        raise RccError(
            f"cannot create a protective mount point in the project: {e}",
            hint="a path inside the project may be a symlink or read-only; fix it or run rcc elsewhere",
            code=ExitCode.PROJECT,
        ) from e
    finally:
        _close_all(dirs)
    return created


def _close_all(dirs: Mapping[str, int | None]) -> None:
    for fd in dirs.values():
        if fd is not None:
            os.close(fd)


# Several sessions may run in one project. Each binds the placeholders it found (its own or another session's)
# read-only; removing one while another session still runs would detach that session's mount (the kernel lazily
# unmounts a deleted mount point in every namespace) and let its sandbox create the protected file. So every
# session holds a shared lock on a per-project file in rcc's state directory (which no sandbox can see), the
# placeholders created are recorded there, and only a session that can take the lock exclusively at its end,
# i.e. the last one, removes them all.


@contextlib.contextmanager
def project_placeholders(plan: Plan) -> Any:
    """For the project and each of the plan's placeholder anchors (a linked worktree's main repository):
    create the plan's placeholders below it and record them in its ledger; hold its in-use lock shared while
    the session runs (also where this session made none: it may have bound another session's); on exit remove
    every recorded placeholder of an anchor if this is its last session."""
    anchors = (plan.project, *plan.placeholder_anchors)
    with contextlib.ExitStack() as stack:
        for anchor in anchors:
            mine = tuple(p for p in plan.placeholders if _anchor_of(p.path, anchors) == anchor)
            stack.enter_context(_anchor_placeholders(anchor, mine))
        yield


def _anchor_of(path: str, anchors: tuple[str, ...]) -> str:
    for a in anchors:
        if path.startswith(a.rstrip("/") + "/"):
            return a
    raise RccError(f"internal: placeholder {path} is under none of {anchors}", code=ExitCode.INTERNAL)


@contextlib.contextmanager
def _anchor_placeholders(anchor: str, placeholders: tuple[Placeholder, ...]) -> Any:
    import fcntl

    ledger, in_use = _project_lock(anchor, "ledger"), _project_lock(anchor, "in-use")
    try:
        fcntl.flock(ledger, fcntl.LOCK_EX)  # set-up and clean-up of one project's placeholders: one at a time
        try:
            created = make_placeholders(placeholders, anchor)
            _ledger_write(ledger, [*_ledger_read(ledger), *created])
            fcntl.flock(in_use, fcntl.LOCK_SH)  # held while the sandbox runs
        finally:
            fcntl.flock(ledger, fcntl.LOCK_UN)
        try:
            yield
        finally:
            _remove_placeholders_if_last(ledger, in_use, anchor)
    finally:
        os.close(ledger)
        os.close(in_use)


def _project_lock(project: str, kind: str) -> int:
    from rcc import hostfs, paths

    directory = os.path.join(paths.state_dir(), "sessions")
    try:
        st = os.stat(project)  # the directory itself names the lock (hashing its path would cost an import)
        name = f"{st.st_dev:x}-{st.st_ino:x}.{kind}"
        dfd = hostfs.open_state(paths.state_dir(), "sessions")
        try:
            return hostfs.open_file(dfd, name, os.O_RDWR | os.O_CREAT, 0o600, shown=os.path.join(directory, name))
        finally:
            os.close(dfd)
    except OSError as e:
        raise RccError(
            f"cannot open the session lock in {directory}: {e.strerror}",
            hint="rcc's state directory must be writable (set XDG_STATE_HOME to move it)",
            code=ExitCode.SETUP,
        ) from e


def _ledger_read(lock: int) -> list[tuple[str, bool, int]]:
    """Entries are NUL-terminated `inode/kind/path` records (kind d or f): paths may hold any byte but NUL, and
    no json import on every run."""
    os.lseek(lock, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(lock, 65536):
        data += chunk
    out = []
    for rec in data.split(b"\0"):
        ino, _, rest = rec.partition(b"/")
        kind, _, path = rest.partition(b"/")
        if ino.isdigit() and kind in (b"d", b"f") and path.startswith(b"/"):
            out.append((os.fsdecode(path), kind == b"d", int(ino)))
    return out  # a damaged record is forgotten (a placeholder left behind stays a harmless empty file)


def _ledger_write(lock: int, entries: list[tuple[str, bool, int]]) -> None:
    data = b"".join(
        b"%d/%s/%s\0" % (ino, b"d" if is_dir else b"f", os.fsencode(path)) for path, is_dir, ino in sorted(set(entries))
    )
    os.ftruncate(lock, 0)
    os.pwrite(lock, data, 0)


def _remove_placeholders_if_last(ledger: int, in_use: int, project: str) -> None:
    import fcntl

    fcntl.flock(ledger, fcntl.LOCK_EX)
    try:
        try:
            fcntl.flock(in_use, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours was shared: succeeds only if we are alone
        except BlockingIOError:
            return  # another session of this project still relies on them: the last one removes them
        remove_placeholders(_ledger_read(ledger), project)
        _ledger_write(ledger, [])
    finally:
        fcntl.flock(ledger, fcntl.LOCK_UN)


def remove_placeholders(created: list[tuple[str, bool, int]], project: str) -> None:
    """Remove our placeholders that are still ours (same inode) and empty, walking from the project without
    following links (each parent once); one that cannot be reached that way is left alone."""
    from rcc import hostfs

    dirs: dict[str, int | None] = {}
    try:
        for path, is_dir, ino in reversed(created):
            parent, name = os.path.split(path)
            if parent not in dirs:
                try:
                    dirs[parent] = hostfs.open_dir(project, hostfs.split_under(project, parent))
                except RccError:
                    dirs[parent] = None
            dfd = dirs[parent]
            if dfd is None:
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if st.st_ino != ino:
                    continue
                if is_dir:
                    os.rmdir(name, dir_fd=dfd)  # only if still empty
                elif st.st_size <= 3:
                    os.unlink(name, dir_fd=dfd)
            except OSError:
                pass
    finally:
        _close_all(dirs)


# ----------------------------------------------------------------------------------------------- private devices
# Root's sandbox runs as the real uid 0 and would own the host's /dev/null, /dev/zero, ... that bwrap's /dev
# binds (bwrap cannot bind them read-only: its read-only binds are nodev). Each session gets fresh copies in a
# 0700 directory of its own under rcc's state dir (which no sandbox sees: a writable bind over it is refused,
# and any other bind of it is nodev and read-only), so a chmod or chown inside changes only those. The session
# holds an exclusive flock on its directory; a directory left by a killed rcc (harmless: root-only copies of
# world-usable devices) is removed by a later session that can take its lock. Removing the source of a bind
# never detaches the bind, so even a racing clean-up cannot uncover the host's nodes (at worst bwrap fails to
# find a source and the command does not start).


def private_node(plan: Plan, node: DevNode) -> str:
    return os.path.join(plan.devices_dir, os.path.basename(node.dest))


def make_private_devices(plan: Plan) -> int:
    """Create plan.devices_dir and the plan's device nodes in it; return the directory's descriptor, locked."""
    import fcntl
    import stat

    from rcc import hostfs

    parent, own = os.path.split(plan.devices_dir)
    hint = (
        "root's sandbox needs private copies of /dev/null etc. (it would own the host's); rcc makes them in its "
        "state directory, which must be on a filesystem mounted without nodev: set XDG_STATE_HOME to move it"
    )
    try:
        pfd = hostfs.open_state(os.path.dirname(parent), os.path.basename(parent))  # <state>/devices, no links
        try:
            if os.fstatvfs(pfd).f_flag & os.ST_NODEV:
                raise RccError(
                    f"cannot make private device nodes: {parent} is on a filesystem mounted nodev",
                    hint=hint,
                    code=ExitCode.SETUP,
                )
            os.mkdir(own, 0o700, dir_fd=pfd)  # fresh: never a directory another session (or its sandbox) has used
            dfd = hostfs.walk_dir(pfd, own, shown=plan.devices_dir)
        finally:
            os.close(pfd)
    except OSError as e:
        raise RccError(
            f"cannot make private device nodes in {plan.devices_dir}: {e.strerror}", hint=hint, code=ExitCode.SETUP
        ) from e
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)
        for n in plan.dev_nodes:
            name = os.path.basename(n.dest)
            os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(n.major, n.minor), dir_fd=dfd)
            os.chmod(name, n.mode, dir_fd=dfd)  # the umask is not ours to change; our own 0700 directory
    except OSError as e:
        remove_private_devices(plan, dfd)
        raise RccError(
            f"cannot make private device nodes in {plan.devices_dir}: {e}", hint=hint, code=ExitCode.SETUP
        ) from e
    return dfd


def remove_private_devices(plan: Plan, dfd: int) -> None:
    """Remove this session's directory (descriptor dfd, which is closed), then any a killed rcc left behind."""
    import fcntl

    from rcc import hostfs

    parent, own = os.path.split(plan.devices_dir)
    try:
        pfd = hostfs.open_state(os.path.dirname(parent), os.path.basename(parent), create=False)
    except RccError:
        os.close(dfd)
        return
    try:
        _empty_and_remove(dfd, pfd, own)
        for name in os.listdir(pfd):
            if name != own:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # BlockingIOError: that session still runs
                    os.close(fd)
                    continue
                _empty_and_remove(fd, pfd, name)
    except OSError:
        pass
    finally:
        os.close(pfd)


def _empty_and_remove(dfd: int, pfd: int, name: str) -> None:
    """Empty directory dfd (closed here), then remove it as `name` in pfd: no path is resolved again."""
    try:
        for entry in os.listdir(dfd):
            os.unlink(entry, dir_fd=dfd)
        os.rmdir(name, dir_fd=pfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def private_stdio(plan: Plan) -> list[tuple[int, int]]:
    """stdio that is one of the host's device nodes (`rcc run ... </dev/null`, a systemd service's stdin) would
    reach the sandbox as /proc/self/fd/0, and `chmod 000 /dev/stdin` would change the host's node: such stdio
    is replaced by the private copy, opened the same way. Returns (descriptor, stdio number) pairs."""
    import fcntl
    import stat

    by_rdev = {os.makedev(n.major, n.minor): private_node(plan, n) for n in plan.dev_nodes}
    out: list[tuple[int, int]] = []
    for target in (0, 1, 2):
        try:
            st = os.fstat(target)
        except OSError:
            continue  # closed
        if not (stat.S_ISCHR(st.st_mode) and st.st_rdev in by_rdev):
            continue
        flags = fcntl.fcntl(target, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK)
        try:
            out.append((os.open(by_rdev[st.st_rdev], flags | os.O_NOCTTY | os.O_CLOEXEC), target))
        except OSError as e:  # /dev/tty as stdio with no controlling terminal left
            for fd, _ in out:
                os.close(fd)
            raise RccError(
                f"cannot reopen stdio {target} ({by_rdev[st.st_rdev]}): {e.strerror}",
                hint="give rcc a different stdin/stdout/stderr",
                code=ExitCode.SETUP,
            ) from e
    return out
