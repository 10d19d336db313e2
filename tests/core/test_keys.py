"""The one key table (rcc.keys) drives parsing, validation, merging, `policy show` and the flags: pin that it
covers the Policy exactly and that every flag lands on a key."""

from __future__ import annotations

from rcc.agents.profiles import PROFILES
from rcc.config import Contribution, Flags, Layer, merge, validate
from rcc.keys import CONFIG_KEYS, KEYS, RUN_OPTIONS
from rcc.net.presets import PRESETS
from rcc.policy import Policy
from rcc.record import fields
from rcc.runner import RUN_HELP, parse_run_args


def _policy_fields() -> set[str]:
    p = Policy()
    out = set()
    for f in fields(Policy):
        v = getattr(p, f.name)
        if hasattr(v, "__dataclass_fields__") or type(v).__name__.endswith("Policy"):
            out |= {f"{f.name}.{g.name}" for g in fields(v)}
        else:
            out.add(f.name)
    return out


def test_every_policy_field_is_set_by_exactly_one_key() -> None:
    targets = [k.target for k in CONFIG_KEYS if k.target]
    assert len(targets) == len(set(targets))
    assert set(targets) == _policy_fields()


def test_every_flag_sets_a_known_key_and_is_in_the_help() -> None:
    for o in RUN_OPTIONS:
        assert not o.key or o.key in KEYS, o
        assert o.flag in RUN_HELP, o.flag


def test_a_flag_value_is_validated_like_a_file_value() -> None:
    import pytest

    from rcc.errors import UsageError

    with pytest.raises(UsageError):
        parse_run_args(["--backend", "chroot", "true"])
    with pytest.raises(UsageError):
        parse_run_args(["--ro", "/", "true"])  # over-broad, as in a file


def test_flags_merge_as_their_keys_say() -> None:
    opts, cmd = parse_run_args(
        [
            "--allow",
            "a.example",
            "--allow",
            "b.example",
            "--resolve",
            "h.test=10.0.0.1",
            "--memory",
            "1G",
            "--env",
            "FOO=1",
            "--env",
            "BAR",
            "--no-network",
            "--",
            "true",
        ]
    )
    assert cmd == ["true"]
    pol = merge([Layer("flags", tuple(opts.flags.contributions))], home="/home/u")
    assert pol.network.allow == ("a.example", "b.example")
    assert pol.network.resolve == (("h.test", "10.0.0.1"),)
    assert pol.network.mode == "none"
    assert pol.limits.memory == validate("limits.memory", "1G", "x")
    assert ("FOO", "1") in pol.environment.set and "BAR" in pol.environment.passthrough


def test_defaults_are_expanded_and_kept_when_no_layer_sets_a_key() -> None:
    pol = merge([], home="/home/u")
    assert pol.filesystem.hide and all(not p.startswith("~") for p in pol.filesystem.hide)
    assert pol.filesystem.protect == Policy().filesystem.protect
    layer = Layer(
        "f", (Contribution("filesystem.hide", ("~/x",), "f"), Contribution("network.resolve", (("a", "1.1.1.1"),), "f"))
    )
    later = Layer("g", (Contribution("network.resolve", (("a", "2.2.2.2"), ("b", "3.3.3.3")), "g"),))
    pol = merge([layer, later], home="/home/u")
    assert pol.filesystem.hide[-1] == "/home/u/x"
    assert pol.network.resolve == (("a", "2.2.2.2"), ("b", "3.3.3.3"))  # tables merge per entry, later wins


def test_flags_add_refuses_unknown_keys() -> None:
    import pytest

    with pytest.raises(KeyError):
        Flags().add("network.nonsense", [], "--x")


def test_claude_profile_and_anthropic_preset_are_one_list() -> None:
    assert PROFILES["claude"].default_hosts == PRESETS["anthropic"]
