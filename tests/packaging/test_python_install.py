"""pip, pipx and uv installs of rcc from a clean clone, and the wheel and sdist they are built from.

Each install path is checked the way a user meets it: `rcc --version`, `rcc doctor`, and a real sandboxed
`rcc run --no-network -- sh -c ...` in a fresh project, as root and as the unprivileged test user, with no
PYTHONPATH (only the installed copy can answer). Marked `sandbox`: they run real bubblewrap, and building needs
hatchling from PyPI, so they are not part of the pure tier.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pkgworld import (
    REPO,
    Account,
    Built,
    Tools,
    make_account,
    ok,
    project_version,
    run,
    tracked_files,
)

from rcctest import python_for

pytestmark = pytest.mark.sandbox

DIST_INFO = ("METADATA", "WHEEL", "entry_points.txt", "RECORD", "licenses/LICENSE")


def expected_wheel_files() -> set[str]:
    package = {"rcc/" + p.removeprefix("src/rcc/") for p in tracked_files("src/rcc")}
    info = f"rcc-{project_version()}.dist-info"
    return package | {f"{info}/{name}" for name in DIST_INFO}


def test_wheel_holds_exactly_the_package_and_its_metadata(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    assert names == expected_wheel_files()
    # What rcc reads from its package directory at run time, besides modules: the container image's recipe
    # (importlib.resources) and the typing marker.
    assert "rcc/backends/container_image/Containerfile" in names
    assert "rcc/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_entry_point_and_metadata(built: Built) -> None:
    zf = zipfile.ZipFile(built.wheel)
    info = f"rcc-{project_version()}.dist-info"
    assert zf.read(f"{info}/entry_points.txt").decode().split() == ["[console_scripts]", "rcc", "=", "rcc.cli:main"]
    meta = zf.read(f"{info}/METADATA").decode()
    assert "Requires-Python: >=3.11" in meta
    # No runtime dependency: only the dev extra names packages.
    runtime = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert runtime == []


def test_sdist_holds_the_package_docs_and_readme_only(built: Built) -> None:
    top = f"rcc-{project_version()}"
    with tarfile.open(built.sdist) as tf:
        names = {n.removeprefix(f"{top}/") for n in tf.getnames() if n != top}
    expected = {p for p in tracked_files("src/rcc")} | set(tracked_files("docs"))
    # hatchling always adds PKG-INFO and the project's .gitignore (it decides what a build leaves out).
    expected |= {"README.md", "LICENSE", "pyproject.toml", "PKG-INFO", ".gitignore"}
    assert names == expected
    assert not [n for n in names if n.startswith(("tests/", ".venv", ".git/")) or "__pycache__" in n]


def test_wheel_built_from_the_sdist_is_the_same(built: Built, tools: Tools, shared_dir: Path) -> None:
    """pip, pipx, uv and Homebrew given the sdist build the wheel from it: nothing may be missing there."""
    out = shared_dir / "from-sdist"
    ok(run([tools.python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
            str(built.sdist)]))  # fmt: skip
    (wheel,) = out.glob("rcc-*.whl")
    assert set(zipfile.ZipFile(wheel).namelist()) == expected_wheel_files()


# ------------------------------------------------------------------------------------------------ installs
# Each returns the directory holding the installed `rcc` command and the Python of the environment it runs in.
Installer = Callable[[Path, Path, Built, Tools], tuple[Path, str]]


def install_wheel_into_venv(dest: Path, tree: Path, built: Built, tools: Tools) -> tuple[Path, str]:
    ok(run([python_for("user"), "-m", "venv", str(dest)]))
    ok(run([str(dest / "bin" / "pip"), "install", "-q", "--no-index", str(built.wheel)]))
    return dest / "bin", str(dest / "bin" / "python")


def pip_install_dot(dest: Path, tree: Path, built: Built, tools: Tools) -> tuple[Path, str]:
    ok(run([python_for("user"), "-m", "venv", str(dest)]))
    ok(run([str(dest / "bin" / "pip"), "install", "-q", "."], cwd=tree, timeout=600))
    return dest / "bin", str(dest / "bin" / "python")


def pipx_install_dot(dest: Path, tree: Path, built: Built, tools: Tools) -> tuple[Path, str]:
    env = {**os.environ, "PIPX_HOME": str(dest / "pipx"), "PIPX_BIN_DIR": str(dest / "bin")}
    ok(run([tools.bin("pipx"), "install", "--python", python_for("user"), "."], env=env, cwd=tree, timeout=600))
    return dest / "bin", str(dest / "pipx" / "venvs" / "rcc" / "bin" / "python")


def uv_tool_install_dot(dest: Path, tree: Path, built: Built, tools: Tools) -> tuple[Path, str]:
    env = {
        **os.environ,
        "UV_TOOL_DIR": str(dest / "tools"),
        "UV_TOOL_BIN_DIR": str(dest / "bin"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    ok(run([tools.bin("uv"), "tool", "install", "--python", python_for("user"), "."], env=env, cwd=tree, timeout=600))
    return dest / "bin", str(dest / "tools" / "rcc" / "bin" / "python")


INSTALLERS: dict[str, Installer] = {
    "wheel-into-venv": install_wheel_into_venv,
    "pip-install-dot": pip_install_dot,
    "pipx-install-dot": pipx_install_dot,
    "uv-tool-install-dot": uv_tool_install_dot,
}


@pytest.fixture(scope="module", params=sorted(INSTALLERS))
def installed(
    request: pytest.FixtureRequest, clean_tree: Path, built: Built, tools: Tools, shared_dir: Path
) -> tuple[str, Path, str]:
    name = str(request.param)
    bindir, python = INSTALLERS[name](shared_dir / "install" / name, clean_tree, built, tools)
    assert (bindir / "rcc").exists(), f"{name}: no rcc in {bindir}"
    return name, bindir, python


@pytest.mark.parametrize("who", ["root", "user"])
def test_installed_rcc_runs_a_real_sandbox(installed: tuple[str, Path, str], who: str, shared_dir: Path) -> None:
    name, bindir, python = installed
    acct: Account = make_account(who, shared_dir / "accounts" / name / who)
    env = acct.env(path_prefix=str(bindir))

    def rcc(*args: str) -> subprocess.CompletedProcess[str]:
        return run(acct.argv([str(bindir / "rcc"), *args], env), cwd=acct.project, timeout=120)

    # The code that answers is the installed copy, not the repository's src/.
    where = ok(run(acct.argv([python, "-c", "import rcc; print(rcc.__file__)"], env), cwd=acct.project))
    assert not where.stdout.strip().startswith(str(REPO)), where.stdout
    assert where.stdout.strip().startswith(str(shared_dir / "install" / name)), where.stdout

    assert ok(rcc("--version")).stdout == f"rcc {project_version()}\n"
    doctor = ok(rcc("doctor"))
    assert "every required check passed" in doctor.stdout

    # Control: the command writes its file in the project.
    res = rcc("run", "--no-network", "--", "sh", "-c", 'echo ok > f; echo "$RCC_SANDBOX"')
    assert ok(res).stdout == "1\n"
    assert (acct.project / "f").read_text() == "ok\n"
    if who == "user":
        assert (acct.project / "f").stat().st_uid != 0

    # Attack: a write next to the project (a directory the account owns) never reaches the host, and the
    # account's ssh key is not readable inside.
    outside = acct.project.parent / "outside"
    key = acct.home / ".ssh" / "id_ed25519"
    key.parent.mkdir(exist_ok=True)
    key.write_text("SECRET-key\n")
    if who == "user":
        for p in (key.parent, key):
            os.chown(p, acct.project.stat().st_uid, acct.project.stat().st_gid)
    res = rcc("run", "--no-network", "--", "sh", "-c", f"echo pwned > {outside}; cat {key}")
    assert "SECRET" not in res.stdout
    assert not outside.exists()
    # Control for the key: the account itself reads it on the host.
    assert ok(run(acct.argv(["cat", str(key)], env))).stdout == "SECRET-key\n"
