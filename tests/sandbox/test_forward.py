"""Published ports (host -> sandbox) and host services (sandbox -> host) through real `rcc run` sessions on every
backend (bwrap as root and as rccuser, podman as root and rootless, docker): a real HTTP server inside reached from
the host with curl, real psql (containers: a wire-protocol client in the image's python3) against a real
PostgreSQL on the host's loopback. Every listener here is on loopback; nothing else is contacted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from escape_world import World, kill_tree
from rcctest import is_root, require

pytestmark = [pytest.mark.sandbox]  # every backend: bwrap root/user, podman root/rootless, docker

# Inside the sandbox: three servers, each answering with its name; ends when the project has a file "stop".
SERVERS = """
import os, socket, sys, threading, time
def serve(family, addr, port, name):
    s = socket.socket(family); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen()
    while True:
        c, _ = s.accept(); c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(name), name.encode())); c.close()
for family, addr, port, name in ((socket.AF_INET, "127.0.0.1", 8000, "published"),
                                  (socket.AF_INET, "127.0.0.1", 9001, "private"),
                                  (socket.AF_INET6, "::1", 8002, "v6-only")):
    threading.Thread(target=serve, args=(family, addr, port, name), daemon=True).start()
print("READY", flush=True)
end = time.monotonic() + 180  # never outlives a test that died (a SIGKILLed engine client leaves it running)
while not os.path.exists("stop") and time.monotonic() < end:
    time.sleep(0.05)
"""

CONNECT = """
import socket, sys
for spec in sys.argv[1:]:
    host, _, port = spec.rpartition(":")
    try:
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=3)
        s.settimeout(3)
        print("GOT", spec, s.recv(100).decode().strip() or "(eof)")
    except OSError as e:
        print("failed", spec, e.errno)
"""


def free_port(family: int = socket.AF_INET) -> int:
    with socket.socket(family) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def curl(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-g", "-m", "5", url], capture_output=True, text=True, timeout=20, check=False
    )


def wait_for(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = curl(url)
        if r.returncode == 0 or time.monotonic() > deadline:
            return r.stdout
        time.sleep(0.1)


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(10) == b""  # accepted then closed at once: nothing behind it
    except OSError:
        return True


def test_published_dev_server_is_reached_from_the_host_and_nothing_else_is(world: World) -> None:
    """curl on the host reaches the dev server inside through --publish (IPv4 and an [::1] host address, and an
    inside server bound to ::1 only); the sandbox's other port stays unreachable from the host; and the host
    listeners close with the session."""
    require(shutil.which("curl") is not None, "curl is not installed")
    world.write(world.project / "servers.py", SERVERS)
    hp, hp6, hpv6only, other = free_port(), free_port(socket.AF_INET6), free_port(), free_port()
    proc = subprocess.Popen(
        world.rcc_argv(
            ["run", "--no-network", "--publish", f"{hp}:8000", "--publish", f"[::1]:{hp6}:8000",
             "--publish", f"{hpv6only}:8002", "--", "python3", "servers.py"]
        ),
        cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for(f"http://127.0.0.1:{hp}/") == "published"
        assert curl(f"http://[::1]:{hp6}/").stdout == "published"
        if world.engine != "docker":  # docker: no IPv6 inside a --network none container, no server on ::1
            assert curl(f"http://127.0.0.1:{hpv6only}/").stdout == "v6-only"
        # the attack: reach the sandbox's unpublished port 9001 from the host. Nothing on the host leads there.
        assert refused("127.0.0.1", 9001) or curl("http://127.0.0.1:9001/").stdout != "private"
        assert refused("127.0.0.1", other)
        # a published host port is on loopback only, unless an address was given
        assert refused("::1", hp)
        world.write(world.project / "stop", "")
        proc.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        for host, port in (("127.0.0.1", hp), ("::1", hp6), ("127.0.0.1", hpv6only)):
            assert refused(host, port), f"{host}:{port} still open after the session"
    finally:
        kill_tree(proc)


def test_publish_of_a_host_port_in_use_stops_the_session_before_it_runs(world: World) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = world.rcc("run", "--no-network", "--publish", f"{port}:80", "--", "touch", "ran")
    assert res.returncode == 71, res.stderr
    assert f"cannot publish 127.0.0.1:{port}" in res.stderr
    assert not (world.project / "ran").exists()


@pytest.fixture
def host_services() -> Iterator[tuple[int, int]]:
    """Two services on the host's loopback (IPv4), each answering its name: one to allow, one not."""
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


