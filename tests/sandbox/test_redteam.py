"""Red-team pass: attacks the rest of the escape suite did not try, each judged on the host after the run, each
with a control beside it showing the legitimate version still works."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from escape_world import World
from rcctest import require

pytestmark = [pytest.mark.sandbox]  # every backend (attacks.BACKENDS)


def _flag(world: World) -> Path:
    return world.outside / f"pwned-{uuid.uuid4().hex[:8]}"


def _host_git_on_a_terminal(world: World, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git on the host as this world's user, with stdout on a terminal (as when the user reviews the agent's
    work with `git log`): git then starts its pager, which is the command named by core.pager."""
    require(shutil.which("script") is not None, "script (util-linux) is needed to give git a terminal")
    cmd = " ".join(["git", *args])
    return subprocess.run(
        world.as_user(["script", "-qec", cmd, "/dev/null"], world.host_env()),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        input="",
        check=False,
    )


# ----------------------------------------------------------------------- the project root as a bare repository
# git looks for a repository in each directory from the cwd upwards: first DIR/.git, then DIR itself as a *bare*
# repository (HEAD, objects/, refs/ and its config at DIR/config; safe.bareRepository defaults to "all"). If the
# agent makes `.git` invalid (`rm .git/HEAD`: HEAD is rewritten by every checkout, so it cannot be read-only) and
# fills the project root with HEAD, objects, refs and a `config`, the host's next `git log` in the project reads
# that config: core.pager (or any other command-running key) runs as the host user. `.git/config` being
# read-only does not matter; git never gets as far as `.git`.

_BARE_ROOT = (
    "cp -r .git/objects .git/refs . 2>/dev/null; mkdir -p objects refs/heads; "
    "echo 'ref: refs/heads/main' > HEAD 2>/dev/null && echo HEAD-PLANTED; "
    "printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = true\\n\\tpager = \"touch {flag}; cat\"\\n' "
    "> config; rm -f .git/HEAD; true"
)


def test_project_root_made_a_bare_repo_runs_nothing_on_host_git_log(world: World) -> None:
    flag = _flag(world)
    res = world.sh(_BARE_ROOT.format(flag=flag))
    assert res.returncode == 0, res.stderr
    _host_git_on_a_terminal(world, world.project, "log", "--oneline")
    _host_git_on_a_terminal(world, world.project, "branch")
    assert not flag.exists(), "the host's git log ran the pager named by a config the sandbox planted"
    assert "HEAD-PLANTED" not in res.stdout, "the sandbox could create HEAD in the project root"


