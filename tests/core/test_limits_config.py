"""Resource limits as config and plan: parsing, defaults, trust, the plan's numbers and the tmpfs sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_compile import facts, plan, policy

from rcc.backends.bwrap import BwrapBackend
from rcc.config import Contribution, Flags, Layer, gate_untrusted, validate
from rcc.errors import ConfigError, UsageError
from rcc.limits import resolve_size, show_size
from rcc.plan import Tmpfs
from rcc.policy import LimitsPolicy
from rcc.record import replace

GIB = 1 << 30


@pytest.mark.parametrize(
    ("key", "value", "want"),
    [
        ("limits.memory", "4G", "4G"),
        ("limits.memory", "512m", "512M"),
        ("limits.memory", "1.5GiB", "1.5G"),
        ("limits.memory", "75%", "75%"),
        ("limits.memory", "none", "none"),
        ("limits.tmp", "16M", "16M"),
        ("limits.processes", 4096, "4096"),
        ("limits.processes", "none", "none"),
        ("limits.cpu", 2, "2"),
        ("limits.cpu", 0.5, "0.5"),
        ("limits.cpu", "none", "none"),
    ],
)
def test_limit_values(key: str, value: object, want: str) -> None:
    assert validate(key, value, "x.toml:1") == want


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("limits.memory", "1M"),  # below the minimum: a typo, not a limit
        ("limits.memory", "0"),
        ("limits.memory", "150%"),
        ("limits.memory", "lots"),
        ("limits.memory", 4),
        ("limits.memory", "-4G"),
        ("limits.processes", 3),
        ("limits.processes", "many"),
        ("limits.processes", True),
        ("limits.cpu", 0),
        ("limits.cpu", "fast"),
        ("limits.tmp", "1K"),
    ],
)
def test_bad_limit_values_are_config_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigError):
        validate(key, value, "x.toml:1")


def test_bad_limit_flag_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        Flags().add("limits.memory", "lots", "--memory")


@pytest.mark.parametrize("key", ["limits.memory", "limits.processes", "limits.cpu", "limits.tmp"])
def test_untrusted_project_file_cannot_lift_the_limits(key: str) -> None:
    """A hostile repository's `.rcc.toml` with memory = "none" would let its tests take the host down."""
    layer, notices = gate_untrusted(Layer("project", (Contribution(key, "none", ".rcc.toml:1"),)), ".rcc.toml")
    assert layer.contributions == ()
    assert notices


def test_defaults_resolve_against_physical_memory() -> None:
    p = plan(replace(policy(), limits=LimitsPolicy()), replace(facts(), memory_total=16 * GIB))
    assert p.limits.memory == 12 * GIB
    assert p.limits.processes == 4096
    assert p.limits.cpu == 0.0
    assert p.limits.tmp == 2 * GIB


def test_every_writable_tmpfs_gets_the_size_and_bwrap_renders_it() -> None:
    p = plan(replace(policy(), limits=LimitsPolicy(tmp="16M")))
    tmpfs = [m for m in p.mounts if isinstance(m, Tmpfs)]
    writable = {m.dest for m in tmpfs if not m.read_only}
    assert {"/tmp", "/var/tmp", "/dev/shm", "/run", "/var", facts().home} <= writable
    assert all(m.size == 16 << 20 for m in tmpfs if not m.read_only)
    argv = BwrapBackend("/usr/bin/bwrap").render(p)
    i = argv.index("/tmp", argv.index("--tmpfs") - 1)
    assert argv[i - 3 : i + 1] == ["--size", str(16 << 20), "--tmpfs", "/tmp"]


def test_none_means_no_limit() -> None:
    p = plan(replace(policy(), limits=LimitsPolicy("none", "none", "none", "none")))
    assert (p.limits.memory, p.limits.processes, p.limits.cpu, p.limits.tmp) == (0, 0, 0.0, 0)
    assert "--size" not in BwrapBackend("/usr/bin/bwrap").render(p)


def test_sizes_round_trip_for_messages() -> None:
    assert show_size(resolve_size("200M", 0)) == "200M"
    assert show_size(resolve_size("4G", 0)) == "4G"
    assert resolve_size("50%", 8 * GIB) == 4 * GIB
    assert resolve_size("50%", 0) == 0  # unknown memory: no limit rather than a zero one


