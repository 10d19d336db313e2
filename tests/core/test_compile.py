"""compile_plan() is pure: HostFacts are built by hand here, and the Plan is checked as data.

The properties that keep the sandbox tight depend on mount *order* (a later mount covers an earlier one), so
most tests assert an op's position relative to the op it must cover."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcc.compile import Session, compile_plan, interesting_paths
from rcc.config import Contribution, Layer, merge
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, Mask, MountOp, Plan, Special, Tmpfs
from rcc.policy import DEFAULT_PROTECTED, EnvironmentPolicy, NetworkPolicy, Policy
from rcc.probe import HostFacts, PathInfo
from rcc.record import replace

HOME = "/home/u"
PROJECT = "/work/proj"


def facts(
    paths: Mapping[str, PathInfo] | None = None,
    env: Mapping[str, str] | None = None,
    submodules: tuple[str, ...] = (),
    home: str = HOME,
    project: str = PROJECT,
) -> HostFacts:
    base = {
        "/usr": PathInfo("dir", "/usr"),
        "/etc": PathInfo("dir", "/etc"),
        "/bin": PathInfo("symlink", "/usr/bin", True, True, "usr/bin"),
        f"{project}/.git": PathInfo("dir", f"{project}/.git"),
        f"{project}/.git/hooks": PathInfo("dir", f"{project}/.git/hooks"),
        f"{project}/.git/config": PathInfo("file", f"{project}/.git/config"),
    }
    base.update(paths or {})
    return HostFacts(
        uid=1000,
        gid=1000,
        user="u",
        home=home,
        home_logical=home,
        project=project,
        cwd=project,
        env=dict(env or {"PATH": "/usr/bin:/bin"}),
        paths=base,
        submodules=submodules,
    )


def policy(**fs: tuple[str, ...]) -> Policy:
    """Defaults (expanded against HOME, as config.merge does) plus `fs` extras, network off."""
    layer = Layer("test", tuple(Contribution(f"filesystem.{k}", v, "test") for k, v in fs.items()))
    pol = merge([layer], HOME)
    return replace(pol, network=NetworkPolicy(mode="none"))


def plan(p: Policy | None = None, f: HostFacts | None = None, argv: tuple[str, ...] = ("true",)) -> Plan:
    return compile_plan(p or policy(), f or facts(), Session(argv))


def index(mounts: tuple[MountOp, ...], kind: type, dest: str) -> int:
    for i, m in enumerate(mounts):
        if isinstance(m, kind) and m.dest == dest:
            return i
    raise AssertionError(f"no {kind.__name__} at {dest}: {[type(m).__name__ + ':' + m.dest for m in mounts]}")


def binds(p: Plan) -> dict[str, Bind]:
    return {m.dest: m for m in p.mounts if isinstance(m, Bind)}


# ------------------------------------------------------------------------------------------------ home & secrets


def test_home_is_a_private_tmpfs_before_any_bind_under_it() -> None:
    f = facts({f"{HOME}/.cargo/bin": PathInfo("dir", f"{HOME}/.cargo/bin")})
    p = plan(f=f)
    assert index(p.mounts, Tmpfs, HOME) < index(p.mounts, Bind, f"{HOME}/.cargo/bin")
    assert binds(p)[f"{HOME}/.cargo/bin"].writable is False


def test_secret_under_allowed_parent_is_masked_after_the_bind() -> None:
    f = facts(
        {
            f"{HOME}/.config": PathInfo("dir", f"{HOME}/.config"),
            f"{HOME}/.config/gh": PathInfo("dir", f"{HOME}/.config/gh"),
        }
    )
    p = plan(policy(read_only=(f"{HOME}/.config",)), f)
    assert index(p.mounts, Bind, f"{HOME}/.config") < index(p.mounts, Mask, f"{HOME}/.config/gh")


def test_secret_is_masked_where_a_bind_shows_it_not_where_it_lives() -> None:
    """--ro /opt/tools (-> ~/.local) shows ~/.local/share/keyrings at /opt/tools/share/keyrings."""
    keyrings = f"{HOME}/.local/share/keyrings"
    f = facts(
        {
            "/opt/tools": PathInfo("symlink", f"{HOME}/.local", True, True, f"{HOME}/.local"),
            keyrings: PathInfo("dir", keyrings),
        }
    )
    p = plan(policy(read_only=("/opt/tools",)), f)
    assert binds(p)["/opt/tools"].src == f"{HOME}/.local"
    assert index(p.mounts, Mask, "/opt/tools/share/keyrings") > index(p.mounts, Bind, "/opt/tools")


def test_bind_through_symlinked_parent_into_secret_is_dropped() -> None:
    """`--ro /x/link/.ssh` with link -> home: probe resolves every component, so src is the secret itself."""
    f = facts({"/x/link/.ssh": PathInfo("dir", f"{HOME}/.ssh"), f"{HOME}/.ssh": PathInfo("dir", f"{HOME}/.ssh")})
    p = plan(policy(read_only=("/x/link/.ssh",)), f)
    assert "/x/link/.ssh" not in binds(p)


def test_bind_resolving_to_the_home_is_a_config_error() -> None:
    f = facts({"/x/link": PathInfo("symlink", HOME, True, True, HOME)})
    with pytest.raises(RccError) as e:
        plan(policy(read_only=("/x/link",)), f)
    assert e.value.code == ExitCode.CONFIG and HOME in e.value.message


def test_toolchain_link_into_secret_stays_hidden() -> None:
    f = facts({f"{HOME}/.local/bin": PathInfo("symlink", f"{HOME}/.ssh", True, True, "../.ssh")})
    assert f"{HOME}/.local/bin" not in binds(plan(f=f))


@pytest.mark.parametrize("project", [HOME, "/home", "/"])
def test_project_containing_home_is_refused(project: str) -> None:
    with pytest.raises(RccError) as e:
        plan(f=facts(project=project))
    assert e.value.code == ExitCode.PROJECT


def test_project_inside_secret_is_refused() -> None:
    with pytest.raises(RccError) as e:
        plan(f=facts(project=f"{HOME}/.ssh/p"))
    assert e.value.code == ExitCode.PROJECT


def test_system_and_private_dirs() -> None:
    p = plan()
    b = binds(p)
    assert b["/usr"].writable is False and b["/etc"].writable is False
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        index(p.mounts, Tmpfs, d)
    assert p.namespaces.net and p.namespaces.pid and p.namespaces.ipc and p.namespaces.uts and p.namespaces.cgroup
    assert p.new_session and p.seccomp


# ------------------------------------------------------------------------------------------------ project


def test_git_dir_pinned_then_hooks_and_config_read_only() -> None:
    p = plan()
    b = binds(p)
    assert b[f"{PROJECT}/.git"].writable is True  # pinned: a mount point cannot be renamed
    assert index(p.mounts, Bind, PROJECT) < index(p.mounts, Bind, f"{PROJECT}/.git")
    for rel in (".git/hooks", ".git/config"):
        assert b[f"{PROJECT}/{rel}"].writable is False
        assert index(p.mounts, Bind, f"{PROJECT}/.git") < index(p.mounts, Bind, f"{PROJECT}/{rel}")


def test_missing_protected_paths_get_placeholders() -> None:
    p = plan()
    ph = {x.path: x for x in p.placeholders}
    for rel in (
        ".mcp.json",
        ".envrc",
        ".gitmodules",
        ".vscode",
        ".idea",
        ".claude",
        ".git/commondir",
        ".git/worktrees",
    ):
        assert f"{PROJECT}/{rel}" in ph, rel
        assert binds(p)[f"{PROJECT}/{rel}"].writable is False
    assert ph[f"{PROJECT}/.claude"].is_dir  # Claude Code lists it; others are files that take the name
    assert not ph[f"{PROJECT}/.envrc"].is_dir
    assert ph[f"{PROJECT}/.mcp.json"].content == "{}\n"
    assert ph[f"{PROJECT}/.git/commondir"].content == ".\n"  # git refuses an empty commondir
    # aider parses .aider.conf.yml as a YAML mapping and stops on an empty file: an empty mapping instead
    assert ph[f"{PROJECT}/.aider.conf.yml"].content == "{}\n"
    assert ph[f"{PROJECT}/.pre-commit-config.yaml"].content == "{}\n"
    assert ph[f"{PROJECT}/.gemini"].is_dir  # .gemini/settings.json missing with its parent: the parent is held
    assert ph[f"{PROJECT}/.envrc"].content == ""


def test_no_repository_gets_a_git_placeholder() -> None:
    f = facts()
    paths = {k: v for k, v in f.paths.items() if not k.startswith(f"{PROJECT}/.git")}
    p = plan(f=replace(f, paths=paths))
    ph = {x.path: x for x in p.placeholders}
    assert ph[f"{PROJECT}/.git"].is_dir
    assert not any(x.startswith(f"{PROJECT}/.git/") for x in ph)


def test_existing_claude_dir_is_pinned_before_its_protected_files() -> None:
    f = facts({f"{PROJECT}/.claude": PathInfo("dir", f"{PROJECT}/.claude")})
    p = plan(f=f)
    b = binds(p)
    assert b[f"{PROJECT}/.claude"].writable is True
    pin = index(p.mounts, Bind, f"{PROJECT}/.claude")
    for rel in ("settings.json", "settings.local.json", "commands", "agents"):
        assert index(p.mounts, Bind, f"{PROJECT}/.claude/{rel}") > pin
        assert b[f"{PROJECT}/.claude/{rel}"].writable is False


@pytest.mark.parametrize("rel", [".git", ".envrc", ".claude", ".claude/settings.json", ".vscode", ".git/hooks"])
def test_protected_symlink_is_refused(rel: str) -> None:
    paths = {f"{PROJECT}/{rel}": PathInfo("symlink", f"{PROJECT}/elsewhere", True, True, "elsewhere")}
    if rel.startswith(".claude/"):
        paths[f"{PROJECT}/.claude"] = PathInfo("dir", f"{PROJECT}/.claude")
    with pytest.raises(RccError) as e:
        plan(f=facts(paths))
    assert e.value.code == ExitCode.PROJECT and rel in e.value.message


def test_git_pointer_file_is_read_only() -> None:
    f = facts({f"{PROJECT}/.git": PathInfo("file", f"{PROJECT}/.git")})
    p = plan(f=f)
    assert binds(p)[f"{PROJECT}/.git"].writable is False


def test_submodule_pointer_is_read_only_and_its_dir_pinned() -> None:
    f = facts(
        {
            f"{PROJECT}/libs": PathInfo("dir", f"{PROJECT}/libs"),
            f"{PROJECT}/libs/sub": PathInfo("dir", f"{PROJECT}/libs/sub"),
            f"{PROJECT}/libs/sub/.git": PathInfo("file", f"{PROJECT}/libs/sub/.git"),
        },
        submodules=("libs/sub",),
    )
    p = plan(f=f)
    b = binds(p)
    assert b[f"{PROJECT}/libs/sub/.git"].writable is False
    assert b[f"{PROJECT}/libs"].writable is True and b[f"{PROJECT}/libs/sub"].writable is True  # pinned
    assert index(p.mounts, Bind, f"{PROJECT}/libs/sub") < index(p.mounts, Bind, f"{PROJECT}/libs/sub/.git")


def test_unpopulated_submodule_dir_is_frozen_not_given_a_placeholder() -> None:
    f = facts({f"{PROJECT}/sub": PathInfo("dir", f"{PROJECT}/sub")}, submodules=("sub",))
    p = plan(f=f)
    assert binds(p)[f"{PROJECT}/sub"].writable is False
    assert f"{PROJECT}/sub/.git" not in {x.path for x in p.placeholders}


def test_hostile_submodule_path_cannot_reopen_a_read_only_dir() -> None:
    """.gitmodules `path = .claude/commands/x`: pinning x read-write would undo the read-only .claude/commands."""
    cmds = f"{PROJECT}/.claude/commands"
    f = facts(
        {
            f"{PROJECT}/.claude": PathInfo("dir", f"{PROJECT}/.claude"),
            cmds: PathInfo("dir", cmds),
            f"{cmds}/x": PathInfo("dir", f"{cmds}/x"),
            f"{cmds}/x/.git": PathInfo("file", f"{cmds}/x/.git"),
        },
        submodules=(".claude/commands/x",),
    )
    p = plan(f=f)
    assert all(not m.writable for m in p.mounts if isinstance(m, Bind) and m.dest.startswith(cmds))


@given(st.lists(st.sampled_from(DEFAULT_PROTECTED), min_size=1, unique=True), st.data())
def test_no_writable_bind_ever_follows_a_read_only_one_it_would_cover(rels: list[str], data: st.DataObject) -> None:
    """Whatever subset of protected paths exists (as dirs or files), no later writable mount sits on or under an
    earlier read-only one inside the project."""
    paths = {}
    for rel in rels:
        kind: Literal["dir", "file"] = data.draw(st.sampled_from(["dir", "file"]))
        parts = rel.split("/")
        for i in range(1, len(parts)):
            paths[f"{PROJECT}/{'/'.join(parts[:i])}"] = PathInfo("dir", f"{PROJECT}/{'/'.join(parts[:i])}")
        paths.setdefault(f"{PROJECT}/{rel}", PathInfo(kind, f"{PROJECT}/{rel}"))
    p = plan(f=facts(paths))
    ro: list[str] = []
    for m in p.mounts:
        if not isinstance(m, Bind) or not m.dest.startswith(PROJECT + "/"):
            continue
        if m.writable:
            assert not any(m.dest == r or m.dest.startswith(r + "/") for r in ro), (m.dest, ro)
        else:
            ro.append(m.dest)


def test_interesting_paths_cover_every_component_of_protected_paths() -> None:
    pol = policy()
    wanted = set(interesting_paths(pol, PROJECT))
    assert f"{PROJECT}/.claude" in wanted and f"{PROJECT}/.claude/settings.json" in wanted
    assert f"{HOME}/.ssh" in wanted  # secrets are probed so masks can be placed
    assert all(os.path.isabs(p) for p in wanted)


# ------------------------------------------------------------------------------------------------ environment


def test_environment_is_an_allowlist() -> None:
    env_in = {
        "PATH": "/usr/bin",
        "TERM": "xterm",
        "LC_ALL": "C",
        "AWS_SECRET_ACCESS_KEY": "s",
        "SSH_AUTH_SOCK": "/tmp/x",
        "LD_PRELOAD": "/x.so",
        "HOME": "/elsewhere",
    }
    p = plan(f=facts(env=env_in))
    env = dict(p.env)
    assert env["PATH"] == "/usr/bin" and env["TERM"] == "xterm" and env["LC_ALL"] == "C"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "SSH_AUTH_SOCK" not in env and "LD_PRELOAD" not in env
    assert env["HOME"] == HOME and env["USER"] == "u" and env["TMPDIR"] == "/tmp"


def test_passthrough_pattern_is_a_prefix_only() -> None:
    pol = replace(policy(), environment=EnvironmentPolicy(passthrough=("MY_*",)))
    p = plan(pol, facts(env={"MY_A": "1", "XMY_B": "2", "MY": "3"}))
    env = dict(p.env)
    assert env.get("MY_A") == "1" and "XMY_B" not in env and "MY" not in env


def test_proxy_env_only_in_allowlist_mode() -> None:
    none = dict(plan().env)
    assert not any(k.lower().endswith("_proxy") for k in none)
    p = compile_plan(Policy(network=NetworkPolicy(mode="allowlist")), facts(), Session(("true",)))
    env = dict(p.env)
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:3128" and p.net.mode == "proxy"


def test_proc_sys_is_read_only_after_proc() -> None:
    p = plan()
    assert binds(p)["/proc/sys"].writable is False
    assert index(p.mounts, Special, "/proc") < index(p.mounts, Bind, "/proc/sys")


@pytest.mark.parametrize("home", ["/", ""])
def test_home_at_root_is_refused(home: str) -> None:
    """HOME=/ (service accounts) would put the private home's tmpfs over the whole system."""
    with pytest.raises(RccError) as e:
        plan(f=replace(facts(), home=home or "/", home_logical=home))
    assert e.value.code == ExitCode.SETUP and "HOME" in e.value.message


