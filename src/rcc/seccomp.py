"""The sandbox's seccomp filter: a classic-BPF program for bubblewrap's `--seccomp FD`.

bubblewrap reads the raw `struct sock_filter` array from the fd and installs it with PR_SET_NO_NEW_PRIVS just
before it execs the command (and in its own pid-1 init), so every process in the sandbox runs under it and
cannot remove it. The policy is Docker's default profile turned inside out: Docker allow-lists ~350 syscalls;
rcc allows everything and denies the calls that reach past the sandbox's namespaces (the kernel keyring, the
user's terminal, the VM host's vsock, the clock, modules, mounts) or that are mostly kernel attack surface for
an unprivileged process (bpf, perf, userfaultfd, io_uring). docs/seccomp.md lists each rule and why.

Invariants:
1. Fail closed on the ABI. Only the native 64-bit ABI is allowed: another `seccomp_data.arch` (i386 via
   `int 0x80`, arm32) and, on x86_64, the x32 ABI (syscall numbers with bit 0x40000000) kill the process,
   because their syscall numbers differ and would slip past every rule below. Syscalls newer than the last
   reviewed one (MAX_REVIEWED_NR) fail with ENOSYS.
2. Every syscall number appears in at most one rule, and a rule that loads an argument always ends in a
   `ret` on every path: so the accumulator holds the syscall number wherever a rule starts.
3. Integer arguments (`int`/`unsigned int` in the kernel's SYSCALL_DEFINE) are compared on their low 32 bits
   only. The kernel truncates them, so ioctl(fd, 0x1_0000_5412) *is* TIOCSTI and must be denied as such.
4. Syscalls without an argument rule are decided from `nr` and `arch` alone, so the kernel's seccomp action
   cache (Linux >= 5.11) marks all of them "always allow" and skips the filter for them entirely.
5. Nothing is cached at module level; `build_filter()` assembles ~100 instructions in well under a millisecond.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
from collections.abc import Mapping
from types import MappingProxyType

from rcc.errors import ExitCode, RccError
from rcc.record import record

TYPE_CHECKING = False  # `rcc run` builds the filter on every start: typing stays out of the import chain
if TYPE_CHECKING:
    from typing import Final

# --------------------------------------------------------------------------------------- kernel constants
# <linux/seccomp.h> return actions
SECCOMP_RET_KILL_PROCESS: Final = 0x80000000
SECCOMP_RET_ERRNO: Final = 0x00050000
SECCOMP_RET_ALLOW: Final = 0x7FFF0000

# <linux/filter.h> classic BPF opcodes (only the ones this module emits)
BPF_LD_W_ABS: Final = 0x20  # A = *(u32 *)(seccomp_data + k)
BPF_JMP_JA: Final = 0x05
BPF_JMP_JEQ_K: Final = 0x15
BPF_JMP_JGT_K: Final = 0x25
BPF_JMP_JGE_K: Final = 0x35
BPF_JMP_JSET_K: Final = 0x45
BPF_RET_K: Final = 0x06

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
OFF_NR: Final = 0
OFF_ARCH: Final = 4
OFF_ARGS: Final = 16  # args[i] low word at 16 + 8*i on little-endian (both supported arches)

AUDIT_ARCH_X86_64: Final = 0xC000003E
AUDIT_ARCH_AARCH64: Final = 0xC00000B7
X32_SYSCALL_BIT: Final = 0x40000000
# The highest syscall number reviewed for this filter: file_setattr, Linux 6.17 (same on x86_64 and aarch64).
# Newer syscalls fail with ENOSYS, the answer of every kernel that predates them, until someone reviews them:
# a denylist must not silently allow the next mount or namespace call a kernel adds.
MAX_REVIEWED_NR: Final = 469

# ioctl requests (same values on x86_64 and aarch64: asm-generic/ioctls.h)
TIOCSTI: Final = 0x5412  # push a byte into the terminal's input queue: "type" commands into the user's shell
TIOCLINUX: Final = 0x541C  # virtual-console services; subcodes paste the selection into the console

# address families that may be created (everything else -> EAFNOSUPPORT)
AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 10
AF_NETLINK: Final = 16
AF_VSOCK: Final = 40  # named in tests and docs: the VM <-> host channel, not network-namespaced

# clone/unshare flags that create namespaces (<linux/sched.h>)
CLONE_NEWTIME: Final = 0x00000080  # unshare/clone3 only: in clone()'s flags this byte is the exit signal
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
CLONE_NS_FLAGS: Final = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
)

# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query
PERSONALITY_ALLOWED: Final = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# --------------------------------------------------------------------------------------- syscall numbers
# Only the syscalls the rules name. x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: the generic table
# (include/uapi/asm-generic/unistd.h). A name missing from an arch's table does not exist there and its rule is
# skipped for that arch. tests/seccomp checks these against the installed kernel headers.
_COMMON_NEW: Final[Mapping[str, int]] = MappingProxyType(
    {  # syscalls added since Linux 5.1 have one number on every arch
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "clone3": 435,
        "mount_setattr": 442,
        "quotactl_fd": 443,
        "openat2": 437,
        "fchmodat2": 452,
        "open_tree_attr": 467,
    }
)

SYSCALLS: Final[Mapping[str, Mapping[str, int]]] = MappingProxyType(
    {
        "x86_64": MappingProxyType(
            {
                "open": 2,
                "ioctl": 16,
                "socket": 41,
                "creat": 85,
                "chmod": 90,
                "fchmod": 91,
                "mknod": 133,
                "openat": 257,
                "mknodat": 259,
                "fchmodat": 268,
                "socketpair": 53,
                "clone": 56,
                "ptrace": 101,
                "syslog": 103,
                "personality": 135,
                "uselib": 134,
                "pivot_root": 155,
                "adjtimex": 159,
                "acct": 163,
                "settimeofday": 164,
                "mount": 165,
                "umount2": 166,
                "swapon": 167,
                "swapoff": 168,
                "reboot": 169,
                "iopl": 172,
                "ioperm": 173,
                "init_module": 175,
                "delete_module": 176,
                "quotactl": 179,
                "vhangup": 153,
                "lookup_dcookie": 212,
                "clock_settime": 227,
                "kexec_load": 246,
                "add_key": 248,
                "request_key": 249,
                "keyctl": 250,
                "unshare": 272,
                "perf_event_open": 298,
                "fanotify_init": 300,
                "name_to_handle_at": 303,
                "open_by_handle_at": 304,
                "clock_adjtime": 305,
                "setns": 308,
                "finit_module": 313,
                "kexec_file_load": 320,
                "bpf": 321,
                "userfaultfd": 323,
                **_COMMON_NEW,
            }
        ),
        "aarch64": MappingProxyType(
            {
                "lookup_dcookie": 18,
                "ioctl": 29,
                "mknodat": 33,
                "fchmod": 52,
                "fchmodat": 53,
                "openat": 56,
                "umount2": 39,
                "mount": 40,
                "pivot_root": 41,
                "vhangup": 58,
                "quotactl": 60,
                "acct": 89,
                "personality": 92,
                "unshare": 97,
                "kexec_load": 104,
                "init_module": 105,
                "delete_module": 106,
                "clock_settime": 112,
                "syslog": 116,
                "ptrace": 117,
                "reboot": 142,
                "settimeofday": 170,
                "adjtimex": 171,
                "socket": 198,
                "socketpair": 199,
                "add_key": 217,
                "request_key": 218,
                "keyctl": 219,
                "clone": 220,
                "swapon": 224,
                "swapoff": 225,
                "perf_event_open": 241,
                "fanotify_init": 262,
                "name_to_handle_at": 264,
                "open_by_handle_at": 265,
                "clock_adjtime": 266,
                "setns": 268,
                "finit_module": 273,
                "bpf": 280,
                "userfaultfd": 282,
                "kexec_file_load": 294,
                **_COMMON_NEW,
            }
        ),
    }
)

AUDIT_ARCH: Final[Mapping[str, int]] = MappingProxyType({"x86_64": AUDIT_ARCH_X86_64, "aarch64": AUDIT_ARCH_AARCH64})


# --------------------------------------------------------------------------------------- the rules
@record
class Deny:
    """Every call fails with `errno`."""

    syscall: str
    errno: int
    why: str


@record
class DenyValues:
    """Fails with `errno` when the low 32 bits of args[`arg`] are one of `values`; otherwise allowed."""

    syscall: str
    arg: int
    values: tuple[int, ...]
    errno: int
    why: str


@record
class AllowValues:
    """Allowed only when the low 32 bits of args[`arg`] are one of `values`; otherwise fails with `errno`."""

    syscall: str
    arg: int
    values: tuple[int, ...]
    errno: int
    why: str


@record
class DenyBits:
    """Fails with `errno` when the low 32 bits of args[`arg`] have any bit of `mask` set."""

    syscall: str
    arg: int
    mask: int
    errno: int
    why: str


@record
class DenyBitsIf:
    """Fails with `errno` when args[`flag_arg`] has a bit of `flag_mask` AND args[`arg`] a bit of `mask` (low 32
    bits each): e.g. open() with O_CREAT and a set-uid mode; without O_CREAT the mode is ignored."""

    syscall: str
    flag_arg: int
    flag_mask: int
    arg: int
    mask: int
    errno: int
    why: str


Rule = Deny | DenyValues | AllowValues | DenyBits | DenyBitsIf

EPERM: Final = _errno.EPERM
S_ISUID: Final = 0o4000
S_ISGID: Final = 0o2000
O_CREAT: Final = 0o100  # x86_64 and the generic (aarch64) ABI agree
O_TMPFILE: Final = 0o20000000  # __O_TMPFILE (O_TMPFILE also sets O_DIRECTORY)
# mknod's file-type bits that are not a regular file: S_IFIFO (0o010000) is the only type with that bit;
# S_IFCHR/S_IFBLK have 0o020000, S_IFSOCK/S_IFBLK 0o040000; S_IFREG (0o100000) and 0 have none of them.
S_IFNOTREG: Final = 0o070000
_MKNOD_WHY: Final = (
    "no set-uid/set-gid files (see chmod), and no fifos or device nodes: a fifo left where the host's git reads "
    "(.git/index, HEAD, a ref, packed-refs) makes the user's next `git status` hang forever; sockets come from "
    "bind() (opening one fails at once) and regular files stay allowed"
)
_SUID_WHY: Final = (
    "no set-uid/set-gid files: they outlive the sandbox in the project, and one made by root's sandbox runs as "
    "root for any local user (systemd's RestrictSUIDSGID); files and directories otherwise keep any mode"
)
ENOSYS: Final = _errno.ENOSYS
EAFNOSUPPORT: Final = _errno.EAFNOSUPPORT

_NET_FAMILIES: Final = (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK)
_FAMILY_WHY: Final = (
    "only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK: AF_VSOCK reaches the VM host and is not "
    "network-namespaced, AF_BLUETOOTH/AF_ALG/AF_PACKET/... are host hardware or kernel attack surface; "
    "EAFNOSUPPORT is what a kernel without that family says, so callers already handle it"
)

# Order matters only for speed: rules that look at arguments are never cached by the kernel (invariant 4),
# so the frequent ones (ioctl, clone, socket) come first and are reached after a handful of instructions.
RULES: Final[tuple[Rule, ...]] = (
    DenyValues(
        "ioctl",
        1,
        (TIOCSTI, TIOCLINUX),
        EPERM,
        "TIOCSTI/TIOCLINUX push keystrokes into the terminal rcc was started from: the user's shell would run "
        "them after rcc exits (compared on the low 32 bits: the kernel truncates cmd to unsigned int)",
    ),
    DenyBits(
        "clone",
        0,
        CLONE_NS_FLAGS,
        EPERM,
        "no new namespaces: nested user namespaces are the usual way to reach kernel code that wants "
        "CAP_SYS_ADMIN/CAP_NET_ADMIN (belt to bwrap's --disable-userns)",
    ),
    Deny(
        "clone3",
        ENOSYS,
        "its flags live in memory a filter cannot read; ENOSYS makes glibc, musl and Rust fall back to "
        "clone(), whose flags are checked (Docker does the same)",
    ),
    AllowValues("socket", 0, _NET_FAMILIES, EAFNOSUPPORT, _FAMILY_WHY),
    AllowValues("socketpair", 0, _NET_FAMILIES, EAFNOSUPPORT, _FAMILY_WHY),
    DenyBits(
        "unshare",
        0,
        CLONE_NS_FLAGS | CLONE_NEWTIME,
        EPERM,
        "no new namespaces (see clone); unshare(CLONE_FILES/CLONE_FS) stays allowed",
    ),
    AllowValues(
        "personality",
        0,
        PERSONALITY_ALLOWED,
        EPERM,
        "only Docker's values: ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC etc. weaken exploit mitigations",
    ),
    # the kernel keyring is not namespaced with the sandbox: the session keyring is inherited from the user's
    # login session (Kerberos tickets, ecryptfs/fscrypt keys), and request_key runs a host-side upcall
    Deny("keyctl", EPERM, "reads/links keys of the user's login session keyring, inherited into the sandbox"),
    Deny("add_key", EPERM, "adds keys to keyrings shared with the user's session"),
    Deny("request_key", EPERM, "can make the kernel run /sbin/request-key on the host, outside the sandbox"),
    # kernel attack surface an unprivileged process does not need
    Deny("bpf", EPERM, "eBPF verifier and maps: a large kernel attack surface (Docker: CAP_BPF only)"),
    Deny("perf_event_open", EPERM, "hardware counters and kernel profiling: side channels, many CVEs"),
    Deny("userfaultfd", EPERM, "pauses the kernel mid-copy on a page fault: the classic race-exploit aid"),
    Deny(
        "io_uring_setup",
        ENOSYS,
        "io_uring performs openat/connect/... without passing through seccomp; ENOSYS is what a kernel "
        "without io_uring says, so libuv/liburing fall back to threads and epoll",
    ),
    Deny("io_uring_enter", ENOSYS, "as io_uring_setup"),
    Deny("io_uring_register", ENOSYS, "as io_uring_setup"),
    # the machine, not the sandbox: needs capabilities rcc never grants; EPERM is what the kernel says anyway
    Deny("kexec_load", EPERM, "replaces the running kernel"),
    Deny("kexec_file_load", EPERM, "replaces the running kernel"),
    Deny("init_module", EPERM, "loads kernel code"),
    Deny("finit_module", EPERM, "loads kernel code"),
    Deny("delete_module", EPERM, "unloads kernel code"),
    Deny("reboot", EPERM, "reboots or halts the machine"),
    Deny("swapon", EPERM, "changes the machine's swap"),
    Deny("swapoff", EPERM, "changes the machine's swap"),
    Deny("acct", EPERM, "switches process accounting for the whole machine"),
    Deny("quotactl", EPERM, "filesystem quotas are per machine"),
    Deny("quotactl_fd", EPERM, "filesystem quotas are per machine"),
    Deny("settimeofday", EPERM, "the clock is not namespaced"),
    Deny("clock_settime", EPERM, "the clock is not namespaced"),
    Deny("clock_adjtime", EPERM, "the clock is not namespaced"),
    Deny("adjtimex", EPERM, "the clock is not namespaced (Docker allows its read-only use; nothing here needs it)"),
    Deny("syslog", EPERM, "the kernel log is the machine's: addresses and other users' events"),
    Deny("iopl", EPERM, "raw I/O-port access"),
    Deny("ioperm", EPERM, "raw I/O-port access"),
    Deny("vhangup", EPERM, "hangs up the controlling terminal, the user's terminal"),
    Deny("uselib", EPERM, "obsolete a.out loader with a history of bugs"),
    Deny("lookup_dcookie", EPERM, "oprofile path lookup: leaks host paths (removed in Linux 6.10)"),
    Deny("fanotify_init", EPERM, "filesystem-wide event monitoring (Docker: CAP_SYS_ADMIN only); inotify stays"),
    Deny(
        "open_by_handle_at",
        EPERM,
        "opens files by inode handle, bypassing the path walk that bind mounts rely on (the 'shocker' escape)",
    ),
    Deny(
        "name_to_handle_at",
        ENOSYS,
        "produces the handles open_by_handle_at consumes; ENOSYS (a kernel without CONFIG_FHANDLE) makes "
        "systemd/libmount fall back to /proc/self/mountinfo",
    ),
    # mounts: the sandbox's file view is fixed by rcc's plan
    Deny("mount", EPERM, "changes the file view the plan fixed"),
    Deny("umount2", EPERM, "would uncover paths the plan masked"),
    Deny("pivot_root", EPERM, "changes the root the plan fixed"),
    Deny("fsopen", EPERM, "new mount API (as mount)"),
    Deny("fsconfig", EPERM, "new mount API (as mount)"),
    Deny("fsmount", EPERM, "new mount API (as mount)"),
    Deny("fspick", EPERM, "new mount API (as mount)"),
    Deny("move_mount", EPERM, "new mount API (as mount)"),
    Deny("open_tree", EPERM, "new mount API: clones mounts (as mount)"),
    Deny("open_tree_attr", EPERM, "new mount API: clones mounts with new attributes (as mount)"),
    Deny("mount_setattr", EPERM, "would make read-only binds writable"),
    Deny("setns", EPERM, "joining another namespace would leave the sandbox's"),
    # set-uid/set-gid files: the project outlives the sandbox, and a set-uid copy of a shell that root's sandbox
    # left there is a root backdoor for every local user who can reach it (systemd's RestrictSUIDSGID)
    DenyBits("chmod", 1, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    DenyBits("fchmod", 1, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    DenyBits("fchmodat", 2, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    DenyBits("fchmodat2", 2, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    DenyBits("mknod", 1, S_ISUID | S_ISGID | S_IFNOTREG, EPERM, _MKNOD_WHY),
    DenyBits("mknodat", 2, S_ISUID | S_ISGID | S_IFNOTREG, EPERM, _MKNOD_WHY),
    DenyBits("creat", 1, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    DenyBitsIf("open", 1, O_CREAT | O_TMPFILE, 2, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    DenyBitsIf("openat", 2, O_CREAT | O_TMPFILE, 3, S_ISUID | S_ISGID, EPERM, _SUID_WHY),
    Deny(
        "openat2",
        ENOSYS,
        "its mode lives in a struct a filter cannot read; ENOSYS (a kernel before 5.6) makes callers fall back "
        "to openat, which is checked",
    ),
)


# --------------------------------------------------------------------------------------- assembler
class _Jump:
    """A conditional jump; jt/jf are labels or relative offsets. (Plain classes: cheaper to define than
    dataclasses, and this module loads on every `rcc run`.)"""

    __slots__ = ("code", "jf", "jt", "k")

    def __init__(self, code: int, k: int, jt: str | int, jf: str | int) -> None:
        self.code, self.k, self.jt, self.jf = code, k, jt, jf


class _Insn:
    __slots__ = ("code", "k")

    def __init__(self, code: int, k: int) -> None:
        self.code, self.k = code, k


_Item = _Jump | _Insn | str  # str: a label marking the next instruction


def _ret(action: int) -> _Insn:
    return _Insn(BPF_RET_K, action)


def _ld(offset: int) -> _Insn:
    return _Insn(BPF_LD_W_ABS, offset)


def _assemble(items: list[_Item]) -> bytes:
    labels: dict[str, int] = {}
    pc = 0
    for it in items:
        if isinstance(it, str):
            if it in labels:
                raise RccError(f"seccomp: duplicate label {it}", code=ExitCode.INTERNAL)
            labels[it] = pc
        else:
            pc += 1
    out = bytearray()
    pc = 0
    for it in items:
        if isinstance(it, str):
            continue
        if isinstance(it, _Jump):
            offs = []
            for target in (it.jt, it.jf):
                off = target if isinstance(target, int) else labels[target] - (pc + 1)
                if not 0 <= off <= 255:
                    raise RccError(f"seccomp: jump out of range at {pc}: {off}", code=ExitCode.INTERNAL)
                offs.append(off)
            out += struct.pack("<HBBI", it.code, offs[0], offs[1], it.k)
        else:
            out += struct.pack("<HBBI", it.code, 0, 0, it.k)
        pc += 1
    if pc > 4096:  # BPF_MAXINSNS
        raise RccError("seccomp: program too long", code=ExitCode.INTERNAL)
    return bytes(out)


def _rule_items(rule: DenyValues | AllowValues | DenyBits | DenyBitsIf, nr: int, n: int) -> list[_Item]:
    """A rule's block. Entered with A = nr; falls through to the next block with A = nr unchanged."""
    nxt, hit = f"next{n}", f"hit{n}"
    deny = _ret(SECCOMP_RET_ERRNO | rule.errno)
    allow = _ret(SECCOMP_RET_ALLOW)
    if isinstance(rule, DenyBitsIf):
        check = f"check{n}"
        return [
            _Jump(BPF_JMP_JEQ_K, nr, 0, nxt),
            _ld(OFF_ARGS + 8 * rule.flag_arg),
            _Jump(BPF_JMP_JSET_K, rule.flag_mask, check, 0),
            allow,
            check,
            _ld(OFF_ARGS + 8 * rule.arg),
            _Jump(BPF_JMP_JSET_K, rule.mask, hit, 0),
            allow,
            hit,
            deny,
            nxt,
        ]
    items: list[_Item] = [_Jump(BPF_JMP_JEQ_K, nr, 0, nxt), _ld(OFF_ARGS + 8 * rule.arg)]
    if isinstance(rule, DenyValues):
        items += [_Jump(BPF_JMP_JEQ_K, v, hit, 0) for v in rule.values]
        items += [allow, hit, deny]
    elif isinstance(rule, AllowValues):
        items += [_Jump(BPF_JMP_JEQ_K, v, hit, 0) for v in rule.values]
        items += [deny, hit, allow]
    elif isinstance(rule, DenyBits):
        items += [_Jump(BPF_JMP_JSET_K, rule.mask, hit, 0), allow, hit, deny]
    items.append(nxt)
    return items


