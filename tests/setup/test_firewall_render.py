"""Pure tests: the firewall's rendering is pinned by golden files; its spec and its apply-guard refuse bad input.

Regenerate the golden files after an intended change with RCC_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import re
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcc.errors import ConfigError, RccError
from rcc.firewall import apply, nft, pf
from rcc.firewall.spec import FirewallSpec

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "golden")
CUSTOM = FirewallSpec(interface_prefix="rccx", proxy_ports=(8080, 3128))


def golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if os.environ.get("RCC_UPDATE_GOLDEN") == "1":
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        assert text == f.read(), f"{name} changed; RCC_UPDATE_GOLDEN=1 regenerates it"


def test_nft_default_golden() -> None:
    golden("firewall-default.nft", nft.render_nft(FirewallSpec()))


def test_nft_custom_golden() -> None:
    golden("firewall-custom.nft", nft.render_nft(CUSTOM))


def test_pf_default_golden() -> None:
    golden("firewall-default.pf", pf.render_pf(FirewallSpec()))


def test_pf_custom_golden() -> None:
    golden("firewall-custom.pf", pf.render_pf(CUSTOM))


def test_systemd_unit_golden() -> None:
    golden("rcc-firewall.service", apply.render_unit("/usr/sbin/nft", "/etc/rcc/firewall.nft"))


def test_rendering_is_deterministic_and_port_order_free() -> None:
    a = FirewallSpec(proxy_ports=(8080, 3128))
    b = FirewallSpec(proxy_ports=(3128, 8080))
    assert a == b
    assert nft.render_nft(a) == nft.render_nft(b)


def test_spec_round_trips_through_installed_header() -> None:
    text = nft.render_nft(CUSTOM)
    assert nft.spec_from_rendered(text, "x") == CUSTOM
    assert nft.spec_from_rendered("table inet rcc {}\n", "x") is None


def test_digest_changes_with_rules() -> None:
    assert nft.digest(FirewallSpec()) != nft.digest(FirewallSpec(proxy_ports=(3129,)))
    assert nft.rule_counts(FirewallSpec()) == {"input": 1, "sandbox_to_host": 4, "forward": 3}


# Values end up inside rule text: anything that could close a string or start a statement is refused.
@pytest.mark.parametrize("prefix", ['rcc" accept #', "rcc*", "", "RCC", "1rcc", "rcc rcc", "averylongprefix", "rcc\n"])
def test_rule_injection_through_interface_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="interface_prefix"):
        FirewallSpec(interface_prefix=prefix)


@pytest.mark.parametrize("ports", [(), (0,), (65536,), (-1,), (True,), (3128, 3128), ("3128",)])
def test_bad_proxy_ports_are_refused(ports: tuple[object, ...]) -> None:
    with pytest.raises(ConfigError, match="proxy_ports"):
        FirewallSpec(proxy_ports=ports)  # type: ignore[arg-type]


def test_control_valid_spec_values() -> None:
    assert FirewallSpec(interface_prefix="rcc0", proxy_ports=(1, 65535)).interface_glob == "rcc0*"


@pytest.mark.parametrize(
    "doc",
    [
        '{"version":2,"interface_prefix":"rcc","proxy_ports":[3128]}',
        '{"version":1}',
        "[]",
        "nope",
        '{"version":1,"interface_prefix":"rcc","proxy_ports":[3128],"extra":1}',
    ],
)
def test_tampered_installed_header_is_an_error(doc: str) -> None:
    with pytest.raises(ConfigError):
        FirewallSpec.from_json(doc)


@given(st.text(max_size=12), st.lists(st.integers(-5, 70000), max_size=4))
def test_any_accepted_spec_renders_text_the_guard_accepts(prefix: str, ports: list[int]) -> None:
    try:
        spec = FirewallSpec(interface_prefix=prefix, proxy_ports=tuple(ports))
    except ConfigError:
        return
    apply.check_ruleset(nft.render_nft(spec))


@pytest.mark.parametrize(
    "text",
    [
        "flush ruleset\n",
        "table inet filter {\n}\n",
        "table inet rcc\ndelete table inet rcc\ntable ip nat {\n}\n",
        'table inet rcc {\n\tinclude "/etc/x"\n}\n',
        "table inet rcc {\n\tchain c {\n\t}\n}\n}\ntable inet other {\n}\n",
        "table inet rcc {\n",
        "delete table inet filter\n",
    ],
)
def test_ruleset_touching_anything_but_rccs_table_is_refused(text: str) -> None:
    with pytest.raises(RccError, match="refusing"):
        apply.check_ruleset(text)


def test_control_rendered_ruleset_and_delete_pass_the_guard() -> None:
    apply.check_ruleset(nft.render_nft(FirewallSpec()))
    apply.check_ruleset(nft.render_delete())


def test_default_config_is_valid_toml_with_every_key_commented() -> None:
    from rcc.commands.setup import default_config_text

    text = default_config_text()
    assert tomllib.loads(text) == {"filesystem": {}, "environment": {}, "network": {}, "container": {}}
    keys = (
        "backend",
        "toolchains",
        "default_toolchains",
        "read_only",
        "read_write",
        "hide",
        "protect",
        "passthrough",
        "set",
        "mode",
        "allow",
        "deny",
        "resolve",
        "image",
    )
    for key in keys:
        assert f"\n# {key} = " in text, key
    assert "~/.ssh," in text and ".git/hooks," in text  # the built-ins are explained


def uncommented_default_config() -> str:
    from rcc.commands.setup import default_config_text

    key_line = re.compile(r"^# ([a-z_]+ = .*)$")
    return "\n".join(key_line.sub(r"\1", line) for line in default_config_text().splitlines()) + "\n"


def test_default_config_uncommented_is_the_default_policy() -> None:
    """Uncommenting every key changes nothing: the lead's loader sees the built-in policy (keeps the file and
    rcc.config in sync)."""
    try:
        from rcc import config, policy
    except ImportError:
        pytest.skip("rcc.config is not in this build")
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        env = {"HOME": home}
        os.makedirs(os.path.join(home, ".config/rcc"))
        with open(os.path.join(home, ".config/rcc/config.toml"), "w") as f:
            f.write(uncommented_default_config())
        project = os.path.join(home, "p")
        os.mkdir(project)
        eff = config.load(project, env=env, home=home)
        assert len(eff.provenance) >= 12  # every key was really read
        plain = config.load(project, env={"HOME": os.path.join(home, "none")}, home=home)
        assert eff.policy == plain.policy
        assert eff.policy.network == policy.NetworkPolicy()
