"""Look at the host once, before compiling: who we are, where home is, which paths exist and what they are.

Everything compile.py needs from the disk is collected here into a frozen HostFacts, so compiling is pure and
tests can build HostFacts by hand. Lookups use lstat and never follow a symlink without saying so.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping

from rcc.record import field, record

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import Literal

    Kind = Literal["dir", "file", "symlink", "missing", "other"]

# Top-level system entries mounted read-only (or recreated as the same symlink, for merged-/usr systems).
NIXOS_CURRENT_SYSTEM = "/run/current-system"  # NixOS: PATH has /run/current-system/sw/bin (a /nix/store link)
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


# The host character devices bwrap's `--dev` binds into the sandbox's /dev (bubblewrap.c: devnodes).
DEVICE_NODES: tuple[str, ...] = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


@record
class PathInfo:
    kind: Kind
    real: str = ""  # realpath (for symlinks: the resolved target)
    target_exists: bool = False  # for symlinks
    target_is_dir: bool = False  # for symlinks
    link: str = ""  # for symlinks: the link text (os.readlink)


@record
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
    git_identity: tuple[tuple[str, str], ...] = ()  # user.name / user.email from the host's git config
    env_resets_signals: bool = False  # /usr/bin/env knows --default-signal (coreutils >= 8.31)
    submodules: tuple[str, ...] = ()  # project-relative submodule paths declared in .gitmodules
    hooks_path: str = ""  # git's core.hooksPath when it lies inside the project (project-relative)
    pointer_git_dir: str = ""  # `.git` is a file whose `gitdir:` lies inside the project (project-relative)
    # `.git` is a pointer file to a git dir outside the project (a linked worktree, or --separate-git-dir): that git
    # dir, the common dir it names (the same for --separate-git-dir), and the directory whose placeholder ledger
    # the common dir's placeholders join (the main working tree, or a bare common dir itself). All "" otherwise.
    linked_git_dir: str = ""
    git_common_dir: str = ""
    git_anchor: str = ""
    git_branch: str = ""  # a linked worktree's checked-out branch (`rcc sessions` shows it), "" when detached
    # A linked worktree's repository's branches and tags: (name, "") for a loose ref file in the common dir's
    # refs/heads (refs/tags), (name, object id) for one only in packed-refs. compile.py makes all but git_branch
    # read-only.
    branches: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    # The git dirs of the project's submodules that git keeps under a read-only `modules/` (the project's
    # `.git/modules/NAME`, or a linked worktree's), each pointing back at its submodule: bound writable, protected.
    submodule_git_dirs: tuple[str, ...] = ()
    owned_devices: tuple[tuple[str, int, int], ...] = ()  # (path, st_rdev, mode) of DEVICE_NODES root owns
    memory_total: int = 0  # physical memory in bytes (0: unknown), for limits given as a percentage

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
    # `real` resolves symlinks in *every* component: `--ro /x/link/.ssh` (link -> home) is the secret ~/.ssh,
    # and only the resolved path can be compared with the hidden ones.
    real = os.path.realpath(path)
    if stat.S_ISDIR(st.st_mode):
        return PathInfo("dir", real)
    if stat.S_ISREG(st.st_mode):
        return PathInfo("file", real)
    return PathInfo("other", real)


def _env_resets_signals(env_binary: str = "/usr/bin/env") -> bool:
    try:
        with open(env_binary, "rb") as f:
            return b"default-signal" in f.read(1 << 20)
    except OSError:
        return False


def git_identity(home: str, env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """user.name and user.email from ~/.gitconfig or $XDG_CONFIG_HOME/git/config, so commits made inside carry
    the user's identity while the files themselves (which may hold credential helpers or tokens) stay hidden.
    A deliberately small reader: [user] section, `key = value` lines; includes are not followed."""
    found: dict[str, str] = {}
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    for path in (os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig")):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(65536)
        except OSError:
            continue
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line.strip("[]").strip().lower()
            elif section == "user" and "=" in line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                key = key.strip().lower()
                value = value.strip().strip('"')
                if key in ("name", "email") and value and f"user.{key}" not in found:
                    found[f"user.{key}"] = value
    return tuple(sorted(found.items()))


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
    wanted.add(NIXOS_CURRENT_SYSTEM)
    wanted.update(interesting)
    real_project = os.path.realpath(project)
    submodules = submodule_paths(real_project)
    pointed = pointer_git_dir(real_project)
    linked, common = ("", "") if pointed else linked_git_dirs(real_project)
    hooks = hooks_path(real_project, os.path.realpath(home_logical), env, common)
    if linked:
        wanted.update(linked_git_candidates(linked, common, interesting_git_entries(interesting, real_project)))
    if pointed:
        wanted.update(protected_candidates(real_project, [pointed, f"{pointed}/hooks", f"{pointed}/config"]))
        wanted.update(
            os.path.join(real_project, pointed, r[5:]) for r in interesting_git_entries(interesting, real_project)
        )
    wanted.update(protected_candidates(real_project, [f"{s}/.git" for s in submodules] + ([hooks] if hooks else [])))
    sub_dirs = submodule_git_dirs(real_project, submodules, linked)
    git_entries = [r[len(".git/") :] for r in interesting_git_entries(interesting, real_project)]
    for d in sub_dirs:
        wanted.update([d, *(os.path.join(d, r) for r in git_entries)])
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
        git_identity=git_identity(os.path.realpath(home_logical), env),
        env_resets_signals=_env_resets_signals(),
        submodules=submodules,
        hooks_path=hooks,
        pointer_git_dir=pointed,
        linked_git_dir=linked,
        git_common_dir=common,
        git_anchor=git_anchor(common),
        git_branch=head_branch(linked) if linked != common else "",
        branches=branch_refs(common) if linked and linked != common else (),
        tags=branch_refs(common, "tags") if linked and linked != common else (),
        submodule_git_dirs=sub_dirs,
        owned_devices=owned_device_nodes(uid),
        memory_total=_physical_memory(),
    )


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError):
        return 0


def owned_device_nodes(uid: int) -> tuple[tuple[str, int, int], ...]:
    """Which of the device nodes bwrap binds into /dev the caller owns, and could therefore chmod or chown from
    inside (root on a normal host: all of them). Only root is asked: a user owns none on any sane system and
    could not make private copies anyway (mknod needs CAP_MKNOD). Root in a user-namespace container sees the
    host's nodes owned by the overflow uid, cannot change them, and needs no copies either."""
    if uid != 0:
        return ()
    out = []
    for path in DEVICE_NODES:
        try:
            st = os.stat(path)
        except OSError:
            continue  # nothing of the host's to protect
        if stat.S_ISCHR(st.st_mode) and st.st_uid == uid:
            out.append((path, st.st_rdev, stat.S_IMODE(st.st_mode)))
    return tuple(out)


