"""Make a listening socket inside another process's network namespace.

A socket keeps belonging to the namespace it was created in, even after its file descriptor moves to a process
in another namespace. So rcc forks a short-lived child that joins the sandbox's user namespace (if we are not
root: the sandbox's network namespace is owned by it) and network namespace, binds 127.0.0.1:port there, and
sends the descriptor back over a socketpair. The proxy then serves the sandbox from the host's network without
any relay process inside the sandbox.

Why a forked child: setns(CLONE_NEWUSER) is refused to multi-threaded processes, and rcc's proxy runs a thread.
"""

from __future__ import annotations

import contextlib
import os
import socket

from rcc.errors import ExitCode, RccError

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def _setns(path: str, nstype: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _same_userns(pid: int) -> bool:
    return os.stat(f"/proc/{pid}/ns/user").st_ino == os.stat("/proc/self/ns/user").st_ino


def listen_in_netns(pid: int, port: int, host: str = "127.0.0.1", backlog: int = 512) -> socket.socket:
    """Return a listening TCP socket bound to host:port inside the network namespace of `pid`."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    join_user = not _same_userns(pid)
    kid = os.fork()
    if kid == 0:  # child: never returns
        code = 1
        try:
            parent.close()
            if join_user:
                _setns(f"/proc/{pid}/ns/user", CLONE_NEWUSER)
            _setns(f"/proc/{pid}/ns/net", CLONE_NEWNET)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(backlog)
            socket.send_fds(child, [b"ok"], [s.fileno()])
            code = 0
        except BaseException as e:  # report to the parent, whatever it was
            with contextlib.suppress(OSError):
                child.sendall(f"error: {e}".encode()[:500])
        finally:
            os._exit(code)
    child.close()
    try:
        msg, fds, _flags, _addr = socket.recv_fds(parent, 600, 1)
    finally:
        parent.close()
        os.waitpid(kid, 0)
    if not fds:
        raise RccError(
            f"could not open the proxy listener inside the sandbox's network namespace: {msg.decode(errors='replace')}",
            hint="the sandbox stays without network; run `rcc doctor`",
            code=ExitCode.SETUP,
        )
    return socket.socket(fileno=fds[0])
