"""Exit codes (sysexits for rcc's own failures, the command's status passed through) and the policy files as
`rcc run` sees them: invalid config is an error naming file, line and key, never a fallback; a project's
widening applies only after `rcc trust` of that exact content."""

from __future__ import annotations

import os

import pytest

from escape_world import World

pytestmark = [pytest.mark.sandbox]  # every backend (attacks.BACKENDS) unless a test names its own
# rcc's own CLI and policy files: decided before any backend runs (the same plan for every backend).
POLICY_LAYER = pytest.mark.backends("bwrap", why="rcc's CLI and policy layer: decided before any backend runs")


def test_exit_status_is_passed_through(world: World) -> None:
    assert world.sh("exit 0").returncode == 0
    assert world.sh("exit 7").returncode == 7
    assert world.sh("exit 255").returncode == 255


@pytest.mark.parametrize(("sig", "code"), [("TERM", 143), ("KILL", 137), ("INT", 130), ("SEGV", 139)])
def test_signal_death_is_128_plus_n(world: World, sig: str, code: int) -> None:
    res = world.rcc("run", "--no-network", "--", "sh", "-c", f"kill -{sig} $$")
    assert res.returncode == code, (res.returncode, res.stderr)


def test_command_not_found_is_127(world: World) -> None:
    res = world.rcc("run", "--no-network", "--", "no-such-command-rcc")
    assert res.returncode == 127, (res.returncode, res.stderr)


def test_command_not_executable_is_126(world: World) -> None:
    world.write(world.project / "script.sh", "#!/bin/sh\necho hi\n", 0o644)
    res = world.rcc("run", "--no-network", "--", "./script.sh")
    assert res.returncode == 126, (res.returncode, res.stderr)


def test_command_with_equals_sign_runs(world: World) -> None:
    """Control for the /usr/bin/env wrapper: a first word with '=' is a program name, not an assignment."""
    world.write(world.project / "a=b", "#!/bin/sh\necho ran-a-b\n", 0o755)
    res = world.rcc("run", "--no-network", "--", "./a=b")
    assert res.stdout == "ran-a-b\n", (res.returncode, res.stderr)


def test_bubblewrap_missing_is_69(world: World) -> None:
    """The backend's program missing (bwrap, or the container engine's client): 69, naming it."""
    res = world.rcc("run", "--no-network", "--", "true", env={"PATH": "/nonexistent"})
    assert res.returncode == 69, (res.returncode, res.stderr)
    names = ("bwrap", "bubblewrap") if world.engine == "bwrap" else (f"{world.engine} is not installed",)
    assert any(n in res.stderr for n in names), res.stderr


@POLICY_LAYER
def test_project_missing_is_66(world: World) -> None:
    res = world.rcc("run", "--no-network", "--project", str(world.base / "nope"), "--", "true")
    assert res.returncode == 66, (res.returncode, res.stderr)


@POLICY_LAYER
@pytest.mark.parametrize("argv", [["run"], ["run", "-x"], ["run", "--no-such-flag", "ls"], ["frobnicate"], []])
def test_usage_errors_are_64(world: World, argv: list[str]) -> None:
    res = world.rcc(*argv)
    assert res.returncode == 64, (argv, res.returncode, res.stderr)


@POLICY_LAYER
def test_options_after_the_command_belong_to_it(world: World) -> None:
    res = world.rcc("run", "--no-network", "ls", "-a", "--no-network")
    assert res.returncode == 2 or "--no-network" in res.stderr  # ls got the flag (and complained)
    res = world.rcc("run", "--no-network", "ls", "-a")
    assert ".git" in res.stdout.split(), res.stderr


def test_stdin_and_stdout_are_connected(world: World) -> None:
    res = world.rcc("run", "--no-network", "--", "tr", "a-z", "A-Z", input="hello\n")
    assert res.stdout == "HELLO\n", res.stderr


# ------------------------------------------------------------------------------------------------ config


@POLICY_LAYER
@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("[filesystem]\nread_only = [\n", "", 2),  # syntax error
        ("# c\n[filesystem]\nfrobnicate = 1\n", "filesystem.frobnicate", 3),  # unknown key
        ("[filesystem]\n\nread_only = 'x'\n", "filesystem.read_only", 3),  # wrong type
        ("[filesystem]\nread_only = ['~']\n", "filesystem.read_only", 2),  # over-broad
        ("[filesystem]\nread_write = ['/']\n", "filesystem.read_write", 2),  # over-broad
        ("[network]\nmode = 'open'\n", "network.mode", 2),  # bad value
    ],
)
def test_invalid_user_config_is_78_naming_file_line_key(world: World, text: str, key: str, line: int) -> None:
    cfg = world.write(world.home / ".config/rcc/config.toml", text)
    res = world.rcc("run", "--no-network", "--", "true")
    assert res.returncode == 78, (res.returncode, res.stderr)
    assert f"{cfg}:{line}" in res.stderr, res.stderr
    assert key in res.stderr


