"""The Nix flake (issue #7), evaluated, built and run offline by a real Nix against the stand-in nixpkgs.

What these tests prove: every output exists for every system and is well formed (Nix 2.8's `flake check`
does not look at apps or meta.mainProgram, so they are asserted with `nix eval --json`); the runtime tools on
rcc's PATH are exactly the expected set per OS, appended so a system bubblewrap wins; `nix run .#claude --
ARGS` reaches rcc with every argument intact; every .nix file parses; the NixOS module sets what it promises.
What they cannot prove: that the real nixpkgs attribute names exist and the real build passes (docs/nix.md:
the maintainer's pre-release commands).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from nixtest import ROOT, SYSTEMS, Nix

pytestmark = pytest.mark.nix

LINUX_TOOLS = {"bubblewrap": "bwrap", "nftables": "nft", "iproute2": "ip"}
SUBCOMMAND_APPS = {
    "claude": "claude",
    "codex": "codex",
    "gemini": "gemini",
    "aider": "aider",
    "shell": "shell",
    "setup": "setup",
}
HOST = "x86_64-linux"
TRICKY_ARGS = ["--flag", "two words", "", "$HOME", "*", "a\nb", "'quoted'", "--", "-c"]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _is_linux(system: str) -> bool:
    return system.endswith("-linux")


def _host_system() -> str:
    import platform

    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine()]
    return f"{machine}-linux"


# ---- files ------------------------------------------------------------------------------------------------


def test_every_nix_file_parses(nix: Nix) -> None:
    files = [ROOT / "flake.nix", *(ROOT / "nix").rglob("*.nix"), *(ROOT / "tests" / "nix").rglob("*.nix")]
    assert len(files) >= 8
    for f in files:
        argv = ["nix-instantiate", "--store", nix.store, "--parse", str(f)]
        proc = subprocess.run(argv, env=nix.env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{f}: {proc.stderr}"


@pytest.mark.parametrize("pinned", [True], ids=["lock"])
def test_flake_lock_pins_one_real_nixpkgs_revision(pinned: bool) -> None:
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert lock["version"] == 7
    root = lock["nodes"][lock["root"]]
    assert root["inputs"] == {"nixpkgs": "nixpkgs"}, "the flake has exactly one input"
    locked, original = lock["nodes"]["nixpkgs"]["locked"], lock["nodes"]["nixpkgs"]["original"]
    assert locked["type"] == "github" and (locked["owner"], locked["repo"]) == ("NixOS", "nixpkgs")
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"]), "a full commit, not a branch"
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    # The lock matches flake.nix's url, so Nix uses it instead of re-locking.
    url = re.search(r'inputs\.nixpkgs\.url = "github:([^/]+)/([^/]+)/([^"]+)";', (ROOT / "flake.nix").read_text())
    assert url is not None
    assert (original["owner"], original["repo"], original["ref"]) == url.groups()


def test_nix_reads_the_lock_and_finds_one_input(nix: Nix) -> None:
    # Without the stand-in: Nix reads the lock as is (and fetches nothing for `metadata`).
    meta = json.loads(nix.run("flake", "metadata", "--json", nix.flake, override=False).stdout)
    assert set(meta["locks"]["nodes"]) == {"root", "nixpkgs"}
    assert meta["locks"]["nodes"]["nixpkgs"]["locked"]["rev"] == "b2a3852bd078e68dd2b3dfa8c00c67af1f0a7d20"


def test_flake_check_evaluates_every_output(nix: Nix) -> None:
    proc = nix.run("flake", "check", "--no-build", nix.flake)
    assert "error" not in proc.stderr.lower()


# ---- packages ---------------------------------------------------------------------------------------------

PACKAGE_SUMMARY = """ps: builtins.mapAttrs (n: p: {
  inherit (p) type name pname version system drvPath;
  mainProgram = p.meta.mainProgram;
  platforms = p.meta.platforms;
  tools = map (t: t.pname) p.runtimeTools;
  toolPaths = map (t: "${t}/bin") p.runtimeTools;
  makeWrapperArgs = p.makeWrapperArgs;
}) ps"""


@pytest.mark.parametrize("system", SYSTEMS)
def test_packages_default_and_rcc_are_the_same_well_formed_package(nix: Nix, system: str) -> None:
    pkgs = nix.eval_json(f"packages.{system}", PACKAGE_SUMMARY)
    assert set(pkgs) == {"default", "rcc"}
    rcc = pkgs["rcc"]
    assert pkgs["default"]["drvPath"] == rcc["drvPath"]
    assert rcc["type"] == "derivation" and rcc["system"] == system
    assert rcc["pname"] == "rcc" and rcc["mainProgram"] == "rcc"
    assert rcc["version"] == _pyproject()["project"]["version"]
    assert system in rcc["platforms"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_runtime_tools_are_exactly_the_expected_set_appended_to_path(nix: Nix, system: str) -> None:
    rcc = nix.eval_json(f"packages.{system}", PACKAGE_SUMMARY)["rcc"]
    args: list[str] = rcc["makeWrapperArgs"]
    # The wrapper's own path (a placeholder for $out at evaluation time).
    assert args[:2] == ["--set", "RCC_EXECUTABLE"] and args[2].endswith("/bin/rcc")
    args = args[3:]
    if _is_linux(system):
        assert set(rcc["tools"]) == set(LINUX_TOOLS)
        bin_path = ":".join(rcc["toolPaths"])
        # --suffix, never --prefix: a system bwrap earlier on PATH wins (Ubuntu's AppArmor allows
        # /usr/bin/bwrap to make user namespaces, not a copy in /nix/store).
        assert args == ["--suffix", "PATH", ":", bin_path, "--set", "RCC_NIX_RUNTIME_PATH", bin_path]
    else:
        # sandbox-exec and pfctl are macOS's own, in /usr/bin and /sbin: nothing from nixpkgs.
        assert rcc["tools"] == []
        assert args == []


def test_package_builds_and_rcc_version_runs(nix: Nix) -> None:
    out = nix.build(f"packages.{_host_system()}.rcc")
    assert (out / "bin" / "rcc").is_file()
    proc = nix.run("run", f"{nix.flake}#default", "--", "version")
    from rcc import __version__

    assert proc.stdout == f"rcc {__version__}\n"


def test_package_installs_the_generated_completions_and_man_page(nix: Nix) -> None:
    """What `rcc completion SHELL` prints is what the package installs, where each shell looks for it."""
    from rcc.commands.completion import render

    out = nix.build(f"packages.{_host_system()}.rcc")
    for shell, rel in (
        ("bash", "share/bash-completion/completions/rcc.bash"),
        ("zsh", "share/zsh/site-functions/_rcc"),
        ("fish", "share/fish/vendor_completions.d/rcc.fish"),
    ):
        assert (out / rel).read_text() == render(shell), rel
    page = out / "share/man/man1/rcc.1.gz"
    import gzip

    assert b".TH RCC 1" in gzip.decompress(page.read_bytes())


def _spy(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A sitecustomize that records the argv and environment rcc's Python starts with, then lets it run."""
    spy = tmp_path / "spy"
    spy.mkdir()
    record = tmp_path / "record.json"
    (spy / "sitecustomize.py").write_text(
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'w') as f:\n"
        "    json.dump({'argv': sys.argv, 'PATH': os.environ.get('PATH'),"
        " 'RCC_NIX_RUNTIME_PATH': os.environ.get('RCC_NIX_RUNTIME_PATH'),"
        " 'RCC_EXECUTABLE': os.environ.get('RCC_EXECUTABLE')}, f)\n"
    )
    return {"PYTHONPATH": str(spy)}, record


