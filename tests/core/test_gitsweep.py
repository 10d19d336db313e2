"""rcc.gitsweep on a real directory: what would hang the host's git goes, everything else stays, and the walk
never leaves the git directory through a link."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from rcc.gitsweep import sweep_git_dirs


def test_sweep_removes_fifos_and_links_to_non_files_and_keeps_the_rest(tmp_path: Path) -> None:
    project = tmp_path / "p"
    git = project / ".git"
    (git / "refs/heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "fifo")
    os.mkfifo(git / "index")
    os.mkfifo(git / "refs/heads/main")
    os.symlink(outside / "fifo", git / "ORIG_HEAD")
    os.symlink("/dev/null", git / "FETCH_HEAD")
    os.symlink(tmp_path / "missing", git / "refs/heads/dangling")
    os.symlink("HEAD", git / "ok-link")  # controls: a link to a file, a link to a directory, a socket
    os.symlink(outside, git / "dir-link")
    sock = socket.socket(socket.AF_UNIX)
    gitfd = os.open(git, os.O_PATH | os.O_DIRECTORY)  # bind by a short path: the Nix build's temp dir is long
    try:
        sock.bind(f"/proc/self/fd/{gitfd}/fsmonitor--daemon.ipc")
    finally:
        os.close(gitfd)
    sock.close()
    removed, dir_links = sweep_git_dirs(str(project))
    assert sorted(removed) == sorted(
        [".git/index", ".git/refs/heads/main", ".git/ORIG_HEAD", ".git/FETCH_HEAD", ".git/refs/heads/dangling"]
    )
    assert sorted(os.listdir(git)) == ["HEAD", "dir-link", "fsmonitor--daemon.ipc", "ok-link", "refs"]
    assert (outside / "fifo").exists(), "the walk must not follow a link out of .git"
    assert dir_links == {(".git/dir-link", str(outside))}


def test_end_sweep_removes_only_the_links_to_directories_the_session_made(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / ".git/refs").mkdir(parents=True)
    hostdir = tmp_path / "host-dir-of-fifos"
    hostdir.mkdir()
    os.mkfifo(hostdir / "v1")
    os.symlink(tmp_path, project / ".git/objects")  # the user's own (repo-tool style)
    removed, keep = sweep_git_dirs(str(project))
    assert removed == []
    os.symlink(hostdir, project / ".git/refs/tags")  # made during the session
    os.unlink(project / ".git/objects")
    os.symlink(hostdir, project / ".git/objects")  # retargeted during the session
    removed, _ = sweep_git_dirs(str(project), keep_dir_links=keep)
    assert sorted(removed) == [".git/objects", ".git/refs/tags"]
    assert (hostdir / "v1").exists()


def test_sweep_of_a_missing_or_linked_git_dir_does_nothing(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    assert sweep_git_dirs(str(project)) == ([], frozenset())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.mkfifo(elsewhere / "index")
    os.symlink(elsewhere, project / ".git")
    assert sweep_git_dirs(str(project)) == ([], frozenset())
    assert (elsewhere / "index").exists()
    assert sweep_git_dirs(str(tmp_path / "nope")) == ([], frozenset())


def test_links_into_kernel_files_are_removed_whatever_a_stat_says(tmp_path: Path) -> None:
    """Attack (found by the red-team pass): links to files stat calls regular but that block or mean the reader's
    own input. `.git/ORIG_HEAD -> /proc/kmsg` hung host root's `git rev-parse ORIG_HEAD`; `-> /proc/self/fd/0`
    made the host's git read its own stdin (kept when rcc's stdin was a regular file); the same through a link in
    the work tree and through a directory link. Control: links to ordinary files, in the repository and outside,
    stay."""
    project = tmp_path / "p"
    git = project / ".git"
    git.mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "plain").write_text("x\n")
    os.symlink("/proc/kmsg", git / "ORIG_HEAD")
    os.symlink("/proc/self/fd/0", git / "FETCH_HEAD")
    os.symlink("/proc/self/fd/0", project / "evil")
    os.symlink("../evil", git / "MERGE_HEAD")
    os.symlink("/proc/self", project / "selfdir")
    os.symlink("../selfdir/fd/0", git / "CHERRY_PICK_HEAD")
    os.symlink("/sys/kernel/notes", git / "REVERT_HEAD")
    os.symlink("HEAD", git / "ok-link")  # controls
    os.symlink(tmp_path / "plain", git / "ok-outside")
    with open(tmp_path / "plain", "rb") as stdin_file:  # the sweeper's own stdin a regular file, as in scripts
        saved = os.dup(0)
        os.dup2(stdin_file.fileno(), 0)
        try:
            removed, _ = sweep_git_dirs(str(project))
        finally:
            os.dup2(saved, 0)
            os.close(saved)
    assert sorted(removed) == sorted(
        [".git/ORIG_HEAD", ".git/FETCH_HEAD", ".git/MERGE_HEAD", ".git/CHERRY_PICK_HEAD", ".git/REVERT_HEAD"]
    )
    assert sorted(os.listdir(git)) == ["HEAD", "ok-link", "ok-outside"]
