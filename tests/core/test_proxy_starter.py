"""The proxy started on a thread (rcc.backends._proxy.ProxyStarter), with real listening sockets and a real state
dir: a start that fails ends the sandbox (on_failure) and is raised when the session ends; a start still importing
when the session ends is cancelled with no effect (no audit log, no session record, the listener closed); a
started proxy serves connections that arrived while it imported, and is closed at the end."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from rcc.backends import _proxy
from rcc.compile import Session, compile_plan
from rcc.errors import ExitCode, RccError
from rcc.live.sessions import list_records
from rcc.plan import Plan
from rcc.policy import NetworkPolicy, Policy
from rcc.probe import probe


@pytest.fixture
def plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plan:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    project = tmp_path / "p"
    project.mkdir()
    policy = Policy(network=NetworkPolicy(mode="allowlist", allow=("example.invalid",)))
    return compile_plan(policy, probe(str(project), []), Session(argv=("true",)), session_id="abcd1234")


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


def test_failed_start_ends_the_sandbox_and_is_raised(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RccError("the proxy's modules are broken", code=ExitCode.INTERNAL)

    monkeypatch.setattr(_proxy, "load", broken)
    ended = threading.Event()
    listener = _listener()
    starter = _proxy.ProxyStarter(plan, listener, "bwrap", ended.set)
    assert ended.wait(10), "the sandbox was not ended"
    with pytest.raises(RccError, match="broken"):
        starter.finish()
    assert listener.fileno() == -1  # closed: nothing accepts the sandbox's connections


def test_start_still_importing_at_the_end_is_cancelled_without_effect(
    plan: Plan, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release = threading.Event()
    monkeypatch.setattr(_proxy, "load", release.wait)
    ended = threading.Event()
    listener = _listener()
    starter = _proxy.ProxyStarter(plan, listener, "bwrap", ended.set)
    starter.finish()  # the session ended first: nothing to wait for
    release.set()
    starter._thread.join(10)
    assert starter.proxy is None and not ended.is_set()
    assert listener.fileno() == -1
    state = tmp_path / "state" / "rcc"
    assert list_records(str(state)) == []  # no session record: `rcc sessions` never saw it
    assert (state / "audit.jsonl").read_text() == ""  # checked (created empty) in the foreground, nothing written


def test_started_proxy_serves_a_connection_made_while_it_imported(plan: Plan) -> None:
    """Control: the backlog waits for the proxy, which then answers (a denial: 403) and records it."""
    listener = _listener()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=20)  # before the proxy has started
    starter = _proxy.ProxyStarter(plan, listener, "bwrap", lambda: None)
    try:
        client.sendall(b"GET http://blocked.invalid/ HTTP/1.1\r\nHost: blocked.invalid\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 403"), "the proxy did not answer"
        starter._thread.join(10)
        assert len(list_records(os.path.join(os.environ["XDG_STATE_HOME"], "rcc"))) == 1  # `rcc sessions` sees it
    finally:
        client.close()
        starter.finish()
    assert starter.proxy is not None and starter.error is None
    audit = Path(os.environ["XDG_STATE_HOME"]) / "rcc" / "audit.jsonl"
    assert "blocked.invalid" in audit.read_text()


def test_unwritable_audit_log_is_refused_before_the_thread_starts(plan: Plan, tmp_path: Path) -> None:
    state = tmp_path / "state" / "rcc"
    state.mkdir(parents=True)
    (state / "audit.jsonl").symlink_to(tmp_path / "elsewhere")
    ended = threading.Event()
    with pytest.raises(RccError) as e:
        _proxy.ProxyStarter(plan, _listener(), "bwrap", ended.set)
    assert e.value.code == ExitCode.UNSAFE_PATH and not (tmp_path / "elsewhere").exists()
