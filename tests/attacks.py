"""The escape suite's attack catalogue: which sandboxes every attack runs against, and the simple attacks as data.

Import as `from attacks import ...` (tests/ is on pythonpath). Stdlib only and free of pytest, so that anything
can read the data: the real-sandbox tests (tests/sandbox/test_catalogue.py runs every probe below against every
backend in BACKENDS), and a backend that cannot run here (a macOS Seatbelt profile simulator) can run the same
file and network attacks through its own model.

Three parts:

- BACKENDS: the sandboxes the escape suite runs against. A new backend adds itself here and every escape test
  (tests/sandbox/) runs against it, apart from the modules and tests that say, with a reason, which backends they
  are for (`@pytest.mark.backends(..., why=...)`, see tests/escape_world.py).
- The test world every backend is attacked in: a fake home with planted secrets and private files, a project (a
  git repository), a host directory outside both. The world plants exactly the contents named here.
- FILE_PROBES and NET_PROBES: single operations on one path or address, each an attack the sandbox must stop or
  its control (the legitimate version that must keep working), with the reason. `PROBE_SCRIPT` performs a list
  of them inside a sandbox in one run and prints what each got; `judge()` decides, from that and the host's
  state before and after (`host_state()`). Adding an attack is adding one entry.

Paths are templates: `~/` is the world's home, `{project}/` its project, `{outside}/` the host directory outside
both; anything else is an absolute host path. `resolve(path, home=..., project=..., outside=...)` fills them in.

Expected outcomes (`Expect`):
- "denied": a read gets none of the host's bytes; a write or create fails inside and leaves the host unchanged;
  a connection fails.
- "private": the operation succeeds inside, but the host is unchanged afterwards (the private home, /tmp).
- "allowed": a read gets the host's bytes; a write lands on the host; a connection succeeds. The controls.
`Probe.differs` names the backends (by engine, e.g. "podman", or by id, e.g. "bwrap-user") where the expected
outcome is different, each with its reason: never a silent skip.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Any, Literal

# ----------------------------------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    """One way to run the sandbox: the rcc backend (`rcc run --backend ENGINE`) and who runs rcc."""

    id: str  # the test id: test_x[bwrap-root]
    engine: Literal["bwrap", "podman", "docker"]
    who: Literal["root", "user"]  # "user": the unprivileged test user (rccuser), via runuser

    @property
    def container(self) -> bool:
        return self.engine in ("podman", "docker")


BACKENDS: tuple[Backend, ...] = (
    Backend("bwrap-root", "bwrap", "root"),
    Backend("bwrap-user", "bwrap", "user"),
    Backend("podman-root", "podman", "root"),
    Backend("podman-rootless", "podman", "user"),
    Backend("docker", "docker", "root"),  # rootless docker is refused by rcc (exit 78): no backend to attack
)


def backends_matching(*names: str) -> tuple[Backend, ...]:
    """The backends named by engine ("bwrap", "podman", "docker") or by id ("bwrap-user"); "container" names
    podman and docker, "all" every one. Unknown names are an error (a typo must not silently select nothing)."""
    chosen: list[Backend] = []
    for name in names:
        hits = [b for b in BACKENDS if name in (b.id, b.engine, "all") or (name == "container" and b.container)]
        if not hits:
            raise ValueError(f"no backend is called {name!r}: {[b.id for b in BACKENDS]}")
        chosen += [b for b in hits if b not in chosen]
    return tuple(b for b in BACKENDS if b in chosen)


# -------------------------------------------------------------------------------------------- the test world

# Planted in the fake home, mode 0600: no sandbox may read any of them.
SECRETS: dict[str, str] = {
    ".ssh/id_rsa": "SECRET-ssh-private-key",
    ".ssh/id_ed25519": "SECRET-ssh-ed25519-key",
    ".aws/credentials": "SECRET-aws-key",
    ".config/gh/hosts.yml": "SECRET-gh-token",
    ".netrc": "SECRET-netrc",
    ".git-credentials": "SECRET-git-credentials",
    ".docker/config.json": "SECRET-docker-auth",
    ".gnupg/private-keys-v1.d/key": "SECRET-gpg",
    ".kube/config": "SECRET-kube",
    ".bash_history": "SECRET-bash-history",
    ".zsh_history": "SECRET-zsh-history",
    ".claude/.credentials.json": "SECRET-claude-credentials",
    ".claude.json": "SECRET-claude-json",
    ".cargo/credentials.toml": "SECRET-cargo-token",
    ".npmrc": "SECRET-npm-token",
}
# Files in the home that are neither secrets nor toolchains: invisible too (the home is private).
PRIVATE: dict[str, str] = {
    "Documents/diary.txt": "PRIVATE-diary",
    ".config/other-app/settings.ini": "PRIVATE-settings",
}
# Toolchains bwrap mounts read-only into the private home (containers have their own image's tools instead).
TOOLCHAINS: dict[str, str] = {
    ".local/bin/hello-tool": "#!/bin/sh\necho hello-from-toolchain\n",
    ".cargo/bin/cargo-fake": "#!/bin/sh\necho cargo-fake\n",
    ".pyenv/versions/marker": "pyenv-marker\n",
}
OUTSIDE_MARKER = "OUTSIDE-marker\n"  # {outside}/marker.txt
PROJECT_README = "hello\n"  # {project}/README.md, committed

# ------------------------------------------------------------------------------------------------ the probes

Expect = Literal["denied", "private", "allowed"]
FileOp = Literal["read", "write", "create", "create-parents", "list"]
NetOp = Literal["connect", "connect-unix", "serve-loopback", "interfaces"]
NetMode = Literal["none", "proxy"]  # rcc run --no-network | the default (rcc's proxy on 127.0.0.1:3128 inside)


@dataclass(frozen=True)
class Probe:
    """One operation on one target inside the sandbox, and what must come of it.

    File ops: "read" (the file's bytes), "write" (append; creates a missing file), "create" (O_CREAT|O_EXCL),
    "create-parents" (the same after making missing parent directories, as an attacker would), "list" (a
    directory's names: "denied" means none of the host's names but `allow_names` is seen).
    Network ops: "connect" (TCP to host:port), "connect-unix" (a unix socket path; "@name" is abstract),
    "serve-loopback" (listen on the sandbox's own 127.0.0.1 and connect to it), "interfaces" (the network
    interfaces the sandbox has: "denied" means there is none but lo).
    """

    name: str  # the attack (or control) it names: read-ssh-key, write-git-hook, ...
    op: str
    target: str  # a path template (see the module docstring) or host:port
    expect: Expect
    why: str
    mode: NetMode = "none"  # network probes: which network mode the run uses
    differs: tuple[tuple[str, Expect, str], ...] = ()  # (backend engine or id, expected instead, why)
    allow_names: tuple[str, ...] = ()  # "list": host names that may be seen (the world mounts them on purpose)

    def expect_on(self, backend: Backend) -> Expect:
        for name, expect, _why in self.differs:
            if name in (backend.id, backend.engine) or (name == "container" and backend.container):
                return expect
        return self.expect


def resolve(path: str, *, home: str, project: str, outside: str, **more: str) -> str:
    """A probe's target with the world's paths (and any `{name}` in `more`, e.g. host_loopback) filled in."""
    if path.startswith("~/"):
        path = home + path[1:]
    return path.format(project=project, outside=outside, home=home, **more)


def _reads(items: dict[str, str], why: str) -> list[Probe]:
    return [Probe(f"read-~/{rel}", "read", f"~/{rel}", "denied", why) for rel in items]


FILE_PROBES: tuple[Probe, ...] = (
    # --- the user's secrets and private files in the home
    *_reads(SECRETS, "a credential in the real home: the sandbox gets a private, empty home"),
    *_reads(PRIVATE, "the home is private: files that are no secret are still the user's, not the agent's"),
    Probe(
        "list-home",
        "list",
        "~/",
        "denied",
        "the real home's entries are not visible (only the toolchain directories bwrap mounts into the private home)",
        allow_names=tuple({t.split("/")[0] for t in TOOLCHAINS}),
    ),
    Probe("create-~/.bashrc", "create", "~/.bashrc", "private", "a shell rc the host's next login would run"),
    Probe(
        "create-~/.ssh/authorized_keys",
        "create-parents",
        "~/.ssh/authorized_keys",
        "private",
        "a key that logs the attacker in: the private home takes it, the host never sees it",
    ),
    # --- the host outside home and project
    Probe("read-outside", "read", "{outside}/marker.txt", "denied", "a host file outside home and project"),
    Probe("write-outside", "write", "{outside}/marker.txt", "denied", "a host file outside home and project"),
    Probe("create-outside", "create", "{outside}/new.txt", "denied", "a new host file outside the project"),
    Probe("read-/etc/shadow", "read", "/etc/shadow", "denied", "the host's password hashes"),
    Probe("read-/etc/gshadow", "read", "/etc/gshadow", "denied", "the host's group password hashes"),
    Probe("list-/home", "list", "/home", "denied", "other users' homes (their names are already a leak)"),
    Probe("create-/etc/rcc-escape-test", "create", "/etc/rcc-escape-test", "denied", "the system is read-only"),
    Probe(
        "create-/usr/bin/rcc-escape-test",
        "create",
        "/usr/bin/rcc-escape-test",
        "denied",
        "a planted program on the host's PATH",
    ),
    Probe(
        "create-/usr/local/bin/rcc-escape-test",
        "create",
        "/usr/local/bin/rcc-escape-test",
        "denied",
        "a planted program on the host's PATH",
    ),
    Probe("create-/opt/rcc-escape-test", "create", "/opt/rcc-escape-test", "denied", "the system is read-only"),
    Probe(
        "create-/rcc-escape-test",
        "create",
        "/rcc-escape-test",
        "denied",
        "the host's root directory",
        differs=(("bwrap", "private", "bwrap's / is a fresh tmpfs holding the mount points: writable, discarded"),),
    ),
    Probe("write-/etc/passwd", "write", "/etc/passwd", "denied", "a new uid 0 account on the host"),
    Probe(
        "read-/etc/hostname",
        "read",
        "/etc/hostname",
        "allowed",
        "control: ordinary /etc files are readable (bwrap binds the host's /etc read-only)",
        differs=(("container", "denied", "a container sees its image's /etc, not the host's: nothing to read"),),
    ),
    Probe("create-/tmp/rcc-probe", "create", "/tmp/rcc-probe-{tag}", "private", "control: /tmp is private"),
    Probe("create-/var/tmp/rcc-probe", "create", "/var/tmp/rcc-probe-{tag}", "private", "control: /var/tmp is private"),
    Probe("create-/dev/shm/rcc-probe", "create", "/dev/shm/rcc-probe-{tag}", "private", "control: /dev/shm is private"),
    # --- the project: its files are the agent's to change, its code-running files are not
    Probe("read-project-file", "read", "{project}/README.md", "allowed", "control: the project is readable"),
    Probe("write-project-file", "write", "{project}/README.md", "allowed", "control: the project is writable"),
    Probe("create-project-file", "create-parents", "{project}/sub/new.txt", "allowed", "control: new files and dirs"),
    Probe(
        "create-project-dotfile",
        "create",
        "{project}/.prettierrc",
        "allowed",
        "control: only the dangerous names are protected, not every dotfile",
    ),
    Probe(
        "create-git-hook",
        "create",
        "{project}/.git/hooks/pre-commit",
        "denied",
        "a hook the host's next git commit runs",
    ),
    Probe(
        "create-git-hook-post-checkout",
        "create",
        "{project}/.git/hooks/post-checkout",
        "denied",
        "a hook the host's next git checkout runs",
    ),
    Probe(
        "write-git-config",
        "write",
        "{project}/.git/config",
        "denied",
        "core.fsmonitor / core.hooksPath / an alias: run by the host's next git command",
    ),
    Probe(
        "create-git-commondir",
        "create",
        "{project}/.git/commondir",
        "denied",
        "redirects git to a config and hooks the agent made",
    ),
    Probe(
        "create-HEAD-at-root",
        "create",
        "{project}/HEAD",
        "denied",
        "makes the project root a bare repository whose config the host's git reads",
    ),
    Probe("create-.mcp.json", "create", "{project}/.mcp.json", "denied", "an MCP server the host's agent runs"),
    Probe(
        "create-.claude/settings.json",
        "create-parents",
        "{project}/.claude/settings.json",
        "denied",
        "Claude Code hooks the host's agent runs",
    ),
    Probe(
        "create-.vscode/tasks.json",
        "create-parents",
        "{project}/.vscode/tasks.json",
        "denied",
        "a task the host's editor runs",
    ),
    Probe("create-.envrc", "create", "{project}/.envrc", "denied", "direnv runs it on the host's next cd"),
    Probe("create-.gitmodules", "create", "{project}/.gitmodules", "denied", "submodule URLs/commands"),
    Probe("create-.rcc.toml", "create", "{project}/.rcc.toml", "denied", "widens the next session's policy"),
    Probe(
        "create-.pre-commit-config.yaml",
        "create",
        "{project}/.pre-commit-config.yaml",
        "denied",
        "the pre-commit framework's hooks run on the host's next git commit",
    ),
    # --- issue 11 §4: the rest of the catalogue in docs/sandbox.md ("Files the host's tools load on their own")
    *(
        Probe(f"create-{rel}", "create-parents" if "/" in rel else "create", f"{{project}}/{rel}", "denied", why)
        for rel, why in (
            (".claude/skills/evil/SKILL.md", "a skill's allowed-tools run commands in the host's next claude"),
            (".git/remotes/origin", "a legacy remote: the host's plain `git push` goes to a planted URL"),
            (".git/branches/origin", "a legacy remote: the host's plain `git push` goes to a planted URL"),
            (".git/config.worktree", "git config (core.pager) where extensions.worktreeConfig is on"),
            (".gemini/extensions/evil/gemini-extension.json", "a workspace extension's mcpServers run commands"),
            (".gemini/commands/evil.toml", "a custom command's !{...} runs shell commands"),
            (".gemini/.env", "Gemini CLI's environment: base URL, system prompt file"),
            (".codex/config.toml", "Codex's project config: mcp_servers and notify commands"),
            (".aider.model.settings.yml", "api_base: the user's API key goes to a planted URL"),
            (".env", "aider's AIDER_LINT_CMD / AIDER_TEST_CMD run after each edit; autoenv runs it"),
            (".cursor/mcp.json", "an MCP server the host's Cursor runs"),
            (".devcontainer/devcontainer.json", "initializeCommand runs on the host"),
            (".devcontainer.json", "initializeCommand runs on the host"),
            (".zed/settings.json", "language server binaries the host's Zed runs"),
            (".helix/languages.toml", "language server commands the host's Helix runs"),
            (".nvim.lua", "Neovim's exrc"),
            (".nvimrc", "Neovim's exrc"),
            (".lazy.lua", "lazy.nvim's local spec: Lua at start"),
            ("mise.toml", "mise's hooks and env scripts run on the host's next cd"),
            (".mise.toml", "mise's hooks and env scripts run on the host's next cd"),
            ("mise.local.toml", "mise's hooks and env scripts run on the host's next cd"),
            (".mise.local.toml", "mise's hooks and env scripts run on the host's next cd"),
            (".mise/config.toml", "mise's hooks and env scripts run on the host's next cd"),
            (".tool-versions", "`path:` versions make the host's shims run a project binary"),
            (".yarnrc.yml", "yarnPath/plugins: every yarn command runs the named file"),
            (".yarnrc", "yarn-path: every yarn v1 command runs the named file"),
            ("lefthook-local.yml", "merged over lefthook.yml: commands on the host's next commit"),
            (".lefthook-local.yml", "merged over lefthook.yml: commands on the host's next commit"),
        )
    ),
    # controls: files beside them that these tools do not run, and that projects edit
    *(
        Probe(f"create-{rel}", "create-parents" if "/" in rel else "create", f"{{project}}/{rel}", "allowed", why)
        for rel, why in (
            (".env.example", "control: only the .env aider loads is protected"),
            (".yarn/cache/pkg.zip", "control: .yarn is protected only where releases/plugins exist"),
            ("CLAUDE.md", "control: instructions, not code (docs/sandbox.md)"),
            ("AGENTS.md", "control: instructions, not code"),
            (".editorconfig", "control: formatting only"),
            (".nvmrc", "control: a version name, never a path"),
            (".python-version", "control: pyenv refuses paths in it"),
            (".npmrc", "control: npm acts on it only in commands that run package.json's scripts anyway"),
            (".pnpmfile.cjs", "control: runs only in pnpm install, which runs the project's own scripts"),
            (".gitattributes", "control: filter/diff drivers need config the sandbox cannot write"),
        )
    ),
)


NET_PROBES: tuple[Probe, ...] = (
    Probe(
        "connect-host-loopback",
        "connect",
        "127.0.0.1:{host_loopback}",
        "denied",
        "a service on the host's own loopback (a database, a dev server, the docker API)",
        mode="none",
    ),
    Probe(
        "connect-host-loopback-with-proxy",
        "connect",
        "127.0.0.1:{host_loopback}",
        "denied",
        "ignoring the proxy variables to reach the host's loopback directly",
        mode="proxy",
    ),
    Probe(
        "connect-proxy-without-network",
        "connect",
        "127.0.0.1:3128",
        "denied",
        "--no-network means no proxy either",
        mode="none",
    ),
    Probe(
        "connect-proxy",
        "connect",
        "127.0.0.1:3128",
        "allowed",
        "control: rcc's proxy listens inside the sandbox's own network namespace",
        mode="proxy",
    ),
    Probe(
        "serve-own-loopback",
        "serve-loopback",
        "127.0.0.1:0",
        "allowed",
        "control: servers and clients inside talk over the sandbox's own loopback",
        mode="none",
    ),
    Probe("interfaces-beyond-lo", "interfaces", "", "denied", "only lo: no route anywhere", mode="none"),
    Probe(
        "interfaces-beyond-lo-with-proxy",
        "interfaces",
        "",
        "denied",
        "only lo: the proxy is the only way out",
        mode="proxy",
    ),
    Probe(
        "connect-host-unix-socket",
        "connect-unix",
        "{host_unix}",
        "denied",
        "an ssh-agent-like socket in the host's /tmp",
        mode="none",
    ),
    Probe(
        "connect-host-abstract-socket",
        "connect-unix",
        "@{host_abstract}",
        "denied",
        "abstract unix sockets are per network namespace (D-Bus, X11)",
        mode="none",
    ),
    Probe(
        "connect-docker-socket",
        "connect-unix",
        "/var/run/docker.sock",
        "denied",
        "the docker API is root on the host",
        mode="none",
    ),
    Probe(
        "connect-docker-socket-run",
        "connect-unix",
        "/run/docker.sock",
        "denied",
        "the docker API is root on the host",
        mode="none",
    ),
    Probe(
        "connect-podman-socket",
        "connect-unix",
        "/run/podman/podman.sock",
        "denied",
        "the podman API is root on the host",
        mode="none",
    ),
    Probe(
        "connect-user-podman-socket",
        "connect-unix",
        "/run/user/{uid}/podman/podman.sock",
        "denied",
        "the user's podman API",
        mode="none",
    ),
    Probe(
        "connect-user-docker-socket",
        "connect-unix",
        "/run/user/{uid}/docker.sock",
        "denied",
        "a rootless docker API",
        mode="none",
    ),
)


# The probe runner: runs inside the sandbox (any python3 >= 3.8, stdlib only), one JSON object per line on stdout.
# argv: a JSON list of [name, op, target]. Each result: {"name", "ok", "sha256"|"names"|"errno"}.
PROBE_SCRIPT = r"""
import errno, hashlib, json, os, socket, sys
def run(op, target):
    if op == "read":
        with open(target, "rb") as f:
            return {"sha256": hashlib.sha256(f.read()).hexdigest()}
    if op == "write":
        with open(target, "ab") as f:
            f.write(b"RCC-PROBE-WROTE\n")
        return {}
    if op in ("create", "create-parents"):
        if op == "create-parents":
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
            except OSError:
                pass
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return {}
    if op == "list":
        return {"names": sorted(os.listdir(target))}
    if op == "connect":
        host, _, port = target.rpartition(":")
        socket.create_connection((host, int(port)), timeout=3).close()
        return {}
    if op == "connect-unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect("\0" + target[1:] if target.startswith("@") else target)
        finally:
            s.close()
        return {}
    if op == "serve-loopback":
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        c = socket.create_connection(srv.getsockname(), timeout=3)
        a, _ = srv.accept(); a.sendall(b"pong"); got = c.recv(4)
        for s in (a, c, srv): s.close()
        if got != b"pong":
            raise OSError(errno.EIO, "no pong")
        return {}
    if op == "interfaces":
        with open("/proc/net/dev") as f:
            return {"names": sorted(line.split(":")[0].strip() for line in f.readlines()[2:])}
    raise ValueError(op)
for name, op, target in json.loads(sys.argv[1]):
    try:
        out = {"name": name, "ok": True, **run(op, target)}
    except OSError as e:
        out = {"name": name, "ok": False, "errno": e.errno, "error": str(e)}
    print(json.dumps(out), flush=True)
"""


# ------------------------------------------------------------------------------------------------ judging


@dataclass(frozen=True)
class HostState:
    """What the host has at a probe's path: judged before and after the run (the test runner is root)."""

    exists: bool
    sha256: str | None = None  # a regular file's bytes
    names: tuple[str, ...] = ()  # a directory's entries


def host_state(path: str) -> HostState:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return HostState(False)
    except PermissionError:  # not root: the runner cannot see it (a read probe then needs the read to fail)
        return HostState(True)
    if stat.S_ISDIR(st.st_mode):
        return HostState(True, names=tuple(sorted(os.listdir(path))))
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            return HostState(True, sha256=hashlib.sha256(f.read()).hexdigest())
    return HostState(True)


def judge(
    probe: Probe, expect: Expect, got: dict[str, Any], before: HostState | None, after: HostState | None
) -> str | None:
    """None if the probe's outcome is `expect`, else what went wrong. `got` is the probe's line from
    PROBE_SCRIPT; `before`/`after` the host's state at the (file) target, None for network probes."""
    ok = bool(got.get("ok"))
    inside = f"inside: {got}"
    if probe.op == "read":
        assert before is not None
        if not before.exists:
            return f"the world has no file at the target: the attack would prove nothing ({before})"
        leaked = ok and (before.sha256 is None or got.get("sha256") == before.sha256)
        if expect == "allowed":
            return None if leaked else f"the control could not read the host's file; {inside}"
        return f"the host's bytes were read; {inside}" if leaked else None
    if probe.op in ("write", "create", "create-parents"):
        assert before is not None and after is not None
        changed = before != after
        if expect == "allowed":
            return None if ok and changed else f"the control's write did not land on the host; {inside}"
        if changed:
            return f"the host changed: {before} -> {after}; {inside}"
        if expect == "denied" and ok:
            return f"the write succeeded inside (the host is unchanged, but 'denied' was expected); {inside}"
        if expect == "private" and not ok:
            return f"the private place was not writable inside; {inside}"
        return None
    if probe.op == "list":
        assert before is not None
        if not before.names:
            return f"the host has nothing at the target to leak: the attack would prove nothing ({before})"
        seen = set(got.get("names", ())) & set(before.names) - set(probe.allow_names)
        if expect == "allowed":
            return None if ok and seen else f"the control could not list the host's names; {inside}"
        return f"the host's names are visible: {sorted(seen)}" if seen else None
    if probe.op == "interfaces":
        beyond = [n for n in got.get("names", ()) if n != "lo"]
        if not ok:
            return f"could not list the interfaces; {inside}"
        if expect == "allowed":
            return None if beyond else "only lo"
        return f"interfaces beyond lo: {beyond}" if beyond else None
    if probe.op in ("connect", "connect-unix", "serve-loopback"):
        if expect == "allowed":
            return None if ok else f"the control could not connect; {inside}"
        return f"connected; {inside}" if ok else None
    raise ValueError(f"unknown op {probe.op!r}")
