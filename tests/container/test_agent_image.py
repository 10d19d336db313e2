"""rcc's agent image, built the way a new user gets it: the first `rcc run --backend ENGINE` builds it (with
visible progress) from the Containerfile on the base image, then runs the pinned agents' CLIs in it.

The build downloads node and the agents' CLIs from the npm registry (reachable here, like every package registry),
about a minute per engine and user the first time; later runs find the image by its tag and only run it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from ctrbox import Box

from rcc.backends.container_image import containerfile_text, docker_containerfile

pytestmark = pytest.mark.podman

AGENTS = r"(@anthropic-ai/claude-code|@openai/codex|@google/gemini-cli)@([0-9.]+)"
PINNED = dict(re.findall(AGENTS, containerfile_text()))
CA_LINES = ("COPY rcc-host-ca.crt /run/rcc-host-ca.crt", "RUN rm -f /run/rcc-host-ca.crt")


def test_docker_variant_passes_the_ca_bundle_through_the_context_and_deletes_it() -> None:
    """docker's builder has no build-time volume: the bundle is copied in right after FROM and removed before the
    final ENV; every other line of the Containerfile is unchanged (same install steps for both engines)."""
    text = containerfile_text()
    lines = docker_containerfile(text).splitlines()
    frm = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    assert lines[frm + 1] == "COPY rcc-host-ca.crt /run/rcc-host-ca.crt"
    assert lines[-2:] == ["RUN rm -f /run/rcc-host-ca.crt", text.splitlines()[-1]]
    assert [ln for ln in lines if ln not in CA_LINES] == text.splitlines()


def test_first_run_builds_the_agent_image_and_its_agents_run(box: Box) -> None:
    assert set(PINNED) == {"@anthropic-ai/claude-code", "@openai/codex", "@google/gemini-cli"}, PINNED
    script = "claude --version; gemini --version; codex --version; test ! -e /run/rcc-host-ca.crt && echo no-ca-left"
    argv = [box.python, "-m", "rcc", "run", "--backend", box.engine, "--no-network", "--", "sh", "-c", script]
    r = subprocess.run(box.as_user(argv), cwd=box.project, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{PINNED['@anthropic-ai/claude-code']} (Claude Code)" in r.stdout, r.stdout
    assert PINNED["@google/gemini-cli"] in r.stdout, r.stdout
    assert f"codex-cli {PINNED['@openai/codex']}" in r.stdout, r.stdout
    assert "no-ca-left" in r.stdout  # the host's CA bundle was for the build only


def test_a_named_image_that_does_not_exist_is_an_error_not_a_build(box: Box, tmp_path: Path) -> None:
    """Control for the build path: a user-named image is never built or pulled; a missing one is the engine's
    error (125, naming the image), and nothing runs."""
    argv = [box.python, "-m", "rcc", "run", "--backend", box.engine, "--image", "localhost/rcc-no-such-image:1"]
    argv += ["--no-network", "--", "true"]
    r = subprocess.run(box.as_user(argv), cwd=box.project, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 125, r.stderr
    assert "rcc-no-such-image" in r.stderr and "building the agent image" not in r.stderr
