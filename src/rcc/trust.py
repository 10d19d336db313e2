"""Trust for a project's .rcc.toml: the user approves one exact content (by SHA-256) for one project path.

The store lives in rcc's state directory, which no sandbox can see, so an agent cannot trust its own edits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

from rcc import paths
from rcc.errors import ConfigError, ExitCode, RccError, UsageError


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _read_store(env: Mapping[str, str]) -> dict[str, str]:
    from rcc import hostfs

    path = paths.trust_file(env)
    try:
        dfd = hostfs.open_state(os.path.dirname(path), create=False)
    except RccError as e:
        if e.code == ExitCode.UNSAFE_PATH:
            raise
        return {}  # no state dir yet: nothing trusted
    try:
        raw = hostfs.read_file(dfd, os.path.basename(path), 16 * 1024 * 1024, shown=path)
        if raw is None:
            return {}
        data = json.loads(raw)
    except (OSError, ValueError) as e:
        raise ConfigError(path, "", f"trust store unreadable: {e}", hint="delete it and trust projects again") from e
    finally:
        os.close(dfd)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(path, "", "trust store is not a JSON object of path -> sha256")
    return data


def _write_store(store: dict[str, str], env: Mapping[str, str]) -> None:
    from rcc import hostfs

    path = paths.trust_file(env)
    # No link on the way (rcc.hostfs): a planted trust.json link or temporary name is replaced, never followed.
    dfd = hostfs.open_state(os.path.dirname(path))
    try:
        data = json.dumps(store, indent=2, sort_keys=True).encode()
        hostfs.replace_file(dfd, os.path.basename(path), data, shown=path)
    finally:
        os.close(dfd)


def is_trusted(project: str, content: bytes, env: Mapping[str, str] = os.environ) -> bool:
    return _read_store(env).get(os.path.realpath(project)) == _digest(content)


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
    store = _read_store(os.environ)
    if revoke:
        store.pop(project, None)
        _write_store(store, os.environ)
        sys.stdout.write(f"rcc: no longer trusting {file}\n")
        return 0
    if os.path.islink(file) or not os.path.isfile(file):
        raise RccError(f"no regular file {file} to trust", code=ExitCode.CONFIG)
    with open(file, "rb") as f:
        content = f.read()
    from rcc.config import parse_file

    parse_file(file, "project")  # never trust a file that does not validate
    if show:
        state = "trusted" if store.get(project) == _digest(content) else "NOT trusted"
        sys.stdout.write(content.decode("utf-8", "replace"))
        sys.stdout.write(f"\n# {file}: {state} (sha256 {_digest(content)[:16]}...)\n")
        return 0
    store[project] = _digest(content)
    _write_store(store, os.environ)
    sys.stdout.write(f"rcc: trusting {file} (sha256 {_digest(content)[:16]}...); a changed file needs trusting again\n")
    return 0
