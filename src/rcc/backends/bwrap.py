"""Linux backend: render a Plan into a bubblewrap command line and run it.

Invariants:
1. render() is pure; run() only adds file descriptors (seccomp program, info/block pipes) and the proxy.
2. The command starts only after the proxy listener exists inside the sandbox's network namespace
   (bwrap --block-fd), so the first connection never races the proxy.
3. If the proxy cannot be set up, the command does not start: never an open fallback.
4. Placeholders are created without following symlinks (rcc.hostfs: every component below the project) and
   removed afterwards only if still ours and empty. The same holds for everything rcc makes in its state dir.
5. Root's sandbox never gets the host's own /dev/null etc. (it owns them): plan.dev_nodes are made fresh for each
   session in plan.devices_dir, bound over bwrap's /dev entries, and stdio that is one of the host's nodes is
   replaced by the private copy. If they cannot be made, the command does not start.
"""

from __future__ import annotations

import contextlib
import os
import sys

from rcc.backends._base import Problem
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, DevNode, Dir, FileData, Mask, Placeholder, Plan, Special, Symlink, Tmpfs

TYPE_CHECKING = False  # keep `rcc run` light: typing, socket, subprocess, json and signal are not imported
if TYPE_CHECKING:
    from typing import Any


SETUP_HINT_USERNS = (
    "unprivileged user namespaces are disabled. Debian/older kernels: `sudo sysctl -w "
    "kernel.unprivileged_userns_clone=1`; Ubuntu 23.10+: AppArmor restricts them (`sudo sysctl -w "
    "kernel.apparmor_restrict_unprivileged_userns=0`, or install the bwrap AppArmor profile); "
    "any distro: `user.max_user_namespaces` must be > 0; inside a container, the container must allow "
    "namespaces (e.g. podman/docker --security-opt seccomp=unconfined). Run `rcc doctor` for details."
)


