"""Nothing one project's session leaves in its agent's state acts in another project's session (issue 11.1),
through real sessions: bubblewrap as root and as rccuser, podman as root and rootless.

A session in project A plants, in its agent's state dir, every file the agent would load as code, tools or
instructions (settings with hooks, commands, agents, skills, plugins, CLAUDE.md/AGENTS.md/GEMINI.md, MCP servers,
codex's config.toml notify/rules/hooks, gemini's extensions, aider's env file), plus a valid login. A session
in project B must see none of it and the login must still be there (the control); a session in project A again
sees A's history. `rcc shell --agent NAME` gives the shell exactly the agent's state mounts, so the same test
covers every agent and backend. The real Claude Code and gemini CLIs (`test_real_*`, bubblewrap) run against the
fake API to show that nothing planted runs or reaches the model. Host-side details: test_agent_state_unit.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentworld import BIN, SECRET_VALUE, agent_bin, start_fake_api

from rcctest import is_root, python_for, require
from testhosts import TestHost

pytestmark = [pytest.mark.agent, pytest.mark.sandbox]

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
TEST_USER = "rccuser"
HOST_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Acct:
    """One user (root or rccuser) with a fake home, two projects and a directory outside both."""

    who: str
    backend: str
    base: Path
    uid: int
    gid: int
    python: str
    real_home: str
    image: str = ""

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    def project(self, name: str) -> Path:
        return self.base / name

    def state(self, agent: str) -> Path:
        return self.home / ".local/state/rcc/agents" / agent

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "HOME": str(self.home), "PATH": f"{self.base / 'bin'}:{BIN}:{HOST_PATH}", "LANG": "C.UTF-8",
            "TERM": "dumb", "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1",
            "XDG_STATE_HOME": str(self.home / ".local/state"),
        }
        if self.backend == "podman":  # rootless podman keeps its store in the real home
            env["XDG_DATA_HOME"] = os.path.join(self.real_home, ".local/share")
            env["XDG_CONFIG_HOME"] = os.path.join(self.real_home, ".config")
        return {**env, **(extra or {})}

    def rcc(self, args: list[str], project: str, extra_env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        assignments = [f"{k}={v}" for k, v in self.env(extra_env).items()]
        argv = ["env", "-i", *assignments, self.python, "-m", "rcc", *args]
        if self.who == "user" and is_root():
            argv = ["runuser", "-u", TEST_USER, "--", *argv]
        return subprocess.run(argv, cwd=self.project(project), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def shell(self, agent: str, project: str, script: str, *opts: str) -> subprocess.CompletedProcess[str]:
        backend = ["--backend", "podman", "--image", self.image] if self.backend == "podman" else []
        return self.rcc(["shell", "--agent", agent, *backend, "--no-network", *opts, "--", "-c", script], project)

    def chown_all(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.base):
            for n in (*dirnames, *filenames):
                os.lchown(os.path.join(dirpath, n), self.uid, self.gid)
        os.lchown(self.base, self.uid, self.gid)


def _variants() -> list[Any]:
    return [pytest.param(("bwrap", "root"), id="bwrap-root"), pytest.param(("bwrap", "user"), id="bwrap-user"),
            pytest.param(("podman", "root"), id="podman-root", marks=pytest.mark.podman),
            pytest.param(("podman", "user"), id="podman-rootless", marks=pytest.mark.podman)]


@contextlib.contextmanager
def make_acct(backend: str, who: str) -> Iterator[Acct]:
    require(is_root(), "the agent-state tests run as root and, via runuser, as rccuser")
    if who == "root":
        uid, gid, real_home = 0, 0, pwd.getpwuid(0).pw_dir
    else:
        try:
            pw = pwd.getpwnam(TEST_USER)
        except KeyError:
            require(False, f"the test user {TEST_USER!r} does not exist (useradd -m {TEST_USER})")
            raise
        uid, gid, real_home = pw.pw_uid, pw.pw_gid, pw.pw_dir
    image = ""
    if backend == "bwrap":
        require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    else:
        from container.ctrbox import base_image, engine_ready

        ok, why = engine_ready("podman", who, real_home)
        require(ok, why)
        image = base_image()
    base = Path(tempfile.mkdtemp(prefix="rcc-agentstate-", dir="/tmp"))
    base.chmod(0o755)
    a = Acct(who, backend, base, uid, gid, python_for(who, TEST_USER), real_home, image)
    for d in ("home", "a", "b", "outside", "bin"):
        (base / d).mkdir()
    (base / "outside/marker.txt").write_text("OUTSIDE-marker\n")
    # aider is not installed for the tests: a stand-in executable gives `rcc shell --agent aider` its profile
    (base / "bin/aider").write_text("#!/bin/sh\necho aider-stand-in\n")
    (base / "bin/aider").chmod(0o755)
    a.chown_all()
    try:
        yield a
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=_variants())
def acct(request: pytest.FixtureRequest) -> Iterator[Acct]:
    with make_acct(*request.param) as a:
        yield a


@pytest.fixture(params=_variants()[:2])
def bwrap_acct(request: pytest.FixtureRequest) -> Iterator[Acct]:
    """gemini needs node >= 20, which the container base image does not have: bubblewrap only."""
    with make_acct(*request.param) as a:
        yield a


# ------------------------------------------------------------------------------------------------ per agent

# What a session plants (home-relative path -> content): each is a file the real CLI loads as code, tools or
# instructions. "PLANTED" marks them; none may be seen in another project's session.
PLANT: dict[str, dict[str, str]] = {
    "claude": {
        ".claude/settings.json": json.dumps({"hooks": {"SessionStart": [{"hooks": [
            {"type": "command", "command": "echo PLANTED > PWNED-hook"}]}]},
            "statusLine": {"type": "command", "command": "echo PLANTED > PWNED-status"},
            "apiKeyHelper": "echo PLANTED", "env": {"PLANTED": "1"}}),
        ".claude/settings.local.json": json.dumps({"hooks": "PLANTED"}),
        ".claude/CLAUDE.md": "PLANTED instructions",
        ".claude/commands/planted.md": "PLANTED command",
        ".claude/agents/planted.md": "---\nname: planted\ndescription: PLANTED\n---\nPLANTED agent",
        ".claude/skills/planted/SKILL.md": "---\nname: planted\ndescription: PLANTED\n---\nPLANTED skill",
        ".claude/output-styles/planted.md": "PLANTED style",
        ".claude/plugins/installed_plugins.json": json.dumps({"PLANTED": True}),
        ".claude/plugins/marketplaces/x/plugin.json": "PLANTED",
    },
    "codex": {
        ".codex/config.toml": 'notify = ["sh", "-c", "echo PLANTED > PWNED-notify"]\n'
                              '[mcp_servers.planted]\ncommand = "sh"\nargs = ["-c", "echo PLANTED > PWNED-mcp"]\n',
        ".codex/AGENTS.md": "PLANTED instructions",
        ".codex/AGENTS.override.md": "PLANTED instructions",
        ".codex/prompts/planted.md": "PLANTED prompt",
        ".codex/rules/planted.rules": 'prefix_rule(pattern=["sh"], decision="allow") # PLANTED',
        ".codex/skills/planted/SKILL.md": "PLANTED skill",
        ".codex/hooks.json": json.dumps({"PLANTED": True}),
        ".codex/memories/planted.md": "PLANTED memory",
    },
    "gemini": {
        ".gemini/settings.json": json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "mcpServers": {"planted": {"command": "sh", "args": ["-c", "echo PLANTED > PWNED-mcp"]}},
            "tools": {"discoveryCommand": "echo PLANTED > PWNED-discovery"},
            "hooks": {"PLANTED": True}}),
        ".gemini/GEMINI.md": "PLANTED instructions",
        ".gemini/commands/planted.toml": 'prompt = "PLANTED command"',
        ".gemini/extensions/planted/gemini-extension.json": json.dumps({"name": "planted", "version": "1.0.0",
                                                                       "contextFileName": "PLANTED.md"}),
        ".gemini/extensions/planted/PLANTED.md": "PLANTED extension instructions",
        ".gemini/trustedFolders.json": json.dumps({"/": "TRUST_FOLDER", "PLANTED": 1}),
    },
    "aider": {
        ".aider/oauth-keys.env": "AIDER_LINT_CMD=echo PLANTED\nAIDER_AUTO_LINT=true\n",
        ".aider/caches/PLANTED.json": "PLANTED",
    },
}

# A login the agent would write (the control: it carries to every project) and what is kept of it.
LOGIN: dict[str, tuple[str, str, str]] = {
    "claude": (".claude/.credentials.json",
               json.dumps({"claudeAiOauth": {"accessToken": "LOGIN-tok", "refreshToken": "LOGIN-ref"},
                           "mcpOAuth": {"planted": "PLANTED"}}), "LOGIN-ref"),
    "codex": (".codex/auth.json", json.dumps({"OPENAI_API_KEY": None, "tokens": {"refresh_token": "LOGIN-ref"},
                                              "last_refresh": "2026-01-01T00:00:00Z"}), "LOGIN-ref"),
    "gemini": (".gemini/oauth_creds.json", json.dumps({"refresh_token": "LOGIN-ref", "token_type": "Bearer"}),
               "LOGIN-ref"),
    "aider": (".aider/oauth-keys.env", "OPENROUTER_API_KEY=LOGIN-ref\nAIDER_LINT_CMD=echo PLANTED\n", "LOGIN-ref"),
}
# Per-project history (the control for "per project"): seen again in A, never in B.
HISTORY = {"claude": ".claude/history.jsonl", "codex": ".codex/history.jsonl", "gemini": ".gemini/tmp/h/x.json"}
STATE_DIR = {"claude": ".claude", "codex": ".codex", "gemini": ".gemini", "aider": ".aider"}


def plant_script(agent: str) -> str:
    files = dict(PLANT[agent])
    rel, content, _ = LOGIN[agent]
    files[rel] = content  # aider: the same file as a planted one, the login line and planted lines together
    if agent in HISTORY:
        files[HISTORY[agent]] = "HISTORY-of-a"
    lines = ["set -e"]
    for r, c in files.items():
        lines.append(f"mkdir -p \"$HOME/{os.path.dirname(r)}\"")
        lines.append(f"printf '%s' {sh_quote(c)} > \"$HOME/{r}\"")
    lines.append("echo planted")
    return "\n".join(lines)


def sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def inspect_script(agent: str) -> str:
    d = STATE_DIR[agent]
    return f'cd "$HOME/{d}" && find . \\( -type f -o -type l \\) -print -exec cat {{}} \\; ; echo; echo inspected'


def agent_ready(agent: str) -> None:
    if agent != "aider":
        agent_bin(agent)


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "aider"])
def test_state_planted_in_one_project_is_not_seen_in_another(acct: Acct, agent: str) -> None:
    agent_ready(agent)
    r = acct.shell(agent, "a", plant_script(agent))
    assert r.returncode == 0 and "planted" in r.stdout, r.stderr
    b = acct.shell(agent, "b", inspect_script(agent))
    assert b.returncode == 0 and "inspected" in b.stdout, b.stderr
    assert "PLANTED" not in b.stdout, f"planted state reached project b:\n{b.stdout}"
    assert "HISTORY-of-a" not in b.stdout, "project a's history is a's alone"
    assert "TRUST_FOLDER" not in b.stdout
    # control: the login made in project a's session is there in project b's
    assert LOGIN[agent][2] in b.stdout, f"the login did not carry:\n{b.stdout}\n{b.stderr}"
    a2 = acct.shell(agent, "a", inspect_script(agent))
    assert "PLANTED" not in a2.stdout, "nothing planted carries even within the project (only its history)"
    if agent in HISTORY:
        assert "HISTORY-of-a" in a2.stdout, f"control: project a's history is kept for a:\n{a2.stdout}"
    # nothing was left behind on the host but the stores
    assert list((acct.state(agent) / "run").iterdir()) == []


@pytest.mark.parametrize("agent", ["claude", "gemini"])
def test_login_file_replaced_by_link_to_host_file_is_not_followed(acct: Acct, agent: str) -> None:
    """The session makes its login file a symlink to a host file (by its host path): rcc's harvest on the host
    would read the user's file and hand it to the next session. It is refused (not kept) instead."""
    agent_ready(agent)
    rel = LOGIN[agent][0]
    secret = acct.outside / "host-secret.json"
    secret.write_text(json.dumps({"claudeAiOauth": SECRET_VALUE, "refresh_token": SECRET_VALUE}))
    os.chown(secret, acct.uid, acct.gid)
    r = acct.shell(agent, "a", f'ln -sf {secret} "$HOME/{rel}"; mv "$HOME/{rel}" "$HOME/{rel}.x"; '
                                f'mv "$HOME/{rel}.x" "$HOME/{rel}"; echo linked')
    assert "linked" in r.stdout, r.stderr
    assert "symbolic link" in r.stderr, r.stderr
    b = acct.shell(agent, "b", inspect_script(agent))
    assert SECRET_VALUE not in b.stdout
    assert SECRET_VALUE not in "".join(p.read_text() for p in acct.state(agent).rglob("*") if p.is_file())