def test_wrapper_prefers_a_system_bubblewrap_over_the_nix_one(nix: Nix, tmp_path: Path) -> None:
    out = nix.build(f"packages.{_host_system()}.rcc")
    env, record = _spy(tmp_path)
    system_bin = tmp_path / "system-bin"
    system_bin.mkdir()
    (system_bin / "bwrap").write_text("#!/bin/sh\n")
    (system_bin / "bwrap").chmod(0o755)
    subprocess.run([out / "bin" / "rcc", "version"], env={**env, "PATH": str(system_bin)}, check=True)
    seen = json.loads(record.read_text())
    assert seen["RCC_EXECUTABLE"] == str(out / "bin" / "rcc")
    assert seen["PATH"].startswith(f"{system_bin}:")
    assert shutil.which("bwrap", path=seen["PATH"]) == str(system_bin / "bwrap")
    for tool_dir in seen["RCC_NIX_RUNTIME_PATH"].split(":"):
        assert seen["PATH"].index(tool_dir) > 0


def test_wrapper_falls_back_to_the_nix_tools_without_a_system_copy(nix: Nix, tmp_path: Path) -> None:
    out = nix.build(f"packages.{_host_system()}.rcc")
    env, record = _spy(tmp_path)
    subprocess.run([out / "bin" / "rcc", "version"], env={**env, "PATH": str(tmp_path / "empty")}, check=True)
    seen = json.loads(record.read_text())
    for pname, exe in LINUX_TOOLS.items():
        found = shutil.which(exe, path=seen["PATH"]) or ""
        assert found.startswith(tuple(seen["RCC_NIX_RUNTIME_PATH"].split(":"))), (pname, found)
        assert f"-{pname}-" in found


