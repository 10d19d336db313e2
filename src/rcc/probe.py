"""Look at the host once, before compiling: who we are, where home is, which paths exist and what they are.

Everything compile.py needs from the disk is collected here into a frozen HostFacts, so compiling is pure and
tests can build HostFacts by hand. Lookups use lstat and never follow a symlink without saying so.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import Literal

    Kind = Literal["dir", "file", "symlink", "missing", "other"]

# Top-level system entries mounted read-only (or recreated as the same symlink, for merged-/usr systems).
SYSTEM_ENTRIES: tuple[str, ...] = (
    "usr",
    "bin",
    "sbin",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "etc",
    "opt",
    "nix",
)


@dataclass(frozen=True)
class PathInfo:
    kind: Kind
    real: str = ""  # realpath (for symlinks: the resolved target)
    target_exists: bool = False  # for symlinks
    target_is_dir: bool = False  # for symlinks
    link: str = ""  # for symlinks: the link text (os.readlink)


@dataclass(frozen=True)
class HostFacts:
    uid: int
    gid: int
    user: str
    home: str  # the real home directory (realpath)
    home_logical: str  # $HOME as the user sees it (may be a symlink path)
    project: str  # realpath of the project
    cwd: str  # realpath of the current directory
    env: Mapping[str, str]
    paths: Mapping[str, PathInfo] = field(default_factory=dict)  # every absolute path compile.py may ask about

    def info(self, path: str) -> PathInfo:
        return self.paths.get(path, PathInfo("missing"))


def path_info(path: str) -> PathInfo:
    try:
        st = os.lstat(path)
    except OSError:
        return PathInfo("missing")
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        return PathInfo("symlink", real, os.path.exists(real), os.path.isdir(real), os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return PathInfo("dir", path)
    if stat.S_ISREG(st.st_mode):
        return PathInfo("file", path)
    return PathInfo("other", path)


def probe(
    project: str,
    interesting: Iterable[str],
    env: Mapping[str, str] = os.environ,
    cwd: str | None = None,
) -> HostFacts:
    """Collect HostFacts. `interesting` are absolute paths the policy names (toolchains, extra binds, secrets)
    and project-relative protected paths already joined to the project."""
    uid, gid = os.getuid(), os.getgid()
    home_logical = env.get("HOME") or os.path.expanduser("~")
    user = env.get("USER") or env.get("LOGNAME") or ""
    if not user:
        import pwd

        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
    wanted = {f"/{e}" for e in SYSTEM_ENTRIES}
    wanted.update(interesting)
    facts_paths = {p: path_info(p) for p in wanted}
    return HostFacts(
        uid=uid,
        gid=gid,
        user=user,
        home=os.path.realpath(home_logical),
        home_logical=os.path.normpath(home_logical),
        project=os.path.realpath(project),
        cwd=os.path.realpath(cwd or os.getcwd()),
        env=dict(env),
        paths=facts_paths,
    )


def protected_candidates(project: str, rel: Iterable[str]) -> list[str]:
    """Every path along each protected relative path (so compile.py can find the first missing component)."""
    out = [os.path.join(project, ".git")]
    for r in rel:
        parts = r.split("/")
        for i in range(1, len(parts) + 1):
            out.append(os.path.join(project, *parts[:i]))
    return out
