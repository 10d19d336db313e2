"""Seatbelt-specific escape attacks, run through the decision simulator (sb_simulator.py) against the profiles rcc
renders for a plain run, --no-network, extra paths and every agent (claude, codex, gemini, aider).

The list is this module's own, written from tests/sandbox/*.py (the Linux escape suite: each entry names the
test it mirrors) before the shared catalogue (tests/attacks.py) landed; the catalogue's probes run through the
same simulator in test_catalogue_simulated.py. This module keeps what the catalogue does not have or what only
Seatbelt needs: every filesystem.protect entry (create, write, below, unlink), renames and symlinked parents,
hard links, rcc's own profile file, mach services, lsopen/appleevent-send, signals.

Paths are the RESOLVED host paths Seatbelt checks (a symlink attack is the operation on the link's target, plus
the creation of the link itself). What this proves: under the simulator's stated semantics, every attack is
denied and every control allowed. What it does NOT prove: that macOS evaluates the profile the same way (the
macOS release workflow runs the real escape suite under the real sandbox-exec).
"""

from __future__ import annotations

import pytest
import sb_world
from sb_simulator import Profile, Request
from sb_world import HOME, PORT, PROJECT, SID, STATE

from rcc.policy import DEFAULT_PROTECTED, DEFAULT_SECRETS

SESSION = f"{STATE}/seatbelt/{SID}"
P = PROJECT


def _secret(s: str) -> str:
    s = HOME + s[1:] if s.startswith("~") else s
    return "/private" + s if s.startswith("/etc/") else s


def file_attacks() -> list[tuple[str, Request]]:
    """(the Linux test it mirrors, the operation that must be denied)."""
    a: list[tuple[str, Request]] = []
    for s in DEFAULT_SECRETS:  # test_read_home_secrets_is_blocked, test_read_system_secrets_is_blocked
        a.append(("read_secret", Request("file-read-data", _secret(s))))
        a.append(("read_secret_below", Request("file-read-data", _secret(s) + "/x")))
    a += [
        ("find_over_home", Request("file-read-data", HOME)),
        ("read_home_file", Request("file-read-data", f"{HOME}/Documents/taxes.pdf")),
        ("read_keychain", Request("file-read-data", f"{HOME}/Library/Keychains/login.keychain-db")),
        ("other_users_homes", Request("file-read-data", "/Users/other/.ssh/id_rsa")),
        ("other_users_homes", Request("file-read-data", "/Users")),
        ("root_home", Request("file-read-data", "/private/var/root/.ssh/id_rsa")),
        ("tmp_is_private", Request("file-read-data", "/private/tmp/other-session/secret")),
        ("tmp_is_private", Request("file-write-create", "/private/tmp/x")),
        ("user_temp_dir", Request("file-read-data", "/private/var/folders/ab/cd/T/x")),
        ("external_volume", Request("file-read-data", "/Volumes/Backup/x")),
        ("rcc_state_invisible", Request("file-read-data", f"{STATE}/trust.json")),
        ("rcc_state_invisible", Request("file-write-data", f"{STATE}/trust.json")),
        ("rcc_state_invisible", Request("file-read-data", f"{STATE}/audit.jsonl")),
        ("rcc_config", Request("file-write-create", f"{HOME}/.config/rcc/config.toml")),
        ("own_profile_read", Request("file-read-data", f"{SESSION}/profile.sb")),
        ("own_profile_write", Request("file-write-data", f"{SESSION}/profile.sb")),
        ("own_profile_replace", Request("file-write-unlink", f"{SESSION}/profile.sb")),
        ("session_dir_listing", Request("file-read-data", SESSION)),
        ("session_dir_plant", Request("file-write-create", f"{SESSION}/profile2.sb")),
        ("write_outside_project", Request("file-write-create", f"{HOME}/evil")),
        ("write_outside_project", Request("file-write-data", f"{HOME}/.zshrc")),
        ("launch_agent", Request("file-write-create", f"{HOME}/Library/LaunchAgents/evil.plist")),
        ("system_read_only", Request("file-write-data", "/usr/bin/git")),
        ("system_read_only", Request("file-write-create", "/usr/local/bin/evil")),
        ("system_read_only", Request("file-write-data", "/private/etc/hosts")),
        ("system_read_only", Request("file-write-create", "/Library/LaunchDaemons/evil.plist")),
        ("system_read_only", Request("file-write-create", "/Applications/Evil.app")),
        ("rename_project", Request("file-write-unlink", PROJECT)),
        ("rename_project_parent", Request("file-write-unlink", HOME)),
        ("plant_git_hook", Request("file-write-create", f"{P}/.git/hooks/pre-commit")),
        ("plant_git_hook", Request("file-write-data", f"{P}/.git/hooks/pre-commit")),
        ("plant_git_hook_via_rename_git", Request("file-write-unlink", f"{P}/.git")),
        ("plant_git_hook_via_rename_git", Request("file-write-unlink", f"{P}/.git/hooks")),
        ("git_config_cannot_be_changed", Request("file-write-data", f"{P}/.git/config")),
        ("git_config_cannot_be_changed", Request("file-write-unlink", f"{P}/.git/config")),
        ("git_commondir_redirect", Request("file-write-create", f"{P}/.git/commondir")),
        ("git_init_cannot_plant_hooks", Request("file-write-create", f"{P}/.git/info/attributes")),
        ("plant_claude_settings_via_rename_parent", Request("file-write-create", f"{P}/.claude")),
        ("replace_parent_with_symlink", Request("file-write-create", f"{P}/.claude")),  # `ln -s x .claude`
        ("gemini_dir_rename", Request("file-write-unlink", f"{P}/.gemini")),
        ("secret_inside_writable_parent", Request("file-write-unlink", f"{P}/.git/hooks")),
        # `ln ~/.ssh/id_rsa proj/x`, then read proj/x: Seatbelt matches paths, not inodes
        ("hard_link_secret_into_project", Request("file-link", f"{HOME}/.ssh/id_rsa")),
        ("hard_link_secret_into_project", Request("file-link", f"{P}/x")),
        ("hard_link_hook_alias", Request("file-link", f"{P}/.git/hooks/pre-commit")),
    ]
    for rel in DEFAULT_PROTECTED:  # test_protected_paths_cannot_be_created / _existing_..._cannot_be_modified
        a.append(("protected_path_create", Request("file-write-create", f"{P}/{rel}")))
        a.append(("protected_path_write", Request("file-write-data", f"{P}/{rel}")))
        a.append(("protected_path_below", Request("file-write-create", f"{P}/{rel}/x")))
        a.append(("protected_path_unlink", Request("file-write-unlink", f"{P}/{rel}")))
    return a


