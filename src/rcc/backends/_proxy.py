"""The egress proxy as every backend starts it: rules from the plan, the audit log, denials on stderr."""

from __future__ import annotations

import os
import shlex
import sys

from rcc.errors import ExitCode, RccError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

    from rcc.plan import Plan


class SessionProxy:
    """The running proxy plus its denial notices. A non-interactive session gets each notice on stderr at once
    (the proxy rate-limits them); an interactive one owns the terminal (a full-screen agent UI), so its notices
    are kept and printed after it ends, with the command that shows them all."""

    MAX_DEFERRED = 50

    def __init__(self, plan: Plan) -> None:
        self.defer = not plan.new_session
        self.session = plan.session_id
        self.deferred: list[str] = []
        self.dropped = 0
        self.proxy: Any = None
        self.control: Any = None  # rcc.live.server.ControlServer: `rcc allow/deny/sessions` reach it
        self.learn = plan.net.on_unknown == "learn"

    def notify(self, line: str) -> None:  # runs on the proxy's thread
        if not self.defer:
            sys.stderr.write(line.rstrip("\n") + "\n")
            sys.stderr.flush()
        elif len(self.deferred) < self.MAX_DEFERRED:
            self.deferred.append(line.rstrip("\n"))
        else:
            self.dropped += 1

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.proxy is not None:
            self.proxy.close()
        if self.learn:
            n = len(self.control.learned) if self.control is not None else 0
            sys.stderr.write(
                f"rcc: learn mode ended: {n} host(s) no rule covered were let through and recorded; "
                f"`rcc policy suggest --session {self.session}` turns them into an allow list\n"
            )
            sys.stderr.flush()
        if self.deferred:
            sys.stderr.write("".join(f"{line}\n" for line in self.deferred))
            if self.dropped:
                sys.stderr.write(f"rcc: ... and {self.dropped} more\n")
            sys.stderr.write(f"rcc: every decision of this session: rcc log --session {self.session}\n")
            sys.stderr.flush()


def check_audit_log() -> None:
    """Open (creating) the audit log the way rcc.net.audit.AuditLog does, and close it: an unwritable log or a
    planted link is refused now, before the proxy's imports (the proxy opens it again itself, as safely)."""
    from rcc import hostfs, paths

    audit = paths.audit_log_file()
    try:
        dfd = hostfs.open_state(os.path.dirname(os.path.abspath(audit)))
        try:
            fd = hostfs.open_file(dfd, os.path.basename(audit), os.O_WRONLY | os.O_APPEND | os.O_CREAT, shown=audit)
            os.close(fd)
        finally:
            os.close(dfd)
    except OSError as e:  # no audit log, no network: never an unrecorded door
        raise RccError(
            f"cannot open the audit log {audit}: {e.strerror}",
            hint="fix the permissions of rcc's state directory, or run with --no-network",
            code=ExitCode.SETUP,
        ) from e


def load() -> None:
    """Import what start_proxy() needs, with no other effect: the proxy's start is mostly its imports."""
    import rcc.live.server
    import rcc.live.sessions
    import rcc.net.audit
    import rcc.net.decider
    import rcc.net.proxy
    import rcc.net.rules  # noqa: F401


START_GRACE = 0.025  # seconds before the proxy's imports start, unless a connection comes first


