"""`rcc review`, `rcc apply`, `rcc discard`: a review-mode session's changes, seen, written or dropped."""

from __future__ import annotations

import os
import sys

from rcc import paths
from rcc.errors import ExitCode, RccError, UsageError
from rcc.workspace import layer, trees
from rcc.workspace.changes import DIR, FILE, WHITEOUT, Change, Summary, render_summary, shown, under

REVIEW_HELP = """\
usage: rcc review [--session ID | --worktree NAME] [--stat]

What a review-mode session (`rcc run --review`, `rcc claude --review`) changed: added (A), modified (M),
deleted (D), mode changes (T), replaced (R, a file by a directory or back), renames, symlinks and where they
point; executable files, links outside the project and conflicts are flagged; then the full diff (--stat: the
list only). Without --session: the newest pending review of the current project. --worktree NAME: what the
session(s) in worktree NAME (`rcc claude --worktree NAME`) changed since it was made, commits included, against
the main working tree.
exit status: 0; 67 no pending review matches.
"""
APPLY_HELP = """\
usage: rcc apply [--session ID | --worktree NAME] [PATH...]

Writes a review's changes (or those at or below each PATH) into the project. Never writes a never-writable
path, a symlink pointing outside the project, a fifo, device or socket, a file over 256 MiB, or a file changed
in the project since the session started (a conflict): those are listed and kept. The review is removed once
nothing is left to apply. --worktree NAME: writes worktree NAME's changes into the main working tree (a file
the main tree changed since the worktree was made is a conflict); the worktree and its branch are kept.
exit status: 0 all applied; 65 some were refused or in conflict (the rest applied); 67 no pending review.
"""
DISCARD_HELP = """\
usage: rcc discard [--session ID | --worktree NAME]

Drops a review's changes; the project is not touched. --worktree NAME: removes worktree NAME (whatever is in it)
and its branch NAME.
exit status: 0; 67 no pending review matches.
"""


_TREE = "worktree:"  # _parse's `which` for --worktree NAME


def _parse(argv: list[str], help_text: str, paths_ok: bool) -> tuple[str, bool, list[str]]:
    which, stat_only, rest = "", False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(help_text)
            raise SystemExit(0)
        if a == "--worktree" or a.startswith("--worktree="):
            if a == "--worktree":
                if i + 1 >= len(argv):
                    raise UsageError("--worktree needs a value (the NAME of `rcc claude --worktree NAME`)")
                i += 1
                a = "=" + argv[i]
            which = _TREE + a.partition("=")[2]
        elif a == "--session":
            if i + 1 >= len(argv):
                raise UsageError("--session needs a value (an id from `rcc sessions`)")
            i += 1
            which = argv[i]
        elif a.startswith("--session="):
            which = a.partition("=")[2]
        elif a == "--stat" and help_text is REVIEW_HELP:
            stat_only = True
        elif a == "--" and paths_ok:
            rest += argv[i + 1 :]
            break
        elif a.startswith("-") or not paths_ok:
            raise UsageError(f"unknown option {a!r}", hint=help_text.splitlines()[0])
        else:
            rest.append(a)
        i += 1
    return which, stat_only, rest


def pick(which: str) -> layer.Review:
    """--session ID (or a unique prefix), else the newest pending review of the current project."""
    reviews = layer.pending(paths.state_dir())
    if which:
        found = [r for r in reviews if r.id.startswith(which.lower())]
        what = f"matches {which!r}"
    else:
        here = os.path.realpath(os.getcwd())
        found = [r for r in reviews if under(here, r.project)][-1:]
        what = f"for {here}"
    if len(found) != 1:
        raise RccError(
            f"{'no' if not found else 'more than one'} pending review {what}",
            hint="`rcc sessions` lists the pending reviews; pass --session ID",
            code=ExitCode.NO_REVIEW,
        )
    return found[0]


def _summary(review: layer.Review) -> Summary:
    from rcc import config
    from rcc.compile import never_writable

    if layer.running(review):
        raise RccError(
            f"the session of review {review.id} is still running",
            hint="let it end first (its changes are still being made)",
            code=ExitCode.NO_REVIEW,
        )
    policy = config.load(review.project, (), ()).policy
    has_git = os.path.isdir(os.path.join(review.project, ".git"))
    return layer.changes(review, never_writable(policy, has_git))


def _tree(which: str) -> trees.Tree | None:
    return trees.find(os.getcwd(), which[len(_TREE) :]) if which.startswith(_TREE) else None


def _protected(project: str) -> tuple[str, ...]:
    from rcc import config
    from rcc.compile import never_writable

    policy = config.load(project, (), ()).policy
    return never_writable(policy, os.path.isdir(os.path.join(project, ".git")))


def review_command(argv: list[str]) -> int:
    which, stat_only, _ = _parse(argv, REVIEW_HELP, False)
    tree = _tree(which)
    if tree is not None:
        with trees.quiet(tree):
            summary = trees.changes(tree, _protected(tree.project))
        head = f"worktree {tree.name}: {shown(tree.path)} -> {shown(tree.project)} (since {tree.base[:12]})"
        project, upper = tree.project, tree.path
    else:
        review = pick(which)
        summary = _summary(review)
        head = f"review {review.id}: {shown(review.project)} ({review.command or 'session'})"
        project, upper = review.project, review.upper
    out = sys.stdout
    out.write(head + "\n")
    listing = render_summary(summary)
    out.write(listing or "no changes\n")
    if not stat_only:
        for c in summary.pending():
            out.write(diff(project, upper, c))
    return ExitCode.OK