def test_non_repo_project_root_made_a_bare_repo_runs_nothing(world: World) -> None:
    """A project that is not a repository (its `.git` is an empty read-only placeholder): the same attack."""
    proj = world.base / "plain"
    proj.mkdir()
    world.write(proj / "file.txt", "x\n")
    src = world.base / "donor"  # a real repository's objects for the fake one, made on the host
    world.git("clone", "-q", "--bare", str(world.project), str(src))
    world.own_tree(src)
    flag = _flag(world)
    script = (
        f"cp -r {src}/objects {src}/refs {src}/packed-refs . 2>/dev/null; "
        "echo 'ref: refs/heads/main' > HEAD 2>/dev/null && echo HEAD-PLANTED; "
        f"printf '[core]\\n\\tbare = true\\n\\tpager = \"touch {flag}; cat\"\\n' > config; true"
    )
    res = world.rcc("run", "--no-network", "--ro", str(src), "--project", str(proj), "--", "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    _host_git_on_a_terminal(world, proj, "log", "--oneline")
    assert not flag.exists(), "the host's git log ran the pager named by a config the sandbox planted"
    assert "HEAD-PLANTED" not in res.stdout, "the sandbox could create HEAD in the project root"
    assert not (proj / "HEAD").exists(), "the HEAD placeholder must be removed after the run"


def test_control_root_config_objects_refs_dirs_and_git_work(world: World) -> None:
    """Control: directories named config/, objects/, refs/ at the project root (a Rails app has config/) stay
    writable, git inside works, the host sees the commit, and no HEAD placeholder is committed or left."""
    res = world.sh(
        "set -e; mkdir -p config objects refs; echo a > config/app.yml; echo b > objects/o.txt; "
        "echo c > refs/r.txt; git add -A; git commit -q -m 'rails-like'; git checkout -q -b side; "
        "git checkout -q main; git log --oneline | wc -l"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["2"], res.stdout
    assert world.git("log", "--format=%s").stdout.split("\n")[0] == "rails-like"
    files = world.git("ls-files").stdout.split()
    assert "HEAD" not in files and "config/app.yml" in files, files
    assert not (world.project / "HEAD").exists()
    out = _host_git_on_a_terminal(world, world.project, "log", "--oneline")
    assert "rails-like" in out.stdout, out.stdout + out.stderr


# ----------------------------------------------------------------------------------- a Mercurial project's config
# `.hg/hgrc` is to hg what `.git/config` is to git: its [hooks] run on the host's next `hg status` (and its
# [extensions] import Python). `.hg/requires` + `.hg/sharedpath` redirect hg to another repository's config.

HG_HOOK = "[hooks]\\npre-status = touch {flag}\\npost-status = touch {flag}\\n"


def _hg_project(world: World) -> Path:
    require(shutil.which("hg") is not None, "Mercurial (hg) is not installed")
    proj = world.base / "hgproj"
    proj.mkdir()
    world.write(proj / "a.txt", "a\n")
    world.own_tree(proj)
    for args in (("init",), ("add", "a.txt"), ("commit", "-q", "-u", "Test <t@example.invalid>", "-m", "initial")):
        _host_hg(world, proj, *args, check=True)
    return proj


def _host_hg(world: World, proj: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        world.as_user(["hg", *args], world.host_env()),
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"host hg {args} failed: {res.stderr}")
    return res


def test_plant_mercurial_hook_runs_nothing_on_host_hg_status(world: World) -> None:
    proj = _hg_project(world)
    flag = _flag(world)
    hook = HG_HOOK.format(flag=flag)
    script = (
        "mv .hg .hg-old 2>/dev/null && echo HG-MOVED && mv .hg-old .hg; "  # pinned: renaming would drop the mounts
        f"printf '{hook}' >> .hg/hgrc 2>/dev/null && echo HGRC-WRITTEN; "
        f"printf '{hook}' > .hg/hgrc-not-shared 2>/dev/null && echo HGRC-NOT-SHARED-WRITTEN; "
        # the redirect: a repository of the agent's making whose hgrc hg reads once .hg says it is a share
        f"cp -r .hg evil-repo 2>/dev/null; printf '{hook}' > evil-repo/hgrc; "
        f'echo "$PWD/evil-repo" > .hg/sharedpath 2>/dev/null && echo SHAREDPATH-WRITTEN; '
        "printf 'shared\\nshare-safe\\n' >> .hg/requires 2>/dev/null && echo REQUIRES-WRITTEN; true"
    )
    res = world.rcc("run", "--no-network", "--project", str(proj), "--", "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    _host_hg(world, proj, "status")
    _host_hg(world, proj, "log", "-l", "1")
    assert not flag.exists(), "the host's hg status ran a hook the sandbox planted"
    for word in ("HGRC-WRITTEN", "HGRC-NOT-SHARED-WRITTEN", "HG-MOVED", "SHAREDPATH-WRITTEN", "REQUIRES-WRITTEN"):
        assert word not in res.stdout, res.stdout


def test_control_mercurial_work_inside_lands_on_host(world: World) -> None:
    """Control: hg add/commit/status inside work, the host sees the commit, no placeholder is left."""
    proj = _hg_project(world)
    hg = "hg add -q b.txt; hg commit -q -u 'Agent <a@example.invalid>' -m from-sandbox; hg status -mard; "
    if world.backend.container:
        hg = ""  # rcc's base image has no Mercurial: the work lands in the files, the host's hg commits it below
    res = world.rcc(
        "run", "--no-network", "--project", str(proj), "--", "sh", "-c", f"set -e; echo b > b.txt; {hg}echo ok"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ok"], res.stdout
    if world.backend.container:
        _host_hg(world, proj, "add", "-q", "b.txt", check=True)
        _host_hg(world, proj, "commit", "-q", "-u", "Agent <a@example.invalid>", "-m", "from-sandbox", check=True)
    assert _host_hg(world, proj, "log", "-l", "1", "--template", "{desc}", check=True).stdout == "from-sandbox"
    assert not (proj / ".hg/hgrc").exists() and not (proj / ".hg/sharedpath").exists()
    assert not (proj / ".hg/hgrc-not-shared").exists()
