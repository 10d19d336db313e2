"""What the packaging tests build and install, once per session.

- clean_tree: the repository's tracked files (their working-tree content) copied to a fresh directory: what a
  clean clone holds, without caches, venvs or anyone's untracked scratch files.
- tools: a venv (made with the Python rccuser can run) holding hatchling, uv and pipx from PyPI. PyPI is the only
  network these tests use; without it they skip (fail under RCC_SANDBOX_MUST_WORK=1).
- built: the wheel and sdist that `python -m hatchling build` makes from clean_tree.
- shared_dir: a directory under /tmp that rccuser can enter (pytest's tmp_path is root's alone), removed at
  the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from rcctest import is_root, python_for, require

REPO = Path(__file__).resolve().parents[2]
TEST_USER = "rccuser"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def project_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def tracked_files(prefix: str = "") -> list[str]:
    require(shutil.which("git") is not None and (REPO / ".git").exists(), "needs git and a git checkout")
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--", prefix or "."], capture_output=True, check=True
    ).stdout
    # Tracked files deleted in the working tree are not part of what would be committed.
    return sorted(p for p in out.decode().split("\0") if p and (REPO / p).exists())


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), env=dict(env) if env is not None else None, cwd=cwd, capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, f"{res.args} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res


@pytest.fixture(scope="session")
def shared_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rcc-pkgtest-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def clean_tree(shared_dir: Path) -> Path:
    dest = shared_dir / "clean"
    for rel in tracked_files():
        src = REPO / rel
        if src.is_symlink() or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


@dataclass(frozen=True)
class Tools:
    venv: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="session")
def tools(shared_dir: Path) -> Tools:
    venv = shared_dir / "tools"
    ok(run([python_for("user"), "-m", "venv", str(venv)]))
    res = run([str(venv / "bin" / "pip"), "install", "-q", "hatchling", "uv", "pipx"], timeout=600)
    require(res.returncode == 0, f"hatchling, uv and pipx from PyPI (pip exited {res.returncode}): {res.stderr[-500:]}")
    return Tools(venv)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def built(clean_tree: Path, tools: Tools, shared_dir: Path) -> Built:
    out = shared_dir / "dist"
    ok(run([tools.python, "-m", "hatchling", "build", "-d", str(out)], cwd=clean_tree))
    v = project_version()
    wheel, sdist = out / f"rcc-{v}-py3-none-any.whl", out / f"rcc-{v}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in out.iterdir())
    return Built(wheel, sdist)


@dataclass(frozen=True)
class Account:
    """root or rccuser, with a home and a project of its own under the shared directory."""

    who: str
    home: Path
    project: Path

    def env(self, path_prefix: str = "") -> dict[str, str]:
        user = "root" if self.who == "root" else TEST_USER
        return {
            "HOME": str(self.home),
            "USER": user,
            "LOGNAME": user,
            "PATH": f"{path_prefix}:{HOST_PATH}" if path_prefix else HOST_PATH,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
        }

    def argv(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """argv that runs `argv` as this account with exactly `env` (no PYTHONPATH: the installed rcc only)."""
        assignments = [f"{k}={v}" for k, v in env.items()]
        if self.who == "root":
            return ["env", "-i", *assignments, *argv]
        return ["runuser", "-u", TEST_USER, "--", "env", "-i", *assignments, *argv]


def make_account(who: str, base: Path) -> Account:
    if who == "user":
        require(is_root(), "running rcc as the unprivileged test user needs root (runuser)")
        require(run(["id", TEST_USER]).returncode == 0, f"the test user {TEST_USER} does not exist (.ci/run adds it)")
    base.mkdir(parents=True, exist_ok=True)
    home, project = base / "home", base / "project"
    home.mkdir(exist_ok=True)
    project.mkdir(exist_ok=True)
    if who == "user":
        for p in (base, home, project):
            shutil.chown(p, TEST_USER, TEST_USER)
    os.chmod(base, 0o755)
    return Account(who, home, project)
