"""Sans-IO: the HTTP/1.1 requests a client sends inside a terminated TLS connection, and the credential swap.

A terminated connection (see credentials.py) carries any number of requests (keep-alive, pipelining). This module
splits the client's byte stream into requests, judges each head and rewrites the placeholders in it; bodies pass
through untouched (raw, chunk framing and all). Responses are not parsed: the server's bytes stream back as they
come (server-sent events see no added buffering).

    reader = RequestReader()
    for ev in reader.feed(data):   # Head | Body | Error
        ...
    out, used = inject(head, swaps)  # the head to send upstream, the names of the credentials swapped in

References: RFC 9112 §2.2 (message parsing), §3 (request line), §5 (fields), §6 (message body: §6.1
Transfer-Encoding, §6.3 message body length), §7.1 (chunked transfer coding); RFC 9110 §7.2 (Host), RFC 7617
(Basic authentication).

Invariants:
1. Strict framing, because a confused boundary is request smuggling: CRLF only, no obs-fold, exactly one Host,
   not both Transfer-Encoding and Content-Length, Transfer-Encoding only "chunked", one Content-Length value.
   Anything else is an Error and the connection ends (never "best effort").
2. Every request's head is parsed and judged before any of its bytes go upstream; a body is never parsed for
   requests (only its chunk framing is followed, to find where the next request starts).
3. No Upgrade and no CONNECT inside a terminated connection: after a 101 the bytes would no longer be requests
   this reader can judge.
4. Placeholders are swapped only in header values (never in the request line or bodies), and only the
   placeholders the caller passes for this host: a placeholder of another credential stays what it is.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from rcc.net.http1 import _FIELD_VALUE, _REQUEST_LINE, _TOKEN, MAX_FIELDS, MAX_HEAD

MAX_CHUNK_LINE = 4096  # chunk-size line with extensions
MAX_TRAILERS = 16 * 1024
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,16})(;[\x09\x20-\x7e]*)?\Z")


@dataclass(frozen=True)
class Head:
    """One request head. `fields`: (name, value) in order, names as sent."""

    method: str
    target: str
    version: str
    fields: tuple[tuple[bytes, bytes], ...]

    def get(self, name: bytes) -> list[bytes]:
        n = name.lower()
        return [v for k, v in self.fields if k.lower() == n]


@dataclass(frozen=True)
class Body:
    """Bytes of the current request's body, raw (chunk framing included): forward as they are."""

    data: bytes


@dataclass(frozen=True)
class Error:
    reason: str


Event = Head | Body | Error


class RequestReader:
    """Feed the client's bytes; get Heads and Bodies in order. After an Error, feed() returns nothing more."""

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self._buf = bytearray()
        self._max_head = max_head
        self._state = "head"  # head | length | chunk-size | chunk-data | chunk-crlf | trailers | failed
        self._left = 0  # bytes left in a Content-Length body or the current chunk
        self._trailer_bytes = 0

    def feed(self, data: bytes) -> list[Event]:
        if self._state == "failed":
            return []
        self._buf += data
        out: list[Event] = []
        while True:
            ev = self._step()
            if ev is None:
                return out
            out.append(ev)
            if isinstance(ev, Error):
                self._state = "failed"
                self._buf.clear()
                return out

    def _step(self) -> Event | None:
        s = self._state
        if s == "head":
            if not self._buf:
                return None
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return Error("request head too large") if len(self._buf) > self._max_head else None
            if end + 4 > self._max_head:
                return Error("request head too large")
            raw = bytes(self._buf[:end])
            del self._buf[: end + 4]
            return self._head(raw)
        if s == "length":
            return self._take("head")
        if s == "chunk-size":
            end = self._buf.find(b"\r\n")
            if end < 0:
                return Error("chunk size line too long") if len(self._buf) > MAX_CHUNK_LINE else None
            line = bytes(self._buf[:end])
            m = _CHUNK_SIZE.match(line)
            if not m:
                return Error("malformed chunk size")
            del self._buf[: end + 2]
            self._left = int(m.group(1), 16)
            if self._left == 0:
                self._state, self._trailer_bytes = "trailers", 0
            else:
                self._state = "chunk-data"
            return Body(line + b"\r\n")
        if s == "chunk-data":
            return self._take("chunk-crlf")
        if s == "chunk-crlf":
            if len(self._buf) < 2:
                return None
            if self._buf[:2] != b"\r\n":
                return Error("chunk data not followed by CRLF")
            del self._buf[:2]
            self._state = "chunk-size"
            return Body(b"\r\n")
        if s == "trailers":  # trailer fields, then an empty line (RFC 9112 §7.1.2); passed through
            end = self._buf.find(b"\r\n")
            if end < 0:
                return Error("trailer section too large") if len(self._buf) > MAX_TRAILERS else None
            line = bytes(self._buf[: end + 2])
            del self._buf[: end + 2]
            self._trailer_bytes += len(line)
            if self._trailer_bytes > MAX_TRAILERS:
                return Error("trailer section too large")
            if line == b"\r\n":
                self._state = "head"
            elif b"\r" in line[:-2] or b"\n" in line[:-2] or line[:1] in (b" ", b"\t") or b":" not in line:
                return Error("malformed trailer field")
            return Body(line)
        return None

    def _take(self, then: str) -> Body | None:
        """Up to the rest of a body of known length (Content-Length or a chunk's data); `then` once it is all in."""
        if not self._buf:
            return None
        n = min(self._left, len(self._buf))
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._left -= n
        if self._left == 0:
            self._state = then
        return Body(data)

    def _head(self, raw: bytes) -> Head | Error:
        lines = raw.split(b"\r\n")
        if any(b"\r" in ln or b"\n" in ln for ln in lines):
            return Error("bare CR or LF in request head")
        m = _REQUEST_LINE.match(lines[0])
        if not m:
            return Error("malformed request line")
        fields: list[tuple[bytes, bytes]] = []
        for ln in lines[1:]:
            if ln[:1] in (b" ", b"\t"):
                return Error("obsolete line folding in header")
            name, colon, value = ln.partition(b":")
            if not colon or not _TOKEN.match(name):
                return Error("malformed header field")
            value = value.strip(b" \t")
            if not _FIELD_VALUE.match(value):
                return Error("invalid character in header value")
            fields.append((name, value))
            if len(fields) > MAX_FIELDS:
                return Error("too many header fields")
        head = Head(m.group(1).decode("ascii"), m.group(2).decode("ascii"), m.group(3).decode("ascii"), tuple(fields))
        if head.method == "CONNECT":
            return Error("CONNECT inside a terminated connection")
        if head.get(b"upgrade"):
            return Error("Upgrade inside a terminated connection (rcc relays HTTP/1.1 requests only)")
        if len(head.get(b"host")) != 1:
            return Error("a request needs exactly one Host header")
        te, cl = head.get(b"transfer-encoding"), head.get(b"content-length")
        if te and cl:
            return Error("both Transfer-Encoding and Content-Length")
        if te:
            if len(te) != 1 or te[0].strip().lower() != b"chunked":
                return Error("Transfer-Encoding other than chunked")
            self._state = "chunk-size"
        elif cl:
            values = {v.strip() for c in cl for v in c.split(b",")}
            if len(values) != 1:
                return Error("conflicting Content-Length values")
            (v,) = values
            if not v.isdigit() or len(v) > 18:
                return Error("malformed Content-Length")
            self._left = int(v)
            self._state = "length" if self._left else "head"
        return head