class ProxyStarter:
    """start_proxy() on a thread, so that a session does not wait for the proxy's imports (they are most of its
    start, ~25 ms on a quiet machine): the command is already released and its connections wait in the
    listener's backlog until the proxy serves them, exactly as when the proxy starts in the foreground.

    finish(), when the session has ended: a started proxy is closed (its notices printed); a proxy still
    importing is cancelled (it never opens the audit log, the control channel or a session record, and the
    listener is closed; nobody was served, so there is nothing to record); a start that failed raises its
    error. A failed start first calls `on_failure` (the backend kills the sandbox): never a session that could
    connect without rcc's recorded proxy. The thread is a daemon: a cancelled import does not hold rcc's exit."""

    def __init__(self, plan: Plan, listener: socket.socket, backend: str, on_failure: Callable[[], None]) -> None:
        import threading

        check_audit_log()  # the usual way a start fails, found here in the foreground: the session never starts
        self._plan, self._listener, self._backend, self._on_failure = plan, listener, backend, on_failure
        self._lock = threading.Lock()
        self._cancelled = False
        self.proxy: SessionProxy | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="rcc-proxy-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        import select

        # A short grace first: a session that ends within it (`rcc run -- true`) never pays for the imports,
        # which would otherwise contend for the GIL with rcc's own end; the first connection cuts it short.
        # An agent's first request comes long after (its runtime starts first), and finds the proxy ready.
        select.select([self._listener], [], [], START_GRACE)
        if self._cancelled:
            with self._lock:
                self._listener.close()
            return
        try:
            load()
        except BaseException as e:  # reported by finish()
            with self._lock:
                self._fail(e)
            return
        with self._lock:  # all or nothing against finish(): either cancelled before any effect, or started
            if self._cancelled:
                self._listener.close()
                return
            try:
                self.proxy = start_proxy(self._plan, self._listener, self._backend)
            except BaseException as e:
                self._fail(e)

    def _fail(self, e: BaseException) -> None:
        self.error = e
        self._listener.close()
        if not self._cancelled:
            self._on_failure()

    def finish(self) -> None:
        with self._lock:
            self._cancelled = True
            proxy, error = self.proxy, self.error
        if proxy is None and error is None and self._thread.is_alive():
            # still importing: hand the GIL back to rcc's own exit within 0.5 ms instead of the 5 ms default
            sys.setswitchinterval(0.0005)
        if proxy is not None:
            proxy.close()
        if error is not None:
            raise error


CA_KEY = "ca-key.pem"  # 0600, in plan.net.ca_dir (rcc's state directory; never bound into the sandbox)
CA_CERT = "ca-cert.pem"
CA_BUNDLE = "ca-bundle.pem"  # the system's roots + the session CA: bound read-only at rcc.compile.CA_BUNDLE


def credential_values(plan: Plan, env: dict[str, str] | None = None) -> dict[str, str]:
    """name -> the real value, from rcc's own environment. Refuses (exit 78) a value that cannot go into an
    HTTP header, before anything starts; the message names the variable, never the value."""
    from rcc.net.credentials import value_problem

    env = dict(os.environ) if env is None else env
    out = {}
    for c in plan.net.credentials:
        value = env.get(c.env, "")
        problem = value_problem(value)
        if problem:
            raise RccError(
                f"credential {c.name}: ${c.env} cannot be injected: {problem}",
                hint=f"fix ${c.env}, or remove [credentials.{c.name}] from the config",
                code=ExitCode.CONFIG,
            )
        out[c.name] = value
    return out


def prepare_credentials(plan: Plan) -> Callable[[], None]:
    """Before the sandbox starts: make the session CA and write, in plan.net.ca_dir (0700), its key (0600: the
    proxy loads it) and the bundle the sandbox trusts. Returns the cleanup that removes the directory (call it
    when the session has ended). Imports `cryptography`: only sessions with credentials pay for it."""
    import shutil

    from rcc import hostfs

    credential_values(plan)
    try:
        from rcc.net.sessionca import SessionCA, system_bundle
    except ImportError as e:
        names = ", ".join(c.name for c in plan.net.credentials)
        raise RccError(
            f"credentials ({names}) need the Python package `cryptography` to make the session CA: {e}",
            hint="install it (apt install python3-cryptography, or pip install 'rcc[credentials]'), or remove the "
            "[credentials] tables",
            code=ExitCode.DEPENDENCY,
        ) from e
    d = plan.net.ca_dir
    parent = os.path.dirname(d)
    try:
        pfd = hostfs.open_state(os.path.dirname(parent), os.path.basename(parent))  # no links on the way
        os.close(pfd)
        shutil.rmtree(d, ignore_errors=True)  # a session id is random: anything here is stale
        os.mkdir(d, 0o700)
        ca = SessionCA.create(plan.session_id)
        bundle = system_bundle()
        if bundle and not bundle.endswith(b"\n"):
            bundle += b"\n"
        for name, data, mode in (
            (CA_KEY, ca.key_pem(), 0o600),
            (CA_CERT, ca.cert_pem(), 0o644),
            (CA_BUNDLE, bundle + ca.cert_pem(), 0o644),
        ):
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as e:
        shutil.rmtree(d, ignore_errors=True)
        raise RccError(
            f"cannot prepare the session CA in {d}: {e.strerror or e}",
            hint="fix the permissions of rcc's state directory, or remove the [credentials] tables",
            code=ExitCode.SETUP,
        ) from e

    def cleanup() -> None:
        shutil.rmtree(d, ignore_errors=True)

    return cleanup


