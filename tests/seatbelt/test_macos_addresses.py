"""The proxy's own-address guard on macOS (no /proc): `ifconfig -a` parsed. Pure; the real ifconfig runs in the
macOS release workflow (every proxied connection there goes through it)."""

from __future__ import annotations

import ipaddress

from rcc.net.hostaddrs import parse_ifconfig

IFCONFIG = """\
lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384
	options=1203<RXCSUM,TXCSUM,TXSTATUS,SW_TIMESTAMP>
	inet 127.0.0.1 netmask 0xff000000
	inet6 ::1 prefixlen 128
	inet6 fe80::1%lo0 prefixlen 64 scopeid 0x1
en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
	ether 3c:22:fb:00:00:01
	inet6 fe80::1c2b:3a4d:5e6f:7081%en0 prefixlen 64 secured scopeid 0x6
	inet 192.168.1.23 netmask 0xffffff00 broadcast 192.168.1.255
	inet6 2001:db8::23 prefixlen 64 autoconf secured
	nd6 options=201<PERFORMNUD,DAD>
	media: autoselect
	status: active
utun3: flags=8051<UP,POINTOPOINT,RUNNING,MULTICAST> mtu 1380
	inet 10.8.0.2 --> 10.8.0.1 netmask 0xffffffff
"""


def test_parse_ifconfig_finds_every_address() -> None:
    want = {
        "127.0.0.1",
        "::1",
        "fe80::1",
        "fe80::1c2b:3a4d:5e6f:7081",
        "192.168.1.23",
        "2001:db8::23",
        "10.8.0.2",
    }
    assert parse_ifconfig(IFCONFIG) == {ipaddress.ip_address(a) for a in want}


def test_parse_ifconfig_ignores_other_lines() -> None:
    assert parse_ifconfig("inet\nether 00:11\ninet not-an-address\n") == set()
