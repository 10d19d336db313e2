"""Shared test helpers (import as `from rcctest import require`; tests/ is on pythonpath).

Tiers (pytest markers): pure tests run anywhere; `sandbox` tests run the real bubblewrap; `netns` tests create
network namespaces (root); `podman`, `agent`, `nix` run those real programs. A test that cannot run here is
skipped with the reason via `require()`, and RCC_SANDBOX_MUST_WORK=1 (set in CI) turns those skips into failures,
like bubblewrap's BWRAP_MUST_WORK.
"""

from __future__ import annotations

import os

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
