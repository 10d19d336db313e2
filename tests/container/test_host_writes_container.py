"""rcc's own host writes never follow a planted link (rcc.hostfs), with the container backend: real podman as
root and rootless (and docker where an engine runs). The audit log and rcc's state dir; the placeholders in the
project (the same code as bubblewrap's: tests/core/test_hostfs.py). Controls: the same run without the link."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ctrbox import Box, base_image

pytestmark = pytest.mark.podman

UNSAFE_PATH = 73


def rcc_run(box: Box, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [box.python, "-m", "rcc", "run", "--backend", box.engine, "--image", base_image(), *args]
    return subprocess.run(box.as_user(argv), cwd=box.project, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, check=False)


def plant(box: Box, rel: str, target: Path) -> None:
    link = box.home / ".local/state" / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    box.own_tree()



@pytest.mark.parametrize("rel", ["rcc", "rcc/audit.jsonl"])
def test_audit_log_path_link_planted_makes_run_refuse(box: Box, rel: str) -> None:
    before = {p.name: p.read_bytes() for p in box.outside.iterdir() if p.is_file()}
    target = box.outside if rel == "rcc" else box.outside / "audit-target.jsonl"
    plant(box, rel, target)
    r = rcc_run(box, "--allow", "example.invalid", "--", "sh", "-c", "echo ran")
    assert r.returncode == UNSAFE_PATH, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "ran" not in r.stdout
    after = {p.name: p.read_bytes() for p in box.outside.iterdir() if p.is_file()}
    assert after == before, "nothing was written outside"


def test_control_audit_log_written_without_links(box: Box) -> None:
    r = rcc_run(box, "--allow", "example.invalid", "--", "sh", "-c", "echo ran")
    assert r.returncode == 0 and r.stdout == "ran\n", r.stderr[-2000:]
    log = box.home / ".local/state/rcc/audit.jsonl"
    assert log.exists() and not log.is_symlink()
