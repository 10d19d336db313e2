"""Test hosts for the firewall: network namespaces and veth pairs the tests create and remove.

    sandbox ns  eth0 10.199.0.2  fd72:6363::2  ==veth==  rcc-t0  10.199.0.1  fd72:6363::1   host ns
    outside ns  eth0 10.199.1.2  fd72:6364::2  ==veth==  out-t0  10.199.1.1  fd72:6364::1   host ns

"host ns" plays the machine rcc's firewall is installed on (it routes between the two), "sandbox ns" an rcc
sandbox behind an rcc-named interface, "outside ns" the rest of the world. Every nft command runs as
`ip netns exec <host ns> nft`: the machine's own ruleset is never touched. Nothing here talks to any address
outside these namespaces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from rcctest import is_root, require

NETPEER = os.path.join(os.path.dirname(__file__), "netpeer.py")
PROXY_PORT = 3128
ECHO_PORT = 9999  # a UDP echo on the outside host
TEST_USER = "rccuser"


def as_test_user() -> list[str]:
    """argv prefix that runs a command as the unprivileged test user, with that user's clean environment.
    Skips (fails under RCC_SANDBOX_MUST_WORK=1) when that cannot work here."""
    import pwd

    require(is_root(), f"switching to the test user {TEST_USER} needs root")
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        require(False, f"no user {TEST_USER} on this machine (.ci/run creates it)")
    pre = ["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}", "--init-groups", "--reset-env"]
    r = subprocess.run([*pre, sys.executable, "-c", "import rcc"], capture_output=True, text=True, check=False)
    require(r.returncode == 0, f"{TEST_USER} cannot run this checkout's python: {r.stderr.strip()}")
    return pre


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def have(binary: str) -> bool:
    import shutil

    return shutil.which(binary) is not None


@dataclass(frozen=True)
class Topology:
    host: str
    sandbox: str
    outside: str

    def nft_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.host, "nft")

    def probe(self, ns: str, kind: str, addr: str, port: int) -> str:
        r = sh("ip", "netns", "exec", ns, sys.executable, NETPEER, "probe", kind, addr, str(port), check=False)
        return r.stdout.strip() or r.stderr.strip()

    def from_sandbox(self, kind: str, addr: str, port: int) -> str:
        return self.probe(self.sandbox, kind, addr, port)

    def host_ruleset(self) -> str:
        return sh("ip", "netns", "exec", self.host, "nft", "list", "ruleset").stdout


def _serve(ns: str, tcp: str, udp: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, NETPEER, "serve", "--tcp", tcp, "--udp", udp],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    require(is_root(), "creating network namespaces needs root")
    for b in ("ip", "nft"):
        require(have(b), f"{b} is not installed")
    tag = f"{os.getpid() % 100000}"
    t = Topology(host=f"rcct-h{tag}", sandbox=f"rcct-s{tag}", outside=f"rcct-o{tag}")
    servers: list[subprocess.Popen[str]] = []
    try:
        for ns in (t.host, t.sandbox, t.outside):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", t.host, "link", "add", "rcc-t0", "type", "veth", "peer", "name", "eth0", "netns", t.sandbox)
        sh("ip", "-n", t.host, "link", "add", "out-t0", "type", "veth", "peer", "name", "eth0", "netns", t.outside)
        for ns, dev, v4, v6 in (
            (t.host, "rcc-t0", "10.199.0.1/24", "fd72:6363::1/64"),
            (t.sandbox, "eth0", "10.199.0.2/24", "fd72:6363::2/64"),
            (t.host, "out-t0", "10.199.1.1/24", "fd72:6364::1/64"),
            (t.outside, "eth0", "10.199.1.2/24", "fd72:6364::2/64"),
        ):
            sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", t.sandbox, "route", "add", "default", "via", "10.199.0.1")
        sh("ip", "-n", t.sandbox, "-6", "route", "add", "default", "via", "fd72:6363::1")
        sh("ip", "-n", t.outside, "route", "add", "default", "via", "10.199.1.1")
        sh("ip", "-n", t.outside, "-6", "route", "add", "default", "via", "fd72:6364::1")
        sh("ip", "netns", "exec", t.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", t.host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        servers.append(_serve(t.host, f"{PROXY_PORT},8080,53", "53"))
        servers.append(_serve(t.outside, f"{PROXY_PORT},80,53", f"53,{ECHO_PORT}"))
        servers.append(_serve(t.sandbox, "22", ""))
        # The topology itself must work before any test relies on a probe failing.
        for addr in ("10.199.1.2", "fd72:6364::2"):
            deadline = time.monotonic() + 10
            while t.from_sandbox("tcp", addr, 80) != "ok":
                assert time.monotonic() < deadline, f"test topology broken: sandbox cannot reach {addr}"
                time.sleep(0.2)
        yield t
    finally:
        for p in servers:
            p.terminate()
            p.wait(timeout=10)
        for ns in (t.host, t.sandbox, t.outside):
            sh("ip", "netns", "del", ns, check=False)
        # Nothing left behind: the namespaces (and with them the veths and their rulesets) are gone, and the
        # machine's own interfaces never had a test veth.
        left = sh("ip", "netns", "list").stdout
        assert not any(ns in left for ns in (t.host, t.sandbox, t.outside)), left
        assert "rcc-t0" not in sh("ip", "link", "show").stdout


@pytest.fixture
def clean_host(topology: Topology) -> Iterator[Topology]:
    """The host namespace with an empty ruleset before and after each test."""
    sh("ip", "netns", "exec", topology.host, "nft", "flush", "ruleset")
    yield topology
    sh("ip", "netns", "exec", topology.host, "nft", "flush", "ruleset")
