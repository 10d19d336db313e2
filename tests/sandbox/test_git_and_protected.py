"""Paths inside the project that make the host run code later: git hooks and config, editor/agent settings,
shell rc files. Never writable, whether or not they exist at start; the attack is judged by what the *host*
does afterwards (does the user's next `git commit` run the agent's code?)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from escape_world import World

pytestmark = [pytest.mark.sandbox]  # every backend (attacks.BACKENDS) unless a test names its own

HOOK = "#!/bin/sh\necho PWNED-BY-HOOK >&2\ntouch {flag}\n"


def _flag(world: World) -> Path:
    return world.outside / f"pwned-{uuid.uuid4().hex[:8]}"


def _host_commit_runs_nothing(world: World, flag: Path) -> None:
    """The user's next ordinary git commands on the host must not run anything the agent planted."""
    (world.project / "host-change.txt").write_text("by the host user\n")
    world.own(world.project / "host-change.txt")
    world.git("add", "host-change.txt")
    res = world.git("commit", "-q", "-m", "host commit", check=False)
    st = world.git("status", "--short", check=False)
    assert "PWNED" not in res.stderr + res.stdout + st.stderr + st.stdout
    assert not flag.exists(), "the host ran code planted by the sandbox"


def _hooks(world: World) -> set[str]:
    return {p.name for p in (world.project / ".git/hooks").iterdir() if not p.name.endswith(".sample")}


# ------------------------------------------------------------------------------------------------ controls