# ---- apps -------------------------------------------------------------------------------------------------

APP_SUMMARY = "as: builtins.mapAttrs (n: a: { inherit (a) type program; description = a.meta.description; }) as"


@pytest.mark.parametrize("system", SYSTEMS)
def test_apps_exist_for_every_agent_and_are_well_formed(nix: Nix, system: str) -> None:
    apps = nix.eval_json(f"apps.{system}", APP_SUMMARY)
    assert set(apps) == {"default", *SUBCOMMAND_APPS}
    # (Compared by shape, not with a second evaluation: a checkout edited meanwhile would change the hash.)
    store_dir = str(Path(nix.eval_json(f"packages.{system}.rcc.outPath")).parent)
    version = re.escape(_pyproject()["project"]["version"])
    assert re.fullmatch(rf"{re.escape(store_dir)}/[0-9a-z]{{32}}-rcc-{version}/bin/rcc", apps["default"]["program"])
    for name, app in apps.items():
        assert app["type"] == "app"
        assert app["program"].startswith(store_dir + "/"), "nix run needs a store path"
        assert app["description"].startswith("rcc")
        if name != "default":
            assert app["program"].endswith(f"-rcc-{name}")


@pytest.mark.parametrize("name", sorted(SUBCOMMAND_APPS))
def test_nix_run_app_reaches_rcc_with_arguments_intact(nix: Nix, tmp_path: Path, name: str) -> None:
    """Arguments that a shell would split, expand or glob arrive byte for byte (the app is `exec rcc X "$@"`)."""
    env, record = _spy(tmp_path)
    nix.run("run", f"{nix.flake}#{name}", "--", *TRICKY_ARGS, check=False, env=env)
    seen = json.loads(record.read_text())
    assert seen["argv"][1:] == [SUBCOMMAND_APPS[name], *TRICKY_ARGS]


def test_nix_run_claude_control_plain_arguments(nix: Nix, tmp_path: Path) -> None:
    env, record = _spy(tmp_path)
    nix.run("run", f"{nix.flake}#claude", "--", "--flag", "two words", check=False, env=env)
    assert json.loads(record.read_text())["argv"][1:] == ["claude", "--flag", "two words"]


# ---- devShell, checks, overlay, formatter -----------------------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_devshell_has_the_contributor_tools(nix: Nix, system: str) -> None:
    shell = nix.eval_json(
        f"devShells.{system}.default",
        "s: { inherit (s) type shellHook; inputs = map (p: p.name) s.nativeBuildInputs;"
        " python = map (p: p.pname) (builtins.head s.nativeBuildInputs).extraLibs; }",
    )
    assert shell["type"] == "derivation"
    assert "rcc dev shell" in shell["shellHook"]
    names = " ".join(shell["inputs"])
    assert "python3" in names and "ruff" in names
    assert set(shell["python"]) >= {"pytest", "hypothesis", "pexpect", "mypy", "hatchling"}
    for pname in LINUX_TOOLS:
        assert (pname in names) == _is_linux(system)


