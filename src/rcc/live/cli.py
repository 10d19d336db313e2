"""`rcc sessions`, `rcc allow RULE`, `rcc deny RULE`: the client side of the control channel (protocol.py)."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from rcc import paths
from rcc.errors import ExitCode, RccError, UsageError
from rcc.live import protocol, sessions

SESSIONS_HELP = """\
usage: rcc sessions [--json]

The running rcc sessions of this account: id, project, command, backend, started, connections allowed/denied,
and for a project that is a git worktree (rcc claude --worktree NAME) its branch when the session started.
"""

CHANGE_HELP = """\
usage: rcc {op} RULE [--session ID|last] [--save]

{what} in a running session's proxy at once (the newest session unless --session names one; `rcc sessions`
lists them). RULE is written like --allow/--deny: example.com, *.example.com, host:port, 10.0.0.1, @pypi.
  --save   also add it to network.{op} in your config (~/.config/rcc/config.toml; never the project's .rcc.toml)
Every change is recorded in rcc's state dir (policy-changes.jsonl): when, which session, what, who.
"""


def _ask(rec: sessions.SessionRecord, req: bytes, timeout: float = 5.0) -> dict[str, Any]:
    """One request, one reply, on the session's socket (connected through the directory's descriptor)."""
    import os

    fd = sessions.open_dir(paths.state_dir(), create=False)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(f"/proc/self/fd/{fd}/{rec.socket}")
                s.sendall(req)
                buf = protocol.LineBuffer()
                while True:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("the session closed the connection")
                    lines = buf.feed(data)
                    if lines:
                        return protocol.parse_reply(lines[0])
            except (OSError, protocol.ProtocolError) as e:
                raise RccError(
                    f"cannot reach session {rec.id}: {e}",
                    hint="is it still running? `rcc sessions` lists the running sessions",
                    code=ExitCode.NO_SESSION,
                ) from None
    finally:
        os.close(fd)


def _pending_reviews() -> str:
    """Review-mode sessions whose changes wait for `rcc apply` or `rcc discard` (rcc.workspace)."""
    from rcc.net.hosts import printable
    from rcc.workspace.layer import pending
    from rcc.workspace.trees import listed

    lines = [
        f"pending review {r.id}  {printable(r.project)}  {printable(r.command)[:60]}\n"
        for r in pending(paths.state_dir())
    ]
    lines += [  # this repository's --worktree worktrees: `rcc review/apply/discard --worktree NAME`
        f"worktree {printable(name)}  {printable(path)}\n" for name, path in listed(os.getcwd())
    ]
    return "".join(lines)


def sessions_command(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(SESSIONS_HELP)
        return 0
    bad = [a for a in argv if a != "--json"]
    if bad:
        raise UsageError(f"unknown option {bad[0]!r}", hint="usage: rcc sessions [--json]")
    rows = []
    for rec in sessions.list_records(paths.state_dir(), prune=True):
        try:
            st = _ask(rec, protocol.request("status"), timeout=2.0)
            allowed, denied = st.get("allowed", "?"), st.get("denied", "?")
        except RccError:
            allowed = denied = "?"
        rows.append({**rec.__dict__, "allowed": allowed, "denied": denied})
    if "--json" in argv:
        import json

        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    reviews = _pending_reviews()
    if "--json" not in argv and reviews:
        sys.stdout.write(reviews)
    if not rows:
        sys.stdout.write("no running rcc sessions\n")
        return 0
    from rcc.net.hosts import printable

    head = ("ID", "STARTED", "BACKEND", "ALLOWED", "DENIED", "BRANCH", "PROJECT", "COMMAND")
    table = [head] + [
        (
            r["id"],
            str(r["started"])[:19].replace("T", " "),
            r["backend"] or "-",
            str(r["allowed"]),
            str(r["denied"]),
            printable(r["branch"]) or "-",
            printable(r["project"]),
            printable(r["command"])[:60],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    for row in table:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1] + "\n")
    return 0


def allow_command(argv: list[str]) -> int:
    return _change("allow", argv)


def deny_command(argv: list[str]) -> int:
    return _change("deny", argv)


def _change(op: protocol.Op, argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        what = "Allow a host" if op == "allow" else "Deny a host (deny wins over any allow)"
        sys.stdout.write(CHANGE_HELP.format(op=op, what=what))
        return 0
    which, save, rules = "last", False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--session":
            if i + 1 >= len(argv):
                raise UsageError("--session needs a value (an id from `rcc sessions`, or last)")
            which = argv[i + 1]
            i += 1
        elif a.startswith("--session="):
            which = a.partition("=")[2]
        elif a == "--save":
            save = True
        elif a.startswith("-"):
            raise UsageError(f"unknown option {a!r}", hint=f"usage: rcc {op} RULE [--session ID|last] [--save]")
        else:
            rules.append(a)
        i += 1
    if len(rules) != 1:
        raise UsageError(f"rcc {op} takes exactly one RULE", hint=f"usage: rcc {op} RULE [--session ID|last] [--save]")
    rule = rules[0]
    rec = sessions.pick(sessions.list_records(paths.state_dir(), prune=True), which)
    reply = _ask(rec, protocol.request(op, rule))
    if not reply["ok"]:
        raise RccError(f"session {rec.id} refused: {reply.get('error', '?')}", code=ExitCode.CONFIG)
    sys.stdout.write(f"rcc: {op} {rule} in session {rec.id} ({rec.command[:60]}): applied now\n")
    if save:
        from rcc.live.config_edit import save_rule

        sys.stdout.write(f"rcc: saved to network.{op} in {save_rule(op, rule)}\n")
    return 0
