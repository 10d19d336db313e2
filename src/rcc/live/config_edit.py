"""`rcc allow/deny --save`: add one rule to network.allow / network.deny in the user's config.toml.

Never the project's .rcc.toml (a project file widening access would need `rcc trust`, and the sandbox can write
the project). The edit is textual (comments kept) and verified: the edited text must parse and its list must be
exactly the old list plus the rule, else nothing is written (fail closed) and the user is told to add it by hand.
"""

from __future__ import annotations

import json
import os
import re
import tomllib

from rcc import hostfs, paths
from rcc.errors import ExitCode, RccError

_HEADER = re.compile(r"^\s*\[network\]\s*(#.*)?$")
_TABLE = re.compile(r"^\s*\[")


def add_rule(text: str, key: str, rule: str) -> str:
    """`text` with `rule` added to [network] `key` ("allow" or "deny"). RccError (config) when it cannot be
    done safely."""
    old = _current(text, key)
    if rule in old:
        return text
    item = json.dumps(rule)  # a TOML basic string is a JSON string for these characters (rules are printable)
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if _HEADER.match(line)), None)
    if header is None:
        new = text + ("" if text.endswith("\n") or not text else "\n") + f"\n[network]\n{key} = [{item}]\n"
    else:
        end = next((i for i in range(header + 1, len(lines)) if _TABLE.match(lines[i])), len(lines))
        key_re = re.compile(rf"^(\s*{key}\s*=\s*\[)")
        at = next((i for i in range(header + 1, end) if key_re.match(lines[i])), None)
        if at is None:
            lines.insert(header + 1, f"{key} = [{item}]\n")
        else:
            lines[at] = key_re.sub(lambda m: m.group(1) + item + ", ", lines[at], count=1)
            lines[at] = lines[at].replace(f"{item}, ]", f"{item}]")
        new = "".join(lines)
    try:
        verified = sorted(_current(new, key)) == sorted([*old, rule])
    except RccError:
        verified = False
    if not verified:
        raise RccError(
            f"could not add {rule!r} to network.{key} in your config automatically",
            hint=f"add it by hand: [network] {key} = [..., {item}]",
            code=ExitCode.CONFIG,
        )
    return new


def _current(text: str, key: str) -> list[str]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RccError(f"your config does not parse: {e}", code=ExitCode.CONFIG) from None
    net = doc.get("network", {})
    value = net.get(key, []) if isinstance(net, dict) else None
    if not isinstance(value, list):
        raise RccError(f"network.{key} in your config is not a list", code=ExitCode.CONFIG)
    return [str(v) for v in value]


def save_rule(key: str, rule: str) -> str:
    """Add the rule to the user's config.toml (created if missing); returns the file's path."""
    cfg = paths.user_config_file()
    anchor, base = os.path.split(paths.config_dir().rstrip("/"))
    fd = hostfs.open_dir(anchor or "/", base, create=True)
    try:
        data = hostfs.read_file(fd, "config.toml", 1 << 20, shown=cfg)
        new = add_rule((data or b"").decode("utf-8"), key, rule)
        hostfs.replace_file(fd, "config.toml", new.encode(), 0o600, shown=cfg)
    finally:
        os.close(fd)
    return cfg
