"""Root's private device nodes, as data: compile_plan() asks for them only when the probe found host nodes the
caller owns, and the bwrap command binds them right over bwrap's /dev (later mounts cover earlier ones)."""

from __future__ import annotations

import os

import pytest

from rcc.backends.bwrap import BwrapBackend
from rcc.compile import Session, compile_plan
from rcc.config import merge
from rcc.plan import DevNode, Plan
from rcc.probe import DEVICE_NODES, HostFacts, PathInfo, owned_device_nodes
from rcc.record import replace

ROOT_DEVICES = (
    ("/dev/null", os.makedev(1, 3), 0o666),
    ("/dev/zero", os.makedev(1, 5), 0o666),
    ("/dev/tty", os.makedev(5, 0), 0o666),
)


def facts(uid: int, owned: tuple[tuple[str, int, int], ...]) -> HostFacts:
    home = "/root" if uid == 0 else "/home/u"
    return HostFacts(
        uid=uid,
        gid=uid,
        user="root" if uid == 0 else "u",
        home=home,
        home_logical=home,
        project="/work/proj",
        cwd="/work/proj",
        env={"PATH": "/usr/bin:/bin", "HOME": home, "XDG_STATE_HOME": "/var/state"},
        paths={"/usr": PathInfo("dir", "/usr"), "/work/proj/.git": PathInfo("dir", "/work/proj/.git")},
        owned_devices=owned,
    )


def plan_for(f: HostFacts, session_id: str = "abcd1234") -> Plan:
    return compile_plan(merge((), f.home), f, Session(argv=("true",)), session_id=session_id)


def test_root_gets_private_copies_of_the_nodes_it_owns() -> None:
    plan = plan_for(facts(0, ROOT_DEVICES))
    assert plan.dev_nodes == (
        DevNode("/dev/null", 1, 3, 0o666),
        DevNode("/dev/zero", 1, 5, 0o666),
        DevNode("/dev/tty", 5, 0, 0o666),
    )
    # under rcc's state dir (never visible to a sandbox), one directory per session
    assert plan.devices_dir == "/var/state/rcc/devices/abcd1234"


def test_a_user_plan_has_no_private_devices() -> None:
    """Control: a normal user owns none of the host's nodes; the plan (and the bwrap command) stay as they were."""
    plan = plan_for(facts(1000, ()))
    assert plan.dev_nodes == () and plan.devices_dir == ""
    argv = BwrapBackend("/usr/bin/bwrap").render(plan)
    assert "--dev-bind" not in argv
    assert argv[argv.index("--dev") + 2] == "--proc"


def test_render_binds_each_copy_right_over_bwraps_dev() -> None:
    plan = plan_for(facts(0, ROOT_DEVICES))
    argv = BwrapBackend("/usr/bin/bwrap").render(plan)
    i = argv.index("--dev")
    assert argv[i + 1] == "/dev"
    assert argv[i + 2 : i + 11] == [
        "--dev-bind",
        "/var/state/rcc/devices/abcd1234/null",
        "/dev/null",
        "--dev-bind",
        "/var/state/rcc/devices/abcd1234/zero",
        "/dev/zero",
        "--dev-bind",
        "/var/state/rcc/devices/abcd1234/tty",
        "/dev/tty",
    ]
    # --dev-bind is the only bind that keeps device nodes usable; nothing else is bound with it
    assert argv.count("--dev-bind") == 3


def test_plan_json_shows_the_private_devices() -> None:
    import json

    doc = json.loads(plan_for(facts(0, ROOT_DEVICES)).to_json())
    assert doc["dev_nodes"][0] == {"dest": "/dev/null", "major": 1, "minor": 3, "mode": 0o666}
    assert doc["devices_dir"] == "/var/state/rcc/devices/abcd1234"


def test_each_session_gets_its_own_directory() -> None:
    f = facts(0, ROOT_DEVICES)
    assert plan_for(f, "11111111").devices_dir != plan_for(f, "22222222").devices_dir


def test_probe_asks_nothing_for_a_user() -> None:
    assert owned_device_nodes(1000) == ()


def test_probe_finds_the_hosts_nodes_for_root() -> None:
    """The real host: root owns every node bwrap binds."""
    if os.getuid() != 0:
        pytest.skip("needs root: only root's probe looks at the device nodes")
    found = {p: (os.major(rdev), os.minor(rdev)) for p, rdev, _ in owned_device_nodes(0)}
    present = [p for p in DEVICE_NODES if os.path.exists(p) and os.stat(p).st_uid == 0]
    assert sorted(found) == sorted(present)
    if "/dev/null" in found:
        assert found["/dev/null"] == (1, 3)


def test_replace_keeps_dev_nodes() -> None:
    """Plans are edited with replace() elsewhere (agents); the new fields survive it."""
    plan = plan_for(facts(0, ROOT_DEVICES))
    assert replace(plan, argv=("x",)).dev_nodes == plan.dev_nodes