def _terminator(plan: Plan) -> Any:
    """The proxy's terminating side for the plan's credentials (rcc.net.terminate), the CA from ca_dir."""
    from rcc.net.credentials import Credential, CredentialSet
    from rcc.net.sessionca import SessionCA
    from rcc.net.terminate import Terminator

    values = credential_values(plan)
    d = plan.net.ca_dir
    with open(os.path.join(d, CA_CERT), "rb") as f:
        cert = f.read()
    with open(os.path.join(d, CA_KEY), "rb") as f:
        key = f.read()
    ca = SessionCA.from_pem(cert, key)
    creds = [
        Credential(c.name, c.env, c.hosts, c.placeholder, values[c.name], c.requests) for c in plan.net.credentials
    ]
    return Terminator(ca, CredentialSet(creds))


def start_proxy(plan: Plan, listener: socket.socket, backend: str = "") -> SessionProxy:
    """Serve `listener` (inside the sandbox's network namespace) with rcc's allowlisting proxy, recording to the
    audit log, with the session's control channel (rcc.live: `rcc allow/deny` change its rules while it runs).
    Every backend starts its proxy here; close() the result when the sandbox has ended."""
    from rcc import paths
    from rcc.net.audit import utc_now
    from rcc.net.decider import RuleDecider
    from rcc.net.proxy import EgressProxy
    from rcc.net.rules import compile_rules

    rules = compile_rules(plan.net.allow, plan.net.deny, dict(plan.net.resolve))
    # after the proxy: what rcc.live adds to `rcc run` is its own modules (~4 ms); asyncio and json are the proxy's
    from rcc.live.server import ControlServer
    from rcc.live.sessions import SessionRecord

    decider = RuleDecider(rules, learn=plan.net.on_unknown == "learn")
    if decider.learn:
        sys.stderr.write(
            "rcc: learn mode: hosts no rule covers are let through to public addresses and recorded (deny rules "
            "and the address guards stay on); end with `rcc policy suggest`\n"
        )
        sys.stderr.flush()
    handle = SessionProxy(plan)
    audit = paths.audit_log_file()
    sid = plan.session_id or os.urandom(4).hex()
    rec = SessionRecord(
        sid, os.getpid(), plan.project, shlex.join(plan.argv), backend, utc_now(), f"{sid}.sock", plan.branch
    )
    control = ControlServer(
        rec,
        decider,
        allow=plan.net.allow,
        deny=plan.net.deny,
        resolve=dict(plan.net.resolve),
        state_dir=paths.state_dir(),
        ask_timeout=plan.net.ask_timeout,
    )
    if plan.net.on_unknown == "ask":  # compile allows it only for a session on a terminal
        decider.asker = control.broker
    try:
        handle.proxy = EgressProxy(
            rules,
            audit,
            plan.session_id,
            handle.notify,
            decider=decider,
            on_record=control.on_record,
            terminator=_terminator(plan) if plan.net.credentials else None,
        )
    except OSError as e:  # no audit log, no network: never an unrecorded door
        raise RccError(
            f"cannot open the audit log {audit}: {e.strerror}",
            hint="fix the permissions of rcc's state directory, or run with --no-network",
            code=ExitCode.SETUP,
        ) from e
    handle.proxy.start([listener])
    try:
        if control.start():
            handle.control = control
    except (OSError, RccError) as e:  # the session still runs, with its fixed policy: say so
        handle.notify(f"rcc: note: no control channel for this session (`rcc allow` cannot reach it): {e}")
    return handle
