"""The escape suite's test world, for every backend in attacks.BACKENDS: a fake home full of planted secrets,
a git project, and `rcc run` as a real subprocess (with `--backend podman|docker --image <rcc's base image>` for
the container backends) — as root and as the unprivileged `rccuser` (via runuser), each with its own HOME and XDG
dirs. Everything a test needs to know afterwards is checked on the host: file contents, what git sees, what is left.

Which backends a test runs against: all of attacks.BACKENDS, unless the test or its module says otherwise with
`@pytest.mark.backends("bwrap", why="...")` (engines or backend ids, see attacks.backends_matching); the reason
is mandatory, and `pytest_generate_tests` below turns the marker into the `world` parameters. A backend that
cannot run here is skipped with the reason through `require()` (a failure where RCC_SANDBOX_MUST_WORK=1), except
docker, which is optional unless RCC_TEST_DOCKER=1 (as in tests/container).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from attacks import BACKENDS, OUTSIDE_MARKER, PRIVATE, PROJECT_README, SECRETS, TOOLCHAINS, Backend, backends_matching
from rcctest import is_root, python_for, require

REPO = Path(__file__).resolve().parents[1]
# The rcc sources under test (a developer may point this at another checkout of the same tree).
SRC = Path(os.environ.get("RCC_TEST_SRC") or REPO / "src")
TEST_USER = "rccuser"
HOST_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
CONTAINER_SETUP = "run `sudo tests/container/setup_podman.sh` (and setup_docker.sh for docker)"

if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def base_image() -> str:
    """The image the container backends run: rcc's base image (built offline by setup_podman.sh); the escape
    suite attacks the sandbox's boundaries, not the agents' CLIs."""
    from rcc.backends.container_image import base_image_tag

    return os.environ.get("RCC_TEST_CONTAINER_IMAGE") or base_image_tag()


@dataclass
class World:
    """One fake user on the host: a home with secrets and toolchains, a project (git repo, one commit), and the
    backend its `rcc run` uses."""

    backend: Backend
    who: str  # "root" or "user"
    base: Path
    home: Path
    project: Path
    outside: Path  # host directory outside home and project (for markers the sandbox must not reach)
    uid: int
    gid: int
    user: str
    python: str
    real_home: str  # the user's real home: rootless podman keeps its image store there
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def engine(self) -> str:
        return self.backend.engine

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
        if self.backend.engine == "podman":
            # podman's store stays the real one although HOME is the fake home (rcc itself reads no XDG_DATA_HOME)
            env["XDG_DATA_HOME"] = os.path.join(self.real_home, ".local", "share")
        if self.backend.engine == "docker":
            env["DOCKER_CONFIG"] = str(self.base / "docker-config")  # not the fake home's planted config.json
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def as_user(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """argv that runs `argv` as this world's user with exactly `env` and every signal at its default: the test
        runner's own dispositions must not reach rcc (a runner started as a background job of a non-interactive
        shell ignores SIGINT and SIGQUIT, under nohup SIGHUP, and an ignored signal stays ignored across exec)."""
        assignments = [f"{k}={v}" for k, v in env.items()]
        if self.who == "root" or not is_root():
            return ["env", "-i", "--default-signal", *assignments, *argv]
        return ["runuser", "-u", TEST_USER, "--", "env", "-i", "--default-signal", *assignments, *argv]

    def rcc_argv(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """`rcc ARGS` as this world's user; `rcc run` gets this world's backend."""
        args = list(args)
        if args[:1] == ["run"] and self.backend.container:
            args[1:1] = ["--backend", self.backend.engine, "--image", base_image()]
        return self.as_user([self.python, "-m", "rcc", *args], self.host_env(env))

    def rcc(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
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


def _make_world(backend: Backend, base: Path) -> World:
    who = backend.who
    if who == "root":
        uid, gid, user, real_home = 0, 0, "root", pwd.getpwuid(0).pw_dir
    elif not is_root():  # not root: the "user" variant is whoever runs the tests
        pw = pwd.getpwuid(os.getuid())
        uid, gid, user, real_home = pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir
    else:
        pw = pwd.getpwnam(TEST_USER)
        uid, gid, user, real_home = pw.pw_uid, pw.pw_gid, TEST_USER, pw.pw_dir
    home, project, outside = base / "home", base / "project", base / "outside"
    w = World(backend, who, base, home, project, outside, uid, gid, user, python_for(who, TEST_USER), real_home)
    for d in (home, project, outside, base / "docker-config"):
        d.mkdir(mode=0o755)
    for rel, content in SECRETS.items():
        w.write(home / rel, content + "\n", 0o600)
    for rel, content in PRIVATE.items():
        w.write(home / rel, content + "\n", 0o600)
    for rel, content in TOOLCHAINS.items():
        w.write(home / rel, content, 0o755)
    w.write(outside / "marker.txt", OUTSIDE_MARKER)
    w.write(project / "README.md", PROJECT_README)
    w.own_tree(base)
    # One process for the repository (five runuser+git starts cost ~0.1 s per test on a busy machine)
    script = "git init -q -b main && git config user.name Test && git config user.email test@example.invalid"
    script += " && git add README.md && git commit -q -m initial"
    res = subprocess.run(
        w.as_user(["sh", "-c", script], w.host_env()),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if res.returncode != 0:
        raise AssertionError(f"host git set-up failed: {res.stderr}")
    return w


def engine_ready(engine: str, who: str, real_home: str) -> tuple[bool, str]:
    """Can this user run a container with `engine` and the base image here? (False, why) otherwise."""
    path = shutil.which(engine)
    if not path:
        return False, f"{engine} is not installed; {CONTAINER_SETUP}"
    if engine == "docker":
        r = subprocess.run([path, "info"], capture_output=True, text=True, check=False, timeout=30)
        if r.returncode != 0:
            return False, f"no Docker engine runs here (`docker info`: {r.stderr.strip()[:200]})"
    from rcc.backends.container_image import hybrid_cgroup_controllers

    hybrid = hybrid_cgroup_controllers()
    if hybrid:
        return False, f"cgroup v2 still holds {hybrid} beside cgroup v1 (crun refuses); {CONTAINER_SETUP}"
    argv = [path, "image", "exists" if engine == "podman" else "inspect", base_image()]
    if who == "user" and is_root():
        env = [f"HOME={real_home}", f"PATH={HOST_PATH}"]
        argv = ["runuser", "-u", TEST_USER, "--", "env", "-i", *env, *argv]
    r = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/", timeout=60)
    if r.returncode != 0:
        return False, f"the image {base_image()} is not in {who}'s {engine} store; {CONTAINER_SETUP}"
    return True, ""


# Accepted in `@pytest.mark.parametrize("world", [...], indirect=True)` for the bwrap worlds.
_ALIASES = {"root": "bwrap-root", "user": "bwrap-user"}


def _backend(param: object) -> Backend:
    if isinstance(param, Backend):
        return param
    name = _ALIASES.get(str(param), str(param))
    (b,) = (b for b in BACKENDS if b.id == name)
    return b


def _require_backend(backend: Backend) -> None:
    if backend.who == "user" and is_root():
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            require(False, f"the test user {TEST_USER!r} does not exist (useradd -m {TEST_USER})")
    elif backend.who == "root":
        require(is_root(), "the root variant needs root")
    require(shutil.which("git") is not None, "git is not installed")
    if backend.engine == "bwrap":
        require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
        return
    real_home = pwd.getpwuid(0).pw_dir if backend.who == "root" else pwd.getpwnam(TEST_USER).pw_dir
    if not is_root():
        real_home = pwd.getpwuid(os.getuid()).pw_dir
    ok, why = engine_ready(backend.engine, backend.who, real_home)
    if backend.engine == "docker" and not ok and os.environ.get("RCC_TEST_DOCKER") != "1":
        # Docker is optional: this machine kind may have the CLI but no engine. RCC_TEST_DOCKER=1 makes it mandatory.
        pytest.skip(why + " (set RCC_TEST_DOCKER=1 to require docker)")
    require(ok, why)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    backend = _backend(getattr(request, "param", "bwrap-root"))
    _require_backend(backend)
    base = Path(tempfile.mkdtemp(prefix="rcc-escape-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield _make_world(backend, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# Markers for the escape tests: EVERY_BACKEND on an attack whose outcome depends on how the backend builds the
# sandbox; modules or tests for some backends only name them with the reason.
EVERY_BACKEND = pytest.mark.backends("all", why="every backend")


def _marks(backend: Backend) -> list[pytest.MarkDecorator]:
    return [pytest.mark.podman] if backend.container else [pytest.mark.sandbox]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `world` over the backends the test is for: all of BACKENDS unless a `backends` marker (on
    the test, its class or its module) names them, with the reason why the others are left out."""
    if "world" not in metafunc.fixturenames:
        return
    for m in metafunc.definition.iter_markers("parametrize"):
        names = m.args[0]
        if "world" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else names):
            return  # the test chose its worlds itself
    marker = metafunc.definition.get_closest_marker("backends")
    chosen = BACKENDS
    if marker is not None:
        if not str(marker.kwargs.get("why", "")).strip():
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.backends needs why=...")
        chosen = backends_matching(*marker.args)
    params = [pytest.param(b, id=b.id, marks=_marks(b)) for b in chosen]
    metafunc.parametrize("world", params, indirect=True)


def kill_tree(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
