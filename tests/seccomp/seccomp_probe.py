"""Runs inside the sandbox (as `python3 -I -c <this file's text> <json ops>`): performs raw system calls and
prints one JSON result per op, flushed before the next op, so a test can see how far it got before a kill.

Standard library only: it runs under /usr/bin/python3 as any user. It refuses to run with any effective
capability, so a broken filter can never make one of its dangerous calls succeed with privilege.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import sys
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def status(path: str) -> dict[str, str]:
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Seccomp", "Seccomp_filters", "NoNewPrivs", "CapEff", "CapPrm", "Uid"):
                out[key] = value.strip()
    return out


def arg(a: Any, keep: list[Any]) -> Any:
    if isinstance(a, dict):  # {"buf": "text", "size": n}: a pointer to a zero-padded buffer
        data = a.get("buf", "").encode()
        buf = ctypes.create_string_buffer(data, max(len(data), a.get("size", 0)) or 1)
        keep.append(buf)
        return ctypes.cast(buf, ctypes.c_void_p)
    return ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF)


def syscall(nr: int, args: list[Any]) -> dict[str, Any]:
    keep: list[Any] = []
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[arg(a, keep) for a in args])
    err = ctypes.get_errno() if ret == -1 else 0
    if ret == 0 and os.getpid() != MAIN_PID:  # a fork-like clone slipped through: never run on in the child
        os._exit(0)
    return {"ret": ret, "errno": err}


def machine_code(code_hex: str) -> dict[str, Any]:
    """Run a few bytes of machine code taking no arguments and returning int (x86-64 `ret`-terminated)."""
    code = bytes.fromhex(code_hex)
    mem = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    mem.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    return {"ret": ctypes.CFUNCTYPE(ctypes.c_int)(addr)()}


def run(op: dict[str, Any]) -> dict[str, Any]:
    kind = op["op"]
    if kind == "syscall":
        return syscall(op["nr"], op.get("args", []))
    if kind == "status":
        return {"self": status("/proc/self/status"), "init": status("/proc/1/status")}
    if kind == "read_session_key":  # find a "user" key by description in the session keyring and read it
        keyctl = op["keyctl"]
        found = syscall(keyctl, [10, -3, {"buf": "user"}, {"buf": op["description"]}, 0])  # KEYCTL_SEARCH
        if found["ret"] < 0:
            return found
        buf = ctypes.create_string_buffer(256)
        got = libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(11), ctypes.c_long(found["ret"]), buf, 256)
        return {"ret": got, "data": buf.raw[: max(got, 0)].decode()}  # KEYCTL_READ
    if kind == "machine_code":
        return machine_code(op["code"])
    if kind == "workload":  # what an agent does all day: threads, subprocesses, files, loopback sockets
        import socket
        import subprocess
        import tempfile
        import threading

        box: list[str] = []
        t = threading.Thread(target=box.append, args=("thread",))
        t.start()
        t.join()
        box.append(subprocess.run(["/bin/echo", "child"], check=True, capture_output=True, text=True).stdout.strip())
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "f"), "w") as f:
                f.write("file")
            with open(os.path.join(d, "f")) as f:
                box.append(f.read())
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        cli.sendall(b"tcp")
        box.append(conn.recv(3).decode())
        for s in (cli, conn, srv):
            s.close()
        a, b = socket.socketpair()
        a.sendall(b"unix")
        box.append(b.recv(4).decode())
        return {"ok": box}
    raise SystemExit(f"unknown op {kind}")


MAIN_PID = os.getpid()
if status("/proc/self/status")["CapEff"].strip("0"):
    print(json.dumps({"refused": "running with capabilities"}), flush=True)
    sys.exit(99)
for op in json.loads(sys.argv[1]):
    print(json.dumps(run(op)), flush=True)
