"""`rcc claude` with ANTHROPIC_API_KEY set: the real Claude Code works end to end against the fake API over TLS
while the real key is nowhere inside (issue 15).

The fake API (fake_anthropic.py) serves https://api.test with a certificate from the test's CA and logs the
SHA-256 of the key each request carried. rcc's proxy verifies it with that CA (SSL_CERT_FILE in rcc's own
environment, as it would the system store), terminates the agent's TLS with the session CA and swaps the
placeholder for the real key. The scripted model makes Claude Code's Bash tool print the variable it holds and run
tests/leakscan.py, which searches every file written since the key existed, the home, /tmp, /etc, /run, and every
process's environ, cmdline and memory (Claude Code's own node process included) for the key while the session
runs. The real key must also be absent from everything the agent sent the model, rcc's output and its state
directory (the audit log).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentworld import FakeApi, World, agent_bin, sandbox_ready, start_fake_api

from testhosts import TestCA, TestHost

pytestmark = [pytest.mark.agent, pytest.mark.sandbox, pytest.mark.netns]

LEAKSCAN = Path(__file__).resolve().parent.parent / "leakscan.py"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def bash(command: str) -> dict[str, Any]:
    return {"calls": [{"name": "Bash", "input": {"command": command, "description": "scripted step"}}]}


@dataclass
class Session:
    proc: subprocess.CompletedProcess[str]
    api: FakeApi
    real: str
    results: dict[str, dict[str, Any]]
    bodies: Path

    def scan(self) -> dict[str, Any]:
        return dict(json.loads(str(self.results["toolu_01_0"]["content"]).strip().splitlines()[-1]))


def claude_session(world: World, host: TestHost, tmp_path: Path, credential: bool) -> Session:
    """`rcc claude -p` against the fake API at https://api.test with a fresh real key; the model has Bash print
    the variable, then run the search. `credential`: rcc's default for `rcc claude` (the key becomes a credential
    for the host of the https ANTHROPIC_BASE_URL, with no config); else `--pass-api-key` puts the key itself inside
    and Claude Code is told to trust the test CA (the control)."""
    sandbox_ready()
    claude = agent_bin("claude")
    tail = secrets.token_hex(16)
    real = f"rcc-real-{tail}"  # the shape leakscan.py looks for; it is given only sha(tail)
    ca = TestCA(tmp_path / "ca")
    tls = ca.issue(["api.test", host.address])
    (world.project / "leakscan.py").write_text(LEAKSCAN.read_text())
    since = time.time() - 2
    turns = [
        bash('printf "placeholder %s\\n" "$ANTHROPIC_API_KEY"'),
        bash(f"python3 leakscan.py {sha(tail)} {since:.0f}"),
        {"text": "done"},
    ]
    extra: list[str] = []
    if not credential:
        (world.project / "test-ca.pem").write_text(Path(ca.cert).read_text())
        extra = ["--pass-api-key", "--env", f"NODE_EXTRA_CA_CERTS={world.project}/test-ca.pem"]
    bodies = tmp_path / "bodies.jsonl"
    api = start_fake_api(host, tmp_path, turns, bodies=bodies, tls=tls)
    world.env.update(
        {
            "ANTHROPIC_BASE_URL": api.base_url,  # https://api.test:443
            "ANTHROPIC_API_KEY": real,
            "SSL_CERT_FILE": ca.cert,  # rcc's proxy verifies the fake API with the test CA
            "PATH": f"{claude.parent}:/usr/local/bin:/usr/bin:/bin",
        }
    )
    proc = world.rcc(
        ["claude", "--resolve", f"api.test={host.address}", *extra, "-p", "go", "--dangerously-skip-permissions"],
        timeout=300,
    )
    results = api.results()
    assert proc.returncode == 0, (proc.stdout, proc.stderr, results)
    assert "done" in proc.stdout, (proc.stdout, proc.stderr)
    return Session(proc, api, real, results, bodies)


def test_claude_uses_an_api_key_it_never_holds(world: World, testhost: TestHost, tmp_path: Path) -> None:
    sess = claude_session(world, testhost, tmp_path, credential=True)
    proc, api, real, results, bodies = sess.proc, sess.api, sess.real, sess.results, sess.bodies

    # Inside, the variable holds the placeholder
    shown = str(results["toolu_00_0"]["content"])
    placeholder = shown.split("placeholder ", 1)[1].split(maxsplit=1)[0]
    assert placeholder and placeholder != real

    # The fake API got the real key on every request that carried one, never the placeholder
    reqs = [r for r in api.records() if r["kind"] == "request"]
    keyed = [r for r in reqs if r["x_api_key_sha256"] or r["authorization_sha256"]]
    assert any(r.get("tools") for r in keyed), reqs
    assert {r["x_api_key_sha256"] for r in keyed} == {sha(real)}, keyed
    assert sha(placeholder) not in {r["x_api_key_sha256"] for r in reqs}

    # The search inside, during the session, found nothing (and looked at something)
    scan = sess.scan()
    assert scan["found"] == [], scan
    assert scan["procs"] >= 3 and scan["mem_bytes"] > 10 << 20, scan  # node's memory was searched

    # Nor did anything the agent sent the model, rcc's output or rcc's state (audit log) hold it
    assert real not in bodies.read_text()
    assert real not in proc.stdout + proc.stderr
    state = world.home / ".local" / "state"
    audit = [json.loads(x) for x in (state / "rcc" / "audit.jsonl").read_text().splitlines()]
    assert any(r["host"] == "api.test" and r["rule"] == "credential:anthropic" for r in audit), audit
    for p in state.rglob("*") if state.exists() else []:
        if p.is_file():
            assert real.encode() not in p.read_bytes(), p


def test_control_the_search_finds_the_key_when_claude_holds_it(
    world: World, testhost: TestHost, tmp_path: Path
) -> None:
    """Control: with --pass-api-key, the key reaches the sandbox as it did before credentials, and the same search from
    Claude Code's Bash tool finds it, in the environment and in the memory of Claude Code's own process."""
    sess = claude_session(world, testhost, tmp_path, credential=False)
    assert sess.results["toolu_00_0"]["content"].strip().endswith(sess.real)
    found = sess.scan()["found"]
    assert any(f.endswith("/environ") for f in found), found
    assert any("/mem " in f for f in found), found
    keyed = [r for r in sess.api.records() if r["kind"] == "request" and r["x_api_key_sha256"]]
    assert keyed and {r["x_api_key_sha256"] for r in keyed} == {sha(sess.real)}