class BwrapBackend:
    name = "bwrap"

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or which("bwrap") or ""

    # ------------------------------------------------------------------------------------------- checks
    def problems(self) -> list[Problem]:
        if not self.bwrap:
            return [
                Problem(
                    "bubblewrap (bwrap) is not installed",
                    "install it: `sudo apt-get install bubblewrap` (Debian/Ubuntu), `sudo dnf install bubblewrap` "
                    "(Fedora), `sudo pacman -S bubblewrap` (Arch); with Nix it comes with rcc",
                    ExitCode.DEPENDENCY,
                )
            ]
        try:
            with open("/proc/sys/user/max_user_namespaces") as f:
                if int(f.read().strip() or "0") == 0:
                    return [Problem("user.max_user_namespaces is 0", SETUP_HINT_USERNS, ExitCode.SETUP)]
        except OSError:
            pass
        if os.geteuid() != 0:
            try:
                with open("/proc/sys/kernel/unprivileged_userns_clone") as f:
                    if f.read().strip() == "0":
                        return [Problem("kernel.unprivileged_userns_clone is 0", SETUP_HINT_USERNS, ExitCode.SETUP)]
            except OSError:
                pass
        return []

    # ------------------------------------------------------------------------------------------- render
    def render(
        self,
        plan: Plan,
        seccomp_fd: int | None = None,
        info_fd: int | None = None,
        block_fd: int | None = None,
        data_fds: dict[str, int] | None = None,
    ) -> list[str]:
        ns = plan.namespaces
        a = [self.bwrap or "bwrap"]
        if ns.user:
            a += ["--unshare-user", "--disable-userns"]
        if ns.pid:
            a.append("--unshare-pid")
        if ns.ipc:
            a.append("--unshare-ipc")
        if ns.uts:
            a += ["--unshare-uts", "--hostname", plan.hostname]
        if ns.cgroup:
            a.append("--unshare-cgroup-try")
        if ns.net:
            a.append("--unshare-net")
        a += ["--die-with-parent", "--cap-drop", "ALL"]
        if plan.new_session:
            a.append("--new-session")
        if seccomp_fd is not None:
            a += ["--seccomp", str(seccomp_fd)]
        if info_fd is not None:
            a += ["--info-fd", str(info_fd)]
        if block_fd is not None:
            a += ["--block-fd", str(block_fd)]
        for m in plan.mounts:
            if isinstance(m, Bind):
                a += ["--bind" if m.writable else "--ro-bind", m.src, m.dest]
            elif isinstance(m, Tmpfs):
                a += ["--perms", f"{m.mode:o}", *(["--size", str(m.size)] if m.size else []), "--tmpfs", m.dest]
                if m.read_only:
                    a += ["--remount-ro", m.dest]
            elif isinstance(m, Mask):
                if m.is_dir:
                    a += ["--perms", "555", "--tmpfs", m.dest, "--remount-ro", m.dest]
                else:
                    a += ["--ro-bind", "/dev/null", m.dest]
            elif isinstance(m, Symlink):
                a += ["--symlink", m.target, m.dest]
            elif isinstance(m, Dir):
                a += ["--perms", f"{m.mode:o}", "--dir", m.dest]
            elif isinstance(m, FileData):
                fd = (data_fds or {}).get(m.dest, -1)
                a += ["--ro-bind-data", str(fd), m.dest]
            elif isinstance(m, Special):
                a += {"dev": ["--dev"], "proc": ["--proc"], "mqueue": ["--mqueue"]}[m.kind] + [m.dest]
                if m.kind == "dev":
                    # --dev binds the host's nodes; a bind on top of each hides it behind the session's own copy
                    # (umount would need CAP_SYS_ADMIN, dropped above). --dev-bind: other binds are nodev.
                    for n in plan.dev_nodes:
                        a += ["--dev-bind", _private_node(plan, n), n.dest]
        a += ["--chdir", plan.cwd, "--"]
        # GNU env gives the shell's answer for a missing (127) or non-executable (126) command; bwrap itself
        # would exit 1 for both. A first word with "=" would be taken as an assignment, so it goes direct.
        if plan.argv and "=" not in plan.argv[0]:
            a += ["/usr/bin/env", *(["--default-signal=INT,QUIT"] if plan.reset_signals else []), "--"]
        a += list(plan.argv)
        return a

    # ------------------------------------------------------------------------------------------- run
    def run(self, plan: Plan) -> int:
        if not self.bwrap:
            raise RccError("bubblewrap (bwrap) is not installed", code=ExitCode.DEPENDENCY)
        devices = make_private_devices(plan) if plan.dev_nodes else -1
        try:
            return self._run_with_placeholders(plan)
        finally:
            if devices >= 0:
                remove_private_devices(plan, devices)

    def _run_with_placeholders(self, plan: Plan) -> int:
        import fcntl

        ledger, in_use = _project_lock(plan.project, "ledger"), _project_lock(plan.project, "in-use")
        try:
            fcntl.flock(ledger, fcntl.LOCK_EX)  # set-up and clean-up of one project's placeholders: one at a time
            try:
                created = make_placeholders(plan.placeholders, plan.project)
                _ledger_write(ledger, [*_ledger_read(ledger), *created])
                fcntl.flock(in_use, fcntl.LOCK_SH)  # held while the sandbox runs
            finally:
                fcntl.flock(ledger, fcntl.LOCK_UN)
            try:
                return self._run(plan)
            finally:
                _remove_placeholders_if_last(ledger, in_use, plan.project)
        finally:
            os.close(ledger)
            os.close(in_use)

    def _run(self, plan: Plan) -> int:
        inherit: list[int] = []  # descriptors bwrap inherits; closed here once it runs
        seccomp_fd = None
        if plan.seccomp:
            seccomp_fd = _seccomp_fd()
            inherit.append(seccomp_fd)
        # --info-fd: bwrap reports the sandbox's pid once its namespaces exist; if it exits without a word, the
        # namespaces could not be created (user namespaces blocked, AppArmor, a container forbidding them).
        info_r, info_w = os.pipe()
        inherit.append(info_w)
        block_r = block_w = None
        forwards = bool(plan.net.publish or plan.net.host_services)
        lim = plan.limits
        limited = bool(lim.memory or lim.processes or lim.cpu)  # rcc.limits: applied while the command is held
        if plan.net.mode == "proxy" or forwards or limited:
            block_r, block_w = os.pipe()  # holds the command until the proxy listener and forwarders exist
            inherit.append(block_r)
        data_fds: dict[str, int] = {}
        for m in plan.mounts:
            if isinstance(m, FileData):
                data_fds[m.dest] = _data_fd(m.content.encode())
                inherit.append(data_fds[m.dest])
        argv = self.render(plan, seccomp_fd, info_w, block_r, data_fds)
        stdio = _private_stdio(plan) if plan.dev_nodes else []  # close-on-exec; dup2 makes them bwrap's 0-2
        old = _ignore_tty_signals() if not plan.new_session else {}
        proxy: Any = None
        forwarders: Any = None
        limits: Any = None
        code = ExitCode.INTERNAL
        try:
            try:
                _keep_only(inherit)
                for fd in inherit:
                    os.set_inheritable(fd, True)
                # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec:
                # `yes | head -1` inside would complain of a broken pipe instead of ending quietly.
                pid = os.posix_spawn(
                    argv[0],
                    argv,
                    dict(plan.env),
                    setsigdef=(_SIGPIPE, _SIGXFSZ),
                    file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in stdio],
                )
            except OSError as e:
                raise RccError(f"cannot start bubblewrap: {e}", code=ExitCode.DEPENDENCY) from e
            finally:
                for fd in [*inherit, *(fd for fd, _ in stdio)]:
                    os.close(fd)
            sandbox_pid = 0
            try:
                if limited:  # the cgroups, and bwrap moved in while it sets up the sandbox (rcc.limits)
                    from rcc.limits import SessionLimits

                    limits = SessionLimits(plan.limits, plan.session_id)
                    limits.start(pid)
                sandbox_pid = _read_child_pid(info_r, pid)
                if limits is not None:
                    limits.apply([pid, sandbox_pid])  # and everything bwrap forked, before the command runs
                listener = None
                if plan.net.mode == "proxy":
                    from rcc.netns import listen_in_netns

                    listener = listen_in_netns(sandbox_pid, plan.net.proxy_port)
                if forwards:  # published ports and host services (rcc.forward): forks, so before any thread
                    from rcc.forward import Forwarders

                    forwarders = Forwarders(plan, sandbox_pid)
                if block_w is not None:
                    # Release the command now: connections wait in the listeners' backlogs while the threads start.
                    os.write(block_w, b"go")
                if forwarders is not None:
                    forwarders.start()
                if listener is not None:
                    from rcc.backends._proxy import start_proxy

                    proxy = start_proxy(plan, listener, "bwrap")
            except BaseException:
                if sandbox_pid:
                    # the held command (reading its --block-fd) does not die with bwrap: it is a child of the
                    # sandbox's pid namespace, left behind holding our stdout
                    with contextlib.suppress(OSError):
                        os.kill(sandbox_pid, 9)
                _kill(pid)
                raise
            finally:
                os.close(info_r)
                if block_w is not None:
                    os.close(block_w)
            code = _wait(pid)
            return code
        finally:
            if limits is not None and (why := limits.close(code)):
                sys.stderr.write(f"rcc: {why}\n")
            if proxy is not None:
                proxy.close()
            if forwarders is not None:
                forwarders.close()
            if old:
                import signal

                for sig, handler in old.items():
                    signal.signal(sig, handler)


