"""Policy from layers: built-in defaults < user file < project file (.rcc.toml, trust-gated) < command-line flags.

Invariants:
1. Parse, never fall back: any invalid value raises ConfigError naming file, line and key. No layer is skipped
   because it was bad; a bad file stops rcc.
2. The project file comes with the repository and may be hostile. Keys that *widen* access apply only when the
   user trusted that exact content (rcc.trust); otherwise they are dropped and a notice says what and why.
   Keys that only narrow access (hide, protect, deny, network.mode = "none") always apply.
3. Lists accumulate across layers; scalars and tables: the later layer wins per key.
4. Provenance: every contribution is recorded with where it came from, for `rcc policy show`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from rcc import paths
from rcc.errors import ConfigError, UsageError
from rcc.keys import CONFIG_KEYS, KEYS, TABLES
from rcc.policy import (
    DEFAULT_TOOLCHAINS,
    EnvironmentPolicy,
    FilesystemPolicy,
    LimitsPolicy,
    NetworkPolicy,
    Policy,
)
from rcc.record import field, record

TYPE_CHECKING = False  # typing costs `rcc run` an import
if TYPE_CHECKING:
    from typing import Any

# key -> (kind, widens access when set by the project file), from the one key table (rcc.keys)
_SCHEMA: dict[str, tuple[str, bool]] = {k.name: (k.kind, k.widens) for k in CONFIG_KEYS}
_TABLES = TABLES


def _is_env_name(n: str) -> bool:
    return bool(n) and n.isascii() and not n[0].isdigit() and all(c.isalnum() or c == "_" for c in n)


def _is_env_pattern(n: str) -> bool:
    """PREFIX_*: at least 3 characters before the *, so `*` or `A*` cannot pass the whole environment."""
    return n.endswith("*") and len(n) >= 4 and _is_env_name(n[:-1])


@record
class Contribution:
    """One value for one key, and where it came from."""

    key: str
    value: Any
    source: str  # "default", "~/.config/rcc/config.toml:12", ".rcc.toml:3", "--allow", "agent:claude"


@record
class Layer:
    """The contributions of one source (defaults, user file, project file, flags)."""

    name: str
    contributions: tuple[Contribution, ...]


@record
class Effective:
    """The merged policy with its provenance and the notices for the user."""

    policy: Policy
    provenance: tuple[Contribution, ...]
    notices: tuple[str, ...] = ()
    project_file: str = ""
    project_trusted: bool = False


# ---------------------------------------------------------------------------------------------------- parsing


def _line_of(text: str, table: str, key: str) -> int:
    """Best-effort line number of `key` in `table` (tomllib does not keep positions)."""
    import re

    current = ""
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"^\[\s*([A-Za-z0-9_.\-\"]+)\s*\]", s)
        if m:
            current = m.group(1).strip('"')
            if not table and current.split(".")[0] == key:  # a table of tables: [credentials.NAME]
                return n
            continue
        if re.match(rf"^\"?{re.escape(key)}\"?\s*=", s) and current == table:
            return n
        if not table and re.match(rf"^\"?{re.escape(key)}\"?\s*=", s) and not current:
            return n
        # dotted form at top level: filesystem.read_only = [...]
        if not current and table and re.match(rf"^{re.escape(table)}\.{re.escape(key)}\s*=", s):
            return n
    return 0


def _where(path: str, text: str, dotted: str) -> str:
    table, _, key = dotted.rpartition(".")
    line = _line_of(text, table, key)
    return f"{path}:{line}" if line else path


def parse_file(path: str, layer_name: str) -> tuple[Layer, str]:
    """Read and validate one TOML file into a Layer. Returns the layer and the file's text."""
    import re
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror}") from e
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", "not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        # "(at end of document)" carries no line (an unclosed array or string): point at the last line
        line = m.group(1) if m else str(max(1, len(text.splitlines())))
        where = f"{path}:{line}"
        raise ConfigError(where, "", f"TOML syntax error: {e}") from e
    contributions: list[Contribution] = []
    for top, value in doc.items():
        if top in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(_where(path, text, top), top, "must be a table ([" + top + "])")
            items = [(f"{top}.{k}", v) for k, v in value.items()]
        else:
            items = [(top, value)]
        for dotted, v in items:
            where = _where(path, text, dotted)
            if dotted not in _SCHEMA:
                known = ", ".join(sorted(_SCHEMA))
                raise ConfigError(where, dotted, "unknown key", hint=f"known keys: {known}")
            contributions.append(Contribution(dotted, validate(dotted, v, where), where))
    return Layer(layer_name, tuple(contributions)), text


