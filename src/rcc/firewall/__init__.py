"""rcc's kernel firewall: defence in depth for every network interface rcc owns.

How the parts fit:

    spec.py   FirewallSpec: a small frozen, validated value (interface prefix, proxy ports). The only input.
    nft.py    render_nft(spec) -> the nftables ruleset text for Linux (pure; golden-tested).
    pf.py     render_pf(spec) -> the pf anchor text for macOS (pure; golden-tested, never run by our tests).
    apply.py  the privileged part: validate rendered text, apply it atomically with one `nft -f`, remove
              exactly rcc's table, write/remove the installed files. Nothing else runs as root.

What the firewall keys on, and why (see docs/setup.md): *interface names*. Every network path out of an rcc
sandbox that is not the sandbox's own loopback crosses a host interface rcc names `rcc*` (a podman/docker
bridge `rcc0`, veths `rcc-...`). Names match at packet time with a wildcard, so interfaces created after the
rules were loaded are covered. uids do not work (a bwrap sandbox runs as the user; rootless containers'
traffic leaves through the user's own slirp/pasta process), cgroup matching resolves the path when the rule is
loaded (a slice that does not exist yet cannot be matched, and cgroup v1 hosts cannot match at all), and
packet marks would have to be set by rcc with privileges on every run.
"""

from rcc.firewall.spec import FirewallSpec

__all__ = ["FirewallSpec"]
