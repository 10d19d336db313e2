"""rcc.workspace.changes: what a review-mode session changed and what `rcc apply` may write (pure)."""

from __future__ import annotations

from rcc.workspace.changes import (
    DIR,
    FILE,
    MAX_APPLY,
    MISSING,
    SPECIAL,
    SYMLINK,
    WHITEOUT,
    Entry,
    Lower,
    classify,
    link_outside,
    render_summary,
    shown,
    summarize,
)

PROTECTED = (".git/hooks", ".git/config", ".claude/settings.json", "HEAD")
PROJECT = "/p"


def _c(entry: Entry, lower: Lower | None = None):  # type: ignore[no-untyped-def]
    return classify(entry, lower or Lower(), PROTECTED, PROJECT)


def test_added_file_applies_and_new_executable_is_flagged() -> None:
    c = _c(Entry("src/a.py", FILE, 0o644, 3))
    assert (c.action, c.refused, c.flags) == ("added", "", ())
    c = _c(Entry("run.sh", FILE, 0o755, 3))
    assert c.flags == ("executable",) and c.applicable


def test_mode_change_only_and_unchanged_copy_up() -> None:
    lower = Lower(FILE, 0o644, 3, same=True)
    assert _c(Entry("a", FILE, 0o755, 3), lower).action == "mode"
    assert _c(Entry("a", FILE, 0o644, 3), lower).action == "unchanged"
    assert _c(Entry("a", FILE, 0o644, 4), Lower(FILE, 0o644, 3)).action == "modified"


def test_never_writable_path_written_in_the_layer_is_refused() -> None:
    c = _c(Entry(".git/hooks/pre-commit", FILE, 0o755, 10))
    assert c.refused.startswith("never writable") and not c.applicable
    # control: the rest of .git (a commit's objects and refs) applies
    assert _c(Entry(".git/refs/heads/main", FILE, 0o644, 41), Lower(FILE, 0o644, 41)).applicable


def test_whiteout_that_would_delete_a_protected_file_is_refused() -> None:
    assert _c(Entry(".claude", WHITEOUT), Lower(DIR)).refused.startswith("it would remove the never-writable")
    assert _c(Entry(".git/config", WHITEOUT), Lower(FILE)).refused
    assert _c(Entry(".claude", FILE, 0o644, 1), Lower(DIR)).refused  # replaced by a file
    assert _c(Entry("notes.txt", WHITEOUT), Lower(FILE)).applicable  # control


def test_symlink_pointing_outside_is_refused_inside_is_not() -> None:
    for target in ("/etc/passwd", "../outside", "a/../../x", "/pother"):
        c = _c(Entry("lnk", SYMLINK, target=target))
        assert "outside" in c.flags and c.refused, target
    for target in ("README.md", "sub/../README.md", "/p/README.md", "../a"):
        rel = "sub/lnk" if target == "../a" else "lnk"
        assert classify(Entry(rel, SYMLINK, target=target), Lower(), PROTECTED, PROJECT).applicable, target
    assert link_outside("a/b/l", "../../..", PROJECT)


def test_special_files_and_oversized_files_are_refused() -> None:
    assert "special" in _c(Entry("fifo", SPECIAL, 0o644)).refused
    big = _c(Entry("sparse.img", FILE, 0o644, MAX_APPLY + 1))
    assert "larger than" in big.refused
    assert _c(Entry("ok.bin", FILE, 0o644, MAX_APPLY)).applicable


def test_conflict_when_the_project_changed_meanwhile() -> None:
    c = _c(Entry("a.txt", FILE, 0o644, 5), Lower(FILE, 0o644, 3, changed=True))
    assert "conflict" in c.flags and c.refused
    assert not _c(Entry("a.txt", FILE, 0o644, 3), Lower(FILE, 0o644, 3, same=True, changed=True)).refused


def test_file_replaced_by_directory_and_directory_by_file() -> None:
    assert _c(Entry("x", DIR, 0o755), Lower(FILE)).action == "replaced"
    assert _c(Entry("x", FILE, 0o644, 1), Lower(DIR)).action == "replaced"
    assert _c(Entry("x", DIR, 0o755), Lower(DIR)).action == "unchanged"
    assert _c(Entry("x", DIR, 0o755, opaque=True), Lower(DIR)).action == "replaced"
    assert _c(Entry("gone", WHITEOUT), Lower(MISSING)).action == "unchanged"


def test_names_with_newlines_and_invalid_utf8_are_escaped_when_shown() -> None:
    bad = b"evil\nM  fake\xff\x1b[2J".decode("utf-8", "surrogateescape")
    s = shown(bad)
    assert "\n" not in s and "\x1b" not in s and s == "evil\\nM  fake\\xff\\x1b[2J"
    text = render_summary(summarize([_c(Entry(bad, FILE, 0o644, 1))]))
    assert text.count("\n") == 1 and text.startswith("A evil\\n")
    assert shown("plain/name.txt") == "plain/name.txt"  # control


def test_rename_detected_by_content_digest() -> None:
    changes = [_c(Entry("old.txt", WHITEOUT), Lower(FILE, 0o644, 3)), _c(Entry("new.txt", FILE, 0o644, 3))]
    s = summarize(changes, {"old.txt": "d1", "new.txt": "d1"})
    assert "old.txt -> new.txt (renamed)" in render_summary(s)