def test_git_that_is_neither_dir_nor_file_is_kept_read_only() -> None:
    """A fifo or socket named .git could be deleted and replaced by a directory with hooks."""
    p = plan(f=facts({f"{PROJECT}/.git": PathInfo("other", f"{PROJECT}/.git")}))
    assert binds(p)[f"{PROJECT}/.git"].writable is False


# ------------------------------------------------------------------------------------------------ linked worktrees

MAIN = "/work/main"
COMMON = f"{MAIN}/.git"
WT_GIT = f"{COMMON}/worktrees/proj"


def linked_facts(home: str = HOME, common: str = COMMON, git_dir: str = WT_GIT) -> HostFacts:
    f = facts({f"{PROJECT}/.git": PathInfo("file", f"{PROJECT}/.git")}, home=home)
    paths = dict(f.paths)
    for p in (common, f"{common}/hooks", f"{common}/info", f"{common}/worktrees", git_dir):
        paths[p] = PathInfo("dir", p)
    for p in (f"{common}/config", f"{common}/HEAD", f"{common}/index", f"{git_dir}/commondir", f"{git_dir}/gitdir"):
        paths[p] = PathInfo("file", p)
    anchor = os.path.dirname(common) if common.endswith("/.git") else common
    return replace(f, paths=paths, linked_git_dir=git_dir, git_common_dir=common, git_anchor=anchor)


