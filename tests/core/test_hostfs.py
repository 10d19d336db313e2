"""rcc.hostfs and every place rcc writes on the host through it: a symlink (or a non-directory) planted at any
component below the anchor makes rcc refuse (exit 73) and write nothing outside; the normal path still works.

The places: the project's placeholders, the per-project session locks and the private device directory in rcc's
state dir, the audit log (its file, lock and rotated names), the trust store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rcc import hostfs, sessionhost, trust
from rcc.commands import trust as trust_cmd
from rcc.errors import ExitCode, RccError
from rcc.net.audit import AuditLog, AuditRecord
from rcc.plan import DevNode, Placeholder, Plan


def tree(p: Path) -> set[str]:
    return {str(x.relative_to(p)) for x in p.rglob("*")}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "keep.txt").write_text("outside\n")
    return d


# ------------------------------------------------------------------------------------------------ the walk


@pytest.mark.parametrize("at", ["a", "a/b", "a/b/c"])
def test_symlink_at_any_component_is_refused_and_nothing_written_outside(
    tmp_path: Path, outside: Path, at: str
) -> None:
    anchor = tmp_path / "anchor"
    (anchor / at).parent.mkdir(parents=True, exist_ok=True)
    (anchor / at).symlink_to(outside)
    with pytest.raises(RccError) as e:
        hostfs.open_dir(str(anchor), "a/b/c/d", create=True)
    assert e.value.code == ExitCode.UNSAFE_PATH and "symbolic link" in e.value.message
    assert str(anchor / at) in e.value.message
    assert tree(outside) == {"keep.txt"}


def test_file_as_component_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    with pytest.raises(RccError) as e:
        hostfs.open_dir(str(tmp_path), "a/b", create=True)
    assert e.value.code == ExitCode.UNSAFE_PATH and "not a directory" in e.value.message


def test_control_walk_creates_private_directories(tmp_path: Path) -> None:
    fd = hostfs.open_dir(str(tmp_path / "anchor"), "a/b/c", create=True)
    try:
        hostfs.create_file(fd, "f", b"data")
    finally:
        os.close(fd)
    assert (tmp_path / "anchor/a/b/c/f").read_bytes() == b"data"
    assert (tmp_path / "anchor/a/b").stat().st_mode & 0o777 == 0o700


def test_anchor_itself_may_be_a_link_the_user_made(tmp_path: Path) -> None:
    """Control: ~/.local as a stow link is the user's own setup: only components below the anchor are checked."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    os.close(hostfs.open_dir(str(tmp_path / "link"), "rcc", create=True))
    assert (tmp_path / "real/rcc").is_dir()


def test_replace_file_replaces_a_planted_link_not_its_target(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "f").symlink_to(outside / "keep.txt")
    fd = hostfs.open_dir(str(tmp_path), "")
    try:
        hostfs.replace_file(fd, "f", b"new")
    finally:
        os.close(fd)
    assert (outside / "keep.txt").read_text() == "outside\n"
    assert not (tmp_path / "f").is_symlink() and (tmp_path / "f").read_bytes() == b"new"


def test_open_file_refuses_link_and_fifo_without_hanging(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "link").symlink_to(outside / "keep.txt")
    os.mkfifo(tmp_path / "fifo")
    fd = hostfs.open_dir(str(tmp_path), "")
    try:
        for name, why in (("link", "symbolic link"), ("fifo", "not a regular file")):
            for flags in (os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT):
                with pytest.raises(RccError) as e:
                    hostfs.open_file(fd, name, flags)
                assert e.value.code == ExitCode.UNSAFE_PATH and why in e.value.message
        with pytest.raises(RccError):
            hostfs.read_file(fd, "fifo", 100)
        assert hostfs.read_file(fd, "missing", 100) is None
    finally:
        os.close(fd)
    assert (outside / "keep.txt").read_text() == "outside\n"


# ------------------------------------------------------------------------------------------------ placeholders


def test_placeholder_parent_turned_into_link_after_probe_is_refused(tmp_path: Path, outside: Path) -> None:
    """A concurrent session replaces .vscode (probed as a directory) by a link: rcc must not create the
    placeholder settings.json through it."""
    project = tmp_path / "p"
    project.mkdir()
    (project / ".vscode").symlink_to(outside)
    phs = (
        Placeholder(str(project / ".mcp.json"), False, "{}\n"),
        Placeholder(str(project / ".vscode/settings.json"), False, "{}\n"),
    )
    with pytest.raises(RccError) as e:
        sessionhost.make_placeholders(phs, str(project))
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert tree(outside) == {"keep.txt"}
    assert not (project / ".mcp.json").exists(), "the placeholders made before the refusal are removed"


def test_control_placeholders_made_and_removed(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / ".vscode").mkdir(parents=True)
    phs = (
        Placeholder(str(project / ".vscode/settings.json"), False, "{}\n"),
        Placeholder(str(project / ".claude"), True, ""),
    )
    created = sessionhost.make_placeholders(phs, str(project))
    assert (project / ".vscode/settings.json").read_text() == "{}\n" and (project / ".claude").is_dir()
    sessionhost.remove_placeholders(created, str(project))
    assert tree(project) == {".vscode"}


