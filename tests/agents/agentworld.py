"""Helpers for the agent tests: the real agent CLIs (installed by install_agents.sh), a private HOME with planted
secrets, a git project, and the scripted fake Anthropic API on a test host in its own network namespace.

The agent reaches the fake API only through rcc's proxy: `--resolve api.test=<test host>` maps the name, and
ANTHROPIC_BASE_URL=http://api.test:8080 points Claude Code at it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcctest import require
from testhosts import TestHost

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PREFIX = Path(os.environ.get("RCC_TEST_AGENT_PREFIX", "/var/cache/rcc-test/npm"))
BIN = PREFIX / "node_modules" / ".bin"
# rcc starts with default signal dispositions whatever the test runner has: a runner started as a background
# job of a non-interactive shell ignores SIGINT and SIGQUIT (nohup: SIGHUP), and ignored signals are inherited.
RCC = ["/usr/bin/env", "--default-signal", sys.executable, "-m", "rcc"]
API_PORT = 8080
SECRET_VALUE = "rcc-test-secret-7f3a9c"


def agent_bin(name: str) -> Path:
    path = BIN / name
    require(path.exists(), f"{name} is not installed in {PREFIX}: run tests/agents/install_agents.sh")
    return path


def sandbox_ready() -> None:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    r = subprocess.run(["bwrap", "--unshare-user", "--unshare-net", "--ro-bind", "/", "/", "true"],
                       capture_output=True, check=False)
    require(r.returncode == 0, f"bubblewrap cannot create namespaces here: {r.stderr.decode().strip()}")


@dataclass
class World:
    """A private HOME (with secrets planted where real ones live) and a git project in it."""

    home: Path
    project: Path
    env: dict[str, str] = field(default_factory=dict)

    def rcc(self, args: Sequence[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RCC, *args], cwd=self.project, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False, **kw)


def make_world(tmp_path: Path) -> World:
    home = tmp_path / "home"
    project = tmp_path / "work" / "proj"
    project.mkdir(parents=True)
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(f"PRIVATE KEY {SECRET_VALUE}\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {SECRET_VALUE}\n")
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text(json.dumps({"token": SECRET_VALUE}))
    (home / ".claude" / "settings.json").write_text(json.dumps({"env": {"FROM_HOST_SETTINGS": "1"}}))
    (home / ".claude" / "CLAUDE.md").write_text("host memory\n")
    (home / ".claude" / "commands").mkdir()
    (home / ".claude" / "commands" / "hello.md").write_text("say hello\n")
    (home / ".claude.json").write_text(json.dumps({"oauthAccount": {"emailAddress": SECRET_VALUE}}))
    (home / ".bashrc").write_text("# host bashrc\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "README.md").write_text("a project\n")
    env = {
        "HOME": str(home),
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "PYTHONPATH": str(ROOT / "src"),
        "SECRET_TOKEN": SECRET_VALUE,  # a host variable no profile names: must not reach the agent
    }
    return World(home, project, env)


@dataclass
class FakeApi:
    host: TestHost
    log: Path
    script: Path
    proc: subprocess.Popen[bytes]
    name: str = "api.test"
    scheme: str = "http"
    port: int = API_PORT

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.name}:{self.port}"

    def set_turns(self, turns: list[dict[str, Any]]) -> None:
        self.script.write_text(json.dumps(turns))

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def results(self) -> dict[str, dict[str, Any]]:
        return {r["tool_use_id"]: r for r in self.records() if r["kind"] == "tool_result"}


def start_fake_api(
    host: TestHost,
    tmp_path: Path,
    turns: list[dict[str, Any]],
    bodies: Path | None = None,
    tls: tuple[str, str] | None = None,
    name: str = "api.test",
) -> FakeApi:
    """`bodies`: a file every request body is appended to (what reached the model). `tls`: (cert, key) of a
    certificate for `name` from the test's CA: the API is then https://NAME:443."""
    script = tmp_path / "turns.json"
    log = tmp_path / "api.jsonl"
    script.write_text(json.dumps(turns))
    more = ["--bodies", str(bodies)] if bodies else []
    port = API_PORT
    if tls:
        more += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        port = 443
    proc = host.run_bg([sys.executable, str(HERE / "fake_anthropic.py"), "--host", host.address, "--port",
                        str(port), "--script", str(script), "--log", str(log), *more], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("listening"), line
    return FakeApi(host, log, script, proc, name, "https" if tls else "http", port)


def claude_args(api: FakeApi, *extra: str) -> list[str]:
    return ["claude", "--resolve", f"{api.name}={api.host.address}", *extra]
