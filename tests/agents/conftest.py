"""Fixtures for the agent tests (helpers in agentworld.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agentworld import FakeApi, World, agent_bin, make_world, sandbox_ready, start_fake_api

from testhosts import TestHost, testhost  # noqa: F401  (re-exported fixture)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def claude_world(
    world: World, testhost: TestHost, tmp_path: Path  # noqa: F811  (the fixture imported above)
) -> Iterator[tuple[World, FakeApi]]:
    """Real Claude Code, the sandbox, and the fake API at http://api.test:8080 on a test host."""
    sandbox_ready()
    claude = agent_bin("claude")
    api = start_fake_api(testhost, tmp_path, [{"text": "done"}])
    world.env.update({
        "ANTHROPIC_BASE_URL": api.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "PATH": f"{claude.parent}:/usr/local/bin:/usr/bin:/bin",
    })
    yield world, api