@pytest.mark.parametrize("mode", ["--no-network", "--allow=example.invalid"])
def test_host_service_reaches_only_its_port(world: World, host_services: tuple[int, int], mode: str) -> None:
    """--host-service P: 127.0.0.1:P, localhost:P and [::1]:P inside reach the host's service on P (the control);
    the host's other service on Q stays out of reach by every spelling (the attack), in both network modes.
    Each connection is an audit record."""
    allowed, other = host_services
    world.write(world.project / "connect.py", CONNECT)
    specs = [f"{h}:{p}" for p in (allowed, other) for h in ("127.0.0.1", "localhost", "[::1]")]
    res = world.rcc("run", mode, "--host-service", str(allowed), "--", "python3", "connect.py", *specs)
    assert res.returncode == 0, res.stderr
    for h in ("127.0.0.1", "localhost", "[::1]"):
        if h == "[::1]" and world.engine == "docker":
            # docker turns IPv6 off in a --network none container: ::1 does not exist there (EADDRNOTAVAIL)
            assert f"failed [::1]:{allowed} 99" in res.stdout or f"GOT [::1]:{allowed} allowed" in res.stdout
        else:
            assert f"GOT {h}:{allowed} allowed-service" in res.stdout, res.stdout
        assert f"GOT {h}:{other}" not in res.stdout, res.stdout
    audit = world.home / ".local/state/rcc/audit.jsonl"
    recs = [json.loads(line) for line in audit.read_text().splitlines()]
    mine = [r for r in recs if r["proto"] == "host-service"]
    reached = sum(f"GOT {h}:{allowed}" in res.stdout for h in ("127.0.0.1", "localhost", "[::1]"))
    assert len(mine) == reached and all(r["port"] == allowed and r["decision"] == "allow" for r in mine), mine
    assert all(r["bytes_down"] == len(b"allowed-service") for r in mine)


def test_host_service_does_not_reach_the_hosts_other_addresses(world: World, host_services: tuple[int, int]) -> None:
    """The host service is the host's loopback only: the same port on another host address (here the
    loopback alias 127.0.0.2, which the host would route to itself) is not reachable from inside."""
    allowed, _other = host_services
    world.write(world.project / "connect.py", CONNECT)
    res = world.rcc(
        "run", "--no-network", "--host-service", str(allowed), "--", "python3", "connect.py",
        f"127.0.0.2:{allowed}", f"10.0.0.1:{allowed}", f"127.0.0.1:{allowed}",
    )  # fmt: skip
    assert f"GOT 127.0.0.1:{allowed} allowed-service" in res.stdout
    assert f"GOT 127.0.0.2:{allowed}" not in res.stdout and f"GOT 10.0.0.1:{allowed}" not in res.stdout


def test_untrusted_project_file_host_service_is_ignored(world: World, host_services: tuple[int, int]) -> None:
    allowed, _other = host_services
    world.write(world.project / "connect.py", CONNECT)
    world.write(world.project / ".rcc.toml", f"[network]\nhost_services = [{allowed}]\n")
    res = world.rcc("run", "--no-network", "--", "python3", "connect.py", f"127.0.0.1:{allowed}")
    assert "GOT" not in res.stdout
    assert "network.host_services" in res.stderr and "not trusted" in res.stderr


# Debian's layout (.ci/run installs postgresql): /usr/lib/postgresql/VERSION/bin
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/none/bin"))


@pytest.fixture
def postgres() -> Iterator[int]:
    """A real PostgreSQL on the host's loopback, on a free port, for this test only (trust auth, loopback)."""
    require(is_root(), "starting a PostgreSQL cluster as its own user needs root")
    require((PG_BIN / "postgres").exists() and shutil.which("psql") is not None, "postgresql is not installed")
    base = Path(tempfile.mkdtemp(prefix="rcc-pg-"))
    shutil.chown(base, "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(PG_BIN / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [*as_pg, str(PG_BIN / "postgres"), "-D", str(base / "data"), "-p", str(port), "-k", str(base),
         "-c", "listen_addresses=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False, timeout=30
        ).returncode:
            assert time.monotonic() < deadline and server.poll() is None, "postgres did not start"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


