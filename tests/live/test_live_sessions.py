"""Real sessions: a real `rcc run` (bubblewrap) whose curl is refused, then allowed from a second process with
`rcc allow`, at once, without a restart; `rcc sessions`; the audit record of the change; and the attacks from
inside the sandbox on the control channel (find or reach its own or another session's socket, approve its own
request, forge or erase the change records), each with its control."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rcctest import is_root, require
from testhosts import TestHost

pytestmark = [pytest.mark.sandbox, pytest.mark.netns]

NAME = "pkgs.test"
RCC = [sys.executable, "-m", "rcc"]
# Inside: fetch until it works (at most ~30 s), then print it.
FETCH_LOOP = (
    f"i=0; while [ $i -lt 300 ]; do if curl -sSf --max-time 5 http://{NAME}/hello.txt; then exit 0; fi; "
    "i=$((i+1)); sleep 0.1; done; exit 1"
)


@dataclass
class World:
    home: Path
    project: Path
    env: dict[str, str]
    address: str

    @property
    def state(self) -> Path:
        return Path(self.env.get("XDG_STATE_HOME") or self.home / ".local" / "state") / "rcc"

    def rcc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RCC, *args], env=self.env, cwd=self.project, capture_output=True, text=True, timeout=60, check=False
        )

    def start(self, script: str, *opts: str) -> subprocess.Popen[str]:
        argv = [*RCC, "run", "--resolve", f"{NAME}={self.address}", "--allow", "other.test", *opts]
        return subprocess.Popen(
            [*argv, "--", "sh", "-c", script],
            env=self.env,
            cwd=self.project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sessions(self) -> list[dict[str, object]]:
        r = self.rcc("sessions", "--json")
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout))

    def wait_session(self, pred: object = None, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.sessions():
                if pred is None or pred(s):  # type: ignore[operator]
                    return s
            time.sleep(0.1)
        raise AssertionError(f"no matching session: {self.sessions()}")


@pytest.fixture
def world(tmp_path: Path, testhost: TestHost) -> Iterator[World]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    require(shutil.which("curl") is not None, "curl is not installed")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from the test host\n")
    testhost.serve_http(www, port=80)
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    yield World(home, project, env, testhost.address)


def test_rcc_allow_from_a_second_process_lets_the_next_request_through(world: World) -> None:
    """The issue's promise: denied, approved from another terminal, the next request succeeds; no restart."""
    p = world.start(FETCH_LOOP)
    try:
        s = world.wait_session(lambda s: int(s["denied"]) >= 1)  # type: ignore[call-overload]
        assert s["project"] == str(world.project) and s["backend"] == "bwrap" and "curl" in str(s["command"])
        assert s["allowed"] == 0
        r = world.rcc("allow", NAME, "--session", str(s["id"]))
        assert r.returncode == 0, r.stderr
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert out.endswith("hello from the test host\n")
    (change,) = [json.loads(x) for x in (world.state / "policy-changes.jsonl").read_text().splitlines()]
    assert (change["session"], change["action"], change["rule"], change["applied"]) == (s["id"], "allow", NAME, True)
    assert change["by_uid"] == os.getuid() and "allow" in change["by_command"]
    assert world.sessions() == []  # the record went with the session


def test_rcc_allow_save_writes_the_user_config_never_the_project(world: World) -> None:
    import tomllib

    p = world.start(FETCH_LOOP)
    try:
        world.wait_session(lambda s: int(s["denied"]) >= 1)  # type: ignore[call-overload]
        r = world.rcc("allow", NAME, "--save")
        assert r.returncode == 0, r.stderr
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
    cfg = world.home / ".config" / "rcc" / "config.toml"
    assert f"saved to network.allow in {cfg}" in r.stdout
    assert tomllib.loads(cfg.read_text())["network"]["allow"] == [NAME]
    assert not (world.project / ".rcc.toml").exists()


def test_rcc_allow_with_no_session_or_a_bad_rule_fails_with_its_code(world: World) -> None:
    r = world.rcc("allow", NAME)
    assert r.returncode == 75 and "no running rcc session" in r.stderr
    p = world.start("sleep 30")
    try:
        world.wait_session()
        r = world.rcc("allow", "*.com")
        assert r.returncode == 78 and "over-broad" in r.stderr
        r = world.rcc("allow", NAME, "--session", "ffffffff")
        assert r.returncode == 75
    finally:
        p.kill()
        p.wait()


def test_unapproved_session_keeps_being_refused(world: World) -> None:
    """Control for the test above: without `rcc allow`, the same loop never gets through."""
    p = world.start(FETCH_LOOP.replace("300", "15"))
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1 and "hello" not in out


