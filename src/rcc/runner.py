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
from rcc.keys import RUN_FLAGS, RUN_OPTIONS, Option, options_help
from rcc.plan import Overlay, Plan
from rcc.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rcc.backends._base import Backend
    from rcc.sessionhost import SessionHost

RUN_HELP_TEMPLATE = """\
usage: rcc run [OPTIONS] [--] COMMAND [ARGS...]

Runs COMMAND in a sandbox: the project (current directory) read-write, the system read-only, a private empty
home with toolchains read-only, secrets hidden, no network except rcc's allowlisting proxy.

options:
{options}
exit status: the command's own; rcc's failures: 64 usage, 66 project, 69 missing dependency, 70 internal,
71 setup missing, 72 review mode unavailable, 78 config; 126 not executable and 127 not found inside the sandbox.
"""
RUN_HELP = RUN_HELP_TEMPLATE.replace("{options}\n", options_help(RUN_OPTIONS) + "\n")


@record(frozen=False)
class RunOptions:
    """rcc's own options for one invocation."""

    project: str = ""
    worktree: str = ""  # --worktree NAME: the session runs in that git worktree of the project (rcc.worktree)
    dry_run: bool = False
    flags: Flags = field(default_factory=Flags)
    extra: dict[str, str] = field(default_factory=dict)  # agent-specific options (e.g. --import-settings)


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
        opt = RUN_FLAGS.get(name)
        if opt is not None and opt.metavar:
            if eq:
                value = inline
            else:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                i += 1
                value = argv[i]
            _apply(opts, opt, name, value)
        elif a in ("-h", "--help"):
            if agent:
                return opts, argv[i:]  # the agent's own --help
            sys.stdout.write(RUN_HELP)
            raise SystemExit(0)
        elif a == "--dry-run":
            opts.dry_run = True
        elif opt is not None and opt.shape.startswith("const:"):
            opts.flags.add(opt.key, opt.shape[len("const:") :], a)
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


def _apply(opts: RunOptions, opt: Option, name: str, value: str) -> None:
    """One valued option into the run options; policy values go through Flags.add (validated like a file's)."""
    f = opts.flags
    if name == "--project":
        opts.project = value
    elif name == "--worktree":
        from rcc.worktree import check_name

        opts.worktree = check_name(value)
    elif opt.shape == "item":
        f.add(opt.key, [value], name)
    elif opt.shape == "value":
        f.add(opt.key, value, name)
    elif opt.shape == "pair":
        host, eq, addr = value.partition("=")
        if not eq or not host:
            raise UsageError(f"{name} takes {opt.metavar} (got {value!r})")
        f.add(opt.key, {host: addr}, name)
    elif opt.shape == "port":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"{name} takes a port number (got {value!r})")
        f.add(opt.key, [int(value)], name)
    elif opt.shape == "env":
        n, eq, v = value.partition("=")
        if eq:
            f.add("environment.set", {n: v}, name)
        else:
            f.add("environment.passthrough", [n], name)
    else:
        raise AssertionError(opt.shape)


def command(argv: list[str]) -> int:
    opts, cmd = parse_run_args(argv)
    if not cmd:
        raise UsageError("no command given", hint="usage: rcc run [OPTIONS] [--] COMMAND [ARGS...]")
    settle_worktree(opts)
    return run_session(opts, Session(argv=tuple(cmd), interactive=sys.stdin.isatty()))


def settle_worktree(opts: RunOptions) -> None:
    """--worktree NAME: make (or find) the worktree on the host and make it the project; the current directory
    moves to the same place inside it, so a session started in a subdirectory starts there."""
    if not opts.worktree:
        return
    from rcc import worktree

    start = os.path.realpath(opts.project or os.getcwd())
    if opts.dry_run:
        path = os.path.join(worktree.worktrees_dir(worktree.main_tree(start)), opts.worktree)
        if not os.path.isdir(path):
            raise RccError(
                f"--dry-run: the worktree {path} does not exist yet",
                hint="run once without --dry-run to create it",
                code=ExitCode.PROJECT,
            )
    main, path = worktree.ensure(start, opts.worktree)
    sys.stderr.write(f"rcc: worktree {path} (branch {opts.worktree})\n")
    here = os.path.realpath(os.getcwd())
    rel = os.path.relpath(here, main) if here.startswith(main.rstrip("/") + "/") else ""
    os.chdir(os.path.join(path, rel) if rel and os.path.isdir(os.path.join(path, rel)) else path)
    opts.project = path


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
    review = eff.policy.workspace == "review"
    if review:
        plan = _review_plan(plan, backend, opts.dry_run, session)
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
    from rcc.sessionhost import SessionHost

    backend.prepare(plan)
    # The session host: every host-side effect, made in order and undone in reverse (rcc.sessionhost); the
    # session's own ones are registered here, the backend takes its handles from it.
    ran = False
    try:
        with SessionHost(plan, placeholders=backend.placeholders) as host:
            _sweep_git(host, project, facts.pointer_git_dir, plan.git_dirs)
            if plan.net.credentials:  # the session CA: made now, removed when the session ends
                from rcc.backends._proxy import prepare_credentials

                host.callback(prepare_credentials(plan))
            code = backend.run(plan, host)
            ran = True
            return code
    finally:
        if review:  # once the placeholders are gone: the layer's manifest fingerprints the project as it stays
            _review_ended(plan, quiet=not ran)


