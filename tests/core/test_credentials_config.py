"""[credentials.NAME]: parsing, the trust gate (a project file may not add a credential or widen its hosts), the
plan (placeholder inside, never the value; the CA bundle bound read-only; hosts allowed), without a sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rcc.commands import trust as trust_cmd
from rcc.compile import CA_BUNDLE, CA_BUNDLE_VARS, Session, compile_plan
from rcc.config import load, parse_file
from rcc.errors import ConfigError, ExitCode
from rcc.probe import probe

USER = '[credentials.github]\nenv = "GITHUB_TOKEN"\nhosts = ["api.github.com", "GitHub.com."]\n'


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


def user_file(env: dict[str, str], text: str) -> None:
    (Path(env["XDG_CONFIG_HOME"]) / "rcc/config.toml").write_text(text)


def test_credentials_parse_to_name_env_and_normalised_hosts(env: dict[str, str], project: Path) -> None:
    user_file(env, USER)
    eff = load(str(project), (), env=env, home=env["HOME"])
    assert eff.policy.network.credentials == (("github", ("GITHUB_TOKEN", ("api.github.com", "github.com"), ())),)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[credentials.x]\nenv = "A B"\nhosts = ["a.example"]\n', "not a variable name"),
        ('[credentials.x]\nenv = "A"\nhosts = []\n', "non-empty list"),
        ('[credentials.x]\nenv = "A"\nhosts = ["10.0.0.1"]\n', "host names"),
        ('[credentials.x]\nenv = "A"\nhosts = ["*.example.com"]\n', ""),
        ('[credentials.x]\nenv = "A"\n', "must have env"),
        ('[credentials.x]\nenv = "A"\nhosts = ["a.example"]\nextra = 1\n', "must have env"),
        ('[credentials.x]\nenv = "A"\nhosts = ["a.example"]\nrequests = ["b.example GET /x"]\n', "not one of"),
        ('[credentials.x]\nenv = "A"\nhosts = ["a.example"]\nrequests = ["a.example get /x"]\n', "upper-case"),
        ('[credentials.x]\nenv = "A"\nhosts = ["a.example"]\nrequests = ["a.example GET x"]\n', "starts with /"),
        ('[credentials.x]\nenv = "A"\nhosts = ["a.example"]\nrequests = ["a.example GET"]\n', "HOST METHODS PATH"),
        ('[credentials."Bad Name"]\nenv = "A"\nhosts = ["a.example"]\n', "name"),
        ("credentials = 3\n", "must be tables"),
    ],
)
def test_invalid_credentials_are_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        parse_file(str(f), "user")
    assert e.value.code == ExitCode.CONFIG
    assert problem in e.value.message
    if text.startswith("[credentials.x]"):
        assert e.value.where == f"{f}:1"  # the file and the line of the [credentials.NAME] table


def test_project_file_adding_a_credential_without_trust_is_dropped(
    env: dict[str, str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a hostile repository's .rcc.toml declares a credential for its own host (the proxy would then
    terminate TLS to it and swap the user's real token in). Untrusted, it is dropped with a notice."""
    (project / ".rcc.toml").write_text('[credentials.gh]\nenv = "GITHUB_TOKEN"\nhosts = ["evil.example"]\n')
    eff = load(str(project), (), env=env, home=env["HOME"])
    assert eff.policy.network.credentials == ()
    assert any("credentials" in n and "widens access" in n for n in eff.notices)
    # control: once the user trusts that exact content, it applies
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert trust_cmd.command(["--project", str(project)]) == 0
    eff = load(str(project), (), env=env, home=env["HOME"])
    assert eff.policy.network.credentials == (("gh", ("GITHUB_TOKEN", ("evil.example",), ())),)


def test_project_file_widening_a_credentials_hosts_without_trust_is_dropped(env: dict[str, str], project: Path) -> None:
    user_file(env, USER)
    (project / ".rcc.toml").write_text('[credentials.github]\nenv = "GITHUB_TOKEN"\nhosts = ["gist.evil.example"]\n')
    eff = load(str(project), (), env=env, home=env["HOME"])
    assert eff.policy.network.credentials == (("github", ("GITHUB_TOKEN", ("api.github.com", "github.com"), ())),)


def _plan(env: dict[str, str], project: Path, host_env: dict[str, str]):  # type: ignore[no-untyped-def]
    eff = load(str(project), (), env=env, home=env["HOME"])
    facts = probe(str(project), [], env={**env, "PATH": "/usr/bin:/bin", **host_env})
    return compile_plan(eff.policy, facts, Session(argv=("true",)), session_id="s1")