def _keep_only(inherit: list[int]) -> None:
    """Descriptors rcc itself inherited (from an IDE, a terminal multiplexer, `exec 7< ~`) would reach the
    sandbox through bwrap, and an open directory leads out of every mount (/proc/self/fd/7/.ssh). So nothing
    but stdio and the descriptors bwrap needs is inherited. (A directory as stdio never gets here: Python
    refuses to start with one.)"""
    import contextlib

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in inherit:
            with contextlib.suppress(OSError):  # the descriptor listdir itself used, already closed
                os.set_inheritable(fd, False)


_SIGPIPE, _SIGXFSZ = 13, 25  # Linux numbers on every architecture rcc supports (the signal module costs an import)


def which(name: str) -> str | None:
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    return None


def _kill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _wait(pid: int) -> int:
    """Wait for bwrap; its status is the command's (bwrap reports a signal death as 128+n itself)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        except KeyboardInterrupt:  # non-interactive: Ctrl-C reached us too; the sandbox gets it and ends
            continue
        except ChildProcessError:
            return ExitCode.INTERNAL


def _ignore_tty_signals() -> dict[int, Any]:
    """Interactive sessions share our terminal's foreground process group: the agent receives Ctrl-C itself."""
    import signal

    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT)}


def _seccomp_fd() -> int:
    from rcc.seccomp import build_filter

    return _data_fd(build_filter())