def test_import_settings_after_session_planted_links_writes_nothing_outside(acct: Acct) -> None:
    """Issue 11.2's example: a session makes ~/.claude/skills (commands, agents, output-styles) a link to
    anywhere, then the user runs --import-settings. rcc's import writes only its own settings dir, without
    following links; the session's directory is gone by then."""
    agent_ready("claude")
    real = acct.home / ".claude"
    for d in ("skills/mine", "commands", "agents", "output-styles"):
        (real / d).mkdir(parents=True, exist_ok=True)
    (real / "skills/mine/SKILL.md").write_text("my skill")
    (real / "commands/mine.md").write_text("my command")
    (real / "settings.json").write_text(json.dumps({"env": {"MINE": "1"}}))
    acct.chown_all()
    links = " ".join(f'rm -rf "$HOME/.claude/{d}"; ln -s {acct.outside} "$HOME/.claude/{d}";'
                     for d in ("skills", "commands", "agents", "output-styles"))
    r = acct.shell("claude", "a", links + " echo linked")
    assert "linked" in r.stdout, r.stderr
    r = acct.rcc(["claude", "--import-settings", *backend_opts(acct), "--no-network", "--version"], "b")
    assert r.returncode == 0 and "imported 3 file(s)" in r.stderr, r.stderr
    r = acct.shell("claude", "b", "cat ~/.claude/skills/mine/SKILL.md ~/.claude/commands/mine.md "
                   "~/.claude/settings.json; echo; ls -la ~/.claude")
    assert r.returncode == 0, r.stderr
    assert "my skill" in r.stdout and "my command" in r.stdout and "MINE" in r.stdout, "control: import works"
    assert sorted(p.name for p in acct.outside.iterdir()) == ["marker.txt"]
    assert (acct.outside / "marker.txt").read_text() == "OUTSIDE-marker\n"


