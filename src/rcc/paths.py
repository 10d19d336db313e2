"""Where rcc keeps its files on the host (XDG base directories). Pure functions of an environment mapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def config_dir(env: Mapping[str, str] = os.environ) -> str:
    """~/.config/rcc: config.toml. Hidden from every sandbox."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(_home(env), ".config")
    return os.path.join(base, "rcc")


def state_dir(env: Mapping[str, str] = os.environ) -> str:
    """~/.local/state/rcc: trust store, audit log, per-agent state. Hidden from every sandbox."""
    base = env.get("XDG_STATE_HOME") or os.path.join(_home(env), ".local", "state")
    return os.path.join(base, "rcc")


def user_config_file(env: Mapping[str, str] = os.environ) -> str:
    return os.path.join(config_dir(env), "config.toml")


def audit_log_file(env: Mapping[str, str] = os.environ) -> str:
    return os.path.join(state_dir(env), "audit.jsonl")


def trust_file(env: Mapping[str, str] = os.environ) -> str:
    return os.path.join(state_dir(env), "trust.json")


def agent_state_dir(agent: str, env: Mapping[str, str] = os.environ) -> str:
    return os.path.join(state_dir(env), "agents", agent)


PROJECT_CONFIG_NAME = ".rcc.toml"


def missing_setup(env: Mapping[str, str] = os.environ) -> str | None:
    """For `rcc run`/`rcc claude`: a one-line hint when `rcc setup` has not been run, else None. Cheap: one
    stat, kept here so `rcc run` imports nothing more."""
    if os.path.isdir(config_dir(env)):
        return None
    return "rcc is not set up for this account yet: run `rcc setup`, then `rcc doctor`"


SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"


def self_command(env: Mapping[str, str], argv0: str | None = None) -> str:
    """How to name this rcc in a `sudo ...` hint. sudo searches only its secure_path: not the user's Nix profile
    (a Nix-built rcc's wrapper sets RCC_EXECUTABLE), nor ~/.local/bin (pipx, uv), nor a venv. So an rcc that sudo
    would not find as `rcc` is named by its absolute path; `rcc` when sudo finds this same program."""
    import shlex
    import shutil

    exe = env.get("RCC_EXECUTABLE", "")
    if not (os.path.isabs(exe) and os.access(exe, os.X_OK)):
        a0 = sys.argv[0] if argv0 is None else argv0
        exe = os.path.abspath(a0) if os.path.basename(a0) == "rcc" else ""
        if not (exe and os.access(exe, os.X_OK)):
            return "rcc"  # `python3 -m rcc` or a test: nothing better to name
    found = shutil.which("rcc", path=SUDO_PATH)
    if found and os.path.realpath(found) == os.path.realpath(exe):
        return "rcc"
    return shlex.quote(exe)


def read_text(path: str) -> str | None:
    """A small text file the machine keeps (/etc/os-release, /etc/subuid, an AppArmor profile); None if unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None
