"""This host's own addresses, read from /proc (the reading thread's network namespace) on Linux and from
`/sbin/ifconfig -a` on macOS (no /proc there; the seatbelt backend's proxy runs in the host's own network).
Parsers are pure."""

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


def parse_ifconfig(text: str) -> set[IPAddress]:
    """macOS `ifconfig -a`: lines `inet 192.0.2.7 netmask ...` and `inet6 fe80::1%lo0 prefixlen ...`."""
    out: set[IPAddress] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("inet", "inet6"):
            with contextlib.suppress(ValueError):
                out.add(ipaddress.ip_address(parts[1].split("%")[0]))
    return out


IFCONFIG = "/sbin/ifconfig"


def _macos_addresses() -> frozenset[IPAddress]:
    """Raises OSError when ifconfig cannot run or fails (fail closed, as for /proc below)."""
    import subprocess

    try:
        r = subprocess.run([IFCONFIG, "-a"], capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired as e:
        raise OSError(f"{IFCONFIG} timed out") from e
    addrs = parse_ifconfig(r.stdout)
    if r.returncode != 0 or not addrs:
        raise OSError(f"{IFCONFIG} -a failed (exit {r.returncode})")
    return frozenset(addrs)


def host_addresses() -> frozenset[IPAddress]:
    """Raises OSError when the IPv4 table cannot be read (e.g. EMFILE: a sandbox that filled the proxy's
    descriptor table must not get an empty set, which would switch the own-address guard off). A missing
    /proc/net/if_inet6 means IPv6 is disabled: no IPv6 addresses."""
    import sys

    if sys.platform == "darwin":
        return _macos_addresses()
    with open("/proc/net/fib_trie", encoding="ascii", errors="replace") as f:
        addrs: set[IPAddress] = set(parse_fib_trie(f.read()))
    try:
        with open("/proc/net/if_inet6", encoding="ascii", errors="replace") as f:
            addrs |= parse_if_inet6(f.read())
    except FileNotFoundError:
        pass
    return frozenset(addrs)