def test_rcc_deny_from_a_second_process_closes_an_allowed_host(world: World) -> None:
    script = (
        f"curl -sSf http://{NAME}/hello.txt || exit 2; i=0; while [ $i -lt 300 ]; do "
        f"curl -sSf --max-time 5 -o /dev/null http://{NAME}/hello.txt || exit 0; i=$((i+1)); sleep 0.1; done; exit 1"
    )
    p = world.start(script, "--allow", NAME)
    try:
        s = world.wait_session(lambda s: int(s["allowed"]) >= 1)  # type: ignore[call-overload]
        assert world.rcc("deny", NAME).returncode == 0  # --session defaults to the newest
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert s["denied"] == 0


def test_approval_goes_to_the_named_session_only(world: World) -> None:
    """Two sessions at once: approving one leaves the other refused (no approval applied to the wrong one)."""
    a = world.start(FETCH_LOOP)
    b = world.start(FETCH_LOOP.replace("300", "40"))
    try:
        sa = world.wait_session(lambda s: "300" in str(s["command"]) and int(s["denied"]) >= 1)  # type: ignore[call-overload]
        assert world.rcc("allow", NAME, "--session", str(sa["id"])).returncode == 0
        a.communicate(timeout=60)
        b.communicate(timeout=60)
    finally:
        a.kill()
        b.kill()
    assert a.returncode == 0 and b.returncode == 1


# ---------------------------------------------------------------------------------------------- attacks

PROBE = r"""
import os, socket, sys
state, other = sys.argv[1], sys.argv[2]
found = []
for top in ("/", os.path.expanduser("~"), "/tmp", "/run", "/var"):
    for dirpath, dirs, files in os.walk(top):
        if dirpath.startswith(("/proc", "/sys", "/dev", "/usr")):
            dirs[:] = []
            continue
        found += [os.path.join(dirpath, f) for f in files if f.endswith((".sock", "policy-changes.jsonl"))]
print("found", found)
for path in (state + "/sessions", state + "/policy-changes.jsonl", other):
    try:
        os.stat(path)
        print("visible", path)
    except OSError as e:
        print("hidden", path, e.errno)
for path in [other] + [p for p in found if p.endswith(".sock")]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        s.sendall(b'{"op":"allow","rule":"pkgs.test"}\n')
        print("reached", path, s.recv(200))
    except OSError as e:
        print("unreachable", path, e.errno)
try:
    with open(state + "/policy-changes.jsonl", "a") as f:
        f.write('{"forged": true}\n')
    print("forged")
except OSError as e:
    print("cannot forge", e.errno)
try:
    os.unlink(state + "/policy-changes.jsonl")
    print("erased")
except OSError as e:
    print("cannot erase", e.errno)
"""


@pytest.mark.parametrize("xdg", ["default", "xdg-state-in-a-visible-dir"])
def test_sandbox_cannot_find_or_reach_control_sockets_nor_forge_changes(world: World, xdg: str) -> None:
    """Attack: from inside a session, look for its own and another session's control socket (by walking the
    visible tree, and by the exact path), connect and approve its own request; append to or erase the
    change records. Also with XDG_STATE_HOME inside a directory the sandbox sees (--ro): rcc still hides it.
    Control: from the host the same socket answers and `rcc allow` works (the test above)."""
    require(is_root(), "test hosts need root")
    if xdg != "default":
        shared = world.project.parent / "shared"
        shared.mkdir()
        world.env["XDG_STATE_HOME"] = str(shared / "state")
    # another session, running: its socket is the one to reach
    other = world.start("sleep 60")
    try:
        sid = str(world.wait_session()["id"])
        other_sock = str(world.state / "sessions" / f"{sid}.sock")
        assert world.rcc("deny", "nothing.example", "--session", sid).returncode == 0  # a change record exists
        opts = ["--ro", str(world.project.parent / "shared")] if xdg != "default" else []
        (world.project / "probe.py").write_text(PROBE)
        script = f"python3 probe.py {world.state} {other_sock}; curl -sSf --max-time 5 http://{NAME}/hello.txt"
        p = world.start(script, *opts)
        out, _err = p.communicate(timeout=120)
    finally:
        other.kill()
        other.wait()
    assert "found []" in out, out
    assert f"hidden {world.state}/sessions" in out and f"hidden {other_sock}" in out
    assert "reached" not in out and "forged" not in out.replace("cannot forge", "")
    assert "erased" not in out
    assert "hello" not in out and p.returncode != 0  # its own request was never approved
    records = (world.state / "policy-changes.jsonl").read_text().splitlines()
    assert len(records) == 1 and json.loads(records[0])["rule"] == "nothing.example"