# The container image has no psql (its hash would change for every user): there, a PostgreSQL wire-protocol
# client in the image's python3 (protocol 3.0: startup, trust auth, one simple query) asks the same real server.
PG_QUERY = """
import socket, struct, sys
host, port, query = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
body = struct.pack("!i", 196608) + b"user\\0postgres\\0database\\0postgres\\0\\0"
s.sendall(struct.pack("!i", len(body) + 4) + body)
f = s.makefile("rb")
def message():
    kind = f.read(1); n = struct.unpack("!i", f.read(4))[0]
    return kind, f.read(n - 4)
def until(want):
    while True:
        kind, data = message()
        if kind == b"E":
            sys.exit("error: " + data.decode(errors="replace"))
        if kind == want:
            return data
until(b"Z")
q = query.encode() + b"\\0"
s.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
row = until(b"D")
n = struct.unpack("!i", row[2:6])[0]
print(row[6:6 + n].decode())
"""


def pg_query_argv(world: World, host: str, port: int, query: str) -> list[str]:
    if not world.backend.container:
        return ["psql", "-h", host, "-p", str(port), "-U", "postgres", "-Atc", query]
    world.write(world.project / "pgquery.py", PG_QUERY)
    return ["python3", "pgquery.py", host, str(port), query]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_psql_inside_reaches_postgres_on_the_hosts_loopback(world: World, postgres: int, host: str) -> None:
    query = pg_query_argv(world, host, postgres, "select 40 + 2")
    res = world.rcc("run", "--no-network", "--host-service", str(postgres), "--", *query)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "42"
    # control: without the flag, the same command finds nothing at the sandbox's own loopback
    res = world.rcc("run", "--no-network", "--", *query)
    assert res.returncode != 0 and "42" not in res.stdout
    assert os.path.exists("/proc")  # keep the fixture's server alive to the end of the test


HOLD = """
import socket, sys, time
port = int(sys.argv[1])
conns, got, eof = [], 0, 0
for i in range(300):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    conns.append(s)
for s in conns:
    try:
        data = s.recv(100)
    except OSError:
        data = b""
    if data:
        got += 1
    else:
        eof += 1
print("held", got, "closed", eof, flush=True)
for s in conns:
    s.close()
time.sleep(1)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.settimeout(5)
print("after", s.recv(100).decode(), flush=True)
"""


def close_when_client_goes(c: socket.socket) -> None:
    with contextlib.suppress(OSError):
        c.recv(1)
    c.close()


def test_holding_thousands_of_connections_cannot_starve_rcc(world: World) -> None:
    """The attack: open connection after connection to a host service and hold them, to use up rcc's
    descriptors (its proxy's too). rcc forwards at most 256 at once and closes the rest at once; the control:
    once they are closed, the service is reachable again."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    port = srv.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.sendall(b"banner")
            held.append(c)  # kept open until the client goes, like a database server
            threading.Thread(target=close_when_client_goes, args=(c,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        world.write(world.project / "hold.py", HOLD)
        res = world.rcc("run", "--no-network", "--host-service", str(port), "--", "python3", "hold.py", str(port))
        assert res.returncode == 0, res.stderr
        assert "held 256 closed 44" in res.stdout, res.stdout
        assert "after banner" in res.stdout, res.stdout
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


@pytest.mark.backends("bwrap", why="the forwarders are rcc's own on every backend; their end is the same code")
def test_host_service_connection_still_open_at_the_end_is_still_recorded(world: World) -> None:
    """A host service that never closes its side (a database holding a pooled connection): the session ends
    while the relay is open. The connection is still an audit record, with the bytes that passed (before, the
    relay was dropped unrecorded when the session ended first), whether the sandbox's process left it open or
    closed its side. (Connections both sides close: test_host_service_reaches_only_its_port.)"""
    held: list[socket.socket] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                c, _ = srv.accept()
                c.sendall(b"hello")
                held.append(c)  # never closed while the test runs

    threading.Thread(target=serve, daemon=True).start()
    script = (
        "import socket, sys\n"
        f"s = socket.create_connection(('127.0.0.1', {port})); print(s.recv(5).decode(), flush=True)\n"
        "if sys.argv[1] == 'close': s.close()\n"
        "else: import os; os._exit(0)  # the process ends with the connection open\n"
    )
    world.write(world.project / "hold.py", script)
    try:
        for how in ("open", "close"):
            res = world.rcc("run", "--no-network", "--host-service", str(port), "--", "python3", "hold.py", how)
            assert res.returncode == 0 and "hello" in res.stdout, res.stderr
    finally:
        srv.close()
        for c in held:
            c.close()
    audit = world.home / ".local/state/rcc/audit.jsonl"
    recs = [json.loads(line) for line in audit.read_text().splitlines()]
    mine = [r for r in recs if r["proto"] == "host-service" and r["port"] == port]
    assert len(mine) == 2 and all(r["bytes_down"] == 5 and r["decision"] == "allow" for r in mine), mine
