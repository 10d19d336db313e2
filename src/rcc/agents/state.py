"""An agent's persistent state: rcc.paths.agent_state_dir(name)/home/<rel> is mounted read-write at ~/<rel>.

The host's real ~/.claude (or ~/.codex, ...) is never mounted: a login made inside the sandbox lands in rcc's
state dir and persists between runs, and the agent cannot read or change the user's own settings, history or
credentials. `import_settings` copies the importable part (settings, CLAUDE.md, commands, agents) from the real
home into the state dir, once, when the user asks; the real files are only read.

Invariants:
1. Directories are created 0700 and never through a symlink (a planted link cannot redirect rcc's writes).
2. Imports copy regular files only (symlinks are followed on the host side, their content copied), never
   credentials, history or per-project data.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from rcc.agents.profiles import AgentProfile
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind


@dataclass(frozen=True)
class StateDir:
    src: str  # host path in rcc's state dir
    dest: str  # where it appears inside the sandbox (under the sandbox home)


def state_dirs(profile: AgentProfile, home: str, env: Mapping[str, str]) -> tuple[StateDir, ...]:
    from rcc.paths import agent_state_dir

    root = os.path.join(agent_state_dir(profile.name, env), "home")
    return tuple(StateDir(os.path.join(root, rel), os.path.join(home, rel)) for rel in profile.state)


def _mkdir_private(path: str) -> None:
    """mkdir -p with mode 0700 for what we create; refuse if any component is a symlink we did not expect."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        os.mkdir(d, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RccError(f"agent state path {path} is not a directory", hint=f"remove it: rm {path}", code=ExitCode.SETUP)


def ensure(dirs: tuple[StateDir, ...]) -> tuple[Bind, ...]:
    """Create the state directories (they must exist before binding) and return their binds."""
    binds = []
    for d in dirs:
        try:
            _mkdir_private(d.src)
        except OSError as e:
            raise RccError(f"cannot create agent state directory {d.src}: {e.strerror}", code=ExitCode.SETUP) from None
        binds.append(Bind(d.src, d.dest, True, "agent state (persistent, rcc's own copy)"))
    return tuple(binds)


def import_settings(profile: AgentProfile, real_home: str, env: Mapping[str, str]) -> list[str]:
    """Copy the profile's importable files from the real home into its state dir. Returns what was copied."""
    from rcc.paths import agent_state_dir

    root = os.path.join(agent_state_dir(profile.name, env), "home")
    copied: list[str] = []
    for rel in profile.importable:
        src = os.path.join(real_home, rel)
        dest = os.path.join(root, rel)
        if os.path.isdir(src):
            for dirpath, _dirs, files in os.walk(src, followlinks=False):
                for f in sorted(files):
                    s = os.path.join(dirpath, f)
                    if os.path.isfile(s):
                        _copy_file(s, os.path.join(dest, os.path.relpath(s, src)))
                        copied.append(os.path.relpath(s, real_home))
        elif os.path.isfile(src):
            _copy_file(src, dest)
            copied.append(rel)
    return copied


def _copy_file(src: str, dest: str) -> None:
    _mkdir_private(os.path.dirname(dest))
    if os.path.islink(dest) or os.path.isdir(dest):
        raise RccError(
            f"cannot import into {dest}: it is a link or a directory",
            hint=f"remove it: rm -r {dest}",
            code=ExitCode.SETUP,
        )
    import shutil

    tmp = dest + ".rcc-import"
    with open(src, "rb") as fi:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fo:
            shutil.copyfileobj(fi, fo)
    os.replace(tmp, dest)