def interesting_git_entries(interesting: Iterable[str], project: str) -> list[str]:
    """The protected `.git/...` entries (project-relative) among the paths compile.py asked about."""
    prefix = os.path.join(project, ".git") + "/"
    return [os.path.relpath(p, project) for p in interesting if p.startswith(prefix)]


def _read_small(path: str) -> str | None:
    """The first line of a small regular file, not following a symlink at its last component (and never
    blocking on a fifo); None when it is anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 4096).decode("utf-8", "replace").split("\n", 1)[0].rstrip("\r")
    finally:
        os.close(fd)


def _pointer_target(project: str) -> str:
    """The resolved `gitdir:` of a `.git` pointer file ("" when `.git` is a directory, missing or no pointer)."""
    first = _read_small(os.path.join(project, ".git"))
    if not first or not first.startswith("gitdir:"):
        return ""
    return os.path.realpath(os.path.join(project, first[len("gitdir:") :].strip()))


def pointer_git_dir(project: str) -> str:
    """When `.git` is a pointer file (`gitdir: X`, --separate-git-dir, worktrees) and X lies inside the project,
    X relative to the project: its hooks and config are then project files, to protect like `.git/...`."""
    target = _pointer_target(project)
    return os.path.relpath(target, project) if target.startswith(project + "/") else ""


def _is_kind(path: str, test: Callable[[int], bool]) -> bool:
    try:
        return test(os.lstat(path).st_mode)
    except OSError:
        return False


def linked_git_dirs(project: str) -> tuple[str, str]:
    """(git dir, common dir) when `.git` is a pointer file to a git dir outside the project: a linked worktree
    (`git worktree add`: the git dir is MAIN/.git/worktrees/NAME, its `commondir` names MAIN/.git), a submodule
    (MAIN/.git/modules/NAME) or a --separate-git-dir (no `commondir`: the git dir is its own common dir).
    ("", "") unless the layout is what git itself made: the git dir has HEAD, the common dir objects/ and refs/,
    and the git dir points back at this project (a worktree's `gitdir` file names this very `.git`, a submodule's
    core.worktree this directory), so a `.git` file shipped in a tarball cannot make rcc bind another repository's
    git dir writable."""
    git_dir = _pointer_target(project)
    if not git_dir or git_dir == project or git_dir.startswith(project + "/"):
        return "", ""
    if not _is_kind(git_dir, stat.S_ISDIR) or not _is_kind(os.path.join(git_dir, "HEAD"), stat.S_ISREG):
        return "", ""
    common = git_dir
    pointer = _read_small(os.path.join(git_dir, "commondir"))
    if pointer is not None:
        common = os.path.realpath(os.path.join(git_dir, pointer.strip()))
        back = _read_small(os.path.join(git_dir, "gitdir"))
        if back is None or os.path.realpath(os.path.join(git_dir, back.strip())) != os.path.join(project, ".git"):
            return "", ""
    elif os.path.lexists(os.path.join(git_dir, "commondir")):
        return "", ""  # a commondir that is not a plain file (a link, a fifo): not git's own layout
    else:
        # A submodule's git dir (MAIN/.git/modules/NAME) names its working tree in core.worktree; so can a
        # --separate-git-dir (`git config core.worktree DIR`): without it, nothing shows the dir is this project's.
        tree = _git_config_value(os.path.join(git_dir, "config"), "core", "worktree")
        if not tree or os.path.realpath(os.path.join(git_dir, tree)) != project:
            return "", ""
    if not all(_is_kind(os.path.join(common, d), stat.S_ISDIR) for d in ("objects", "refs")):
        return "", ""
    return git_dir, common


def submodule_git_dirs(project: str, submodules: Iterable[str], linked: str) -> tuple[str, ...]:
    """The git dirs of the submodules (from .gitmodules) that lie in the project's `.git/modules/` or the linked
    worktree's `modules/` and are git's own layout pointing back at the submodule (linked_git_dirs)."""
    homes = [os.path.join(project, ".git", "modules") + "/"]
    if linked:
        homes.append(os.path.join(linked, "modules") + "/")
    out = []
    for sub in submodules:
        git_dir, common = linked_git_dirs(os.path.realpath(os.path.join(project, sub)))
        if git_dir and git_dir == common and any(git_dir.startswith(h) for h in homes) and git_dir not in out:
            out.append(git_dir)
    return tuple(out)


def head_branch(git_dir: str) -> str:
    """The branch a git dir's HEAD names (`ref: refs/heads/NAME`), "" when detached or unreadable."""
    head = _read_small(os.path.join(git_dir, "HEAD")) if git_dir else None
    if not head or not head.startswith("ref: refs/heads/"):
        return ""
    return head[len("ref: refs/heads/") :].strip()


