"""`rcc setup --container`: the container base image without a registry, for any install of rcc (pipx, .deb, Nix),
not only a checkout: root builds the tarball once and imports it; each user imports it into their own store.

The real tests run rootless podman as the test user against a fresh, empty image store (XDG_DATA_HOME and
XDG_RUNTIME_DIR in a temporary directory), so what they see is the import itself, not an image already there.
The tarball is the one tests/container/setup_podman.sh built (the same call as `sudo rcc setup --container`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctrbox import SRC, TEST_USER

from rcc.commands.setup import SetupOptions, parse_args
from rcc.errors import UsageError
from rcctest import is_root, require

# ------------------------------------------------------------------------------------------------ options (pure)


def test_container_options_parse() -> None:
    assert parse_args(["--container"]) == SetupOptions(container=True)
    assert parse_args(["--container", "--engine", "docker"]) == SetupOptions(container=True, engine="docker")
    o = parse_args(["--container", "--mirror=http://deb.example/debian"])
    assert o.mirror == "http://deb.example/debian"


@pytest.mark.parametrize(
    "argv",
    [
        ["--engine", "docker"],  # without --container
        ["--container", "--engine", "lxc"],
        ["--container", "--engine"],
        ["--container", "--mirror", "deb.example"],  # not a URL
        ["--container", "--firewall"],
        ["--container", "--dry-run"],
    ],
)
def test_bad_container_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


# ------------------------------------------------------------------------------------------------ real podman


def _tarball() -> str:
    from rcc.backends.container_image.base import DEFAULT_CACHE, tarball_path

    return tarball_path(DEFAULT_CACHE)


@pytest.fixture
def fresh_store() -> Iterator[dict[str, str]]:
    """The test user's env with an empty rootless podman store of its own."""
    require(is_root(), "switching to the test user needs root")
    require(shutil.which("podman") is not None, "podman is not installed (tests/container/setup_podman.sh)")
    require(os.path.exists(_tarball()), f"no base tarball at {_tarball()} (tests/container/setup_podman.sh)")
    base = Path(tempfile.mkdtemp(prefix="rcc-setup-ctr-"))
    (base / "data").mkdir()
    (base / "run").mkdir(mode=0o700)
    shutil.chown(base / "data", TEST_USER, TEST_USER)
    shutil.chown(base / "run", TEST_USER, TEST_USER)
    base.chmod(0o755)
    env = {
        "HOME": os.path.expanduser(f"~{TEST_USER}"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_RUNTIME_DIR": str(base / "run"),
        "PYTHONPATH": str(SRC),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        yield env
    finally:
        subprocess.run(_as_user(env, ["podman", "system", "reset", "--force"]), capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _as_user(env: dict[str, str], argv: list[str]) -> list[str]:
    return ["runuser", "-u", TEST_USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]


def _run(env: dict[str, str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_user(env, argv), capture_output=True, text=True, timeout=300, check=False, cwd="/")


@pytest.mark.podman
def test_user_imports_the_base_into_an_empty_store_then_it_is_a_no_op(fresh_store: dict[str, str]) -> None:
    from rcc.backends.container_image import base_image_tag

    tag = base_image_tag()
    assert _run(fresh_store, ["podman", "image", "exists", tag]).returncode == 1  # really empty
    first = _run(fresh_store, ["/usr/bin/python3", "-m", "rcc", "setup", "--container"])
    assert first.returncode == 0, first.stderr
    assert f"podman image {tag}" in first.stdout
    assert "Writing manifest" in first.stderr or "Storing signatures" in first.stderr  # podman import ran
    assert _run(fresh_store, ["podman", "image", "exists", tag]).returncode == 0
    again = _run(fresh_store, ["/usr/bin/python3", "-m", "rcc", "setup", "--container"])
    assert again.returncode == 0 and f"podman image {tag}" in again.stdout
    assert "Writing manifest" not in again.stderr  # already there: nothing imported twice


@pytest.mark.podman
def test_a_user_cannot_choose_the_mirror_only_root_builds(fresh_store: dict[str, str]) -> None:
    r = _run(fresh_store, ["/usr/bin/python3", "-m", "rcc", "setup", "--container", "--mirror", "http://x.test/"])
    assert r.returncode == 64, r.stderr
    assert "sudo rcc setup --container" in r.stderr
    # control: nothing was imported by the refused call
    assert _run(fresh_store, ["podman", "images", "-q"]).stdout.strip() == ""
