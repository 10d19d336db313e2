"""Render rcc's pf anchor for macOS. Pure; golden-tested. NOT run on macOS by rcc's tests.

Same intent as nft.py: traffic entering on rcc's sandbox interfaces may reach the proxy port on this host's
own address on that interface; DNS and everything else is dropped, labelled (pf's per-rule counters:
`sudo pfctl -a com.apple/rcc -s labels`), IPv4 and IPv6.

Invariants:
1. The anchor is loaded under `com.apple/rcc`: macOS's stock /etc/pf.conf evaluates `anchor "com.apple/*"`,
   so rcc's rules take effect without editing the system's pf.conf, and flushing the anchor removes exactly
   them.
2. Interfaces are matched as the interface group named by the spec's prefix (`on rcc`): pf matches a group by
   membership, so rcc's container backend adds its interfaces to the group instead of renaming them.
3. `quick` everywhere: the first matching rule in the anchor decides and nothing after it can re-open a path.
"""

from __future__ import annotations

from rcc.firewall.spec import FirewallSpec

ANCHOR = "com.apple/rcc"
SPEC_HEADER = "# rcc-firewall-spec: "


def render_pf(spec: FirewallSpec) -> str:
    group = spec.interface_prefix
    ports = " ".join(str(p) for p in spec.proxy_ports)
    return "\n".join(
        [
            "# rcc's pf anchor (macOS; defence in depth). Written by `sudo rcc setup --firewall`;",
            "# removed by `sudo rcc setup --firewall --uninstall`. Edits are overwritten.",
            f"# Loaded with: pfctl -a {ANCHOR} -f <this file>   (pf itself enabled with: pfctl -E)",
            SPEC_HEADER + spec.to_json(),
            "",
            f'rcc_proxy_ports = "{{ {ports} }}"',
            "",
            "# IPv6 neighbour discovery: without it the proxy is unreachable over IPv6.",
            f"pass in quick on {group} inet6 proto icmp6 icmp6-type {{ neighbrsol, neighbradv }} keep state",
            f"pass out quick on {group} inet6 proto icmp6 icmp6-type {{ neighbrsol, neighbradv }} keep state",
            "# rcc's egress proxy, on this host's own address on that interface.",
            f"pass in quick on {group} proto tcp from any to ({group}) port $rcc_proxy_ports flags S/SA keep state",
            "# DNS (sandboxes resolve names through the proxy) and everything else: dropped and counted.",
            f"block drop in log quick on {group} proto {{ tcp, udp }} from any to any port domain"
            ' label "rcc-dns-dropped"',
            f'block drop in log quick on {group} all label "rcc-dropped"',
            "# Nothing is routed into a sandbox (replies to the proxy connections above pass by their state).",
            f'block drop out log quick on {group} all label "rcc-inbound-dropped"',
            "",
        ]
    )


PFCTL = "/sbin/pfctl"  # by its absolute path: sudo's PATH, or a pfctl earlier on PATH, never decides


def load_argv(path: str, pfctl: str = PFCTL) -> list[list[str]]:
    """The commands that validate and load the anchor and make sure pf is enabled (as root). `pfctl -E` takes
    a reference on pf's enable count, so pf stays on even if another tool that enabled it lets go."""
    return [[pfctl, "-n", "-a", ANCHOR, "-f", path], [pfctl, "-a", ANCHOR, "-f", path], [pfctl, "-E"]]


def unload_argv(pfctl: str = PFCTL) -> list[list[str]]:
    """Flush rcc's anchor (its rules, tables and states) and nothing else in pf."""
    return [[pfctl, "-a", ANCHOR, "-F", "all"]]