MAX_BRANCHES = 2000


def branch_refs(common: str, kind: str = "heads") -> tuple[tuple[str, str], ...]:
    """The repository's branches (kind "heads") or tags ("tags"): loose ref files under refs/KIND (walked without
    following links), then those only in packed-refs with their object id. At most MAX_BRANCHES + 1."""
    loose: list[str] = []
    todo = [""]
    while todo and len(loose) <= MAX_BRANCHES:
        rel = todo.pop()
        try:
            with os.scandir(os.path.join(common, "refs", kind, rel)) as it:
                for e in it:
                    name = f"{rel}/{e.name}" if rel else e.name
                    if e.is_dir(follow_symlinks=False):
                        todo.append(name)
                    elif e.is_file(follow_symlinks=False) and not e.name.endswith(".lock"):
                        loose.append(name)  # (a link is no ref git made: compile.py's checks see it as a path)
        except OSError:
            continue
    out = [(n, "") for n in sorted(loose)]
    seen = set(loose)
    try:
        with open(os.path.join(common, "packed-refs"), "rb") as f:
            data = f.read(64 << 20)
    except OSError:
        data = b""
    for line in data.decode("utf-8", "replace").splitlines():
        oid, _, ref = line.partition(" ")
        prefix = f"refs/{kind}/"
        if ref.startswith(prefix) and len(oid) in (40, 64) and all(c in "0123456789abcdef" for c in oid):
            name = ref[len(prefix) :]
            if name not in seen:
                seen.add(name)
                out.append((name, oid))
    return tuple(out[: MAX_BRANCHES + 1])


