"""macOS backend: render a Plan into a Seatbelt profile and run the command under /usr/bin/sandbox-exec.

Invariants:
1. render() is pure (the profile text comes from seatbelt_profile.render_profile); run() makes the session's
   directory, writes the profile there (mode 0600, created new, never through a link) and passes its path with
   `-f`: never the profile itself in argv (long profiles exceed ARG_MAX), never `(with no-sandbox)`.
2. The session's directory is under rcc's state dir, which the profile denies; only its home/ and tmp/ are
   re-allowed, so the sandbox can neither read nor replace its own profile. It is removed after the session.
3. The command starts only after the proxy's listener exists (on the host's loopback, on a port chosen by the
   kernel); connections made before the proxy thread runs wait in the listener's backlog. If the proxy cannot
   be set up, the command does not start.
4. sandbox-exec is named by its absolute path (/usr/bin/sandbox-exec): a `sandbox-exec` earlier on PATH is
   never run. RCC_SANDBOX_EXEC (an absolute path) replaces it for tests on Linux, where no Seatbelt exists; on
   macOS it is ignored, so no environment variable (a project's .envrc, say) can swap the sandbox for a
   program that does not sandbox.
5. No descriptor but stdio reaches the sandbox (an inherited directory descriptor bypasses path rules).
"""

from __future__ import annotations

import os
import sys

from rcc.backends._base import Problem
from rcc.backends.seatbelt_profile import Layout, env_for, home_links, layout_for, render_profile
from rcc.errors import ExitCode, RccError
from rcc.plan import FileData, Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from rcc.sessionhost import SessionHost

SANDBOX_EXEC = "/usr/bin/sandbox-exec"


class SeatbeltBackend:
    name = "seatbelt"
    placeholders = False  # the profile denies creating never-writable paths itself (rcc.backends.seatbelt_profile)

    def __init__(self, env: Mapping[str, str] | None = None, platform: str = sys.platform) -> None:
        self.env = dict(os.environ if env is None else env)
        self.platform = platform
        override = self.env.get("RCC_SANDBOX_EXEC", "") if platform != "darwin" else ""
        self.sandbox_exec = override or SANDBOX_EXEC

    def problems(self) -> list[Problem]:
        if not os.path.isabs(self.sandbox_exec):
            return [
                Problem(f"RCC_SANDBOX_EXEC must be an absolute path, got {self.sandbox_exec!r}", "", ExitCode.CONFIG)
            ]
        if self.platform != "darwin" and self.sandbox_exec == SANDBOX_EXEC:
            return [
                Problem(
                    "the seatbelt backend runs only on macOS",
                    "use the default backend (bwrap) here; `rcc run --backend seatbelt --dry-run -- CMD` shows "
                    "the profile a Mac would run",
                    ExitCode.DEPENDENCY,
                )
            ]
        if not os.access(self.sandbox_exec, os.X_OK):
            return [
                Problem(f"{self.sandbox_exec} not found", "it ships with macOS; check the system", ExitCode.DEPENDENCY)
            ]
        return []

    # ------------------------------------------------------------------------------------------- render
    def layout(self, plan: Plan, proxy_port: int | None = None) -> Layout:
        from rcc import paths

        port = plan.net.proxy_port if proxy_port is None else proxy_port
        real = os.path.realpath  # Seatbelt matches resolved paths (/tmp is /private/tmp on macOS)
        return layout_for(plan, real(paths.state_dir(self.env)), real(paths.config_dir(self.env)), port)

    def render(self, plan: Plan, layout: Layout | None = None) -> list[str]:
        lay = layout or self.layout(plan)
        argv = [self.sandbox_exec, "-f", lay.profile, "--"]
        # /usr/bin/env gives the shell's answer for a missing (127) or non-executable (126) command. A first word
        # with "=" would be taken as an assignment, so it goes direct.
        if plan.argv and "=" not in plan.argv[0]:
            argv += ["/usr/bin/env", "--"]
        return argv + list(plan.argv)

    def dry_run_doc(self, plan: Plan) -> dict[str, object]:
        lay = self.layout(plan)
        return {"profile_path": lay.profile, "profile": render_profile(plan, lay), "env": env_for(plan, lay)}

    # ------------------------------------------------------------------------------------------- run
    def prepare(self, plan: Plan) -> None:
        problems = self.problems()
        if problems:
            raise RccError(problems[0].message, hint=problems[0].fix, code=problems[0].code)

    def run(self, plan: Plan, host: SessionHost) -> int:
        self.prepare(plan)
        listener = None
        port = 0
        if plan.net.mode == "proxy":
            import socket

            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            host.callback(listener.close)  # the host undoes in reverse: after the proxy's close
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            port = listener.getsockname()[1]
        lay = self.layout(plan, port)
        sfd = _make_session_dir(plan, lay)
        host.callback(lambda: _remove_session_dir(lay, sfd))
        host.callback(lambda: _restore_links(plan, lay))  # before the session dir goes
        return self._run(plan, lay, listener, host)

    def _run(self, plan: Plan, lay: Layout, listener: Any, host: SessionHost) -> int:
        import signal
        import subprocess

        argv = self.render(plan, lay)
        env = env_for(plan, lay)
        from rcc import paths
        from rcc.backends.seatbelt_log import DenialWatcher

        # started first: a denial in the command's first moments is recorded too
        watcher = DenialWatcher(
            lay.tag, plan.session_id, paths.audit_log_file(self.env), self.env, not plan.new_session
        )
        try:
            # close_fds: only stdio reaches the sandbox. start_new_session (non-interactive): setsid, so no
            # controlling terminal (no TIOCSTI into the user's shell) and one process group to end at the close.
            # restore_signals: Python ignores SIGPIPE/SIGXFSZ, and an ignored signal stays ignored across exec.
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=plan.cwd,
                close_fds=True,
                start_new_session=plan.new_session,
                restore_signals=True,
            )
        except OSError as e:
            watcher.close(0)
            raise RccError(f"cannot start {self.sandbox_exec}: {e}", code=ExitCode.DEPENDENCY) from e
        interactive = not plan.new_session
        # Interactive: the terminal sends Ctrl-C to its whole foreground group, the agent included; rcc stays.
        old: dict[int, Any] = {}
        if interactive:
            old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}

        def forward(sig: int, _frame: object) -> None:  # rcc killed: the sandbox ends with it
            _end(proc.pid, plan.new_session, signal.SIGKILL)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, forward)
        try:
            if listener is not None:
                try:
                    host.serve_proxy(listener, backend="seatbelt")  # closed when the session host is left
                except BaseException:
                    _end(proc.pid, plan.new_session, signal.SIGKILL)
                    proc.wait()
                    raise
            while True:
                try:
                    rc = proc.wait()
                    break
                except KeyboardInterrupt:  # non-interactive: Ctrl-C reached the sandbox too; it ends
                    continue
            return rc if rc >= 0 else 128 - rc
        finally:
            if plan.new_session:
                _end(proc.pid, True, signal.SIGKILL)  # what it left behind in its process group
            watcher.close()
            for s, h in old.items():
                signal.signal(s, h)


