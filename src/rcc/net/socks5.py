"""Sans-IO SOCKS5 server handshake (RFC 1928), with RFC 1929 username/password accepted and ignored.

Bytes in, events out; no sockets. Only CONNECT is supported (BIND and UDP ASSOCIATE are refused with reply 0x07).
Names are resolved by the proxy (socks5h): ATYP 0x03 carries the name, which the policy checks before any DNS.

Invariants:
1. Nothing after the request is consumed: bytes the client pipelined after its request come back as `leftover`.
2. Every refusal is a well-formed reply (RFC 1928 §6) followed by close; a policy refusal uses 0x02
   ("connection not allowed by ruleset").
3. Credentials (RFC 1929) are read only to complete the handshake for clients that insist on them; they are
   never used, logged or compared.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

VERSION = 0x05
NO_AUTH, USERPASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04

# RFC 1928 §6 reply codes
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
NETWORK_UNREACHABLE = 0x03
HOST_UNREACHABLE = 0x04
CONNECTION_REFUSED = 0x05
TTL_EXPIRED = 0x06
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08


@dataclass(frozen=True)
class NeedMore:
    send: bytes = b""  # bytes to send now (the method selection reply), then read more


@dataclass(frozen=True)
class Request:
    """CONNECT host:port. `host` is a name (socks5h) or an address literal. Reply with reply(), then tunnel."""

    host: str
    port: int
    leftover: bytes
    send: bytes = b""  # handshake bytes still owed to the client (it pipelined greeting and request)


@dataclass(frozen=True)
class Reject:
    reply: bytes
    reason: str


Event = NeedMore | Request | Reject


def reply(code: int, bind: str = "0.0.0.0", port: int = 0) -> bytes:  # noqa: S104 (an address in a reply, not a bind)
    """RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT."""
    addr = ipaddress.ip_address(bind)
    atyp = ATYP_IPV4 if addr.version == 4 else ATYP_IPV6
    return bytes((VERSION, code, 0x00, atyp)) + addr.packed + port.to_bytes(2, "big")


class Socks5Handshake:
    """States: greeting -> [userpass] -> request -> done. Feed bytes; act on each event."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "greeting"

    def feed(self, data: bytes) -> Event:
        self._buf += data
        if len(self._buf) > 1024:  # longest valid message is 3+255+... < 600 bytes
            return Reject(reply(GENERAL_FAILURE), "oversized SOCKS5 message")
        send = b""
        while True:
            ev = self._step()
            if ev is None:
                return NeedMore(send)
            if isinstance(ev, NeedMore):
                send += ev.send
                continue
            if isinstance(ev, Reject):
                return Reject(send + ev.reply, ev.reason)
            return Request(ev.host, ev.port, ev.leftover, send)

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _step(self) -> Event | None:
        b = self._buf
        if self._state == "greeting":
            # VER NMETHODS METHODS (RFC 1928 §3)
            if len(b) < 2:
                return None
            if b[0] != VERSION:
                return Reject(b"", f"not SOCKS5 (version byte {b[0]:#x})")
            n = b[1]
            if n == 0:
                return Reject(bytes((VERSION, NO_ACCEPTABLE)), "no authentication methods offered")
            if len(b) < 2 + n:
                return None
            methods = self._take(2 + n)[2:]
            if NO_AUTH in methods:
                self._state = "request"
                return NeedMore(bytes((VERSION, NO_AUTH)))
            if USERPASS in methods:
                self._state = "userpass"
                return NeedMore(bytes((VERSION, USERPASS)))
            return Reject(bytes((VERSION, NO_ACCEPTABLE)), "no acceptable authentication method")
        if self._state == "userpass":
            # RFC 1929 §2: VER(0x01) ULEN UNAME PLEN PASSWD; reply VER STATUS
            if len(b) < 2:
                return None
            if b[0] != 0x01:
                return Reject(b"\x01\x01", "bad username/password sub-negotiation version")
            ulen = b[1]
            if len(b) < 3 + ulen:
                return None
            plen = b[2 + ulen]
            if len(b) < 3 + ulen + plen:
                return None
            self._take(3 + ulen + plen)
            self._state = "request"
            return NeedMore(b"\x01\x00")
        if self._state == "request":
            # VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 §4)
            if len(b) < 4:
                return None
            if b[0] != VERSION:
                return Reject(reply(GENERAL_FAILURE), "bad SOCKS5 request version")
            cmd, atyp = b[1], b[3]
            if atyp == ATYP_IPV4:
                alen, off = 4, 4
            elif atyp == ATYP_IPV6:
                alen, off = 16, 4
            elif atyp == ATYP_DOMAIN:
                if len(b) < 5:
                    return None
                alen, off = b[4], 5
                if alen == 0:
                    return Reject(reply(GENERAL_FAILURE), "empty domain name")
            else:
                return Reject(reply(ADDRESS_TYPE_NOT_SUPPORTED), f"address type {atyp:#x} not supported")
            if len(b) < off + alen + 2:
                return None
            msg = self._take(off + alen + 2)
            raw = msg[off : off + alen]
            port = int.from_bytes(msg[off + alen :], "big")
            if cmd != CMD_CONNECT:
                return Reject(reply(COMMAND_NOT_SUPPORTED), f"SOCKS5 command {cmd:#x} not supported")
            if atyp == ATYP_DOMAIN:
                try:
                    host = raw.decode("ascii")
                except UnicodeDecodeError:
                    try:
                        host = raw.decode("utf-8")  # an IDN the proxy will IDNA-encode
                    except UnicodeDecodeError:
                        return Reject(reply(GENERAL_FAILURE), "undecodable domain name")
            else:
                host = str(ipaddress.ip_address(raw))
            if port == 0:
                return Reject(reply(GENERAL_FAILURE), "port 0")
            self._state = "done"
            return Request(host, port, self._take(len(b)))
        return None