def test_nix_develop_greets_and_puts_the_tools_on_path(nix: Nix, tmp_path: Path) -> None:
    script = "command -v python3; command -v bwrap; command -v nft; command -v ip; echo PYTHONPATH=$PYTHONPATH"
    proc = nix.run("develop", nix.flake, "-c", "sh", "-c", script)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("rcc dev shell:")
    store_dir = str(Path(nix.eval_json(f"packages.{HOST}.rcc.outPath")).parent)
    for found, name in zip(lines[1:5], ("python3", "bwrap", "nft", "ip"), strict=True):
        assert found.startswith(store_dir + "/") and found.endswith("/bin/" + name)
    assert lines[5].startswith("PYTHONPATH=") and lines[5].split("=", 1)[1].split(":")[0].endswith("/src")


@pytest.mark.parametrize("system", SYSTEMS)
def test_checks_run_the_pure_tier_excluding_every_impure_marker(nix: Nix, system: str) -> None:
    checks = nix.eval_json(
        f"checks.{system}",
        "cs: { rcc = cs.rcc.name; main = cs.rcc.meta.mainProgram; markers = cs.pure-tests.impureMarkers;"
        " command = cs.pure-tests.buildCommand; type = cs.pure-tests.type; }",
    )
    assert checks["rcc"] == "rcc-" + _pyproject()["project"]["version"] and checks["main"] == "rcc"
    assert checks["type"] == "derivation"
    # Every tier marker pyproject declares needs something the Nix build sandbox does not have.
    # (A marker with arguments, like `backends(*names, why)`, selects backends within a tier: not a tier.)
    declared = {
        m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"] if "(" not in m.split(":")[0]
    }
    assert set(checks["markers"]) == declared
    expr = " and ".join(f"not {m}" for m in checks["markers"])
    assert f"-m '{expr}'" in checks["command"]


def test_pure_tests_check_builds_and_runs_the_pure_tier(nix: Nix) -> None:
    """Builds checks.<host>.pure-tests with the test runner's Python (the stand-in's has no pytest): its
    script copies the source, runs pytest with the marker expression, and the build fails if a test fails.
    (Nix's build sandbox is off here; `nix flake check` with the real nixpkgs runs it inside the sandbox.)"""
    import sys

    attr = f"{nix.flake}#checks.{_host_system()}.pure-tests"
    proc = nix.run(
        "build",
        "--impure",
        "--no-link",
        "--print-build-logs",
        attr,
        check=False,
        env={"RCC_NIX_TEST_PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert re.search(r"\d+ passed", proc.stderr), proc.stderr[-2000:]
    assert " deselected" in proc.stderr, "the impure tiers were selected out"


def test_overlay_adds_rcc_to_a_package_set(nix: Nix) -> None:
    name = nix.eval_json(
        "overlays.default",
        f"o: let prev = import {ROOT}/tests/nix/nixpkgs/pkgs.nix {{ lib = import {ROOT}/tests/nix/nixpkgs/lib.nix;"
        ' system = "x86_64-linux"; }; final = prev // o final prev; in final.rcc.name',
        "--impure",
    )
    assert name == "rcc-" + _pyproject()["project"]["version"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_formatter_is_a_package(nix: Nix, system: str) -> None:
    assert nix.eval_json(f"formatter.{system}.type") == "derivation"


# ---- the NixOS module -------------------------------------------------------------------------------------


def _module(nix: Nix, tmp_path: Path, settings: dict[str, Any], *extra: Path, check: bool = True) -> Any:
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    modules = " ".join(["(builtins.fromJSON (builtins.readFile " + str(settings_file) + "))", *map(str, extra)])
    apply = f"m: import {ROOT}/tests/nix/eval-module.nix {{ module = m; settings = [ {modules} ]; }}"
    args = ["eval", "--json", "--impure", f"{nix.flake}#nixosModules.default", "--apply", apply]
    proc = nix.run(*args, check=check)
    return json.loads(proc.stdout) if check else proc


HARDENED = ROOT / "tests" / "nix" / "hardened-profile.nix"


def test_module_disabled_changes_nothing(nix: Nix, tmp_path: Path) -> None:
    got = _module(nix, tmp_path, {})
    assert got["systemPackages"] == []
    assert got["podman"] is False and got["nftables"] is False and got["nftablesRuleset"] == ""
    assert got["unprivilegedUsernsClone"] is False


def test_module_enable_installs_rcc_and_allows_user_namespaces(nix: Nix, tmp_path: Path) -> None:
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True}}})
    assert got["systemPackages"] == ["rcc-" + _pyproject()["project"]["version"]]
    assert got["allowUserNamespaces"] is True and got["unprivilegedUsernsClone"] is True
    assert got["podman"] is False
    assert got["nftables"] is False, "the firewall table is opt-in"


