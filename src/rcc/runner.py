"""`rcc run` and the shared session runner the agent commands use.

Option convention: rcc's options come first; the first non-option (or whatever follows `--`) starts the command.
For agents, the first *unknown* option also starts the agent's own arguments.
"""

from __future__ import annotations

import os
import sys

from rcc.compile import Session
from rcc.config import Flags, Layer
from rcc.errors import ExitCode, RccError, UsageError
from rcc.record import field, record

RUN_HELP = """\
usage: rcc run [OPTIONS] [--] COMMAND [ARGS...]

Runs COMMAND in a sandbox: the project (current directory) read-write, the system read-only, a private empty
home with toolchains read-only, secrets hidden, no network except rcc's allowlisting proxy.

options:
  --project DIR        the project directory (default: the current directory)
  --allow RULE         allow a host through the proxy: example.com, *.example.com, host:port, 10.0.0.1,
                       [::1]:8080, or a preset like @pypi (repeatable)
  --deny RULE          deny a host (deny wins; repeatable)
  --resolve HOST=ADDR  resolve HOST to ADDR in the proxy (like curl --resolve; repeatable)
  --no-network         no proxy at all: loopback only (network.mode = "none")
  --publish [HOSTADDR:]HOSTPORT[:PORT]
                       forward the host's HOSTADDR:HOSTPORT (default 127.0.0.1) to PORT inside the sandbox,
                       e.g. a dev server: --publish 5173 (repeatable; network.publish)
  --host-service PORT  let the sandbox reach the host's loopback service on PORT at its own 127.0.0.1:PORT,
                       [::1]:PORT and localhost:PORT, e.g. postgres: --host-service 5432 (repeatable)
  --memory SIZE        memory limit for the session: 4G, 512M, 75% (of RAM; default) or none (limits.memory)
  --processes N        process limit (default 4096) or none (limits.processes)
  --cpu N              CPUs the session may use, e.g. 2 or 0.5 (default none) (limits.cpu)
  --tmp SIZE           size of each private tmpfs: /tmp, the home, /var/tmp, /dev/shm (default 2G) (limits.tmp)
  --ro PATH            also mount PATH read-only (repeatable)
  --rw PATH            also mount PATH read-write (repeatable)
  --hide PATH          hide PATH even if a parent is visible (repeatable)
  --env NAME           pass variable NAME (or PREFIX_*) from rcc's environment (repeatable)
  --env NAME=VALUE     set NAME inside the sandbox (repeatable)
  --backend NAME       bwrap (default on Linux), seatbelt (default on macOS), podman or docker
  --image NAME         the container image for podman/docker (default: rcc's own agent image)
  --dry-run            print the sandbox plan and the backend command as JSON; run nothing
  -h, --help           this help

exit status: the command's own; rcc's failures: 64 usage, 66 project, 69 missing dependency, 70 internal,
71 setup missing, 78 config; 126 not executable and 127 not found inside the sandbox.
"""


@record(frozen=False)
class RunOptions:
    """rcc's own options for one invocation."""

    project: str = ""
    dry_run: bool = False
    flags: Flags = field(default_factory=Flags)
    extra: dict[str, str] = field(default_factory=dict)  # agent-specific options (e.g. --import-settings)


_VALUE_OPTS = {
    "--image",
    "--project",
    "--allow",
    "--deny",
    "--resolve",
    "--ro",
    "--rw",
    "--hide",
    "--env",
    "--backend",
    "--network",
    "--publish",
    "--host-service",
    "--memory",
    "--processes",
    "--cpu",
    "--tmp",
}


