"""The control channel's protocol (rcc.live.protocol), sans-IO: transcripts and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcc.live import protocol
from rcc.live.protocol import LineBuffer, ProtocolError, Request, parse_request


def test_lines_split_across_reads() -> None:
    b = LineBuffer()
    assert b.feed(b'{"op":"st') == []
    assert b.feed(b'atus"}\n{"op":"allow","rule":"a.example"}\n{"op"') == [
        b'{"op":"status"}',
        b'{"op":"allow","rule":"a.example"}',
    ]
    assert b.feed(b':"status"}\n') == [b'{"op":"status"}']


def test_flood_without_newline_is_cut_off() -> None:
    """Attack: a peer sending an endless line to make the session's rcc buffer unbounded data."""
    b = LineBuffer(max_line=64)
    with pytest.raises(ProtocolError):
        for _ in range(10):
            b.feed(b"x" * 16)


def test_requests_parse() -> None:
    assert parse_request(b'{"op":"status"}') == Request("status")
    assert parse_request(protocol.request("allow", "*.example.org").rstrip()) == Request("allow", "*.example.org")
    assert parse_request(b'{"op":"deny","rule":"x.example"}') == Request("deny", "x.example")


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'{"op":"shutdown"}',
        b'{"op":"allow"}',
        b'{"op":"allow","rule":7}',
        b'{"op":"allow","rule":"a","by":"root"}',  # who approved comes from the kernel, never from the request
        b"\xff\xfe",
    ],
)
def test_malformed_requests_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_request(line)


def test_encode_escapes_control_characters() -> None:
    out = protocol.encode({"ok": False, "error": "bad \x1b]0;x\x07 rule\n"})
    assert out.count(b"\n") == 1 and b"\x1b" not in out and out.endswith(b"\n")
    assert json.loads(out)["error"] == "bad \x1b]0;x\x07 rule\n"


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_protocol_error(data: bytes) -> None:
    try:
        r = parse_request(data)
    except ProtocolError:
        return
    assert r.op in ("status", "allow", "deny")


def test_reply_needs_ok() -> None:
    assert protocol.parse_reply(b'{"ok":true,"allowed":1}')["allowed"] == 1
    with pytest.raises(ProtocolError):
        protocol.parse_reply(b'{"allowed":1}')
