"""Helpers for the escape suite: a fake home full of planted secrets, a git project, and `rcc run` as a real
subprocess — as root and as the unprivileged `rccuser` (via runuser), each with its own HOME and XDG dirs.

Everything a test needs to know afterwards is checked on the host: file contents, what git sees, what is left.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rcctest import is_root, python_for, require

REPO = Path(__file__).resolve().parents[2]
# The rcc sources under test (a developer may point this at another checkout of the same tree).
SRC = Path(os.environ.get("RCC_TEST_SRC") or REPO / "src")
TEST_USER = "rccuser"
HOST_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

SECRETS: dict[str, str] = {
    ".ssh/id_rsa": "SECRET-ssh-private-key",
    ".aws/credentials": "SECRET-aws-key",
    ".config/gh/hosts.yml": "SECRET-gh-token",
    ".netrc": "SECRET-netrc",
    ".git-credentials": "SECRET-git-credentials",
    ".docker/config.json": "SECRET-docker-auth",
    ".gnupg/private-keys-v1.d/key": "SECRET-gpg",
    ".kube/config": "SECRET-kube",
    ".bash_history": "SECRET-bash-history",
    ".zsh_history": "SECRET-zsh-history",
    ".claude/.credentials.json": "SECRET-claude-credentials",
    ".claude.json": "SECRET-claude-json",
    ".cargo/credentials.toml": "SECRET-cargo-token",
    ".npmrc": "SECRET-npm-token",
}
# Files in the home that are neither secrets nor toolchains: invisible too (the home is private).
PRIVATE: dict[str, str] = {
    "Documents/diary.txt": "PRIVATE-diary",
    ".config/other-app/settings.ini": "PRIVATE-settings",
}
TOOLCHAINS: dict[str, str] = {
    ".local/bin/hello-tool": "#!/bin/sh\necho hello-from-toolchain\n",
    ".cargo/bin/cargo-fake": "#!/bin/sh\necho cargo-fake\n",
    ".pyenv/versions/marker": "pyenv-marker\n",
}


@dataclass
class World:
    """One fake user on the host: a home with secrets and toolchains, a project (git repo, one commit)."""

    who: str  # "root" or "user"
    base: Path
    home: Path
    project: Path
    outside: Path  # host directory outside home and project (for markers the sandbox must not reach)
    uid: int
    gid: int
    user: str
    python: str
    extra_env: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------- host side
    def host_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": HOST_PATH,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "PYTHONPATH": str(SRC),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def as_user(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """argv that runs `argv` as this world's user with exactly `env`."""
        assignments = [f"{k}={v}" for k, v in env.items()]
        if self.who == "root" or not is_root():
            return ["env", "-i", *assignments, *argv]
        return ["runuser", "-u", TEST_USER, "--", "env", "-i", *assignments, *argv]

    def rcc_argv(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        return self.as_user([self.python, "-m", "rcc", *args], self.host_env(env))

    def rcc(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.rcc_argv(args, env),
            cwd=cwd or self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input if input is not None else "",
            check=False,
        )

    def sh(self, script: str, *flags: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`rcc run --no-network [flags] -- sh -c script` in the project."""
        return self.rcc("run", "--no-network", *flags, "--", "sh", "-c", script, env=env)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """git on the host, as this world's user (what the user does after the agent is done)."""
        res = subprocess.run(
            self.as_user(["git", *args], self.host_env()),
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"host git {args} failed: {res.stderr}")
        return res

    def write(self, path: Path, content: str, mode: int = 0o644) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
        self.own(path)
        return path

    def own(self, path: Path) -> None:
        """Give `path` and the directories up to base to this world's user."""
        p = path
        while p != self.base and self.base in p.parents:
            os.lchown(p, self.uid, self.gid)
            p = p.parent

    def own_tree(self, top: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(top):
            for n in (*dirnames, *filenames):
                os.lchown(os.path.join(dirpath, n), self.uid, self.gid)
        os.lchown(top, self.uid, self.gid)


def _make_world(who: str, base: Path) -> World:
    if who == "root":
        uid, gid, user = 0, 0, "root"
    elif not is_root():  # not root: the "user" variant is whoever runs the tests
        pw = pwd.getpwuid(os.getuid())
        uid, gid, user = pw.pw_uid, pw.pw_gid, pw.pw_name
    else:
        pw = pwd.getpwnam(TEST_USER)
        uid, gid, user = pw.pw_uid, pw.pw_gid, TEST_USER
    home, project, outside = base / "home", base / "project", base / "outside"
    w = World(who, base, home, project, outside, uid, gid, user, python_for(who, TEST_USER))
    for d in (home, project, outside):
        d.mkdir(mode=0o755)
    for rel, content in SECRETS.items():
        w.write(home / rel, content + "\n", 0o600)
    for rel, content in PRIVATE.items():
        w.write(home / rel, content + "\n", 0o600)
    for rel, content in TOOLCHAINS.items():
        w.write(home / rel, content, 0o755)
    w.write(outside / "marker.txt", "OUTSIDE-marker\n")
    w.write(project / "README.md", "hello\n")
    w.own_tree(base)
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.name", "Test"),
        ("config", "user.email", "test@example.invalid"),
        ("add", "README.md"),
        ("commit", "-q", "-m", "initial"),
    ):
        w.git(*args)
    return w


@pytest.fixture(params=["root", "user"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    require(shutil.which("git") is not None, "git is not installed")
    if request.param == "user" and is_root():
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            require(False, f"the test user {TEST_USER!r} does not exist (useradd -m {TEST_USER})")
    elif request.param == "root":
        require(is_root(), "the root variant needs root")
    require((SRC / "rcc" / "seccomp.py").exists(), "src/rcc/seccomp.py has not landed yet: `rcc run` cannot start")
    base = Path(tempfile.mkdtemp(prefix="rcc-escape-"))
    base.chmod(0o755)
    try:
        yield _make_world(request.param, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def kill_tree(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
