"""rcc's nftables firewall, applied for real inside test network namespaces and checked with real traffic.

Each attack test names what it stops; the control tests beside them show the legitimate path (the proxy)
still works and that interfaces rcc does not own are untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from fwhosts import ECHO_PORT, NETPEER, PROXY_PORT, Topology, as_test_user, sh

from rcc.errors import RccError
from rcc.firewall import apply, nft
from rcc.firewall.spec import FirewallSpec

pytestmark = pytest.mark.netns

HOST_V4, HOST_V6 = "10.199.0.1", "fd72:6363::1"  # the host's address on the rcc interface
HOST_OUT_V4, HOST_OUT_V6 = "10.199.1.1", "fd72:6364::1"  # the host's address on another interface
OUTSIDE_V4, OUTSIDE_V6 = "10.199.1.2", "fd72:6364::2"
SANDBOX_V4, SANDBOX_V6 = "10.199.0.2", "fd72:6363::2"


def install(t: Topology, spec: FirewallSpec | None = None) -> apply.Nft:
    runner = apply.Nft(t.nft_prefix())
    apply.apply_ruleset(nft.render_nft(spec or FirewallSpec()), runner)
    return runner


# ---------------------------------------------------------------- controls


@pytest.mark.parametrize("addr", [HOST_V4, HOST_V6])
def test_control_sandbox_reaches_proxy(clean_host: Topology, addr: str) -> None:
    install(clean_host)
    assert clean_host.from_sandbox("tcp", addr, PROXY_PORT) == "ok"


@pytest.mark.parametrize("addr", [HOST_OUT_V4, HOST_OUT_V6])
def test_control_other_interfaces_untouched(clean_host: Topology, addr: str) -> None:
    """A host on an interface rcc does not own still reaches every service on the host."""
    install(clean_host)
    assert clean_host.probe(clean_host.outside, "tcp", addr, 8080) == "ok"
    assert clean_host.probe(clean_host.outside, "udp", addr, 53) == "ok"


@pytest.mark.parametrize("addr", [OUTSIDE_V4, OUTSIDE_V6])
def test_control_without_firewall_sandbox_can_route_out(clean_host: Topology, addr: str) -> None:
    """The paths the attack tests close are open without rcc's table (so those tests prove something)."""
    assert clean_host.from_sandbox("tcp", addr, 80) == "ok"
    assert clean_host.from_sandbox("udp", addr, 53) == "ok"
    assert clean_host.from_sandbox("tcp", HOST_V4, 8080) == "ok"


# ---------------------------------------------------------------- attacks


@pytest.mark.parametrize("addr", [OUTSIDE_V4, OUTSIDE_V6])
def test_sandbox_routing_around_proxy_is_dropped(clean_host: Topology, addr: str) -> None:
    runner = install(clean_host)
    assert clean_host.from_sandbox("tcp", addr, 80) == "timeout"
    assert clean_host.from_sandbox("tcp", addr, PROXY_PORT) == "timeout"  # the port alone is not the proxy
    assert apply.counters(runner)["forward_dropped"] >= 2


@pytest.mark.parametrize("addr", [HOST_V4, HOST_V6, OUTSIDE_V4, OUTSIDE_V6])
def test_dns_exfiltration_from_sandbox_is_dropped(clean_host: Topology, addr: str) -> None:
    runner = install(clean_host)
    assert clean_host.from_sandbox("udp", addr, 53) == "timeout"
    assert clean_host.from_sandbox("tcp", addr, 53) == "timeout"
    assert apply.counters(runner)["dns_dropped"] >= 2


@pytest.mark.parametrize("addr", [HOST_V4, HOST_V6])
def test_sandbox_reaching_other_host_services_is_dropped(clean_host: Topology, addr: str) -> None:
    runner = install(clean_host)
    assert clean_host.from_sandbox("tcp", addr, 8080) == "timeout"
    assert apply.counters(runner)["input_dropped"] >= 1


@pytest.mark.parametrize("addr", [HOST_OUT_V4, HOST_OUT_V6, "127.0.0.1"])
def test_sandbox_reaching_proxy_port_on_other_host_address_is_dropped(clean_host: Topology, addr: str) -> None:
    """Only the host's address on the sandbox's own interface counts as the proxy (fib daddr . iif)."""
    install(clean_host)
    assert clean_host.from_sandbox("tcp", addr, PROXY_PORT) != "ok"


