"""`--worktree NAME` becomes a branch and a directory: only plain names pass (rcc.worktree.check_name)."""

from __future__ import annotations

import pytest

from rcc.errors import ExitCode, UsageError
from rcc.worktree import check_name, worktrees_dir


@pytest.mark.parametrize("name", ["fix-login", "a", "feature/x", "v1.2_rc", "A9"])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "..", "../x", "a/../b", "/abs", "a//b", "-rf", ".hidden", "a/.b", "x.lock", "a b", "a\nb", "é", "a:b",
     "a~1", "a^", "a?", "x" * 101, "a/", "@{-1}"],
)  # fmt: skip
def test_names_that_are_paths_options_or_refspecs_are_refused(name: str) -> None:
    with pytest.raises(UsageError) as e:
        check_name(name)
    assert e.value.code == ExitCode.USAGE


def test_worktrees_live_beside_the_main_tree_never_inside_it() -> None:
    assert worktrees_dir("/work/proj") == "/work/proj-worktrees"
    assert worktrees_dir("/work/proj/") == "/work/proj-worktrees"