def _deny_group(nrs: list[int], errno: int, n: int) -> list[_Item]:
    """Plain denials sharing one errno: a run of jeq's into one shared ret."""
    hit, nxt = f"ghit{n}", f"gnext{n}"
    items: list[_Item] = [_Jump(BPF_JMP_JEQ_K, nr, hit, 0) for nr in nrs[:-1]]
    items += [_Jump(BPF_JMP_JEQ_K, nrs[-1], hit, nxt), hit, _ret(SECCOMP_RET_ERRNO | errno), nxt]
    return items


def native_arch() -> str:
    """The arch name of this process's own ABI, or RccError (SETUP) if rcc has no filter for it."""
    machine = os.uname().machine
    name = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine)
    # a 32-bit userland on a 64-bit kernel reports the kernel's machine: its syscalls would all be killed
    if name is None or struct.calcsize("P") != 8:
        raise RccError(
            f"no seccomp filter for this architecture ({machine}, {8 * struct.calcsize('P')}-bit userland)",
            hint="rcc's seccomp filter supports x86_64 and aarch64 (64-bit userland) only",
            code=ExitCode.SETUP,
        )
    return name


def build_filter(arch: str | None = None) -> bytes:
    """The filter program for `arch` ("x86_64" or "aarch64"; None: this machine's), as bubblewrap's
    `--seccomp FD` expects it: an array of `struct sock_filter` (u16 code, u8 jt, u8 jf, u32 k), little-endian
    like both supported arches."""
    name = native_arch() if arch is None else arch
    if name not in SYSCALLS:
        raise RccError(
            f"no seccomp filter for architecture {name!r}",
            hint="supported: " + ", ".join(SYSCALLS),
            code=ExitCode.SETUP,
        )
    table = SYSCALLS[name]
    kill = _ret(SECCOMP_RET_KILL_PROCESS)
    allow = _ret(SECCOMP_RET_ALLOW)
    items: list[_Item] = [
        _ld(OFF_ARCH),
        # invariant 1: i386 (int 0x80) and arm32 have other syscall numbers; nothing legitimate uses them here
        _Jump(BPF_JMP_JEQ_K, AUDIT_ARCH[name], 1, 0),
        kill,
        _ld(OFF_NR),
    ]
    # nr == -1 is not a syscall: it is how a tracer (strace --inject, gdb) skips one; the kernel runs nothing
    items += [_Jump(BPF_JMP_JEQ_K, 0xFFFFFFFF, 0, 1), allow]
    if name == "x86_64":
        items += [_Jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1), kill]  # x32: keyctl is 0x40000000 + 250
    items += [_Jump(BPF_JMP_JGT_K, MAX_REVIEWED_NR, 0, 1), _ret(SECCOMP_RET_ERRNO | ENOSYS)]
    groups: dict[int, list[int]] = {}
    n = 0
    for rule in RULES:
        nr = table.get(rule.syscall)
        if nr is None:
            continue  # does not exist on this arch
        if isinstance(rule, Deny):
            groups.setdefault(rule.errno, []).append(nr)
        else:
            n += 1
            items += _rule_items(rule, nr, n)
    for errno, nrs in groups.items():
        n += 1
        items += _deny_group(nrs, errno, n)
    items.append(allow)
    return _assemble(items)


