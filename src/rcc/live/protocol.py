"""The control channel's protocol, sans-IO: one JSON object per line (UTF-8, "\n"-terminated), both ways.

    client -> {"op": "status"}                          server -> {"ok": true, "session": {...}, "allowed": N, ...}
    client -> {"op": "allow", "rule": "example.com"}    server -> {"ok": true, "allow": [...], "deny": [...]}
    client -> {"op": "deny", "rule": "example.com"}     server -> {"ok": false, "error": "..."} on any refusal
    client -> {"op": "watch"}                           server -> {"ok": true, "asking": bool, ...}, then events:
              {"event": "decision", ...} {"event": "ask", "id": N, ...} {"event": "resolved", "id": N, ...}
              {"event": "overflow", ...} {"event": "end"}; on the same connection the watcher may send
    client -> {"op": "view"}: the same events, for a watcher that cannot answer (questions are not held for it)
    client -> {"op": "answer", "id": N, "answer": "once"|"session"|"always"|"deny"}
                                                        server -> {"ok": true|false, "id": N, ...}

Invariants:
1. A line longer than MAX_LINE is a ProtocolError (the peer is dropped): a client cannot make the session buffer
   unbounded data.
2. parse_request() accepts exactly the ops and fields above, strings only; anything else is a ProtocolError
   naming the problem. No field is ever evaluated or used as a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

MAX_LINE = 16 * 1024
Op = Literal["status", "allow", "deny", "watch", "view", "answer"]
_OPS: tuple[Op, ...] = ("status", "allow", "deny", "watch", "view", "answer")


class ProtocolError(ValueError):
    """A malformed line: the message says what was wrong."""


@dataclass(frozen=True)
class Request:
    op: Op
    rule: str = ""
    id: int = 0  # answer: the question's id
    answer: str = ""  # answer: once | session | always | deny


class LineBuffer:
    """Bytes in, complete lines out (without the newline)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = b""
        self._max = max_line

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > self._max or any(len(line) > self._max for line in lines):
            raise ProtocolError(f"line longer than {self._max} bytes")
        return lines


def parse_request(line: bytes) -> Request:
    try:
        doc = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"not a JSON line: {e}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("a request is a JSON object")
    op = doc.get("op")
    if op not in _OPS:
        raise ProtocolError(f"unknown op {op!r} (known: {', '.join(_OPS)})")
    extra = set(doc) - {"op", "rule", "id", "answer"}
    if extra:
        raise ProtocolError(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    rule, qid, answer = doc.get("rule", ""), doc.get("id", 0), doc.get("answer", "")
    if not isinstance(rule, str) or not isinstance(answer, str):
        raise ProtocolError("rule and answer must be strings")
    if not isinstance(qid, int) or isinstance(qid, bool) or not 0 <= qid < 2**53:
        raise ProtocolError("id must be a non-negative integer")
    if op in ("allow", "deny") and not rule:
        raise ProtocolError(f"{op} needs a rule")
    if op == "answer" and (qid <= 0 or answer not in ("once", "session", "always", "deny")):
        raise ProtocolError("answer needs an id and one of once, session, always, deny")
    return Request(op, rule, qid, answer)


def encode(obj: dict[str, Any]) -> bytes:
    """One line; ensure_ascii keeps every control character escaped (nothing raw reaches a terminal)."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def request(op: Op, rule: str = "") -> bytes:
    return encode({"op": op, "rule": rule} if rule else {"op": op})


def answer(qid: int, answer: str) -> bytes:
    return encode({"op": "answer", "id": qid, "answer": answer})


def parse_reply(line: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"not a JSON line: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
        raise ProtocolError("a reply is a JSON object with a boolean 'ok'")
    return doc
