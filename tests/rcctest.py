"""Shared test helpers (import as `from rcctest import require`; tests/ is on pythonpath).

Tiers (pytest markers): pure tests run anywhere; `sandbox` tests run the real bubblewrap; `netns` tests create
network namespaces (root); `podman`, `agent`, `nix` run those real programs. A test that cannot run here is
skipped with the reason via `require()`, and RCC_SANDBOX_MUST_WORK=1 (set in CI) turns those skips into failures,
like bubblewrap's BWRAP_MUST_WORK.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

MUST_WORK = os.environ.get("RCC_SANDBOX_MUST_WORK") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) when `condition` is false."""
    if condition:
        return
    if MUST_WORK:
        pytest.fail(f"RCC_SANDBOX_MUST_WORK=1 but: {reason}")
    pytest.skip(reason)


def is_root() -> bool:
    return os.geteuid() == 0


def python_for(who: str, user: str = "rccuser") -> str:
    """A Python >= 3.11 that `who` ("root" or "user", the latter run as `user`) can execute: the venv's
    interpreter may live under /root, which other users cannot enter."""
    if who == "root" or not is_root():
        return sys.executable
    for cand in ("/usr/bin/python3", "/usr/bin/python3.12", "/usr/bin/python3.11", "/usr/local/bin/python3"):
        if not os.path.exists(cand):
            continue
        out = subprocess.run(
            ["runuser", "-u", user, "--", cand, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.stdout.strip() == "True":
            return cand
    require(False, f"no Python >= 3.11 that {user} can run")
    raise AssertionError  # unreachable


def short_unix_path(path: str) -> str:
    """`path` itself, or a short link to it, so that connect() works whatever the test's temp dir: AF_UNIX paths end
    at 108 bytes, and the Nix build's temp dir alone is nearly that long. (connect() follows links; bind() does not:
    bind through `/proc/self/fd/DIRFD/name` instead.)"""
    if len(path.encode()) < 100:
        return path
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="rcc-sock-", dir="/tmp")
    atexit.register(shutil.rmtree, d, True)
    link = os.path.join(d, "s")
    os.symlink(path, link)
    return link