def git_anchor(common: str) -> str:
    """Where the common dir's placeholders are anchored and recorded: the main working tree when the common dir
    is its `.git` (so sessions of the main repository and of its worktrees share one ledger: no session removes
    a placeholder another still has bound), else the common dir itself (a bare repository)."""
    if not common:
        return ""
    main, base = os.path.split(common)
    return main if base == ".git" and main != "/" else common


# Per-worktree files git would read as config or as a redirect; everything else in a worktree's git dir is
# state (HEAD, index, logs, per-worktree refs) the session's git writes.
LINKED_GIT_PROTECTED = ("commondir", "gitdir", "config.worktree", "modules")
# The main working tree's own state in the common dir: a worktree session's git never writes them.
COMMON_MAIN_STATE = ("HEAD", "index")


def linked_git_candidates(git_dir: str, common: str, git_entries: Iterable[str]) -> list[str]:
    """The paths compile.py looks at for a linked git dir: both dirs, the protected `.git/...` entries
    (project-relative, as in the policy) in the common dir, the main tree's state and the git dir's own."""
    out = [git_dir, common, *(os.path.join(common, e) for e in COMMON_MAIN_STATE)]
    out += [os.path.join(common, r[len(".git/") :]) for r in git_entries]
    if git_dir != common:
        out += [os.path.join(git_dir, e) for e in LINKED_GIT_PROTECTED]
    return out


def _git_config_value(path: str, section: str, key: str) -> str | None:
    """The last `key = value` of `[section]` in a git config file (a small reader: includes are not followed)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return None
    current, value = "", None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            current = line[1:].split("]", 1)[0].strip().lower()
            line = line.split("]", 1)[1].strip() if "]" in line else ""
        if current == section and "=" in line and not line.startswith(("#", ";")):
            k, _, v = line.partition("=")
            if k.strip().lower() == key:
                value = v.split(" #", 1)[0].split(" ;", 1)[0].strip().strip('"')
    return value


def hooks_path(project: str, home: str, env: Mapping[str, str], common: str = "") -> str:
    """core.hooksPath (repository config first, then the user's) when it points inside the project: those hook
    files are project files, and the host's next `git commit` runs them (.githooks, husky's .husky/_).
    `common`: a linked worktree's common dir, whose config is the repository's."""
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    repo_config = os.path.join(common or os.path.join(project, ".git"), "config")
    for cfg in (repo_config, os.path.join(home, ".gitconfig"), f"{xdg}/git/config"):
        value = _git_config_value(cfg, "core", "hookspath")
        if not value:
            continue
        if value == "~" or value.startswith("~/"):
            value = home + value[1:]
        full = os.path.normpath(os.path.join(project, value))  # relative: to the top of the working tree
        if full.startswith(project + "/"):
            return os.path.relpath(full, project)
        return ""
    return ""


def submodule_paths(project: str) -> tuple[str, ...]:
    """The `path = ...` entries of the project's .gitmodules, normalised. The file comes with the repository and
    may be hostile: entries that are absolute or leave the project are dropped, a symlinked file is not read."""
    try:
        fd = os.open(os.path.join(project, ".gitmodules"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ()
    import re  # only now: most projects have no .gitmodules, and `re` costs `rcc run` ~2 ms to import

    with os.fdopen(fd, "rb") as f:
        text = f.read(1 << 20).decode("utf-8", "replace")
    out: list[str] = []
    for line in text.splitlines():
        m = re.match(r"\s*path\s*=\s*(.*?)\s*$", line)
        if not m:
            continue
        value = m.group(1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        rel = os.path.normpath(value) if value else ""
        if not rel or rel == "." or os.path.isabs(rel) or rel == ".." or rel.startswith("../"):
            continue
        if rel not in out:
            out.append(rel)
    return tuple(out)


def protected_candidates(project: str, rel: Iterable[str]) -> list[str]:
    """Every path along each protected relative path (so compile.py can find the first missing component)."""
    out = [os.path.join(project, ".git")]
    for r in rel:
        parts = r.split("/")
        for i in range(1, len(parts) + 1):
            out.append(os.path.join(project, *parts[:i]))
    return out
