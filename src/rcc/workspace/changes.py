"""What a review-mode session changed, and what `rcc apply` may write. Pure: facts in, Changes out.

Invariants:
1. A path is relative to the project, a str as os.fsdecode makes it (invalid UTF-8 kept as surrogates); it is
   never shown raw: `shown()` escapes newlines, control characters and undecodable bytes, so a name cannot fake
   another line of `rcc review`'s output.
2. A Change is refused (never applied) when it writes or deletes a never-writable path or anything above one
   (deleting `.claude` would delete `.claude/settings.json`), when it is a special file (fifo, device, socket),
   a symlink whose target leaves the project, a file over MAX_APPLY bytes (a sparse file's apparent size counts),
   or when the project's copy changed since the session started (a conflict).
3. Nothing here reads the disk; rcc.workspace.layer gathers the facts.
"""

from __future__ import annotations

import posixpath

from rcc.record import field, record, replace

MAX_APPLY = 256 * 1024 * 1024  # one file; a sparse 1 TB file would otherwise fill the user's disk

# Entry kinds (of the upper directory) and Lower kinds (the project now)
FILE, DIR, SYMLINK, WHITEOUT, SPECIAL, MISSING = "file", "dir", "symlink", "whiteout", "special", "missing"


@record
class Entry:
    """One entry of the upper directory."""

    rel: str
    kind: str  # file, dir, symlink, whiteout (a deletion), special (fifo, device other than 0/0, socket)
    mode: int = 0  # permission bits (st_mode & 0o7777)
    size: int = 0
    target: str = ""  # a symlink's target
    opaque: bool = False  # a directory that hides the project's directory of that name (replaced, not merged)


@record
class Lower:
    """The project's entry at the same path, now."""

    kind: str = MISSING  # missing, file, dir, symlink, special
    mode: int = 0
    size: int = 0
    target: str = ""
    same: bool = False  # a file whose content equals the upper file's
    changed: bool = False  # changed in the project since the session started (a conflict)


@record
class Change:
    rel: str
    action: str  # added, modified, deleted, mode, replaced (a file by a directory or back), unchanged
    kind: str  # what the session left there (Entry.kind; "whiteout" for a deletion)
    entry: Entry
    lower: Lower
    flags: tuple[str, ...] = ()  # "executable", "outside", "conflict"
    refused: str = ""  # why `rcc apply` will not write it ("" = it may)
    renamed_from: str = ""  # shown only: a deleted file with the same content

    @property
    def applicable(self) -> bool:
        return not self.refused and self.action != "unchanged"


@record
class Summary:
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action != "unchanged")


def under(rel: str, top: str) -> bool:
    return rel == top or rel.startswith(top.rstrip("/") + "/")


def protection(rel: str, kind: str, protected: tuple[str, ...]) -> str:
    """Why writing or deleting `rel` is never allowed ("" when it is)."""
    for p in protected:
        if under(rel, p):
            return f"never writable ({p})"
        if kind in (WHITEOUT, "replaced") and under(p, rel):
            return f"it would remove the never-writable {p}"
    return ""


def link_outside(rel: str, target: str, project: str) -> bool:
    """A symlink at `rel` whose target leaves the project (lexically: the link is never followed by rcc)."""
    if target.startswith("/"):
        return not under(posixpath.normpath(target), project)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return joined == ".." or joined.startswith("../")


def classify(entry: Entry, lower: Lower, protected: tuple[str, ...], project: str) -> Change:
    """One upper entry against the project's entry: what changed, its flags, and whether it may be applied."""
    flags: list[str] = []
    kind = entry.kind
    if kind == WHITEOUT:
        action = "deleted" if lower.kind != MISSING else "unchanged"
    elif lower.kind == MISSING:
        action = "added"
    elif kind == DIR and lower.kind == DIR:
        action = "unchanged" if not entry.opaque else "replaced"
    elif (kind == DIR) != (lower.kind == DIR):
        action = "replaced"
    elif kind == FILE and lower.kind == FILE:
        mode_only = "mode" if (entry.mode & 0o7777) != (lower.mode & 0o7777) else "unchanged"
        action = mode_only if lower.same else "modified"
    elif kind == SYMLINK and lower.kind == SYMLINK and entry.target == lower.target:
        action = "unchanged"
    else:
        action = "modified"
    if kind == FILE and entry.mode & 0o111 and not (lower.kind == FILE and lower.mode & 0o111):
        flags.append("executable")
    refused = protection(rel := entry.rel, "replaced" if action == "replaced" else kind, protected)
    if kind == SYMLINK and link_outside(rel, entry.target, project):
        flags.append("outside")
        refused = refused or f"a symlink pointing outside the project ({shown(entry.target)})"
    if kind == SPECIAL:
        refused = refused or "a special file (fifo, device or socket)"
    if kind == FILE and entry.size > MAX_APPLY:
        refused = refused or f"larger than {MAX_APPLY} bytes ({entry.size})"
    if lower.changed and action != "unchanged":
        flags.append("conflict")
        refused = refused or "changed in the project since the session started"
    return Change(rel, action, kind, entry, lower, tuple(flags), refused if action != "unchanged" else "")


def summarize(changes: list[Change], digests: dict[str, str] | None = None) -> Summary:
    """Sorted changes; an added file with the same content digest as a deleted file is shown as a rename."""
    digests = digests or {}
    deleted = {digests[c.rel]: c.rel for c in changes if c.action == "deleted" and c.rel in digests}
    out = []
    for c in sorted(changes, key=lambda c: c.rel):
        d = digests.get(c.rel, "") if c.action == "added" else ""
        out.append(replace(c, renamed_from=deleted[d]) if d and d in deleted else c)
    return Summary(tuple(out))


def shown(name: str) -> str:
    """A name for the terminal: printable as itself, everything else escaped (\\n, \\x1b, undecodable bytes)."""
    out = []
    for ch in name:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's surrogateescape: an undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


_FLAG_WORDS = {"executable": "EXECUTABLE", "outside": "OUTSIDE THE PROJECT", "conflict": "CONFLICT"}
_LETTER = {"added": "A", "modified": "M", "deleted": "D", "mode": "T", "replaced": "R"}


def render_summary(summary: Summary) -> str:
    """`rcc review`'s list: one line per change, flags and refusals in words."""
    lines = []
    objects = [c for c in summary.pending() if under(c.rel, ".git/objects") and not c.refused and not c.flags]
    if objects:  # git's own object store: one line, not one per object
        lines.append(f"A .git/objects/  [{sum(c.kind == FILE for c in objects)} new git objects]")
    for c in summary.pending():
        if c in objects:
            continue
        letter = _LETTER.get(c.action, "?")
        what = shown(c.rel)
        if c.renamed_from:
            what = f"{shown(c.renamed_from)} -> {what} (renamed)"
        notes = []
        if c.kind == SYMLINK:
            notes.append(f"symlink -> {shown(c.entry.target)}")
        if c.action == "mode":
            notes.append(f"mode {c.lower.mode & 0o7777:o} -> {c.entry.mode & 0o7777:o}")
        if c.kind == DIR and c.action == "added":
            notes.append("directory")
        notes += [_FLAG_WORDS.get(f, f) for f in c.flags]
        line = f"{letter} {what}"
        if notes:
            line += "  [" + ", ".join(notes) + "]"
        if c.refused:
            line += f"  (not applied: {c.refused})"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")
