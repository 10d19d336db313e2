"""A scripted fake of the Anthropic Messages API, for running the real Claude Code against.

It is a real HTTP server (stdlib, threads) that answers:
  POST /v1/messages               streaming SSE (message_start, content_block_*, message_delta, message_stop)
                                  or a plain JSON message when the request does not ask for a stream
  POST /v1/messages/count_tokens  {"input_tokens": N}
  POST /v1beta/models/*:(stream)generateContent   the Gemini API, just enough for `gemini -p` (first turn's text)
  anything else                   logged; 200 "{}" for HEAD/GET, 404 JSON error otherwise

The script (a JSON file, read again for every request) is a list of turns. The turn to play is chosen from the
conversation itself (the number of assistant messages already in the request), so retries and parallel side
requests do not advance it. A turn is
    {"calls": [{"name": "Bash", "input": {"command": "..."}}, ...], "text": "optional text before the calls"}
or a final answer
    {"text": "done"}
Requests without tools (title generation, quota checks, ...) get a short text answer and do not count as turns.

Every request and every tool_result the agent sends back is appended to a JSONL log, so a test can assert what
Claude Code's tools actually saw ("Permission denied", "No such file", the proxy's 403, ...). Tool use ids are
`toolu_<turn>_<index>` so a result maps back to the call that produced it.

Each request's log record carries the SHA-256 of the x-api-key and Authorization headers it came with
(`x_api_key_sha256`, `authorization_sha256`; "" when absent), never the values: a test proves which key reached
the API (the real one, not rcc's placeholder) without writing the key to a file.

Run it as a program (tests start it inside a test host's network namespace):
    python fake_anthropic.py --port 8080 --script turns.json --log requests.jsonl [--host 0.0.0.0]
        [--tls-cert cert.pem --tls-key key.pem]     # HTTPS (a certificate from the test's CA)
It prints "listening <host> <port>" on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "claude-fake-1"


@dataclass(frozen=True)
class Call:
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    text: str = ""
    calls: tuple[Call, ...] = ()


def parse_script(doc: Sequence[dict[str, Any]]) -> tuple[Turn, ...]:
    turns = []
    for t in doc:
        calls = tuple(Call(c["name"], dict(c["input"])) for c in t.get("calls", ()))
        turns.append(Turn(text=str(t.get("text", "")), calls=calls))
    return tuple(turns)


def tool_use_id(turn: int, index: int) -> str:
    return f"toolu_{turn:02d}_{index}"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def turn_blocks(turn_no: int, turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text or not turn.calls:
        blocks.append({"type": "text", "text": turn.text or "(end of script)"})
    for i, c in enumerate(turn.calls):
        blocks.append({"type": "tool_use", "id": tool_use_id(turn_no, i), "name": c.name, "input": c.input})
    return blocks


def stream_events(msg_id: str, blocks: list[dict[str, Any]]) -> Iterator[bytes]:
    """The SSE byte stream of one assistant message, in the order the real API sends it."""
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
    )
    yield _sse("ping", {"type": "ping"})
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            yield _sse("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "text", "text": ""}})
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "text_delta", "text": b["text"]}})
        else:
            yield _sse("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "tool_use", "id": b["id"],
                                                                 "name": b["name"], "input": {}}})
            raw = json.dumps(b["input"])
            # Split the JSON in two deltas, as the real API streams partial JSON.
            half = len(raw) // 2
            for part in (raw[:half], raw[half:]):
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "input_json_delta", "partial_json": part}})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": i})
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    yield _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": 20}})
    yield _sse("message_stop", {"type": "message_stop"})


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(c.get("text", c.get("content", ""))) for c in content if isinstance(c, dict))
    return ""


class FakeAnthropic(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], script_path: str, log_path: str) -> None:
        super().__init__(addr, Handler)
        self.script_path = script_path
        self.log_path = log_path
        self.lock = threading.Lock()
        self.serial = 0
        self.seen: set[tuple[str, str]] = set()
        self.bodies_path = ""  # --bodies: every POST body appended here (tests look for what reached the model)
        self.tls: ssl.SSLContext | None = None  # --tls-cert/--tls-key: serve HTTPS

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def log(self, record: dict[str, Any]) -> None:
        with self.lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls getfqdn(), a DNS lookup that times out in a test host's netns (10 s).
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def turns(self) -> tuple[Turn, ...]:
        """The script, read again for every request: a test may replace it between runs of the agent."""
        with open(self.script_path, encoding="utf-8") as f:
            return parse_script(json.load(f))

    def record_result(self, session: str, block: dict[str, Any]) -> None:
        """Log a tool_result once per agent session (ids repeat across sessions: toolu_<turn>_<index>)."""
        tid = str(block.get("tool_use_id"))
        with self.lock:
            if (session, tid) in self.seen:
                return
            self.seen.add((session, tid))
        self.log({"kind": "tool_result", "tool_use_id": tid, "is_error": bool(block.get("is_error")),
                  "content": _text_of(block.get("content"))})

    def next_id(self) -> str:
        with self.lock:
            self.serial += 1
            return f"msg_fake_{self.serial:04d}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeAnthropic

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _log_request(self, extra: dict[str, Any]) -> None:
        self.server.log({"kind": "request", "t": time.time(), "method": self.command, "path": self.path,
                         "host": self.headers.get("Host", ""),
                         "auth": bool(self.headers.get("x-api-key") or self.headers.get("Authorization")
                                     or self.headers.get("x-goog-api-key")),
                         "x_api_key_sha256": digest(self.headers.get("x-api-key")),
                         "authorization_sha256": digest(self.headers.get("Authorization")),
                         **extra})

    def do_HEAD(self) -> None:
        self._log_request({})
        self._send(200, "application/json", b"{}")

    def do_GET(self) -> None:
        self._log_request({})
        self._send(200, "application/json", b"{}")

    def do_POST(self) -> None:
        raw = self._body()
        if self.server.bodies_path:
            with self.server.lock, open(self.server.bodies_path, "ab") as f:
                f.write(raw + b"\n")
        path = self.path.split("?", 1)[0]
        try:
            req = json.loads(raw) if raw else {}
        except ValueError:
            req = {}
        if path.endswith("/v1/messages/count_tokens"):
            self._log_request({})
            self._send(200, "application/json", b'{"input_tokens": 42}')
            return
        if "/v1beta/models/" in path:
            self._gemini(path)
            return
        if not path.endswith("/v1/messages"):
            self._log_request({})
            self._send(404, "application/json",
                       b'{"type":"error","error":{"type":"not_found_error","message":"fake: no such endpoint"}}')
            return
        self._messages(req)

    def _gemini(self, path: str) -> None:
        """Just enough of the Gemini API for `gemini -p`: the first turn's text as the model's answer."""
        self._log_request({"api": "gemini"})
        turns = self.server.turns()
        text = turns[0].text if turns and turns[0].text else "ok"
        doc = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                               "index": 0}],
               "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
               "modelVersion": MODEL}
        if ":streamGenerateContent" in path:
            self._send(200, "text/event-stream", f"data: {json.dumps(doc)}\r\n\r\n".encode())
        else:
            self._send(200, "application/json", json.dumps(doc).encode())

    def _messages(self, req: dict[str, Any]) -> None:
        messages = req.get("messages") or []
        tools = [t.get("name") for t in req.get("tools") or [] if isinstance(t, dict)]
        if tools:
            turn_no = sum(1 for m in messages if m.get("role") == "assistant")
            session = self.headers.get("X-Claude-Code-Session-Id", "")
            for m in messages:  # every result so far: the agent may merge or reorder user messages
                if m.get("role") == "user" and isinstance(m.get("content"), list):
                    for c in m["content"]:
                        if isinstance(c, dict) and c.get("type") == "tool_result":
                            self.server.record_result(session, c)
            turns = self.server.turns()
            turn = turns[turn_no] if turn_no < len(turns) else Turn(text="(end of script)")
            self._log_request({"turn": turn_no, "tools": len(tools), "stream": bool(req.get("stream"))})
        else:
            turn_no, turn = -1, Turn(text="ok")
            self._log_request({"turn": -1, "tools": 0, "stream": bool(req.get("stream"))})
        blocks = turn_blocks(turn_no, turn)
        msg_id = self.server.next_id()
        if req.get("stream"):
            self._send(200, "text/event-stream", b"".join(stream_events(msg_id, blocks)))
        else:
            stop = "tool_use" if turn.calls else "end_turn"
            doc = {"id": msg_id, "type": "message", "role": "assistant", "model": MODEL, "content": blocks,
                   "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20}}
            self._send(200, "application/json", json.dumps(doc).encode())


def digest(value: str | None) -> str:
    """SHA-256 (hex) of a header value, "" when the header is absent."""
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else ""


def read_log(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def tool_results(path: str) -> dict[str, dict[str, Any]]:
    """tool_use_id -> the last result the agent sent for it."""
    return {r["tool_use_id"]: r for r in read_log(path) if r["kind"] == "tool_result"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--bodies", default="")
    ap.add_argument("--tls-cert", default="")
    ap.add_argument("--tls-key", default="")
    a = ap.parse_args(argv)
    srv = FakeAnthropic((a.host, a.port), a.script, a.log)
    srv.bodies_path = a.bodies
    if a.tls_cert:
        srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.tls.load_cert_chain(a.tls_cert, a.tls_key)
    srv.turns()  # fail now on a bad script
    sys.stdout.write(f"listening {a.host} {srv.server_address[1]}\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