def network_attacks() -> list[tuple[str, Request]]:
    out = "network-outbound"
    return [
        ("direct_internet", Request(out, addr="1.1.1.1:443")),
        ("direct_internet_v6", Request(out, addr="[2606:4700::1111]:443")),
        ("host_services_over_loopback", Request(out, addr="127.0.0.1:22")),
        ("host_services_over_loopback", Request(out, addr="127.0.0.1:5432")),
        ("host_services_over_loopback", Request(out, addr="[::1]:631")),
        ("host_services_over_mapped_v4", Request(out, addr="[::ffff:127.0.0.1]:22")),
        ("proxy_port_on_other_address", Request(out, addr=f"192.168.1.10:{PORT}")),
        ("dns_udp", Request(out, addr="8.8.8.8:53")),
        ("dns_via_mdnsresponder", Request(out, addr="unix:/private/var/run/mDNSResponder")),
        ("host_unix_sockets", Request(out, addr="unix:/private/var/run/docker.sock")),
        ("host_unix_sockets", Request(out, addr=f"unix:{HOME}/.docker/run/docker.sock")),
        ("host_unix_sockets", Request(out, addr="unix:/private/var/run/com.apple.launchd.x/Listeners")),
    ]


def process_attacks() -> list[tuple[str, Request]]:
    return [
        ("open_app_outside_sandbox", Request("lsopen", "/Applications/Terminal.app")),
        ("apple_events", Request("appleevent-send")),
        ("host_processes_cannot_be_signalled", Request("signal", same_sandbox=False)),
        ("host_process_info", Request("process-info-pidinfo", same_sandbox=False)),
        ("keychain", Request("mach-lookup", name="com.apple.SecurityServer")),
        ("keychain", Request("mach-lookup", name="com.apple.securityd.xpc")),
        ("launchservices", Request("mach-lookup", name="com.apple.coreservices.launchservicesd")),
        ("launchservices", Request("mach-lookup", name="com.apple.lsd.mapdb")),
        ("preferences_past_file_rules", Request("mach-lookup", name="com.apple.cfprefsd.daemon")),
        ("pasteboard", Request("mach-lookup", name="com.apple.pasteboard.1")),
        ("launchd_bootstrap", Request("mach-lookup", name="com.apple.xpc.launchd.domain.system")),
        ("kernel_settings", Request("sysctl-write")),
        ("iokit", Request("iokit-open")),
    ]


