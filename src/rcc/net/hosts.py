"""Host names and IP literals, normalised once so that every later comparison is exact.

Invariants:
1. `normalize_host()` returns either a `Name` (lower-case ASCII, IDNA-encoded, no trailing dot, valid labels) or
   an `ipaddress` object; anything else raises HostError. There is no "looks odd, pass it through" case.
2. A host that *looks numeric* (its last label is a number, as in the WHATWG URL standard's "ends in a number")
   is an IPv4 literal or an error: `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` all mean 127.0.0.1 to the
   C resolver, so they are judged as 127.0.0.1 here and never handed to DNS as "names".
3. IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is judged as the IPv4 address it denotes. Other IPv6 forms that carry
   an IPv4 address (IPv4-compatible, NAT64, 6to4, Teredo, ISATAP) stay IPv6 addresses, and embedded_ipv4()
   names what they carry, for the address guards (rules.check_address) to judge too.
4. Host and port are never split on ':' (IPv6); authority parsing lives in `split_authority()`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NewType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Name = NewType("Name", str)
Host = Name | IPAddress

MAX_NAME = 253
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)\Z")
# authority = host [ ":" port ] (RFC 3986 §3.2; IPv6 literals in brackets, §3.2.2). The host part of the
# second form excludes ':' so an unbracketed IPv6 literal can never be mistaken for host:port.
_AUTH_V6 = re.compile(r"^\[(?P<host>[0-9A-Fa-f:.]+)\](?::(?P<port>[0-9]{1,5}))?\Z")
_AUTH_REG = re.compile(r"^(?P<host>[^:\[\]@/?#\s]+)(?::(?P<port>[0-9]{1,5}))?\Z")


class HostError(ValueError):
    """Not a usable host name or address."""


def unmap(addr: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d -> a.b.c.d; everything else unchanged."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


# IPv6 ranges that carry an IPv4 address inside them. A connection to one of these may reach the embedded IPv4
# address (a sit0 tunnel for ::/96, a NAT64 gateway, a 6to4 or Teredo relay, an ISATAP router), depending only on
# routes this machine or its network happen to have: so such an address is judged by what it embeds, too.
_V4_COMPAT = ipaddress.IPv6Network("::/96")  # IPv4-compatible, RFC 4291 §2.5.5.1 (deprecated, sit0 still routes it)
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # IPv4-translated, RFC 2765 §2.1 (SIIT)
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")  # NAT64 well-known prefix, RFC 6052 §2.1
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64 prefix, RFC 8215: any length >= /48
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # 6to4, RFC 3056
_TEREDO = ipaddress.IPv6Network("2001::/32")  # Teredo, RFC 4380
_ISATAP_IID = 0x00005EFE  # ISATAP interface identifier ::0:5efe:a.b.c.d (u/g bits may be set), RFC 5214 §6.1


def _rfc6052(value: int, prefix_len: int) -> ipaddress.IPv4Address:
    """The IPv4 address in an RFC 6052 §2.2 IPv4-embedded IPv6 address with a prefix of `prefix_len` bits:
    the 32 bits follow the prefix, skipping bits 64-71 (the "u" octet)."""
    bits = f"{value:0128b}"
    if prefix_len >= 64:
        start = 72 if prefix_len == 64 else prefix_len
        v4 = bits[start : start + 32]
    else:
        v4 = bits[prefix_len:64] + bits[72 : 72 + 32 - (64 - prefix_len)]
    return ipaddress.IPv4Address(int(v4, 2))


def embedded_ipv4(addr: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address an IPv6 address may carry (several when its format is ambiguous), else ()."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return ()
    v = int(addr)
    low = ipaddress.IPv4Address(v & 0xFFFFFFFF)
    out: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        out.append(addr.ipv4_mapped)
    if addr in _V4_COMPAT and v > 1:  # not :: or ::1, which are themselves (unspecified, loopback)
        out.append(low)
    if addr in _V4_TRANSLATED or addr in _NAT64_WKP:
        out.append(low)
    if addr in _NAT64_LOCAL:
        # The prefix length in use is not in the address: judge every reading. Readings in 0.0.0.0/8 are what the
        # zero padding of another length looks like, not an address anyone meant; skipping them keeps ordinary
        # local-use NAT64 addresses usable (an unambiguous 0.x.y.z, e.g. ::0.0.0.5 or 64:ff9b::5, is still judged).
        out.extend(a for a in (_rfc6052(v, n) for n in (48, 56, 64, 96)) if int(a) >> 24 != 0)
    if addr.sixtofour is not None:
        out.append(addr.sixtofour)
    if addr.teredo is not None:
        out.extend(addr.teredo)  # (server, client)
    if (v >> 32) & 0xFCFFFFFF == _ISATAP_IID:
        out.append(low)
    return tuple(dict.fromkeys(out))


def parse_ipv4_loose(text: str) -> ipaddress.IPv4Address:
    """IPv4 in any spelling inet_aton(3) accepts (1-4 parts; decimal, 0x hex, 0-prefixed octal), strictly:
    no trailing garbage (glibc's inet_aton ignores anything after a space; we do not)."""
    parts = text.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        raise HostError(f"{text!r} is not an IPv4 address")
    nums: list[int] = []
    for p in parts:
        if not _NUMERIC_LABEL.match(p):
            raise HostError(f"{text!r} is not an IPv4 address")
        if p[:2] in ("0x", "0X"):
            if len(p) == 2:
                raise HostError(f"{text!r} is not an IPv4 address (empty hex part)")
            nums.append(int(p[2:], 16))
        elif len(p) > 1 and p[0] == "0":
            if not all(c in "01234567" for c in p):
                raise HostError(f"{text!r} is not an IPv4 address (bad octal part {p!r})")
            nums.append(int(p, 8))
        else:
            nums.append(int(p))
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(nums)):
        raise HostError(f"{text!r} is not an IPv4 address (part out of range)")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def normalize_name(text: str) -> Name:
    """Case-fold, drop one trailing dot, IDNA-encode (Python's IDNA 2003 codec: nameprep then punycode),
    then insist on LDH(+underscore) labels of 1..63 octets and at most 253 octets in total."""
    s = text.strip()
    if s.endswith("."):
        s = s[:-1]
    if not s:
        raise HostError("empty host name")
    if not s.isascii():
        try:
            s = s.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise HostError(f"{text!r} is not a valid international domain name ({e})") from None
    s = s.lower()
    if len(s) > MAX_NAME:
        raise HostError(f"host name too long ({len(s)} > {MAX_NAME})")
    for label in s.split("."):
        if not _LABEL.match(label):
            raise HostError(f"{text!r} is not a valid host name (label {label!r})")
    return Name(s)


