"""probe.py helpers that read files the repository ships (and a hostile one controls): .gitmodules and the git
config's core.hooksPath; and path_info's resolution of every path component."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rcc import probe
from rcc.probe import hooks_path, path_info, submodule_paths


def test_submodule_paths_keep_only_paths_inside_the_project(tmp_path: Path) -> None:
    (tmp_path / ".gitmodules").write_text(
        '[submodule "a"]\n\tpath = libs/a\n\turl = x\n'
        '[submodule "b"]\n\tpath = "quoted/b"\n'
        '[submodule "evil1"]\n\tpath = ../../etc\n'
        '[submodule "evil2"]\n\tpath = /etc\n'
        '[submodule "evil3"]\n\tpath = libs/../../x\n'
        '[submodule "dot"]\n\tpath = .\n'
        '[submodule "dup"]\n\tpath = libs/./a\n'
    )
    assert submodule_paths(str(tmp_path)) == ("libs/a", "quoted/b")


def test_symlinked_gitmodules_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "real").write_text('[submodule "a"]\n\tpath = a\n')
    os.symlink(tmp_path / "real", tmp_path / ".gitmodules")
    assert submodule_paths(str(tmp_path)) == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".githooks", ".githooks"),
        ("./tools/hooks/", "tools/hooks"),
        (".husky/_", ".husky/_"),
        ('"quoted dir"', "quoted dir"),
        ("../elsewhere", ""),
        ("/usr/share/hooks", ""),
        ("{project}/abs/hooks", "abs/hooks"),
    ],
)
def test_hooks_path_inside_the_project(tmp_path: Path, value: str, expected: str) -> None:
    project = tmp_path / "p"
    (project / ".git").mkdir(parents=True)
    (project / ".git/config").write_text(f"[core]\n\tbare = false\n\thooksPath = {value.format(project=project)}\n")
    assert hooks_path(str(project), str(tmp_path / "home"), {}) == expected


def test_hooks_path_from_the_users_config_applies_to_each_repository(tmp_path: Path) -> None:
    project, home = tmp_path / "p", tmp_path / "home"
    (project / ".git").mkdir(parents=True)
    (project / ".git/config").write_text("[core]\n\tbare = false\n")
    home.mkdir()
    (home / ".gitconfig").write_text("[Core]\n\tHooksPath = .githooks\n")
    assert hooks_path(str(project), str(home), {}) == ".githooks"
    (project / ".git/config").write_text("[core]\n\thooksPath = /opt/hooks\n")  # the repository's wins
    assert hooks_path(str(project), str(home), {}) == ""


def test_path_info_resolves_every_component(tmp_path: Path) -> None:
    (tmp_path / "home/.ssh").mkdir(parents=True)
    os.symlink(tmp_path / "home", tmp_path / "link")
    info = path_info(str(tmp_path / "link/.ssh"))
    assert info.kind == "dir" and info.real == str(tmp_path / "home/.ssh")
    link = path_info(str(tmp_path / "link"))
    assert link.kind == "symlink" and link.real == str(tmp_path / "home") and link.target_is_dir
    assert path_info(str(tmp_path / "missing")).kind == "missing"


def _git(*args: str, cwd: Path) -> None:
    import subprocess

    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ["PATH"], "HOME": "/"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def _main_and_worktree(tmp_path: Path) -> tuple[Path, Path]:
    main = tmp_path / "main"
    main.mkdir()
    _git("init", "-q", "-b", "main", cwd=main)
    _git("-c", "user.name=T", "-c", "user.email=t@e.invalid", "commit", "-q", "--allow-empty", "-m", "i", cwd=main)
    _git("worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"), cwd=main)
    return main, tmp_path / "wt"


def test_linked_git_dirs_of_a_worktree(tmp_path: Path) -> None:
    main, wt = _main_and_worktree(tmp_path)
    common = os.path.realpath(main / ".git")
    assert probe.linked_git_dirs(os.path.realpath(wt)) == (f"{common}/worktrees/wt", common)
    assert probe.git_anchor(common) == os.path.realpath(main)
    assert probe.linked_git_dirs(os.path.realpath(main)) == ("", "")  # .git is a directory


def test_linked_git_dirs_ignores_a_pointer_the_main_repository_does_not_point_back_to(tmp_path: Path) -> None:
    """A `.git` file naming some git dir (or the home) must not make rcc bind that directory writable: git's own
    worktree layout has the git dir's `gitdir` file naming this `.git`."""
    main, _wt = _main_and_worktree(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / ".git").write_text(f"gitdir: {main}/.git/worktrees/wt\n")
    assert probe.linked_git_dirs(str(other)) == ("", "")
    (other / ".git").write_text(f"gitdir: {tmp_path}\n")
    assert probe.linked_git_dirs(str(other)) == ("", "")
    (other / ".git").write_text(f"gitdir: {main}/.git\n")  # another repository's git dir
    assert probe.linked_git_dirs(str(other)) == ("", "")
    _git("config", "core.worktree", str(other), cwd=main)  # a separate git dir names its tree: accepted
    assert probe.linked_git_dirs(str(other)) == (os.path.realpath(main / ".git"),) * 2


def test_linked_git_dirs_of_a_submodule(tmp_path: Path) -> None:
    main, _ = _main_and_worktree(tmp_path)
    _git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(main), "sub", cwd=main)
    modules = os.path.realpath(main / ".git/modules/sub")
    assert probe.linked_git_dirs(os.path.realpath(main / "sub")) == (modules, modules)
    assert probe.git_anchor(modules) == modules
