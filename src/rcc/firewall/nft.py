"""Render rcc's nftables table for Linux. Pure: text in, text out; tests pin it with golden files.

Invariants:
1. The ruleset touches exactly one table, `inet rcc` (IPv4 and IPv6 in one family). Applying it never
   flushes or edits anything else on the machine.
2. The file replaces that table in one transaction (`table` + `delete table` + definition): `nft -f` applies
   all of it or nothing, so there is never a moment with a half-loaded firewall, and re-applying is harmless.
3. Only `drop` decides anything. In nftables an `accept` ends evaluation of *this* base chain only, while a
   `drop` is final for the packet. Our accepts therefore never open a hole in anyone else's firewall, and our
   drops hold whatever other tables (docker, podman, firewalld) accept.
4. Header lines carry the spec (JSON) and a digest of the table text, so `rcc doctor` can tell whether the
   installed and the loaded rulesets are what this rcc would render.
"""

from __future__ import annotations

import hashlib

from rcc.firewall.spec import FirewallSpec

TABLE_FAMILY = "inet"
TABLE_NAME = "rcc"
SPEC_HEADER = "# rcc-firewall-spec: "
DIGEST_PREFIX = "rcc sandbox firewall; digest "

_PRIORITY = "filter - 5"  # before the distributions' default filter chains; only order of accepts depends on it


def _table_body(spec: FirewallSpec) -> list[str]:
    glob = spec.interface_glob
    ports = ", ".join(str(p) for p in spec.proxy_ports)
    return [
        "\tcounter dns_dropped {",
        '\t\tcomment "DNS from rcc sandboxes: they resolve names through the proxy"',
        "\t}",
        "",
        "\tcounter input_dropped {",
        '\t\tcomment "other traffic from rcc sandboxes to this host"',
        "\t}",
        "",
        "\tcounter forward_dropped {",
        '\t\tcomment "traffic routed to or from rcc sandboxes"',
        "\t}",
        "",
        "\tchain input {",
        f"\t\ttype filter hook input priority {_PRIORITY}; policy accept;",
        f'\t\tiifname "{glob}" jump sandbox_to_host',
        "\t}",
        "",
        "\tchain sandbox_to_host {",
        # The proxy: only on the host's own address *on the interface the packet came in on* (fib ... iif),
        # so a sandbox cannot reach a service on another host address (or 127.0.0.1) that shares the port.
        f"\t\ttcp dport {{ {ports} }} fib daddr . iif type local accept",
        # IPv6 needs neighbour discovery to reach the proxy at all; hop limit 255 means on-link only.
        "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept",
        "\t\tmeta l4proto { tcp, udp } th dport 53 counter name dns_dropped drop",
        "\t\tcounter name input_dropped drop",
        "\t}",
        "",
        "\tchain forward {",
        f"\t\ttype filter hook forward priority {_PRIORITY}; policy accept;",
        # Sandboxes never route anywhere: their only way out is the proxy, which is on this host.
        f'\t\tiifname "{glob}" meta l4proto {{ tcp, udp }} th dport 53 counter name dns_dropped drop',
        f'\t\tiifname "{glob}" counter name forward_dropped drop',
        # Nothing routes into a sandbox either (published ports, other hosts on the LAN).
        f'\t\toifname "{glob}" counter name forward_dropped drop',
        "\t}",
    ]


def rule_counts(spec: FirewallSpec) -> dict[str, int]:
    """Chain name -> number of rules the rendered table has (doctor compares a loaded table with it)."""
    counts: dict[str, int] = {}
    chain = ""
    for line in _table_body(spec):
        s = line.strip()
        if s.startswith("chain "):
            chain = s.split()[1]
            counts[chain] = 0
        elif s == "}":
            chain = ""
        elif chain and s and not s.startswith("type "):
            counts[chain] += 1
    return counts


def digest(spec: FirewallSpec) -> str:
    """sha256 of the table body: changes whenever the rendered rules change (spec or rcc version)."""
    return hashlib.sha256("\n".join(_table_body(spec)).encode()).hexdigest()[:16]


def table_comment(spec: FirewallSpec) -> str:
    return DIGEST_PREFIX + digest(spec)


def render_nft(spec: FirewallSpec) -> str:
    """The complete `nft -f` file: replaces table inet rcc atomically."""
    t = f"{TABLE_FAMILY} {TABLE_NAME}"
    lines = [
        "#!/usr/sbin/nft -f",
        "# rcc's kernel firewall (defence in depth). Written by `sudo rcc setup --firewall`;",
        "# removed by `sudo rcc setup --firewall --uninstall`. Edits are overwritten.",
        "#",
        f"# Traffic arriving on interfaces {spec.interface_glob!r} (rcc's sandbox networks) may reach TCP",
        f"# port(s) {', '.join(map(str, spec.proxy_ports))} (rcc's egress proxy) on this host's address on that",
        "# interface, and nothing else: DNS and everything else is dropped and counted, IPv4 and IPv6.",
        SPEC_HEADER + spec.to_json(),
        "",
        "# One transaction: create the table if it is missing, delete it, define it again.",
        f"table {t}",
        f"delete table {t}",
        "",
        f"table {t} {{",
        f'\tcomment "{table_comment(spec)}"',
        "",
        *_table_body(spec),
        "}",
        "",
    ]
    return "\n".join(lines)


def render_delete() -> str:
    """The `nft -f` text that removes rcc's table, and only it, whether or not it is loaded."""
    t = f"{TABLE_FAMILY} {TABLE_NAME}"
    return f"table {t}\ndelete table {t}\n"


def spec_from_rendered(text: str, where: str) -> FirewallSpec | None:
    """The spec recorded in an installed ruleset's header, or None if there is no header line."""
    for line in text.splitlines():
        if line.startswith(SPEC_HEADER):
            return FirewallSpec.from_json(line[len(SPEC_HEADER) :], where)
    return None
