"""Linux backend: render a Plan into a bubblewrap command line and run it.

Invariants:
1. render() is pure; run() only adds file descriptors (seccomp program, info/block pipes) and the proxy.
2. The command starts only after the proxy listener exists inside the sandbox's network namespace
   (bwrap --block-fd), so the first connection never races the proxy.
3. If the proxy cannot be set up, the command does not start: never an open fallback.
4. Every host-side effect (placeholders under the project's ledger and lock, root's private device nodes and
   stdio, the descriptors bwrap reads, the proxy) is the session host's (rcc.sessionhost); this file renders,
   spawns and waits. Private device nodes are bound over bwrap's /dev entries.
"""

from __future__ import annotations

import contextlib
import os
import sys

from rcc.backends._base import Problem
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, Dir, FileData, Mask, Plan, Special, Symlink, Tmpfs
from rcc.sessionhost import SessionHost, private_node

TYPE_CHECKING = False  # keep `rcc run` light: typing, socket, subprocess, json and signal are not imported
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


SETUP_HINT_USERNS = (
    "unprivileged user namespaces are disabled. Debian/older kernels: `sudo sysctl -w "
    "kernel.unprivileged_userns_clone=1`; Ubuntu 23.10+: AppArmor restricts them (`sudo sysctl -w "
    "kernel.apparmor_restrict_unprivileged_userns=0`, or install the bwrap AppArmor profile); "
    "any distro: `user.max_user_namespaces` must be > 0; inside a container, the container must allow "
    "namespaces (e.g. podman/docker --security-opt seccomp=unconfined). Run `rcc doctor` for details."
)


# The user-namespace sysctls bubblewrap needs: the one place they are checked (BwrapBackend.problems() on this
# machine, `rcc doctor` on the facts it gathered). Problem id -> (sysctl, the value that allows them).
ID_USERNS_MAX_ZERO = "userns-max-zero"
ID_USERNS_CLONE_OFF = "userns-clone-off"
USERNS_SYSCTLS: dict[str, tuple[str, str]] = {
    ID_USERNS_MAX_ZERO: ("user.max_user_namespaces", "15000"),
    ID_USERNS_CLONE_OFF: ("kernel.unprivileged_userns_clone", "1"),
}


def read_sysctl(name: str) -> str | None:
    """A sysctl's value from /proc/sys, or None when this kernel has no such sysctl (or it cannot be read)."""
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def userns_problems(sysctl: Callable[[str], str | None], unprivileged: bool) -> list[Problem]:
    """What stops bubblewrap from making its user namespace. `unprivileged`: for a user other than root
    (kernel.unprivileged_userns_clone binds only them)."""
    out = []
    if sysctl("user.max_user_namespaces") in ("0", ""):
        out.append(Problem("user.max_user_namespaces is 0", SETUP_HINT_USERNS, ExitCode.SETUP, id=ID_USERNS_MAX_ZERO))
    if unprivileged and sysctl("kernel.unprivileged_userns_clone") == "0":
        out.append(
            Problem("kernel.unprivileged_userns_clone is 0", SETUP_HINT_USERNS, ExitCode.SETUP, id=ID_USERNS_CLONE_OFF)
        )
    return out