# ---------------------------------------------------------------------------------------------- validation


def _expand(p: str, home: str) -> str:
    if p == "~" or p.startswith("~/"):
        p = home + p[1:]
    return os.path.normpath(p)


def _check_broad_path(p: str, home: str, where: str, key: str) -> None:
    norm = _expand(p, home)
    if not os.path.isabs(norm):
        raise ConfigError(where, key, f"{p!r} must be absolute or start with ~/")
    home_n = os.path.normpath(home)
    if norm in ("/", home_n) or home_n.startswith(norm.rstrip("/") + "/"):
        raise ConfigError(
            where,
            key,
            f"{p!r} is over-broad: it would expose the whole home directory or filesystem",
            hint="name the directories the agent needs, e.g. ~/.cargo/bin",
        )


def validate(key: str, value: Any, where: str, home: str | None = None) -> Any:
    """Check one value against the schema and return its normalised form (tuples, not lists)."""
    kind, _widens = _SCHEMA[key]
    home = home or os.path.expanduser("~")

    def str_list() -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ConfigError(where, key, "must be a list of strings")
        return tuple(value)

    if kind == "backend":
        if value not in ("bwrap", "podman", "docker", "seatbelt"):
            raise ConfigError(where, key, f"must be one of bwrap, podman, docker, seatbelt (got {value!r})")
        return value
    if kind == "workspace":
        if value not in ("direct", "review"):
            raise ConfigError(where, key, f'must be "direct" or "review" (got {value!r})')
        return value
    if kind == "image":
        bad = not isinstance(value, str) or value.startswith("-") or any(c.isspace() or c == "," for c in value)
        if bad:
            raise ConfigError(where, key, f"{value!r} is not an image name (no spaces, commas or leading -)")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(where, key, "must be true or false")
        return value
    if kind == "onunknown":
        if value not in ("deny", "ask", "learn"):
            raise ConfigError(where, key, f'must be "deny", "ask" or "learn" (got {value!r})')
        return value
    if kind == "asktimeout":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 600:
            raise ConfigError(where, key, f"must be a whole number of seconds from 1 to 600 (got {value!r})")
        return value
    if kind == "netmode":
        if value not in ("allowlist", "none"):
            raise ConfigError(where, key, f'must be "allowlist" or "none" (got {value!r})')
        return value
    if kind == "paths":
        items = str_list()
        for p in items:
            if key != "filesystem.hide":
                _check_broad_path(p, home, where, key)
            elif not (os.path.isabs(p) or p.startswith("~/")):
                raise ConfigError(where, key, f"{p!r} must be absolute or start with ~/")
        return items
    if kind == "relpaths":
        items = str_list()
        for p in items:
            parts = p.split("/")
            if not p or os.path.isabs(p) or ".." in parts or "" in parts:
                raise ConfigError(where, key, f"{p!r} must be a relative path inside the project (no .., no //)")
        return items
    if kind == "envnames":
        items = str_list()
        for n in items:
            if not (_is_env_name(n) or _is_env_pattern(n)):
                raise ConfigError(
                    where,
                    key,
                    f"{n!r} is not a variable name or a PREFIX_* pattern (at least 3 characters before *)",
                )
        return items
    if kind == "envtable":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(where, key, 'must be a table of NAME = "value" strings')
        for n in value:
            if not _is_env_name(n):
                raise ConfigError(where, key, f"{n!r} is not a variable name")
        return tuple(sorted(value.items()))
    if kind == "hostrules":
        items = str_list()
        from rcc.net.rules import RuleError, parse_rule

        for r in items:
            try:
                parse_rule(r)
            except RuleError as e:
                raise ConfigError(where, key, str(e)) from e
        return items
    if kind == "resolve":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(where, key, 'must be a table of "host" = "address" strings')
        import ipaddress

        for h, a in value.items():
            try:
                ipaddress.ip_address(a)
            except ValueError as e:
                raise ConfigError(where, key, f"{h!r} = {a!r}: not an IP address") from e
        return tuple(sorted((h.lower().rstrip("."), a) for h, a in value.items()))
    if kind == "publish":
        if not isinstance(value, list) or not all(isinstance(x, str | int) and not isinstance(x, bool) for x in value):
            raise ConfigError(where, key, 'must be a list of "[HOSTADDR:]HOSTPORT[:PORT]" strings')
        from rcc.policy import parse_publish

        for x in value:
            try:
                parse_publish(str(x))
            except ValueError as e:
                raise ConfigError(where, key, str(e)) from e
        return tuple(str(x) for x in value)
    if kind in ("memsize", "tmpsize", "count", "cpus"):
        from rcc import limits

        try:
            if kind == "memsize":
                return limits.parse_size(value, "memory", limits.MIN_MEMORY)
            if kind == "tmpsize":
                return limits.parse_size(value, "tmp", limits.MIN_TMP)
            if kind == "count":
                return limits.parse_count(value, "processes")
            return limits.parse_cpus(value, "cpu")
        except ValueError as e:
            raise ConfigError(where, key, str(e)) from e
    if kind == "credentials":
        return _credentials(value, where, key)
    if kind == "ports":
        ok = isinstance(value, list) and all(type(x) is int and 1 <= x <= 65535 for x in value)
        if not ok:
            raise ConfigError(where, key, "must be a list of port numbers (1-65535)")
        return tuple(value)
    raise AssertionError(kind)


