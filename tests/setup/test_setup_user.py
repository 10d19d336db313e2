"""`rcc setup` (the unprivileged part) and the command-line rules of `rcc setup --firewall` that need no root."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fwhosts import as_test_user

from rcc.commands.setup import SetupContext, SetupOptions, default_config_text, missing_setup, parse_args, run
from rcc.errors import ExitCode, RccError, UsageError


def env_for(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "")}


def test_user_setup_creates_private_dirs_and_commented_config(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    out = run(SetupOptions(), SetupContext(env=env, euid=1000))
    cfg = tmp_path / ".config/rcc/config.toml"
    assert cfg.read_text() == default_config_text()
    for d in (tmp_path / ".config/rcc", tmp_path / ".local/state/rcc", tmp_path / ".local/state/rcc/agents"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert any(line.startswith("created") and line.endswith("config.toml") for line in out)
    assert missing_setup(env) is None


def test_user_setup_is_idempotent_and_never_overwrites_config(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    run(SetupOptions(), SetupContext(env=env, euid=1000))
    cfg = tmp_path / ".config/rcc/config.toml"
    cfg.write_text('[network]\nmode = "none"\n')
    out = run(SetupOptions(), SetupContext(env=env, euid=1000))
    assert cfg.read_text() == '[network]\nmode = "none"\n'
    assert all(line.startswith(("ok", "next", "optional")) for line in out), out


def test_user_setup_dry_run_changes_nothing(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    out = run(SetupOptions(dry_run=True), SetupContext(env=env, euid=1000))
    assert list(tmp_path.iterdir()) == []
    assert out[0].startswith("would create")
    assert missing_setup(env) is not None and "rcc setup" in str(missing_setup(env))


def test_user_setup_follows_xdg_dirs(tmp_path: Path) -> None:
    env = {**env_for(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_STATE_HOME": str(tmp_path / "s")}
    run(SetupOptions(), SetupContext(env=env, euid=1000))
    assert (tmp_path / "c/rcc/config.toml").is_file()
    assert (tmp_path / "s/rcc/agents").is_dir()


def test_root_owned_files_in_users_home_under_sudo_are_refused(tmp_path: Path) -> None:
    env = {**env_for(tmp_path), "SUDO_USER": "alice"}
    with pytest.raises(RccError) as e:
        run(SetupOptions(), SetupContext(env=env, euid=0))
    assert e.value.code == ExitCode.USAGE
    assert list(tmp_path.iterdir()) == []


def test_config_path_that_is_a_symlink_elsewhere_is_not_followed(tmp_path: Path) -> None:
    """A planted symlink at ~/.config/rcc/config.toml must not make setup write through it."""
    (tmp_path / ".config/rcc").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    (tmp_path / ".config/rcc/config.toml").symlink_to(target)
    run(SetupOptions(), SetupContext(env=env_for(tmp_path), euid=1000))
    assert not target.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--persist"],
        ["--uninstall"],
        ["--proxy-port", "8080"],
        ["--firewall", "--proxy-port", "x"],
        ["--firewall", "--root", "relative"],
        ["--firewall", "--uninstall", "--persist"],
        ["--bogus"],
    ],
)
def test_bad_setup_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_control_setup_arguments() -> None:
    o = parse_args(["--firewall", "--persist", "--proxy-port", "8080", "--proxy-port=3128", "--dry-run"])
    assert o == SetupOptions(firewall=True, persist=True, dry_run=True, proxy_ports=(8080, 3128))


def test_firewall_without_root_says_exact_sudo_command_and_changes_nothing(tmp_path: Path) -> None:
    ctx = SetupContext(env=env_for(tmp_path), euid=1000, nft_prefix=("false",))
    with pytest.raises(RccError) as e:
        run(SetupOptions(firewall=True, root=str(tmp_path)), ctx)
    assert e.value.code == ExitCode.SETUP
    assert "sudo rcc setup --firewall" in e.value.hint
    assert list(tmp_path.iterdir()) == []


def test_firewall_dry_run_prints_ruleset_and_unit(tmp_path: Path) -> None:
    from rcc.firewall import nft
    from rcc.firewall.spec import FirewallSpec

    out = "\n".join(
        run(
            SetupOptions(firewall=True, dry_run=True, persist=True, proxy_ports=(8080,)),
            SetupContext(env=env_for(tmp_path), euid=1000),
        )
    )
    assert nft.render_nft(FirewallSpec(proxy_ports=(8080,))) in out
    assert "ExecStart=" in out


def test_pf_dry_run_on_macos_renders_anchor(tmp_path: Path) -> None:
    from rcc.firewall import pf
    from rcc.firewall.spec import FirewallSpec

    out = run(
        SetupOptions(firewall=True, dry_run=True), SetupContext(env=env_for(tmp_path), euid=501, platform="darwin")
    )
    assert pf.render_pf(FirewallSpec()) in out
    assert "# then: /sbin/pfctl -a com.apple/rcc -f /etc/rcc/pf.anchor" in out


def test_setup_as_new_normal_user_end_to_end() -> None:
    """What a new user sees: `rcc setup` twice, then `rcc doctor`, as the unprivileged test user."""
    import pwd
    import shutil
    import tempfile

    pre = as_test_user()
    pw = pwd.getpwnam("rccuser")
    home = tempfile.mkdtemp(prefix="rcc-home-", dir="/tmp")  # rccuser must reach it, whatever TMPDIR says
    try:
        os.chown(home, pw.pw_uid, pw.pw_gid)
        env_cmd = [
            sys.executable,
            "-c",
            "import os, sys, runpy; os.environ['HOME'] = sys.argv[1]; "
            "sys.argv = ['rcc', *sys.argv[2:]]; runpy.run_module('rcc', run_name='__main__')",
            home,
        ]

        def rcc(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*pre, *env_cmd, *args], capture_output=True, text=True, check=False, timeout=120, cwd="/tmp"
            )

        first = rcc("setup")
        assert first.returncode == 0, first.stderr
        assert "created" in first.stdout
        cfg = os.path.join(home, ".config/rcc/config.toml")
        assert os.stat(cfg).st_uid == pw.pw_uid
        second = rcc("setup")
        assert second.returncode == 0 and "created" not in second.stdout
        doc = rcc("doctor")
        assert "ok    config" in doc.stdout, doc.stdout + doc.stderr
    finally:
        shutil.rmtree(home)


# ------------------------------------------------------------------------------------------------ sudo hints


def _exe(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_sudo_hint_names_an_rcc_sudo_would_not_find_by_its_path(tmp_path: Path) -> None:
    """pipx/uv put rcc in ~/.local/bin, a venv in its bin: sudo's secure_path has neither, so `sudo rcc` would
    fail with "command not found"; the hint names the absolute path (quoted for the shell)."""
    from rcc.paths import self_command

    exe = _exe(tmp_path / "my venv" / "bin" / "rcc")
    assert self_command({}, exe) == f"'{exe}'"


def test_sudo_hint_says_rcc_when_sudo_finds_this_same_rcc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rcc.paths

    exe = _exe(tmp_path / "bin" / "rcc")
    monkeypatch.setattr(rcc.paths, "SUDO_PATH", str(tmp_path / "bin"))
    assert rcc.paths.self_command({}, exe) == "rcc"
    other = _exe(tmp_path / "other" / "rcc")  # control: a different rcc than the one sudo would find
    assert rcc.paths.self_command({}, other) == other


def test_sudo_hint_prefers_the_nix_wrapper_and_falls_back_to_rcc(tmp_path: Path) -> None:
    from rcc.paths import self_command

    wrapper = _exe(tmp_path / "store" / "bin" / "rcc")
    assert self_command({"RCC_EXECUTABLE": wrapper}, "/usr/bin/python3") == wrapper
    assert self_command({}, "/usr/bin/python3") == "rcc"  # `python3 -m rcc`: nothing better to name
    assert self_command({}, str(tmp_path / "missing" / "rcc")) == "rcc"
