"""The backend interface: small on purpose. A backend checks whether it can run here and executes a Plan."""

from __future__ import annotations

from rcc.record import record

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import Protocol

    from rcc.plan import Plan


@record
class Problem:
    """Something that stops a backend from running here, with the exact fix."""

    message: str
    fix: str
    code: int  # an rcc.errors.ExitCode value (DEPENDENCY or SETUP)


if TYPE_CHECKING:

    class Backend(Protocol):
        @property
        def name(self) -> str: ...

        def problems(self) -> list[Problem]:
            """Cheap checks (binary present, namespaces allowed). Empty list: ready."""
            ...

        def render(self, plan: Plan) -> list[str]:
            """The argv that runs the plan (pure; printed by --dry-run, asserted by tests)."""
            ...

        def run(self, plan: Plan) -> int:
            """Execute the plan; return the command's exit status."""
            ...
