"""Where rcc keeps its files on the host (XDG base directories). Pure functions of an environment mapping."""

from __future__ import annotations

import os
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
