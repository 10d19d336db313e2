"""Sans-IO parser for what an HTTP/1.1 client sends a forward proxy. Bytes in, one event out; no sockets.

References: RFC 9110 (HTTP semantics: §7.2 Host, §7.6.1 Connection, §9.3.6 CONNECT) and RFC 9112 (HTTP/1.1
message syntax: §2.2 message parsing, §3 request line, §3.2.2 absolute-form, §3.2.3 authority-form, §5 field
syntax, §6.1 Transfer-Encoding vs Content-Length).

Invariants:
1. Only the request head is parsed. Everything after the blank line is returned untouched as `leftover`.
2. Strict syntax, because the head is forwarded: CRLF line endings only (a bare CR or LF is an error,
   RFC 9112 §2.2 allows either choice), no obs-fold (§5.2), no whitespace before ':' (§5.1), one Host field,
   not both Transfer-Encoding and Content-Length (§6.1: request smuggling).
3. An absolute-form request is only accepted for the `http` scheme and without userinfo
   (`http://allowed.example@evil.example/` is refused, not "interpreted"). Its Host field, when present, must
   name the same host and port as the target (RFC 9112 §3.2.2 says to ignore Host; we refuse instead, so that
   a server behind the proxy can never be told a different name than the one the policy checked).
4. The forwarded head is origin-form, with hop-by-hop fields removed and `Connection: close` (one request per
   proxied connection, so a later request on the same connection can never reach another host).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rcc.net.hosts import HostError, normalize_host, split_authority

MAX_HEAD = 64 * 1024
MAX_FIELDS = 200

# RFC 9110 §5.6.2 token
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9112 §3: request-line = method SP request-target SP HTTP-version
_REQUEST_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/(1\.[01])\Z")
# field-value: visible chars, SP, HTAB, obs-text (RFC 9110 §5.5); no CR, LF, NUL
_FIELD_VALUE = re.compile(rb"^[\t\x20-\x7e\x80-\xff]*\Z")
_ABSOLUTE = re.compile(r"^[hH][tT][tT][pP]://(?P<authority>[^/?#]*)(?P<rest>[/?][^#]*)?\Z")

# RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy-specific ones clients send.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


@dataclass(frozen=True)
class NeedMore:
    pass


@dataclass(frozen=True)
class Connect:
    """CONNECT host:port (RFC 9110 §9.3.6). Reply CONNECT_OK, then tunnel; `leftover` goes upstream first."""

    host: str
    port: int
    leftover: bytes


@dataclass(frozen=True)
class Forward:
    """A plain-HTTP request in absolute-form: send `head` then `leftover` to host:port, then relay."""

    host: str
    port: int
    method: str
    head: bytes
    leftover: bytes


@dataclass(frozen=True)
class Reject:
    """Send `reply` and close. `deny` marks a policy refusal (audited as a denial) vs a malformed request."""

    reply: bytes
    reason: str
    deny: bool = False
    host: str = ""
    port: int = 0


Event = NeedMore | Connect | Forward | Reject

CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"


def response(status: int, phrase: str, body: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    data = body.encode()
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _header_safe(text: str) -> str:
    return "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text)


def denied(reason: str, host: str, port: int, sentence: str = "") -> bytes:
    """HTTP 403 with X-Rcc-Denied: how a client recognises rcc's refusal. `sentence` (notices.refusal_sentence)
    is what a person or a model reads: it goes into the status line's reason phrase (RFC 9112 §4: what
    Python's http.client, hence pip, prints for a refused CONNECT) and the body (what curl prints for plain
    HTTP), with "Forbidden" kept first so clients that match on it still do."""
    if not sentence:
        return response(
            403, "Forbidden", f"rcc: denied {host}:{port}: {reason}\n", (("X-Rcc-Denied", _header_safe(reason)),)
        )
    phrase = "Forbidden - " + _header_safe(sentence)
    return response(403, phrase, sentence + "\n", (("X-Rcc-Denied", _header_safe(reason)),))


def bad_request(reason: str, status: int = 400, phrase: str = "Bad Request") -> bytes:
    return response(status, phrase, f"rcc proxy: {reason}\n", (("X-Rcc-Error", _header_safe(reason)),))


def bad_gateway(reason: str) -> bytes:
    return response(502, "Bad Gateway", f"rcc proxy: {reason}\n", (("X-Rcc-Error", _header_safe(reason)),))


class ProxyRequestParser:
    """Feed bytes until an event other than NeedMore comes out. One request per parser."""

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self._buf = bytearray()
        self._max = max_head

    def feed(self, data: bytes) -> Event:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > self._max:
                return Reject(
                    bad_request("request head too large", 431, "Request Header Fields Too Large"),
                    "request head too large",
                )
            return NeedMore()
        if end + 4 > self._max:
            return Reject(
                bad_request("request head too large", 431, "Request Header Fields Too Large"), "request head too large"
            )
        head = bytes(self._buf[:end])
        leftover = bytes(self._buf[end + 4 :])
        return parse_head(head, leftover)


def _bad(reason: str) -> Reject:
    return Reject(bad_request(reason), reason)


def parse_head(head: bytes, leftover: bytes) -> Event:
    """Parse a complete request head (without the final CRLFCRLF)."""
    lines = head.split(b"\r\n")
    if any(b"\r" in ln or b"\n" in ln for ln in lines):
        return _bad("bare CR or LF in request head")
    m = _REQUEST_LINE.match(lines[0])
    if not m:
        return _bad("malformed request line")
    method, target_b, version = m.group(1), m.group(2), m.group(3)
    fields: list[tuple[bytes, bytes, bytes]] = []  # (lower name, name, value)
    for ln in lines[1:]:
        if ln[:1] in (b" ", b"\t"):
            return _bad("obsolete line folding in header")
        name, colon, value = ln.partition(b":")
        if not colon or not _TOKEN.match(name):
            return _bad("malformed header field")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.match(value):
            return _bad("invalid character in header value")
        fields.append((name.lower(), name, value))
        if len(fields) > MAX_FIELDS:
            return _bad("too many header fields")
    target = target_b.decode("ascii")
    hosts = [v for n, _, v in fields if n == b"host"]
    if len(hosts) > 1:
        return _bad("more than one Host header")

    if method == b"CONNECT":
        try:
            host, port = split_authority(target)
        except HostError as e:
            return _bad(f"CONNECT target: {e}")
        return Connect(host, port, leftover)

    am = _ABSOLUTE.match(target)
    if not am:
        if target.lower().startswith("https://"):
            return _bad("https:// URLs go through CONNECT (set HTTPS_PROXY to this proxy)")
        return _bad("a proxy request needs an absolute http:// URL or CONNECT")
    authority = am.group("authority")
    if "@" in authority:
        return _bad("user information in the URL is not allowed")
    try:
        host, port = split_authority(authority, 80)
        target_host = normalize_host(host)
    except HostError as e:
        return _bad(f"request target: {e}")
    if hosts:
        try:
            hh, hp = split_authority(hosts[0].decode("ascii"), 80)
            same = normalize_host(hh) == target_host and hp == port
        except (HostError, UnicodeDecodeError):
            same = False
        if not same:
            reason = "Host header does not match the request target"
            return Reject(denied(reason, host, port), reason, deny=True, host=host, port=port)
    if any(n == b"transfer-encoding" for n, _, _ in fields) and any(n == b"content-length" for n, _, _ in fields):
        return _bad("both Transfer-Encoding and Content-Length")

    # Rebuild in origin-form (RFC 9112 §3.2.1), dropping hop-by-hop fields and those named in Connection.
    named = {t.strip().lower() for n, _, v in fields if n == b"connection" for t in v.split(b",")}
    out = [method + b" " + (am.group("rest") or "/").encode("ascii") + b" HTTP/" + version]
    if not hosts:
        out.append(b"Host: " + authority.encode("ascii"))
    for n, name, value in fields:
        if n in _HOP_BY_HOP or n in named:
            continue
        out.append(name + b": " + value)
    out.append(b"Connection: close")
    return Forward(host, port, method.decode("ascii"), b"\r\n".join(out) + b"\r\n\r\n", leftover)