def rules_for(arch: str) -> tuple[tuple[Rule, int], ...]:
    """The rules that apply on `arch`, each with its syscall number there (for docs, doctor and tests)."""
    table = SYSCALLS[arch]
    return tuple((r, table[r.syscall]) for r in RULES if r.syscall in table)


# --------------------------------------------------------------------------------------- reading it back
_OPS: Final[Mapping[int, str]] = MappingProxyType(
    {BPF_JMP_JEQ_K: "jeq", BPF_JMP_JGT_K: "jgt", BPF_JMP_JGE_K: "jge", BPF_JMP_JSET_K: "jset", BPF_JMP_JA: "ja"}
)


def _action(k: int) -> str:
    if k == SECCOMP_RET_ALLOW:
        return "ALLOW"
    if k == SECCOMP_RET_KILL_PROCESS:
        return "KILL_PROCESS"
    if k & 0xFFFF0000 == SECCOMP_RET_ERRNO:
        data = k & 0xFFFF
        return f"ERRNO({_errno.errorcode.get(data, str(data))})"
    return f"0x{k:08x}"


def disassemble(program: bytes, arch: str | None = None) -> str:
    """One line per instruction, in libseccomp's `scmp_bpf_disasm` layout, annotated with syscall names when
    `arch` is given. Used by golden tests and for reading a program by eye."""
    names = {v: k for k, v in SYSCALLS[arch].items()} if arch else {}
    fields = {OFF_NR: "nr", OFF_ARCH: "arch", **{OFF_ARGS + 8 * i: f"args[{i}].lo" for i in range(6)}}
    fields |= {OFF_ARGS + 8 * i + 4: f"args[{i}].hi" for i in range(6)}
    count = len(program) // 8
    # what the accumulator may hold at each instruction (jumps only go forward, so one pass suffices)
    holds: list[set[str]] = [set() for _ in range(count + 256)]
    lines = [" line  OP   JT   JF   K"]
    for pc in range(count):
        code, jt, jf, k = struct.unpack_from("<HBBI", program, pc * 8)
        head = f" {pc:04d}: 0x{code:02x} 0x{jt:02x} 0x{jf:02x} 0x{k:08x}   "
        now = holds[pc]
        if code == BPF_LD_W_ABS:
            text = f"ld  ${fields.get(k, f'[{k}]')}"
            holds[pc + 1] |= {fields.get(k, "?")}
        elif code == BPF_RET_K:
            text = f"ret {_action(k)}"
        elif code == BPF_JMP_JA:
            text = f"ja  {pc + 1 + k:04d}"
            holds[min(pc + 1 + k, count)] |= now
        elif code in _OPS:
            note = f"  # {names[k]}" if now == {"nr"} and code == BPF_JMP_JEQ_K and k in names else ""
            text = f"{_OPS[code]} 0x{k:x} true:{pc + 1 + jt:04d} false:{pc + 1 + jf:04d}{note}"
            holds[pc + 1 + jt] |= now
            holds[pc + 1 + jf] |= now
        else:
            text = "???"
        lines.append(head + text)
    return "\n".join(lines) + "\n"


def program_fd(program: bytes) -> int:
    """A sealed, close-on-exec memfd holding `program`, read position at 0: pass it with
    `subprocess.Popen(pass_fds=[fd])` and `--seccomp <fd>`; bubblewrap reads it to EOF and closes it.
    Sealed so nothing can change the program between writing and bubblewrap reading it."""
    import fcntl

    fd = os.memfd_create("rcc-seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE,
        )
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
