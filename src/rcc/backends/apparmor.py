"""AppArmor's user-namespace restriction, as it bears on bubblewrap (Ubuntu 24.04 and later:
kernel.apparmor_restrict_unprivileged_userns=1 lets only programs whose profile grants `userns,` make user
namespaces). `rcc doctor` asks this module whether the bwrap rcc uses is allowed, and for the exact fix.

Pure except profile_texts(), which reads /etc/apparmor.d.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from rcc.paths import read_text


def glob_match(glob: str, path: str) -> bool:
    """AppArmor attachment globbing: `**` crosses '/', `*` and `?` do not, `{a,b}` alternates."""
    out, i = "", 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "{":
            end = glob.find("}", i)
            if end < 0:
                return False
            out += "(?:" + "|".join(re.escape(a) for a in glob[i + 1 : end].split(",")) + ")"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.fullmatch(out, path) is not None


def profile_fix(bwrap: str) -> str:
    return (
        "use the distribution's bubblewrap, whose AppArmor profile allows user namespaces "
        "(sudo apt-get install bubblewrap, and put /usr/bin before this bwrap's directory on PATH), "
        "or give this exact binary a profile: printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\n"
        f"profile rcc-bwrap {bwrap} "
        "flags=(unconfined) {\\n  userns,\\n}\\n' | sudo tee /etc/apparmor.d/rcc-bwrap && "
        "sudo apparmor_parser -r /etc/apparmor.d/rcc-bwrap  (name the exact path, never a /nix/store/* glob: "
        "anyone can put a program named bwrap in the Nix store)"
    )


_AA_PROFILE = re.compile(r"^\s*(?:profile\s+(\S+)\s+)?(\"[^\"]+\"|/\S+)\s*(?:flags\s*=\s*\([^)]*\)\s*)?\{", re.M)
_AA_USERNS = re.compile(r"^\s*(?:allow\s+)?userns\s*,", re.M)


def userns_profiles(texts: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(profile name, attachment glob) for profiles in files that grant `userns,` (pure; takes file texts)."""
    out = []
    for fname, text in sorted(texts.items()):
        if not _AA_USERNS.search(text):
            continue
        for m in _AA_PROFILE.finditer(text):
            out.append((m.group(1) or os.path.basename(fname), m.group(2).strip('"')))
    return tuple(out)


def profile_texts(d: str = "/etc/apparmor.d") -> dict[str, str]:
    out = {}
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p):
            t = read_text(p)
            if t is not None:
                out[p] = t
    return out
