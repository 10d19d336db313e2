"""Command line entry point: the one place that prints errors and chooses the exit code.

Subcommands live in their own modules and are imported only when used, so `rcc run` stays light.
Each exposes `command(argv: list[str]) -> int` and raises RccError for failures.
"""

from __future__ import annotations

import sys

from rcc.errors import ExitCode, RccError

USAGE = """\
usage: rcc COMMAND [OPTIONS] [--] [ARGS...]

commands:
  run [OPTIONS] [--] CMD [ARGS...]   run CMD in the sandbox (project: current directory)
  claude|codex|gemini|aider [OPTIONS] [--] [AGENT ARGS...]
                                     run a coding agent in the sandbox
  shell [OPTIONS]                    an interactive shell under the same policy
  policy show [--json]               the effective policy and where each value came from
  policy suggest [--session ID] [--write [user|project]]
                                     the allow list covering what a `--learn` session let through
  trust [--project DIR] [--revoke]   trust this project's .rcc.toml (exact content)
  log [--json] [--denied] [--session ID|last] [--follow]
                                     the egress audit log
  sessions [--json]                  the running sessions: id, project, command, connections allowed/denied
  allow RULE [--session ID|last] [--save]
  deny RULE [--session ID|last] [--save]
                                     change a running session's network rules at once (--save: your config too)
  watch [--session ID|last]          live view of a session's decisions; answer its questions in ask mode
  setup [--firewall] [--dry-run] [--uninstall]
                                     prepare this machine (the firewall part needs sudo)
  doctor [--json]                    check what rcc needs on this machine
  version                            print rcc's version

run `rcc run --help` for the sandbox options.
"""

# subcommand -> (module, function)
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("rcc.runner", "command"),
    "policy": ("rcc.config", "policy_command"),
    "trust": ("rcc.trust", "command"),
    "log": ("rcc.net.logcmd", "command"),
    "setup": ("rcc.setup", "command"),
    "doctor": ("rcc.doctor", "command"),
    "shell": ("rcc.agents.cli", "shell_command"),
    "sessions": ("rcc.live.cli", "sessions_command"),
    "allow": ("rcc.live.cli", "allow_command"),
    "deny": ("rcc.live.cli", "deny_command"),
    "watch": ("rcc.live.watch", "command"),
}
_AGENTS = ("claude", "codex", "gemini", "aider")


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return ExitCode.OK if argv else ExitCode.USAGE
    name, rest = argv[0], argv[1:]
    if name in ("version", "--version", "-V"):
        from rcc import __version__

        sys.stdout.write(f"rcc {__version__}\n")
        return ExitCode.OK
    import importlib

    if name in _AGENTS:
        mod = importlib.import_module("rcc.agents.cli")
        return int(mod.agent_command(name, rest))
    if name not in _COMMANDS:
        from rcc.errors import UsageError

        raise UsageError(f"unknown command {name!r}")
    module, func = _COMMANDS[name]
    return int(getattr(importlib.import_module(module), func)(rest))


_SESSION_COMMANDS = frozenset({"run", "shell", *_AGENTS})


def main(argv: list[str] | None = None) -> int:
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is None and sys.argv[1:2] and sys.argv[1] in _SESSION_COMMANDS:
        # A session has ended and its proxy is closed: skip the interpreter's teardown (module and object
        # clean-up costs `rcc run -- CMD` several milliseconds per command) and leave with the command's status.
        import os

        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return code


def _main(argv: list[str]) -> int:
    try:
        return dispatch(argv)
    except RccError as e:
        sys.stderr.write(f"rcc: error: {e.message}\n")
        if e.hint:
            sys.stderr.write(f"rcc: hint: {e.hint}\n")
        return int(e.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return ExitCode.OK
