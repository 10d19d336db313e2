"""The escape suite's catalogue as data (tests/attacks.py): well-formed, and judge() fails what it must fail, so
a probe that passes against a real sandbox (tests/sandbox/test_catalogue.py) means what it says."""

from __future__ import annotations

import pytest

from attacks import (
    BACKENDS,
    FILE_PROBES,
    NET_PROBES,
    PROBE_SCRIPT,
    HostState,
    Probe,
    backends_matching,
    judge,
    resolve,
)

OPS = {"read", "write", "create", "create-parents", "list", "connect", "connect-unix", "serve-loopback", "interfaces"}


def test_probes_are_well_formed() -> None:
    names = [p.name for p in (*FILE_PROBES, *NET_PROBES)]
    assert len(names) == len(set(names)), "probe names are unique (they name the attack in a failure)"
    for p in (*FILE_PROBES, *NET_PROBES):
        assert p.op in OPS, p
        assert p.expect in ("denied", "private", "allowed") and p.why.strip(), p
        for name, expect, why in p.differs:
            assert backends_matching(name) and expect in ("denied", "private", "allowed") and why.strip(), p
    for b in BACKENDS:
        assert backends_matching(b.id) == (b,)
    assert {p.mode for p in NET_PROBES} == {"none", "proxy"}
    compile(PROBE_SCRIPT, "probe", "exec")


def test_every_kind_of_probe_has_attacks_and_controls() -> None:
    for probes in (FILE_PROBES, NET_PROBES):
        assert {p.expect for p in probes} >= {"denied", "allowed"}


def test_unknown_backend_name_is_an_error_not_an_empty_selection() -> None:
    with pytest.raises(ValueError, match="no backend"):
        backends_matching("bwarp")
    assert [b.id for b in backends_matching("container")] == ["podman-root", "podman-rootless", "docker"]


def test_differs_applies_per_engine_and_per_id() -> None:
    p = Probe("x", "read", "/x", "denied", "why", differs=(("podman", "allowed", "because"),))
    by_id = {b.id: p.expect_on(b) for b in BACKENDS}
    assert by_id == {
        "bwrap-root": "denied",
        "bwrap-user": "denied",
        "podman-root": "allowed",
        "podman-rootless": "allowed",
        "docker": "denied",
    }


def test_resolve_fills_in_the_world() -> None:
    kw = {"home": "/h", "project": "/p", "outside": "/o"}
    assert resolve("~/.ssh/id_rsa", **kw) == "/h/.ssh/id_rsa"
    assert resolve("{project}/.git/config", **kw) == "/p/.git/config"
    assert resolve("{outside}/m", **kw) == "/o/m"
    assert resolve("/tmp/x-{tag}", tag="t", **kw) == "/tmp/x-t"


FILE = HostState(True, sha256="aa")
CHANGED = HostState(True, sha256="bb")
ABSENT = HostState(False)


@pytest.mark.parametrize(
    ("op", "expect", "got", "before", "after", "fails"),
    [
        ("read", "denied", {"ok": True, "sha256": "aa"}, FILE, FILE, True),  # the host's bytes came through
        ("read", "denied", {"ok": True, "sha256": "cc"}, FILE, FILE, False),  # another file at that path
        ("read", "denied", {"ok": False}, FILE, FILE, False),
        ("read", "denied", {"ok": False}, ABSENT, ABSENT, True),  # nothing planted: proves nothing
        ("read", "allowed", {"ok": True, "sha256": "aa"}, FILE, FILE, False),
        ("read", "allowed", {"ok": True, "sha256": "cc"}, FILE, FILE, True),
        ("write", "denied", {"ok": False}, FILE, CHANGED, True),  # the host changed anyway
        ("write", "denied", {"ok": True}, FILE, FILE, True),  # succeeded inside: that is "private", not denied
        ("write", "denied", {"ok": False}, FILE, FILE, False),
        ("create", "denied", {"ok": False}, ABSENT, FILE, True),
        ("create", "private", {"ok": True}, ABSENT, ABSENT, False),
        ("create", "private", {"ok": False}, ABSENT, ABSENT, True),  # the control's place is not writable
        ("create", "private", {"ok": True}, ABSENT, FILE, True),
        ("create", "allowed", {"ok": True}, ABSENT, FILE, False),
        ("create", "allowed", {"ok": True}, ABSENT, ABSENT, True),
        ("connect", "denied", {"ok": True}, None, None, True),
        ("connect", "denied", {"ok": False}, None, None, False),
        ("connect", "allowed", {"ok": False}, None, None, True),
        ("interfaces", "denied", {"ok": True, "names": ["lo"]}, None, None, False),
        ("interfaces", "denied", {"ok": True, "names": ["eth0", "lo"]}, None, None, True),
    ],
)
def test_judge(op: str, expect: str, got: dict[str, object], before: object, after: object, fails: bool) -> None:
    p = Probe("x", op, "/x", "denied", "why")
    assert (judge(p, expect, got, before, after) is not None) == fails  # type: ignore[arg-type]


def test_judge_list_ignores_only_the_names_the_world_mounts_on_purpose() -> None:
    home = HostState(True, names=(".cargo", ".local", ".ssh"))
    p = Probe("x", "list", "~/", "denied", "why", allow_names=(".cargo", ".local"))
    assert judge(p, "denied", {"ok": True, "names": [".cargo", ".local"]}, home, home) is None
    assert judge(p, "denied", {"ok": True, "names": [".local", ".ssh"]}, home, home) is not None
