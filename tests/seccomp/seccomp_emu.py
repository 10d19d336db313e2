"""A classic-BPF interpreter for seccomp programs, for pure tests: runs a program on a synthetic seccomp_data.

Deliberately strict: it knows only the instructions rcc's filter may use, checks every jump and load the way the
kernel's checker does (seccomp_check_filter, bpf_check_classic), and records which seccomp_data words were read,
so tests can prove that a syscall is decided from `nr` and `arch` alone (the kernel caches those).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

LD_W_ABS, JA, JEQ, JGT, JGE, JSET, RET_K = 0x20, 0x05, 0x15, 0x25, 0x35, 0x45, 0x06
SECCOMP_DATA_SIZE = 64


class BadProgram(Exception):
    pass


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


@dataclass
class Result:
    action: int
    loaded: set[int] = field(default_factory=set)  # offsets read from seccomp_data
    steps: int = 0


def decode(program: bytes) -> list[Insn]:
    if not program or len(program) % 8:
        raise BadProgram("length is not a positive multiple of 8")
    insns = [Insn(*struct.unpack_from("<HBBI", program, i)) for i in range(0, len(program), 8)]
    if len(insns) > 4096:
        raise BadProgram("longer than BPF_MAXINSNS")
    for pc, i in enumerate(insns):
        if i.code == LD_W_ABS:
            if i.k % 4 or i.k >= SECCOMP_DATA_SIZE:
                raise BadProgram(f"{pc}: load outside seccomp_data or unaligned")
        elif i.code in (JEQ, JGT, JGE, JSET):
            if pc + 1 + max(i.jt, i.jf) >= len(insns):
                raise BadProgram(f"{pc}: jump past the end")
        elif i.code == JA:
            if pc + 1 + i.k >= len(insns):
                raise BadProgram(f"{pc}: ja past the end")
        elif i.code != RET_K:
            raise BadProgram(f"{pc}: opcode 0x{i.code:02x} is not one rcc's filter uses")
    if insns[-1].code != RET_K:
        raise BadProgram("does not end in ret")
    return insns


def seccomp_data(nr: int, arch: int, args: tuple[int, ...] = (), ip: int = 0) -> bytes:
    full = tuple(a & 0xFFFFFFFFFFFFFFFF for a in args) + (0,) * (6 - len(args))
    return struct.pack("<iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, ip, *full)


def run(program: bytes, data: bytes) -> Result:
    insns = decode(program)
    res = Result(action=-1)
    a, pc = 0, 0
    while True:
        res.steps += 1
        i = insns[pc]
        if i.code == LD_W_ABS:
            a = struct.unpack_from("<I", data, i.k)[0]
            res.loaded.add(i.k)
            pc += 1
        elif i.code == JA:
            pc += 1 + i.k
        elif i.code == RET_K:
            res.action = i.k
            return res
        else:
            taken = {JEQ: a == i.k, JGT: a > i.k, JGE: a >= i.k, JSET: bool(a & i.k)}[i.code]
            pc += 1 + (i.jt if taken else i.jf)
