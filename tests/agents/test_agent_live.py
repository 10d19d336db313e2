"""The real Claude Code and issue 14: what its tools (and so the model) see of rcc's refusal sentence, and ask
mode end to end: `rcc claude` on a terminal, `rcc watch` in a second one, the host approved, the agent's
request succeeds without a restart."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest
from agentworld import RCC, FakeApi, World, claude_args

from testhosts import TestHost

pytestmark = [pytest.mark.agent, pytest.mark.sandbox, pytest.mark.netns]

SENTENCE = (
    "rcc sandbox: the user's sandbox policy refused a connection to docs.test:{port} (no allow rule); "
    "to allow it the user can run: rcc allow docs.test"
)
PY_FETCH = "import urllib.request as u\ntry:\n    u.urlopen('https://docs.test/')\nexcept Exception as e:\n    print(e)"


def test_claude_tools_show_the_model_the_refusal_sentence(claude_world: tuple[World, FakeApi]) -> None:
    """What the model reads back from its tools when a host is refused: the whole sentence from plain HTTP and
    from Python (pip's stack); curl over HTTPS only says 403; WebFetch: recorded for docs/network.md."""
    world, api = claude_world
    calls: list[dict[str, Any]] = [
        {"name": "Bash", "input": {"command": "curl -sS http://docs.test/", "description": "s"}},
        {"name": "Bash", "input": {"command": "curl -sS https://docs.test/", "description": "s"}},
        {"name": "Bash", "input": {"command": f'python3 -c "{PY_FETCH}"', "description": "s"}},
        {"name": "WebFetch", "input": {"url": "https://docs.test/page", "prompt": "summarise"}},
    ]
    api.set_turns([{"calls": [c]} for c in calls] + [{"text": "done"}])
    proc = world.rcc(claude_args(api, "--resolve", f"docs.test={api.host.address}", "-p", "go",
                                 "--dangerously-skip-permissions"))  # fmt: skip
    got = api.results()
    res = [str(got.get(f"toolu_{i:02d}_0", {}).get("content", "<none>")) for i in range(len(calls))]
    sys.stderr.write("\n".join(f"--- {c['name']} {c['input']}\n{r}" for c, r in zip(calls, res, strict=True)) + "\n")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert SENTENCE.format(port=80) in res[0]
    assert "CONNECT tunnel failed, response 403" in res[1]
    assert f"Tunnel connection failed: 403 Forbidden - {SENTENCE.format(port=443)}" in res[2]
    # Claude Code 2.x's WebFetch first asks claude.ai whether the domain is safe; that preflight is what the proxy
    # refuses, so the model reads "Unable to verify if domain docs.test is safe to fetch ..." (docs/network.md).
    assert "docs.test" in res[3] and "rcc sandbox" not in res[3]


KEY = "sk-ant-test-key-0123456789abcdefghij"


def seed_claude_state(world: World) -> None:
    """Skip the first-run dialogs and let Bash run without a permission prompt (the user's own settings for
    claude in rcc's state dir, copied into each session)."""
    st = world.home / ".local/state/rcc/agents/claude/settings/.claude"
    st.mkdir(parents=True)
    (st / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True,
        "theme": "dark",
        "numStartups": 1,
        "customApiKeyResponses": {"approved": [KEY[-20:]], "rejected": []},
        "projects": {str(world.project): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
    }))  # fmt: skip
    (st / "settings.json").write_text(json.dumps({
        "permissions": {"allow": ["Bash"], "defaultMode": "bypassPermissions"},
        "skipDangerousModePermissionPrompt": True,
    }))  # fmt: skip


def test_claude_asks_the_user_approves_in_rcc_watch_and_the_request_succeeds(
    claude_world: tuple[World, FakeApi], testhost: TestHost, tmp_path: Path
) -> None:
    """The issue's "done when": `rcc claude` (interactive, ask mode), `rcc watch` in a second terminal, the agent's
    curl to a host nobody foresaw is held, approved for the session with `s`, and succeeds; no restart."""
    world, api = claude_world
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from the docs host\n")
    testhost.serve_http(www, port=80)
    seed_claude_state(world)
    world.env["ANTHROPIC_API_KEY"] = KEY
    cfg = world.home / ".config" / "rcc"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.toml").write_text('[network]\non_unknown = "ask"\n')
    api.set_turns([
        {"calls": [{"name": "Bash", "input": {"command": "curl -sS http://docs.test/hello.txt", "description": "s"}}]},
        {"text": "DONE-5150"},
    ])  # fmt: skip
    args = claude_args(api, "--resolve", f"docs.test={testhost.address}", "--dangerously-skip-permissions")
    env = {**world.env, "NO_COLOR": "1"}
    agent = pexpect.spawn(RCC[0], [*RCC[1:], *args], cwd=str(world.project), env=env, dimensions=(40, 120),
                          encoding="utf-8", timeout=30)  # fmt: skip
    watch = None
    try:
        agent.expect("bypass", timeout=60)
        if agent.expect(["Make.{1,12}auto.{1,12}mode", pexpect.TIMEOUT], timeout=5) == 0:  # a one-time dialog
            agent.expect("keep.{1,12}bypass", timeout=10)
            time.sleep(0.5)
            agent.send("\x1b[B")
            time.sleep(0.3)
            agent.send("\r")
            time.sleep(1.0)
        watch = pexpect.spawn(RCC[0], [*RCC[1:], "watch"], cwd=str(world.project), env=env, encoding="utf-8",
                              timeout=30)  # fmt: skip
        watch.expect("asking")
        time.sleep(1.0)
        agent.send("fetch the docs")
        agent.expect("docs")
        agent.send("\r")
        # Claude Code also reaches for hosts of its own (github.com, ...): they are asked about too. The keys
        # answer the oldest open question, shown in the prompt line; deny each other host once, approve docs.test.
        answered: set[str] = set()
        while True:
            watch.expect(r"\? \[(\d+)\] (\S+) wants to connect", timeout=60)
            qid, target = watch.match.group(1), watch.match.group(2)
            if qid in answered:
                continue
            answered.add(qid)
            if target == "docs.test:80":
                watch.send("s")
                watch.expect(rf"\[{qid}\] docs.test:80: session", timeout=10)
                break
            watch.send("d")
        # the screen may be redrawn around a "D" already in place ("●", cursor to column 4, "ONE-5150")
        agent.expect("ONE-5150", timeout=60)
    except pexpect.TIMEOUT:
        with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
            agent.expect("NEVER", timeout=1)
        raise AssertionError(f"agent screen: {agent.before!r}\nwatch: {watch.before if watch else ''!r}") from None
    finally:
        agent.close(force=True)
        if watch is not None:
            watch.close(force=True)
    results = api.results()
    assert "hello from the docs host" in str(results["toolu_00_0"]["content"])
    changes = (world.home / ".local/state/rcc/policy-changes.jsonl").read_text()
    assert '"rule": "docs.test"' in changes and '"answer": "session"' in changes
