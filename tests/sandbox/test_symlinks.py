"""Symlinks planted before the run (by a hostile repository) or made inside it never lead a read or a write to
anything hidden or read-only: the kernel resolves them inside the sandbox's own mount tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from escape_world import World

pytestmark = [pytest.mark.sandbox]  # every backend (attacks.BACKENDS)


def _plant(world: World, name: str, target: str) -> None:
    os.symlink(target, world.project / name)
    os.lchown(world.project / name, world.uid, world.gid)


def test_symlink_to_secret_planted_before_run_reads_nothing(world: World) -> None:
    _plant(world, "key", str(world.home / ".ssh/id_rsa"))
    _plant(world, "aws", str(world.home / ".aws"))
    _plant(world, "rel-key", "../home/.ssh/id_rsa")
    _plant(world, "homedir", str(world.home))
    _plant(world, "outside", str(world.outside))
    _plant(world, "shadow", "/etc/shadow")
    _plant(world, "roothome", "/root")
    res = world.sh(
        "cat key aws/credentials rel-key homedir/.netrc outside/marker.txt shadow 2>/dev/null; "
        "ls -A homedir/ roothome/ 2>/dev/null; echo END"
    )
    assert res.stdout.split()[-1] == "END", res.stderr
    for leak in ("SECRET", "OUTSIDE", "PRIVATE", "id_rsa", ".ssh", ".aws", ".netrc"):
        assert leak not in res.stdout, res.stdout


def test_symlink_made_inside_run_reads_nothing(world: World) -> None:
    res = world.sh(
        f"ln -s {world.home}/.ssh/id_rsa k; ln -s {world.home}/.config/gh gh; ln -s /proc/1/root r; "
        f"ln -s {world.outside}/marker.txt m; cat k gh/hosts.yml m r{world.home}/.netrc 2>/dev/null; "
        f"cat /proc/self/root{world.home}/.ssh/id_rsa /proc/1/root{world.outside}/marker.txt 2>/dev/null; echo END"
    )
    assert res.stdout.split()[-1] == "END", res.stderr
    assert "SECRET" not in res.stdout and "OUTSIDE" not in res.stdout, res.stdout


def test_symlink_write_to_read_only_target_fails(world: World) -> None:
    _plant(world, "tool", str(world.home / ".local/bin/hello-tool"))
    _plant(world, "passwd", "/etc/passwd")
    _plant(world, "outside-link", str(world.outside / "marker.txt"))
    _plant(world, "newfile-outside", str(world.outside / "created-through-link"))
    world.sh(
        "echo PWNED > tool; echo PWNED >> passwd; echo PWNED > outside-link; echo PWNED > newfile-outside; "
        f"ln -s {world.home}/.bashrc rc && echo PWNED > rc; true"
    )
    assert "PWNED" not in (world.home / ".local/bin/hello-tool").read_text()
    assert "PWNED" not in Path("/etc/passwd").read_text()
    assert (world.outside / "marker.txt").read_text() == "OUTSIDE-marker\n"
    assert not (world.outside / "created-through-link").exists()
    assert not (world.home / ".bashrc").exists()


def test_symlink_into_protected_path_write_fails(world: World) -> None:
    world.sh(
        "ln -s .git/hooks/pre-commit hook-link; echo PWNED > hook-link; ln -s .git/config cfg; echo PWNED >> cfg; "
        "ln -s .git/hooks hooks-dir; echo PWNED > hooks-dir/post-checkout; ln -s .mcp.json mcp; echo PWNED > mcp; true"
    )
    assert not (world.project / ".git/hooks/pre-commit").exists()
    assert not (world.project / ".git/hooks/post-checkout").exists()
    assert "PWNED" not in (world.project / ".git/config").read_text()
    assert not (world.project / ".mcp.json").exists()


def test_symlink_inside_project_works(world: World) -> None:
    """Control: ordinary relative symlinks within the project keep working, for reads and writes."""
    res = world.sh("mkdir d && ln -s d/f link && echo via-link > link && cat d/f && ln -s README.md r && cat r")
    assert res.stdout == "via-link\nhello\n", res.stderr
    assert (world.project / "d/f").read_text() == "via-link\n"


def test_toolchain_symlink_into_secret_stays_hidden(world: World) -> None:
    """A toolchain entry that is itself a symlink into a secret directory is not mounted at all."""
    (world.home / ".local/bin").rename(world.home / ".local/bin-real")
    os.symlink(world.home / ".ssh", world.home / ".local/bin")
    os.lchown(world.home / ".local/bin", world.uid, world.gid)
    res = world.sh(f"ls -A {world.home}/.local/bin/ 2>/dev/null; cat {world.home}/.local/bin/id_rsa 2>/dev/null; true")
    assert "id_rsa" not in res.stdout and "SECRET" not in res.stdout, res.stdout


def test_ro_flag_symlink_to_home_is_refused_or_hidden(world: World) -> None:
    """--ro with a link that resolves to the whole home must not expose it (over-broad after resolution)."""
    link = world.base / "innocent"
    os.symlink(world.home, link)
    res = world.rcc("run", "--no-network", "--ro", str(link), "--", "sh", "-c", f"cat {link}/.ssh/id_rsa; ls -A {link}")
    assert "SECRET" not in res.stdout, res.stdout
    assert "id_rsa" not in res.stdout and ".aws" not in res.stdout and "Documents" not in res.stdout, res.stdout


def test_ro_path_through_symlinked_parent_into_secret_reads_nothing(world: World) -> None:
    """`--ro /x/link/.ssh` with link -> home: the last component is a plain directory, the secret is ~/.ssh."""
    link = world.base / "innocent"
    os.symlink(world.home, link)
    res = world.rcc(
        "run",
        "--no-network",
        "--ro",
        f"{link}/.ssh",
        "--ro",
        f"{link}/.config",
        "--",
        "sh",
        "-c",
        f"cat {link}/.ssh/id_rsa {link}/.config/gh/hosts.yml; cat {link}/.config/other-app/settings.ini",
    )
    assert "SECRET" not in res.stdout, res.stdout
    assert "PRIVATE-settings" in res.stdout, res.stderr  # control: the allowed directory is there


def test_secrets_hidden_when_home_is_a_symlink(world: World) -> None:
    """HOME=/x/home-link (a symlink to the real home): hidden paths must match the resolved binds."""
    link = world.base / "home-link"
    os.symlink(world.home, link)
    os.lchown(link, world.uid, world.gid)
    res = world.rcc(
        "run",
        "--no-network",
        "--ro",
        f"{link}/.config",
        "--",
        "sh",
        "-c",
        f"cat {link}/.config/gh/hosts.yml {world.home}/.config/gh/hosts.yml {link}/.config/other-app/settings.ini",
        env={"HOME": str(link)},
    )
    assert "SECRET" not in res.stdout, res.stdout
    assert "PRIVATE-settings" in res.stdout, res.stderr  # control: the allowed directory is there