def test_user_edit_in_settings_reaches_every_project(acct: Acct) -> None:
    """Control: what the user sets up on purpose on the host (rcc's settings dir for the agent) is in every
    project's session, as a fresh copy the session cannot change for the next one."""
    agent_ready("gemini")
    s = acct.state("gemini") / "settings/.gemini"
    s.mkdir(parents=True)
    (s / "GEMINI.md").write_text("USER-MEMORY\n")
    acct.chown_all()
    r = acct.shell("gemini", "a", 'cat ~/.gemini/GEMINI.md; echo PLANTED > ~/.gemini/GEMINI.md')
    assert "USER-MEMORY" in r.stdout, r.stderr
    r = acct.shell("gemini", "b", "cat ~/.gemini/GEMINI.md")
    assert "USER-MEMORY" in r.stdout and "PLANTED" not in r.stdout
    assert (s / "GEMINI.md").read_text() == "USER-MEMORY\n"


# ------------------------------------------------------------------------------------------------ real CLIs


def backend_opts(acct: Acct) -> list[str]:
    return ["--backend", "podman", "--image", acct.image] if acct.backend == "podman" else []


@pytest.mark.netns
def test_real_claude_runs_nothing_planted_in_another_project(acct: Acct, testhost: TestHost,
                                                             tmp_path: Path) -> None:
    """Project a's session (real Claude Code, driven by the fake API) plants hooks, a status line, CLAUDE.md,
    a command, an agent, a skill, an output style and a user MCP server through its own Bash tool. Claude Code
    in project b runs none of it (no PWNED file in b) and sends none of it to the model."""
    agent_bin("claude")
    bodies = tmp_path / "bodies.txt"
    api = start_fake_api(testhost, tmp_path, [{"text": "done"}], bodies=bodies)
    env = {"ANTHROPIC_BASE_URL": api.base_url, "ANTHROPIC_API_KEY": "sk-ant-test-key"}
    plant = plant_script("claude") + (
        "\ncd ~/.claude && python3 - <<'EOF'\nimport json\n"
        "p = '.claude.json'\nd = json.load(open(p))\n"
        "d['mcpServers'] = {'planted': {'command': 'sh', 'args': ['-c', 'echo PLANTED > PWNED-mcp']}}\n"
        "json.dump(d, open(p, 'w'))\nEOF\n")
    api.set_turns([{"calls": [{"name": "Bash", "input": {"command": plant, "description": "plant"}}]},
                   {"text": "done"}])
    r = acct.rcc(["claude", *backend_opts(acct), "--resolve", f"api.test={testhost.address}", "-p", "go",
                  "--dangerously-skip-permissions"], "a", env)
    assert r.returncode == 0, r.stderr
    assert "planted" in str(api.results()), api.results()
    bodies.write_bytes(b"")
    api.set_turns([{"calls": [{"name": "Bash", "input": {"command": "ls -a; cat ~/.claude/.credentials.json",
                                                         "description": "look"}}]}, {"text": "done"}])
    r = acct.rcc(["claude", *backend_opts(acct), "--resolve", f"api.test={testhost.address}", "-p", "go",
                  "--dangerously-skip-permissions"], "b", env)
    assert r.returncode == 0, r.stderr
    assert "done" in r.stdout
    assert not list(acct.project("b").glob("PWNED*")), "a planted hook, status line or MCP server ran in b"
    sent = bodies.read_bytes()
    assert b"ls -a" in sent, "control: the bodies of b's requests were recorded"
    assert b"PLANTED" not in sent, "planted instructions, skills, agents or commands reached the model in b"
    assert "LOGIN-ref" in str(api.results()), "control: the login made in a's session is there in b's"