def render(head: Head) -> bytes:
    """The head as bytes to send (CRLF line endings, a blank line at the end)."""
    lines = [f"{head.method} {head.target} HTTP/{head.version}".encode("ascii")]
    lines += [n + b": " + v for n, v in head.fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _swap_basic(value: bytes, swaps: Mapping[bytes, tuple[str, bytes]], used: set[str]) -> bytes:
    """`Basic base64(user:password)` (RFC 7617) as git sends a token: swap inside the decoded text."""
    scheme, _, cred = value.partition(b" ")
    try:
        decoded = base64.b64decode(cred.strip(), validate=True)
    except (binascii.Error, ValueError):
        return value
    new = decoded
    for ph, (name, real) in swaps.items():
        if ph in new:
            new = new.replace(ph, real)
            used.add(name)
    if new == decoded:
        return value
    return scheme + b" " + base64.b64encode(new)


def inject(head: Head, swaps: Mapping[bytes, tuple[str, bytes]]) -> tuple[Head, tuple[str, ...]]:
    """Swap placeholders for real values in the header values. `swaps`: placeholder -> (credential name, value),
    only those of the credentials for this request's host. Returns the new head and the names used."""
    used: set[str] = set()
    fields = []
    for n, value in head.fields:
        v = value
        if n.lower() in (b"authorization", b"proxy-authorization") and v[:6].lower() == b"basic ":
            v = _swap_basic(v, swaps, used)
        for ph, (name, real) in swaps.items():
            if ph in v:
                v = v.replace(ph, real)
                used.add(name)
        fields.append((n, v))
    return Head(head.method, head.target, head.version, tuple(fields)), tuple(sorted(used))


class Redactor:
    """Stream filter for the server's responses: a real value the server echoes back (an error page quoting
    the request's Authorization) is replaced by a mask of the same length (framing stays true) before the bytes
    reach the sandbox. LIMITATION: a compressed or otherwise encoded echo is not recognised.

    No added buffering for ordinary data: only a chunk's tail that could be the start of a value is held back
    (until the next bytes say whether it is); flush() gives it up at the end."""

    def __init__(self, values: Mapping[bytes, bytes]) -> None:
        self._values = {v: m for v, m in values.items() if v}  # real -> mask
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        if not self._values:
            return data
        buf = self._held + data
        for real, ph in self._values.items():
            if real in buf:
                buf = buf.replace(real, ph)
        hold = 0
        for real in self._values:
            for k in range(min(len(real) - 1, len(buf)), hold, -1):
                if buf.endswith(real[:k]):
                    hold = k
                    break
        self._held = buf[len(buf) - hold :] if hold else b""
        return buf[: len(buf) - hold] if hold else buf

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held
