"""Published ports and host services with the container backends (podman as root and rootless, docker): the
container has `--network none`, and rcc's own forwarders (rcc.forward) reach into its network namespace."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from ctrbox import HERE, Box, base_image

pytestmark = [pytest.mark.podman]

SERVERS = """
import os, socket, threading, time
def serve(port, name):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(name); c.close()
threading.Thread(target=serve, args=(8000, b"published"), daemon=True).start()
threading.Thread(target=serve, args=(9001, b"private"), daemon=True).start()
end = time.monotonic() + 180  # never outlives a test that died (a SIGKILLed engine client leaves it running)
while not os.path.exists("stop") and time.monotonic() < end:
    time.sleep(0.05)
"""

CONNECT = """
import socket, sys
for spec in sys.argv[1:]:
    host, _, port = spec.rpartition(":")
    try:
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=3); s.settimeout(3)
        print("GOT", spec, s.recv(100).decode())
    except OSError as e:
        print("failed", spec, e.errno)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_from(port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.settimeout(3)
            return s.recv(100).decode()
    except OSError:
        return ""


def test_published_port_reaches_the_container_and_no_other_port(box: Box) -> None:
    box.write(box.project / "servers.py", SERVERS)
    box.own_tree()
    hp = free_port()
    driver = [box.python, str(HERE / "drive.py"), "--engine", box.engine, "--image", base_image()]
    driver += ["--network", "none", "--project", str(box.project), "--publish", f"{hp}:8000", "--"]
    driver += ["python3", "servers.py"]
    proc = subprocess.Popen(box.as_user(driver), cwd=box.project, stdin=subprocess.DEVNULL, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline, got = time.monotonic() + 90, ""
        while got != "published" and time.monotonic() < deadline and proc.poll() is None:
            got = read_from(hp)
            time.sleep(0.2)
        assert got == "published", proc.stderr.read() if proc.poll() is not None and proc.stderr else got
        assert read_from(9001) != "private"  # the container's other port is not on the host
        (box.project / "stop").write_text("")
        assert proc.wait(timeout=60) == 0
        assert read_from(hp) == ""  # the forwarder closed with the session
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def two_services() -> Iterator[tuple[int, int]]:
    socks, stop = [], threading.Event()
    for name in (b"allowed-service", b"other-service"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.settimeout(0.2)
        socks.append(s)

        def serve(s: socket.socket = s, name: bytes = name) -> None:
            while not stop.is_set():
                try:
                    c, _ = s.accept()
                except OSError:
                    continue
                with c:
                    c.sendall(name)

        threading.Thread(target=serve, daemon=True).start()
    yield socks[0].getsockname()[1], socks[1].getsockname()[1]
    stop.set()
    for s in socks:
        s.close()


@pytest.mark.parametrize("network", ["none", "proxy"])
def test_host_service_reaches_only_its_port_from_a_container(
    box: Box, two_services: tuple[int, int], network: str
) -> None:
    allowed, other = two_services
    specs = [f"{h}:{p}" for p in (allowed, other) for h in ("127.0.0.1", "localhost", "[::1]")]
    res = box.run("python3", "-c", CONNECT, *specs, network=network, driver_args=["--host-service", str(allowed)])
    assert res.returncode == 0, res.stderr
    assert f"GOT 127.0.0.1:{allowed} allowed-service" in res.stdout, res.stdout
    # docker turns IPv6 off in a --network none container: then ::1 does not exist there at all (EADDRNOTAVAIL)
    v6 = f"GOT [::1]:{allowed} allowed-service" in res.stdout or f"failed [::1]:{allowed} 99" in res.stdout
    assert v6, res.stdout
    assert f"GOT 127.0.0.1:{other}" not in res.stdout and f"GOT [::1]:{other}" not in res.stdout
    assert f"GOT localhost:{other}" not in res.stdout