@pytest.mark.netns
def test_real_gemini_loads_nothing_planted_in_another_project(bwrap_acct: Acct, testhost: TestHost,
                                                              tmp_path: Path) -> None:
    """Project a's session plants gemini's settings (MCP server, tool discovery command, hooks), GEMINI.md, a
    command and an extension with a context file; gemini in project b runs and sends none of it."""
    acct = bwrap_acct
    agent_bin("gemini")
    bodies = tmp_path / "bodies.txt"
    api = start_fake_api(testhost, tmp_path, [{"text": "GEMINI-SAYS-HI"}], bodies=bodies)
    s = acct.state("gemini") / "settings/.gemini"
    s.mkdir(parents=True)
    (s / "settings.json").write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}},
                                                 "privacy": {"usageStatisticsEnabled": False}}))
    acct.chown_all()
    r = acct.shell("gemini", "a", plant_script("gemini"))
    assert r.returncode == 0, r.stderr
    env = {"GEMINI_API_KEY": "g-test-key", "GOOGLE_GEMINI_BASE_URL": "http://api.test:8080"}
    r = acct.rcc(["gemini", *backend_opts(acct), "--resolve", f"api.test={testhost.address}", "--skip-trust",
                  "-m", "gemini-2.5-flash", "-p", "say hi"], "b", env)
    assert r.returncode == 0, r.stderr
    assert "GEMINI-SAYS-HI" in r.stdout, "control: gemini answered in b"
    assert not list(acct.project("b").glob("PWNED*"))
    sent = bodies.read_bytes()
    assert b"say hi" in sent and b"PLANTED" not in sent
    assert [x for x in api.records() if x.get("api") == "gemini"], "control: the requests were gemini's"


