"""Pure and local tests of the agent profiles, the finder, the state dirs and the command line (no sandbox)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rcc.agents import find
from rcc.agents.cli import _pop_agent
from rcc.agents.profiles import AIDER, CLAUDE, CODEX, GEMINI, PROFILES, endpoints, fixed_env, passthrough
from rcc.agents.profiles import url_host_rule as rule
from rcc.errors import ConfigError, ExitCode, RccError
from rcctest import require

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------------ endpoints


def test_claude_default_endpoints_include_login_hosts() -> None:
    assert endpoints(CLAUDE, {}) == ("api.anthropic.com", "platform.claude.com")


def test_base_url_replaces_default_endpoints() -> None:
    assert endpoints(CLAUDE, {"ANTHROPIC_BASE_URL": "https://llm.corp.example/anthropic"}) == ("llm.corp.example",)
    assert endpoints(CLAUDE, {"ANTHROPIC_BASE_URL": "http://api.test:8080"}) == ("api.test:8080",)
    assert endpoints(CODEX, {"OPENAI_BASE_URL": "http://[::1]:9000/v1"}) == ("[::1]:9000",)
    assert endpoints(GEMINI, {"GOOGLE_GEMINI_BASE_URL": "https://gw.example:443"}) == ("gw.example",)


def test_bedrock_endpoint_follows_region() -> None:
    env = {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "eu-west-3", "ANTHROPIC_BASE_URL": "http://ignored"}
    assert endpoints(CLAUDE, env) == ("bedrock-runtime.eu-west-3.amazonaws.com",)
    assert endpoints(CLAUDE, {"CLAUDE_CODE_USE_BEDROCK": "true"}) == ("bedrock-runtime.us-east-1.amazonaws.com",)
    env = {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_BEDROCK_BASE_URL": "https://bedrock.proxy.example"}
    assert endpoints(CLAUDE, env) == ("bedrock.proxy.example",)


def test_vertex_endpoint_follows_region_and_global() -> None:
    env = {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "europe-west1"}
    assert endpoints(CLAUDE, env) == ("europe-west1-aiplatform.googleapis.com", "oauth2.googleapis.com")
    env = {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global"}
    assert endpoints(CLAUDE, env) == ("aiplatform.googleapis.com", "oauth2.googleapis.com")


def test_provider_switched_off_by_false_values() -> None:
    for off in ("0", "false", "", "no"):
        assert endpoints(CLAUDE, {"CLAUDE_CODE_USE_BEDROCK": off})[0] == "api.anthropic.com"


def test_aider_allows_only_providers_it_has_keys_for() -> None:
    assert endpoints(AIDER, {}) == ()
    assert endpoints(AIDER, {"OPENAI_API_KEY": "k", "DEEPSEEK_API_KEY": "k"}) == ("api.openai.com", "api.deepseek.com")


def test_region_injection_is_refused() -> None:
    """A region is spliced into a host name: `x.evil.com/` or `*` must not widen the allowlist."""
    for bad in ("us-east-1.evil.com#", "*", "a/b", "eu west"):
        with pytest.raises(ConfigError):
            endpoints(CLAUDE, {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": bad})


def test_malformed_base_url_is_refused_not_widened() -> None:
    for bad in ("api.anthropic.com", "ftp://x.example", "http://", "http://h:99999", "file:///etc/passwd"):
        with pytest.raises(ConfigError) as e:
            rule(bad, "ANTHROPIC_BASE_URL")
        assert e.value.code == ExitCode.CONFIG


def test_url_host_rule_ports() -> None:
    assert rule("https://h.example", "V") == "h.example"
    assert rule("http://h.example:80/x", "V") == "h.example"
    assert rule("https://h.example:80", "V") == "h.example:80"
    assert rule("https://[2001:db8::1]/", "V") == "[2001:db8::1]"
    assert rule("HTTPS://H.Example", "V") == "h.example"


# ------------------------------------------------------------------------------------------------ env


def test_provider_credentials_pass_only_when_provider_is_on() -> None:
    assert "AWS_SECRET_ACCESS_KEY" not in passthrough(CLAUDE, {})
    assert "AWS_SECRET_ACCESS_KEY" in passthrough(CLAUDE, {"CLAUDE_CODE_USE_BEDROCK": "1"})
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in passthrough(CLAUDE, {"CLAUDE_CODE_USE_BEDROCK": "1"})


def test_profiles_never_pass_broad_patterns() -> None:
    """A pattern like `*` or `AWS_*` would hand every credential in the user's shell to the agent."""
    for p in PROFILES.values():
        for name in (*p.passthrough, *(x for prov in p.providers for x in prov.passthrough)):
            assert name != "*" and not name.startswith(("AWS_*", "GOOGLE_*", "GITHUB", "GH_", "NPM_"))


