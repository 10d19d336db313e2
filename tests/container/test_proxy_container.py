"""The container backend's proxy mode for real: rcc's allowlisting proxy serving a container (podman: create + init
+ listener + start; docker: a gate that waits for rcc's "go"), a test host in a network namespace the test creates
(tests/testhosts.py), and what the command sees of its own argv, exit status and processes.

Each attack test sits next to a control showing the legitimate version works.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctrbox import Box

from testhosts import TestHost, test_host

pytestmark = pytest.mark.podman

NAME = "pkgs.test"
CURL = ["curl", "-sS", "--max-time", "10"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[TestHost]:
    """A test host serving hello.txt over plain HTTP on port 80 (root: it makes a network namespace)."""
    (tmp_path / "hello.txt").write_text("hello from the test host\n")
    with test_host() as host:
        host.serve_http(tmp_path)
        yield host


def _rcc_proxy(host: TestHost) -> list[str]:
    return ["--proxy", "rcc", "--allow", NAME, "--resolve", f"{NAME}={host.address}"]


def test_control_allowed_host_is_reached_through_the_proxy(box: Box, served: TestHost) -> None:
    res = box.run(*CURL, f"http://{NAME}/hello.txt", network="proxy", driver_args=_rcc_proxy(served))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hello from the test host\n"


def test_host_not_on_the_allowlist_is_refused_by_the_proxy(box: Box, served: TestHost) -> None:
    # The same server, by its address (not on the allowlist) and by another name that resolves to it.
    script = (
        f"curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 10 http://{served.address}/hello.txt; "
        "curl -sS -o /dev/null -w '%{http_code}\\n' --max-time 10 http://other.test/hello.txt; echo end"
    )
    args = [*_rcc_proxy(served), "--resolve", f"other.test={served.address}"]
    res = box.sh(script, network="proxy", driver_args=args)
    assert res.stdout.split() == ["403", "403", "end"], res.stderr
    assert "hello from the test host" not in res.stdout


def test_connecting_to_the_test_host_directly_is_blocked(box: Box, served: TestHost) -> None:
    """Attack: ignore the proxy variables and connect to the allowed host's address. There is no route."""
    res = box.run(
        *CURL, "--noproxy", "*", f"http://{served.address}/hello.txt", network="proxy", driver_args=_rcc_proxy(served)
    )
    assert res.returncode != 0
    assert "hello from the test host" not in res.stdout


ODD_ARGS = ["two words", "it's", 'say "hi"', "$HOME", "$(id)", "`id`", "a\nb", "", "-c", "*", "\\", "é"]
ARGV_JSON = "import json,sys; print(json.dumps(sys.argv[1:]))"


@pytest.mark.parametrize("network", ["none", "proxy"])
def test_control_argv_arrives_unchanged(box: Box, network: str) -> None:
    """Quotes, `$`, backquotes, newlines, empty and option-like arguments reach the command as given (docker's
    proxy gate passes them as "$@", never as shell text)."""
    res = box.run("python3", "-c", ARGV_JSON, *ODD_ARGS, network=network)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == ODD_ARGS


PROCS = (
    "import json,os\n"
    "procs={}\n"
    "for p in (d for d in os.listdir('/proc') if d.isdigit()):\n"
    "    try: procs[p]=open(f'/proc/{p}/cmdline','rb').read().decode(errors='replace').split('\\0')[:3]\n"
    "    except OSError: pass\n"
    "print(json.dumps({'procs':procs,'parent':os.getppid(),'me':os.getpid()}))\n"
)


@pytest.mark.parametrize("network", ["none", "proxy"])
def test_no_extra_process_runs_beside_the_command(box: Box, network: str) -> None:
    """The container holds its init and the command: no gate shell, no helper left behind."""
    res = box.run("python3", "-c", PROCS, network=network)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    procs = seen["procs"]
    assert seen["parent"] == 1  # the init's child: the gate's shell exec'd into the command
    assert sorted(procs) == sorted(["1", str(seen["me"])]), procs
    assert procs[str(seen["me"])][:2] == ["python3", "-c"], procs
    assert "rcc-gate" not in res.stdout


@pytest.mark.parametrize("network", ["none", "proxy"])
def test_exit_status_and_signals_pass_through(box: Box, network: str) -> None:
    assert box.sh("exit 7", network=network).returncode == 7
    assert box.sh("exit 0", network=network).returncode == 0
    assert box.sh("kill -TERM $$", network=network).returncode == 128 + 15
    assert box.run("no-such-command-xyz", network=network).returncode == 127


def test_command_never_runs_when_the_proxy_cannot_start(box: Box) -> None:
    """Fail closed: the listener is in place but the proxy behind it fails; the command must not run at all."""
    marker = box.project / "ran"
    res = box.sh(f"touch {marker}", network="proxy", driver_args=["--proxy", "broken"])
    assert res.returncode != 0
    assert "the test's proxy failed to start" in res.stderr
    assert not marker.exists()


def test_control_command_runs_when_the_proxy_starts(box: Box) -> None:
    marker = box.project / "ran"
    res = box.sh(f"touch {marker}", network="proxy")
    assert res.returncode == 0, res.stderr
    assert marker.exists()