class BwrapBackend:
    name = "bwrap"
    placeholders = True  # bound read-only over the never-writable paths that do not exist (rcc.sessionhost)

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
        # `rcc run` stops at the first one; `rcc doctor` shows them all (the same checks: userns_problems)
        return userns_problems(read_sysctl, unprivileged=os.geteuid() != 0)[:1]

    def probe_argv(self) -> list[str]:
        """The smallest sandbox that needs what every session needs (a user, pid, net, ipc and uts namespace, a
        read-only root, /proc, /dev) running `true`: `rcc doctor` starts it to learn whether sandboxes start."""
        return [
            *(self.bwrap or "bwrap", "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc"),
            *("--unshare-uts", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"),
        ]

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
                        a += ["--dev-bind", private_node(plan, n), n.dest]
        a += ["--chdir", plan.cwd, "--"]
        # GNU env gives the shell's answer for a missing (127) or non-executable (126) command; bwrap itself
        # would exit 1 for both. A first word with "=" would be taken as an assignment, so it goes direct.
        if plan.argv and "=" not in plan.argv[0]:
            a += ["/usr/bin/env", *(["--default-signal=INT,QUIT"] if plan.reset_signals else []), "--"]
        a += list(plan.argv)
        return a

    # ------------------------------------------------------------------------------------------- run
    def prepare(self, plan: Plan) -> None:
        if not self.bwrap:
            raise RccError("bubblewrap (bwrap) is not installed", code=ExitCode.DEPENDENCY)

    def run(self, plan: Plan, host: SessionHost) -> int:
        inherit: list[int] = []  # descriptors bwrap inherits; the host closes them once it runs
        seccomp_fd = None
        if plan.seccomp:
            seccomp_fd = host.seccomp_fd()
            inherit.append(seccomp_fd)
        # --info-fd: bwrap reports the sandbox's pid once its namespaces exist; if it exits without a word, the
        # namespaces could not be created (user namespaces blocked, AppArmor, a container forbidding them).
        info_r, info_w = host.pipe()
        host.keep(info_r)
        inherit.append(info_w)
        block_w = None
        block_r = None
        forwards = bool(plan.net.publish or plan.net.host_services)
        lim = plan.limits
        limited = bool(lim.memory or lim.processes or lim.cpu)  # rcc.limits: applied while the command is held
        if plan.net.mode == "proxy" or forwards or limited:
            block_r, block_w = host.pipe()  # holds the command until the proxy listener and forwarders exist
            host.keep(block_w)
            inherit.append(block_r)
        data_fds: dict[str, int] = {}
        for m in plan.mounts:
            if isinstance(m, FileData):
                data_fds[m.dest] = host.data_fd(m.content.encode())
                inherit.append(data_fds[m.dest])
        argv = self.render(plan, seccomp_fd, info_w, block_r, data_fds)
        env = dict(plan.env)
        limits: Any = None
        if limited:  # rcc.limits: a user's cgroup v2 comes as a systemd scope bwrap starts in
            from rcc.limits import SessionLimits

            limits = SessionLimits(plan.limits, plan.session_id)
            argv, env = limits.wrap(argv, env)
        stdio = host.private_stdio()  # close-on-exec; dup2 makes them bwrap's 0-2
        old = _ignore_tty_signals() if not plan.new_session else {}
        forwarders: Any = None
        code = ExitCode.INTERNAL
        overlay_err = -1
        try:
            try:
                _keep_only(inherit)
                for fd in inherit:
                    os.set_inheritable(fd, True)
                # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec:
                # `yes | head -1` inside would complain of a broken pipe instead of ending quietly.
                if plan.overlay is not None:  # review mode: bwrap starts in a mount namespace with the layer
                    from rcc.workspace.mount import spawn

                    pid, overlay_err = spawn(argv, env, stdio, plan.overlay)
                else:
                    pid = os.posix_spawn(
                        argv[0],
                        argv,
                        env,
                        setsigdef=(_SIGPIPE, _SIGXFSZ),
                        file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in stdio],
                    )
            except OSError as e:
                raise RccError(f"cannot start bubblewrap: {e}", code=ExitCode.DEPENDENCY) from e
            finally:
                host.spawned()
            sandbox_pid = 0
            ctypes_ready = None
            if plan.net.mode == "proxy":
                from rcc.netns import preload

                ctypes_ready = preload()  # overlaps the waits below; joined before the listener's fork
            try:
                if limits is not None:  # the cgroups, and bwrap moved in while it sets up the sandbox
                    limits.start(pid)
                try:
                    sandbox_pid = _read_child_pid(info_r, pid, limits is not None and limits.kind == "scope")
                finally:
                    if overlay_err >= 0:  # review mode: the layer was mounted, or why not (never run without it)
                        from rcc.workspace.mount import failed

                        fd, overlay_err = overlay_err, -1
                        if (why := failed(fd, plan.overlay)) is not None:  # type: ignore[arg-type]
                            raise why  # (the child exited before exec: _read_child_pid has reaped it)
                if limits is not None:
                    limits.apply([pid, sandbox_pid])  # and everything bwrap forked, before the command runs
                listener = None
                if ctypes_ready is not None:
                    from rcc.netns import listen_in_netns

                    ctypes_ready()
                    listener = listen_in_netns(sandbox_pid, plan.net.proxy_port)
                if forwards:  # published ports and host services (rcc.forward): forks, so before any thread
                    from rcc.forward import Forwarders

                    forwarders = Forwarders(plan, sandbox_pid)
                    host.callback(forwarders.close)  # after the proxy's close (the host undoes in reverse)
                if block_w is not None:
                    # Release the command now: connections wait in the listeners' backlogs while the threads start.
                    os.write(block_w, b"go")
                if forwarders is not None:
                    forwarders.start()
                if listener is not None:  # on a thread: `rcc run -- true` does not wait for the proxy's imports
                    held = sandbox_pid

                    def end_sandbox() -> None:  # the proxy could not start: never a session without it
                        for victim in (held, pid):
                            with contextlib.suppress(OSError):
                                os.kill(victim, 9)

                    host.serve_proxy_soon(listener, end_sandbox, backend="bwrap")
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
                if overlay_err >= 0:
                    os.close(overlay_err)
            code = _wait(pid)
            return code
        finally:
            if limits is not None and (why := limits.close(code)):
                sys.stderr.write(f"rcc: {why}\n")
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


def _read_child_pid(info_r: int, pid: int, scope: bool = False) -> int:
    """bwrap writes {"child-pid": N, ...} once the namespaces exist (parsed by hand: json is not imported)."""
    data = b""
    while b"}" not in data:
        chunk = os.read(info_r, 4096)
        if not chunk:
            code = _wait(pid)
            if scope:
                raise RccError(
                    f"the sandbox did not start in its systemd scope (exit {code}; systemd-run's or bubblewrap's "
                    "message is above)",
                    hint='run `rcc doctor`; `--memory none --processes none --cpu none` (or [limits] "none") runs '
                    "without cgroup limits",
                    code=ExitCode.SETUP,
                )
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
