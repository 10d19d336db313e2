"""FirewallSpec: everything the firewall rendering depends on, validated when it is made.

Invariants:
1. A FirewallSpec is valid or does not exist: bad values raise ConfigError (nothing is clamped or dropped).
2. Its values are interpolated into rule text, so they are restricted to characters that cannot end a string
   or a statement in nft or pf syntax (an interface prefix `rcc" accept #` would otherwise open the firewall).
3. The JSON form (to_json/from_json) round-trips exactly; the installed ruleset carries it in a header line so
   `rcc doctor` can re-render and tell whether what is installed is current.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from rcc.errors import ConfigError

DEFAULT_PROXY_PORT = 3128
DEFAULT_INTERFACE_PREFIX = "rcc"

# Linux interface names are at most 15 bytes; the prefix leaves room for a suffix (rcc0, rcc-1a2b3c4d).
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,7}")


@dataclass(frozen=True)
class FirewallSpec:
    """What rcc's firewall allows from its sandboxes' interfaces: TCP to `proxy_ports` on the host's own
    address on the interface the packet arrived on. Everything else from those interfaces is dropped."""

    interface_prefix: str = DEFAULT_INTERFACE_PREFIX
    proxy_ports: tuple[int, ...] = (DEFAULT_PROXY_PORT,)

    def __post_init__(self) -> None:
        if not isinstance(self.interface_prefix, str) or not _PREFIX_RE.fullmatch(self.interface_prefix):
            raise ConfigError(
                "firewall",
                "interface_prefix",
                f"{self.interface_prefix!r} is not 1-8 lowercase letters/digits starting with a letter",
            )
        if not self.proxy_ports:
            raise ConfigError("firewall", "proxy_ports", "at least one proxy port is needed")
        for port in self.proxy_ports:
            # bool is an int subclass: True would render as port 1.
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ConfigError("firewall", "proxy_ports", f"{port!r} is not a TCP port (1-65535)")
        if len(set(self.proxy_ports)) != len(self.proxy_ports):
            raise ConfigError("firewall", "proxy_ports", "ports are listed twice")
        if list(self.proxy_ports) != sorted(self.proxy_ports):
            # One spelling per spec, so equal specs render byte-identical rulesets.
            object.__setattr__(self, "proxy_ports", tuple(sorted(self.proxy_ports)))

    @property
    def interface_glob(self) -> str:
        return self.interface_prefix + "*"

    def to_json(self) -> str:
        return json.dumps(
            {"version": 1, "interface_prefix": self.interface_prefix, "proxy_ports": list(self.proxy_ports)},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, where: str = "firewall spec") -> FirewallSpec:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(where, "", f"not JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ConfigError(where, "version", "unknown firewall spec version")
        unknown = set(doc) - {"version", "interface_prefix", "proxy_ports"}
        if unknown:
            raise ConfigError(where, ", ".join(sorted(unknown)), "unknown key")
        ports = doc.get("proxy_ports")
        if not isinstance(ports, list):
            raise ConfigError(where, "proxy_ports", "must be a list of ports")
        prefix = doc.get("interface_prefix")
        if not isinstance(prefix, str):
            raise ConfigError(where, "interface_prefix", "must be a string")
        return cls(interface_prefix=prefix, proxy_ports=tuple(ports))