def test_sweep_removes_only_old_empty_session_cgroups(tmp_path: Path) -> None:
    """A SIGKILLed rcc leaves its cgroup behind; the next session removes it, never one just made."""
    import os
    import time

    from rcc.limits import _sweep

    old, new, other, busy = (tmp_path / n for n in ("rcc-old", "rcc-new", "docker", "rcc-busy"))
    for d in (old, new, other, busy):
        d.mkdir()
    (busy / "cgroup.procs").write_text("123\n")  # stands for a cgroup with processes: rmdir fails
    past = time.time() - 3600
    for d in (old, other, busy):
        os.utime(d, (past, past))
    _sweep(str(tmp_path), "rcc-")
    assert not old.exists()
    assert new.exists() and other.exists() and busy.exists()


def test_cgroup_v2_layout_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What rcc writes on a cgroup v2 machine, against a directory laid out like /sys/fs/cgroup (this test
    machine's kernel has a hybrid layout with no v2 controllers, so the real v2 path runs only elsewhere)."""
    import os

    from rcc import limits
    from rcc.plan import ResourceLimits

    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(limits, "CGROUP", str(tmp_path))
    real_mkdir = os.mkdir

    def mkdir(path: str, mode: int = 0o777) -> None:  # a real cgroupfs makes the control files itself
        real_mkdir(path, mode)
        for f in ("cgroup.subtree_control", "cgroup.procs", "memory.max", "memory.swap.max", "pids.max", "cpu.max"):
            Path(path, f).write_text("")

    monkeypatch.setattr(os, "mkdir", mkdir)
    s = limits.SessionLimits(ResourceLimits(memory=200 << 20, processes=64, cpu=0.5), "abc")
    s.kind = "v2"
    s._make_v2()
    s._move([4242])
    d = tmp_path / "rcc" / "abc"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (tmp_path / "rcc" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (d / "memory.max").read_text() == str(200 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "64"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "cgroup.procs").read_text() == "4242"


# The kernel's log as /dev/kmsg gives it (records from a real podman session on this machine, ids shortened).
CID = "4f2e83f521763405819920ee6c8eb83fdeae776004fcacb33452f2bd3e5e7b13"
OTHER = "961bde104086a58f24f9c1d3d566cabb7a62afbf59a382ce46c0b81b9716be8e"
OOM = (
    "6,5998,16084525449,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=libpod-{c},mems_allowed=0,"
    "oom_memcg=/libpod_parent/libpod-{c},task_memcg=/libpod_parent/libpod-{c},task=python3,pid=20207,uid=0\n"
    "3,5999,16084525466,-;Memory cgroup out of memory: Killed process 20207 (python3) total-vm:146944kB\n"
)
FORK = "6,6010,16096817580,-;cgroup: fork rejected by pids controller in /libpod_parent/libpod-{c}\n"


def test_container_limit_hits_reads_its_own_container_only() -> None:
    from rcc.limits import container_limit_hits

    assert container_limit_hits(OOM.format(c=CID), CID) == (True, False)
    assert container_limit_hits(FORK.format(c=CID), CID) == (False, True)
    # another session's container, the host's own OOM killer, a bad id: never claimed
    assert container_limit_hits(OOM.format(c=OTHER) + FORK.format(c=OTHER), CID) == (False, False)
    host_oom = OOM.format(c=CID).replace("CONSTRAINT_MEMCG", "CONSTRAINT_NONE")
    assert container_limit_hits(host_oom, CID) == (False, False)
    assert container_limit_hits(OOM.format(c=CID), "") == (False, False)
    assert container_limit_hits(OOM.format(c=CID), "libpod") == (False, False)


def test_container_stop_reason_names_the_limit_only_when_it_fired() -> None:
    from rcc.limits import container_stop_reason
    from rcc.plan import ResourceLimits

    lim = ResourceLimits(memory=200 << 20, processes=64, cpu=0, tmp=0)
    assert container_stop_reason(lim, True, False, 137) == "killed: memory limit 200M reached"
    assert container_stop_reason(lim, False, True, 0) == "process limit 64 reached: forks were refused"
    assert container_stop_reason(lim, True, False, 0) == ""  # a child was killed, the command went on and succeeded
    assert container_stop_reason(lim, False, False, 137) == ""  # someone else's SIGKILL
