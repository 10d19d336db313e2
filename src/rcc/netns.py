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
import sys
from collections.abc import Callable

from rcc.errors import ExitCode, RccError

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


NS_GET_USERNS = 0xB701  # ioctl on a namespace fd: an fd for the user namespace that owns it


def _setns(fd: int, nstype: int, what: str) -> None:
    native = getattr(os, "setns", None)  # Python >= 3.12
    if native is not None:
        try:
            native(fd, nstype)
        except OSError as e:
            raise OSError(e.errno, f"setns({what}): {e.strerror}") from None
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


def preload() -> Callable[[], None]:
    """Before Python 3.12 the listener's child needs ctypes for setns, and importing it there costs ~2.6 ms of
    the session's start. Import it here on a thread instead, while rcc waits on the kernel anyway (root: the
    move into the session's cgroup; a user: bwrap's namespaces and uid map). Call the result before
    listen_in_netns: it waits for the import, so the fork never happens while this thread runs."""
    if hasattr(os, "setns") or "ctypes" in sys.modules:
        return _nothing
    import _thread

    done = _thread.allocate_lock()
    done.acquire()

    def load() -> None:
        try:
            import ctypes  # noqa: F401
        except BaseException:  # noqa: S110 (the child imports it again and reports what fails)
            pass
        finally:
            done.release()

    _thread.start_new_thread(load, ())

    def wait() -> None:
        with done:
            pass

    return wait


def _nothing() -> None:
    pass


def _join_netns(pid: int) -> None:
    """Enter the network namespace of `pid`. An unprivileged caller first joins the user namespace that *owns*
    that network namespace (not the process's current one: bwrap --disable-userns moves the sandbox into a
    nested user namespace that holds no capabilities over the network namespace). Root needs no user
    namespace: it holds every capability over namespaces its descendants own."""
    import fcntl

    net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.geteuid() != 0:
            owner = fcntl.ioctl(net, NS_GET_USERNS)
            try:
                if os.fstat(owner).st_ino != os.stat("/proc/self/ns/user").st_ino:
                    _setns(owner, CLONE_NEWUSER, "owner user namespace")
            finally:
                os.close(owner)
        _setns(net, CLONE_NEWNET, f"/proc/{pid}/ns/net")
    finally:
        os.close(net)


def _wait_for_uid_map(pid: int, timeout: float = 2.0) -> None:
    """bwrap reports the sandbox pid right after clone(), possibly before it wrote the new user namespace's uid
    map. Joining an unmapped user namespace gives no capabilities in it (setns to its netns then fails)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/uid_map", "rb") as f:
                if f.read().strip():
                    return
        except OSError:
            return  # the process is gone: setns below reports it
        if time.monotonic() > deadline:
            return
        time.sleep(0.0005)


def listen_in_netns(pid: int, port: int, host: str = "127.0.0.1", backlog: int = 512) -> socket.socket:
    """Return a listening TCP socket bound to host:port inside the network namespace of `pid`."""
    if os.geteuid() != 0:
        _wait_for_uid_map(pid)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    kid = os.fork()
    if kid == 0:  # child: never returns
        code = 1
        try:
            parent.close()
            _join_netns(pid)
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