def test_placeholder_removal_never_follows_a_link(tmp_path: Path, outside: Path) -> None:
    project = tmp_path / "p"
    (project / ".vscode").mkdir(parents=True)
    phs = (Placeholder(str(project / ".vscode/settings.json"), False, ""),)
    created = sessionhost.make_placeholders(phs, str(project))
    (outside / "settings.json").write_text("")
    os.rename(project / ".vscode", tmp_path / "moved")
    (project / ".vscode").symlink_to(outside)
    sessionhost.remove_placeholders(created, str(project))
    assert tree(outside) == {"keep.txt", "settings.json"}


# ------------------------------------------------------------------------------------------------ rcc's state dir


@pytest.mark.parametrize("at", ["rcc", "rcc/sessions"])
def test_session_lock_dir_planted_link_is_refused(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    state = tmp_path / "state"
    (state / at).parent.mkdir(parents=True, exist_ok=True)
    (state / at).symlink_to(outside)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    with pytest.raises(RccError) as e:
        sessionhost._project_lock(str(tmp_path), "ledger")
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert tree(outside) == {"keep.txt"}


def test_session_lock_file_planted_link_is_refused(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    os.close(sessionhost._project_lock(str(tmp_path), "ledger"))  # control: made normally
    (lock,) = (tmp_path / "state/rcc/sessions").iterdir()
    lock.unlink()
    lock.symlink_to(outside / "keep.txt")
    with pytest.raises(RccError) as e:
        sessionhost._project_lock(str(tmp_path), "ledger")
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert (outside / "keep.txt").read_text() == "outside\n"


@pytest.mark.parametrize("at", ["rcc", "rcc/devices"])
def test_private_device_dir_planted_link_is_refused(tmp_path: Path, outside: Path, at: str) -> None:
    state = tmp_path / "state"
    (state / at).parent.mkdir(parents=True, exist_ok=True)
    (state / at).symlink_to(outside)
    plan = Plan(
        argv=("true",),
        cwd="/",
        project="/",
        home="/",
        mounts=(),
        env=(),
        devices_dir=str(state / "rcc/devices/s1"),
        dev_nodes=(DevNode("/dev/null", 1, 3, 0o666),),
    )
    with pytest.raises(RccError) as e:
        sessionhost.make_private_devices(plan)
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert tree(outside) == {"keep.txt"}


# ------------------------------------------------------------------------------------------------ the audit log


def record() -> AuditRecord:
    return AuditRecord("2026-01-01T00:00:00.000Z", "s", "connect", "h", 443, "", "deny", "", "test")


@pytest.mark.parametrize("name", ["audit.jsonl", "audit.jsonl.lock"])
def test_audit_log_planted_link_is_refused(tmp_path: Path, outside: Path, name: str) -> None:
    d = tmp_path / "state/rcc"
    d.mkdir(parents=True)
    (d / name).symlink_to(outside / "keep.txt")
    with pytest.raises(RccError) as e:
        log = AuditLog(str(d / "audit.jsonl"), max_bytes=200)
        for _ in range(5):
            log.write(record())  # the lock is opened when the log rotates
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert (outside / "keep.txt").read_text() == "outside\n"


def test_audit_log_dir_planted_link_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state/rcc").symlink_to(outside)
    with pytest.raises(RccError) as e:
        AuditLog(str(tmp_path / "state/rcc/audit.jsonl"))
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert tree(outside) == {"keep.txt"}


def test_audit_rotation_replaces_planted_links_never_their_targets(tmp_path: Path, outside: Path) -> None:
    d = tmp_path / "state/rcc"
    d.mkdir(parents=True)
    (d / "audit.jsonl.1").symlink_to(outside / "keep.txt")
    (d / "audit.jsonl.2").symlink_to(outside / "keep.txt")
    log = AuditLog(str(d / "audit.jsonl"), max_bytes=300)
    for _ in range(10):
        log.write(record())
    log.close()
    assert (outside / "keep.txt").read_text() == "outside\n"
    assert not (d / "audit.jsonl.1").is_symlink() and (d / "audit.jsonl.1").stat().st_size > 0


# ------------------------------------------------------------------------------------------------ the trust store


def test_trust_store_link_is_replaced_not_followed(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / ".rcc.toml").write_text("")
    d = tmp_path / "state/rcc"
    d.mkdir(parents=True)
    (d / "trust.json").symlink_to(outside / "keep.txt")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with pytest.raises(RccError) as e:  # reading through the link is refused too
        trust_cmd.command(["--project", str(project)])
    assert e.value.code == ExitCode.UNSAFE_PATH
    (d / "trust.json").unlink()
    (d / "trust.json").symlink_to(outside / "new.json")  # a dangling link: writing would create its target
    with pytest.raises(RccError):
        trust_cmd.command(["--project", str(project)])
    assert tree(outside) == {"keep.txt"}


def test_trust_store_dir_link_is_refused(tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / ".rcc.toml").write_text("")
    (tmp_path / "state").mkdir()
    (tmp_path / "state/rcc").symlink_to(outside)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with pytest.raises(RccError) as e:
        trust_cmd.command(["--project", str(project)])
    assert e.value.code == ExitCode.UNSAFE_PATH
    assert tree(outside) == {"keep.txt"}


def test_control_trust_store_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / ".rcc.toml").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert trust_cmd.command(["--project", str(project)]) == 0
    store = json.loads((tmp_path / "state/rcc/trust.json").read_text())
    assert list(store) == [str(project.resolve())]
    assert trust.is_trusted(str(project), b"")
