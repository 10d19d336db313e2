"""`rcc policy show [--json] [--project DIR]`: the effective policy and where each value came from.
`rcc policy suggest` is rcc.live.suggest (the allow list a learn-mode session needed)."""

from __future__ import annotations

import os

from rcc.config import load, show_value
from rcc.errors import UsageError
from rcc.keys import TABLES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


USAGE = (
    "usage: rcc policy show [--json] [--project DIR]\n"
    "       rcc policy suggest [--session ID|last] [--write [user|project]]"
)


def command(argv: list[str]) -> int:
    import json
    import sys

    from rcc.record import asdict

    args = list(argv)
    if args[:1] == ["suggest"]:
        from rcc.live.suggest import command as suggest_command

        return suggest_command(args[1:])
    if args and args[-1] in ("-h", "--help"):
        sys.stdout.write(USAGE + "\n")
        return 0
    if not args or args[0] != "show":
        raise UsageError(USAGE)
    args.pop(0)
    as_json = False
    project = os.getcwd()
    while args:
        a = args.pop(0)
        if a == "--json":
            as_json = True
        elif a == "--project" and args:
            project = os.path.abspath(args.pop(0))
        else:
            raise UsageError(f"unknown option {a!r} for `rcc policy show`")
    eff = load(project)
    sources: dict[str, list[dict[str, Any]]] = {}
    for c in eff.provenance:
        sources.setdefault(c.key, []).append({"value": _jsonable(c.value), "source": c.source})
    if as_json:
        doc = {
            "policy": asdict(eff.policy),
            "sources": sources,
            "project_file": eff.project_file,
            "project_trusted": eff.project_trusted,
            "notices": list(eff.notices),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    pol = asdict(eff.policy)
    out = []
    for table in (t for t in TABLES if t in pol):  # [container] shows as container_image below
        out.append(f"[{table}]")
        for k, v in pol[table].items():
            if (table, k) == ("network", "credentials"):
                continue  # its own section below
            out.append(f"  {k} = {show_value(tuple(map(_tup, v)) if isinstance(v, list) else v)}")
            for s in sources.get(f"{table}.{k}", []):
                out.append(f"      + {show_value(_tup(s['value']))}  ({s['source']})")
    out.append("[credentials]  (inside, the variable holds a placeholder; the proxy adds the value for these hosts)")
    for name, (var, hosts, requests) in eff.policy.network.credentials:
        out.append(f"  {name}: env {var}, hosts {', '.join(hosts)}")
        out.extend(f"    only: {r}" for r in requests)
    for s in sources.get("credentials", []):
        out.append(f"      + {', '.join(n for n, _ in s['value'])}  ({s['source']})")
    out.append(f"backend = {eff.policy.backend!r}")
    for s in sources.get("backend", []):
        out.append(f"      ({s['source']})")
    if eff.project_file:
        out.append(f"project file: {eff.project_file} ({'trusted' if eff.project_trusted else 'NOT trusted'})")
    out.extend(f"note: {n}" for n in eff.notices)
    out.append("(values without a + line are rcc's built-in defaults)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _tup(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tup(x) for x in v)
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v