def normalize_host(text: str) -> Host:
    """A host as written in a URL, CONNECT target, SOCKS5 request or rule -> Name or IP address."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
        if ":" not in s:
            raise HostError(f"{text!r}: brackets are only for IPv6 literals")
    if ":" in s:
        if "%" in s:
            raise HostError(f"{text!r}: IPv6 zone identifiers are not allowed")
        try:
            return unmap(ipaddress.IPv6Address(s))
        except ValueError:
            raise HostError(f"{text!r} is not a valid IPv6 address") from None
    if not s:
        raise HostError("empty host name")
    labels = s.rstrip(".").split(".") if s != "." else [""]
    if labels and _NUMERIC_LABEL.match(labels[-1]):
        return parse_ipv4_loose(s)
    return normalize_name(s)


def host_text(host: Host) -> str:
    """The canonical spelling (IPv6 without brackets)."""
    return str(host)


def split_authority(text: str, default_port: int | None = None) -> tuple[str, int]:
    """RFC 3986 authority without userinfo -> (host, port). IPv6 must be bracketed; the host comes back
    without brackets and is not yet normalised. Raises HostError when the port is missing and there is no
    default, or is out of range."""
    m = _AUTH_V6.match(text) or _AUTH_REG.match(text)
    if not m:
        raise HostError(f"{text!r} is not host[:port] (IPv6 literals need brackets: [::1]:443)")
    port_s = m.group("port")
    if port_s is None:
        if default_port is None:
            raise HostError(f"{text!r} has no port")
        return m.group("host"), default_port
    port = int(port_s)
    if not 1 <= port <= 65535:
        raise HostError(f"{text!r}: port {port} out of range")
    return m.group("host"), port


def printable(text: str) -> str:
    """Text safe to show on a terminal: anything but printable ASCII becomes a \\xNN / \\uNNNN escape.
    Host names in denials come from the sandbox; an escape sequence in one must not reach the user's terminal."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif 0x20 <= ord(c) < 0x7F:
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def format_hostport(host: str | Host, port: int) -> str:
    s = str(host)
    return f"[{s}]:{port}" if ":" in s else f"{s}:{port}"
