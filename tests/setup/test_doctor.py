"""rcc doctor: pure checks over simulated Facts, then real runs on this machine (as root and as a normal user)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from fwhosts import as_test_user

from rcc.backends import apparmor
from rcc.commands import doctor
from rcc.commands.doctor import Check, Facts, checks
from rcc.firewall import nft, pf
from rcc.firewall.spec import FirewallSpec
from rcctest import is_root, require

GOOD = Facts(
    system="linux",
    distro="debian",
    euid=1000,
    user="alice",
    binaries=(
        ("bwrap", "/usr/bin/bwrap"),
        ("nft", "/usr/sbin/nft"),
        ("podman", "/usr/bin/podman"),
        ("newuidmap", "/usr/bin/newuidmap"),
        ("newgidmap", "/usr/bin/newgidmap"),
    ),
    bwrap_version="bubblewrap 0.8.0",
    sysctls=(("user.max_user_namespaces", "63000"),),
    bwrap_probe="",
    uidmap_privileged=(("newuidmap", True), ("newgidmap", True)),
    subuid_count=65536,
    subgid_count=65536,
    agents=(("claude", "/home/alice/.local/bin/claude"), ("codex", "")),
)


def by_id(f: Facts) -> dict[str, Check]:
    return {c.id: c for c in checks(f)}


def test_control_healthy_machine_passes() -> None:
    results = checks(GOOD)
    assert doctor.passed(results)
    assert all(c.status in ("ok", "info") for c in results), [c for c in results if c.status not in ("ok", "info")]
    assert "every required check passed" in doctor.render_text(results)


@pytest.mark.parametrize(
    ("distro", "like", "fix"),
    [
        ("debian", (), "sudo apt-get install bubblewrap"),
        ("ubuntu", ("debian",), "sudo apt-get install bubblewrap"),
        ("fedora", (), "sudo dnf install bubblewrap"),
        ("arch", (), "sudo pacman -S bubblewrap"),
        ("opensuse-tumbleweed", ("opensuse", "suse"), "sudo zypper install bubblewrap"),
        ("nixos", (), "pkgs.bubblewrap"),
        ("gentoo", (), "`bubblewrap` package"),
    ],
)
def test_missing_bwrap_fails_with_the_distributions_fix(distro: str, like: tuple[str, ...], fix: str) -> None:
    f = dataclasses.replace(
        GOOD, distro=distro, distro_like=like, binaries=(("nft", "/usr/sbin/nft"),), bwrap_probe=None
    )
    c = by_id(f)["bubblewrap"]
    assert (c.status, c.required) == ("fail", True)
    assert fix in c.fix
    assert not doctor.passed(checks(f))


def test_missing_bwrap_is_only_a_warning_for_the_podman_backend() -> None:
    f = dataclasses.replace(GOOD, backend="podman", binaries=GOOD.binaries[1:], bwrap_probe=None)
    assert by_id(f)["bubblewrap"].status == "warn"
    assert doctor.passed(checks(f))


@pytest.mark.parametrize(
    ("sysctl", "value", "fix"),
    [
        ("kernel.unprivileged_userns_clone", "0", "sudo sysctl -w kernel.unprivileged_userns_clone=1"),
        ("user.max_user_namespaces", "0", "sudo sysctl -w user.max_user_namespaces=15000"),
    ],
)
def test_userns_sysctl_off_fails_with_exact_sysctl(sysctl: str, value: str, fix: str) -> None:
    f = dataclasses.replace(GOOD, sysctls=((sysctl, value),), bwrap_probe="setting up uid map: Permission denied")
    c = by_id(f)["user namespaces"]
    assert c.status == "fail"
    assert fix in c.fix and "/etc/sysctl.d/" in c.fix  # persistent too
    assert by_id(f)["bubblewrap works"].status == "fail"
    assert not doctor.passed(checks(f))


UBUNTU_BWRAP_PROFILE = """\
abi <abi/4.0>,
include <tunables/global>
profile bwrap /usr/bin/bwrap flags=(attach_disconnected,mediate_deleted) {
  allow capability,
  allow userns,
  change_profile -> unpriv_bwrap,
}
"""


def test_apparmor_profile_parsing_finds_userns_grants() -> None:
    profiles = apparmor.userns_profiles(
        {
            "/etc/apparmor.d/bwrap-userns-restrict": UBUNTU_BWRAP_PROFILE,
            "/etc/apparmor.d/usr.bin.man": "/usr/bin/man {\n  /** r,\n}\n",
        }
    )
    assert profiles == (("bwrap", "/usr/bin/bwrap"),)


def test_apparmor_blocks_nix_store_bwrap_even_where_usr_bin_bwrap_works() -> None:
    nix = "/nix/store/0abc-bubblewrap-0.10.0/bin/bwrap"
    f = dataclasses.replace(
        GOOD,
        distro="ubuntu",
        binaries=(("bwrap", nix),),
        sysctls=(("kernel.apparmor_restrict_unprivileged_userns", "1"), ("user.max_user_namespaces", "63000")),
        apparmor_userns_profiles=(("bwrap", "/usr/bin/bwrap"),),
        bwrap_probe="setting up uid map: Permission denied",
    )
    c = by_id(f)["apparmor userns"]
    assert c.status == "fail"
    assert nix in c.fix and "apparmor_parser -r" in c.fix
    assert "never a /nix/store/* glob" in c.fix


def test_control_apparmor_restriction_with_profiled_usr_bin_bwrap_passes() -> None:
    f = dataclasses.replace(
        GOOD,
        distro="ubuntu",
        sysctls=(("kernel.apparmor_restrict_unprivileged_userns", "1"),),
        apparmor_userns_profiles=(("bwrap", "/usr/bin/bwrap"),),
    )
    assert by_id(f)["apparmor userns"].status == "ok"
    assert doctor.passed(checks(f))


@pytest.mark.parametrize(
    ("glob", "path", "match"),
    [
        ("/usr/bin/bwrap", "/usr/bin/bwrap", True),
        ("/usr/bin/bwrap", "/nix/store/x/bin/bwrap", False),
        ("/nix/store/*/bin/bwrap", "/nix/store/abc-bubblewrap/bin/bwrap", True),
        ("/nix/store/*/bwrap", "/nix/store/a/b/bwrap", False),
        ("/nix/store/**/bwrap", "/nix/store/a/b/bwrap", True),
        ("/usr/{bin,sbin}/bwrap", "/usr/sbin/bwrap", True),
        ("/usr/bin/bwra?", "/usr/bin/bwrap", True),
    ],
)
def test_apparmor_attachment_globs(glob: str, path: str, match: bool) -> None:
    assert apparmor.glob_match(glob, path) is match


def test_backend_refusal_is_reported_even_when_doctors_own_checks_pass() -> None:
    f = dataclasses.replace(GOOD, bwrap_backend_problems=(("something new is off", "do X"),))
    c = by_id(f)["bwrap backend"]
    assert (c.status, c.fix) == ("fail", "do X")
    assert not doctor.passed(checks(f))


def test_seccomp_missing_fails() -> None:
    c = by_id(dataclasses.replace(GOOD, seccomp_filter=False))["seccomp"]
    assert (c.status, c.required) == ("fail", True)


def test_subuid_missing_fails_for_podman_backend_with_usermod_fix() -> None:
    f = dataclasses.replace(GOOD, backend="podman", subuid_count=0, subgid_count=0)
    c = by_id(f)["subuid/subgid"]
    assert c.status == "fail"
    assert "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice" in c.fix
    assert not doctor.passed(checks(f))


def test_subuid_missing_is_a_warning_for_the_bwrap_backend() -> None:
    f = dataclasses.replace(GOOD, subuid_count=0)
    assert by_id(f)["subuid/subgid"].status == "warn"
    assert doctor.passed(checks(f))


def test_newuidmap_without_setuid_says_chmod() -> None:
    f = dataclasses.replace(GOOD, backend="podman", uidmap_privileged=(("newuidmap", False), ("newgidmap", True)))
    c = by_id(f)["newuidmap/newgidmap"]
    assert c.status == "fail" and c.fix == "sudo chmod u+s /usr/bin/newuidmap"


def test_newuidmap_missing_says_which_package() -> None:
    f = dataclasses.replace(GOOD, backend="podman", binaries=GOOD.binaries[:3], uidmap_privileged=())
    assert by_id(f)["newuidmap/newgidmap"].fix == "sudo apt-get install uidmap"
    f = dataclasses.replace(f, distro="fedora")
    assert by_id(f)["newuidmap/newgidmap"].fix == "sudo dnf install shadow-utils"


def test_cgroup_v1_warns_but_passes() -> None:
    f = dataclasses.replace(GOOD, cgroup="hybrid")
    assert by_id(f)["cgroup layout"].status == "warn"
    assert doctor.passed(checks(f))


def test_invalid_config_fails() -> None:
    f = dataclasses.replace(GOOD, config_error="/home/alice/.config/rcc/config.toml:3: network.mode: bad value")
    c = by_id(f)["config"]
    assert (c.status, c.required) == ("fail", True)
    assert "config.toml:3" in c.summary


def test_no_agents_is_information_only() -> None:
    f = dataclasses.replace(GOOD, agents=(("claude", ""),))
    assert by_id(f)["agents"].status == "info"
    assert doctor.passed(checks(f))


def test_firewall_states() -> None:
    current = nft.render_nft(FirewallSpec())
    assert by_id(GOOD)["firewall"].status == "info"
    assert by_id(dataclasses.replace(GOOD, firewall_file=current))["firewall"].status == "ok"
    loaded = dataclasses.replace(
        GOOD, firewall_file=current, firewall_loaded="current", firewall_counters=(("dns_dropped", 3),)
    )
    assert "dns_dropped 3" in by_id(loaded)["firewall"].summary
    absent = by_id(dataclasses.replace(GOOD, firewall_file=current, firewall_loaded="absent"))["firewall"]
    assert absent.status == "warn" and absent.fix == "sudo rcc setup --firewall --persist"
    edited = current.replace("counter name dns_dropped drop", "accept")
    c = by_id(dataclasses.replace(GOOD, firewall_file=edited))["firewall"]
    assert c.status == "warn" and c.fix == "sudo rcc setup --firewall"
    custom = nft.render_nft(FirewallSpec(proxy_ports=(8080,))).replace("digest", "digest 0")
    assert by_id(dataclasses.replace(GOOD, firewall_file=custom))["firewall"].fix == (
        "sudo rcc setup --firewall --proxy-port 8080"
    )
    assert doctor.passed(checks(dataclasses.replace(GOOD, firewall_file=edited)))  # optional: never fails


def test_macos_checks() -> None:
    mac = Facts(
        system="darwin",
        binaries=(("sandbox-exec", "/usr/bin/sandbox-exec"), ("pfctl", "/sbin/pfctl")),
        firewall_file=pf.render_pf(FirewallSpec()),
        firewall_loaded="unknown",
    )
    results = by_id(mac)
    assert results["sandbox-exec"].status == "ok"
    assert results["pf anchor"].status == "ok"
    assert "bubblewrap" not in results
    assert doctor.passed(list(results.values()))
    broken = dataclasses.replace(mac, binaries=())
    assert by_id(broken)["sandbox-exec"].status == "fail"


def test_json_output_is_machine_readable() -> None:
    doc = json.loads(doctor.render_json(checks(GOOD)))
    assert doc["ok"] is True
    assert {"id", "status", "summary", "why", "fix", "required"} <= set(doc["checks"][0])


def test_text_output_one_line_per_check_with_fix_below() -> None:
    f = dataclasses.replace(GOOD, subuid_count=0)
    text = doctor.render_text(checks(f))
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if "subuid/subgid" in line)
    assert lines[i].startswith("warn") and " -- " in lines[i]
    assert lines[i + 1].strip().startswith("fix: sudo usermod")


# ---------------------------------------------------------------- real runs


def run_doctor(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    pre = as_test_user() if user else []
    return subprocess.run(
        [*pre, sys.executable, "-m", "rcc", "doctor", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd="/tmp",
    )


def test_real_doctor_run_gathers_facts_and_reports_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    facts = doctor.gather_facts(os.environ, "/tmp")
    results = checks(facts)
    ids = {c.id for c in results}
    assert {"bubblewrap", "seccomp", "nftables", "agents", "config", "firewall"} <= ids
    code = doctor.command(["--json"])  # in-process: the command's own output and exit status
    doc = json.loads(capsys.readouterr().out)
    assert code == (0 if doc["ok"] else 71)
    assert doc["ok"] == doctor.passed(results)


def test_real_doctor_as_normal_user() -> None:
    r = run_doctor(user="rccuser")
    assert r.stdout.splitlines()[-1].startswith("rcc doctor:"), r.stdout + r.stderr
    assert "bubblewrap works" in r.stdout
    assert "as root" not in r.stdout
    bwrap_ok = "ok    bubblewrap works" in r.stdout
    require(bwrap_ok, f"bubblewrap does not work for rccuser here:\n{r.stdout}")
    assert r.returncode == 0, r.stdout


def test_real_missing_bwrap_on_path_fails_doctor(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A real run where PATH has no bwrap (the sbin fallback holds no bwrap either)."""
    require(
        not any(os.path.exists(os.path.join(d, "bwrap")) for d in ("/usr/local/sbin", "/usr/sbin", "/sbin")),
        "this machine has a bwrap in sbin",
    )
    facts = doctor.gather_facts({"PATH": str(tmp_path), "HOME": str(tmp_path)}, str(tmp_path))
    c = {c.id: c for c in checks(facts)}["bubblewrap"]
    assert c.status == "fail" and "bubblewrap" in c.fix


