"""Print rcc's nftables ruleset for the NixOS module (run at build time; argv: PREFIX PORT...).

The module does not re-implement the rules in Nix: it asks the rcc it installs, so NixOS loads exactly what
`sudo rcc setup --firewall` would, and `rcc doctor` finds the digest it expects. A bad prefix or port is a
ConfigError, which fails the build (never a weaker firewall).
"""

import sys

from rcc.errors import RccError
from rcc.firewall.nft import render_nft
from rcc.firewall.spec import FirewallSpec

try:
    spec = FirewallSpec(interface_prefix=sys.argv[1], proxy_ports=tuple(int(p) for p in sys.argv[2:]))
except RccError as e:
    sys.exit(f"rcc firewall: {e.message}")
sys.stdout.write(render_nft(spec))
