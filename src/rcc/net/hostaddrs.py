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
    addrs: set[IPAddress] = set()
    for path, parse in (("/proc/net/fib_trie", parse_fib_trie), ("/proc/net/if_inet6", parse_if_inet6)):
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                addrs |= parse(f.read())
        except OSError:
            continue
    return frozenset(addrs)
