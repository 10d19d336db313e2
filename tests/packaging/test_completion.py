"""`rcc completion bash|zsh|fish|man`, tried in the real shells: each script is loaded the way the packages
install it and asked to complete what a user types. The tables the scripts come from are the parsers' own
(rcc.commands.COMMANDS, rcc.keys.RUN_OPTIONS); the last tests pin that every option a table lists is one its
command's --help documents, so the completions cannot offer what rcc does not accept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rcc.commands import AGENTS, COMMANDS
from rcc.commands.completion import render
from rcc.keys import RUN_OPTIONS
from rcctest import require


def _rcc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rcc", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("completions")
    out = {}
    for shell, name in (("bash", "rcc.bash"), ("zsh", "_rcc"), ("fish", "rcc.fish"), ("man", "rcc.1")):
        res = _rcc("completion", shell)
        assert res.returncode == 0, res.stderr
        assert res.stdout == render(shell) or shell == "man"  # the command prints what the packages install
        (d / name).write_text(res.stdout)
        out[shell] = d / name
    return out


def test_completion_refuses_an_unknown_shell_with_the_usage_exit_code() -> None:
    res = _rcc("completion", "tcsh")
    assert res.returncode == 64 and "bash|zsh|fish" in res.stderr


# ---------------------------------------------------------------------------------------------------- bash


def _bash_complete(script: Path, words: list[str], cwd: Path) -> list[str]:
    require(shutil.which("bash") is not None, "bash is not installed")
    prog = (
        f"source {script}\n"
        "complete -p rcc >/dev/null || exit 3\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()\n'
        "_rcc\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    res = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", prog, "bash", *words],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )
    assert res.returncode == 0, res.stderr
    return [x for x in res.stdout.splitlines() if x]


def test_bash_completes_commands_options_values_and_paths(scripts: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "projdir").mkdir()
    (tmp_path / "projfile").write_text("")
    b = scripts["bash"]
    assert set(_bash_complete(b, ["rcc", ""], tmp_path)) >= {c.name for c in COMMANDS}
    assert _bash_complete(b, ["rcc", "ru"], tmp_path) == ["run"]
    assert _bash_complete(b, ["rcc", "run", "--back"], tmp_path) == ["--backend"]
    assert _bash_complete(b, ["rcc", "run", "--backend", ""], tmp_path) == ["bwrap", "seatbelt", "podman", "docker"]
    assert _bash_complete(b, ["rcc", "run", "--allow", "@py"], tmp_path) == ["@pypi"]
    assert _bash_complete(b, ["rcc", "run", "--project", "proj"], tmp_path) == ["projdir"]  # directories only
    assert sorted(_bash_complete(b, ["rcc", "run", "--ro", "proj"], tmp_path)) == ["projdir", "projfile"]
    assert _bash_complete(b, ["rcc", "policy", ""], tmp_path) == ["show", "suggest"]
    assert _bash_complete(b, ["rcc", "completion", ""], tmp_path) == ["bash", "zsh", "fish", "man"]
    assert _bash_complete(b, ["rcc", "setup", "--engine", ""], tmp_path) == ["podman", "docker"]
    assert "--import-settings" in _bash_complete(b, ["rcc", "claude", "--imp"], tmp_path)


def test_bash_hands_the_command_after_rcc_options_to_command_completion(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    b = scripts["bash"]
    for words in (["rcc", "run", "ech"], ["rcc", "run", "--rw", "/tmp", "ech"], ["rcc", "run", "--", "ech"]):
        assert "echo" in _bash_complete(b, words, tmp_path), words
    # control: an option's value is not the command (`--allow ech` completes no command names)
    assert "echo" not in _bash_complete(b, ["rcc", "run", "--allow", "ech"], tmp_path)
    # past the command's name rcc completes nothing of its own (bash's default: file names)
    assert _bash_complete(b, ["rcc", "run", "echo", "--back"], tmp_path) == []


# ---------------------------------------------------------------------------------------------------- fish


def _fish_complete(script: Path, line: str) -> list[str]:
    require(shutil.which("fish") is not None, "fish is not installed (apt-get install fish)")
    res = subprocess.run(
        ["fish", "--no-config", "-c", f"source {script}; complete -C{line!r}"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert res.returncode == 0, res.stderr
    return [x.split("\t")[0] for x in res.stdout.splitlines()]


def test_fish_completes_commands_options_and_values(scripts: dict[str, Path]) -> None:
    f = scripts["fish"]
    assert set(_fish_complete(f, "rcc ")) >= {c.name for c in COMMANDS}
    assert _fish_complete(f, "rcc run --back") == ["--backend"]
    assert set(_fish_complete(f, "rcc run --backend ")) == {"bwrap", "seatbelt", "podman", "docker"}
    assert _fish_complete(f, "rcc run --allow @py") == ["@pypi"]
    assert _fish_complete(f, "rcc policy ") == ["show", "suggest"]
    assert "--import-settings" in _fish_complete(f, "rcc claude --imp")
    assert "echo" in _fish_complete(f, "rcc run ech")
    # control: options of one command are not offered for another
    assert "--backend" not in _fish_complete(f, "rcc doctor --")


# ---------------------------------------------------------------------------------------------------- zsh


def _zsh_complete(script: Path, line: str, tmp_path: Path) -> str:
    """Type `line` and Tab in a real interactive zsh with compinit; return what the terminal showed."""
    require(shutil.which("zsh") is not None, "zsh is not installed (apt-get install zsh)")
    import pexpect

    fdir = tmp_path / "fpath"
    fdir.mkdir(exist_ok=True)
    shutil.copy(script, fdir / "_rcc")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb", "ZDOTDIR": str(tmp_path)}
    child = pexpect.spawn("zsh", ["-f", "-i"], env=env, encoding="utf-8", timeout=20, dimensions=(40, 200))
    try:
        child.sendline(f"fpath=({fdir} $fpath); autoload -U compinit; compinit -u; PS1='READY> '")
        child.expect("READY> ")
        child.send(line + "\t")
        child.expect(pexpect.TIMEOUT, timeout=2)
        return str(child.before)
    finally:
        child.close(force=True)


def test_zsh_completes_options_and_values(scripts: dict[str, Path], tmp_path: Path) -> None:
    z = scripts["zsh"]
    assert "--backend" in _zsh_complete(z, "rcc run --back", tmp_path)
    shown = _zsh_complete(z, "rcc run --backend ", tmp_path)
    assert all(b in shown for b in ("bwrap", "seatbelt", "podman", "docker")), shown
    assert "show" in _zsh_complete(z, "rcc policy sh", tmp_path)
    # control: a command's own options only
    assert "--backend" not in _zsh_complete(z, "rcc doctor --", tmp_path)


# ---------------------------------------------------------------------------------------------------- man


def test_man_page_renders_every_command_and_run_option(scripts: dict[str, Path]) -> None:
    require(shutil.which("man") is not None, "man is not installed (apt-get install man-db)")
    res = subprocess.run(
        ["man", "--warnings", "-l", str(scripts["man"])],
        capture_output=True,
        text=True,
        check=False,
        env={"MANWIDTH": "120", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr
    for c in COMMANDS:
        assert f"rcc {c.name}" in res.stdout or c.name in AGENTS, c.name
    for o in RUN_OPTIONS:
        assert o.flag in res.stdout, o.flag


# ------------------------------------------------------------------------------------- tables vs the parsers


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.options and c.name not in AGENTS[1:]], ids=lambda c: c.name)
def test_every_option_in_the_table_is_one_the_command_documents(cmd: object) -> None:
    from rcc.commands import Command

    assert isinstance(cmd, Command)
    if cmd.name in AGENTS:
        from rcc.agents.cli import AGENT_HELP
        from rcc.runner import RUN_HELP

        text = AGENT_HELP + RUN_HELP
    elif cmd.name == "shell":
        from rcc.runner import RUN_HELP

        text = RUN_HELP + "--agent"  # shell's own option, parsed by rcc.agents.cli._pop_agent
    else:
        res = _rcc(cmd.name, *(["show"] if cmd.name == "policy" else []), "--help")
        text = res.stdout + res.stderr
    for o in cmd.options:
        assert o.flag in text or o.flag in ("-h", "--help"), (cmd.name, o.flag)


def test_environment_does_not_leak_into_the_generated_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setattr(os, "getcwd", lambda: "/elsewhere")
    assert render("bash") == render("bash") and "/somewhere" not in render("bash") + render("zsh") + render("fish")
