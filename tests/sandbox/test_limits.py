"""Resource limits through real `rcc run` sessions on every backend: bwrap as root (cgroups where this machine gives
root one) and as rccuser (rlimits), podman as root and rootless (the engine's cgroup options): a memory hog, a
(bounded) fork bomb and a /tmp filler each hit their limit, the host answers while they run, and what the session
wrote to the project before is kept. Each attack has its control.

What rcc says when a limit stopped the command, and where it cannot tell (never a limit that did not fire):
- bwrap root: the session's cgroup counters (memory: the OOM kill count; processes: refused forks).
- podman/docker root: the kernel's log names the container's cgroup (its id) in the OOM kill and in the pids
  controller's first refused fork.
- bwrap as a user: rlimits act inside the process that asks (MemoryError / EAGAIN): rcc has nothing to read.
- rootless podman: the kernel's log is root's (dmesg_restrict); on cgroup v1 the engine enforces no cgroup limit,
  so rcc passes rlimits (--ulimit nproc, data) and it behaves as a user's bwrap session."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from escape_world import World
from rcc.limits import enforcement

pytestmark = [pytest.mark.sandbox]

# The attacks hold at their limit until the test has seen the host answer (a file "go" in the project): the
# session is provably still running, at its limit, while the host runs a command.
HOG = """
import os, sys, time
open("before.txt", "w").write("project work\\n")
chunks = []
for i in range(int(sys.argv[1])):
    if len(sys.argv) > 2 and i == int(sys.argv[2]):  # hold here (just under the limit) until the test says go
        print("holding", len(chunks) * 10, "MiB", flush=True)
        while not os.path.exists("go"):
            time.sleep(0.02)
    chunks.append(bytearray(10 * 1024 * 1024))  # zero-filled: every page is touched
print("survived", len(chunks) * 10, "MiB", flush=True)
"""

# A fork bomb that stops by itself at 300 processes (so a broken limit cannot take this shared machine down):
# each child waits (at most a minute), the parent counts how many forks the kernel allowed.
BOMB = """
import os, sys, time
open("before.txt", "w").write("project work\\n")
n = 0
for i in range(300):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        end = time.monotonic() + 60
        while not os.path.exists("go") and time.monotonic() < end:
            time.sleep(0.1)
        os._exit(0)
    n += 1
print("forked", n, flush=True)
while not os.path.exists("go"):
    time.sleep(0.02)
"""


def host_answers_during(world: World, proc: subprocess.Popen[str], holding: str) -> None:
    """The attack says it is at its limit (`holding`) and waits: the host must answer now, with the session still
    running (so the answer came during the attack, not after it). Then the attack may go on and end."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(holding), line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
    took = host_responsive()
    assert proc.poll() is None, "the session ended before the host answered: nothing proven"
    assert took < 10, f"the host took {took:.1f}s to run a command"
    world.write(world.project / "go", "")


def cgroup_for(world: World, what: str) -> bool:
    """Does this session enforce `what` with a cgroup? (rcc decides the same way: root with a usable cgroup; the
    engine: root, or rootless on cgroup v2)"""
    if world.backend.container:
        return world.who == "root" or _cgroup_v2_only()
    return world.who == "root" and getattr(enforcement(), what).startswith("cgroup")


def _cgroup_v2_only() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def says_which(world: World) -> bool:
    """Can rcc tell which limit stopped the command? (its cgroup's counters; containers: root reads the kernel log)"""
    return world.who == "root"


def host_responsive() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    return time.monotonic() - t0