def test_linked_worktree_binds_common_dir_then_protects_it_then_its_own_git_dir() -> None:
    p = plan(f=linked_facts())
    b = binds(p)
    assert b[COMMON].writable is True  # objects, refs, packed-refs: commit, branch -d, tag -d
    assert MAIN not in b  # nothing of the main working tree
    for rel in ("hooks", "config", "info", "worktrees", "HEAD", "index"):
        assert b[f"{COMMON}/{rel}"].writable is False, rel
        assert index(p.mounts, Bind, COMMON) < index(p.mounts, Bind, f"{COMMON}/{rel}")
    # the worktree's git dir is writable over the read-only worktrees/, its pointers read-only over it
    assert b[WT_GIT].writable is True
    assert index(p.mounts, Bind, f"{COMMON}/worktrees") < index(p.mounts, Bind, WT_GIT)
    for rel in ("commondir", "gitdir", "config.worktree", "modules"):
        assert b[f"{WT_GIT}/{rel}"].writable is False, rel
        assert index(p.mounts, Bind, WT_GIT) < index(p.mounts, Bind, f"{WT_GIT}/{rel}")
    ph = {x.path: x for x in p.placeholders}
    assert ph[f"{COMMON}/commondir"].content == ".\n" and not ph[f"{WT_GIT}/config.worktree"].is_dir
    assert f"{COMMON}/HEAD" not in ph and f"{WT_GIT}/gitdir" not in ph
    assert p.placeholder_anchors == (MAIN,)  # shared with the main repository's own sessions
    assert p.git_dirs == (COMMON,)  # swept (the worktree's git dir is inside it)