def _end(pid: int, group: bool, sig: int) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        pass


def _make_session_dir(plan: Plan, lay: Layout) -> int:
    """<state>/seatbelt/<sid>/{home,tmp,files,profile.sb}; nothing followed through a link (rcc.hostfs)."""
    from rcc import hostfs
    from rcc.backends.seatbelt_profile import _file_name

    root = hostfs.open_state(lay.state_dir, "seatbelt", create=True)
    sid = os.path.basename(lay.session_dir)
    try:
        if hostfs.lstat_at(root, sid) is not None:
            raise RccError(f"session directory {lay.session_dir} exists already", code=ExitCode.SETUP)
        sfd = hostfs.walk_dir(root, sid, create=True, shown=lay.session_dir)
    finally:
        os.close(root)
    try:
        for sub in ("home", "tmp", "files"):
            os.close(hostfs.walk_dir(sfd, sub, create=True, shown=f"{lay.session_dir}/{sub}"))
        for link, target in home_links(plan, lay):
            _make_link(lay, link, target)
        files = hostfs.walk_dir(sfd, "files")
        try:
            for m in plan.mounts:
                if isinstance(m, FileData):
                    hostfs.create_file(files, _file_name(m.dest), m.content.encode(), 0o400)
        finally:
            os.close(files)
        hostfs.create_file(sfd, "profile.sb", render_profile(plan, lay).encode(), 0o600)
    except BaseException:
        _remove_session_dir(lay, sfd)
        raise
    return sfd


def _make_link(lay: Layout, link: str, target: str) -> None:
    """A symlink at `link` (under rcc's state dir: the session's home, or a mount point the agent state made),
    parents made without following links. An empty mount-point directory is replaced by the link and put back
    by _restore_links()."""
    from rcc import hostfs

    parent, name = os.path.split(link)
    pfd = hostfs.open_dir(lay.state_dir, hostfs.split_under(lay.state_dir, parent), create=True)
    try:
        if hostfs.lstat_at(pfd, name) is not None:
            try:  # only an empty directory (a mount point) gives way; anything else stops the session
                os.rmdir(name, dir_fd=pfd)
            except OSError as e:
                raise RccError(
                    f"{link} is in the way of the sandbox's home link: {e.strerror}", code=ExitCode.SETUP
                ) from e
        os.symlink(target, name, dir_fd=pfd)
    finally:
        os.close(pfd)


def _restore_links(plan: Plan, lay: Layout) -> None:
    """Put the agent state's mount points back as empty directories (rcc.agents.state expects them)."""
    import contextlib
    import stat

    from rcc import hostfs

    for link, _target in home_links(plan, lay):
        if hostfs.split_under(lay.state_dir, link).startswith("seatbelt/"):
            continue  # inside the session dir: removed with it
        parent, name = os.path.split(link)
        with contextlib.suppress(RccError, OSError):
            pfd = hostfs.open_dir(lay.state_dir, hostfs.split_under(lay.state_dir, parent))
            try:
                st = hostfs.lstat_at(pfd, name)
                if st is not None and stat.S_ISLNK(st.st_mode):
                    os.unlink(name, dir_fd=pfd)
                    os.mkdir(name, 0o700, dir_fd=pfd)
            finally:
                os.close(pfd)


def _remove_session_dir(lay: Layout, sfd: int) -> None:
    from rcc import hostfs

    os.close(sfd)
    root = hostfs.open_state(lay.state_dir, "seatbelt", create=False)
    try:
        hostfs.remove_tree(root, os.path.basename(lay.session_dir))
    finally:
        os.close(root)
