"""Pure tests of rcc's seccomp program: its structure, a golden disassembly per arch, and its decisions, run in a
strict classic-BPF interpreter (seccomp_emu) for both x86_64 and aarch64 whatever machine runs the tests."""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import termios
import time
from pathlib import Path

import pytest
import seccomp_emu as emu
from hypothesis import given, settings
from hypothesis import strategies as st

from rcc import seccomp
from rcc.errors import ExitCode, RccError

ARCHES = ("x86_64", "aarch64")
HERE = Path(__file__).parent
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028
ALLOW = seccomp.SECCOMP_RET_ALLOW
KILL = seccomp.SECCOMP_RET_KILL_PROCESS


def errno_action(e: int) -> int:
    return seccomp.SECCOMP_RET_ERRNO | e


def decide(arch: str, nr: int | str, *args: int, audit: int | None = None) -> emu.Result:
    number = seccomp.SYSCALLS[arch][nr] if isinstance(nr, str) else nr
    data = emu.seccomp_data(number, seccomp.AUDIT_ARCH[arch] if audit is None else audit, args)
    return emu.run(seccomp.build_filter(arch), data)


# ------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("arch", ARCHES)
def test_program_passes_the_kernel_checker_rules(arch: str) -> None:
    program = seccomp.build_filter(arch)
    insns = emu.decode(program)  # raises on anything the kernel would reject
    assert 50 < len(insns) < 200
    assert insns[0] == emu.Insn(emu.LD_W_ABS, 0, 0, seccomp.OFF_ARCH), "the arch is checked first"


