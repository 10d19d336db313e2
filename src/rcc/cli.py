"""Command line entry point: the one place that prints errors and chooses the exit code.

Subcommands live in their own modules and are imported only when used, so `rcc run` stays light.
Each exposes `command(argv: list[str]) -> int` and raises RccError for failures.
"""

from __future__ import annotations

import sys

from rcc.commands import AGENTS, BY_NAME, usage
from rcc.errors import ExitCode, RccError


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return ExitCode.OK if argv else ExitCode.USAGE
    name, rest = argv[0], argv[1:]
    if name in ("version", "--version", "-V"):
        from rcc import __version__

        sys.stdout.write(f"rcc {__version__}\n")
        return ExitCode.OK
    import importlib

    cmd = BY_NAME.get(name)
    if cmd is None or not cmd.module:
        from rcc.errors import UsageError

        raise UsageError(f"unknown command {name!r}")
    func = getattr(importlib.import_module(cmd.module), cmd.func)
    if name in AGENTS:
        return int(func(name, rest))
    return int(func(rest))


_SESSION_COMMANDS = frozenset({"run", "shell", *AGENTS})


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
