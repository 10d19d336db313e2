"""Policy + HostFacts (+ the session's own additions) -> Plan. Pure: no disk access, no environment reads.

Order of mounts (later ones cover earlier ones):
  1. system entries read-only (or the same symlinks, for merged /usr); /dev, /proc; private /tmp, /var/tmp,
     /dev/shm, /run
  2. a private empty home (tmpfs) at the real home's path
  3. toolchains and extra read-only paths; extra read-write paths; the project read-write; session binds
  4. masks over secrets that would otherwise be visible under 1-3
  5. never-writable paths inside the project: `.git` bound onto itself (so it cannot be renamed or deleted), then
     every protected path read-only; those that do not exist get a placeholder mount point so they cannot be
     created (a hostile agent could otherwise plant .git/hooks/pre-commit or .mcp.json for the host to run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from rcc.errors import ConfigError, ExitCode, RccError
from rcc.plan import (
    Bind,
    CredentialPlan,
    DevNode,
    FileData,
    Mask,
    MountOp,
    Namespaces,
    NetPlan,
    Placeholder,
    Plan,
    Publish,
    ResourceLimits,
    Special,
    Symlink,
    Tmpfs,
)
from rcc.policy import Policy
from rcc.probe import COMMON_MAIN_STATE, LINKED_GIT_PROTECTED, NIXOS_CURRENT_SYSTEM, SYSTEM_ENTRIES, HostFacts
from rcc.record import record, replace

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import NoReturn

# A missing protected path gets an empty *file* as its placeholder: the name is taken, so neither a file nor a
# directory (nor anything below it) can be created there, and a file costs far less to create and remove than a
# directory. Only the paths that programs inside list as directories get a directory placeholder (git, Claude
# Code); git works with .git/modules, .git/info and .git/worktrees being files.
_DIR_PLACEHOLDERS = frozenset(
    {
        ".git",
        ".git/hooks",
        ".claude",
        ".claude/commands",
        ".claude/agents",
        ".claude/hooks",
        ".claude/skills",
        ".gemini/extensions",
        ".gemini/commands",
        ".codex",
    }
)
# A Mercurial repository's own config: hg runs its [hooks] (`pre-status = ...`) and [extensions] (Python) on the
# host's next `hg status`. `requires` naming "shared"/"share-safe" makes hg follow `sharedpath` and read that
# repository's config (the redirect .git/commondir is for git). Protected only where `.hg` exists: a placeholder
# .hg in every git project would make tools see a broken Mercurial repository.
HG_PROTECTED = (".hg/hgrc", ".hg/hgrc-not-shared", ".hg/requires", ".hg/sharedpath")
# Protected only where they exist: code that a protected config already names (yarnPath points into
# .yarn/releases, plugins into .yarn/plugins; mise's config directories, trusted by path). Where they are missing,
# nothing names them, and creating them in place would cover `.yarn/cache` (yarn install) with a read-only
# placeholder; a new mise config is untrusted until the user says so.
PROTECTED_IF_PRESENT = (
    ".yarn/releases",
    ".yarn/plugins",
    ".config/mise",
    ".config/mise.toml",
    ".config/mise.local.toml",
)
GIT_EXCLUDES = "/run/rcc/git-excludes"


def never_writable(policy: Policy, has_git_dir: bool) -> tuple[str, ...]:
    """The project-relative paths `rcc apply` never writes or deletes (review mode, rcc.workspace): the same
    list the sandbox binds read-only, taken whether or not each exists (applying is stricter, not looser)."""
    out = list(policy.filesystem.protect)
    if not has_git_dir:
        out.insert(0, ".git")  # a repository the session made would be the host's next `git` run's config
    return (*out, *HG_PROTECTED, *PROTECTED_IF_PRESENT)


# Credentials: the CA bundle the sandbox trusts (the system's roots + the session CA), bound read-only, and the
# variables that point TLS clients at it (OpenSSL/Python ssl, Node, requests, curl, git, pip, npm).
CA_BUNDLE = "/run/rcc/ca-bundle.pem"
CA_BUNDLE_VARS = (
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "NPM_CONFIG_CAFILE",
)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
PROXY_PORT = 3128


@record
class Session:
    """What one invocation adds to the policy: the command, and an agent profile's binds/env/allows."""

    argv: tuple[str, ...]
    name: str = "run"
    interactive: bool = False
    binds: tuple[Bind, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    passthrough: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def env_name_matches(name: str, pattern: str) -> bool:
    """`NAME` matches itself; `PREFIX_*` matches names starting with PREFIX_ (the only wildcard allowed)."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _env(policy: Policy, facts: HostFacts, session: Session, home: str) -> dict[str, str]:
    patterns = (*policy.environment.passthrough, *session.passthrough)
    env: dict[str, str] = {}
    for name, value in facts.env.items():
        if any(env_name_matches(name, p) for p in patterns):
            env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(dict(policy.environment.set))
    env.update(dict(session.env))
    env["HOME"] = home
    env["USER"] = facts.user
    env["LOGNAME"] = facts.user
    env["TMPDIR"] = "/tmp"
    env["RCC_SANDBOX"] = "1"
    return env


def _protected(policy: Policy, facts: HostFacts) -> tuple[list[MountOp], list[Placeholder]]:
    project = facts.project
    mounts: list[MountOp] = []
    placeholders: dict[str, Placeholder] = {}
    git = facts.info(os.path.join(project, ".git"))
    if git.kind == "symlink":
        _refuse_protected_symlink(os.path.join(project, ".git"), git.link)
    if git.kind == "dir":
        # A mount point cannot be renamed or removed: this stops "mv .git x; mkdir -p .git/hooks".
        mounts.append(Bind(os.path.join(project, ".git"), os.path.join(project, ".git"), True, "git dir pinned"))
    elif git.kind in ("file", "other"):  # a pointer file (or anything else that is not a dir): keep it
        mounts.append(Bind(os.path.join(project, ".git"), os.path.join(project, ".git"), False, "git pointer file"))
    rel_list = list(policy.filesystem.protect)
    if git.kind == "missing":
        rel_list.insert(0, ".git")  # no repository: `git init` inside could plant hooks; keep .git uncreatable
    # A submodule's `.git` (pointer file or git dir) decides which config the host's `git status` reads when it
    # recurses into the submodule: never writable, and never creatable in an unpopulated submodule.
    submodule_gits = {f"{s}/.git" for s in facts.submodules}
    rel_list += sorted(submodule_gits)
    if facts.info(os.path.join(project, ".hg")).kind == "dir":
        rel_list += HG_PROTECTED
    rel_list += [r for r in PROTECTED_IF_PRESENT if facts.info(os.path.join(project, r)).kind != "missing"]
    if facts.hooks_path:
        rel_list.append(facts.hooks_path)  # core.hooksPath inside the project: its hooks are project files
    if git.kind == "file" and facts.pointer_git_dir:
        # `.git` points to a git dir inside the project (--separate-git-dir .realgit): protect that one as .git
        rel_list += [facts.pointer_git_dir + r[4:] for r in policy.filesystem.protect if r.startswith(".git/")]
    seen_ro: set[str] = set()
    pinned: set[str] = {os.path.join(project, ".git")}
    for rel in rel_list:
        if git.kind != "dir" and rel.startswith(".git/"):
            continue  # covered by the .git pointer file / placeholder
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            path = os.path.join(project, sub)
            info = facts.info(path)
            last = i == len(parts)
            if info.kind == "missing" and last and rel in submodule_gits:
                parent = os.path.dirname(path)  # an empty placeholder .git would break git: freeze the dir
                if parent not in seen_ro:
                    seen_ro.add(parent)
                    mounts.append(Bind(parent, parent, False, f"never writable: unpopulated submodule {rel}"))
                break
            if info.kind == "missing":
                is_dir = (not last) or sub in _DIR_PLACEHOLDERS
                # an empty mapping where the tool parses one (an empty .json/.yml is an error to Claude Code, aider)
                content = "{}\n" if (not is_dir and path.endswith((".json", ".yml", ".yaml"))) else ""
                if sub == ".git/commondir" or (facts.pointer_git_dir and sub == f"{facts.pointer_git_dir}/commondir"):
                    content = ".\n"  # git refuses an empty commondir; "." is the git dir itself
                placeholders.setdefault(path, Placeholder(path, is_dir, content))
                if path not in seen_ro:
                    seen_ro.add(path)
                    mounts.append(Bind(path, path, False, f"never writable: {rel} (placeholder)"))
                break
            if info.kind == "symlink":
                _refuse_protected_symlink(path, info.link)
            if last:
                if path not in seen_ro:
                    seen_ro.add(path)
                    mounts.append(Bind(path, path, False, f"never writable: {rel}"))
            elif info.kind != "dir":
                # e.g. .claude is a file: nothing can exist below it as long as it stays a file, so it must not
                # be replaced (`rm .claude; mkdir .claude` and plant .claude/settings.json): read-only.
                if path not in seen_ro:
                    seen_ro.add(path)
                    mounts.append(Bind(path, path, False, f"never writable: a file where {rel} would be"))
                break
            elif path not in pinned and not any(_under(path, r) for r in seen_ro):  # never rw under a ro one
                # Renaming a directory moves the mounts inside it along: `mv .claude x; mkdir .claude` would
                # leave a fresh, writable .claude/settings.json. A mount point cannot be renamed: pin it.
                pinned.add(path)
                mounts.append(Bind(path, path, True, f"pinned: parent of {rel}"))
    return mounts, list(placeholders.values())


def _linked_git_binds(policy: Policy, facts: HostFacts) -> list[MountOp]:
    """A project that is a linked worktree (or has its git dir elsewhere) gets its repository: the common git
    dir at its own path, writable (objects, refs, packed-refs, logs: what commit, branch and tag write) and bound
    onto itself so it cannot be renamed away; the worktree's own git dir is bound later, over the read-only
    `worktrees/`. Only the git dir is bound: nothing of the main repository's working tree is visible."""
    git_dir, common = facts.linked_git_dir, facts.git_common_dir
    if not git_dir:
        return []
    for d in (git_dir, common):
        if not os.path.isabs(d) or d == "/" or _under(facts.home, d) or _under(facts.home_logical, d):
            raise RccError(
                f"the project's .git points to {d}, which would expose the whole home directory or filesystem",
                hint="repair the pointer (`git worktree repair` in the main repository)",
                code=ExitCode.PROJECT,
            )
        if _under(facts.project, d) or _under(d, facts.project):
            raise RccError(
                f"the project's git directory {d} and the project {facts.project} contain one another",
                hint="use the main repository (or a worktree outside its git directory) as the project",
                code=ExitCode.PROJECT,
            )
        for secret in policy.filesystem.hide:
            if _under(d, secret) or _under(d, facts.info(secret).real or secret):
                raise RccError(
                    f"the project's git directory {d} is inside hidden path {secret}",
                    hint="move the repository out of the hidden path, or run rcc on another project",
                    code=ExitCode.PROJECT,
                )
    return [Bind(common, common, True, "git: the common git dir (a linked worktree's repository), pinned")]


def _linked_git_protected(policy: Policy, facts: HostFacts) -> tuple[list[MountOp], list[Placeholder]]:
    """Today's `.git` protections, in the common dir and the worktree's git dir: hooks, config, info, modules,
    commondir, worktrees (so `git worktree add` inside is refused: it would write a new worktrees/NAME and a
    directory outside the project) read-only, placeholders where missing; the main working tree's HEAD and index
    read-only; then the worktree's git dir writable (HEAD, index, logs) but for its `commondir` and `gitdir`
    pointers (rewritten, they redirect the host's git in this worktree, or in the main repository's
    `git worktree` commands, to a directory the agent fills) and `config.worktree`."""
    git_dir, common = facts.linked_git_dir, facts.git_common_dir
    if not git_dir:
        return [], []
    mounts: list[MountOp] = []
    placeholders: list[Placeholder] = []

    def protect(base: str, rel: str, why: str, placeholder: bool = True) -> None:
        path = os.path.join(base, rel)
        info = facts.info(path)
        if info.kind == "symlink":
            _refuse_protected_symlink(path, info.link)
        if info.kind == "missing":
            if not placeholder:
                return
            is_dir = f".git/{rel}" in _DIR_PLACEHOLDERS
            placeholders.append(Placeholder(path, is_dir, ".\n" if rel == "commondir" else ""))
        mounts.append(Bind(path, path, False, f"never writable: {why}"))

    for rel in dict.fromkeys(r[len(".git/") :] for r in policy.filesystem.protect if r.startswith(".git/")):
        protect(common, rel, f"git common dir {rel}")
    if git_dir != common:
        for rel in COMMON_MAIN_STATE:
            protect(common, rel, f"the main working tree's {rel}", placeholder=False)
        mounts.append(Bind(git_dir, git_dir, True, "git: this worktree's git dir (HEAD, index, logs), pinned"))
        for rel in LINKED_GIT_PROTECTED:
            protect(git_dir, rel, f"worktree git dir {rel}")
        m, p = _other_branches(facts)
        mounts += m
        placeholders += p
    return mounts, placeholders


def _other_branches(facts: HostFacts) -> tuple[list[MountOp], list[Placeholder]]:
    """A session in a linked worktree moves only its own branch, and no tag: every other branch's and every tag's
    loose ref file is bound read-only (git replaces a ref by renaming a lock file over it, and deletes it by
    unlinking: both fail on a mount point). One only in packed-refs gets a loose ref file first, holding its
    packed object id (what git itself writes when it moves one; it stays after the session), so that neither a
    new loose file nor a rewritten packed-refs can move it. New branches and tags can be made and moved."""
    from rcc.probe import MAX_BRANCHES

    common = facts.git_common_dir
    if len(facts.branches) + len(facts.tags) > MAX_BRANCHES:
        raise RccError(
            f"the repository {common} has more than {MAX_BRANCHES} branches and tags: a worktree session cannot "
            "protect them all",
            hint="delete merged branches (`git branch --merged | xargs git branch -d`), or run rcc in the main tree",
            code=ExitCode.PROJECT,
        )
    mounts: list[MountOp] = []
    placeholders: list[Placeholder] = []
    made_dirs: set[str] = set()
    for kind, refs in (("heads", facts.branches), ("tags", facts.tags)):
        top = os.path.join(common, "refs", kind)
        for name, packed in refs:
            if kind == "heads" and name == facts.git_branch:
                continue
            path = os.path.join(top, name)
            if packed:  # its directories too (refs/heads/feature/ for feature/x): a mount point needs a parent
                parts = name.split("/")[:-1]
                for d in [top] + [os.path.join(top, *parts[: i + 1]) for i in range(len(parts))]:
                    if d not in made_dirs:
                        made_dirs.add(d)
                        placeholders.append(Placeholder(d, True, ""))
                placeholders.append(Placeholder(path, False, packed + "\n"))
            what = f"branch {name}" if kind == "heads" else f"tag {name}"
            mounts.append(Bind(path, path, False, f"never writable: {what} (a worktree session moves only its own)"))
    return mounts, placeholders


def _submodule_git_protected(policy: Policy, facts: HostFacts) -> tuple[list[MountOp], list[Placeholder]]:
    """Each submodule's git dir under the read-only `modules/`: writable and pinned, over it, with the same
    protections as `.git` (its hooks and config run when the host's git works in or recurses into the submodule),
    so commits in a submodule work inside."""
    mounts: list[MountOp] = []
    placeholders: list[Placeholder] = []
    for d in facts.submodule_git_dirs:
        m, p = _linked_git_protected(policy, replace(facts, linked_git_dir=d, git_common_dir=d))
        mounts += [Bind(d, d, True, "git: a submodule's git dir, pinned"), *m]
        placeholders += p
    return mounts, placeholders


def _refuse_protected_symlink(path: str, link: str) -> NoReturn:
    """A mount covers a symlink's target, never the link: the agent could unlink it (its directory is the
    writable project) and create the real file (.envrc, .git/hooks, ...) for the host to run. So refuse."""
    raise RccError(
        f"protected path {path} is a symlink (to {link}); the sandboxed command could replace it",
        hint="replace the symlink with the file or directory itself (or remove it) and run again",
        code=ExitCode.PROJECT,
    )


def compile_plan(policy: Policy, facts: HostFacts, session: Session, session_id: str = "") -> Plan:
    project, home = facts.project, facts.home
    policy = _hide_rcc_own(policy, facts.env)
    if home == "/" or not os.path.isabs(home):
        # A private home is a tmpfs at the home's path: at "/" it would cover the whole system.
        raise RccError(
            f"HOME is {facts.home_logical or '(empty)'}: rcc needs a home directory to replace with a private one",
            hint="set HOME to your home directory (service accounts: any directory of their own)",
            code=ExitCode.SETUP,
        )
    if project == "/" or _under(home, project):
        raise RccError(
            f"refusing to use {project} as the project: it contains your home directory",
            hint="run rcc from the project's own directory, or pass --project DIR",
            code=ExitCode.PROJECT,
        )
    for secret in policy.filesystem.hide:
        if _under(project, secret):
            raise RccError(
                f"refusing to use {project} as the project: it is inside hidden path {secret}",
                code=ExitCode.PROJECT,
            )

    mounts: list[MountOp] = []
    for entry in SYSTEM_ENTRIES:
        p = f"/{entry}"
        info = facts.info(p)
        if info.kind == "symlink":
            mounts.append(Symlink(info.link, p, "system (merged /usr)"))
        elif info.kind == "dir":
            mounts.append(Bind(p, p, False, "system, read-only"))
    mounts += [
        Special("dev", "/dev", "minimal /dev"),
        Special("proc", "/proc", "own PID namespace"),
        # Root's sandbox runs as the real uid 0, and sysctl files check only the uid: kernel.core_pattern
        # ("|/project/x" runs x as host root on the next crash) would be writable. bwrap's own cover of
        # /proc/sys is skipped when the directory itself looks read-only.
        Bind("/proc/sys", "/proc/sys", False, "read-only: global sysctls"),
        # The kernel lists every key the uid may view (descriptions, sizes, keyring names) in /proc/keys, and
        # per-uid key counts in /proc/key-users, whatever the PID namespace: hide both (keyctl is denied too).
        Mask("/proc/keys", False, "the user's kernel keys"),
        Mask("/proc/key-users", False, "the users' kernel key counts"),
        Tmpfs("/tmp", 0o1777, why="private, discarded"),
        Tmpfs("/var", why="private"),
        Tmpfs("/var/tmp", 0o1777, why="private, discarded"),
        Symlink("/run", "/var/run", "compat"),
        Tmpfs("/run", why="private: no host sockets (docker, podman, dbus, user runtime dirs)"),
        Tmpfs("/dev/shm", 0o1777, why="private, discarded"),
    ]
    nixos = facts.info(NIXOS_CURRENT_SYSTEM)
    if nixos.kind == "symlink" and nixos.real.startswith("/nix/store/"):
        mounts.append(Symlink(nixos.link, NIXOS_CURRENT_SYSTEM, "NixOS system profile (in /nix, read-only)"))
    mounts.append(Tmpfs(home, 0o700, why="private empty home; the real one stays invisible"))
    if facts.home_logical != home and not _under(facts.home_logical, "/tmp"):
        mounts.append(Symlink(home, facts.home_logical, "home is a symlink on the host"))

    def bind_existing(path: str, writable: bool, why: str) -> None:
        info = facts.info(path)
        if info.kind == "missing" or (info.kind == "symlink" and not info.target_exists):
            return
        src = info.real or path  # resolved in every component
        if any(_under(src, s) or _under(src, facts.info(s).real or s) for s in policy.filesystem.hide):
            return  # a toolchain link into a secret stays hidden
        if src == "/" or _under(home, src) or _under(facts.home_logical, src):
            raise RccError(
                f"{path} resolves to {src}, which would expose the whole home directory or filesystem",
                hint="name the directories the agent needs, e.g. ~/.cargo/bin",
                code=ExitCode.CONFIG,
            )
        mounts.append(Bind(src, path, writable, why))

    for p in policy.filesystem.toolchains:
        bind_existing(p, False, "toolchain, read-only")
    for p in policy.filesystem.read_only:
        bind_existing(p, False, "policy: read_only")
    for p in policy.filesystem.read_write:
        bind_existing(p, True, "policy: read_write")
    mounts.append(Bind(project, project, True, "the project"))
    mounts += _linked_git_binds(policy, facts)
    mounts += session.binds
    _refuse_writable_rcc_state(facts, [m for m in mounts if isinstance(m, Bind) and m.writable])
    mounts += _masks(policy, facts, [m for m in mounts if isinstance(m, Bind)])

    prot_mounts, placeholders = _protected(policy, facts)
    mounts += prot_mounts
    for more_mounts, more_placeholders in (
        _linked_git_protected(policy, facts),
        _submodule_git_protected(policy, facts),
    ):
        mounts += more_mounts
        placeholders += more_placeholders
    git_config = list(facts.git_identity)
    if facts.linked_git_dir and facts.linked_git_dir != facts.git_common_dir:
        # `git gc` expires every worktree's reflogs, and the others' are read-only: an automatic gc after a
        # commit would only print errors. The user's own gc on the host does it.
        git_config += [("gc.auto", "0"), ("maintenance.auto", "false")]
    excludes = [
        "/" + os.path.relpath(p.path, project)
        for p in placeholders
        if not p.is_dir and _under(p.path, project) and not _under(p.path, os.path.join(project, ".git"))
    ]
    if excludes and (facts.info(os.path.join(project, ".git")).kind == "dir" or facts.linked_git_dir):
        # Placeholders must not be committed by `git add -A` inside (they vanish after the run, and the host
        # would see them deleted): list them in an excludes file that only the sandbox's git reads.
        mounts.append(FileData(GIT_EXCLUDES, "\n".join(excludes) + "\n", "git: ignore rcc's placeholders"))
        git_config.append(("core.excludesFile", GIT_EXCLUDES))

    net = NetPlan()
    env = _env(policy, facts, session, home)
    if git_config:  # git's own way to take config from the environment (git >= 2.31)
        env["GIT_CONFIG_COUNT"] = str(len(git_config))
        for i, (k, v) in enumerate(git_config):
            env[f"GIT_CONFIG_KEY_{i}"] = k
            env[f"GIT_CONFIG_VALUE_{i}"] = v
    if policy.network.mode == "allowlist":
        # Ask mode only when someone can answer: a terminal session, not a one-shot print run (-p/--print).
        # Unattended runs are denied at once: rcc never hangs an agent nobody watches.
        ask = (
            policy.network.on_unknown == "ask"
            and session.interactive
            and not any(a in ("-p", "--print") for a in session.argv[1:])
        )
        net = NetPlan(
            "proxy",
            PROXY_PORT,
            (*policy.network.allow, *session.allow),
            policy.network.deny,
            policy.network.resolve,
            on_unknown="ask" if ask else "learn" if policy.network.on_unknown == "learn" else "deny",
            ask_timeout=policy.network.ask_timeout,
        )
        from rcc.net.env import proxy_env

        env.update(proxy_env(PROXY_PORT))
        if policy.network.credentials:
            net, bundle = _credentials(policy, facts, net, env, session_id)
            if bundle:
                mounts.append(bundle)
    if policy.network.publish or policy.network.host_services:
        net = replace(net, publish=_publish(policy), host_services=_host_services(policy, net))
    cwd = facts.cwd if _under(facts.cwd, project) else project
    # Root's sandbox is the real uid 0 and owns the host device nodes bwrap binds into /dev (`chmod 000
    # /dev/null` inside would break the host): it gets private copies of them, made fresh for the session.
    dev_nodes = tuple(DevNode(p, os.major(rdev), os.minor(rdev), mode) for p, rdev, mode in facts.owned_devices)
    devices_dir = ""
    if dev_nodes:
        from rcc import paths

        devices_dir = os.path.join(paths.state_dir(facts.env), "devices", session_id or "session")
    limits = _limits(policy, facts)
    if limits.tmp:  # every private writable tmpfs gets the size (a /tmp filler stops there, not at the host's RAM)
        mounts = [replace(m, size=limits.tmp) if isinstance(m, Tmpfs) and not m.read_only else m for m in mounts]
    return Plan(
        argv=session.argv,
        cwd=cwd,
        project=project,
        home=home,
        mounts=tuple(mounts),
        env=tuple(sorted(env.items())),
        namespaces=Namespaces(),
        net=net,
        placeholders=tuple(placeholders),
        uid=facts.uid,
        gid=facts.gid,
        new_session=not session.interactive,
        seccomp=True,
        session_id=session_id,
        reset_signals=session.interactive and facts.env_resets_signals,
        dev_nodes=dev_nodes,
        devices_dir=devices_dir,
        hidden=tuple(dict.fromkeys(p for s in policy.filesystem.hide for p in (s, facts.info(s).real) if p)),
        limits=limits,
        placeholder_anchors=_placeholder_anchors(facts),
        git_dirs=_swept_git_dirs(facts),
        branch=facts.git_branch,
    )


def _credentials(
    policy: Policy, facts: HostFacts, net: NetPlan, env: dict[str, str], session_id: str
) -> tuple[NetPlan, Bind | None]:
    """Credentials whose variable is set in rcc's environment: the variable holds a fresh placeholder inside
    (never the value: it replaces whatever passthrough copied), the hosts are allowed, and TLS clients trust the
    session CA through the bundle (written by rcc.backends._proxy.prepare_credentials before the sandbox
    starts). A credential whose variable is not set is left out: there is nothing to inject."""
    from rcc import paths
    from rcc.net.credentials import new_placeholder

    creds = []
    for name, (var, hosts, requests) in policy.network.credentials:
        if not facts.env.get(var):
            continue
        creds.append(CredentialPlan(name, var, hosts, new_placeholder(name), requests))
        env[var] = creds[-1].placeholder
    if not creds:
        return net, None
    if policy.backend == "seatbelt":  # no bind to put the bundle at CA_BUNDLE: refuse rather than half-work
        raise RccError(
            f"credentials ({', '.join(c.name for c in creds)}) are not supported on the seatbelt backend yet",
            hint="remove the [credentials] tables (rcc claude: --pass-api-key) or use another backend",
            code=ExitCode.CONFIG,
        )
    ca_dir = os.path.join(paths.state_dir(facts.env), "credentials", session_id or "session")
    for v in CA_BUNDLE_VARS:
        env[v] = CA_BUNDLE
    hosts = tuple(h for c in creds for h in c.hosts if h not in net.allow)
    net = replace(net, credentials=tuple(creds), ca_dir=ca_dir, allow=(*net.allow, *dict.fromkeys(hosts)))
    return net, Bind(os.path.join(ca_dir, "ca-bundle.pem"), CA_BUNDLE, False, "credentials: CA bundle, read-only")


def _placeholder_anchors(facts: HostFacts) -> tuple[str, ...]:
    if not facts.linked_git_dir:
        return ()
    anchors = [facts.git_anchor]
    if not _under(facts.linked_git_dir, facts.git_anchor):
        anchors.append(facts.linked_git_dir)  # a worktree git dir elsewhere: only this worktree's sessions use it
    return tuple(anchors)


def _swept_git_dirs(facts: HostFacts) -> tuple[str, ...]:
    if not facts.linked_git_dir:
        return ()
    common, git_dir = facts.git_common_dir, facts.linked_git_dir
    return (common,) if _under(git_dir, common) else (common, git_dir)


def _limits(policy: Policy, facts: HostFacts) -> ResourceLimits:
    from rcc.limits import resolve_size

    lim = policy.limits
    return ResourceLimits(
        memory=resolve_size(lim.memory, facts.memory_total),
        processes=0 if lim.processes == "none" else int(lim.processes),
        cpu=0.0 if lim.cpu == "none" else float(lim.cpu),
        tmp=resolve_size(lim.tmp, facts.memory_total),
    )


def _refuse_writable_rcc_state(facts: HostFacts, writable: Sequence[Bind]) -> None:
    """rcc's own config and state (user config.toml, trust store) must never sit under a writable bind: the
    sandbox could create or replace them (even when missing, or by renaming a parent of their mask) and widen
    its next session's policy."""
    from rcc import paths

    own = {paths.config_dir(facts.env), paths.state_dir(facts.env)}
    own |= {facts.info(p).real for p in own if facts.info(p).real}
    for b in writable:
        for d in sorted(own):
            if _under(d, b.src) or _under(d, b.dest):
                raise RccError(
                    f"{b.dest} would be writable in the sandbox and contains rcc's own files ({d})",
                    hint="name a narrower directory (rcc's config and trust store must stay out of reach)",
                    code=ExitCode.CONFIG,
                )


def _masks(policy: Policy, facts: HostFacts, binds: Sequence[Bind]) -> list[MountOp]:
    """Hide every secret that some bind would make visible, at the place where it would appear.

    A bind src -> dest shows host path src/X at dest/X. A secret that is a symlink is hidden where its target
    appears (the link itself then dangles)."""
    out: list[MountOp] = []
    pins: list[MountOp] = []
    done: set[str] = set()
    for secret in policy.filesystem.hide:
        info = facts.info(secret)
        if info.kind == "missing":
            continue
        if info.kind == "symlink":
            if not info.target_exists:
                continue
            host, is_dir = info.real, info.target_is_dir
        else:  # resolved: binds are compared by their resolved sources (the home itself may be a symlink)
            host, is_dir = info.real or secret, info.kind == "dir"
        for b in binds:
            if not _under(host, b.src):
                continue
            at = b.dest + host[len(b.src.rstrip("/")) :] if host != b.src else b.dest
            if b.writable and at != b.dest:
                # Renaming a directory carries the mask inside it away (`mv fish x; mkdir fish` would leave a
                # fresh secret path to plant): pin every directory between the bind and the mask, unless the
                # pin would cover a read-only bind made earlier (then that bind already stops the rename).
                rel = os.path.relpath(os.path.dirname(at), b.dest)
                parts = [] if rel == "." else rel.split("/")
                for i in range(1, len(parts) + 1):
                    pin = os.path.join(b.dest, *parts[:i])
                    if pin in done or any(not o.writable and _under(o.dest, pin) for o in binds):
                        continue
                    done.add(pin)
                    pins.append(Bind(os.path.join(b.src, *parts[:i]), pin, True, f"pinned: parent of {secret}"))
            if at not in done:
                done.add(at)
                out.append(Mask(at, is_dir, f"secret: {secret}"))
    return [*pins, *out]  # every pin before every mask: a pin must never cover a mask


def _hide_rcc_own(policy: Policy, env: Mapping[str, str]) -> Policy:
    """rcc's own config and state dirs are hidden wherever XDG_CONFIG_HOME / XDG_STATE_HOME put them (the
    defaults are in DEFAULT_SECRETS): they hold the trust store, the audit log and the running sessions' control
    sockets, which a sandbox must never see or reach (it would approve its own requests)."""
    from rcc import paths

    fs = policy.filesystem
    own = tuple(p for p in (paths.state_dir(env), paths.config_dir(env)) if p not in fs.hide)
    return replace(policy, filesystem=replace(fs, hide=(*fs.hide, *own))) if own else policy


def interesting_paths(
    policy: Policy, project: str, extra: Sequence[str] = (), env: Mapping[str, str] = os.environ
) -> list[str]:
    """Absolute paths probe.py must look at for compile_plan() (with the same `env` as the probe's)."""
    from rcc.probe import protected_candidates

    policy = _hide_rcc_own(policy, env)

    out = [
        *policy.filesystem.toolchains,
        *policy.filesystem.read_only,
        *policy.filesystem.read_write,
        *policy.filesystem.hide,
    ]
    out += protected_candidates(project, (*policy.filesystem.protect, *HG_PROTECTED, *PROTECTED_IF_PRESENT))
    out += list(extra)
    return out


def _publish(policy: Policy) -> tuple[Publish, ...]:
    from rcc.policy import parse_publish

    out: dict[tuple[str, int], Publish] = {}
    for spec in policy.network.publish:
        host, host_port, port = parse_publish(spec)  # validated by config: cannot fail here
        if (host, host_port) in out and out[(host, host_port)].port != port:
            first = out[(host, host_port)].port
            raise ConfigError("network.publish", "", f"host port {host_port} is published twice ({first} and {port})")
        out[(host, host_port)] = Publish(host, host_port, port)
    return tuple(out.values())


def _host_services(policy: Policy, net: NetPlan) -> tuple[int, ...]:
    ports = policy.network.host_services
    if net.mode == "proxy" and net.proxy_port in ports:
        raise ConfigError(
            "network.host_services",
            "",
            f"port {net.proxy_port} is rcc's proxy inside the sandbox; it cannot also be a host service",
        )
    return ports