def test_memory_hog_hits_the_memory_limit(world: World) -> None:
    world.write(world.project / "hog.py", HOG)
    proc = subprocess.Popen(
        world.rcc_argv(["run", "--no-network", "--memory", "200M", "--", "python3", "hog.py", "60", "12"]),
        cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    host_answers_during(world, proc, "holding 120 MiB")
    out, err = proc.communicate(timeout=120)
    assert "survived" not in out
    assert (world.project / "before.txt").read_text() == "project work\n"  # the session's work is kept
    if cgroup_for(world, "memory"):
        assert proc.returncode == 137, err
        assert ("rcc: killed: memory limit 200M reached" in err) == says_which(world), err
    else:  # rlimit: the allocation fails in the process that asks for too much; rcc has nothing to read
        assert proc.returncode == 1 and "MemoryError" in err, err
        assert "rcc: killed" not in err


def test_control_memory_under_the_limit_is_fine(world: World) -> None:
    world.write(world.project / "hog.py", HOG)
    res = world.rcc("run", "--no-network", "--memory", "300M", "--", "python3", "hog.py", "5")
    assert res.returncode == 0, res.stderr
    assert "survived 50 MiB" in res.stdout
    assert "killed" not in res.stderr


def test_fork_bomb_hits_the_process_limit(world: World) -> None:
    world.write(world.project / "bomb.py", BOMB)
    if world.who == "root":
        # the kernel never applies RLIMIT_NPROC to root: root's sandbox needs a pids cgroup
        from rcctest import require

        require(cgroup_for(world, "processes"), "root's process limit needs a pids cgroup (cgroup v1 or v2)")
    proc = subprocess.Popen(
        world.rcc_argv(["run", "--no-network", "--processes", "64", "--", "python3", "bomb.py"]),
        cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "forked N": every fork the limit allowed is alive and waiting
    assert line.startswith("forked"), line
    took = host_responsive()
    assert proc.poll() is None and took < 10, took
    world.write(world.project / "go", "")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    forked = int(line.split()[-1])
    assert 0 < forked < 64, out
    assert (world.project / "before.txt").read_text() == "project work\n"
    # rlimit (a user's bwrap): the fork fails with EAGAIN in the sandbox, and rcc has no counter to read
    assert ("rcc: process limit 64 reached" in err) == (cgroup_for(world, "processes") and says_which(world)), err


def test_control_processes_under_the_limit_are_fine(world: World) -> None:
    world.write(world.project / "bomb.py", BOMB.replace("range(300)", "range(40)"))
    world.write(world.project / "go", "")
    # 256, not 64: rootless podman's RLIMIT_NPROC also counts the user's other rootless containers' processes
    res = world.rcc("run", "--no-network", "--processes", "256", "--", "python3", "bomb.py")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "40"


@pytest.mark.parametrize("where", ["/tmp", "$HOME", "/dev/shm", "/var/tmp"])
def test_tmp_filler_hits_the_tmpfs_size(world: World, where: str) -> None:
    if where == "/dev/shm" and world.backend.container:
        pytest.skip("the engine makes the container's /dev/shm (64M: podman's and docker's --shm-size default)")
    script = (
        "echo 'project work' > before.txt; "
        f"dd if=/dev/zero of={where}/fill bs=1M count=40 2>&1; echo dd=$?; "
        f"dd if=/dev/zero of={where}/small bs=1K count=1 2>/dev/null; echo small=$?; "
        "echo holding full; while [ ! -e go ]; do sleep 0.05; done"
    )
    proc = subprocess.Popen(
        world.rcc_argv(["run", "--no-network", "--tmp", "16M", "--", "sh", "-c", script]),
        cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = "".join(iter(lambda: proc.stdout.readline() if proc.stdout else "", "holding full\n"))
    assert proc.poll() is None, seen
    took = host_responsive()  # the tmpfs is full and the session still runs
    assert proc.poll() is None and took < 10, took
    world.write(world.project / "go", "")
    out, err = proc.communicate(timeout=60)
    out = seen + out
    assert "No space left on device" in out and "dd=1" in out, out + err
    assert (world.project / "before.txt").read_text() == "project work\n"
    # control: the same writes fit under a larger size
    res = world.rcc("run", "--no-network", "--tmp", "64M", "--", "sh", "-c", script)
    assert "dd=0" in res.stdout and "small=0" in res.stdout, res.stdout


def test_cpu_limit_caps_the_cpu_share(world: World) -> None:
    from rcctest import require

    if world.who == "user" and not (world.backend.container and _cgroup_v2_only()):
        pytest.skip("LIMITATION (README): a user's session gets no CPU share without a cgroup (see rcc doctor)")
    require(cgroup_for(world, "cpu"), "a CPU share needs a cpu cgroup (root with cgroup v1 or v2)")
    spin = (
        "import os, time\n"
        "t0 = time.monotonic()\n"
        "while time.monotonic() - t0 < 2: pass\n"
        "u = os.times(); print(round((u.user + u.system) / (time.monotonic() - t0), 2))\n"
    )
    res = world.rcc("run", "--no-network", "--cpu", "0.25", "--", "python3", "-c", spin)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) < 0.4, res.stdout


def test_real_fork_bomb_is_contained_and_ends_with_the_session(world: World) -> None:
    """The classic shell fork bomb (unbounded: the process limit is all that holds it). The session's command
    returns after it, the host stays responsive, and nothing of the bomb outlives the session."""
    from rcctest import require

    if world.who == "root":
        require(cgroup_for(world, "processes"), "root's process limit needs a pids cgroup (cgroup v1 or v2)")
    # The timer is forked before the bomb: a fork by the session's own shell while the bomb holds every process
    # slot fails, and bash then exits (that is bash, not the sandbox; it failed so on docker 1 run in ~5).
    script = "echo work > before.txt; sleep 3 & timer=$!; bomb() { bomb | bomb & }; bomb; wait $timer; echo after-bomb"
    proc = subprocess.Popen(
        world.rcc_argv(["run", "--no-network", "--processes", "128", "--", "bash", "-c", script]),
        cwd=world.project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    assert host_responsive() < 10
    out, err = proc.communicate(timeout=120)
    assert "after-bomb" in out, err[-2000:]
    assert (world.project / "before.txt").read_text() == "work\n"
    assert ("rcc: process limit 128 reached" in err) == (cgroup_for(world, "processes") and says_which(world)), err
    left = subprocess.run(["pgrep", "-f", r"bomb \| bomb"], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "", "fork bomb processes outlived the session"


V1 = ("memory", "pids", "cpu")


@pytest.fixture
def delegated_v1(world: World) -> Iterator[str]:
    """cgroup v1 directories (memory, pids, cpu) made by root and chowned to the test user: what an administrator
    does to give a user per-session limits on a cgroup v1 (or hybrid) machine. Yields the name."""
    from rcctest import require

    require(all(os.path.isfile(f"/sys/fs/cgroup/{c}/cgroup.procs") for c in V1), "cgroup v1 memory/pids/cpu")
    name = f"rcc-test-delegated-{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for c in V1:
            d = f"/sys/fs/cgroup/{c}/{name}"
            os.mkdir(d)
            made.append(d)
            for f in [d, *(os.path.join(d, e) for e in os.listdir(d))]:
                os.chown(f, world.uid, world.gid)
        yield name
    finally:
        for d in reversed(made):
            for _ in range(100):  # the session's last processes leave a moment after it ends
                try:
                    for sub in os.scandir(d):  # a session cgroup an rcc killed by a failing test left
                        if sub.is_dir(follow_symlinks=False):
                            os.rmdir(sub.path)
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _in_cgroups(name: str) -> Callable[[], None]:
    def move() -> None:  # runs in the child before runuser: rcc then starts inside the delegated cgroups
        for c in V1:
            with open(f"/sys/fs/cgroup/{c}/{name}/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    return move


@pytest.mark.backends("bwrap-user", why="a user's bwrap session without a cgroup is rlimits only; root has its own")
def test_delegated_cgroup_gives_a_user_session_whole_limits(world: World, delegated_v1: str) -> None:
    """The memory hog and the fork bomb as a user whose v1 cgroups root delegated: the whole session is limited
    (not per process), the kernel kills the hog, and rcc says which limit fired; rcc doctor says cgroup v1."""
    world.write(world.project / "hog.py", HOG)
    world.write(world.project / "bomb.py", BOMB)
    world.write(world.project / "go", "")  # the attacks need not wait here (the host check is in the tests above)
    run = functools.partial(
        subprocess.run, cwd=world.project, capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=_in_cgroups(delegated_v1),
    )  # fmt: skip
    doctor = run(world.rcc_argv(["doctor"]))
    assert "memory: cgroup v1" in doctor.stdout and "processes: cgroup v1" in doctor.stdout, doctor.stdout
    hog = run(world.rcc_argv(["run", "--no-network", "--memory", "200M", "--", "python3", "hog.py", "60"]))
    assert hog.returncode == 137, hog.stderr
    assert "rcc: killed: memory limit 200M reached" in hog.stderr
    assert (world.project / "before.txt").read_text() == "project work\n"
    bomb = run(world.rcc_argv(["run", "--no-network", "--processes", "64", "--", "python3", "bomb.py"]))
    assert bomb.returncode == 0 and 0 < int(bomb.stdout.split()[-1]) < 64, bomb.stdout + bomb.stderr
    assert "rcc: process limit 64 reached" in bomb.stderr
    # control: under the limits, nothing is said and the work is done
    ok = run(world.rcc_argv(["run", "--no-network", "--memory", "300M", "--", "python3", "hog.py", "5"]))
    assert ok.returncode == 0 and "survived 50 MiB" in ok.stdout and "limit" not in ok.stderr, ok.stderr
    # the sessions' cgroups went with them: the delegated directories have no children left
    for c in V1:
        d = f"/sys/fs/cgroup/{c}/{delegated_v1}"
        assert [e.name for e in os.scandir(d) if e.is_dir()] == [], c


# A user's cgroup v2 through systemd (rcc.limits: systemd-run --user --scope). This machine has neither the unified
# layout nor a user manager, so the session runs in a mount namespace whose /sys/fs/cgroup is laid out as on such a
# machine, with stand-in systemd-run programs that do not deliver: rcc must not run the command (invariant 4).
FAKE_V2 = """set -e
mount -t tmpfs tmpfs /sys/fs/cgroup
echo "cpuset cpu io memory pids" > /sys/fs/cgroup/cgroup.controllers
m=/sys/fs/cgroup/user.slice/user-$RCC_UID.slice/user@$RCC_UID.service
mkdir -p $m && echo "memory pids cpu" > $m/cgroup.controllers
exec "$@"
"""
STAND_INS = {
    # a user manager that cannot be reached: systemd-run's own words, its exit status
    "fails": '#!/bin/sh\necho "$@" > "$(dirname "$0")/asked"\n'
    'echo "Failed to connect to bus: No such file or directory" >&2\nexit 1\n',
    # runs the command without making any scope (what a broken or planted systemd-run would do)
    "no-scope": '#!/bin/sh\necho "$@" > "$(dirname "$0")/asked"\n'
    'while [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n',
}


@pytest.mark.backends("bwrap-user", why="the systemd scope is how a user gets cgroup v2; root makes its own cgroup")
@pytest.mark.parametrize("stand_in", sorted(STAND_INS))
def test_systemd_run_that_does_not_deliver_the_scope_runs_nothing(
    world: World, stand_in: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Attack/failure: systemd-run fails, or runs bwrap outside any scope: the session does not start (exit 71),
    the command never runs, rcc says why. Control: the same machine with the cgroup limits off runs the command
    without asking systemd-run."""
    from rcctest import require

    require(os.geteuid() == 0 and world.who != "root", "a user session in a mount namespace root makes")
    tools = world.home / f"systemd-run-{stand_in}"  # somewhere the user may reach
    tools.mkdir()
    (tools / "systemd-run").write_text(STAND_INS[stand_in])
    (tools / "systemd-run").chmod(0o755)
    runtime = tools / "run"
    (runtime / "systemd").mkdir(parents=True)
    (runtime / "systemd" / "private").write_text("")
    for p in (tools, runtime, runtime / "systemd"):
        os.chown(p, world.uid, world.gid)
    env = {"XDG_RUNTIME_DIR": str(runtime), "PATH": f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def session(*flags: str) -> subprocess.CompletedProcess[str]:
        argv = world.rcc_argv(["run", "--no-network", *flags, "--", "sh", "-c", "echo ran > ran.txt"], env)
        wrapped = ["unshare", "-m", "--propagation", "private", "sh", "-c", FAKE_V2, "sh", *argv]
        return subprocess.run(
            wrapped, cwd=world.project, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "RCC_UID": str(world.uid)},
        )  # fmt: skip

    r = session("--processes", "64", "--memory", "300M")
    assert (tools / "asked").exists(), r.stderr
    asked = (tools / "asked").read_text().split()
    assert asked[:5] == ["--user", "--scope", "--quiet", "--collect", asked[4]] and asked[4].startswith("--unit=rcc-")
    assert "TasksMax=64" in asked and f"MemoryMax={300 << 20}" in asked and "MemorySwapMax=0" in asked
    assert r.returncode == 71, r.stderr
    assert not (world.project / "ran.txt").exists()
    if stand_in == "fails":
        assert "Failed to connect to bus" in r.stderr and "did not start in its systemd scope" in r.stderr
    else:
        assert "bubblewrap is not in the scope rcc-" in r.stderr
    (tools / "asked").unlink()
    ok = session("--processes", "none", "--memory", "none")
    assert ok.returncode == 0, ok.stderr
    assert (world.project / "ran.txt").read_text() == "ran\n"
    assert not (tools / "asked").exists()


def test_real_systemd_scope_limits_a_user_session(tmp_path: Path) -> None:
    """The real thing, where it exists (the release workflow's linux-user-scope job runs it as a normal user with
    a user manager on cgroup v2): rcc doctor says so, the memory hog and the bounded fork bomb hit the session's
    limits and rcc says which; under the limits the work is done; no rcc scope is left."""
    found = enforcement()
    if os.geteuid() == 0 or found.cgroup != "scope":
        why = "needs a normal user whose systemd user manager runs on cgroup v2 (linux-user-scope job)"
        if os.environ.get("RCC_TEST_USER_SCOPE") == "1":  # that job: a skip there would prove nothing
            pytest.fail(f"{why}; rcc doctor's limits here: {found}")
        pytest.skip(why)
    (tmp_path / "hog.py").write_text(HOG)
    (tmp_path / "bomb.py").write_text(BOMB)
    (tmp_path / "go").write_text("")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    run = functools.partial(
        subprocess.run, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    rcc = [sys.executable, "-m", "rcc"]
    doctor = run([*rcc, "doctor"])
    assert "memory: cgroup v2 (systemd scope)" in doctor.stdout, doctor.stdout
    hog = run([*rcc, "run", "--no-network", "--memory", "200M", "--", "python3", "hog.py", "60"])
    assert hog.returncode == 137 and "rcc: killed: memory limit 200M reached" in hog.stderr, hog.stderr
    assert (tmp_path / "before.txt").read_text() == "project work\n"
    bomb = run([*rcc, "run", "--no-network", "--processes", "64", "--", "python3", "bomb.py"])
    assert bomb.returncode == 0 and 0 < int(bomb.stdout.split()[-1]) < 64, bomb.stdout + bomb.stderr
    assert "rcc: process limit 64 reached" in bomb.stderr
    ok = run([*rcc, "run", "--no-network", "--memory", "300M", "--", "python3", "hog.py", "5"])
    assert ok.returncode == 0 and "survived 50 MiB" in ok.stdout and "limit" not in ok.stderr, ok.stderr
    left = run(["systemctl", "--user", "list-units", "--all", "--no-legend", "rcc-*.scope"])
    assert left.stdout.strip() == "", left.stdout
