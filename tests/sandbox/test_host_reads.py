"""Files the host's own tools load without being asked to run project code (docs/sandbox.md, "Files the host's
tools load on their own"), judged by what the host does afterwards, on every backend; and what /proc tells a
session about the user's kernel keys. The create/write probes for every catalogue entry are in tests/attacks.py.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from escape_world import World

pytestmark = pytest.mark.sandbox


def test_legacy_remote_file_cannot_redirect_host_git_push(world: World) -> None:
    """`.git/remotes/origin` (or `.git/branches/origin`) gives `origin` a URL when the config names none: the
    user's next plain `git push origin` would send the project to the session's URL."""
    evil = world.outside / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True, capture_output=True)
    world.own_tree(evil)
    res = world.sh(
        f"mkdir -p .git/remotes .git/branches 2>/dev/null; "
        f"printf 'URL: {evil}\\nPush: refs/heads/main:refs/heads/main\\n' > .git/remotes/origin 2>/dev/null; "
        f"echo {evil} > .git/branches/origin 2>/dev/null; echo done"
    )
    assert "done" in res.stdout, res.stderr
    push = world.git("push", "-q", "origin", "main", check=False)
    assert push.returncode != 0, "the host's git push found a remote the session planted"
    assert not list((evil / "refs/heads").iterdir()), "the project reached the planted URL"
    # control: the mechanism is real, and the user's own remote file (made on the host) still works after a run
    assert not (world.project / ".git/remotes").exists(), "the placeholder must be gone after the run"
    world.write(world.project / ".git/remotes/origin", f"URL: {evil}\nPush: refs/heads/main:refs/heads/main\n")
    world.git("push", "-q", "origin", "main")
    assert (evil / "refs/heads/main").exists()


def test_yarn_release_named_by_yarnrc_cannot_be_rewritten(world: World) -> None:
    """yarnPath makes *every* yarn command (`yarn --version`) run that file: the file, the plugins and the
    config naming them are never writable where they exist. Control: the rest of .yarn (cache, install state)
    stays the project's."""
    release = world.write(world.project / ".yarn/releases/yarn-4.1.0.cjs", "// yarn\n")
    plugin = world.write(world.project / ".yarn/plugins/plugin.cjs", "// plugin\n")
    rc = world.write(world.project / ".yarnrc.yml", "yarnPath: .yarn/releases/yarn-4.1.0.cjs\n")
    res = world.sh(
        'echo \'require("child_process").execSync("touch /tmp/x")\' >> .yarn/releases/yarn-4.1.0.cjs 2>/dev/null; '
        "echo evil > .yarn/releases/evil.cjs 2>/dev/null; echo evil > .yarn/plugins/evil.cjs 2>/dev/null; "
        "mv .yarn/releases .yarn/r 2>/dev/null; echo 'yarnPath: evil.cjs' > .yarnrc.yml 2>/dev/null; "
        "mkdir -p .yarn/cache && echo zip > .yarn/cache/pkg.zip && echo state > .yarn/install-state.gz && echo ok"
    )
    assert "ok" in res.stdout, res.stderr
    assert release.read_text() == "// yarn\n" and plugin.read_text() == "// plugin\n"
    assert rc.read_text() == "yarnPath: .yarn/releases/yarn-4.1.0.cjs\n"
    assert sorted(p.name for p in (world.project / ".yarn").iterdir()) == [
        "cache",
        "install-state.gz",
        "plugins",
        "releases",
    ]
    assert sorted(p.name for p in (world.project / ".yarn/releases").iterdir()) == ["yarn-4.1.0.cjs"]
    assert (world.project / ".yarn/cache/pkg.zip").read_text() == "zip\n"