def parse_run_args(
    argv: list[str], agent: bool = False, agent_flags: frozenset[str] = frozenset()
) -> tuple[RunOptions, list[str]]:
    opts = RunOptions()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return opts, argv[i + 1 :]
        if not a.startswith("-") or a == "-":
            return opts, argv[i:]
        name, eq, inline = a.partition("=")
        if name in _VALUE_OPTS:
            if eq:
                value = inline
            else:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                i += 1
                value = argv[i]
            _apply(opts, name, value)
        elif a in ("-h", "--help"):
            if agent:
                return opts, argv[i:]  # the agent's own --help
            sys.stdout.write(RUN_HELP)
            raise SystemExit(0)
        elif a == "--dry-run":
            opts.dry_run = True
        elif a == "--no-network":
            opts.flags.add("network.mode", "none", a)
        elif a in agent_flags:
            opts.extra[a] = "1"
        elif agent:
            return opts, argv[i:]  # first unknown option: the agent's
        else:
            raise UsageError(
                f"unknown option {a!r}",
                hint="rcc's options come before the command; "
                "use `rcc run -- CMD` if CMD starts with '-'; see `rcc run --help`",
            )
        i += 1
    return opts, []


def _apply(opts: RunOptions, name: str, value: str) -> None:
    f = opts.flags
    if name == "--project":
        opts.project = value
    elif name == "--allow":
        f.add("network.allow", [value], name)
    elif name == "--deny":
        f.add("network.deny", [value], name)
    elif name == "--resolve":
        host, eq, addr = value.partition("=")
        if not eq or not host:
            raise UsageError(f"--resolve takes HOST=ADDR (got {value!r})")
        f.add("network.resolve", {host: addr}, name)
    elif name == "--network":
        f.add("network.mode", value, name)
    elif name == "--publish":
        f.add("network.publish", [value], name)
    elif name == "--host-service":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"--host-service takes a port number (got {value!r})")
        f.add("network.host_services", [int(value)], name)
    elif name in ("--memory", "--processes", "--cpu", "--tmp"):
        f.add(f"limits.{name[2:]}", value, name)
    elif name == "--ro":
        f.add("filesystem.read_only", [value], name)
    elif name == "--rw":
        f.add("filesystem.read_write", [value], name)
    elif name == "--hide":
        f.add("filesystem.hide", [value], name)
    elif name == "--env":
        n, eq, v = value.partition("=")
        if eq:
            f.add("environment.set", {n: v}, name)
        else:
            f.add("environment.passthrough", [n], name)
    elif name == "--backend":
        f.add("backend", value, name)
    elif name == "--image":
        f.add("container.image", value, name)


def command(argv: list[str]) -> int:
    opts, cmd = parse_run_args(argv)
    if not cmd:
        raise UsageError("no command given", hint="usage: rcc run [OPTIONS] [--] COMMAND [ARGS...]")
    return run_session(opts, Session(argv=tuple(cmd), interactive=sys.stdin.isatty()))


def run_session(opts: RunOptions, session: Session, layers: tuple[Layer, ...] = ()) -> int:
    """Load the policy, check the machine, compile the plan and run it with the chosen backend."""
    from rcc import config
    from rcc.backends import resolve
    from rcc.compile import compile_plan, interesting_paths
    from rcc.probe import probe

    project = os.path.abspath(opts.project or os.getcwd())
    if not os.path.isdir(project):
        raise RccError(
            f"project directory {project} does not exist",
            hint="pass --project DIR with an existing directory",
            code=ExitCode.PROJECT,
        )
    project = os.path.realpath(project)
    eff = config.load(project, opts.flags.contributions, layers)
    for n in eff.notices:
        sys.stderr.write(f"rcc: note: {n}\n")
    backend, _why = resolve(eff.policy.backend, eff.policy.container_image or None)
    if not opts.dry_run:
        from rcc.paths import missing_setup

        if hint := missing_setup():
            sys.stderr.write(f"rcc: note: {hint}\n")
        problems = backend.problems()
        if problems:
            p = problems[0]
            raise RccError(p.message, hint=p.fix, code=p.code)
    extra = [b.src for b in session.binds]
    facts = probe(project, interesting_paths(eff.policy, project, extra))
    plan = compile_plan(eff.policy, facts, session, session_id=os.urandom(4).hex())
    if opts.dry_run:
        import json

        doc = json.loads(plan.to_json())
        bdoc: dict[str, object] = {"name": backend.name, "argv": backend.render(plan)}
        describe = getattr(backend, "dry_run_doc", None)  # seatbelt: the profile and the environment it runs with
        if describe is not None:
            bdoc.update(describe(plan))
        doc["backend"] = bdoc
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    return backend.run(plan)
