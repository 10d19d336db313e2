"""Policy layering, provenance, validation errors (file:line:key) and trust gating, all without a sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcc import trust
from rcc.commands import trust as trust_cmd
from rcc.config import Contribution, Flags, gate_untrusted, load, parse_file, validate
from rcc.errors import ConfigError, ExitCode, UsageError


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".config/rcc").mkdir(parents=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local/state"),
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    return p


def user_file(env: dict[str, str], text: str) -> Path:
    f = Path(env["XDG_CONFIG_HOME"]) / "rcc/config.toml"
    f.write_text(text)
    return f


def test_layers_accumulate_lists_and_record_provenance(env: dict[str, str], project: Path) -> None:
    uf = user_file(env, '[network]\nallow = ["a.example"]\n\n[environment]\npassthrough = ["FOO"]\n')
    pf = project / ".rcc.toml"
    pf.write_text('[network]\ndeny = ["b.example"]\nallow = ["c.example"]\n')
    flags = Flags()
    flags.add("network.allow", ["d.example"], "--allow")
    eff = load(str(project), flags.contributions, env=env, home=env["HOME"])
    assert eff.policy.network.allow == ("a.example", "d.example")  # project allow dropped: untrusted
    assert eff.policy.network.deny == ("b.example",)  # narrowing always applies
    assert "FOO" in eff.policy.environment.passthrough
    sources = {(c.key, c.source) for c in eff.provenance}
    assert ("network.allow", f"{uf}:2") in sources
    assert ("environment.passthrough", f"{uf}:5") in sources
    assert ("network.deny", f"{pf}:2") in sources
    assert ("network.allow", "--allow") in sources
    assert any("network.allow" in n and "widens" in n for n in eff.notices)
    assert any("rcc trust" in n for n in eff.notices)


def test_later_layer_wins_for_scalars(env: dict[str, str], project: Path) -> None:
    user_file(env, '[network]\nmode = "none"\n')
    flags = Flags()
    flags.add("network.mode", "allowlist", "--network")
    assert load(str(project), (), env=env, home=env["HOME"]).policy.network.mode == "none"
    assert load(str(project), flags.contributions, env=env, home=env["HOME"]).policy.network.mode == "allowlist"


def test_trusted_project_file_applies_and_a_change_needs_trusting_again(
    env: dict[str, str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pf = project / ".rcc.toml"
    pf.write_text('[network]\nallow = ["c.example"]\n')
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert trust_cmd.command(["--project", str(project)]) == 0
    eff = load(str(project), (), env=env, home=env["HOME"])
    assert eff.project_trusted and eff.policy.network.allow == ("c.example",) and eff.notices == ()
    pf.write_text('[network]\nallow = ["c.example", "evil.example"]\n')
    eff = load(str(project), (), env=env, home=env["HOME"])
    assert not eff.project_trusted and eff.policy.network.allow == ()
    assert trust_cmd.command(["--project", str(project), "--revoke"]) == 0
    pf.write_text('[network]\nallow = ["c.example"]\n')
    assert not load(str(project), (), env=env, home=env["HOME"]).project_trusted


def test_trust_is_per_project_path(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for p in (a, b):
        p.mkdir()
        (p / ".rcc.toml").write_text('[network]\nallow = ["x.example"]\n')
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    trust_cmd.command(["--project", str(a)])
    assert trust.is_trusted(str(a), (a / ".rcc.toml").read_bytes(), env)
    assert not trust.is_trusted(str(b), (b / ".rcc.toml").read_bytes(), env)


def test_trust_refuses_an_invalid_file(env: dict[str, str], project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".rcc.toml").write_text("[filesystem]\nbogus = 1\n")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError):
        trust_cmd.command(["--project", str(project)])
    assert not (Path(env["XDG_STATE_HOME"]) / "rcc/trust.json").exists()


def test_symlinked_project_file_is_an_error(env: dict[str, str], project: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.toml").write_text("")
    os.symlink(tmp_path / "elsewhere.toml", project / ".rcc.toml")
    with pytest.raises(ConfigError) as e:
        load(str(project), (), env=env, home=env["HOME"])
    assert e.value.code == ExitCode.CONFIG


@pytest.mark.parametrize(
    ("key", "value", "widens"),
    [
        ("filesystem.read_only", ("/opt/x",), True),
        ("filesystem.read_write", ("/opt/x",), True),
        ("filesystem.toolchains", ("/opt/x",), True),
        ("environment.passthrough", ("FOO",), True),
        ("environment.set", (("A", "b"),), True),
        ("network.allow", ("x.example",), True),
        ("network.resolve", (("x.example", "10.0.0.1"),), True),
        ("network.mode", "allowlist", True),
        ("backend", "podman", True),
        ("network.mode", "none", False),
        ("network.deny", ("x.example",), False),
        ("filesystem.hide", ("/opt/x",), False),
        ("filesystem.protect", ("docs",), False),
        ("filesystem.default_toolchains", False, False),
    ],
)
def test_gate_untrusted_drops_exactly_what_widens(key: str, value: object, widens: bool) -> None:
    from rcc.config import Layer

    layer, notices = gate_untrusted(Layer("project", (Contribution(key, value, ".rcc.toml:1"),)), ".rcc.toml")
    assert (layer.contributions == ()) == widens
    assert bool(notices) == widens


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("a = [\n", 1, ""),
        ("[filesystem]\nread_only = [\n", 2, ""),
        ("\n\n[network]\nallow = [1]\n", 4, "network.allow"),
        ("[filesystem]\nunknown = true\n", 2, "filesystem.unknown"),
        ("toplevel = 1\n", 1, "toplevel"),
        ("filesystem = 3\n", 1, "filesystem"),
        ("[environment]\nset = { 'bad name' = 'x' }\n", 2, "environment.set"),
        ("[environment]\npassthrough = ['*']\n", 2, "environment.passthrough"),
        ("[filesystem]\nprotect = ['../x']\n", 2, "filesystem.protect"),
        ("[filesystem]\nread_write = ['~']\n", 2, "filesystem.read_write"),
        ("[network]\nresolve = { 'a.example' = 'not-an-ip' }\n", 2, "network.resolve"),
        ('backend = "chroot"\n', 1, "backend"),
    ],
)
def test_invalid_file_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        parse_file(str(f), "user")
    assert e.value.code == ExitCode.CONFIG == 78
    assert e.value.where == f"{f}:{line}", e.value.message
    assert e.value.key == key and (not key or key in e.value.message)


def test_not_utf8_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b"a = '\xff'\n")
    with pytest.raises(ConfigError):
        parse_file(str(f), "user")


HOME = "/home/u"


@given(st.integers(min_value=0, max_value=2), st.sampled_from(["", "/", "/.", "/./"]))
def test_home_and_its_ancestors_are_over_broad(depth: int, suffix: str) -> None:
    parts = HOME.split("/")[: len(HOME.split("/")) - depth]
    p = "/".join(parts) or "/"
    for candidate in (p + suffix, "~" if depth == 0 else p):
        with pytest.raises(ConfigError, match="over-broad"):
            validate("filesystem.read_only", [candidate], "f:1", home=HOME)


@given(st.lists(st.sampled_from(["a", "b", ".", "..", ""]), min_size=1, max_size=5))
def test_protect_paths_never_leave_the_project(parts: list[str]) -> None:
    p = "/".join(parts)
    try:
        validate("filesystem.protect", [p], "f:1")
    except ConfigError:
        return
    assert ".." not in p.split("/") and not p.startswith("/") and "" not in p.split("/")


def test_flags_report_usage_errors() -> None:
    with pytest.raises(UsageError) as e:
        Flags().add("filesystem.read_only", ["relative/path"], "--ro")
    assert e.value.code == ExitCode.USAGE