def test_git_add_commit_branch_status_work(world: World) -> None:
    res = world.sh(
        "set -e; echo change >> README.md; echo new > new.txt; git add -A; git commit -q -m 'from sandbox'; "
        "git branch feature; git checkout -q feature; echo f > f.txt; git add f.txt; git commit -q -m f; "
        "git checkout -q main; git status --short; git log --oneline | wc -l; git stash list; "
        "git tag v1; git rev-parse --abbrev-ref HEAD"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["2", "main"], res.stdout
    log = world.git("log", "--format=%s", "--all").stdout.split("\n")
    assert "from sandbox" in log and "f" in log
    assert world.git("rev-parse", "v1").returncode == 0
    assert world.git("status", "--short").stdout == ""


def test_regular_dotfiles_in_project_stay_writable(world: World) -> None:
    """Control for the protected list: only the dangerous names are pinned, not every dotfile."""
    world.write(world.project / ".claude/notes.md", "notes\n")
    res = world.sh(
        "echo x > .gitignore && echo y > .editorconfig && echo z >> .claude/notes.md && mkdir -p docs/.vscode-like "
        "&& echo ok"
    )
    assert res.stdout.strip() == "ok", res.stderr
    assert (world.project / ".claude/notes.md").read_text() == "notes\nz\n"


# ------------------------------------------------------------------------------------------------ attacks


def test_plant_git_hook_fails(world: World) -> None:
    flag = _flag(world)
    hook = HOOK.format(flag=flag)
    res = world.sh(
        f"printf '{hook}' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; "
        f"printf '{hook}' > .git/hooks/post-checkout; mkdir .git/hooks/sub; "
        "ln -s /bin/true .git/hooks/pre-push; true"
    )
    assert res.returncode == 0, res.stderr
    assert _hooks(world) == set()
    _host_commit_runs_nothing(world, flag)


def test_plant_git_hook_via_rename_git_fails(world: World) -> None:
    flag = _flag(world)
    res = world.sh(
        "mv .git .git-old 2>/dev/null; cp -r .git .git-copy && rm -rf .git-copy/hooks; "
        "mv .git/hooks .git/hooks-old 2>/dev/null; mkdir -p .git/hooks2; "
        f"mv .git-copy .git 2>/dev/null; mkdir -p .git/hooks && printf '{HOOK.format(flag=flag)}' > "
        ".git/hooks/pre-commit && chmod +x .git/hooks/pre-commit; echo done"
    )
    assert res.stdout.strip().endswith("done"), res.stderr
    assert (world.project / ".git/HEAD").is_file()
    assert _hooks(world) == set()
    _host_commit_runs_nothing(world, flag)


def test_rename_project_or_parent_to_plant_fresh_git_fails(world: World) -> None:
    flag = _flag(world)
    res = world.sh(
        f'p="$PWD"; cd ..; mv "$p" "$p-old" 2>/dev/null && echo MOVED; '
        f'mkdir -p "$p-new/.git/hooks" 2>/dev/null; mv -T "$p-new" "$p" 2>/dev/null && echo REPLACED; '
        f'cd "$p"; rm -rf .git 2>/dev/null; mkdir -p .git/hooks; '
        f"printf '{HOOK.format(flag=flag)}' > .git/hooks/pre-commit 2>/dev/null && echo PLANTED; true"
    )
    assert "MOVED" not in res.stdout and "REPLACED" not in res.stdout and "PLANTED" not in res.stdout, res.stdout
    assert _hooks(world) == set()


def test_delete_git_dir_does_not_plant_hooks(world: World) -> None:
    """`rm -rf .git` may destroy history (so can `rm -rf *`), but it can never leave hooks for the host."""
    flag = _flag(world)
    world.sh(
        f"rm -rf .git 2>/dev/null; git init -q 2>/dev/null; mkdir -p .git/hooks; "
        f"printf '{HOOK.format(flag=flag)}' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; true"
    )
    assert not (world.project / ".git/hooks/pre-commit").exists()
    assert (world.project / ".git").is_dir() and not (world.project / ".git").is_symlink()


def test_git_config_cannot_be_changed(world: World) -> None:
    """core.hooksPath / core.fsmonitor / an alias in .git/config would run code in the host's next git call."""
    flag = _flag(world)
    before = (world.project / ".git/config").read_text()
    res = world.sh(
        f"git config core.fsmonitor 'touch {flag}'; git config core.hooksPath /tmp; "
        f"echo '[core]' >> .git/config; git config --file .git/config.worktree core.fsmonitor 'touch {flag}'; "
        "git config extensions.worktreeConfig true; true"
    )
    assert res.returncode == 0, res.stderr
    assert (world.project / ".git/config").read_text() == before
    _host_commit_runs_nothing(world, flag)


def test_git_commondir_redirect_cannot_plant_config(world: World) -> None:
    """`.git/commondir` makes git read config (core.fsmonitor!) and hooks from another directory, which the
    agent could fill inside the writable project."""
    flag = _flag(world)
    world.sh(
        "cp -r .git evil && rm -f evil/commondir; "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = \"touch {flag}\"\\n' > evil/config; "
        "echo ../evil > .git/commondir; "
        "mkdir -p .git/worktrees/x && echo ../../../evil > .git/worktrees/x/commondir; true"
    )
    commondir = world.project / ".git/commondir"
    assert not commondir.exists() or commondir.read_text().strip() in ("", ".")
    _host_commit_runs_nothing(world, flag)


def test_git_init_cannot_plant_hooks(world: World) -> None:
    """A project that is not a repository yet: `git init` inside would create .git/hooks for the host."""
    proj = world.base / "plain"
    proj.mkdir()
    world.write(proj / "file.txt", "x\n")
    flag = _flag(world)
    res = world.rcc(
        "run",
        "--no-network",
        "--project",
        str(proj),
        "--",
        "sh",
        "-c",
        f"git init -q 2>/dev/null; mkdir -p .git/hooks 2>/dev/null; "
        f"printf '{HOOK.format(flag=flag)}' > .git/hooks/pre-commit 2>/dev/null; ls -A .git; echo done",
    )
    assert "done" in res.stdout, res.stderr
    assert not (proj / ".git").exists(), "the placeholder .git must be removed after the run (it was empty)"
    assert {p.name for p in proj.iterdir()} == {"file.txt"}


# ------------------------------------------------------------------------------------------ protected paths

PROTECTED_FILES = [
    ".mcp.json",
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".claude/commands/evil.md",
    ".claude/agents/evil.md",
    ".vscode/tasks.json",
    ".vscode/settings.json",
    ".idea/workspace.xml",
    ".envrc",
    ".gitmodules",
    ".bashrc",
    ".zshrc",
    ".profile",
    ".rcc.toml",
    ".gemini/settings.json",
    ".aider.conf.yml",
    ".claude/skills/evil.md",
    ".gemini/extensions/evil.md",
    ".gemini/commands/evil.md",
    ".gemini/.env",
    ".codex/config.toml",
    ".aider.model.settings.yml",
    ".env",
    ".cursor/mcp.json",
    ".devcontainer/devcontainer.json",
    ".devcontainer.json",
    ".zed/settings.json",
    ".helix/languages.toml",
    ".nvim.lua",
    ".nvimrc",
    ".lazy.lua",
    "mise.toml",
    ".mise.toml",
    "mise.local.toml",
    ".mise.local.toml",
    ".mise/config.toml",
    ".tool-versions",
    ".yarnrc.yml",
    ".yarnrc",
    "lefthook-local.yml",
    ".lefthook-local.yml",
]


def test_protected_paths_cannot_be_created(world: World) -> None:
    script = "; ".join(f"mkdir -p $(dirname {p}) 2>/dev/null; echo PWNED > {p} 2>/dev/null" for p in PROTECTED_FILES)
    res = world.sh(script + "; ls -A")
    assert res.returncode == 0, res.stderr
    left = sorted(str(p.relative_to(world.project)) for p in world.project.rglob("*") if ".git" not in p.parts)
    assert left == ["README.md"], f"placeholders or planted files left behind: {left}"


def test_protected_paths_cannot_be_created_when_parent_exists(world: World) -> None:
    for d in (".claude", ".vscode", ".gemini"):
        (world.project / d).mkdir()
        world.own(world.project / d)
    script = "; ".join(f"echo PWNED > {p} 2>/dev/null" for p in PROTECTED_FILES)
    world.sh(script + "; true")
    for p in PROTECTED_FILES:
        f = world.project / p
        assert not f.exists() or "PWNED" not in f.read_text(), p
    assert sorted(os.listdir(world.project / ".claude")) == []
    assert sorted(os.listdir(world.project / ".vscode")) == []
    assert sorted(os.listdir(world.project / ".gemini")) == []


def test_control_other_files_in_an_existing_gemini_dir_are_writable(world: World) -> None:
    """Only Gemini CLI's settings.json (its mcpServers run commands) is protected: the rest of .gemini is the
    project's, and aider's other files (.aider.chat.history.md, ...) are writable too."""
    (world.project / ".gemini").mkdir()
    world.own(world.project / ".gemini")
    res = world.sh("echo notes > .gemini/notes.md && echo hist > .aider.chat.history.md && echo ok")
    assert "ok" in res.stdout, res.stderr
    assert (world.project / ".gemini" / "notes.md").read_text() == "notes\n"
    assert (world.project / ".aider.chat.history.md").read_text() == "hist\n"


def test_existing_protected_files_cannot_be_modified(world: World) -> None:
    originals = {p: f"original {p}\n" for p in PROTECTED_FILES if not p.endswith("/evil.md")}
    for p, content in originals.items():
        world.write(world.project / p, content)
    script = "; ".join(
        f"echo PWNED > {p} 2>/dev/null; rm -f {p} 2>/dev/null; mv {p} {p}.x 2>/dev/null" for p in originals
    )
    script += "; rm -rf .claude .vscode .idea 2>/dev/null; echo PWNED > .claude/commands/new.md 2>/dev/null; true"
    world.sh(script)
    for p, content in originals.items():
        assert (world.project / p).read_text() == content, p
    assert not (world.project / ".claude/commands/new.md").exists()


def test_replace_protected_symlink_with_file_is_stopped(world: World) -> None:
    """A protected path that is a symlink: binding its target read-only is not enough, the agent could unlink
    the link itself and create the file. rcc must refuse to run or keep the host unaffected."""
    world.write(world.project / "envrc.real", "export SAFE=1\n")
    os.symlink("envrc.real", world.project / ".envrc")
    world.own(world.project / ".envrc")
    res = world.sh("rm -f .envrc && echo 'touch /tmp/pwned' > .envrc && echo REPLACED; true")
    link = world.project / ".envrc"
    assert link.is_symlink() and os.readlink(link) == "envrc.real", (res.returncode, res.stdout, res.stderr)
    assert (world.project / "envrc.real").read_text() == "export SAFE=1\n"
    if res.returncode != 0:
        assert res.returncode == 66 and ".envrc" in res.stderr


def test_replace_symlinked_git_dir_is_stopped(world: World) -> None:
    """`.git` as a symlink to the real git dir: the agent unlinks it and plants a fresh `.git/hooks`."""
    real = world.base / "gitdirs" / "proj.git"
    real.parent.mkdir()
    os.rename(world.project / ".git", real)
    os.symlink(real, world.project / ".git")
    world.own(world.project / ".git")
    world.own_tree(real.parent)
    flag = _flag(world)
    res = world.sh(
        f"rm -f .git; mkdir -p .git/hooks && printf '{HOOK.format(flag=flag)}' > .git/hooks/pre-commit "
        "&& chmod +x .git/hooks/pre-commit && echo PLANTED; true"
    )
    git = world.project / ".git"
    assert git.is_symlink() and os.readlink(git) == str(real), (res.returncode, res.stdout, res.stderr)
    if res.returncode != 0:
        assert res.returncode == 66 and ".git" in res.stderr


def test_worktree_pointer_file_cannot_be_redirected(world: World) -> None:
    """A linked worktree's `.git` is a pointer file; redirecting it to an agent-made git dir plants hooks."""
    wt = world.base / "wt"
    world.git("worktree", "add", "-q", str(wt))
    flag = _flag(world)
    res = world.rcc(
        "run",
        "--no-network",
        "--project",
        str(wt),
        "--",
        "sh",
        "-c",
        "mkdir -p evilgit/hooks && cp -r ../project/.git/* evilgit/ 2>/dev/null; "
        f"printf '{HOOK.format(flag=flag)}' > evilgit/hooks/pre-commit; "
        "echo 'gitdir: evilgit' > .git; rm -f .git; echo 'gitdir: evilgit' > .git; cat .git; true",
    )
    assert (wt / ".git").read_text().startswith(f"gitdir: {world.project}/.git/worktrees/"), (res.stdout, res.stderr)


def test_submodule_pointer_file_cannot_be_redirected(world: World) -> None:
    """A submodule's `.git` pointer file: host `git status` recurses into submodules and reads their config."""
    sub_src = world.base / "subsrc"
    sub_src.mkdir()
    world.own(sub_src)
    env_user = ["-c", "protocol.file.allow=always"]
    res = world.git("-C", str(sub_src), "init", "-q", "-b", "main")
    world.git(
        "-C",
        str(sub_src),
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@e.invalid",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "s",
    )
    world.git(*env_user, "submodule", "add", "-q", str(sub_src), "sub")
    world.git("commit", "-q", "-m", "add submodule")
    pointer = (world.project / "sub/.git").read_text()
    flag = _flag(world)
    res = world.sh(
        "cp -r .git/modules/sub evilsub 2>/dev/null || cp -r .git evilsub; "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = \"touch {flag}\"\\n' > evilsub/config; "
        "echo 'gitdir: ../evilsub' > sub/.git; rm -f sub/.git && echo 'gitdir: ../evilsub' > sub/.git; true"
    )
    assert (world.project / "sub/.git").read_text() == pointer, (res.stdout, res.stderr)
    _host_commit_runs_nothing(world, flag)


def test_plant_claude_settings_via_rename_parent_fails(world: World) -> None:
    """Renaming `.claude` carries the read-only mounts inside it away; a fresh `.claude/settings.json` (with
    hooks the host's Claude Code would run) must still be impossible."""
    world.write(world.project / ".claude/notes.md", "notes\n")
    world.write(world.project / ".claude/settings.json", '{"safe": true}\n')
    res = world.sh(
        "mv .claude .claude-old 2>/dev/null && echo MOVED; mkdir -p .claude 2>/dev/null; "
        'echo \'{"hooks": "evil"}\' > .claude/settings.json 2>/dev/null && echo PLANTED; '
        "mv .claude-old .claude 2>/dev/null; echo more >> .claude/notes.md; true"
    )
    assert "PLANTED" not in res.stdout, res.stdout
    assert (world.project / ".claude/settings.json").read_text() == '{"safe": true}\n'
    assert (world.project / ".claude/notes.md").read_text() == "notes\nmore\n"  # control: other files writable
    assert not (world.project / ".claude-old").exists()


def test_ending_session_does_not_unprotect_a_concurrent_one(world: World) -> None:
    """Session A creates placeholders; B starts and binds them read-only; A ends. If A removed them, B's mounts
    would be detached and B's sandbox could create .mcp.json (an MCP server the host's agent then runs)."""
    import subprocess
    import time

    a = subprocess.Popen(
        world.rcc_argv(
            ["run", "--no-network", "--", "sh", "-c", "while [ ! -e b-started ]; do sleep 0.05; done; touch a-done"]
        ),
        cwd=world.project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not (world.project / ".mcp.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    b = world.sh(
        "touch b-started; while [ ! -e a-done ]; do sleep 0.05; done; sleep 1; "
        'echo \'{"mcpServers": {"x": {"command": "evil"}}}\' > .mcp.json 2>/dev/null && echo PLANTED; '
        "echo evil > .envrc 2>/dev/null && echo PLANTED; true"
    )
    a.wait(timeout=30)
    assert "PLANTED" not in b.stdout, (b.stdout, b.stderr)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    left = sorted(p.name for p in world.project.iterdir())
    assert left == [".git", "README.md", "a-done", "b-started"], left  # the last session removed them all


@pytest.mark.parametrize("hooks_dir", [".githooks", ".husky", "tools/hooks"])
def test_plant_hook_in_core_hookspath_dir_fails(world: World, hooks_dir: str) -> None:
    """Projects that keep their hooks in the tree (core.hooksPath = .githooks, husky's .husky): the hook files
    are project files, and the host's next `git commit` runs them."""
    hook = world.write(world.project / hooks_dir / "pre-commit", "#!/bin/sh\nexit 0\n", 0o755)
    world.git("config", "core.hooksPath", hooks_dir)
    flag = _flag(world)
    res = world.sh(
        f"printf '{HOOK.format(flag=flag)}' > {hooks_dir}/pre-commit; "
        f"printf '{HOOK.format(flag=flag)}' > {hooks_dir}/post-commit; chmod +x {hooks_dir}/post-commit; "
        f"mv {hooks_dir} moved-hooks 2>/dev/null; true"
    )
    assert hook.read_text() == "#!/bin/sh\nexit 0\n", (res.stdout, res.stderr)
    assert not (world.project / hooks_dir / "post-commit").exists()
    _host_commit_runs_nothing(world, flag)


def test_plant_pre_commit_framework_config_fails(world: World) -> None:
    """With the pre-commit framework installed as the git hook, .pre-commit-config.yaml decides what the host's
    next `git commit` runs (`repo: local` hooks are arbitrary commands)."""
    res = world.sh(
        "printf 'repos:\\n- repo: local\\n  hooks:\\n  - id: x\\n    name: x\\n    entry: sh -c evil\\n"
        "    language: system\\n' > .pre-commit-config.yaml 2>/dev/null && echo PLANTED; "
        "echo 'pre-commit: {commands: {x: {run: evil}}}' > lefthook.yml 2>/dev/null && echo PLANTED; true"
    )
    assert "PLANTED" not in res.stdout
    assert not (world.project / ".pre-commit-config.yaml").exists()
    assert not (world.project / "lefthook.yml").exists()


def test_replace_file_in_place_of_protected_dir_fails(world: World) -> None:
    """`.claude` is a plain file: nothing below it is protected as long as it stays a file, so replacing it by
    a directory must be impossible (a fresh .claude/settings.json would carry hooks for the host)."""
    world.write(world.project / ".claude", "just notes\n")
    world.write(world.project / ".vscode", "also a file\n")
    res = world.sh(
        "rm -f .claude 2>/dev/null; mkdir .claude 2>/dev/null; "
        "echo '{\"hooks\": 1}' > .claude/settings.json 2>/dev/null && echo PLANTED; "
        "mv .vscode x 2>/dev/null && echo MOVED; true"
    )
    assert "PLANTED" not in res.stdout and "MOVED" not in res.stdout, res.stdout
    assert (world.project / ".claude").read_text() == "just notes\n"


def test_separate_git_dir_inside_project_is_protected_like_dot_git(world: World) -> None:
    """`.git` is a pointer file to a git dir inside the project (git init --separate-git-dir .realgit): that
    directory's hooks and config are what the host's git runs."""
    proj = world.base / "sep"
    proj.mkdir()
    world.own(proj)
    world.write(proj / "f.txt", "x\n")
    res0 = subprocess_git(world, proj, "init", "-q", "-b", "main", "--separate-git-dir", str(proj / ".realgit"))
    assert res0.returncode == 0, res0.stderr
    for kv in (("user.name", "T"), ("user.email", "t@example.invalid")):
        subprocess_git(world, proj, "config", *kv)
    flag = _flag(world)
    res = world.rcc(
        "run",
        "--no-network",
        "--project",
        str(proj),
        "--",
        "sh",
        "-c",
        f"printf '{HOOK.format(flag=flag)}' > .realgit/hooks/pre-commit 2>/dev/null && echo PLANTED; "
        f"git config core.fsmonitor 'touch {flag}' 2>/dev/null && echo CONFIGURED; "
        "mv .realgit .other 2>/dev/null && echo MOVED; git add f.txt && git commit -q -m inside && echo COMMITTED",
    )
    assert "PLANTED" not in res.stdout and "CONFIGURED" not in res.stdout and "MOVED" not in res.stdout, res.stdout
    assert "COMMITTED" in res.stdout, res.stderr  # control: git still works inside
    assert not (proj / ".realgit/hooks/pre-commit").exists()


def subprocess_git(world: World, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        world.as_user(["git", *args], world.host_env()), cwd=cwd, capture_output=True, text=True, check=False
    )


def test_project_where_placeholders_cannot_be_made_fails_closed(world: World) -> None:
    """A project the user cannot write (so the protective mount points cannot be created): rcc must refuse,
    never run without the protection."""
    proj = world.base / "readonly-project"
    proj.mkdir()
    (proj / "file.txt").write_text("x\n")
    os.chmod(proj, 0o555)  # root-owned as well in the user variant
    try:
        res = world.rcc("run", "--no-network", "--project", str(proj), "--", "echo", "RAN")
        if world.who == "user":
            assert res.returncode == 66 and "RAN" not in res.stdout, (res.returncode, res.stdout, res.stderr)
        assert sorted(os.listdir(proj)) == ["file.txt"]
    finally:
        os.chmod(proj, 0o755)