@pytest.mark.parametrize("addr", [SANDBOX_V4, SANDBOX_V6])
def test_connection_into_sandbox_from_outside_is_dropped(clean_host: Topology, addr: str) -> None:
    assert clean_host.probe(clean_host.outside, "tcp", addr, 22) == "ok"  # control: open without rcc's table
    runner = install(clean_host)
    assert clean_host.probe(clean_host.outside, "tcp", addr, 22) == "timeout"
    assert apply.counters(runner)["forward_dropped"] >= 1


def test_other_tables_accept_cannot_reopen_sandbox(clean_host: Topology) -> None:
    """Another firewall's `accept` (docker, firewalld) does not override rcc's drop: drops are final."""
    other = "table inet other {\n chain forward {\n  type filter hook forward priority -100; policy accept;\n"
    other += "  accept\n }\n chain input {\n  type filter hook input priority -100; policy accept;\n  accept\n }\n}\n"
    subprocess.run(["ip", "netns", "exec", clean_host.host, "nft", "-f", "-"], input=other, text=True, check=True)
    install(clean_host)
    assert clean_host.from_sandbox("tcp", OUTSIDE_V4, 80) == "timeout"
    assert clean_host.from_sandbox("tcp", HOST_V4, 8080) == "timeout"
    assert clean_host.from_sandbox("tcp", HOST_V4, PROXY_PORT) == "ok"


# ---------------------------------------------------------------- lifecycle


def test_reapply_is_idempotent_and_current(clean_host: Topology) -> None:
    runner = install(clean_host)
    first = clean_host.host_ruleset()
    install(clean_host)
    assert clean_host.host_ruleset() == first
    spec = FirewallSpec()
    loaded = apply.loaded_table(runner)
    assert loaded is not None
    assert apply.loaded_is_current(loaded, spec, apply.table_listing(runner))
    assert not apply.loaded_is_current(loaded, FirewallSpec(proxy_ports=(8080,)), apply.table_listing(runner))


def test_hand_deleted_rule_is_not_current(clean_host: Topology) -> None:
    runner = install(clean_host)
    sh("ip", "netns", "exec", clean_host.host, "nft", "flush", "chain", "inet", "rcc", "forward")
    loaded = apply.loaded_table(runner)
    assert loaded is not None
    assert not apply.loaded_is_current(loaded, FirewallSpec(), apply.table_listing(runner))


def test_changed_policy_replaces_table(clean_host: Topology) -> None:
    install(clean_host)
    install(clean_host, FirewallSpec(proxy_ports=(8080,)))
    assert clean_host.from_sandbox("tcp", HOST_V4, 8080) == "ok"
    assert clean_host.from_sandbox("tcp", HOST_V4, PROXY_PORT) == "timeout"
    assert clean_host.host_ruleset().count("table inet rcc") == 1


