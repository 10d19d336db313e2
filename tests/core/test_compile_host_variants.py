"""Plans for host layouts other than Debian's: NixOS's /run/current-system, git identity, placeholders and git."""

from __future__ import annotations

from test_compile import PROJECT, facts, plan

from rcc.compile import GIT_EXCLUDES
from rcc.plan import FileData, Symlink, Tmpfs
from rcc.probe import PathInfo


def test_nixos_system_profile_link_survives_the_private_run() -> None:
    link = PathInfo("symlink", "/nix/store/abc-nixos-system", True, True, "/nix/store/abc-nixos-system")
    p = plan(f=facts({"/run/current-system": link}))
    kinds = [(type(m), m.dest) for m in p.mounts]
    assert kinds.index((Symlink, "/run/current-system")) > kinds.index((Tmpfs, "/run"))


def test_control_no_nixos_link_on_other_systems() -> None:
    assert not any(isinstance(m, Symlink) and m.dest == "/run/current-system" for m in plan().mounts)


def test_run_current_system_pointing_outside_nix_store_is_not_recreated() -> None:
    link = PathInfo("symlink", "/home/u/.ssh", True, True, "/home/u/.ssh")
    assert not any(m.dest == "/run/current-system" for m in plan(f=facts({"/run/current-system": link})).mounts)


def test_placeholders_are_excluded_from_git_inside() -> None:
    p = plan()
    data = [m for m in p.mounts if isinstance(m, FileData) and m.dest == GIT_EXCLUDES]
    assert data, "placeholders would be committed by `git add -A`"
    assert "/.mcp.json" in data[0].content.splitlines()
    env = dict(p.env)
    keys = {env[k]: env[k.replace("KEY", "VALUE")] for k in env if k.startswith("GIT_CONFIG_KEY_")}
    assert keys["core.excludesFile"] == GIT_EXCLUDES


def test_control_existing_protected_file_is_not_excluded() -> None:
    p = plan(f=facts({f"{PROJECT}/.mcp.json": PathInfo("file", f"{PROJECT}/.mcp.json")}))
    data = next(m for m in p.mounts if isinstance(m, FileData) and m.dest == GIT_EXCLUDES)
    assert "/.mcp.json" not in data.content.splitlines()  # a real, tracked file stays tracked