def test_plan_holds_a_placeholder_never_the_value(env: dict[str, str], project: Path) -> None:
    user_file(env, USER)
    real = "ghp_realvalue0123456789"
    plan = _plan(env, project, {"GITHUB_TOKEN": real})
    doc = plan.to_json()
    assert real not in doc
    inside = dict(plan.env)
    assert re.fullmatch(r"rcc-cred-github-[0-9a-f]{32}", inside["GITHUB_TOKEN"])
    assert all(inside[v] == CA_BUNDLE for v in CA_BUNDLE_VARS)
    (cred,) = plan.net.credentials
    assert cred.placeholder == inside["GITHUB_TOKEN"] and cred.hosts == ("api.github.com", "github.com")
    assert plan.net.ca_dir.endswith("/rcc/credentials/s1") and plan.net.ca_dir.startswith(env["XDG_STATE_HOME"])
    assert {"api.github.com", "github.com"} <= set(plan.net.allow)
    binds = [m for m in json.loads(doc)["mounts"] if m.get("dest") == CA_BUNDLE]
    assert len(binds) == 1 and binds[0]["src"] == f"{plan.net.ca_dir}/ca-bundle.pem" and not binds[0]["writable"]
    # a second session gets another placeholder
    assert _plan(env, project, {"GITHUB_TOKEN": real}).net.credentials[0].placeholder != cred.placeholder


def test_credential_whose_variable_is_unset_is_left_out(env: dict[str, str], project: Path) -> None:
    user_file(env, USER)
    plan = _plan(env, project, {})
    assert plan.net.credentials == () and "GITHUB_TOKEN" not in dict(plan.env) and "SSL_CERT_FILE" not in dict(plan.env)


def test_no_network_means_no_credentials(env: dict[str, str], project: Path) -> None:
    user_file(env, USER + '[network]\nmode = "none"\n')
    plan = _plan(env, project, {"GITHUB_TOKEN": "x"})
    assert plan.net.credentials == () and "GITHUB_TOKEN" not in dict(plan.env)


def _imports_of_a_run(tmp_path: Path, env: dict[str, str], extra: dict[str, str]) -> set[str]:
    import os
    import shutil
    import subprocess
    import sys

    from rcctest import require

    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    probe = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, check=False)
    require(probe.returncode == 0, "bubblewrap cannot make a sandbox here (e.g. Nix's build sandbox: no namespaces)")
    proj = tmp_path / "run"
    proj.mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rcc", "run", "--", "true"],
        cwd=proj,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], **env, **extra, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    return {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


def test_rcc_run_without_credentials_never_imports_cryptography(env: dict[str, str], tmp_path: Path) -> None:
    loaded = _imports_of_a_run(tmp_path, env, {})
    assert "rcc.backends._proxy" in loaded  # a session with the proxy (it starts on a thread: maybe not imported)
    assert not {m for m in loaded if m.startswith(("cryptography", "rcc.net.sessionca", "rcc.net.terminate"))}
    # control: with a credential whose variable is set, the session CA is made (cryptography imported)
    user_file(env, USER)
    loaded = _imports_of_a_run(tmp_path, env, {"GITHUB_TOKEN": "ghp_x"})
    assert "cryptography" in loaded and "rcc.net.sessionca" in loaded


def test_policy_show_lists_credentials_by_name_env_and_hosts_never_values(env: dict[str, str], project: Path) -> None:
    import os
    import subprocess
    import sys

    user_file(env, USER.replace("hosts =", 'requests = ["github.com GET /me/*"]\nhosts ='))
    run_env = {
        "PATH": os.environ["PATH"],
        **env,
        "GITHUB_TOKEN": "ghp_secretvalue",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    r = subprocess.run([sys.executable, "-m", "rcc", "policy", "show", "--project", str(project)],
                       env=run_env, capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "  github: env GITHUB_TOKEN, hosts api.github.com, github.com" in r.stdout
    assert "    only: github.com GET /me/*" in r.stdout
    assert "ghp_secretvalue" not in r.stdout


def test_seatbelt_refuses_credentials_rather_than_half_work(env: dict[str, str], project: Path) -> None:
    from rcc.errors import RccError

    user_file(env, 'backend = "seatbelt"\n' + USER)
    with pytest.raises(RccError) as e:
        _plan(env, project, {"GITHUB_TOKEN": "x"})
    assert e.value.code == ExitCode.CONFIG and "seatbelt" in e.value.message
    assert _plan(env, project, {}).net.credentials == ()  # control: no variable set, nothing to refuse


def test_value_that_cannot_go_into_a_header_stops_rcc_without_showing_it(env: dict[str, str], tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    from rcctest import require

    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    probe = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, check=False)
    require(probe.returncode == 0, "bubblewrap cannot make a sandbox here (e.g. Nix's build sandbox: no namespaces)")
    user_file(env, USER)
    proj = tmp_path / "run"
    proj.mkdir()
    bad = "ghp_line1\r\nX-Injected: yes"
    r = subprocess.run(
        [sys.executable, "-m", "rcc", "run", "--", "true"], cwd=proj, capture_output=True, text=True, check=False,
        env={"PATH": os.environ["PATH"], **env, "GITHUB_TOKEN": bad, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert r.returncode == ExitCode.CONFIG == 78
    assert "credential github: $GITHUB_TOKEN cannot be injected" in r.stderr and "ghp_line1" not in r.stderr
    assert not list((Path(env["XDG_STATE_HOME"]) / "rcc" / "credentials").glob("*"))  # no session CA left
