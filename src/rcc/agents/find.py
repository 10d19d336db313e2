"""Finding an agent's executable and the install tree that must be visible (read-only) for it to run.

Search order: PATH (absolute entries only), then the profile's candidates (native installer link, npm global
prefixes, nvm, volta, ...). `npm prefix -g` is not run (it costs ~100 ms): the install tree is derived from the
executable's real path instead (`install_tree`, pure).

Invariants:
1. Relative PATH entries ("", ".", "bin") are skipped: they resolve against the project, where a hostile
   repository could ship its own `claude`.
2. The install tree never is "/", the home directory or a directory above it: at worst it is the file alone.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator, Mapping

from rcc.agents.profiles import AgentProfile
from rcc.errors import ExitCode, RccError
from rcc.record import record


@record
class Found:
    path: str  # where it was found (may be a symlink)
    real: str  # its realpath: what runs
    trees: tuple[str, ...]  # host paths to mount read-only at the same place
    how: str  # "PATH" or the candidate pattern that matched


def _is_exe(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def install_tree(real: str, home: str, exists: Callable[[str], bool] = os.path.exists) -> tuple[str, ...]:
    """What must be visible for the executable at `real` to run: pure but for `exists` (injected for tests).

    - inside node_modules (npm, nvm, volta, pnpm): the outermost node_modules directory, which holds the package
      and its platform-specific siblings (@anthropic-ai/claude-code-linux-x64, @openai/codex-linux-x64); for an
      npm prefix layout P/lib/node_modules with P/bin/node (nvm), also P/bin so `#!/usr/bin/env node` works
    - a file in a `versions` directory (Claude Code's native installer): that directory
    - P/bin/x with P/pyvenv.cfg (pipx, uv tool): the virtualenv P
    - otherwise the file alone
    """
    parts = real.split("/")
    trees: list[str] = []
    if "node_modules" in parts:
        nm = "/".join(parts[: parts.index("node_modules") + 1])
        trees.append(nm)
        parent = os.path.dirname(nm)
        if os.path.basename(parent) == "lib":
            prefix_bin = os.path.join(os.path.dirname(parent), "bin")
            if exists(os.path.join(prefix_bin, "node")):
                trees.append(prefix_bin)
    elif os.path.basename(os.path.dirname(real)) == "versions":
        trees.append(os.path.dirname(real))
    elif os.path.basename(os.path.dirname(real)) == "bin" and exists(
        os.path.join(os.path.dirname(os.path.dirname(real)), "pyvenv.cfg")
    ):
        trees.append(os.path.dirname(os.path.dirname(real)))
    else:
        trees.append(real)
    home = home.rstrip("/")
    safe = []
    for t in trees:
        too_wide = t in ("", "/") or home == t or home.startswith(t.rstrip("/") + "/")
        safe.append(real if too_wide else t)  # never a whole home or a parent of it
    return tuple(dict.fromkeys(safe))


def candidates(
    profile: AgentProfile, env: Mapping[str, str], home: str, is_exe: Callable[[str], bool] = _is_exe
) -> Iterator[tuple[str, str]]:
    """(path, how) in search order, only those that exist as executables (`is_exe`: injected by tests, so that
    what is installed on the test machine does not matter); lazy, so the first hit stops the search before any
    glob runs."""
    for d in env.get("PATH", "").split(os.pathsep):
        if os.path.isabs(d):
            p = os.path.join(d, profile.executable)
            if is_exe(p):
                yield p, "PATH"
    for pattern in profile.candidates:
        p = home + pattern[1:] if pattern.startswith("~/") else pattern
        matches = sorted(glob.glob(p), reverse=True) if any(c in p for c in "*?[") else [p]
        for m in matches:
            if is_exe(m):
                yield m, pattern


def find(
    profile: AgentProfile, env: Mapping[str, str], home: str, is_exe: Callable[[str], bool] = _is_exe
) -> Found | None:
    for path, how in candidates(profile, env, home, is_exe):
        real = os.path.realpath(path)
        return Found(path, real, install_tree(real, os.path.realpath(home)), how)
    return None


def require(profile: AgentProfile, env: Mapping[str, str], home: str, is_exe: Callable[[str], bool] = _is_exe) -> Found:
    found = find(profile, env, home, is_exe)
    if found is None:
        raise RccError(
            f"{profile.executable} is not installed (looked on PATH and in "
            f"{', '.join(profile.candidates) or 'no other place'})",
            hint=f"install it with: {profile.install_hint}",
            code=ExitCode.DEPENDENCY,
        )
    return found


def find_all(
    env: Mapping[str, str] | None = None, home: str | None = None, is_exe: Callable[[str], bool] = _is_exe
) -> dict[str, Found | None]:
    """Every known agent and where it is (for `rcc doctor`)."""
    from rcc.agents.profiles import PROFILES

    env = os.environ if env is None else env
    home = home or env.get("HOME") or os.path.expanduser("~")
    return {name: find(p, env, home, is_exe) for name, p in PROFILES.items()}
