"""The catalogue's file and network attacks (tests/attacks.py: FILE_PROBES, NET_PROBES), each with its control,
run against every backend: one sandbox run performs all of a kind, then each is judged on the host (the file's
bytes before and after, what came out inside). A probe whose outcome differs on a backend says so, with the
reason, in the catalogue (`Probe.differs`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from attacks import FILE_PROBES, NET_PROBES, PROBE_SCRIPT, Probe, host_state, judge, resolve
from escape_world import World


def _run_probes(
    world: World, probes: list[Probe], *args: str, review: bool = False, **more: str
) -> tuple[list[str], dict[str, Path]]:
    """Run `probes` in one sandbox; return the failures (empty: every attack stopped, every control works).
    review: the session runs in review mode and `rcc apply` follows it, so what is judged on the host is what
    the layer let through and apply wrote."""
    paths = {
        p.name: resolve(p.target, home=str(world.home), project=str(world.project), outside=str(world.outside), **more)
        for p in probes
    }
    files = [p for p in probes if p.op not in ("connect", "connect-unix", "serve-loopback", "interfaces")]
    before = {p.name: host_state(paths[p.name]) for p in files}
    spec = json.dumps([[p.name, p.op, paths[p.name]] for p in probes])
    res = world.rcc("run", *(("--review",) if review else ()), *args, "--", "python3", "-c", PROBE_SCRIPT, spec)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    if review:
        applied = world.rcc("apply")
        assert applied.returncode in (0, 65), (applied.stdout, applied.stderr)  # 65: something refused
    got = {d["name"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert sorted(got) == sorted(p.name for p in probes), res.stdout
    after = {p.name: host_state(paths[p.name]) for p in files}
    failures = []
    for p in probes:
        expect = p.expect_on(world.backend)
        why = judge(p, expect, got[p.name], before.get(p.name), after.get(p.name))
        if why is not None:
            failures.append(f"{p.name} [{p.op} {paths[p.name]}] expected {expect} ({p.why}): {why}")
    return failures, {k: Path(v) for k, v in paths.items()}


def test_file_attacks_are_stopped_and_controls_work(world: World) -> None:
    tag = uuid.uuid4().hex[:12]
    try:
        failures, _ = _run_probes(world, list(FILE_PROBES), "--no-network", tag=tag)
    finally:
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            Path(f"{d}/rcc-probe-{tag}").unlink(missing_ok=True)  # only if a probe escaped
    assert failures == [], "\n".join(failures)


@pytest.mark.backends("bwrap", "podman", why="review mode runs on bwrap and podman (docker refuses --review)")
def test_file_attacks_are_stopped_in_review_mode_and_controls_apply(world: World) -> None:
    """The same catalogue through the copy-on-write layer, then `rcc apply`: the protections hold inside the
    layer (never-writable paths read-only over it) and apply writes only what the controls wrote."""
    tag = uuid.uuid4().hex[:12]
    try:
        failures, _ = _run_probes(world, list(FILE_PROBES), "--no-network", review=True, tag=tag)
    finally:
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            Path(f"{d}/rcc-probe-{tag}").unlink(missing_ok=True)
    assert failures == [], "\n".join(failures)


@pytest.fixture
def host_services() -> Iterator[dict[str, str]]:
    """What a sandbox must not reach on the host: a TCP listener on its loopback, an ssh-agent-like unix socket
    in /tmp (mode 0777: permissions would not stop the test user) and an abstract unix socket."""
    tag = uuid.uuid4().hex[:12]
    sockdir = Path(f"/tmp/ssh-rcc{tag}")
    sockdir.mkdir(mode=0o755)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(sockdir / "agent.1"))
    os.chmod(sockdir / "agent.1", 0o777)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0rcc-abstract-{tag}")
    servers = [tcp, unix, abstract]
    stop = threading.Event()

    for s in servers:
        s.listen()  # before the control below connects (in the threads, it raced it)

    def serve(s: socket.socket) -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                s.accept()[0].close()
            except OSError:
                continue

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield {
            "host_loopback": str(tcp.getsockname()[1]),
            "host_unix": str(sockdir / "agent.1"),
            "host_abstract": f"rcc-abstract-{tag}",
        }
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in servers:
            s.close()
        (sockdir / "agent.1").unlink(missing_ok=True)
        sockdir.rmdir()


def _reachable_on_host(services: dict[str, str]) -> None:
    """Control for the attacks' targets: each host service answers outside the sandbox."""
    socket.create_connection(("127.0.0.1", int(services["host_loopback"])), timeout=3).close()
    for addr in (services["host_unix"], "\0" + services["host_abstract"]):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr)
        s.close()


@pytest.mark.parametrize("mode", ["none", "proxy"])
def test_network_attacks_are_stopped_and_controls_work(world: World, host_services: dict[str, str], mode: str) -> None:
    _reachable_on_host(host_services)
    probes = [p for p in NET_PROBES if p.mode == mode]
    args = ("--no-network",) if mode == "none" else ()
    failures, _ = _run_probes(world, probes, *args, uid=str(world.uid), **host_services)
    assert failures == [], "\n".join(failures)
