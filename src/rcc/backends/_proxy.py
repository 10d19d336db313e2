"""The egress proxy as every backend starts it: rules from the plan, the audit log, denials on stderr."""

from __future__ import annotations

import sys

from rcc.errors import ExitCode, RccError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from rcc.plan import Plan


def start_proxy(plan: Plan, listener: socket.socket) -> Any:
    """Serve `listener` (inside the sandbox's network namespace) with rcc's allowlisting proxy, recording to the
    audit log. Every backend starts its proxy here."""
    from rcc import paths
    from rcc.net.proxy import EgressProxy
    from rcc.net.rules import compile_rules

    rules = compile_rules(plan.net.allow, plan.net.deny, dict(plan.net.resolve))

    def notify(line: str) -> None:
        sys.stderr.write(line.rstrip("\n") + "\n")
        sys.stderr.flush()

    audit = paths.audit_log_file()
    try:
        proxy = EgressProxy(rules, audit, plan.session_id, notify)
    except OSError as e:  # no audit log, no network: never an unrecorded door
        raise RccError(
            f"cannot open the audit log {audit}: {e.strerror}",
            hint="fix the permissions of rcc's state directory, or run with --no-network",
            code=ExitCode.SETUP,
        ) from e
    proxy.start([listener])
    return proxy