def test_linked_worktree_placeholders_in_the_project_are_excluded_from_git_add() -> None:
    p = plan(f=linked_facts())
    env = dict(p.env)
    keys = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert keys["core.excludesFile"] == "/run/rcc/git-excludes"
    assert keys["gc.auto"] == "0"  # gc would expire the other worktrees' (read-only) reflogs
    (data,) = (m for m in p.mounts if m.dest == "/run/rcc/git-excludes")
    assert "/.envrc\n" in data.content and "/.git/" not in data.content and ".." not in data.content  # type: ignore[attr-defined]


def test_project_without_linked_git_dir_binds_nothing_outside() -> None:
    p = plan()
    assert p.placeholder_anchors == () and p.git_dirs == ()
    assert all(b.dest.startswith((PROJECT, "/usr", "/etc", "/proc")) for b in binds(p).values() if b.writable)


@pytest.mark.parametrize("common", ["/home", "/", f"{HOME}/.ssh/x/.git"])
def test_linked_git_dir_over_home_or_in_a_secret_is_refused(common: str) -> None:
    with pytest.raises(RccError) as e:
        plan(f=linked_facts(common=common, git_dir=f"{common.rstrip('/')}/worktrees/proj"))
    assert e.value.code == ExitCode.PROJECT


def test_linked_git_dir_containing_the_project_is_refused() -> None:
    with pytest.raises(RccError) as e:
        plan(f=linked_facts(common="/work", git_dir="/work/wt-git"))
    assert e.value.code == ExitCode.PROJECT and "contain one another" in e.value.message