def test_module_reenables_user_namespaces_a_hardened_profile_turned_off(nix: Nix, tmp_path: Path) -> None:
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True}}}, HARDENED)
    assert got["allowUserNamespaces"] is True and got["unprivilegedUsernsClone"] is True


def test_module_leaves_a_hardened_profile_alone_when_told_to(nix: Nix, tmp_path: Path) -> None:
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True, "userNamespaces": False}}}, HARDENED)
    assert got["allowUserNamespaces"] is False and got["unprivilegedUsernsClone"] is False


def test_module_conflicts_loudly_with_an_explicit_no_user_namespaces(nix: Nix, tmp_path: Path) -> None:
    settings = {"programs": {"rcc": {"enable": True}}, "security": {"allowUserNamespaces": False}}
    proc = _module(nix, tmp_path, settings, check=False)
    assert proc.returncode != 0
    assert "conflicting definition values" in proc.stderr


def test_module_podman(nix: Nix, tmp_path: Path) -> None:
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True, "podman": {"enable": True}}}})
    assert got["podman"] is True


def _built_ruleset(nix: Nix, got: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    from rcctest import require

    require((ROOT / "src" / "rcc" / "firewall" / "nft.py").exists(), "rcc.firewall is not in this tree")
    assert got["nftables"] is True
    [drv] = got["nftablesRulesetDrvs"]
    return nix.realise(drv)


def test_module_firewall_loads_exactly_what_rcc_setup_renders(nix: Nix, tmp_path: Path) -> None:
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True, "firewall": {"enable": True}}}})
    proc = _built_ruleset(nix, got)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert got["nftablesRuleset"] == f'include "{out}"'
    from rcc.firewall.nft import render_nft
    from rcc.firewall.spec import FirewallSpec

    assert Path(out).read_text() == render_nft(FirewallSpec())


def test_module_firewall_custom_prefix_and_ports(nix: Nix, tmp_path: Path) -> None:
    fw = {"enable": True, "interfacePrefix": "sbx", "proxyPorts": [8080, 3128]}
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True, "firewall": fw}}})
    proc = _built_ruleset(nix, got)
    assert proc.returncode == 0, proc.stderr
    from rcc.firewall.nft import render_nft
    from rcc.firewall.spec import FirewallSpec

    rendered = Path(proc.stdout.strip()).read_text()
    assert rendered == render_nft(FirewallSpec(interface_prefix="sbx", proxy_ports=(3128, 8080)))


def test_module_firewall_rule_injection_through_the_prefix_fails_the_build(nix: Nix, tmp_path: Path) -> None:
    """A prefix that would close the nft string and add `accept` must fail the build, not load a firewall."""
    fw = {"enable": True, "interfacePrefix": 'rcc" accept #'}
    got = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True, "firewall": fw}}})
    proc = _built_ruleset(nix, got)
    assert proc.returncode != 0
    assert "interface_prefix" in proc.stderr


def test_module_sets_only_options_that_exist(nix: Nix, tmp_path: Path) -> None:
    """The stand-in's module system rejects undeclared options, like NixOS; a typo'd one must not pass."""
    proc = _module(nix, tmp_path, {"programs": {"rcc": {"enable": True}}, "security": {"nope": True}}, check=False)
    assert proc.returncode != 0 and "security.nope' does not exist" in proc.stderr
