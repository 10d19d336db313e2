"""`rcc allow` from a second process reaches a running session on every backend, as root and as the
unprivileged rccuser (the escape suite's worlds): the session's curl is refused, then approved, then gets through
without a restart. The attacks on the control channel are in tests/live/."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from escape_world import World, kill_tree
from testhosts import TestHost, testhost  # noqa: F401  (the fixture)

NAME = "pkgs.test"
LOOP = (
    f"i=0; while [ $i -lt 600 ]; do if curl -sSf --max-time 5 http://{NAME}/hello.txt; then exit 0; fi; "
    "i=$((i+1)); sleep 0.1; done; exit 1"
)


def sessions(world: World) -> list[dict[str, object]]:
    r = world.rcc("sessions", "--json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def test_rcc_allow_from_a_second_process_reaches_the_running_session(
    world: World,
    testhost: TestHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from the test host\n")
    testhost.serve_http(www, port=80)
    argv = world.rcc_argv(["run", "--resolve", f"{NAME}={testhost.address}", "--", "sh", "-c", LOOP])
    p = subprocess.Popen(argv, cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "the session never registered a denial"
            found = [s for s in sessions(world) if int(str(s["denied"])) >= 1]
            if found:
                break
            time.sleep(0.2)
        (s,) = found
        assert s["project"] == str(world.project.resolve())
        r = world.rcc("allow", NAME, "--session", str(s["id"]))
        assert r.returncode == 0, r.stderr
        out, err = p.communicate(timeout=120)
    finally:
        kill_tree(p)
    assert p.returncode == 0, err
    assert out.endswith("hello from the test host\n")
    assert sessions(world) == []