def test_submodule_git_dir_is_its_own_common_dir_with_head_and_index_writable() -> None:
    modules = f"{MAIN}/.git/modules/proj"
    p = plan(f=linked_facts(common=modules, git_dir=modules))
    b = binds(p)
    assert b[modules].writable is True and b[f"{modules}/hooks"].writable is False
    assert f"{modules}/HEAD" not in b and f"{modules}/index" not in b  # its own state: git commit writes them
    assert p.placeholder_anchors == (modules,)


def test_submodule_git_dirs_under_read_only_modules_are_bound_writable_after_it_and_protected() -> None:
    sub = f"{PROJECT}/.git/modules/lib"
    f = facts({sub: PathInfo("dir", sub), f"{sub}/hooks": PathInfo("dir", f"{sub}/hooks")})
    p = plan(f=replace(f, submodule_git_dirs=(sub,)))
    b = binds(p)
    assert b[f"{PROJECT}/.git/modules"].writable is False
    assert b[sub].writable is True
    assert index(p.mounts, Bind, f"{PROJECT}/.git/modules") < index(p.mounts, Bind, sub)
    for rel in ("hooks", "config", "info", "commondir", "modules", "worktrees"):
        assert b[f"{sub}/{rel}"].writable is False, rel
        assert index(p.mounts, Bind, sub) < index(p.mounts, Bind, f"{sub}/{rel}")
    assert f"{sub}/index" not in b  # its own index: a commit in the submodule writes it
