"""Sans-IO: find the server name (SNI) in the first bytes a client sends through a tunnel. Bytes in, verdict out.

References: RFC 8446 §5.1 (TLSPlaintext records), §4 and §4.1.2 (Handshake, ClientHello), RFC 6066 §3 (server_name).

Why: a tunnel is allowed for one host, but TLS lets the client name another host in SNI; behind a shared front
(CDN) that reaches the other host ("domain fronting"). The proxy peeks at the ClientHello and refuses a
tunnel whose SNI names a different host than the one the policy allowed.

Invariants:
1. Only the first handshake message is parsed, from records of type handshake(22); a handshake message may span
   several records (§5.1). Data that does not start with a handshake record is `NotTls` (other protocols pass).
2. Something that starts like TLS but does not parse is `Malformed`, never "no SNI": a parser differential
   must not become a way to hide the name.
3. Input is bounded (MAX_HELLO); beyond that the verdict is `Malformed`.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HELLO = 64 * 1024
HANDSHAKE = 22
CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
HOST_NAME = 0


@dataclass(frozen=True)
class NeedMore:
    pass


@dataclass(frozen=True)
class NotTls:
    pass


@dataclass(frozen=True)
class Malformed:
    reason: str


@dataclass(frozen=True)
class ClientHello:
    server_name: str | None  # None: no server_name extension (e.g. connecting to an IP address)


Verdict = NeedMore | NotTls | Malformed | ClientHello


def _handshake_bytes(data: bytes) -> tuple[bytes, bool] | Malformed:
    """Concatenate handshake record fragments. Returns (bytes, complete_records_end) or Malformed."""
    out = bytearray()
    pos = 0
    while pos + 5 <= len(data):
        ctype, major, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 3 : pos + 5], "big")
        if ctype != HANDSHAKE:
            if out:
                return bytes(out), True  # the ClientHello ended before another record type
            return Malformed(f"record type {ctype}")
        if major != 3 or length == 0 or length > 16384 + 256:
            return Malformed("bad record header")
        if pos + 5 + length > len(data):
            out += data[pos + 5 :]
            return bytes(out), False
        out += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return bytes(out), pos == len(data)


def parse_client_hello(data: bytes) -> Verdict:
    if not data:
        return NeedMore()
    if data[0] != HANDSHAKE:
        return NotTls()
    if len(data) > MAX_HELLO:
        return Malformed("ClientHello too large")
    hs = _handshake_bytes(data)
    if isinstance(hs, Malformed):
        return hs
    body, _ = hs
    if len(body) < 4:
        return NeedMore()
    if body[0] != CLIENT_HELLO:
        return Malformed(f"first handshake message is type {body[0]}, not ClientHello")
    length = int.from_bytes(body[1:4], "big")
    if length > MAX_HELLO:
        return Malformed("ClientHello too large")
    if len(body) < 4 + length:
        return NeedMore()
    return _parse_body(body[4 : 4 + length])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vec(self, len_bytes: int) -> bytes:
        return self.take(self.uint(len_bytes))

    def done(self) -> bool:
        return self.pos == len(self.data)


def _parse_body(body: bytes) -> Verdict:
    """ClientHello body (RFC 8446 §4.1.2): legacy_version, random, legacy_session_id<0..32>,
    cipher_suites<2..2^16-2>, legacy_compression_methods<1..2^8-1>, extensions<0..2^16-1> (may be absent in
    TLS 1.2 and earlier)."""
    r = _Reader(body)
    try:
        r.take(2 + 32)
        if len(r.vec(1)) > 32:
            return Malformed("session id too long")
        if len(r.vec(2)) < 2:
            return Malformed("no cipher suites")
        if len(r.vec(1)) < 1:
            return Malformed("no compression methods")
        if r.done():
            return ClientHello(None)
        ext = _Reader(r.vec(2))
        if not r.done():
            return Malformed("trailing bytes after extensions")
        name: str | None = None
        seen: set[int] = set()
        while not ext.done():
            etype, edata = ext.uint(2), ext.vec(2)
            if etype in seen:
                return Malformed(f"duplicate extension {etype}")  # RFC 8446 §4.2: MUST NOT repeat
            seen.add(etype)
            if etype == EXT_SERVER_NAME:
                name = _server_name(edata)
        return ClientHello(name)
    except ValueError as e:
        return Malformed(str(e) or "truncated")


def _server_name(data: bytes) -> str:
    """RFC 6066 §3: ServerNameList; exactly one host_name entry is allowed."""
    r = _Reader(data)
    lst = _Reader(r.vec(2))
    if not r.done():
        raise ValueError("trailing bytes in server_name")
    names = []
    while not lst.done():
        ntype, value = lst.uint(1), lst.vec(2)
        if ntype == HOST_NAME:
            names.append(value)
    if len(names) != 1:
        raise ValueError("server_name must hold exactly one host_name")
    try:
        text = names[0].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("server_name is not ASCII") from None
    if not text:
        raise ValueError("empty server_name")
    return text
