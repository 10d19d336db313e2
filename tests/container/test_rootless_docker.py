"""Rootless docker is refused (exit 78), not run with the wrong owners. Not an escape-suite backend (there is no
rootless docker sandbox to attack): the escape suite (tests/sandbox/, attacks.BACKENDS) runs root's docker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.podman


def test_rootless_docker_is_refused_rather_than_run_with_wrong_owners() -> None:
    """Rootless docker maps the container's uids to subordinate ids (a file made in the project would belong to
    100000+uid) and on cgroup v1 ignores the pids/memory limits without an error: rcc refuses it (exit 78).
    Needs a rootless dockerd for the test user (docs/containers.md says how); the control is every docker test
    above, run by root's daemon."""
    import pwd
    import subprocess

    from ctrbox import HOST_PATH, SRC, TEST_USER, base_image

    from rcctest import is_root, require

    require(is_root(), "starts the driver as the test user")
    pw = pwd.getpwnam(TEST_USER)
    sock = f"/run/user/{pw.pw_uid}/docker.sock"
    env = [f"HOME={pw.pw_dir}", f"PATH={HOST_PATH}", f"DOCKER_HOST=unix://{sock}"]
    as_user = ["runuser", "-u", TEST_USER, "--", "env", "-i", *env]
    info = subprocess.run([*as_user, "docker", "info"], capture_output=True, text=True, check=False, cwd="/")
    if info.returncode != 0 or "rootless" not in info.stdout:
        pytest.skip(f"no rootless dockerd for {TEST_USER} at {sock} (docs/containers.md: rootless docker)")
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="rcc-ctr-test-", dir="/tmp"))  # the test user can reach it
    base.chmod(0o755)
    project = base / "proj"
    project.mkdir()
    os.chown(project, pw.pw_uid, pw.pw_gid)
    subprocess.run([*as_user, "git", "init", "-q", str(project)], check=True, cwd="/")
    driver = ["/usr/bin/python3", str(Path(__file__).parent / "drive.py"), "--engine", "docker"]
    driver += ["--image", base_image(), "--project", str(project), "--", "touch", "made"]
    res = subprocess.run(
        [*as_user, f"PYTHONPATH={SRC}:{Path(__file__).parent}", *driver],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
    )
    try:
        assert res.returncode == 78, res.stderr
        assert "rootless docker is not supported" in res.stderr
        assert not (project / "made").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