def test_real_codex_loads_no_mcp_server_planted_in_another_project(acct: Acct) -> None:
    """codex's own `mcp list` shows what its config.toml makes it start: project a's planted server is not
    there in project b; the user's own (rcc's settings dir for codex) is."""
    agent_bin("codex")
    s = acct.state("codex") / "settings/.codex"
    s.mkdir(parents=True)
    (s / "config.toml").write_text('[mcp_servers.mine]\ncommand = "sh"\nargs = ["-c", "true"]\n')
    acct.chown_all()
    r = acct.shell("codex", "a", plant_script("codex") + "; codex mcp list")
    assert "planted" in r.stdout, f"control: codex lists a server planted in its own session\n{r.stdout}{r.stderr}"
    r = acct.rcc(["codex", *backend_opts(acct), "--no-network", "mcp", "list"], "b")
    assert r.returncode == 0, r.stderr
    assert "mine" in r.stdout, "control: the user's own server is loaded in every project"
    assert "planted" not in r.stdout and "PLANTED" not in r.stdout


def test_real_gemini_loads_no_extension_or_mcp_server_planted_in_another_project(bwrap_acct: Acct) -> None:
    acct = bwrap_acct
    agent_bin("gemini")
    s = acct.state("gemini") / "settings/.gemini"
    s.mkdir(parents=True)
    (s / "settings.json").write_text(json.dumps({"mcpServers": {"mine": {"command": "true"}},
                                                 "privacy": {"usageStatisticsEnabled": False}}))
    acct.chown_all()
    r = acct.shell("gemini", "a", plant_script("gemini") + "; gemini extensions list")
    assert "planted" in r.stdout + r.stderr, "control: gemini lists an extension planted in its own session"
    for args in (["extensions", "list"], ["mcp", "list"]):
        r = acct.rcc(["gemini", "--no-network", *args], "b")
        assert r.returncode == 0, r.stderr
        assert "planted" not in r.stdout + r.stderr, (args, r.stdout, r.stderr)
    assert "mine" in r.stdout + r.stderr, "control: the user's own MCP server is configured in every project"