@pytest.mark.parametrize("arch", ARCHES)
def test_golden_disassembly(arch: str) -> None:
    """Any change to the program shows up as a reviewable diff. RCC_UPDATE_GOLDEN=1 rewrites the file."""
    text = seccomp.disassemble(seccomp.build_filter(arch), arch)
    golden = HERE / "golden" / f"{arch}.txt"
    if os.environ.get("RCC_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()


def test_build_is_deterministic_and_native_by_default() -> None:
    assert seccomp.build_filter("x86_64") == seccomp.build_filter("x86_64")
    assert seccomp.build_filter() == seccomp.build_filter(seccomp.native_arch())
    assert seccomp.build_filter("x86_64") != seccomp.build_filter("aarch64")


def test_build_takes_well_under_a_millisecond() -> None:
    seccomp.build_filter()
    runs = []
    for _ in range(200):
        t = time.perf_counter()
        seccomp.build_filter()
        runs.append(time.perf_counter() - t)
    runs.sort()
    assert runs[len(runs) // 2] < 0.001, f"median build {runs[len(runs) // 2] * 1e6:.0f} us"


def test_unknown_arch_fails_closed_with_setup_error() -> None:
    with pytest.raises(RccError) as e:
        seccomp.build_filter("riscv64")
    assert e.value.code == ExitCode.SETUP
    assert "x86_64" in e.value.hint


def test_program_fd_is_sealed_and_starts_at_zero() -> None:
    program = seccomp.build_filter()
    fd = seccomp.program_fd(program)
    try:
        assert os.read(fd, len(program) + 8) == program
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"\0" * 8, 0)  # F_SEAL_WRITE: nobody can swap the program before bwrap reads it
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- the ABI gate
FOREIGN = [
    (arch, foreign)
    for arch in ARCHES
    for foreign in (AUDIT_ARCH_I386, AUDIT_ARCH_ARM, *seccomp.AUDIT_ARCH.values())
    if foreign != seccomp.AUDIT_ARCH[arch]
]


@pytest.mark.parametrize(("arch", "foreign"), FOREIGN)
def test_foreign_abi_syscall_is_killed(arch: str, foreign: int) -> None:
    """int 0x80 from an x86_64 process arrives as AUDIT_ARCH_I386 with i386 numbers (keyctl is 288 there)."""
    for nr in (0, 1, 20, 39, 288):
        assert decide(arch, nr, audit=foreign).action == KILL


@pytest.mark.parametrize("arch", ARCHES)
def test_native_abi_control_allows_ordinary_syscalls(arch: str) -> None:
    ordinary = {"x86_64": (0, 1, 2, 3, 39, 257), "aarch64": (63, 64, 56, 57, 172)}  # read write (open) close
    for nr in ordinary[arch]:  # getpid openat
        assert decide(arch, nr).action == ALLOW


@pytest.mark.parametrize("name", ["keyctl", "getpid"])
def test_x32_abi_syscall_is_killed(name: str) -> None:
    nr = {"keyctl": 250, "getpid": 39}[name]
    assert decide("x86_64", seccomp.X32_SYSCALL_BIT | nr).action == KILL
    assert decide("x86_64", seccomp.X32_SYSCALL_BIT | (1 << 30) | nr).action == KILL


@settings(max_examples=300, deadline=None)
@given(arch=st.sampled_from(ARCHES), nr=st.integers(seccomp.MAX_REVIEWED_NR + 1, seccomp.X32_SYSCALL_BIT - 1))
def test_syscalls_newer_than_the_review_fail_with_enosys(arch: str, nr: int) -> None:
    """A kernel's next mount or namespace syscall must not be allowed just because no rule names it yet."""
    assert decide(arch, nr).action == errno_action(errno.ENOSYS)


def test_control_newest_reviewed_syscall_is_allowed() -> None:
    for arch in ARCHES:
        assert decide(arch, seccomp.MAX_REVIEWED_NR).action == ALLOW  # file_setattr (Linux 6.17)


def test_skipped_syscall_nr_minus_one_is_allowed_control() -> None:
    """A tracer skips a syscall by setting nr to -1: the kernel runs nothing and returns ENOSYS."""
    assert decide("x86_64", 0xFFFFFFFF).action == ALLOW
    assert decide("aarch64", 0xFFFFFFFF).action == ALLOW


# ------------------------------------------------------------------------------------------- each rule
@pytest.mark.parametrize("arch", ARCHES)
def test_every_rule_denies_with_its_errno(arch: str) -> None:
    for rule, _nr in seccomp.rules_for(arch):
        if isinstance(rule, seccomp.Deny):
            args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
        elif isinstance(rule, seccomp.DenyValues):
            args = tuple(rule.values[0] if i == rule.arg else 0 for i in range(6))
        elif isinstance(rule, seccomp.AllowValues):
            args = tuple(0xDEAD if i == rule.arg else 0 for i in range(6))
        elif isinstance(rule, seccomp.DenyBitsIf):
            flag = rule.flag_mask & -rule.flag_mask
            bit = rule.mask & -rule.mask
            args = tuple(flag if i == rule.flag_arg else bit if i == rule.arg else 0 for i in range(6))
            # control: the same mode without the flag (open without O_CREAT ignores its mode) is allowed
            control = tuple(bit if i == rule.arg else 0 for i in range(6))
            assert decide(arch, rule.syscall, *control).action == ALLOW, rule.syscall
        else:
            args = tuple(rule.mask & -rule.mask if i == rule.arg else 0 for i in range(6))
        assert decide(arch, rule.syscall, *args).action == errno_action(rule.errno), rule.syscall


@pytest.mark.parametrize("arch", ARCHES)
def test_rules_are_one_per_syscall_and_named_correctly(arch: str) -> None:
    names = [r.syscall for r in seccomp.RULES]
    assert len(names) == len(set(names))
    assert set(names) <= set().union(*(seccomp.SYSCALLS[a] for a in ARCHES))
    numbers = [nr for _r, nr in seccomp.rules_for(arch)]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("arch", ARCHES)
def test_plain_syscalls_are_decided_without_reading_arguments(arch: str) -> None:
    """Invariant 4: only syscalls with argument rules read args, so the kernel's action cache covers the rest."""
    with_args = {nr for r, nr in seccomp.rules_for(arch) if not isinstance(r, seccomp.Deny)}
    for nr in range(0, seccomp.MAX_REVIEWED_NR + 40):
        res = decide(arch, nr, 1, 2, 3, 4, 5, 6)
        reads_args = bool(res.loaded - {seccomp.OFF_NR, seccomp.OFF_ARCH})
        assert reads_args == (nr in with_args), nr
        assert res.steps < 120


def _native_rule_free_nrs(arch: str) -> st.SearchStrategy[int]:
    ruled = {nr for _r, nr in seccomp.rules_for(arch)}
    return st.integers(0, seccomp.MAX_REVIEWED_NR).filter(lambda n: n not in ruled)


u64 = st.integers(0, 2**64 - 1)


@settings(max_examples=300, deadline=None)
@given(arch=st.sampled_from(ARCHES), data=st.data(), args=st.tuples(u64, u64, u64, u64, u64, u64))
def test_syscalls_without_rules_are_allowed_whatever_the_args(
    arch: str, data: st.DataObject, args: tuple[int, ...]
) -> None:
    nr = data.draw(_native_rule_free_nrs(arch))
    assert decide(arch, nr, *args).action == ALLOW


# ------------------------------------------------------------------------------------------- argument rules
@settings(max_examples=300, deadline=None)
@given(arch=st.sampled_from(ARCHES), high=st.integers(0, 2**32 - 1), cmd=st.sampled_from([0x5412, 0x541C]))
def test_terminal_injection_ioctl_is_denied_whatever_the_high_bits(arch: str, high: int, cmd: int) -> None:
    """The kernel truncates ioctl's cmd to unsigned int: 0x1_0000_5412 is TIOCSTI too."""
    assert decide(arch, "ioctl", 0, (high << 32) | cmd, 0).action == errno_action(errno.EPERM)


@settings(max_examples=300, deadline=None)
@given(arch=st.sampled_from(ARCHES), cmd=u64)
def test_other_ioctls_are_allowed_control(arch: str, cmd: int) -> None:
    if cmd & 0xFFFFFFFF in (0x5412, 0x541C):
        return  # the denied pair, tested above
    assert decide(arch, "ioctl", 0, cmd, 0).action == ALLOW


@settings(max_examples=400, deadline=None)
@given(arch=st.sampled_from(ARCHES), name=st.sampled_from(["socket", "socketpair"]), domain=u64)
def test_socket_families_outside_the_allowlist_are_denied(arch: str, name: str, domain: int) -> None:
    expect = ALLOW if domain & 0xFFFFFFFF in (1, 2, 10, 16) else errno_action(errno.EAFNOSUPPORT)
    assert decide(arch, name, domain, 1, 0).action == expect


@pytest.mark.parametrize("arch", ARCHES)
def test_vsock_to_vm_host_is_denied_and_inet_allowed_control(arch: str) -> None:
    deny = errno_action(errno.EAFNOSUPPORT)
    assert decide(arch, "socket", seccomp.AF_VSOCK, 1, 0).action == deny
    assert decide(arch, "socket", (1 << 32) | seccomp.AF_VSOCK, 1, 0).action == deny
    for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):
        assert decide(arch, "socket", family, 1, 0).action == ALLOW