@POLICY_LAYER
def test_invalid_project_config_is_78_even_when_untrusted(world: World) -> None:
    cfg = world.write(world.project / ".rcc.toml", "[network]\nallow = 42\n")
    res = world.rcc("run", "--no-network", "--", "true")
    assert res.returncode == 78, (res.returncode, res.stderr)
    assert f"{cfg}:2" in res.stderr and "network.allow" in res.stderr


@POLICY_LAYER
def test_untrusted_project_widening_is_ignored_with_notice(world: World) -> None:
    cfg = world.write(world.project / ".rcc.toml", f'[filesystem]\nread_only = ["{world.outside}"]\n')
    res = world.sh(f"cat {world.outside}/marker.txt 2>/dev/null; true")
    assert "OUTSIDE" not in res.stdout
    assert "filesystem.read_only" in res.stderr and "rcc trust" in res.stderr and str(cfg) in res.stderr
    trust = world.rcc("trust")
    assert trust.returncode == 0, trust.stderr
    res = world.sh(f"cat {world.outside}/marker.txt")
    assert res.stdout == "OUTSIDE-marker\n", res.stderr  # control: trusted, the widening applies
    # a changed file needs trusting again
    cfg.write_text(f'[filesystem]\nread_only = ["{world.outside}"]\nread_write = ["{world.outside}"]\n')
    res = world.sh(f"cat {world.outside}/marker.txt 2>/dev/null; true")
    assert "OUTSIDE" not in res.stdout and "not trusted" in res.stderr


@POLICY_LAYER
def test_untrusted_project_narrowing_applies(world: World) -> None:
    world.write(world.project / ".rcc.toml", '[filesystem]\nhide = ["~/.local/bin"]\nprotect = ["docs"]\n')
    (world.project / "docs").mkdir()
    world.own(world.project / "docs")
    res = world.sh('ls "$HOME/.local/bin" 2>/dev/null; echo x > docs/new 2>/dev/null && echo WROTE; true')
    assert "hello-tool" not in res.stdout and "WROTE" not in res.stdout, res.stdout
    assert "widens" not in res.stderr


@POLICY_LAYER
def test_sandbox_cannot_change_or_trust_the_project_config(world: World) -> None:
    """The agent rewrites .rcc.toml to widen access and tries to trust it: the file is read-only inside and the
    trust store is invisible."""
    cfg = world.write(world.project / ".rcc.toml", "[filesystem]\nhide = []\n")
    world.rcc("trust")
    store = world.home / ".local/state/rcc/trust.json"
    before = store.read_text()
    res = world.sh(
        f"echo '[filesystem]' > .rcc.toml; echo 'read_write = [\"{world.home}\"]' >> .rcc.toml; "
        f'ls "$HOME/.local/state/rcc" 2>&1; mkdir -p "$HOME/.local/state/rcc" && echo "{{}}" > '
        f'"$HOME/.local/state/rcc/trust.json"; true'
    )
    assert cfg.read_text() == "[filesystem]\nhide = []\n", res.stderr
    assert store.read_text() == before


@POLICY_LAYER
def test_policy_show_names_sources(world: World) -> None:
    world.write(world.home / ".config/rcc/config.toml", '[network]\nallow = ["example.com"]\n')
    res = world.rcc("policy", "show", "--json")
    assert res.returncode == 0, res.stderr
    import json

    doc = json.loads(res.stdout)
    assert doc["policy"]["network"]["allow"] == ["example.com"]
    assert doc["sources"]["network.allow"][0]["source"].endswith("config.toml:2")


def test_dry_run_runs_nothing(world: World) -> None:
    res = world.rcc("run", "--no-network", "--dry-run", "--", "touch", "created")
    assert res.returncode == 0, res.stderr
    assert not (world.project / "created").exists()
    assert (
        '"argv"' in res.stdout and ("bwrap" if world.engine == "bwrap" else f'"name": "{world.engine}"') in res.stdout
    )
    assert sorted(os.listdir(world.project)) == [".git", "README.md"]  # no placeholders either
