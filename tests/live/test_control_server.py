"""ControlServer with real unix sockets (no sandbox): rule changes reach the RuleDecider, invalid ones change
nothing, deny wins, every change is audited with the kernel's idea of who asked; peers from another uid or
another network namespace are refused."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcc.live import protocol
from rcc.live.server import CHANGES, ControlServer
from rcc.live.sessions import SessionRecord, list_records, pick
from rcc.net.decider import RuleDecider
from rcc.net.rules import compile_rules
from rcctest import is_root, python_for, require, short_unix_path

SRC = str(Path(__file__).resolve().parents[2] / "src")


REFUSED = "refused"
# A client that prints the reply, or "refused" when the server closes (or resets) without one.
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"op":"allow","rule":"' + sys.argv[2].encode() + b'"}\\n')
    print(s.recv(1000).decode() or "refused")
except (ConnectionResetError, BrokenPipeError):
    print("refused")
"""


def make_server(state: Path) -> ControlServer:
    decider = RuleDecider(compile_rules(["base.example"], ["bad.example"], {}))
    rec = SessionRecord("0badc0de", os.getpid(), "/p", "true", "bwrap", "2026-01-01T00:00:00.000Z", "0badc0de.sock")
    srv = ControlServer(rec, decider, allow=["base.example"], deny=["bad.example"], resolve={}, state_dir=str(state))
    assert srv.start()
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ControlServer]:
    require(sys.platform.startswith("linux"), "the control channel is Linux only")
    srv = make_server(tmp_path / "state" / "rcc")
    yield srv
    srv.close()


def sock_path(srv: ControlServer) -> str:
    return short_unix_path(os.path.join(srv.state_dir, "sessions", srv.record.socket))


def ask(path: str, *lines: bytes) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        out = []
        buf = protocol.LineBuffer()
        for line in lines:
            s.sendall(line)
            got: list[bytes] = []
            while not got:
                data = s.recv(65536)
                assert data, "closed"
                got = buf.feed(data)
            out.append(protocol.parse_reply(got[0]))
        return out


def test_allow_reaches_the_decider_at_once_and_is_audited(server: ControlServer) -> None:
    assert not server.decider.decide("new.example", 443).allowed
    (r,) = ask(sock_path(server), protocol.request("allow", "new.example"))
    assert r["ok"] and r["live_allow"] == ["new.example"]
    assert server.decider.decide("new.example", 443).allowed
    assert server.decider.decide("base.example", 443).allowed  # the session's own rules stay
    (rec,) = [json.loads(x) for x in (Path(server.state_dir) / CHANGES).read_text().splitlines()]
    assert (rec["session"], rec["action"], rec["rule"], rec["applied"]) == ("0badc0de", "allow", "new.example", True)
    assert rec["by_uid"] == os.getuid() and rec["by_pid"] == os.getpid() and "pytest" in rec["by_command"]


def test_invalid_rule_changes_nothing(server: ControlServer) -> None:
    before = server.decider.rules
    r1, r2 = ask(sock_path(server), protocol.request("allow", "*.com"), protocol.request("status"))
    assert not r1["ok"] and "over-broad" in str(r1["error"])
    assert server.decider.rules is before and r2["live_allow"] == []
    assert json.loads((Path(server.state_dir) / CHANGES).read_text())["applied"] is False


def test_session_deny_rule_wins_over_a_live_allow(server: ControlServer) -> None:
    (r,) = ask(sock_path(server), protocol.request("allow", "bad.example"))
    assert r["ok"] and not server.decider.decide("bad.example", 443).allowed


def test_live_deny_revokes_a_live_allow(server: ControlServer) -> None:
    ask(sock_path(server), protocol.request("allow", "x.example"), protocol.request("deny", "x.example"))
    assert not server.decider.decide("x.example", 443).allowed
    assert server.decider.decide("base.example", 443).allowed  # unrelated rules untouched
    ask(sock_path(server), protocol.request("deny", "base.example"))
    assert not server.decider.decide("base.example", 443).allowed


def test_allow_of_a_name_never_opens_the_address_guards(server: ControlServer) -> None:
    import ipaddress

    ask(sock_path(server), protocol.request("allow", "evil.example"))
    d = server.decider.check_address(ipaddress.ip_address("127.0.0.1"), 443, frozenset())
    assert not d.allowed and d.kind == "forbidden-address"


def test_registry_lists_the_session_and_drops_it_at_close(server: ControlServer) -> None:
    (rec,) = list_records(server.state_dir)
    assert pick([rec], "last") == rec == pick([rec], "0bad")
    st = os.stat(os.path.join(server.state_dir, "sessions"))
    assert st.st_mode & 0o777 == 0o700 and os.stat(sock_path(server)).st_mode & 0o777 == 0o600
    server.close()
    assert list_records(server.state_dir) == [] and not os.path.exists(sock_path(server))


def test_peer_in_another_network_namespace_is_refused(server: ControlServer) -> None:
    """Attack: a process of the same uid in another network namespace (every rcc sandbox has its own) that
    somehow reaches the socket. Control: the same client from this namespace gets its answer."""
    require(is_root() and shutil.which("unshare") is not None, "needs root and unshare for a new netns")
    run = [sys.executable, "-c", CLIENT, sock_path(server)]
    ctl = subprocess.run([*run, "fine.example"], capture_output=True, text=True, check=False)
    assert '"ok":true' in ctl.stdout, ctl.stderr
    r = subprocess.run(["unshare", "-n", *run, "sneaky.example"], capture_output=True, text=True, check=False)
    assert r.stdout.strip() == REFUSED, r.stderr
    assert not server.decider.decide("sneaky.example", 443).allowed


def test_peer_of_another_uid_is_refused() -> None:
    """Attack: another account reaching the socket (the directories are opened up on purpose here, to test the
    SO_PEERCRED check itself). Control: the owner's own request from the same place."""
    import tempfile

    require(is_root(), "needs root to run a client as rccuser")
    require(subprocess.run(["id", "rccuser"], capture_output=True, check=False).returncode == 0, "no rccuser")
    top = Path(tempfile.mkdtemp(prefix="rcc-live-uid-", dir="/tmp"))
    try:
        srv = make_server(top / "rcc")
        for d in (top, top / "rcc", top / "rcc" / "sessions"):
            os.chmod(d, 0o755)
        os.chmod(sock_path(srv), 0o777)
        try:
            run = ["-c", CLIENT, sock_path(srv)]
            r = subprocess.run(
                ["runuser", "-u", "rccuser", "--", python_for("user"), *run, "other.example"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert r.stdout.strip() == REFUSED, r.stderr
            assert not srv.decider.decide("other.example", 443).allowed
            ctl = subprocess.run([sys.executable, *run, "own.example"], capture_output=True, text=True, check=False)
            assert '"ok":true' in ctl.stdout and srv.decider.decide("own.example", 443).allowed
        finally:
            srv.close()
    finally:
        shutil.rmtree(top)


def test_flood_of_connections_is_bounded(server: ControlServer) -> None:
    """Attack: holding many connections open to starve the channel. Past MAX_CLIENTS new ones are closed;
    once they go, the owner is served again (control)."""
    from rcc.live.server import MAX_CLIENTS

    held = []
    for _ in range(MAX_CLIENTS):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock_path(server))
        held.append(s)
    import time

    time.sleep(0.2)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path(server))
        try:
            s.sendall(protocol.request("status"))
            assert s.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed unread: refused all the same
    for s in held:
        s.close()
    time.sleep(0.2)
    (r,) = ask(sock_path(server), protocol.request("status"))
    assert r["ok"]
