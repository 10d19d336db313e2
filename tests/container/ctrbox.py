"""Fixtures for the container backend's real tests: a fake home full of planted secrets, a git project, and a
command run through probe() + compile_plan() + ContainerBackend (tests/container/drive.py) with real podman —
as root, and rootless as the unprivileged `rccuser` (via runuser) — and docker where a Docker engine runs.

The image is rcc's base image (localhost/rcc-base:<hash>, built offline with debootstrap by setup_podman.sh).
The escape suite proper runs through `rcc run --backend` for every backend in tests/sandbox/ (attacks.BACKENDS);
these fixtures serve the container-only tests (the proxy gate, the terminal, the agent image, drive.py's modes).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from attacks import PRIVATE as ALL_PRIVATE
from attacks import SECRETS as ALL_SECRETS
from escape_world import CONTAINER_SETUP, HOST_PATH, SRC, TEST_USER, base_image, engine_ready
from rcctest import MUST_WORK, is_root, python_for, require

HERE = Path(__file__).resolve().parent
SETUP = CONTAINER_SETUP
# The same planted secrets as the escape suite's world (attacks.SECRETS), fewer of them: these tests check
# other things (the proxy, the terminal, the agent image); the escape suite itself is tests/sandbox/.
SECRETS = {
    rel: ALL_SECRETS[rel]
    for rel in (".ssh/id_ed25519", ".aws/credentials", ".config/gh/hosts.yml", ".netrc", ".claude.json")
}
PRIVATE = {"Documents/diary.txt": ALL_PRIVATE["Documents/diary.txt"]}


@dataclass
class Box:
    """One user's fake home and project, and a way to run commands in a container under rcc's plan."""

    engine: str
    who: str  # "root" or "user"
    base: Path
    home: Path
    project: Path
    outside: Path
    uid: int
    gid: int
    user: str
    real_home: str  # the user's real home: rootless podman keeps its image store there
    python: str

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": HOST_PATH,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            # podman's rootless store and runtime dir stay the real ones although HOME is the fake home
            "XDG_DATA_HOME": os.path.join(self.real_home, ".local", "share"),
            "XDG_CONFIG_HOME": os.path.join(self.real_home, ".config"),
            "PYTHONPATH": f"{SRC}:{HERE}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def as_user(self, argv: Sequence[str], extra_env: dict[str, str] | None = None) -> list[str]:
        env = {**self.env(), **(extra_env or {})}
        assignments = [f"{k}={v}" for k, v in env.items()]
        if self.who == "root" or not is_root():
            return ["env", "-i", "--default-signal", *assignments, *argv]
        return ["runuser", "-u", TEST_USER, "--", "env", "-i", "--default-signal", *assignments, *argv]

    def run(
        self,
        *argv: str,
        network: str = "none",
        extra_env: dict[str, str] | None = None,
        timeout: float = 120,
        project: Path | None = None,
        driver_args: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        driver = [self.python, str(HERE / "drive.py"), "--engine", self.engine, "--image", base_image()]
        driver += ["--network", network, "--project", str(project or self.project), *driver_args, "--", *argv]
        return subprocess.run(
            self.as_user(driver, extra_env),
            cwd=project or self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, **kw)  # type: ignore[arg-type]

    def write(self, path: Path, content: str, mode: int = 0o644) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
        return path

    def own_tree(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.base):
            for n in (*dirnames, *filenames):
                os.lchown(os.path.join(dirpath, n), self.uid, self.gid)
        os.lchown(self.base, self.uid, self.gid)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.as_user(["git", *args]), cwd=self.project, capture_output=True, text=True, check=True
        )


def _variants() -> list[object]:
    return [
        pytest.param(("podman", "root"), id="podman-root"),
        pytest.param(("podman", "user"), id="podman-rootless"),
        pytest.param(("docker", "root"), id="docker"),
    ]


@pytest.fixture(params=_variants())
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    engine, who = request.param
    if engine == "docker" and os.environ.get("RCC_TEST_DOCKER") != "1":
        # Docker is optional: this machine kind has the CLI but no engine. RCC_TEST_DOCKER=1 makes it mandatory.
        ok, why = engine_ready(engine, who, "/root")
        if not ok:
            pytest.skip(why + " (set RCC_TEST_DOCKER=1 to require docker)")
    if who == "root":
        require(is_root(), "the root variant needs root")
        uid, gid, user, real_home = 0, 0, "root", pwd.getpwuid(0).pw_dir
    elif is_root():
        try:
            pw = pwd.getpwnam(TEST_USER)
        except KeyError:
            require(False, f"the test user {TEST_USER!r} does not exist (useradd -m {TEST_USER})")
            raise
        uid, gid, user, real_home = pw.pw_uid, pw.pw_gid, TEST_USER, pw.pw_dir
    else:
        pw = pwd.getpwuid(os.getuid())
        uid, gid, user, real_home = pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir
    ok, why = engine_ready(engine, who, real_home)
    require(ok, why)
    base = Path(tempfile.mkdtemp(prefix="rcc-ctr-test-", dir="/tmp"))
    base.chmod(0o755)
    b = Box(
        engine,
        who,
        base,
        base / "home",
        base / "project",
        base / "outside",
        uid,
        gid,
        user,
        real_home,
        python_for(who, TEST_USER),
    )
    try:
        for d in (b.home, b.project, b.outside):
            d.mkdir(mode=0o755)
        for rel, content in SECRETS.items():
            b.write(b.home / rel, content + "\n", 0o600)
        for rel, content in PRIVATE.items():
            b.write(b.home / rel, content + "\n", 0o600)
        b.write(b.outside / "marker.txt", "OUTSIDE-marker\n")
        b.write(b.project / "README.md", "hello\n")
        b.own_tree()
        for args in (
            ("init", "-q", "-b", "main"),
            ("-c", "user.name=T", "-c", "user.email=t@example.invalid", "add", "README.md"),
            ("-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "initial"),
        ):
            b.git(*args)
        yield b
    finally:
        shutil.rmtree(base, ignore_errors=True)


__all__ = ["HERE", "HOST_PATH", "MUST_WORK", "SRC", "TEST_USER", "Box", "base_image", "box", "engine_ready"]