def _credentials(
    value: Any, where: str, key: str
) -> tuple[tuple[str, tuple[str, tuple[str, ...], tuple[str, ...]]], ...]:
    """[credentials.NAME] tables -> ((name, (env, hosts, requests)), ...). Host names only (TLS is terminated for
    them: a certificate names a host), normalised. `requests` (optional): "HOST METHODS PATH" rules; with any
    for a host, only matching requests go through its terminated connections (rcc.net.credentials)."""
    import re

    from rcc.net.hosts import HostError, normalize_host

    if not isinstance(value, dict):
        raise ConfigError(where, key, 'must be tables: [credentials.NAME] with env = "VAR" and hosts = [...]')
    out = []
    for name, spec in value.items():
        what = f"{key}.{name}"
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
            raise ConfigError(where, what, "a credential's name is 1-32 of a-z, 0-9, _ and -")
        if not isinstance(spec, dict) or set(spec) - {"env", "hosts", "requests"} or not {"env", "hosts"} <= set(spec):
            raise ConfigError(
                where, what, 'must have env = "VAR" and hosts = ["host", ...] (and optionally requests = [...])'
            )
        env, hosts = spec["env"], spec["hosts"]
        if not isinstance(env, str) or not _is_env_name(env):
            raise ConfigError(where, f"{what}.env", f"{env!r} is not a variable name")
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
            raise ConfigError(where, f"{what}.hosts", "must be a non-empty list of host names")
        normal = []
        for h in hosts:
            try:
                n = normalize_host(h)
            except HostError as e:
                raise ConfigError(where, f"{what}.hosts", str(e)) from e
            if not isinstance(n, str) or "*" in h:
                raise ConfigError(where, f"{what}.hosts", f"{h!r}: a credential needs host names (no addresses, no *)")
            normal.append(n)
        requests = spec.get("requests", [])
        if not isinstance(requests, list) or not all(isinstance(r, str) for r in requests):
            raise ConfigError(where, f"{what}.requests", 'must be a list of "HOST METHODS /PATH" strings')
        from rcc.net.credentials import RequestRuleError, parse_request_rule

        for r in requests:
            try:
                if parse_request_rule(r).host not in normal:
                    raise RequestRuleError(f"{r!r}: the host is not one of this credential's hosts")
            except RequestRuleError as e:
                raise ConfigError(where, f"{what}.requests", str(e)) from e
        out.append((name, (env, tuple(dict.fromkeys(normal)), tuple(requests))))
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------- merging


def _widens(c: Contribution) -> bool:
    _kind, widens = _SCHEMA[c.key]
    if c.key == "network.mode":
        return bool(c.value != "none")
    return widens


def gate_untrusted(layer: Layer, path: str) -> tuple[Layer, tuple[str, ...]]:
    """Drop what widens access from an untrusted project layer; say what was dropped."""
    kept, notices = [], []
    for c in layer.contributions:
        if _widens(c):
            notices.append(f"ignored {c.key} = {show_value(c.value)} from {c.source} (widens access)")
        else:
            kept.append(c)
    if notices:
        notices.append(f"{path} is not trusted: review it, then run `rcc trust` to apply it")
    return Layer(layer.name, tuple(kept)), tuple(notices)


