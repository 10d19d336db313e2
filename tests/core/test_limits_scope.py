"""cgroup v2 for a normal user: rcc starts bwrap through `systemd-run --user --scope` with the limits, checks the
scope before the command runs and reads the scope's counters while it exists (rcc.limits, invariant 4).

This machine has a hybrid cgroup layout and no systemd user manager, so the machine facts are laid out in a
directory standing for /sys/fs/cgroup and the scope's path is given; what the kernel does is real where it can
be: the change notification of a cgroup v2 event file (poll POLLPRI) on this machine's unified hierarchy.
tests/sandbox/test_limits.py runs whole sessions with stand-in systemd-run programs that fail to deliver."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from rcc import limits
from rcc.plan import ResourceLimits

UID = 1001


def lay_out(tmp: Path, controllers: str = "memory pids cpu") -> tuple[Path, Path, Path]:
    """A cgroup v2 root with user@UID.service's delegated controllers, a running user manager and systemd-run."""
    root = tmp / "cgroup"
    manager = root / "user.slice" / f"user-{UID}.slice" / f"user@{UID}.service"
    manager.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (manager / "cgroup.controllers").write_text(controllers + "\n")
    runtime = tmp / "run"
    (runtime / "systemd").mkdir(parents=True)
    (runtime / "systemd" / "private").write_text("")  # stands for the manager's socket: only its existence counts
    bindir = tmp / "bin"
    bindir.mkdir()
    tool = bindir / "systemd-run"
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(0o755)
    return root, runtime, tool


@pytest.fixture
def user_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    root, runtime, tool = lay_out(tmp_path)
    monkeypatch.setattr(limits, "CGROUP", str(root))
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    monkeypatch.setattr(os, "getuid", lambda: UID)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("PATH", str(tool.parent))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    return root, tool


def test_a_user_with_systemd_on_cgroup_v2_gets_a_scope(user_v2: tuple[Path, Path]) -> None:
    _root, tool = user_v2
    f = limits.enforcement()
    assert (f.cgroup, f.systemd_run) == ("scope", str(tool))
    assert f.memory == f.processes == f.cpu == "cgroup v2 (systemd scope)"
    assert f.how_to_get_the_rest == ""