def test_real_account_without_subuids_gets_the_usermod_fix() -> None:
    """A real run as `nobody`, which has no /etc/subuid entry."""
    require(is_root(), "switching to nobody needs root")
    pre = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env"]
    r = subprocess.run(
        [*pre, sys.executable, "-m", "rcc", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd="/tmp",
    )
    require(r.stdout.startswith("{"), f"nobody cannot run this checkout's python: {r.stderr.strip()}")
    found = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    require("subuid/subgid" in found, "no podman here: the rootless checks are not shown")
    assert found["subuid/subgid"]["status"] == "warn"  # warn: the configured backend is bwrap
    assert (
        "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody" in found["subuid/subgid"]["fix"]
    )


def test_limits_check_says_how_each_limit_is_enforced_and_how_to_get_the_rest() -> None:
    from rcc.commands.doctor import Facts, _limits_check

    full = (("memory", "cgroup v1"), ("processes", "cgroup v1"), ("cpu", "cgroup v1"), ("tmp", "tmpfs size"))
    c = _limits_check(Facts(limits=full))
    assert c.status == "ok" and "memory: cgroup v1" in c.summary and not c.fix
    user = (("memory", "rlimit (per process)"), ("processes", "rlimit"), ("cpu", ""), ("tmp", "tmpfs size"))
    c = _limits_check(Facts(limits=user, limits_fix="systemd-run --user --scope ..."))
    assert c.status == "info"
    assert "cpu: not enforced" in c.summary and "per process" in c.summary
    assert c.fix.startswith("systemd-run")


def test_userns_checks_have_one_source_for_rcc_run_and_doctor() -> None:
    """`rcc run` (BwrapBackend.problems) and `rcc doctor` call the same userns_problems; problems carry an id."""
    from rcc.backends.bwrap import ID_USERNS_CLONE_OFF, ID_USERNS_MAX_ZERO, userns_problems

    off = {"user.max_user_namespaces": "0", "kernel.unprivileged_userns_clone": "0"}
    assert [p.id for p in userns_problems(off.get, unprivileged=True)] == [ID_USERNS_MAX_ZERO, ID_USERNS_CLONE_OFF]
    # kernel.unprivileged_userns_clone binds users other than root only
    assert [p.id for p in userns_problems(off.get, unprivileged=False)] == [ID_USERNS_MAX_ZERO]
    # control: allowed, or sysctls this kernel does not have
    assert userns_problems({"user.max_user_namespaces": "63000"}.get, unprivileged=True) == []
    assert userns_problems({}.get, unprivileged=True) == []
    f = dataclasses.replace(GOOD, sysctls=tuple(off.items()))
    assert by_id(f)["user namespaces"].summary.count("= 0") == 2


def test_credentials_check_says_whether_cryptography_is_there() -> None:
    """Informational either way (rcc runs without it): present -> ok with its version; missing -> what happens
    and how to install it; doctor's verdict does not change."""
    ok = by_id(dataclasses.replace(GOOD, cryptography="48.0.0"))["credentials"]
    assert ok.status == "ok" and "48.0.0" in ok.summary and not ok.required
    missing = by_id(dataclasses.replace(GOOD, cryptography=""))["credentials"]
    assert missing.status == "info" and "python3-cryptography" in missing.fix and "exit 69" in missing.summary
    assert doctor.passed(checks(dataclasses.replace(GOOD, cryptography="")))
