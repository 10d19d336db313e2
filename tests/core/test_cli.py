"""The option convention of `rcc run`: rcc's options first; the first non-option (or what follows `--`) starts
the command, so the command's own options are never rcc's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcc.cli import main
from rcc.errors import ExitCode, UsageError
from rcc.runner import parse_run_args


def test_unknown_option_before_the_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as e:
        parse_run_args(["-x"])
    assert e.value.code == ExitCode.USAGE == 64
    assert "--" in e.value.hint


def test_options_after_the_command_are_the_commands() -> None:
    opts, cmd = parse_run_args(["ls", "-x", "--no-network", "--allow", "evil.example"])
    assert cmd == ["ls", "-x", "--no-network", "--allow", "evil.example"]
    assert opts.flags.contributions == []


def test_double_dash_ends_rccs_options() -> None:
    opts, cmd = parse_run_args(["--no-network", "--", "--version"])
    assert cmd == ["--version"]
    assert [c.key for c in opts.flags.contributions] == ["network.mode"]
    _, cmd = parse_run_args(["--", "--", "x"])
    assert cmd == ["--", "x"]


def test_value_options_take_the_next_word_or_inline_value() -> None:
    opts, cmd = parse_run_args(["--allow", "a.example", "--allow=b.example", "--env", "X=1", "--env=Y", "cmd"])
    assert cmd == ["cmd"]
    got = [(c.key, c.value) for c in opts.flags.contributions]
    assert got == [
        ("network.allow", ("a.example",)),
        ("network.allow", ("b.example",)),
        ("environment.set", (("X", "1"),)),
        ("environment.passthrough", ("Y",)),
    ]


def test_value_option_that_swallows_the_command_is_explicit() -> None:
    """`rcc run --project ls` takes `ls` as the project: there is then no command (a usage error)."""
    opts, cmd = parse_run_args(["--project", "ls"])
    assert opts.project == "ls" and cmd == []


def test_missing_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_run_args(["--allow"])


def test_dash_alone_is_a_command() -> None:
    _, cmd = parse_run_args(["-"])
    assert cmd == ["-"]


@pytest.mark.parametrize("bad", [["--ro", "relative"], ["--rw", "~"], ["--env", "1BAD"], ["--network", "open"]])
def test_invalid_flag_values_are_usage_errors(bad: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_run_args([*bad, "true"])


@given(
    st.lists(st.text(min_size=1).filter(lambda s: not s.startswith("-")), min_size=1, max_size=5),
    st.lists(st.text(), max_size=5),
)
def test_everything_after_the_first_word_is_passed_through(head: list[str], tail: list[str]) -> None:
    _, cmd = parse_run_args([head[0], *tail])
    assert cmd == [head[0], *tail]


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 64
    assert main(["run", "-x"]) == 64
    assert main(["nope"]) == 64
    assert main([]) == 64
    assert main(["version"]) == 0
    err = capsys.readouterr().err
    assert "rcc: error:" in err and "rcc: hint:" in err
