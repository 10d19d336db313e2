"""`rcc claude|codex|gemini|aider [OPTIONS] [--] [AGENT ARGS...]` and `rcc shell [OPTIONS] [--agent NAME]`.

rcc's own options come first (the same as `rcc run`); the first unknown argument, or whatever follows `--`,
goes to the agent. Agent-only options: --import-settings, --pass-api-key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from rcc.errors import UsageError

TYPE_CHECKING = False  # typing costs `rcc claude` an import; mypy still sees the block
if TYPE_CHECKING:
    from rcc.agents.state import AgentRun
    from rcc.compile import Session
    from rcc.config import Layer
    from rcc.runner import RunOptions

AGENT_FLAGS = frozenset({"--import-settings", "--pass-api-key", "--rcc-help"})

AGENT_HELP = """\
usage: rcc AGENT [OPTIONS] [--] [AGENT ARGS...]      AGENT: claude, codex, gemini, aider

Runs the agent in the sandbox on the current project, with its profile: its install read-only, its state in
rcc's own directory (mounted at ~/.claude, ~/.codex, ...), its API keys, and its API host allowed.
rcc's options come first; the first unknown option (or whatever follows `--`) goes to the agent, so
`rcc claude --help` is Claude Code's help.

agent options:
  --import-settings    copy your settings (e.g. ~/.claude/settings.json, CLAUDE.md, commands, agents) into rcc's
                       settings for this agent first; never credentials or history. Each session starts from
                       a fresh copy of them: only the login (and this project's history) carries over
  --pass-api-key       claude: put ANTHROPIC_API_KEY itself into the sandbox, as before [credentials]; by default
                       the sandbox gets a placeholder and rcc's proxy adds the key for the API host only
  --rcc-help           this help
  and every `rcc run` option: --allow, --deny, --resolve, --no-network, --ro, --rw, --hide, --env, --project,
  --worktree NAME (a git worktree of the project on branch NAME, made if missing: agents side by side),
  --backend, --dry-run (see `rcc run --help`)

exit status: the agent's own; 69 when the agent (or bubblewrap) is not installed, with the install command.
"""


def _flag_env(opts: RunOptions) -> dict[str, str]:
    """Variables the user set with `--env NAME=VALUE`: they count when deriving the agent's endpoints."""
    out: dict[str, str] = {}
    for c in opts.flags.contributions:
        if c.key == "environment.set":
            items = c.value.items() if isinstance(c.value, Mapping) else c.value
            out.update({str(k): str(v) for k, v in items})
    return out


def build_session(
    name: str,
    opts: RunOptions,
    cmd: list[str],
    env: Mapping[str, str],
    *,
    interactive: bool,
    argv0: tuple[str, ...] | None = None,
) -> tuple[Session, AgentRun]:
    """The Session for agent `name`: its executable and install tree, state binds, env, endpoints; and its
    fresh agent state (state.finish() it when the session ends).

    `argv0` replaces the agent's executable as the command (rcc shell --agent runs a shell instead)."""
    from rcc.agents import find, state
    from rcc.agents.profiles import endpoints, fixed_env, passthrough, profile
    from rcc.compile import Session
    from rcc.plan import Bind

    prof = profile(name)
    home = os.path.realpath(env.get("HOME") or os.path.expanduser("~"))
    found = find.require(prof, env, home)
    view = {**env, **_flag_env(opts)}
    project = os.path.realpath(opts.project or os.getcwd())
    if "--import-settings" in opts.extra:
        from rcc.paths import agent_state_dir

        copied = state.import_settings(prof, home, env)
        where = os.path.join(agent_state_dir(prof.name, env), state.SETTINGS)
        sys.stderr.write(f"rcc: imported {len(copied)} file(s) into {where}: {', '.join(copied) or 'none found'}\n")
    trees = []
    for tree in found.trees:
        if tree == project or tree.startswith(project.rstrip("/") + "/"):
            continue  # already visible (and writable) as part of the project
        trees.append(Bind(tree, tree, False, f"{name}: install tree, read-only"))
    fixed = list(fixed_env(prof, home))
    if argv0 is None:
        command = (found.real, *cmd)
    else:
        command = (*argv0, *cmd)
        bindir = os.path.dirname(found.path)
        if any(bindir == t or bindir.startswith(t.rstrip("/") + "/") for t in found.trees):
            fixed.append(("PATH", bindir + os.pathsep + env.get("PATH", "/usr/local/bin:/usr/bin:/bin")))
    allow, passed = endpoints(prof, view), passthrough(prof, view)
    run = state.prepare(prof, home, project, env)
    session = Session(
        argv=command,
        name=name,
        interactive=interactive,
        # the state binds first: an install tree inside ~/.claude (~/.claude/local) is mounted over them
        binds=(*run.binds, *trees),
        env=tuple(fixed),
        passthrough=passed,
        allow=allow,
    )
    return session, run


def default_credentials(name: str, opts: RunOptions, env: Mapping[str, str]) -> tuple[Layer, ...]:
    """`rcc claude` with ANTHROPIC_API_KEY set: [credentials.anthropic] for api.anthropic.com (or the host of an
    https ANTHROPIC_BASE_URL), a layer below the user's config (which may redefine it). Left out with
    --pass-api-key, for a plain-http base URL (rcc never injects over cleartext), and, with a note, when the
    `cryptography` package is missing (the key then goes in as it always did)."""
    from rcc.config import Contribution, Layer, validate

    if name != "claude" or "--pass-api-key" in opts.extra or not env.get("ANTHROPIC_API_KEY"):
        return ()
    host = "api.anthropic.com"
    base = env.get("ANTHROPIC_BASE_URL", "")
    if base:
        from urllib.parse import urlsplit

        try:
            u = urlsplit(base)
            hostname = u.hostname or ""
        except ValueError:
            return ()
        if u.scheme != "https" or not hostname:
            return ()
        host = hostname
    import importlib.util

    if importlib.util.find_spec("cryptography") is None:
        sys.stderr.write(
            "rcc: note: ANTHROPIC_API_KEY goes into the sandbox as it is: keeping it out needs the Python package "
            "`cryptography` (apt install python3-cryptography, or pip install 'rcc[credentials]')\n"
        )
        return ()
    spec = {"anthropic": {"env": "ANTHROPIC_API_KEY", "hosts": [host]}}
    value = validate("credentials", spec, f"agent:{name}")
    return (Layer(f"agent:{name}", (Contribution("credentials", value, f"agent:{name}"),)),)


def _run_agent_session(opts: RunOptions, session: Session, run: AgentRun, layers: tuple[Layer, ...] = ()) -> int:
    from rcc.agents import state
    from rcc.runner import run_session

    try:
        return run_session(opts, session, layers)
    finally:
        state.finish(run)


def agent_command(name: str, argv: list[str]) -> int:
    from rcc.runner import parse_run_args, settle_worktree

    opts, cmd = parse_run_args(argv, agent=True, agent_flags=AGENT_FLAGS)
    if "--rcc-help" in opts.extra:
        sys.stdout.write(AGENT_HELP)
        return 0
    settle_worktree(opts)
    session, run = build_session(name, opts, cmd, os.environ, interactive=sys.stdin.isatty())
    return _run_agent_session(opts, session, run, default_credentials(name, opts, os.environ))


def _pop_agent(argv: list[str]) -> tuple[str, list[str]]:
    """Take `--agent NAME` out of rcc's options (before the command / `--`)."""
    out: list[str] = []
    agent = ""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--" or not a.startswith("-"):
            out += argv[i:]
            break
        if a == "--agent" or a.startswith("--agent="):
            if "=" in a:
                agent = a.partition("=")[2]
            elif i + 1 < len(argv):
                i += 1
                agent = argv[i]
            else:
                raise UsageError("--agent needs a value", hint="e.g. rcc shell --agent claude")
        else:
            out.append(a)
        i += 1
    return agent, out


def default_shell(env: Mapping[str, str]) -> str:
    sh = env.get("SHELL", "")
    # Only a shell from the read-only system directories: $SHELL from the environment could name anything.
    if sh.startswith(("/bin/", "/usr/bin/", "/usr/local/bin/")) and os.access(sh, os.X_OK):
        return sh
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def shell_command(argv: list[str]) -> int:
    """An interactive shell under the same policy; with --agent NAME, with that agent's profile added
    (its state, install tree on PATH, keys and endpoints), to see what the agent would see."""
    from rcc.compile import Session
    from rcc.runner import parse_run_args, run_session, settle_worktree

    agent, rest = _pop_agent(argv)
    opts, cmd = parse_run_args(rest)
    settle_worktree(opts)
    shell = default_shell(os.environ)
    interactive = sys.stdin.isatty()
    if agent:
        session, run = build_session(agent, opts, cmd, os.environ, interactive=interactive, argv0=(shell,))
        return _run_agent_session(opts, session, run)
    else:
        session = Session(argv=(shell, *cmd), name="shell", interactive=interactive)
    return run_session(opts, session)