@pytest.mark.parametrize("missing", ["manager socket", "systemd-run", "delegation", "unified hierarchy"])
def test_no_scope_without_what_it_needs(
    user_v2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """Each fact the scope needs, taken away alone: rcc falls back (rlimits) and doctor says how to get it."""
    root, tool = user_v2
    if missing == "manager socket":
        os.unlink(os.environ["XDG_RUNTIME_DIR"] + "/systemd/private")
    elif missing == "systemd-run":
        tool.unlink()
    elif missing == "delegation":
        (root / "user.slice" / f"user-{UID}.slice" / f"user@{UID}.service" / "cgroup.controllers").write_text("io\n")
    else:
        (root / "cgroup.controllers").unlink()
    f = limits.enforcement()
    assert f.cgroup == "" and f.systemd_run == ""
    assert (f.memory, f.processes) == ("rlimit (per process)", "rlimit")
    assert "systemd user manager" in f.how_to_get_the_rest


def test_control_root_never_uses_a_user_scope(user_v2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert limits._user_scope() is None


def test_only_delegated_controllers_are_asked_of_the_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, runtime, tool = lay_out(tmp_path, controllers="pids")
    monkeypatch.setattr(limits, "CGROUP", str(root))
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    monkeypatch.setattr(os, "getuid", lambda: UID)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("PATH", str(tool.parent))
    s = limits.SessionLimits(ResourceLimits(memory=512 << 20, processes=64, cpu=1.5), "abcd1234")
    argv, _env = s.wrap(["/usr/bin/bwrap", "--die-with-parent", "--", "true"], {})
    assert argv[: argv.index("--")] == [
        str(tool), "--user", "--scope", "--quiet", "--collect", "--unit=rcc-abcd1234.scope", "-p", "TasksMax=64"
    ]  # fmt: skip
    assert s.found.memory == "rlimit (per process)"  # the rest as rlimits, set on the held sandbox


def test_wrap_renders_systemd_run_and_keeps_the_managers_address_out_of_the_sandbox(
    user_v2: tuple[Path, Path],
) -> None:
    _root, tool = user_v2
    s = limits.SessionLimits(ResourceLimits(memory=(512 << 20) + 100, processes=64, cpu=1.5), "abcd1234")
    bwrap = ["/usr/bin/bwrap", "--die-with-parent", "--unshare-all", "--", "/bin/sh", "-c", "true"]
    argv, env = s.wrap(bwrap, {"PATH": "/usr/bin", "HOME": "/home/u"})
    assert argv == [
        str(tool), "--user", "--scope", "--quiet", "--collect", "--unit=rcc-abcd1234.scope",
        "-p", f"MemoryMax={(512 << 20) + 100}", "-p", "MemorySwapMax=0", "-p", "TasksMax=64", "-p", "CPUQuota=150%",
        "--", "/usr/bin/bwrap", "--unsetenv", "XDG_RUNTIME_DIR",
        "--die-with-parent", "--unshare-all", "--", "/bin/sh", "-c", "true",
    ]  # fmt: skip
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"]}
    # control: a policy that lets XDG_RUNTIME_DIR in keeps it (no --unsetenv)
    s2 = limits.SessionLimits(ResourceLimits(processes=64), "abcd1234")
    argv2, env2 = s2.wrap(bwrap, {"XDG_RUNTIME_DIR": "/run/user/1001"})
    assert "--unsetenv" not in argv2 and env2 == {"XDG_RUNTIME_DIR": "/run/user/1001"}


def test_control_no_scope_leaves_bwrap_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "CGROUP", str(tmp_path))  # no cgroup.controllers: not cgroup v2
    s = limits.SessionLimits(ResourceLimits(processes=64), "abcd1234")
    bwrap = ["/usr/bin/bwrap", "--", "true"]
    assert s.wrap(bwrap, {"A": "1"}) == (bwrap, {"A": "1"})
    none = limits.SessionLimits(ResourceLimits(), "abcd1234")
    assert none.wrap(bwrap, {}) == (bwrap, {})


def scope_dir(root: Path, memory: str, pids: str, cpu: str) -> tuple[str, Path]:
    path = f"/user.slice/user-{UID}.slice/user@{UID}.service/app.slice/rcc-abcd1234.scope"
    d = root / path.lstrip("/")
    d.mkdir(parents=True)
    for name, value in (("memory.max", memory), ("pids.max", pids), ("cpu.max", cpu)):
        (d / name).write_text(value + "\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (d / "pids.events").write_text("max 0\n")
    return path, d


def checked(user_v2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, path: str) -> limits.SessionLimits:
    s = limits.SessionLimits(ResourceLimits(memory=(512 << 20) + 100, processes=64, cpu=1.5), "abcd1234")
    s.wrap(["/usr/bin/bwrap", "--", "true"], {})
    monkeypatch.setattr(limits, "cgroup_v2_path", lambda pid: path)
    return s


def test_scope_with_the_limits_is_accepted_and_says_which_limit_fired(
    user_v2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, d = scope_dir(user_v2[0], str(512 << 20), "64", "150000 100000")
    s = checked(user_v2, monkeypatch, path)
    s.apply([os.getpid()])
    assert s.close(137) == "killed: memory limit 512M reached"
    s = checked(user_v2, monkeypatch, path)
    (d / "memory.events").write_text("oom_kill 0\n")
    (d / "pids.events").write_text("max 7\n")
    s.apply([os.getpid()])
    assert s.close(1) == "process limit 64 reached: 7 forks refused"
    s = checked(user_v2, monkeypatch, path)
    (d / "pids.events").write_text("max 0\n")
    s.apply([os.getpid()])
    assert s.close(1) == ""  # control: no limit fired, nothing said


@pytest.mark.parametrize(
    ("what", "memory", "pids", "cpu"),
    [
        ("memory", "max", "64", "150000 100000"),
        ("pids", str(512 << 20), "max", "150000 100000"),
        ("cpu", str(512 << 20), "64", "max 100000"),
    ],
)
def test_scope_without_its_limits_ends_the_session_unstarted(
    user_v2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, what: str, memory: str, pids: str, cpu: str
) -> None:
    """A systemd that made the scope but did not set a limit (an old systemd ignoring a property, a controller
    taken away meanwhile): rcc does not run the command."""
    from rcc.errors import ExitCode, RccError

    path, _d = scope_dir(user_v2[0], memory, pids, cpu)
    s = checked(user_v2, monkeypatch, path)
    with pytest.raises(RccError) as e:
        s.apply([os.getpid()])
    assert e.value.code == ExitCode.SETUP and f"{what}.max" in str(e.value)


def test_bwrap_outside_the_scope_ends_the_session_unstarted(
    user_v2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A systemd-run that ran bwrap without making the scope (here: this process's real cgroup)."""
    from rcc.errors import ExitCode, RccError

    scope_dir(user_v2[0], str(512 << 20), "64", "150000 100000")
    s = limits.SessionLimits(ResourceLimits(memory=512 << 20, processes=64, cpu=1.5), "abcd1234")
    s.wrap(["/usr/bin/bwrap", "--", "true"], {})
    with pytest.raises(RccError) as e:
        s.apply([os.getpid()])
    assert e.value.code == ExitCode.SETUP and "not in the scope rcc-abcd1234.scope" in str(e.value)


def test_cgroup_v2_path_reads_the_unified_line() -> None:
    with open("/proc/self/cgroup") as f:
        want = [line[3:].rstrip("\n") for line in f if line.startswith("0::")]
    assert limits.cgroup_v2_path(os.getpid()) == (want[0] if want else None)
    assert limits.cgroup_v2_path(2**22 + 1) is None  # no such process


UNIFIED = "/sys/fs/cgroup/unified"


def test_watch_keeps_counters_the_kernel_announced_after_the_cgroup_is_gone() -> None:
    """Real kernfs: a cgroup v2 event file changes (cgroup.events "populated", the counter this machine's
    controller-less unified hierarchy has), the watcher wakes and reads it; the cgroup is then removed, as
    systemd removes an ended scope, and the figure stays."""
    if os.geteuid() != 0 or not os.path.isfile(f"{UNIFIED}/cgroup.procs"):
        pytest.skip("needs root and a cgroup v2 hierarchy at " + UNIFIED)
    d = f"{UNIFIED}/rcc-watch-{os.getpid()}"
    os.mkdir(d)
    proc = None
    w = None

    class Populated(limits._Watch):
        FILES = (("cgroup.events", "populated"), ("cgroup.events", "frozen"))

    try:
        w = Populated(d)
        assert w.read() == (0, 0)
        proc = subprocess.Popen(["sleep", "60"])
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(proc.pid))
        deadline = time.monotonic() + 5
        while w.counts[0] == 0 and time.monotonic() < deadline:  # the watcher's thread, woken by the kernel
            time.sleep(0.01)
        assert w.counts[0] == 1
        proc.kill()
        proc.wait()
        while time.monotonic() < deadline:
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.01)
        assert not os.path.exists(d)
        assert w.read() == (1, 0)  # the file is gone (ENODEV): the figure the kernel announced stays
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if w is not None:
            w.stop()
        if os.path.isdir(d):
            os.rmdir(d)