def test_no_packet_leaks_while_the_table_is_replaced(clean_host: Topology) -> None:
    """Atomic replacement: a datagram per millisecond from the sandbox while the table is replaced 20 times
    (alternating specs, so every apply really replaces it). Not one gets through."""
    runner = install(clean_host)
    hammer = subprocess.Popen(
        ["ip", "netns", "exec", clean_host.sandbox, sys.executable, NETPEER, "hammer", OUTSIDE_V4, str(ECHO_PORT), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for n in range(20):
            apply.apply_ruleset(nft.render_nft(FirewallSpec(proxy_ports=(PROXY_PORT + n % 2,))), runner)
    finally:
        out, _ = hammer.communicate(timeout=30)
    assert int(out) == 0
    assert apply.counters(runner)["forward_dropped"] > 0


def test_control_non_atomic_replacement_would_leak(clean_host: Topology) -> None:
    """Shows the test above can see a gap: delete-then-load as two commands lets packets through."""
    runner = install(clean_host)
    hammer = subprocess.Popen(
        ["ip", "netns", "exec", clean_host.sandbox, sys.executable, NETPEER, "hammer", OUTSIDE_V4, str(ECHO_PORT), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(20):
            runner.run(["delete", "table", "inet", "rcc"])
            runner.run(["-f", "-"], stdin=nft.render_nft(FirewallSpec()))
    finally:
        out, _ = hammer.communicate(timeout=30)
    assert int(out) > 0, out
    print(f"non-atomic replacement leaked {int(out)} datagrams")


def test_control_hammer_gets_echoes_without_firewall(clean_host: Topology) -> None:
    out = sh(
        "ip", "netns", "exec", clean_host.sandbox, sys.executable, NETPEER, "hammer", OUTSIDE_V4, str(ECHO_PORT), "0.5"
    ).stdout
    assert int(out) > 100


def test_rejected_ruleset_leaves_previous_firewall_in_place(clean_host: Topology) -> None:
    """All or nothing: a ruleset nft rejects changes nothing (the old table keeps protecting)."""
    runner = install(clean_host)
    before = clean_host.host_ruleset()
    bad = nft.render_nft(FirewallSpec()).replace("policy accept;", "policy maybe;", 1)
    with pytest.raises(RccError, match="nft -c -f - failed"):
        apply.apply_ruleset(bad, runner)
    assert clean_host.host_ruleset() == before
    assert clean_host.from_sandbox("tcp", OUTSIDE_V4, 80) == "timeout"


def test_remove_deletes_only_rccs_table(clean_host: Topology) -> None:
    subprocess.run(
        ["ip", "netns", "exec", clean_host.host, "nft", "-f", "-"],
        input="table ip mine {\n chain c {\n  counter\n }\n}\n",
        text=True,
        check=True,
    )
    mine = clean_host.host_ruleset()
    runner = install(clean_host)
    assert apply.remove_table(runner) is True
    assert clean_host.host_ruleset() == mine
    assert apply.remove_table(runner) is False  # second time: nothing to do, no error
    assert clean_host.from_sandbox("tcp", OUTSIDE_V4, 80) == "ok"


# ---------------------------------------------------------------- the command, end to end


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def rcc(t: Topology, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`rcc ARGS` run inside the host namespace (so its nft sees only that namespace's ruleset)."""
    pre = as_test_user() if user else []
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    return subprocess.run(
        ["ip", "netns", "exec", t.host, *pre, sys.executable, "-m", "rcc", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_setup_firewall_command_installs_is_noop_then_uninstalls(clean_host: Topology, tmp_path: object) -> None:
    root = str(tmp_path)
    r = rcc(clean_host, "setup", "--firewall", "--persist", "--root", root)
    assert r.returncode == 0, r.stderr
    assert "loaded   nftables table inet rcc" in r.stdout
    assert clean_host.from_sandbox("tcp", OUTSIDE_V4, 80) == "timeout"
    assert clean_host.from_sandbox("tcp", HOST_V6, PROXY_PORT) == "ok"
    ruleset = os.path.join(root, "etc/rcc/firewall.nft")
    unit = os.path.join(root, "etc/systemd/system/rcc-firewall.service")
    link = os.path.join(root, "etc/systemd/system/multi-user.target.wants/rcc-firewall.service")
    assert read(ruleset) == nft.render_nft(FirewallSpec())
    assert os.readlink(link) == "../rcc-firewall.service"
    assert "ExecStart=" in read(unit)

    # What the unit's ExecStart does at boot (and again on every nftables restart): load the installed file.
    for _ in range(2):
        sh("ip", "netns", "exec", clean_host.host, "nft", "-f", ruleset)
    assert clean_host.host_ruleset().count("table inet rcc") == 1

    again = rcc(clean_host, "setup", "--firewall", "--persist", "--root", root)
    assert again.returncode == 0, again.stderr
    assert "ok       nftables table inet rcc is loaded and current" in again.stdout
    assert "wrote" not in again.stdout

    # Something of the admin's own next to ours must survive the uninstall.
    os.makedirs(os.path.join(root, "etc/systemd/system/multi-user.target.wants"), exist_ok=True)
    theirs = os.path.join(root, "etc/systemd/system/theirs.service")
    with open(theirs, "w") as f:
        f.write("[Unit]\n")
    gone = rcc(clean_host, "setup", "--firewall", "--uninstall", "--root", root)
    assert gone.returncode == 0, gone.stderr
    assert "deleted  nftables table inet rcc" in gone.stdout
    for p in (ruleset, unit, link, os.path.join(root, "etc/rcc")):
        assert not os.path.lexists(p), p
    assert os.path.exists(theirs)
    assert clean_host.host_ruleset().strip() == ""
    assert clean_host.from_sandbox("tcp", OUTSIDE_V4, 80) == "ok"


def test_setup_firewall_as_normal_user_says_what_to_run(clean_host: Topology) -> None:
    r = rcc(clean_host, "setup", "--firewall", user="rccuser")
    assert r.returncode == 71, r.stderr
    assert "sudo rcc setup --firewall" in r.stderr
    assert clean_host.host_ruleset().strip() == ""


def test_setup_firewall_dry_run_prints_exact_ruleset_as_normal_user(clean_host: Topology) -> None:
    r = rcc(clean_host, "setup", "--firewall", "--dry-run", user="rccuser")
    assert r.returncode == 0, r.stderr
    assert nft.render_nft(FirewallSpec()) in r.stdout
    assert clean_host.host_ruleset().strip() == ""


def firewall_check(t: Topology, root: str) -> dict[str, object]:
    r = rcc(t, "doctor", "--json", "--root", root)
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    return checks["firewall"]


def test_doctor_reports_installed_loaded_tampered_and_unloaded_firewall(clean_host: Topology, tmp_path: object) -> None:
    root = str(tmp_path)
    assert firewall_check(clean_host, root)["summary"] == "not installed (optional)"
    assert rcc(clean_host, "setup", "--firewall", "--root", root).returncode == 0
    clean_host.from_sandbox("udp", HOST_V4, 53)  # one dropped DNS packet shows up in the counters
    c = firewall_check(clean_host, root)
    assert c["status"] == "ok", c
    assert "loaded, current" in str(c["summary"]) and "dns_dropped 1" in str(c["summary"])

    sh("ip", "netns", "exec", clean_host.host, "nft", "flush", "chain", "inet", "rcc", "forward")
    c = firewall_check(clean_host, root)
    assert (c["status"], c["fix"]) == ("warn", "sudo rcc setup --firewall"), c

    sh("ip", "netns", "exec", clean_host.host, "nft", "delete", "table", "inet", "rcc")
    c = firewall_check(clean_host, root)
    assert c["status"] == "warn" and "not loaded" in str(c["summary"]), c


def test_non_root_doctor_reads_installed_firewall_without_nft_access(clean_host: Topology) -> None:
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="rcc-fwroot-")  # pytest's tmp_path is not readable by other users
    try:
        os.chmod(root, 0o755)
        assert rcc(clean_host, "setup", "--firewall", "--root", root).returncode == 0
        r = rcc(clean_host, "doctor", "--json", "--root", root, user="rccuser")
        checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
        assert checks["firewall"]["status"] == "ok", checks["firewall"]
        assert "needs root" in checks["firewall"]["summary"]
    finally:
        shutil.rmtree(root)


def test_sandbox_interface_created_after_firewall_is_covered(clean_host: Topology) -> None:
    """Interface names match at packet time: a container network rcc creates later is protected at once."""
    install(clean_host)
    late = clean_host.sandbox.replace("rcct-s", "rcct-l")
    try:
        sh("ip", "netns", "add", late)
        sh("ip", "-n", clean_host.host, "link", "add", "rcc-t1", "type", "veth", "peer", "name", "eth0", "netns", late)
        sh("ip", "-n", clean_host.host, "addr", "add", "10.199.2.1/24", "dev", "rcc-t1")
        sh("ip", "-n", late, "addr", "add", "10.199.2.2/24", "dev", "eth0")
        for ns, dev in ((clean_host.host, "rcc-t1"), (late, "eth0"), (late, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", late, "route", "add", "default", "via", "10.199.2.1")
        assert clean_host.probe(late, "tcp", "10.199.2.1", PROXY_PORT) == "ok"
        assert clean_host.probe(late, "tcp", OUTSIDE_V4, 80) == "timeout"
        assert clean_host.probe(late, "udp", "10.199.2.1", 53) == "timeout"
    finally:
        sh("ip", "netns", "del", late, check=False)  # takes its veth (and rcc-t1 with it)
    deadline = time.monotonic() + 10  # the kernel dismantles a deleted namespace asynchronously
    while "rcc-t1" in sh("ip", "-n", clean_host.host, "link", "show").stdout:
        assert time.monotonic() < deadline, "rcc-t1 left behind"
        time.sleep(0.1)


def test_interfaces_outside_the_prefix_are_not_matched(clean_host: Topology) -> None:
    """The prefix is the whole key: with prefix `rccx`, the `rcc-t0` sandbox is not covered (so the default
    prefix `rcc` is a reserved name space for rcc's interfaces)."""
    install(clean_host, FirewallSpec(interface_prefix="rccx"))
    assert clean_host.from_sandbox("tcp", OUTSIDE_V4, 80) == "ok"
