"""Run one command in a container the way `rcc run --backend podman` does, from the real policy pipeline.

    python3 drive.py --engine podman --image IMAGE [--network none|proxy] [--project DIR]
        [--proxy greeting|rcc|broken] [--allow HOST]... [--resolve HOST=ADDR]...
        [--publish SPEC]... [--host-service PORT]... [--limit KEY=VALUE]... -- CMD [ARGS...]

probe() + compile_plan() from the default Policy (what `rcc run` compiles), then ContainerBackend.run_with().
In proxy mode the "proxy" is, by default, a stand-in that answers every connection with PROXY_GREETING, so a test
can see that the listener rcc put into the container's network namespace is the one the command reaches;
`--proxy rcc` serves rcc's real allowlisting proxy (rules from --allow and --resolve); `--proxy broken` fails to
start the proxy (RccError), so a test can see that the command then never runs. Exit status: the command's; rcc
errors print like rcc does and exit with rcc's code.
Runs as whichever user starts it (the tests use runuser for the rootless variant).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

from rcc.backends.container import ContainerBackend
from rcc.compile import Session, compile_plan, interesting_paths
from rcc.errors import RccError
from rcc.plan import Plan
from rcc.policy import NetworkPolicy, Policy
from rcc.probe import probe
from rcc.sessionhost import SessionHost

PROXY_GREETING = b"rcc-test-proxy-here\n"


class GreetingServer:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(PROXY_GREETING)

    def close(self) -> None:
        self.listener.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="podman")
    ap.add_argument("--image", required=True)
    ap.add_argument("--network", choices=("none", "proxy"), default="none")
    ap.add_argument("--project", default=os.getcwd())
    ap.add_argument("--proxy", choices=("greeting", "rcc", "broken"), default="greeting")
    ap.add_argument("--allow", action="append", default=[])
    ap.add_argument("--resolve", action="append", default=[])
    ap.add_argument("--publish", action="append", default=[])
    ap.add_argument("--host-service", action="append", default=[], type=int)
    ap.add_argument("--limit", action="append", default=[], help="KEY=VALUE: [limits] key (memory, tmp, ...)")
    ap.add_argument("--print-argv", action="store_true")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    resolve = tuple(tuple(r.split("=", 1)) for r in a.resolve)
    net = NetworkPolicy(
        mode="allowlist" if a.network == "proxy" else "none",  # type: ignore[arg-type]
        allow=tuple(a.allow),
        resolve=resolve,  # type: ignore[arg-type]
        publish=tuple(a.publish),
        host_services=tuple(a.host_service),
    )
    from rcc.config import validate
    from rcc.policy import LimitsPolicy
    from rcc.record import replace

    lim = LimitsPolicy()
    for kv in a.limit:
        k, _, v = kv.partition("=")
        lim = replace(lim, **{k: validate(f"limits.{k}", v, "--limit")})
    policy = Policy(network=net, limits=lim)
    project = os.path.realpath(a.project)
    facts = probe(project, interesting_paths(policy, project))
    plan: Plan = compile_plan(policy, facts, Session(argv=tuple(argv)), session_id=os.urandom(4).hex())
    backend = ContainerBackend(a.engine, a.image)
    if a.print_argv:
        sys.stdout.write("\0".join(backend.render(plan)))
        return 0

    def broken(_plan: Plan, listener: socket.socket) -> GreetingServer:
        listener.close()
        raise RccError("the test's proxy failed to start (drive.py --proxy broken)")

    try:
        backend.prepare(plan)
        with SessionHost(plan) as host:  # as rcc.runner does
            if a.proxy == "rcc":
                return backend.run(plan, host)
            if a.proxy == "broken":
                return backend.run_with(plan, host, broken)
            return backend.run_with(plan, host, lambda _plan, listener: GreetingServer(listener))
    except RccError as e:
        sys.stderr.write(f"rcc: error: {e.message}\n")
        if e.hint:
            sys.stderr.write(f"rcc: hint: {e.hint}\n")
        return int(e.code)


if __name__ == "__main__":
    raise SystemExit(main())
