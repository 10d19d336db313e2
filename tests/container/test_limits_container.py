"""[limits] with the container backends: the engine's own cgroup options and tmpfs sizes, from the plan."""

from __future__ import annotations

import os

import pytest
from ctrbox import Box

pytestmark = [pytest.mark.podman]


def test_tmp_filler_hits_the_tmpfs_size_in_a_container(box: Box) -> None:
    script = "echo work > before.txt; dd if=/dev/zero of=/tmp/fill bs=1M count=40 2>&1; echo dd=$?"
    res = box.run("sh", "-c", script, driver_args=["--limit", "tmp=16M"])
    assert "No space left on device" in res.stdout and "dd=1" in res.stdout, res.stdout + res.stderr
    assert (box.project / "before.txt").read_text() == "work\n"
    res = box.run("sh", "-c", script, driver_args=["--limit", "tmp=64M"])  # control
    assert "dd=0" in res.stdout, res.stdout + res.stderr


def test_memory_hog_hits_the_memory_limit_in_a_container(box: Box) -> None:
    if box.who == "user" and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("LIMITATION (docs/containers.md): rootless podman on cgroup v1 gets no cgroup limits")
    hog = "x = [bytearray(10 << 20) for _ in range(40)]; print('survived')"
    res = box.run("python3", "-c", hog, driver_args=["--limit", "memory=128M"])
    assert "survived" not in res.stdout
    assert res.returncode == 137, res.stderr
    res = box.run("python3", "-c", hog.replace("40", "3"), driver_args=["--limit", "memory=128M"])  # control
    assert "survived" in res.stdout, res.stderr