def test_fixed_env_uses_sandbox_home() -> None:
    env = dict(fixed_env(CLAUDE, "/home/u"))
    assert env == {"IS_SANDBOX": "1", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CONFIG_DIR": "/home/u/.claude"}


def test_every_profile_is_complete() -> None:
    for name, p in PROFILES.items():
        assert p.name == name and p.executable and p.install_hint and p.state
        assert all(not s.startswith("/") and ".." not in s for s in (*p.state, *p.importable))


# ------------------------------------------------------------------------------------------------ finder


def test_install_tree_npm_native_venv_and_fallback() -> None:
    def no(_: str) -> bool:
        return False

    npm = "/usr/local/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
    assert find.install_tree(npm, "/home/u", no) == ("/usr/local/lib/node_modules",)
    nvm = "/home/u/.nvm/versions/node/v22.1.0/lib/node_modules/@google/gemini-cli/bundle/gemini.js"
    assert find.install_tree(nvm, "/home/u", lambda p: p.endswith("/bin/node")) == (
        "/home/u/.nvm/versions/node/v22.1.0/lib/node_modules", "/home/u/.nvm/versions/node/v22.1.0/bin")
    native = "/home/u/.local/share/claude/versions/2.1.332"
    assert find.install_tree(native, "/home/u", no) == ("/home/u/.local/share/claude/versions",)
    venv = "/home/u/.local/share/uv/tools/aider-chat/bin/aider"
    assert find.install_tree(venv, "/home/u", lambda p: p.endswith("pyvenv.cfg")) == (
        "/home/u/.local/share/uv/tools/aider-chat",)
    assert find.install_tree("/opt/claude/claude", "/home/u", no) == ("/opt/claude/claude",)


def test_install_tree_never_mounts_home_or_above() -> None:
    """A venv at ~ (pyvenv.cfg in home) or node_modules at / must not expose the whole home."""
    assert find.install_tree("/home/u/bin/aider", "/home/u", lambda p: True) == ("/home/u/bin/aider",)
    assert find.install_tree("/srv/versions/tool", "/srv/versions/u", lambda p: False) == ("/srv/versions/tool",)


def _only_under(top: Path) -> Callable[[str], bool]:
    """find's existence check, blind to everything outside `top`: what is installed on the test machine
    (/usr/local/bin/claude, an agent in /usr/bin) must not change a pure test's result."""
    return lambda p: p.startswith(f"{top}/") and os.path.isfile(p) and os.access(p, os.X_OK)


def _exe(path: Path, body: str = "#!/bin/sh\necho fake\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return path


def test_find_on_path_and_native_installer_layout(tmp_path: Path) -> None:
    home = tmp_path / "home"
    target = _exe(home / ".local/share/claude/versions/2.1.332")
    (home / ".local/bin").mkdir(parents=True)
    (home / ".local/bin/claude").symlink_to(target)
    got = find.find(CLAUDE, {"PATH": "/nonexistent"}, str(home), _only_under(tmp_path))
    assert got is not None and got.real == str(target) and got.how == "~/.local/bin/claude"
    assert got.trees == (str(target.parent),)
    bindir = tmp_path / "bin"
    on_path = _exe(bindir / "claude")
    got = find.find(CLAUDE, {"PATH": str(bindir)}, str(home), _only_under(tmp_path))
    assert got is not None and got.real == str(on_path) and got.how == "PATH"


def test_planted_agent_in_relative_path_entry_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH=".:..." would run a `claude` shipped inside a hostile repository."""
    _exe(tmp_path / "claude", "#!/bin/sh\necho planted\n")
    monkeypatch.chdir(tmp_path)
    env = {"PATH": os.pathsep.join([".", "", "sub"])}
    assert find.find(CLAUDE, env, str(tmp_path / "nohome"), _only_under(tmp_path)) is None


def test_missing_agent_is_dependency_error_with_install_command(tmp_path: Path) -> None:
    with pytest.raises(RccError) as e:
        find.require(CODEX, {"PATH": str(tmp_path)}, str(tmp_path), _only_under(tmp_path))
    assert e.value.code == ExitCode.DEPENDENCY
    assert "npm install -g @openai/codex" in e.value.hint


def test_find_all_reports_every_agent(tmp_path: Path) -> None:
    _exe(tmp_path / "bin" / "gemini")
    got = find.find_all({"PATH": str(tmp_path / "bin")}, str(tmp_path), _only_under(tmp_path))
    assert set(got) == set(PROFILES)
    assert got["gemini"] is not None and got["claude"] is None


# ------------------------------------------------------------------------------------------------ state


# The persistence model (fresh state per session, what carries, the stores): tests/agents/test_agent_state_unit.py


# ------------------------------------------------------------------------------------------------ command line


def test_pop_agent_only_from_rcc_options() -> None:
    assert _pop_agent(["--agent", "claude", "--no-network"]) == ("claude", ["--no-network"])
    assert _pop_agent(["--agent=codex", "--", "-c", "--agent x"]) == ("codex", ["--", "-c", "--agent x"])
    assert _pop_agent(["ls", "--agent", "x"]) == ("", ["ls", "--agent", "x"])


def _rcc(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "rcc", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)


def test_claude_missing_says_how_to_install() -> None:
    with pytest.raises(RccError) as e:
        find.require(CLAUDE, {"PATH": "/nonexistent"}, "/nonexistent-home", lambda p: False)
    assert e.value.code == ExitCode.DEPENDENCY
    assert "npm install -g @anthropic-ai/claude-code" in e.value.hint
    assert "/usr/local/bin/claude" in e.value.message  # says where it looked


def test_rcc_claude_missing_says_how_to_install(tmp_path: Path) -> None:
    """The same through the command line, on a machine where no claude is installed: the test makes one (its
    own mount namespace, /usr/local/bin an empty tmpfs, PATH an empty directory, HOME empty), since the real
    machine may well have claude in /usr/local/bin or /usr/bin."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    require(unshare is not None and mount is not None, "unshare and mount (util-linux) are not installed")
    (tmp_path / "proj").mkdir()
    (tmp_path / "bin").mkdir()
    hide = [str(unshare), "--mount", "--propagation", "private", *([] if os.geteuid() == 0 else ["--map-root-user"])]
    hide += ["/bin/sh", "-c", '"$0" -t tmpfs none /usr/local/bin && shift && exec "$@"', str(mount), "-"]
    env = {"HOME": str(tmp_path), "PATH": str(tmp_path / "bin"), "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([*hide, sys.executable, "-m", "rcc", "claude", "-p", "hi"], env=env, cwd=tmp_path / "proj",
                       capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    # Anything printed before rcc's own message is unshare's or mount's (a build sandbox refuses namespaces).
    require("rcc:" in r.stderr and not r.stderr.split("rcc:")[0].strip(), f"no mount namespace here: {r.stderr}")
    assert r.returncode == ExitCode.DEPENDENCY, r.stderr
    assert "npm install -g @anthropic-ai/claude-code" in r.stderr


def test_rcc_claude_dry_run_plan(tmp_path: Path) -> None:
    """The plan: the install tree read-only, the state dir at ~/.claude, the endpoint, the env; agent args last."""
    home = tmp_path / "home"
    nm = tmp_path / "npm/lib/node_modules"
    exe = _exe(nm / "@anthropic-ai/claude-code/bin/claude.exe")
    (tmp_path / "npm/bin").mkdir(parents=True)
    (tmp_path / "npm/bin/claude").symlink_to(exe)
    (tmp_path / "proj").mkdir()
    env = {"HOME": str(home), "PATH": f"{tmp_path}/npm/bin:/usr/bin:/bin", "ANTHROPIC_API_KEY": "k",
           "SECRET_TOKEN": "s", "AWS_SECRET_ACCESS_KEY": "aws"}
    home.mkdir()
    r = _rcc(["claude", "--dry-run", "--allow", "pypi.org", "-p", "hi", "--model", "x"], env, tmp_path / "proj")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    real_home = os.path.realpath(home)
    assert plan["argv"] == [str(exe), "-p", "hi", "--model", "x"]
    binds = {(m["src"], m["dest"], m["writable"]) for m in plan["mounts"] if m["op"] == "bind"}
    assert (str(nm), str(nm), False) in binds
    runs = [b for b in binds if b[1] == f"{real_home}/.claude"]
    assert len(runs) == 1 and runs[0][2], "a fresh read-write state dir at ~/.claude"
    assert runs[0][0].startswith(f"{real_home}/.local/state/rcc/agents/claude/run/")
    assert not os.path.exists(runs[0][0]), "a dry run leaves no session state behind"
    assert set(plan["net"]["allow"]) >= {"api.anthropic.com", "platform.claude.com", "pypi.org"}
    # the key is a credential by default: a placeholder inside, the proxy adds the key for api.anthropic.com
    assert plan["env"]["ANTHROPIC_API_KEY"].startswith("rcc-cred-anthropic-") and plan["env"]["IS_SANDBOX"] == "1"
    assert [(c["name"], c["env"], c["hosts"]) for c in plan["net"]["credentials"]] == [
        ("anthropic", "ANTHROPIC_API_KEY", ["api.anthropic.com"])
    ]
    assert "SECRET_TOKEN" not in plan["env"] and "AWS_SECRET_ACCESS_KEY" not in plan["env"]
    assert plan["env"]["CLAUDE_CONFIG_DIR"] == f"{real_home}/.claude"
    # --pass-api-key: the key itself, as before credentials
    r = _rcc(["claude", "--dry-run", "--pass-api-key", "-p", "hi"], env, tmp_path / "proj")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["env"]["ANTHROPIC_API_KEY"] == "k" and plan["net"]["credentials"] == []
    # an https ANTHROPIC_BASE_URL: the credential is for that host; a plain-http one: no credential (never over
    # cleartext), the key as before
    for base, hosts in (("https://gw.example:8443/v1", ["gw.example"]), ("http://api.test:8080", None)):
        r = _rcc(["claude", "--dry-run", "-p", "hi"], {**env, "ANTHROPIC_BASE_URL": base}, tmp_path / "proj")
        assert r.returncode == 0, r.stderr
        plan = json.loads(r.stdout)
        if hosts is None:
            assert plan["env"]["ANTHROPIC_API_KEY"] == "k" and plan["net"]["credentials"] == []
        else:
            assert [c["hosts"] for c in plan["net"]["credentials"]] == [hosts]
            assert plan["env"]["ANTHROPIC_API_KEY"].startswith("rcc-cred-anthropic-")


def test_rcc_shell_with_agent_puts_agent_on_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    nm = tmp_path / "pfx/node_modules"
    exe = _exe(nm / "@openai/codex/bin/codex.js")
    (nm / ".bin").mkdir()
    (nm / ".bin/codex").symlink_to(exe)
    (tmp_path / "proj").mkdir()
    env = {"HOME": str(home), "PATH": f"{nm}/.bin:/usr/bin:/bin", "SHELL": "/bin/sh", "OPENAI_API_KEY": "k"}
    r = _rcc(["shell", "--agent", "codex", "--dry-run"], env, tmp_path / "proj")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["argv"] == ["/bin/sh"]
    assert plan["env"]["PATH"].startswith(f"{nm}/.bin:")
    assert plan["env"]["OPENAI_API_KEY"] == "k"
    assert "api.openai.com" in plan["net"]["allow"]


def test_rcc_help_for_agents_without_the_agent_installed(tmp_path: Path) -> None:
    r = _rcc(["claude", "--rcc-help"], {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, tmp_path)
    assert r.returncode == 0 and "--import-settings" in r.stdout


def test_missing_setup_is_reported_before_the_agent_starts(tmp_path: Path) -> None:
    """No bubblewrap on PATH: rcc names the fix and exits 69; the agent never ran (no unsandboxed fallback)."""
    ran = tmp_path / "agent-ran"
    _exe(tmp_path / "bin" / "claude", f"#!/bin/sh\ntouch {ran}\n")
    (tmp_path / "proj").mkdir()
    r = _rcc(["claude", "-p", "hi"], {"HOME": str(tmp_path), "PATH": str(tmp_path / "bin")}, tmp_path / "proj")
    assert r.returncode == ExitCode.DEPENDENCY
    assert "bubblewrap" in r.stderr and "apt-get install bubblewrap" in r.stderr
    assert not ran.exists()
