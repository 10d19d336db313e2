"""The per-project placeholder ledger (rcc.sessionhost): what the last session of a project removes."""

from __future__ import annotations

import os
from pathlib import Path

from rcc.sessionhost import _ledger_read, _ledger_write


def test_ledger_round_trips_any_path(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "ledger", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        entries = [("/p/.mcp.json", False, 12), ("/p/odd name\nwith/newline", True, 7), ("/p/.claude", True, 3)]
        _ledger_write(fd, entries)
        assert sorted(_ledger_read(fd)) == sorted(entries)
        _ledger_write(fd, [])
        assert _ledger_read(fd) == []
    finally:
        os.close(fd)


def test_damaged_or_old_ledger_is_forgotten_not_trusted(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "ledger", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b'[["/p/.envrc", false, 5]]\0x/f//etc/passwd\0' + b"9/f/relative\0" + b"4/f//p/ok\0")
        # only well-formed records with absolute paths count; the JSON of older versions is ignored
        assert _ledger_read(fd) == [("/p/ok", False, 4)]
    finally:
        os.close(fd)
