"""This host's own addresses, read from /proc (the reading thread's network namespace). Parsers are pure."""

from __future__ import annotations

import contextlib
import ipaddress

from rcc.net.hosts import IPAddress


def parse_fib_trie(text: str) -> set[ipaddress.IPv4Address]:
    """/proc/net/fib_trie: a leaf line `|-- a.b.c.d` followed by `/32 host LOCAL` is a local address."""
    out: set[ipaddress.IPv4Address] = set()
    last = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|-- "):
            last = s[4:]
        elif last and s.startswith("/32 host LOCAL"):
            with contextlib.suppress(ValueError):
                out.add(ipaddress.IPv4Address(last))
    return out


def parse_if_inet6(text: str) -> set[ipaddress.IPv6Address]:
    """/proc/net/if_inet6: first column is the address as 32 hex digits."""
    out: set[ipaddress.IPv6Address] = set()
    for line in text.splitlines():
        parts = line.split()
        if parts and len(parts[0]) == 32:
            with contextlib.suppress(ValueError):
                out.add(ipaddress.IPv6Address(int(parts[0], 16)))
    return out


def host_addresses() -> frozenset[IPAddress]:
    """Raises OSError when the IPv4 table cannot be read (e.g. EMFILE: a sandbox that filled the proxy's
    descriptor table must not get an empty set, which would switch the own-address guard off). A missing
    /proc/net/if_inet6 means IPv6 is disabled: no IPv6 addresses."""
    with open("/proc/net/fib_trie", encoding="ascii", errors="replace") as f:
        addrs: set[IPAddress] = set(parse_fib_trie(f.read()))
    try:
        with open("/proc/net/if_inet6", encoding="ascii", errors="replace") as f:
            addrs |= parse_if_inet6(f.read())
    except FileNotFoundError:
        pass
    return frozenset(addrs)