def controls() -> list[tuple[str, Request]]:
    """What must keep working (each Linux control test's macOS counterpart)."""
    return [
        ("project_write_lands", Request("file-write-data", f"{P}/src/main.py")),
        ("project_write_lands", Request("file-write-create", f"{P}/new.txt")),
        ("project_write_lands", Request("file-write-unlink", f"{P}/old.txt")),
        ("project_read", Request("file-read-data", f"{P}/README.md")),
        ("git_add_commit_branch_status_work", Request("file-write-create", f"{P}/.git/objects/ab/cdef")),
        ("git_add_commit_branch_status_work", Request("file-write-data", f"{P}/.git/index")),
        ("git_add_commit_branch_status_work", Request("file-write-create", f"{P}/.git/refs/heads/b")),
        ("git_reads_its_config", Request("file-read-data", f"{P}/.git/config")),
        ("git_reads_hooks_dir", Request("file-read-data", f"{P}/.git/hooks")),
        ("regular_dotfiles_stay_writable", Request("file-write-data", f"{P}/.gitignore")),
        ("regular_dotfiles_stay_writable", Request("file-write-create", f"{P}/.editorconfig")),
        ("other_files_in_existing_gemini_dir", Request("file-write-create", f"{P}/.gemini/styleguide.md")),
        ("system_readable", Request("file-read-data", "/usr/bin/git")),
        ("system_readable", Request("file-read-data", "/System/Library/Frameworks/x")),
        ("system_readable", Request("file-read-data", "/private/etc/hosts")),
        ("exec_system_tool", Request("process-exec", "/usr/bin/env")),
        ("toolchain_visible", Request("file-read-data", f"{HOME}/.cargo/bin/cargo")),
        ("toolchain_read_only", Request("file-read-metadata", f"{HOME}/.cargo")),
        ("realpath_to_project", Request("file-read-metadata", "/Users")),
        ("realpath_to_project", Request("file-read-metadata", HOME)),
        ("private_tmpdir", Request("file-write-create", f"{SESSION}/tmp/x")),
        ("private_home", Request("file-write-create", f"{SESSION}/home/.cache/x")),
        ("dev_null", Request("file-write-data", "/dev/null")),
        ("terminal", Request("file-write-data", "/dev/ttys003")),
        ("terminal", Request("file-ioctl", "/dev/ttys003")),
        ("pseudo_tty", Request("pseudo-tty")),
        ("fork", Request("process-fork")),
        ("own_processes", Request("signal", same_sandbox=True)),
        ("user_lookup", Request("mach-lookup", name="com.apple.system.opendirectoryd.libinfo")),
    ]


def _agent_controls(name: str) -> list[tuple[str, Request]]:
    run = f"{STATE}/agents/{name}/run/{SID}/home"
    tree = f"{HOME}/.local/share/{name}-install"
    from rcc.agents.profiles import profile

    out = [("agent_install_tree_readable", Request("file-read-data", f"{tree}/bin/{name}"))]
    for rel in profile(name).state:
        out.append(("agent_state_writable", Request("file-write-create", f"{run}/{rel}/state.json")))
    for rel in profile(name).project_dirs:
        out.append(
            ("agent_project_dir", Request("file-write-create", f"{STATE}/agents/{name}/projects/k/{rel}/s.jsonl"))
        )
    return out


