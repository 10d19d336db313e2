"""rcc.netns: setns through os.setns (Python >= 3.12) or ctypes, and the ctypes preload that takes that import
off the listener child's path (pure: no namespace is joined here)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from rcc import netns


def test_native_setns_is_used_and_its_error_names_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(fd: int, nstype: int) -> None:
        calls.append((fd, nstype))
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "setns", fake, raising=False)
    with pytest.raises(OSError) as e:
        netns._setns(7, netns.CLONE_NEWNET, "/proc/1/ns/net")
    assert calls == [(7, netns.CLONE_NEWNET)]
    assert e.value.errno == errno.EPERM
    assert "setns(/proc/1/ns/net)" in str(e.value)


def test_ctypes_setns_reports_the_kernel_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the native path: without os.setns (Python 3.11) libc's setns runs, and a bad descriptor
    comes back as an OSError naming what was joined."""
    monkeypatch.delattr(os, "setns", raising=False)
    with pytest.raises(OSError) as e:
        netns._setns(-1, netns.CLONE_NEWNET, "nothing")
    assert e.value.errno == errno.EBADF
    assert "setns(nothing)" in str(e.value)


def test_preload_imports_ctypes_on_a_thread_and_waits_for_it() -> None:
    """In a fresh interpreter (ctypes not loaded yet): after the returned wait(), ctypes is imported and no
    other thread is left running the import; with os.setns (Python >= 3.12) nothing is loaded at all."""
    code = (
        "import os, sys, threading\n"
        "from rcc import netns\n"
        "assert 'ctypes' not in sys.modules\n"
        "wait = netns.preload()\n"
        "wait()\n"
        "print('ctypes' in sys.modules, hasattr(os, 'setns'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    loaded, native = r.stdout.split()
    assert loaded == ("False" if native == "True" else "True"), r.stdout


def test_preload_is_nothing_once_ctypes_is_loaded() -> None:
    import ctypes  # noqa: F401

    assert netns.preload() is netns._nothing