def _data_fd(data: bytes) -> int:
    """A pipe whose read end yields `data` then EOF (bwrap reads it whole)."""
    if len(data) > 60000:
        raise RccError("internal: sandbox file data too large for a pipe", code=ExitCode.INTERNAL)
    r, w = os.pipe()
    os.write(w, data)  # fits in the pipe buffer
    os.close(w)
    return r


def _read_child_pid(info_r: int, pid: int) -> int:
    """bwrap writes {"child-pid": N, ...} once the namespaces exist (parsed by hand: json is not imported)."""
    data = b""
    while b"}" not in data:
        chunk = os.read(info_r, 4096)
        if not chunk:
            code = _wait(pid)
            raise RccError(
                f"bubblewrap could not create the sandbox (exit {code}; its message is above)",
                hint=SETUP_HINT_USERNS,
                code=ExitCode.SETUP,
            )
        data += chunk
    key = b'"child-pid"'
    at = data.find(key)
    digits = data[at + len(key) :].lstrip(b" \t\n:").split(b",")[0].split(b"}")[0].strip()
    if at < 0 or not digits.isdigit():
        raise RccError(f"unexpected --info-fd data from bubblewrap: {data[:200]!r}", code=ExitCode.INTERNAL)
    return int(digits)


# ----------------------------------------------------------------------------------------------- placeholders


def make_placeholders(placeholders: tuple[Placeholder, ...], project: str) -> list[tuple[str, bool, int]]:
    """Create each missing mount point, walking from the project without following symlinks (a session may have
    turned a directory on the way into a link since the probe); return (path, is_dir, inode) of ours."""
    from rcc import hostfs

    created: list[tuple[str, bool, int]] = []
    try:
        for ph in placeholders:
            parent, name = os.path.split(ph.path)
            dfd = hostfs.open_dir(project, hostfs.split_under(project, parent))
            try:
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
            finally:
                os.close(dfd)
    except (OSError, RccError) as e:
        remove_placeholders(created, project)
        if isinstance(e, RccError) and e.code == ExitCode.UNSAFE_PATH:
            raise
        raise RccError(
            f"cannot create a protective mount point in the project: {e}",
            hint="a path inside the project may be a symlink or read-only; fix it or run rcc elsewhere",
            code=ExitCode.PROJECT,
        ) from e
    return created


# Several sessions may run in one project. Each binds the placeholders it found (its own or another session's)
# read-only; removing one while another session still runs would detach that session's mount (the kernel lazily
# unmounts a deleted mount point in every namespace) and let its sandbox create the protected file. So every
# session holds a shared lock on a per-project file in rcc's state directory (which no sandbox can see), the
# placeholders created are recorded there, and only a session that can take the lock exclusively at its end,
# i.e. the last one, removes them all.


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
    following links; one that cannot be reached that way is left alone."""
    from rcc import hostfs

    for path, is_dir, ino in reversed(created):
        parent, name = os.path.split(path)
        try:
            dfd = hostfs.open_dir(project, hostfs.split_under(project, parent))
        except RccError:
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
            os.close(dfd)


# ----------------------------------------------------------------------------------------------- private devices
# Root's sandbox runs as the real uid 0 and would own the host's /dev/null, /dev/zero, ... that bwrap's /dev
# binds (bwrap cannot bind them read-only: its read-only binds are nodev). Each session gets fresh copies in a
# 0700 directory of its own under rcc's state dir (which no sandbox sees: a writable bind over it is refused,
# and any other bind of it is nodev and read-only), so a chmod or chown inside changes only those. The session
# holds an exclusive flock on its directory; a directory left by a killed rcc (harmless: root-only copies of
# world-usable devices) is removed by a later session that can take its lock. Removing the source of a bind
# never detaches the bind, so even a racing clean-up cannot uncover the host's nodes (at worst bwrap fails to
# find a source and the command does not start).


def _private_node(plan: Plan, node: DevNode) -> str:
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


def _private_stdio(plan: Plan) -> list[tuple[int, int]]:
    """stdio that is one of the host's device nodes (`rcc run ... </dev/null`, a systemd service's stdin) would
    reach the sandbox as /proc/self/fd/0, and `chmod 000 /dev/stdin` would change the host's node: such stdio
    is replaced by the private copy, opened the same way. Returns (descriptor, stdio number) pairs."""
    import fcntl
    import stat

    by_rdev = {os.makedev(n.major, n.minor): _private_node(plan, n) for n in plan.dev_nodes}
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
