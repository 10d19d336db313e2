"""The backend interface: small on purpose. A backend checks whether it can run here, renders a Plan into the
command that runs it, and runs it.

What a backend does, and what it leaves to others:

- policy -> Plan (rcc.compile) is pure and shared: a backend never reads the policy or the machine's files to decide
  what the sandbox holds; everything is in the Plan (mounts, env, network mode, limits, placeholders, devices).
- Every host-side effect of a session is the session host's (rcc.sessionhost.SessionHost): placeholders under the
  project's ledger and lock (shared by every backend: a session of one backend must never remove what a session
  of another still has bound), root's private device nodes and stdio, the descriptors the sandbox reads (file
  data, the seccomp program), and rcc's egress proxy (host.serve_proxy). The runner (rcc.runner.run_session)
  enters one SessionHost per session, with the session's own effects (the git sweeps, the session CA, the
  review layer's end), and hands it to run(); a backend takes its handles from it and never makes those effects
  itself.
- A backend keeps: problems() (cheap checks), render() (pure), prepare() (what must exist before the session
  host is entered: the container image), and in run(): spawn the sandbox, put the proxy listener where the
  sandbox reaches it (rcc.netns.listen_in_netns on Linux), release the command, wait.

The contract run() keeps (the escape catalogue, tests/attacks.py BACKENDS, checks each backend against it):
1. Fail closed: if anything the plan asks for cannot be set up (a placeholder, a device, the proxy listener), the
   command never starts; the error is an RccError with a documented exit code.
2. In proxy mode the command starts only once the listener exists (its first connection never races the proxy),
   and never with any other network.
3. Nothing but stdio and the descriptors the sandbox needs is inherited (rcc's own inherited descriptors could
   lead out of every mount).
4. The exit status is the command's; a signal death is 128+n. Interactive sessions (plan.new_session False) share
   the terminal: Ctrl-C reaches the command, rcc waits. If rcc is killed, the sandbox ends with it.

Adding a backend: a file in rcc/backends/ with a class shaped like Backend below, a branch in
rcc.backends.resolve(), and an entry in tests/attacks.py BACKENDS so every attack runs against it. Optional:
`dry_run_doc(plan) -> dict` adds backend-specific detail to `rcc run --dry-run` (seatbelt: its profile).
"""

from __future__ import annotations

from rcc.record import record

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import Protocol

    from rcc.plan import Plan
    from rcc.sessionhost import SessionHost


@record
class Problem:
    """Something that stops a backend from running here, with the exact fix."""

    message: str
    fix: str
    code: int  # an rcc.errors.ExitCode value (DEPENDENCY or SETUP)
    # What the problem is, for code that acts on it (`rcc doctor` skips what its own checks say better): a
    # stable name, never the message text to match. "" for problems nothing needs to tell apart.
    id: str = ""


if TYPE_CHECKING:

    class Backend(Protocol):
        @property
        def name(self) -> str: ...

        # whether the session host makes placeholder files for the never-writable paths that do not exist
        placeholders: bool

        def problems(self) -> list[Problem]:
            """Cheap checks (binary present, namespaces allowed). Empty list: ready."""
            ...

        def render(self, plan: Plan) -> list[str]:
            """The argv that runs the plan (pure; printed by --dry-run, asserted by tests)."""
            ...

        def prepare(self, plan: Plan) -> None:
            """What must exist before the session host is entered (an image to build); may raise RccError."""
            ...

        def run(self, plan: Plan, host: SessionHost) -> int:
            """Execute the plan with the entered session host's handles; return the command's exit status."""
            ...
