"""`rcc allow/deny --save`: the edit of the user's config.toml keeps comments and is verified, or refused."""

from __future__ import annotations

import tomllib

import pytest

from rcc.commands.setup import default_config_text
from rcc.errors import RccError
from rcc.live.config_edit import add_rule


def net(text: str) -> dict[str, object]:
    return dict(tomllib.loads(text).get("network", {}))


def test_setup_default_config_gets_an_allow_line_under_network() -> None:
    text = default_config_text()
    new = add_rule(text, "allow", "docs.example.org")
    assert net(new)["allow"] == ["docs.example.org"]
    assert "# Hosts the sandbox may reach" in new and new.count("[network]") == 1


def test_existing_list_keeps_its_entries() -> None:
    text = '[network]\nallow = ["a.example", # a comment\n  "b.example",\n]\n[container]\nimage = ""\n'
    new = add_rule(text, "allow", "c.example")
    assert sorted(net(new)["allow"]) == ["a.example", "b.example", "c.example"]  # type: ignore[arg-type]
    assert "# a comment" in new


def test_empty_list_and_deny_key() -> None:
    assert net(add_rule("[network]\ndeny = []\n", "deny", "x.example"))["deny"] == ["x.example"]


def test_no_network_table_appends_one() -> None:
    new = add_rule('backend = "bwrap"\n', "allow", "*.example.org")
    assert net(new)["allow"] == ["*.example.org"] and tomllib.loads(new)["backend"] == "bwrap"


def test_already_there_is_unchanged() -> None:
    text = '[network]\nallow = ["a.example"]\n'
    assert add_rule(text, "allow", "a.example") == text


def test_rule_with_quotes_cannot_inject_toml() -> None:
    """Attack: a rule crafted to close the string and add keys (rules are validated first; the edit still
    quotes it, and the verification would refuse anything that changed more than the one list)."""
    new = add_rule("[network]\nallow = []\n", "allow", 'a.example"]\nmode = "none')
    assert net(new)["allow"] == ['a.example"]\nmode = "none'] and "mode" not in net(new)


def test_shapes_it_cannot_edit_safely_are_refused() -> None:
    with pytest.raises(RccError, match="could not add"):
        add_rule('network = { allow = ["a.example"] }\n', "allow", "b.example")


def test_broken_config_is_refused() -> None:
    with pytest.raises(RccError, match="does not parse"):
        add_rule("[network\n", "allow", "a.example")
