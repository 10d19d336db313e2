"""Helpers for the flake tests (a module name of its own: every test folder has a conftest).

A real Nix (Debian's nix-bin, 2.8) with a private store per test session.

The store lives under pytest's tmp dir with its own store directory (`local?store=...`), so the tests need no
daemon, no root and no /nix, and leave nothing behind. Nix's build sandbox is off (the stand-in nixpkgs builds
with the host's /bin/sh), substituters are empty and every flake command overrides the nixpkgs input with the
stand-in in tests/nix/nixpkgs without writing the lock file: nothing touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rcctest import require

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "tests" / "nix" / "nixpkgs"
SYSTEMS = ("x86_64-linux", "aarch64-linux", "x86_64-darwin", "aarch64-darwin")
NIX_CONF = "\n".join(
    (
        "experimental-features = nix-command flakes",
        "sandbox = false",
        "substituters =",
        "warn-dirty = false",
        # Build as the calling user: the store is under pytest's private tmp dir, which build users cannot read.
        "build-users-group =",
        "",
    )
)


@dataclass(frozen=True)
class Nix:
    store: str
    env: dict[str, str]
    flake: str

    def run(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        override: bool = True,
        timeout: float = 240,
    ) -> subprocess.CompletedProcess[str]:
        """`nix ARGS` against the private store; flake commands get the stand-in nixpkgs."""
        nix_args = list(args)
        if override and args and args[0] in ("eval", "build", "run", "flake", "develop", "path-info"):
            # Right after the subcommand: after `--` or `develop -c` everything is the program's.
            at = 2 if args[0] == "flake" else 1
            nix_args[at:at] = ["--override-input", "nixpkgs", f"path:{STAND_IN}", "--no-write-lock-file"]
        argv = ["nix", "--store", self.store, *nix_args]
        proc = _run(argv, {**self.env, **(env or {})}, timeout)
        # Nothing may be fetched from the network (the proxy variables below make any attempt fail on loopback).
        assert "unable to download" not in proc.stderr, proc.stderr[-4000:]
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return proc

    def eval_json(self, attr: str, apply: str | None = None, *extra: str) -> Any:
        args = ["eval", "--json", f"{self.flake}#{attr}", *extra]
        if apply is not None:
            args += ["--apply", apply]
        return json.loads(self.run(*args).stdout)

    def build(self, attr: str) -> Path:
        out = json.loads(self.run("build", "--no-link", "--json", f"{self.flake}#{attr}").stdout)
        return Path(out[0]["outputs"]["out"])

    def realise(self, drv: str) -> subprocess.CompletedProcess[str]:
        argv = ["nix-store", "--store", self.store, "--realise", drv]
        return _run(argv, self.env, 240)


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run nix; on timeout interrupt it (SIGTERM: it stops its builders) instead of killing it outright,
    which would leave a builder running."""
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                out, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            pytest.fail(f"{' '.join(argv)} took longer than {timeout} s:\n{err[-4000:]}")
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def make_nix(base: Path) -> Nix:
    require(
        shutil.which("nix") is not None and shutil.which("nix-instantiate") is not None,
        "nix is not installed (bash tests/nix/install_nix.sh installs Debian's nix-bin)",
    )
    store = f"local?store={base}/store&state={base}/var&log={base}/log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "NIX_CONFIG": NIX_CONF,
        "LANG": "C.UTF-8",
        # Belt and braces against a fetch from the internet (an input that was not overridden): every URL goes
        # to a closed port on loopback and fails at once.
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "all_proxy": "http://127.0.0.1:9",
        "no_proxy": "",
        # Nix reads the checkout with git; let it do so when the checkout belongs to another user.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": str(ROOT),
    }
    # A git checkout is evaluated as git+file (tracked files only), anything else as a plain path.
    flake = f"git+file://{ROOT}" if (ROOT / ".git").exists() else f"path:{ROOT}"
    return Nix(store=store, env=env, flake=flake)