def _agent_attacks(name: str) -> list[tuple[str, Request]]:
    """Another agent's state and the kept settings are not this session's."""
    other = "codex" if name != "codex" else "claude"
    return [
        ("other_agents_state", Request("file-read-data", f"{STATE}/agents/{other}/run/x/home/.{other}/auth.json")),
        ("agent_settings_store", Request("file-write-data", f"{STATE}/agents/{name}/settings/x")),
        ("install_tree_read_only", Request("file-write-data", f"{HOME}/.local/share/{name}-install/bin/{name}")),
    ]


NETWORK_CONTROL = ("proxy_reachable", Request("network-outbound", addr=f"127.0.0.1:{PORT}"))
NETWORK_CONTROL_V6 = ("proxy_reachable_v6", Request("network-outbound", addr=f"[::1]:{PORT}"))


def _cases(kind: str) -> tuple[list[tuple[str, Request]], list[tuple[str, Request]]]:
    attacks = [*file_attacks(), *network_attacks(), *process_attacks()]
    ok = controls()
    if kind.startswith("agent-"):
        attacks += _agent_attacks(kind[6:])
        ok += _agent_controls(kind[6:])
    if kind == "no-network":
        attacks += [NETWORK_CONTROL]  # no proxy: not even the proxy's port
    else:
        ok += [NETWORK_CONTROL, NETWORK_CONTROL_V6]
    if kind == "extra":
        attacks += [
            ("secret_inside_allowed_parent", Request("file-read-data", f"{HOME}/data/secret.key")),
            ("secret_inside_writable_parent_replaced", Request("file-write-create", f"{HOME}/data/secret.key")),
            ("ro_path_write", Request("file-write-create", f"{HOME}/docs/x")),
        ]
        ok += [
            ("extra_rw", Request("file-write-create", f"{HOME}/data/out.csv")),
            ("extra_ro", Request("file-read-data", f"{HOME}/docs/a.md")),
        ]
    return attacks, ok


@pytest.mark.parametrize("kind", sb_world.KINDS)
def test_every_attack_is_denied(kind: str) -> None:
    prof = Profile(sb_world.profile(kind))
    attacks, _ = _cases(kind)
    allowed = [(name, req) for name, req in attacks if prof.allows(req)]
    assert allowed == [], f"{kind}: attacks the profile allows: {allowed}"


@pytest.mark.parametrize("kind", sb_world.KINDS)
def test_every_control_is_allowed(kind: str) -> None:
    prof = Profile(sb_world.profile(kind))
    _, ok = _cases(kind)
    denied = [(name, req, prof.decide(req)[1]) for name, req in ok if not prof.allows(req)]
    assert denied == [], f"{kind}: controls the profile denies: {denied}"


def test_denials_carry_the_session_tag() -> None:
    prof = Profile(sb_world.profile("default"))
    for _name, req in file_attacks()[:20]:
        allowed, rule = prof.decide(req)
        assert not allowed and rule is not None and rule.message == f"rcc-sbx-{SID}"


def test_simulator_last_match_wins_and_filters() -> None:
    """The simulator's own semantics, on small profiles (so the attack results above mean what they say)."""
    p = Profile(
        '(version 1)(deny default)(allow file-read* (subpath "/a"))(deny file-read-data (literal "/a/s"))'
        '(allow file-write* (require-all (subpath "/w") (require-not (subpath "/w/ro"))))'
        '(allow network-outbound (remote ip "localhost:80"))(allow file-read-data (regex #"^/r/[0-9]+$"))'
    )
    assert p.allows(Request("file-read-data", "/a/x"))
    assert not p.allows(Request("file-read-data", "/a/s"))
    assert p.allows(Request("file-read-metadata", "/a/s"))
    assert not p.allows(Request("file-read-data", "/ab"))  # subpath is component-wise
    assert p.allows(Request("file-write-create", "/w/x"))
    assert not p.allows(Request("file-write-create", "/w/ro/x"))
    assert p.allows(Request("network-outbound", addr="127.0.0.1:80"))
    assert p.allows(Request("network-outbound", addr="[::1]:80"))
    assert not p.allows(Request("network-outbound", addr="[::ffff:127.0.0.1]:80"))
    assert not p.allows(Request("network-outbound", addr="127.0.0.1:81"))
    assert p.allows(Request("file-read-data", "/r/12"))
    assert not p.allows(Request("file-read-data", "/r/12/x"))
    assert not p.allows(Request("lsopen"))
