"""`rcc trust [--project DIR] [--show] [--revoke]`: trust (or stop trusting) a project's .rcc.toml, exact content.

The trust store itself (what is trusted, read by rcc.config on every run) is rcc.trust; this is the command.
"""

from __future__ import annotations

import os

from rcc import paths
from rcc.errors import ExitCode, RccError, UsageError
from rcc.trust import digest, read_store, write_store


def command(argv: list[str]) -> int:
    import sys

    project, revoke, show = os.getcwd(), False, False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--project" and args:
            project = args.pop(0)
        elif a == "--revoke":
            revoke = True
        elif a == "--show":
            show = True
        elif a in ("-h", "--help"):
            sys.stdout.write("usage: rcc trust [--project DIR] [--show] [--revoke]\n")
            return 0
        else:
            raise UsageError(
                f"unknown option {a!r} for `rcc trust`", hint="usage: rcc trust [--project DIR] [--revoke]"
            )
    project = os.path.realpath(project)
    file = os.path.join(project, paths.PROJECT_CONFIG_NAME)
    store = read_store(os.environ)
    if revoke:
        store.pop(project, None)
        write_store(store, os.environ)
        sys.stdout.write(f"rcc: no longer trusting {file}\n")
        return 0
    if os.path.islink(file) or not os.path.isfile(file):
        raise RccError(f"no regular file {file} to trust", code=ExitCode.CONFIG)
    with open(file, "rb") as f:
        content = f.read()
    from rcc.config import parse_file

    parse_file(file, "project")  # never trust a file that does not validate
    if show:
        state = "trusted" if store.get(project) == digest(content) else "NOT trusted"
        sys.stdout.write(content.decode("utf-8", "replace"))
        sys.stdout.write(f"\n# {file}: {state} (sha256 {digest(content)[:16]}...)\n")
        return 0
    store[project] = digest(content)
    write_store(store, os.environ)
    sys.stdout.write(f"rcc: trusting {file} (sha256 {digest(content)[:16]}...); a changed file needs trusting again\n")
    return 0