def _sweep_git(host: SessionHost, project: str, pointer_git_dir: str, git_dirs: tuple[str, ...]) -> None:
    """Fifos, devices and links to them in the git dirs (the project's own, and a linked worktree's common and own
    ones, each anchored at its parent, shown by its full path): removed before the session (left by one rcc could
    not sweep after) and after it."""
    from rcc.gitsweep import sweep_git_dirs

    own = (".git", pointer_git_dir) if pointer_git_dir else (".git",)
    groups: list[tuple[str, tuple[str, ...]]] = [(project, own)]
    groups += [(os.path.dirname(d), (os.path.basename(d),)) for d in git_dirs]
    kept = []
    for anchor, rels in groups:
        removed, dir_links = sweep_git_dirs(anchor, rels)
        _report_swept(_shown(project, anchor, removed))
        kept.append(dir_links)

    def after() -> None:
        for (anchor, rels), dir_links in zip(groups, kept, strict=True):
            removed = sweep_git_dirs(anchor, rels, dir_links)[0]
            _report_swept(_shown(project, anchor, removed))

    host.callback(after)


def _review_plan(plan: Plan, backend: Backend, dry_run: bool, session: Session) -> Plan:
    """Review mode: the plan with its layer (a new review directory in rcc's state dir). Fails closed where the
    layer cannot be made: never a session that writes the project directly when review was asked for. bwrap:
    rcc mounts the overlay itself (rcc.workspace.mount); podman: the engine's overlay volume, after the
    backend's own check of what that mount will be (review_problem); docker and seatbelt have none."""
    from rcc import paths
    from rcc.record import replace
    from rcc.workspace import mount as layer

    if backend.name not in ("bwrap", "podman"):
        why = "docker has no overlay volumes with an upper directory rcc could keep; use podman or bwrap"
        raise layer.unavailable(why if backend.name == "docker" else f"the {backend.name} backend has no review mode")
    check = getattr(backend, "review_problem", None)
    if check is not None and not dry_run and (why := check()):
        raise layer.unavailable(why)
    if plan.git_dirs:
        raise layer.unavailable(
            "the project's git directory is outside it (a linked worktree): commits would land in the real "
            "repository; a --worktree session's changes are reviewed with `rcc review --worktree NAME` instead"
        )
    if dry_run:
        base = os.path.join(paths.state_dir(), layer.REVIEWS, plan.session_id)
        ov = Overlay(plan.project, os.path.join(base, "upper"), os.path.join(base, "work"), os.geteuid() != 0)
    else:
        ov = layer.prepare(paths.state_dir(), plan.session_id, plan.project, " ".join(session.argv)[:500])
    return replace(plan, overlay=ov)


def _review_ended(plan: Plan, quiet: bool = False) -> None:
    """The layer after the session: removed if nothing was written (said unless the session never started),
    else kept with its manifest for `rcc review`."""
    from rcc import paths
    from rcc.workspace.mount import remove_if_unchanged

    try:
        if remove_if_unchanged(paths.state_dir(), plan.session_id):  # the quick path: json and shutil not imported
            if not quiet:
                sys.stderr.write("rcc: review mode: the session changed nothing\n")
            return
        from rcc.workspace import layer
        from rcc.workspace.mount import sync_layer

        review = layer.load(paths.state_dir(), plan.session_id)
        layer.write_manifest(review)
        sync_layer(paths.state_dir(), plan.session_id)
    except (OSError, ValueError, RccError) as e:
        sys.stderr.write(f"rcc: warning: review {plan.session_id}: {e}\n")
        return
    sys.stderr.write(
        f"rcc: review mode: the changes wait in review {plan.session_id}: "
        "`rcc review` shows them, `rcc apply` writes them into the project, `rcc discard` drops them\n"
    )


def _shown(project: str, anchor: str, removed: list[str]) -> list[str]:
    return removed if anchor == project else [os.path.join(anchor, p) for p in removed]


def _report_swept(removed: list[str]) -> None:
    for path in removed:
        sys.stderr.write(f"rcc: note: removed {path}: a fifo, device or link to one would hang your git\n")