_DIFF_LIMIT = 1 << 20


def diff(project: str, upper: str, c: Change) -> str:
    """A unified diff of one change (text files up to 1 MiB; others are named, not shown)."""
    if c.kind == DIR or c.action == "mode" or (c.kind == WHITEOUT and c.lower.kind != FILE) or under(c.rel, ".git"):
        return ""
    old = _text(os.path.join(project, c.rel)) if c.lower.kind == FILE and c.action != "added" else ""
    new = _text(os.path.join(upper, c.rel)) if c.kind == FILE else ""
    name = shown(c.rel)
    if old is None or new is None:
        return f"--- {name}: binary or larger than {_DIFF_LIMIT} bytes, not shown\n"
    import difflib

    a = "/dev/null" if c.action == "added" else f"a/{name}"
    b = "/dev/null" if c.action == "deleted" else f"b/{name}"
    lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), a, b)
    text = "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines)
    return "".join(_safe_line(ln) for ln in text.splitlines(True))


def _safe_line(line: str) -> str:
    """Terminal control sequences in a file's content are shown escaped, not interpreted."""
    body = line[:-1] if line.endswith("\n") else line
    return "".join(ch if ch.isprintable() or ch == "\t" else ch.encode("unicode_escape").decode() for ch in body) + (
        "\n" if line.endswith("\n") else ""
    )


def _text(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        import stat

        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _DIFF_LIMIT:
            return None
        data = os.read(fd, _DIFF_LIMIT + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


def apply_command(argv: list[str]) -> int:
    which, _, wanted = _parse(argv, APPLY_HELP, True)
    tree = _tree(which)
    if tree is not None:
        with trees.quiet(tree):
            return _apply(trees.changes(tree, _protected(tree.project)), tree.project, tree.path, wanted, tree)
    review = pick(which)
    return _apply(_summary(review), review.project, review.upper, wanted, review)


def _apply(summary: Summary, project: str, upper: str, wanted: list[str], src: trees.Tree | layer.Review) -> int:
    again = f"--worktree {src.name}" if isinstance(src, trees.Tree) else f"--session {src.id}"
    tops = [_rel(project, p) for p in wanted]
    chosen = [c for c in summary.pending() if not tops or any(under(c.rel, t) for t in tops)]
    if tops and not chosen:
        raise RccError(
            "no change of the review is at or below " + ", ".join(shown(t) for t in tops),
            hint=f"`rcc review {again} --stat` lists them",
            code=ExitCode.USAGE,
        )
    refused = [(c, c.refused) for c in chosen if c.refused]
    failed = layer.apply_from(upper, project, [c for c in chosen if c.applicable])
    bad = {id(c) for c, _ in failed}
    done = [c for c in chosen if c.applicable and id(c) not in bad]
    for c in done:
        sys.stdout.write(f"applied {c.action} {shown(c.rel)}\n")
    for c, why in refused + failed:
        label = "CONFLICT" if "conflict" in c.flags else "refused"
        sys.stdout.write(f"{label}: {c.action} {shown(c.rel)}: {why}\n")
    applied = {id(c) for c in done}
    left = [c for c in summary.pending() if id(c) not in applied and not c.refused]
    if isinstance(src, trees.Tree):
        sys.stdout.write(
            f"worktree {src.name} kept (its commits are on branch {src.name}): "
            f"`rcc discard --worktree {src.name}` removes it\n"
        )
    elif not left and not refused and not failed:
        layer.discard(src)
        sys.stdout.write(f"review {src.id} applied and removed\n")
    elif not left:
        sys.stdout.write(f"review {src.id} kept for what was not applied: `rcc discard --session {src.id}`\n")
    if refused or failed:
        return ExitCode.APPLY_REFUSED
    return ExitCode.OK


def _rel(project: str, p: str) -> str:
    full = os.path.normpath(os.path.join(os.getcwd(), p))
    real_project = os.path.realpath(project)
    for base in (project, real_project):
        if under(full, base):
            rel = os.path.relpath(full, base)
            return "" if rel == "." else rel
    raise UsageError(f"{p} is not inside the project {project}")


def discard_command(argv: list[str]) -> int:
    which, _, _ = _parse(argv, DISCARD_HELP, False)
    tree = _tree(which)
    if tree is not None:
        with trees.quiet(tree):
            trees.discard(tree)
        sys.stdout.write(f"worktree {tree.name} ({shown(tree.path)}) and its branch {tree.name} removed\n")
        return ExitCode.OK
    review = pick(which)
    if layer.running(review):
        raise RccError(
            f"the session of review {review.id} is still running", hint="let it end first", code=ExitCode.NO_REVIEW
        )
    layer.discard(review)
    sys.stdout.write(f"review {review.id} discarded\n")
    return ExitCode.OK
