"""Trust for a project's .rcc.toml: the user approves one exact content (by SHA-256) for one project path.

The store lives in rcc's state directory, which no sandbox can see, so an agent cannot trust its own edits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

from rcc import paths
from rcc.errors import ConfigError, ExitCode, RccError


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_store(env: Mapping[str, str]) -> dict[str, str]:
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


def write_store(store: dict[str, str], env: Mapping[str, str]) -> None:
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
    return read_store(env).get(os.path.realpath(project)) == digest(content)
