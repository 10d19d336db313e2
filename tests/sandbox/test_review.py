"""Review mode (`rcc run --review`): the project through a copy-on-write layer, then `rcc review`, `rcc apply`,
`rcc discard`. Real bubblewrap, as root and as rccuser (the overlay in a user namespace with userxattr).

Attacks are judged by the project on the host after `rcc apply`; each has its control beside it."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from escape_world import World

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.backends("bwrap", "podman", why="review mode runs on bwrap and podman (docker refuses: exit 72)"),
]

APPLY_REFUSED, NO_REVIEW = 65, 67


def _session(world: World, script: str) -> subprocess.CompletedProcess[str]:
    res = world.sh(script, "--review")
    assert "review mode" in res.stderr, res.stderr
    return res


def _rcc(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return world.rcc(*args)


def _reviews(world: World) -> Path:
    return world.home / ".local" / "state" / "rcc" / "reviews"


def test_review_session_leaves_the_project_untouched_until_apply(world: World) -> None:
    before = (world.project / "README.md").read_text()
    res = _session(
        world,
        "echo more >> README.md && echo new > new.txt && mkdir -p sub && echo deep > sub/f && "
        "git add -A && git commit -qm 'agent commit' && git log --oneline | wc -l",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "2"  # the commit landed (in the layer)
    assert (world.project / "README.md").read_text() == before
    assert not (world.project / "new.txt").exists()
    assert world.git("log", "--oneline").stdout.count("\n") == 1  # the host's repository: one commit
    shown = _rcc(world, "review")
    assert shown.returncode == 0, shown.stderr
    assert "M README.md" in shown.stdout and "A new.txt" in shown.stdout and "A sub/f" in shown.stdout
    assert "+more" in shown.stdout and "+new" in shown.stdout  # the diff
    assert "review" in _rcc(world, "sessions").stdout
    applied = _rcc(world, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert (world.project / "new.txt").read_text() == "new\n"
    assert (world.project / "sub" / "f").read_text() == "deep\n"
    log = world.git("log", "--oneline").stdout
    assert "agent commit" in log  # `rcc apply` brought the commit
    assert world.git("status", "--porcelain").stdout == ""
    assert not any(_reviews(world).iterdir())  # applied: removed
    assert _rcc(world, "review").returncode == NO_REVIEW


def test_discard_drops_the_layer_and_touches_nothing(world: World) -> None:
    assert _session(world, "rm README.md && echo x > y").returncode == 0
    assert _rcc(world, "discard").returncode == 0
    assert (world.project / "README.md").exists() and not (world.project / "y").exists()
    assert _rcc(world, "apply").returncode == NO_REVIEW


def test_deletion_applies_and_session_without_changes_keeps_no_review(world: World) -> None:
    res = _session(world, "true")
    assert "changed nothing" in res.stderr
    assert _rcc(world, "review").returncode == NO_REVIEW
    world.write(world.project / "old.txt", "old\n")
    assert _session(world, "rm old.txt").returncode == 0
    assert "D old.txt" in _rcc(world, "review").stdout
    assert _rcc(world, "apply").returncode == 0
    assert not (world.project / "old.txt").exists()


def test_apply_refuses_a_path_protected_since_the_session(world: World) -> None:
    """A never-writable path in the layer (the user protected deploy.sh after the session wrote it; a session
    under an older protect list): refused. Control: the normal file beside it is applied."""
    assert _session(world, "echo evil > deploy.sh && echo fine > notes.txt").returncode == 0
    world.write(world.home / ".config" / "rcc" / "config.toml", '[filesystem]\nprotect = ["deploy.sh"]\n')
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED, res.stdout + res.stderr
    assert "refused: added deploy.sh: never writable" in res.stdout
    assert not (world.project / "deploy.sh").exists()
    assert (world.project / "notes.txt").read_text() == "fine\n"  # control


def test_never_writable_paths_planted_in_the_layer_are_refused_by_apply(world: World) -> None:
    """The sandbox keeps .git/hooks and .envrc read-only; a layer that holds them anyway (planted in upper/, as
    a weaker mount would leave them) is refused path by path. Control: the file the session wrote applies."""
    assert _session(world, "echo fine > notes.txt").returncode == 0
    (rid,) = os.listdir(_reviews(world))
    upper = _reviews(world) / rid / "upper"
    for rel in (".git/hooks/pre-commit", ".envrc"):
        world.write(upper / rel, "touch /tmp/pwned\n", 0o755)
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED, res.stdout + res.stderr
    assert "refused: added .git/hooks/pre-commit: never writable" in res.stdout
    assert "refused: added .envrc: never writable" in res.stdout
    assert not (world.project / ".git" / "hooks" / "pre-commit").exists()
    assert not (world.project / ".envrc").exists()
    assert (world.project / "notes.txt").read_text() == "fine\n"  # control


def test_layer_form_matches_meta_and_a_recreated_directory_replaces_the_old(world: World) -> None:
    """What the overlay wrote is what meta.json says rcc reads: whiteouts as 0/0 character devices, the opaque
    mark under user.* (userxattr: a user's bwrap layer, rootless podman) or trusted.* (root). Read that way, a
    directory removed and made again hides the old contents: `rcc apply` deletes the old file, writes the new."""
    import json

    world.write(world.project / "box" / "old.txt", "old\n")
    world.write(world.project / "gone.txt", "g\n")
    assert _session(world, "rm -r box gone.txt && mkdir box && echo new > box/new.txt").returncode == 0
    (rid,) = os.listdir(_reviews(world))
    meta = json.loads((_reviews(world) / rid / "meta.json").read_text())
    assert meta["userxattr"] is (world.uid != 0)
    upper = _reviews(world) / rid / "upper"
    st = os.lstat(upper / "gone.txt")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    attr = "user.overlay.opaque" if meta["userxattr"] else "trusted.overlay.opaque"
    assert os.getxattr(upper / "box", attr, follow_symlinks=False) == b"y"
    res = _rcc(world, "apply")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (world.project / "box" / "old.txt").exists() and not (world.project / "gone.txt").exists()
    assert (world.project / "box" / "new.txt").read_text() == "new\n"  # control: the new content arrives


def test_whiteout_deleting_a_protected_file_is_refused(world: World) -> None:
    world.write(world.project / "deploy.sh", "#!/bin/sh\n", 0o755)
    world.write(world.project / "tmp.txt", "t\n")
    assert _session(world, "rm deploy.sh tmp.txt").returncode == 0
    world.write(world.home / ".config" / "rcc" / "config.toml", '[filesystem]\nprotect = ["deploy.sh"]\n')
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED
    assert (world.project / "deploy.sh").exists()
    assert not (world.project / "tmp.txt").exists()  # control


def test_hooks_stay_unwritable_inside_the_layer(world: World) -> None:
    res = _session(world, "echo 'touch /tmp/x' > .git/hooks/pre-commit; rm -f .git/config; echo ok > ok.txt")
    assert "Read-only" in res.stderr or "read-only" in res.stderr.lower(), res.stderr
    out = _rcc(world, "review", "--stat").stdout.split("\n", 1)[1]  # below the header (the command)
    assert ".git/hooks" not in out and ".git/config" not in out and "A ok.txt" in out


def test_symlink_outside_is_not_applied_inside_is(world: World) -> None:
    target = str(world.outside / "marker.txt")
    assert _session(world, f"ln -s {target} out && ln -s ../../etc/passwd rel && ln -s README.md in").returncode == 0
    shown = _rcc(world, "review").stdout
    assert "OUTSIDE THE PROJECT" in shown
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED
    assert not os.path.lexists(world.project / "out") and not os.path.lexists(world.project / "rel")
    assert os.readlink(world.project / "in") == "README.md"  # control


def test_hard_link_in_the_layer_is_applied_as_a_copy(world: World) -> None:
    assert _session(world, "ln README.md hl && echo changed >> hl").returncode == 0
    assert _rcc(world, "apply").returncode == 0
    st = os.lstat(world.project / "hl")
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert st.st_ino != os.lstat(world.project / "README.md").st_ino


def test_fifo_and_file_replaced_by_directory(world: World) -> None:
    """bwrap's seccomp filter refuses mkfifo inside; a fifo that reaches a layer anyway (planted in upper/, as a
    backend without that filter would leave it) is refused by apply. Control: a file replaced by a directory."""
    world.write(world.project / "was-file", "f\n")
    res = _session(world, "mkfifo pipe; rm was-file && mkdir was-file && echo in > was-file/x")
    assert res.returncode == 0, res.stderr
    assert "Operation not permitted" in res.stderr  # mkfifo, inside
    (rid,) = os.listdir(_reviews(world))
    fifo = _reviews(world) / rid / "upper" / "pipe"
    os.mkfifo(fifo)
    os.lchown(fifo, world.uid, world.gid)
    out = _rcc(world, "review").stdout
    assert "special file" in out and "R was-file" in out
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED
    assert not os.path.lexists(world.project / "pipe")
    assert (world.project / "was-file" / "x").read_text() == "in\n"  # control: the replacement applies


def test_huge_sparse_file_is_refused_small_applies(world: World) -> None:
    assert _session(world, "truncate -s 300M sparse.img && echo small > small.txt").returncode == 0
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED and "larger than" in res.stdout
    assert not (world.project / "sparse.img").exists()
    assert (world.project / "small.txt").exists()


def test_names_with_newlines_and_invalid_utf8(world: World) -> None:
    script = "printf x > \"$(printf 'a\\nM fake')\" && printf y > \"$(printf 'b\\377')\""
    assert _session(world, script).returncode == 0
    out = _rcc(world, "review", "--stat").stdout
    assert "A a\\nM fake" in out and "A b\\xff" in out
    assert _rcc(world, "apply").returncode == 0
    names = set(os.listdir(os.fsencode(world.project)))
    assert b"a\nM fake" in names and b"b\xff" in names


def test_file_changed_by_the_user_meanwhile_is_a_conflict(world: World) -> None:
    world.write(world.project / "shared.txt", "v1\n")
    assert _session(world, "echo agent > shared.txt && echo other > other.txt").returncode == 0
    world.write(world.project / "shared.txt", "user edit\n")
    res = _rcc(world, "apply")
    assert res.returncode == APPLY_REFUSED and "CONFLICT" in res.stdout
    assert (world.project / "shared.txt").read_text() == "user edit\n"
    assert (world.project / "other.txt").read_text() == "other\n"  # control


def test_upper_dir_is_private_and_hidden_from_other_sandboxes(world: World) -> None:
    assert _session(world, "echo secret-change > leak.txt").returncode == 0
    (rid,) = os.listdir(_reviews(world))
    assert stat.S_IMODE(os.stat(_reviews(world)).st_mode) == 0o700
    assert not str(_reviews(world)).startswith(str(world.project))
    other = world.sh(f"cat {_reviews(world)}/{rid}/upper/leak.txt; ls {_reviews(world)}")
    assert "secret-change" not in other.stdout and other.returncode != 0
    again = world.sh("cat leak.txt", "--review")  # a second review session sees its own layer, not this one
    assert "secret-change" not in again.stdout


def test_upper_dir_is_not_reachable_from_inside_its_own_session(world: World) -> None:
    reviews = _reviews(world)
    res = _session(world, f"echo own-layer > own.txt; cat own.txt; ls {reviews}; cat {reviews}/*/upper/own.txt")
    assert res.stdout.count("own-layer") == 1, res.stdout + res.stderr  # control: the session reads its own file
    assert (reviews / os.listdir(reviews)[0] / "upper" / "own.txt").exists()  # ... and it is in the layer


@pytest.mark.backends("docker", why="docker has no overlay volumes: it fails closed")
def test_container_backend_refuses_review_instead_of_writing_directly(world: World) -> None:
    res = world.sh("echo direct > direct.txt", "--review")
    assert res.returncode == 72, res.stderr
    assert "review mode is not available" in res.stderr and "docker has no overlay" in res.stderr
    assert not (world.project / "direct.txt").exists()
    control = world.sh("echo direct > direct.txt")
    assert control.returncode == 0 and (world.project / "direct.txt").exists()


def test_dry_run_shows_the_layer_and_config_key_turns_review_on(world: World) -> None:
    res = world.rcc("run", "--review", "--dry-run", "--", "true")
    assert res.returncode == 0, res.stderr
    assert '"overlay"' in res.stdout and str(_reviews(world)) in res.stdout
    world.write(world.home / ".config" / "rcc" / "config.toml", 'workspace = "review"\n')
    assert "review mode" in world.sh("echo x > k.txt").stderr
    assert not (world.project / "k.txt").exists()
    world.write(world.home / ".config" / "rcc" / "config.toml", 'workspace = "elsewhere"\n')
    bad = world.sh("true")
    assert bad.returncode == 78 and "workspace" in bad.stderr


def test_overlay_is_not_in_the_hosts_mount_table_during_the_session(world: World) -> None:
    """The layer is mounted only in the session's private mount namespace: the host (a user browsing the
    project, its file manager, its git) sees the untouched project while the session runs."""
    proc = subprocess.Popen(
        world.rcc_argv(["run", "--no-network", "--review", "--", "sh", "-c", "echo busy > busy.txt; sleep 3"]),
        cwd=world.project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        deadline = time.monotonic() + 20
        upper = None
        while time.monotonic() < deadline:
            found = list(_reviews(world).glob("*/upper/busy.txt")) if _reviews(world).exists() else []
            if found:
                upper = found[0]
                break
            time.sleep(0.05)
        assert upper is not None, "the session never wrote its layer"
        with open("/proc/self/mountinfo") as f:
            mounts = f.read()
        assert f" {world.project} " not in mounts  # no mount point at the project in the host's namespace
        assert not (world.project / "busy.txt").exists()  # the host's view of the project during the session
    finally:
        proc.wait(timeout=30)


@pytest.mark.backends(
    "bwrap", "podman-root", why="the state dir's overlayfs is mounted in a mount namespace rootless podman never joins"
)
def test_layer_that_cannot_be_mounted_runs_nothing(world: World, tmp_path: Path) -> None:
    """rcc's state dir on an overlayfs (which overlayfs refuses as an upper dir): the layer cannot be mounted,
    so nothing runs and rcc exits 72 naming the overlay (bwrap: the child reports it while rcc sets up the rest;
    podman: its `init` fails, before the container starts). Control: the same session with the state dir on a
    plain directory runs in review mode."""
    from rcctest import require

    require(os.geteuid() == 0, "the test mounts an overlayfs (as root) for the state dir")
    state = world.base / "ovl-state"
    parts = {n: tmp_path / n for n in ("lower", "upper", "work")}
    for p in (state, *parts.values()):
        p.mkdir()
    os.chown(parts["lower"], world.uid, world.gid)
    os.chmod(tmp_path, 0o755)
    ovl = f"lowerdir={parts['lower']},upperdir={parts['upper']},workdir={parts['work']}"
    argv = world.rcc_argv(["run", "--no-network", "--review", "--", "touch", "ran.txt"], {"XDG_STATE_HOME": str(state)})
    script = f'mount -t overlay overlay -o {ovl} {state} && chown {world.uid}:{world.gid} {state} && exec "$@"'
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        cwd=world.project, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 72, (res.returncode, res.stderr)
    assert "review mode is not available" in res.stderr and "overlay" in res.stderr, res.stderr
    assert not (world.project / "ran.txt").exists()
    control = world.rcc("run", "--no-network", "--review", "--", "touch", "ran.txt")
    assert control.returncode == 0 and "review mode" in control.stderr, control.stderr
    assert not (world.project / "ran.txt").exists()  # in the layer, not the project