def show_value(v: Any) -> str:
    if isinstance(v, tuple) and v and isinstance(v[0], tuple):
        return "{" + ", ".join(f"{a} = {b!r}" for a, b in v) + "}"
    if isinstance(v, tuple):
        return "[" + ", ".join(repr(x) for x in v) + "]"
    return repr(v)


def default_backend(platform: str = sys.platform) -> str:
    """Seatbelt on macOS (sandbox-exec ships with it), bubblewrap everywhere else."""
    return "seatbelt" if platform == "darwin" else "bwrap"


def _get(obj: Any, target: str) -> Any:
    for attr in target.split("."):
        obj = getattr(obj, attr)
    return obj


def merge(layers: Sequence[Layer], home: str) -> Policy:
    """The built-in defaults, then the layers' contributions in order, each merged as its key says (rcc.keys)."""
    builtin = Policy()
    values: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        if key.target:
            v = _get(builtin, key.target)
            values[key.name] = dict(v) if key.merge == "update" else v
    values["backend"] = default_backend()
    use_default_toolchains = True
    for layer in layers:
        for c in layer.contributions:
            key = KEYS[c.key]
            if c.key == "filesystem.default_toolchains":
                use_default_toolchains = c.value
            elif key.merge == "append":
                values[c.key] = (*values[c.key], *c.value)
            elif key.merge == "update":
                values[c.key] = {**values[c.key], **dict(c.value)}
            else:
                values[c.key] = c.value
    if not use_default_toolchains:
        values["filesystem.toolchains"] = tuple(
            t for t in values["filesystem.toolchains"] if t not in DEFAULT_TOOLCHAINS
        )
    sections: dict[str, dict[str, Any]] = {"filesystem": {}, "environment": {}, "network": {}, "limits": {}}
    top: dict[str, Any] = {}
    for name, merged in values.items():
        key = KEYS[name]
        v = merged
        if key.merge == "update":
            v = tuple(sorted(merged.items()))
        elif key.merge == "append":
            v = tuple(dict.fromkeys(_expand(p, home) for p in merged) if key.kind == "paths" else dict.fromkeys(merged))
        section, _, attr = key.target.rpartition(".")
        (sections[section] if section else top)[attr] = v
    return Policy(
        filesystem=FilesystemPolicy(**sections["filesystem"]),
        environment=EnvironmentPolicy(**sections["environment"]),
        network=NetworkPolicy(**sections["network"]),
        limits=LimitsPolicy(**sections["limits"]),
        **top,
    )


# ---------------------------------------------------------------------------------------------- loading


@record(frozen=False)
class Flags:
    """Policy-relevant command-line flags, collected by the CLI parser (mutable only while parsing)."""

    contributions: list[Contribution] = field(default_factory=list)

    def add(self, key: str, value: Any, flag: str) -> None:
        try:
            v = validate(key, value, flag)
        except ConfigError as e:
            raise UsageError(e.message, hint=e.hint or "run `rcc run --help`") from e
        self.contributions.append(Contribution(key, v, flag))


def load(
    project: str,
    flags: Sequence[Contribution] = (),
    extra_layers: Sequence[Layer] = (),
    env: Mapping[str, str] = os.environ,
    home: str | None = None,
) -> Effective:
    """The effective policy for `project`. `extra_layers` (e.g. an agent profile) sit between defaults and the
    user file, so the user's own config can still override them."""
    home = home or os.path.expanduser("~")
    layers: list[Layer] = list(extra_layers)
    notices: list[str] = []
    user_file = paths.user_config_file(env)
    if os.path.exists(user_file):
        layers.append(parse_file(user_file, "user")[0])
    project_file = os.path.join(project, paths.PROJECT_CONFIG_NAME)
    trusted = False
    if os.path.lexists(project_file):
        if os.path.islink(project_file) or not os.path.isfile(project_file):
            raise ConfigError(project_file, "", "must be a regular file (a symlink could point anywhere)")
        layer, text = parse_file(project_file, "project")
        from rcc import trust

        trusted = trust.is_trusted(project, text.encode(), env)
        if not trusted:
            layer, dropped = gate_untrusted(layer, project_file)
            notices.extend(dropped)
        layers.append(layer)
    layers.append(Layer("flags", tuple(flags)))
    policy = merge(layers, home)
    provenance = tuple(c for layer in layers for c in layer.contributions)
    return Effective(policy, provenance, tuple(notices), project_file if os.path.exists(project_file) else "", trusted)


def load_policy(project: str) -> Policy:
    """For `rcc doctor`: validate every config file that applies to `project`."""
    return load(project).policy