def _user_key(world: World, description: str, action: str) -> None:
    """Add (action "add") or unlink ("remove") a `user` key in the world user's user keyring, on the host
    (x86_64 syscall numbers: add_key 248, keyctl 250)."""
    code = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "ring, d = -4, sys.argv[1].encode()\n"  # KEY_SPEC_USER_KEYRING
        "if sys.argv[2] == 'add':\n"
        "    k = libc.syscall(248, b'user', d, b'secret-payload', 14, ring)\n"
        "else:\n"
        "    k = libc.syscall(250, 10, ring, b'user', d, 0)\n"  # KEYCTL_SEARCH
        "    k = k if k < 0 else libc.syscall(250, 9, k, ring)\n"  # KEYCTL_UNLINK
        "assert k >= 0, ctypes.get_errno()\n"
    )
    argv = world.as_user(["python3", "-c", code, description, action], world.host_env())
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def test_proc_keys_do_not_list_the_users_kernel_keys(world: World) -> None:
    desc = f"rcc-test-key-{uuid.uuid4().hex[:8]}"
    _user_key(world, desc, "add")
    try:
        outside = subprocess.run(
            world.as_user(["cat", "/proc/keys"], world.host_env()), capture_output=True, text=True, check=True
        ).stdout
        assert desc in outside, "the world has no key to leak: the attack would prove nothing"
        res = world.rcc(
            "run", "--no-network", "--", "sh", "-c",
            "cat /proc/keys; echo =; cat /proc/key-users; echo =; grep -c . /proc/self/status; head -c 3 /proc/stat",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        keys, key_users, rest = res.stdout.split("=\n")
        assert desc not in res.stdout and keys == "", keys
        if world.engine != "docker":  # runc refuses mounts inside /proc; docker masks only /proc/keys
            assert key_users == "", key_users
        # control: the rest of /proc still works
        lines, stat = rest.split("\n", 1)
        assert int(lines) > 10 and stat.startswith("cpu"), rest
    finally:
        _user_key(world, desc, "remove")


# A fifo where the host's git opens a file blocks it in open(2) forever. Each place is tried by making the fifo
# beside it and renaming it over the real file only if that worked, so a stopped attack leaves a working repo.
FIFO_PLACES = (".git/index", ".git/HEAD", ".git/ORIG_HEAD", ".git/refs/heads/main", ".git/packed-refs", "OBJECT")


def _git_status_finishes(world: World) -> subprocess.CompletedProcess[str]:
    argv = world.as_user(["git", "status", "--porcelain"], world.host_env())
    try:
        return subprocess.run(argv, cwd=world.project, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError("the host's git status hangs on what the session left in .git") from None


def _special_files(top: Path) -> list[str]:
    out = []
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            mode = os.lstat(os.path.join(d, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                out.append(os.path.relpath(os.path.join(d, name), top))
    return out


def test_fifo_planted_in_git_cannot_hang_host_git_status(world: World) -> None:
    world.git("update-ref", "ORIG_HEAD", "HEAD")
    world.git("pack-refs", "--all")
    world.git("update-ref", "refs/heads/main", "HEAD")  # loose again, beside packed-refs
    obj = world.git("rev-parse", "HEAD").stdout.strip()
    places = [p.replace("OBJECT", f".git/objects/{obj[:2]}/{obj[2:]}") for p in FIFO_PLACES]
    plant = "; ".join(
        f"{{ mkfifo .git/f 2>/dev/null || python3 -c 'import os; os.mkfifo(\".git/f\")' 2>/dev/null || "
        f"mknod .git/f p 2>/dev/null; }} && mv -f .git/f {p} && echo PLANTED {p}"
        for p in places
    )
    res = world.sh(
        # control: regular files still come from mknod, and git work inside still lands
        "python3 -c 'import os; os.mknod(\"made-by-mknod\")' && echo x > new.txt && git add -A && "
        f"git commit -q -m 'from sandbox' && echo COMMITTED; {plant}; "
        "mkfifo /tmp/f 2>/dev/null && mv -f /tmp/f .gitignore && echo PLANTED tmp"
    )
    assert "PLANTED" not in res.stdout, res.stdout
    assert "COMMITTED" in res.stdout, res.stdout + res.stderr
    assert _special_files(world.project) == []
    st = _git_status_finishes(world)
    assert st.returncode == 0, st.stderr
    assert world.git("log", "-1", "--format=%s").stdout.strip() == "from sandbox"
    assert (world.project / "made-by-mknod").is_file()


@pytest.mark.backends("bwrap", why="runs no sandbox: the host's own git against a fifo the host made")
def test_control_a_fifo_in_git_does_hang_git_status(world: World) -> None:
    """The attack is real: the same fifo made on the host (not by a session) blocks git until the timeout."""
    index = world.project / ".git/index"
    index.unlink()
    os.mkfifo(index)
    try:
        with pytest.raises(AssertionError, match="hangs"):
            argv = world.as_user(["git", "status", "--porcelain"], world.host_env())
            try:
                subprocess.run(argv, cwd=world.project, capture_output=True, timeout=3, check=False)
            except subprocess.TimeoutExpired:
                raise AssertionError("hangs") from None
    finally:
        with contextlib.suppress(OSError):  # release the git the timeout orphaned (runuser died, git waits on)
            os.close(os.open(index, os.O_WRONLY | os.O_NONBLOCK))
        index.unlink()


def test_symlink_in_git_to_a_host_fifo_is_removed_when_the_session_ends(world: World) -> None:
    """Seccomp stops a session from making fifos, not from linking to one the host already has (/run/initctl):
    rcc sweeps the git directory at the end. Control: a link to a regular file in .git stays."""
    fifo = world.outside / "host-fifo"
    os.mkfifo(fifo)
    world.own(fifo)
    later = world.outside / "fifo-made-later"
    res = world.sh(
        f"rm -f .git/index && ln -s {fifo} .git/index && ln -s {fifo} .git/ORIG_HEAD && "
        f"ln -s {later} .git/refs/heads/later && ln -s HEAD .git/my-own-link && echo PLANTED"
    )
    assert "PLANTED" in res.stdout, res.stderr
    assert "removed .git/index" in res.stderr and "removed .git/refs/heads/later" in res.stderr, res.stderr
    os.mkfifo(later)
    st = _git_status_finishes(world)
    assert st.returncode == 0, st.stderr
    for name in ("index", "ORIG_HEAD", "refs/heads/later"):
        assert not os.path.lexists(world.project / ".git" / name), name
    assert os.readlink(world.project / ".git/my-own-link") == "HEAD"
    assert _special_files(world.project) == []


def test_link_in_git_into_kernel_files_is_removed_when_the_session_ends(world: World) -> None:
    """`.git/ORIG_HEAD -> /proc/kmsg` (stat says regular: host root's git blocked reading it) and
    `-> /proc/self/fd/0` (the host's git would read its own stdin) are removed too, with rcc's stdin a regular file.
    Control: a link to a regular file in .git stays."""
    res = world.sh(
        "ln -s /proc/kmsg .git/ORIG_HEAD && ln -s /proc/self/fd/0 .git/FETCH_HEAD && ln -s HEAD .git/my-link "
        "&& echo PLANTED"
    )
    assert "PLANTED" in res.stdout, res.stderr
    assert "removed .git/ORIG_HEAD" in res.stderr and "removed .git/FETCH_HEAD" in res.stderr, res.stderr
    for name in ("ORIG_HEAD", "FETCH_HEAD"):
        assert not os.path.lexists(world.project / ".git" / name), name
    assert os.readlink(world.project / ".git/my-link") == "HEAD"
    assert _git_status_finishes(world).returncode == 0


def test_link_in_git_to_a_host_directory_of_fifos_is_removed_when_the_session_ends(world: World) -> None:
    """`refs/tags -> a host directory holding fifos` hangs every command that lists refs (`git log --decorate`,
    `for-each-ref`). Control: a link to a directory the user had before the session (repo-tool style) stays."""
    fifos = world.outside / "fifo-dir"
    fifos.mkdir()
    os.mkfifo(fifos / "v1")
    world.own_tree(fifos)
    shared = world.outside / "shared-rr-cache"
    shared.mkdir()
    world.own(shared)
    os.symlink(shared, world.project / ".git/rr-cache")
    res = world.sh(f"rm -rf .git/refs/tags && ln -s {fifos} .git/refs/tags && echo PLANTED")
    assert "PLANTED" in res.stdout, res.stderr
    assert "removed .git/refs/tags" in res.stderr, res.stderr
    argv = world.as_user(["git", "for-each-ref"], world.host_env())
    try:
        refs = subprocess.run(argv, cwd=world.project, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError("the host's git for-each-ref hangs on a link the session left") from None
    assert refs.returncode == 0 and "refs/heads/main" in refs.stdout, refs.stderr
    assert os.readlink(world.project / ".git/rr-cache") == str(shared)
