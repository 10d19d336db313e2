"""Published ports and host services as config: parsing `[HOSTADDR:]HOSTPORT[:PORT]`, validation, trust, plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcc.config import Contribution, Layer, gate_untrusted, load, validate
from rcc.errors import ConfigError
from rcc.forward import parse_publish


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("5173", ("127.0.0.1", 5173, 5173)),
        ("8080:5173", ("127.0.0.1", 8080, 5173)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080, 8080)),
        ("0.0.0.0:8080:80", ("0.0.0.0", 8080, 80)),
        ("[::1]:8080:80", ("::1", 8080, 80)),
        ("[::1]:8080", ("::1", 8080, 8080)),
        ("[::]:8080:80", ("::", 8080, 80)),
    ],
)
def test_publish_spellings(spec: str, want: tuple[str, int, int]) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize(
    "spec",
    ["", "0", "70000", "a:b", "::1:8080:80", "[::1]8080", "[127.0.0.1]:80", "localhost:80:80", "1:2:3:4", "80:", "-1"],
)
def test_publish_rejects_what_is_not_a_spec(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_publish(spec)
    with pytest.raises(ConfigError):
        validate("network.publish", [spec], "x.toml:1")


@pytest.mark.parametrize("value", [[0], [70000], ["5432"], [True], 5432, [5432.0]])
def test_host_services_must_be_port_numbers(value: object) -> None:
    with pytest.raises(ConfigError):
        validate("network.host_services", value, "x.toml:1")


@pytest.mark.parametrize(("key", "value"), [("network.publish", ("5173",)), ("network.host_services", (5432,))])
def test_untrusted_project_file_cannot_open_doors(key: str, value: object) -> None:
    """A hostile repository's .rcc.toml must not expose the sandbox to the host (or the network), nor host
    services to the sandbox: both widen access and need `rcc trust`."""
    layer, notices = gate_untrusted(Layer("project", (Contribution(key, value, ".rcc.toml:1"),)), ".rcc.toml")
    assert layer.contributions == ()
    assert any(key in n and "widens" in n for n in notices)


def test_flags_and_files_accumulate(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "state")}
    (tmp_path / "cfg" / "rcc").mkdir(parents=True)
    (tmp_path / "cfg" / "rcc" / "config.toml").write_text('[network]\npublish = ["5173"]\nhost_services = [5432]\n')
    project = tmp_path / "p"
    project.mkdir()
    flags = [
        Contribution("network.publish", ("[::1]:9000:80",), "--publish"),
        Contribution("network.host_services", (6379, 5432), "--host-service"),
    ]
    eff = load(str(project), flags, env=env, home=str(tmp_path))
    assert eff.policy.network.publish == ("5173", "[::1]:9000:80")
    assert eff.policy.network.host_services == (5432, 6379)