@settings(max_examples=400, deadline=None)
@given(arch=st.sampled_from(ARCHES), flags=u64)
def test_clone_with_namespace_flags_is_denied(arch: str, flags: int) -> None:
    expect = errno_action(errno.EPERM) if flags & seccomp.CLONE_NS_FLAGS else ALLOW
    assert decide(arch, "clone", flags).action == expect
    expect = errno_action(errno.EPERM) if flags & (seccomp.CLONE_NS_FLAGS | 0x80) else ALLOW
    assert decide(arch, "unshare", flags).action == expect


@pytest.mark.parametrize("arch", ARCHES)
def test_threads_and_fork_clone_flags_are_allowed_control(arch: str) -> None:
    glibc_thread = 0x3D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    fork = 0x01200011  # CLONE_CHILD_SETTID|CHILD_CLEARTID|SIGCHLD
    for flags in (glibc_thread, fork, 0x80 | 17):  # exit signal 128+17 sits where CLONE_NEWTIME is for unshare
        assert decide(arch, "clone", flags).action == ALLOW
    assert decide(arch, "unshare", 0x400 | 0x200).action == ALLOW  # CLONE_FILES|CLONE_FS


@settings(max_examples=300, deadline=None)
@given(arch=st.sampled_from(ARCHES), persona=u64)
def test_personality_only_allows_docker_values(arch: str, persona: int) -> None:
    ok = persona & 0xFFFFFFFF in seccomp.PERSONALITY_ALLOWED
    assert decide(arch, "personality", persona).action == (ALLOW if ok else errno_action(errno.EPERM))


# ------------------------------------------------------------------------------------------- tables
def test_constants_match_the_platform() -> None:
    assert termios.TIOCSTI == seccomp.TIOCSTI
    assert int(socket.AF_VSOCK) == seccomp.AF_VSOCK
    assert (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK) == (1, 2, 10, 16)
    assert struct.calcsize("HBBI") == 8


def _header_numbers(path: Path) -> dict[str, int]:
    """`__NR_name` values from a unistd header, following asm-generic's `__NR_x -> __NR3264_x -> 25` aliases."""
    raw = dict(re.findall(r"#define\s+(__NR(?:3264)?_\w+)\s+(\w+)", path.read_text()))
    out: dict[str, int] = {}
    for macro, value in raw.items():
        resolved = value
        for _ in range(3):
            resolved = raw.get(resolved, resolved)
        if macro.startswith("__NR_") and resolved.isdigit():
            out[macro.removeprefix("__NR_")] = int(resolved)
    return out


@pytest.mark.parametrize(
    ("arch", "header"),
    [
        ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
        ("aarch64", "/usr/include/asm-generic/unistd.h"),
    ],
)
def test_syscall_numbers_match_the_kernel_headers(arch: str, header: str) -> None:
    path = Path(header)
    if not path.exists():
        pytest.skip(f"{header} not installed (linux-libc-dev)")
    known = _header_numbers(path)
    checked = 0
    for name, nr in seccomp.SYSCALLS[arch].items():
        if name in known:  # newer syscalls than the installed headers are checked where they are known
            assert known[name] == nr, name
            checked += 1
    assert checked >= len(seccomp.SYSCALLS[arch]) - 2


def test_docs_explain_every_rule() -> None:
    doc = (HERE.parent.parent / "docs" / "seccomp.md").read_text()
    for rule in seccomp.RULES:
        assert f"`{rule.syscall}`" in doc, rule.syscall
