"""Real-kernel tests of rcc's seccomp filter: the program is installed by the real bubblewrap (`--seccomp FD`)
and a probe inside the sandbox makes the raw system calls. Each attack test has a control beside it: the same
call without the filter (showing the attack is real on this kernel, so the denial comes from the filter), or
the legitimate neighbour of the call working under the filter.

The sandbox here is deliberately minimal (no --new-session, no --disable-userns) so that only the filter can
be what stops TIOCSTI and nested user namespaces. Every test runs twice: as root and as an unprivileged user
(`rccuser`, or RCC_TEST_USER; the current user when not root).
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rcc import seccomp
from rcctest import is_root, require

pytestmark = pytest.mark.sandbox

PROBE = (Path(__file__).parent / "seccomp_probe.py").read_text()
PYTHON = "/usr/bin/python3"  # readable by every user, unlike a venv under /root
TEST_USER = os.environ.get("RCC_TEST_USER", "rccuser")
ARCH = seccomp.native_arch()
NR = seccomp.SYSCALLS[ARCH]
EPERM, ENOSYS, EAFNOSUPPORT = errno.EPERM, errno.ENOSYS, errno.EAFNOSUPPORT
DENIED_EPERM = {"ret": -1, "errno": EPERM}
TIOCGWINSZ = 0x5413
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass(frozen=True)
class Outcome:
    returncode: int
    results: list[dict[str, Any]]
    stderr: str

    @property
    def first(self) -> dict[str, Any]:
        assert self.results, f"probe printed nothing (exit {self.returncode}): {self.stderr}"
        return self.results[0]


@dataclass(frozen=True)
class Sandbox:
    """Runs the probe in `bwrap ... --seccomp FD` as the chosen user."""

    as_user: list[str]  # argv prefix that switches user ([] = stay)
    who: str

    def run(
        self,
        ops: list[dict[str, Any]],
        *,
        filtered: bool = True,
        stdin: int = subprocess.DEVNULL,
        controlling_tty: bool = False,
        wrapper: list[str] | None = None,
    ) -> Outcome:
        fds: list[int] = []
        argv = [
            "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
        ]  # fmt: skip
        if filtered:
            fd = seccomp.program_fd(seccomp.build_filter())
            fds.append(fd)
            argv += ["--seccomp", str(fd)]
        argv += ["--", PYTHON, "-I", "-c", PROBE, json.dumps(ops)]
        # setsid --ctty: a new session whose controlling terminal is stdin, as in the user's interactive shell
        prefix = ["setsid", "--ctty"] if controlling_tty else []
        try:
            p = subprocess.run(
                prefix + self.as_user + (wrapper or []) + argv,
                stdin=stdin,
                capture_output=True,
                text=True,
                pass_fds=fds,
                cwd="/",
                timeout=120,
                check=False,
            )
        finally:
            for fd in fds:
                os.close(fd)
        results = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        assert p.returncode != 99, f"probe refused to run: {p.stdout}"
        return Outcome(p.returncode, results, p.stderr)

    def call(self, name: str, *args: Any, filtered: bool = True) -> dict[str, Any]:
        out = self.run([{"op": "syscall", "nr": NR[name], "args": list(args)}], filtered=filtered)
        return out.first


@pytest.fixture(params=["root", "unprivileged"])
def box(request: pytest.FixtureRequest) -> Sandbox:
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    require(Path(PYTHON).exists(), f"{PYTHON} is needed inside the sandbox")
    if request.param == "root":
        require(is_root(), "the root variant needs root")
        return Sandbox([], "root")
    if not is_root():
        return Sandbox([], pwd.getpwuid(os.getuid()).pw_name)
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to switch user")
    require(_user_exists(TEST_USER), f"test user {TEST_USER!r} does not exist (useradd {TEST_USER})")
    prefix = ["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}", "--init-groups", "--"]
    return Sandbox(prefix, TEST_USER)


# ------------------------------------------------------------------------------------------- the filter is on
def test_filter_covers_the_command_and_the_sandbox_init(box: Sandbox) -> None:
    """Attack: ptrace bwrap's pid 1 (same uid, same pid namespace) and run syscalls from an unfiltered process.
    bubblewrap installs the filter in its init too, and no_new_privs stops setuid binaries regaining rights."""
    st = box.run([{"op": "status"}]).first
    for proc in ("self", "init"):
        assert st[proc]["Seccomp"] == "2", proc
        assert st[proc]["Seccomp_filters"] == "1", proc
        assert st[proc]["NoNewPrivs"] == "1", proc
    if box.who != "root":
        assert st["self"]["Uid"].split()[0] != "0"


def test_control_agent_workload_runs_under_the_filter(box: Sandbox) -> None:
    """Threads (glibc's clone3 -> ENOSYS -> clone fallback), subprocesses, files, loopback TCP, AF_UNIX."""
    out = box.run([{"op": "workload"}])
    assert out.first == {"ok": ["thread", "child", "file", "tcp", "unix"]}, out.stderr


# ------------------------------------------------------------------------------------------- every rule
def _denying_args(rule: seccomp.Rule) -> list[int]:
    if isinstance(rule, seccomp.Deny):
        return [0] * 6
    if isinstance(rule, seccomp.DenyValues):
        return [rule.values[0] if i == rule.arg else 0 for i in range(6)]
    if isinstance(rule, seccomp.AllowValues):
        return [0xDEAD if i == rule.arg else 0 for i in range(6)]
    if isinstance(rule, seccomp.DenyBitsIf):
        flag, bit = rule.flag_mask & -rule.flag_mask, rule.mask & -rule.mask
        return [flag if i == rule.flag_arg else bit if i == rule.arg else 0 for i in range(6)]
    if rule.syscall in ("clone", "unshare"):
        return [(seccomp.CLONE_NEWUSER | signal.SIGCHLD) if i == rule.arg else 0 for i in range(6)]
    return [rule.mask & -rule.mask if i == rule.arg else 0 for i in range(6)]


def test_every_denied_syscall_is_refused_by_the_real_kernel(box: Sandbox) -> None:
    rules = seccomp.rules_for(ARCH)
    ops = [{"op": "syscall", "nr": nr, "args": _denying_args(rule)} for rule, nr in rules]
    out = box.run(ops)
    assert len(out.results) == len(rules), out.stderr
    got = {rule.syscall: (r["ret"], r["errno"]) for (rule, _nr), r in zip(rules, out.results, strict=True)}
    assert got == {rule.syscall: (-1, rule.errno) for rule, _nr in rules}


# ------------------------------------------------------------------------------------------- keyring
SECRET = "rcc-test-secret-4711"
# Run before bwrap, as the test user: join a fresh session keyring holding a "login secret" (what Kerberos or
# fscrypt leave in a real login session), then exec the sandbox, which inherits that session keyring.
WITH_SESSION_SECRET = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
nr_keyctl, nr_add_key = int(sys.argv[1]), int(sys.argv[2])
assert libc.syscall(nr_keyctl, 1, None) > 0, "KEYCTL_JOIN_SESSION_KEYRING"
assert libc.syscall(nr_add_key, b"user", b"rcc-test", b"{SECRET}", {len(SECRET)}, -3) > 0, "add_key"
os.execvp(sys.argv[3], sys.argv[3:])
"""


def test_reading_a_secret_from_the_login_session_keyring_is_denied(box: Sandbox) -> None:
    op = {"op": "read_session_key", "keyctl": NR["keyctl"], "description": "rcc-test"}
    wrap = [PYTHON, "-I", "-c", WITH_SESSION_SECRET, str(NR["keyctl"]), str(NR["add_key"])]
    assert box.run([op], wrapper=wrap).first == DENIED_EPERM
    assert box.call("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) == DENIED_EPERM
    assert box.call("add_key", 0, 0, 0, 0, -3) == DENIED_EPERM
    assert box.call("request_key", 0, 0, 0, -3) == DENIED_EPERM


def test_control_without_filter_the_sandbox_reads_the_login_session_secret(box: Sandbox) -> None:
    op = {"op": "read_session_key", "keyctl": NR["keyctl"], "description": "rcc-test"}
    wrap = [PYTHON, "-I", "-c", WITH_SESSION_SECRET, str(NR["keyctl"]), str(NR["add_key"])]
    got = box.run([op], wrapper=wrap, filtered=False).first
    assert got == {"ret": len(SECRET), "data": SECRET}, "the keyring crosses the sandbox boundary"


# ------------------------------------------------------------------------------------------- terminal
def _pending_input(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 100)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize("cmd", [seccomp.TIOCSTI, 0x1_0000_0000 | seccomp.TIOCSTI], ids=["plain", "high-bits"])
def test_tiocsti_typing_into_the_users_terminal_is_denied(box: Sandbox, cmd: int) -> None:
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        op = {"op": "syscall", "nr": NR["ioctl"], "args": [0, cmd, {"buf": "X"}]}
        out = box.run([op], stdin=slave, controlling_tty=True)
        assert out.first == DENIED_EPERM
        assert _pending_input(slave) == b"", "nothing reached the terminal's input queue"
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("cmd", [seccomp.TIOCSTI, 0x1_0000_0000 | seccomp.TIOCSTI], ids=["plain", "high-bits"])
def test_control_without_filter_tiocsti_types_into_the_terminal(box: Sandbox, cmd: int) -> None:
    legacy = Path("/proc/sys/dev/tty/legacy_tiocsti")
    require(
        not legacy.exists() or legacy.read_text().strip() == "1",
        "dev.tty.legacy_tiocsti=0: this kernel refuses TIOCSTI by itself, so there is no attack to show",
    )
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        op = {"op": "syscall", "nr": NR["ioctl"], "args": [0, cmd, {"buf": "X"}]}
        out = box.run([op], stdin=slave, controlling_tty=True, filtered=False)
        assert out.first == {"ret": 0, "errno": 0}
        assert _pending_input(slave) == b"X", "the byte would be read by the user's shell"
    finally:
        os.close(master)
        os.close(slave)


def test_control_ordinary_terminal_ioctls_work_under_the_filter(box: Sandbox) -> None:
    master, slave = os.openpty()
    try:
        op = {"op": "syscall", "nr": NR["ioctl"], "args": [0, TIOCGWINSZ, {"size": 8}]}
        assert box.run([op], stdin=slave, controlling_tty=True).first == {"ret": 0, "errno": 0}
    finally:
        os.close(master)
        os.close(slave)


def test_tioclinux_console_paste_is_denied(box: Sandbox) -> None:
    master, slave = os.openpty()
    try:
        op = {"op": "syscall", "nr": NR["ioctl"], "args": [0, seccomp.TIOCLINUX, {"buf": "\x03"}]}
        assert box.run([op], stdin=slave, controlling_tty=True).first == DENIED_EPERM
        unfiltered = box.run([op], stdin=slave, controlling_tty=True, filtered=False).first
        assert unfiltered["errno"] != EPERM, "control: on a pty the kernel itself answers differently"
    finally:
        os.close(master)
        os.close(slave)


# ------------------------------------------------------------------------------------------- sockets
@pytest.mark.parametrize("domain", [seccomp.AF_VSOCK, 0x1_0000_0000 | seccomp.AF_VSOCK], ids=["plain", "high"])
def test_vsock_to_the_vm_host_is_denied(box: Sandbox, domain: int) -> None:
    """AF_VSOCK is not network-namespaced: it would reach host services around the sandbox's network."""
    assert box.call("socket", domain, 1, 0) == {"ret": -1, "errno": EAFNOSUPPORT}
    assert box.call("socketpair", domain, 1, 0, {"size": 8}) == {"ret": -1, "errno": EAFNOSUPPORT}


def test_control_without_filter_vsock_sockets_open(box: Sandbox) -> None:
    require(Path("/sys/module/vsock").exists(), "this kernel has no AF_VSOCK: no attack to show")
    got = box.call("socket", seccomp.AF_VSOCK, 1, 0, filtered=False)
    assert got["ret"] >= 0, got


def test_control_unix_inet_inet6_netlink_sockets_work_under_the_filter(box: Sandbox) -> None:
    ops = [
        {"op": "syscall", "nr": NR["socket"], "args": [family, kind, 0]}
        for family, kind in ((1, 1), (2, 1), (2, 2), (10, 1), (16, 3))  # NETLINK_ROUTE is SOCK_RAW
    ]
    ops.append({"op": "syscall", "nr": NR["socketpair"], "args": [1, 1, 0, {"size": 8}]})
    out = box.run(ops)
    assert [r["errno"] for r in out.results] == [0] * len(ops), out.results


# ------------------------------------------------------------------------------------------- io_uring
IO_URING_PARAMS = {"size": 120}


def test_io_uring_which_bypasses_seccomp_is_denied(box: Sandbox) -> None:
    assert box.call("io_uring_setup", 1, IO_URING_PARAMS) == {"ret": -1, "errno": ENOSYS}


def test_control_without_filter_io_uring_sets_up(box: Sandbox) -> None:
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    require(
        not disabled.exists() or disabled.read_text().strip() == "0",
        "kernel.io_uring_disabled is set: no attack to show",
    )
    got = box.call("io_uring_setup", 1, IO_URING_PARAMS, filtered=False)
    assert got["ret"] >= 0, got


# ------------------------------------------------------------------------------------------- namespaces
def test_nested_user_namespace_is_denied(box: Sandbox) -> None:
    assert box.call("unshare", seccomp.CLONE_NEWUSER) == DENIED_EPERM
    assert box.call("unshare", seccomp.CLONE_NEWNET) == DENIED_EPERM
    assert box.call("clone", seccomp.CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0) == DENIED_EPERM
    assert box.call("setns", -1, 0) == DENIED_EPERM


def test_control_nested_user_namespace_without_filter_and_harmless_unshare_with_it(box: Sandbox) -> None:
    assert box.call("unshare", seccomp.CLONE_NEWUSER, filtered=False) == {"ret": 0, "errno": 0}
    assert box.call("setns", -1, 0, filtered=False) == {"ret": -1, "errno": errno.EBADF}
    assert box.call("unshare", 0x400 | 0x200) == {"ret": 0, "errno": 0}  # CLONE_FILES|CLONE_FS


# ------------------------------------------------------------------------------------------- memory/kernel
ADDR_NO_RANDOMIZE = 0x0040000
UFFD_USER_MODE_ONLY = 1


def test_disabling_aslr_with_personality_is_denied(box: Sandbox) -> None:
    assert box.call("personality", ADDR_NO_RANDOMIZE) == DENIED_EPERM


def test_control_personality_query_works_and_unfiltered_aslr_switch_succeeds(box: Sandbox) -> None:
    assert box.call("personality", 0xFFFFFFFF) == {"ret": 0, "errno": 0}
    assert box.call("personality", ADDR_NO_RANDOMIZE, filtered=False)["errno"] == 0


def test_userfaultfd_race_aid_is_denied(box: Sandbox) -> None:
    assert box.call("userfaultfd", UFFD_USER_MODE_ONLY) == DENIED_EPERM


def test_control_without_filter_userfaultfd_opens(box: Sandbox) -> None:
    got = box.call("userfaultfd", UFFD_USER_MODE_ONLY, filtered=False)
    assert got != DENIED_EPERM, got


def test_perf_event_open_is_denied(box: Sandbox) -> None:
    assert box.call("perf_event_open", _perf_attr(), 0, -1, -1, 0) == DENIED_EPERM


def test_control_without_filter_perf_event_open_reaches_the_kernel(box: Sandbox) -> None:
    got = box.call("perf_event_open", _perf_attr(), 0, -1, -1, 0, filtered=False)
    assert got != DENIED_EPERM, got  # success, or the kernel's own EACCES under perf_event_paranoid=3


def _perf_attr() -> dict[str, Any]:
    # struct perf_event_attr: type=PERF_TYPE_SOFTWARE, size=128, config=PERF_COUNT_SW_TASK_CLOCK,
    # flags: disabled | exclude_kernel | exclude_hv (self-profiling an unprivileged process may do)
    raw = (1).to_bytes(4, "little") + (128).to_bytes(4, "little") + (1).to_bytes(8, "little")
    raw += bytes(24) + (0b1100001).to_bytes(8, "little")
    return {"buf": raw.decode("latin-1"), "size": 128}


# ------------------------------------------------------------------------------------------- foreign ABIs
X86_GETPID_INT80 = "b814000000cd80c3"  # mov eax, 20 (i386 getpid); int 0x80; ret
X86_GETPID_X32 = "b827000040" + "0f05c3"  # mov eax, 0x40000027 (x32 getpid); syscall; ret
X86_GETPID_NATIVE = "b827000000" + "0f05c3"  # mov eax, 39; syscall; ret


def _x86_only() -> None:
    if ARCH != "x86_64":
        pytest.skip("the i386 and x32 ABIs exist on x86_64 only")


@pytest.mark.parametrize("code", [X86_GETPID_INT80, X86_GETPID_X32], ids=["i386-int80", "x32"])
def test_syscall_through_a_foreign_abi_kills_the_process(box: Sandbox, code: str) -> None:
    """Other ABIs number syscalls differently (keyctl is 288 via int 0x80): they would slip past every rule."""
    _x86_only()
    out = box.run([{"op": "machine_code", "code": code}])
    assert out.results == []
    assert out.returncode == 128 + signal.SIGSYS, out.stderr


def test_control_native_syscall_instruction_works_and_int80_works_unfiltered(box: Sandbox) -> None:
    _x86_only()
    assert box.run([{"op": "machine_code", "code": X86_GETPID_NATIVE}]).first["ret"] > 0
    assert box.run([{"op": "machine_code", "code": X86_GETPID_INT80}], filtered=False).first["ret"] > 0


# ------------------------------------------------------------------------------------------- through rcc run
def _rcc_run_on_a_terminal(tmp_path: Path, code: str) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """`rcc run` from a terminal (interactive: no --new-session, so the agent keeps job control): its stdin is
    the controlling terminal, as when a user starts an agent from their shell."""
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    require(shutil.which("setsid") is not None, "setsid (util-linux) is needed for a controlling terminal")
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if "PYTHONPATH" in os.environ:  # how this interpreter finds rcc when it is not installed into it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        argv = ["setsid", "--ctty", sys.executable, "-m", "rcc", "run", "--", PYTHON, "-I", "-c", code]
        p = subprocess.run(
            argv, stdin=slave, capture_output=True, text=True, cwd=project, env=env, timeout=120, check=False
        )
        return p, _pending_input(slave)
    finally:
        os.close(master)
        os.close(slave)


IOCTL_ON_STDIN = """
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(b"X", 8)
ret = libc.ioctl(0, ctypes.c_ulong(int(sys.argv[1], 0)), buf)
print(json.dumps({"ret": ret, "errno": ctypes.get_errno() if ret else 0}))
"""


def test_rcc_run_agent_typing_into_the_users_terminal_is_denied(tmp_path: Path) -> None:
    p, pending = _rcc_run_on_a_terminal(tmp_path, IOCTL_ON_STDIN.replace("sys.argv[1]", '"0x5412"'))
    assert p.stdout.strip(), p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == DENIED_EPERM, p.stderr
    assert pending == b""


def test_control_rcc_run_agent_reads_the_terminal_size(tmp_path: Path) -> None:
    p, _ = _rcc_run_on_a_terminal(tmp_path, IOCTL_ON_STDIN.replace("sys.argv[1]", f'"{TIOCGWINSZ:#x}"'))
    assert p.stdout.strip(), p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == {"ret": 0, "errno": 0}, p.stderr
