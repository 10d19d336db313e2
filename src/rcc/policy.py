"""The effective policy: frozen values that were validated when they were made.

Invariants:
1. A Policy is never "partially valid": config.py raises ConfigError instead of building one from bad input.
2. Paths in a Policy are absolute and `~`-expanded against the *real* home (HostFacts.home), except
   `protect`, which is relative to the project.
3. Meaning never hangs on None vs empty: the network is switched by `NetworkPolicy.mode`.
"""

from __future__ import annotations

from rcc.record import field, record

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import Literal

    NetworkMode = Literal["allowlist", "none"]
    BackendName = Literal["bwrap", "podman", "docker", "seatbelt"]

# Read-only toolchain directories from the real home that are mounted when they exist. Chosen from what agents
# actually run: language version managers, user-level installs and package-manager caches of binaries.
DEFAULT_TOOLCHAINS: tuple[str, ...] = (
    "~/.local/bin",
    "~/.local/lib",
    "~/.local/share/uv",
    "~/.local/share/pnpm",
    "~/.pyenv",
    "~/.nvm",
    "~/.volta",
    "~/.fnm",
    "~/.bun",
    "~/.deno",
    "~/.cargo/bin",
    "~/.rustup",
    "~/.go",
    "~/go/bin",
    "~/.sdkman",
    "~/.rbenv",
    "~/.asdf",
    "~/.local/share/mise",
    "~/.npm-global",
    "~/.nix-profile",
)

# Never visible, even when a parent directory is allowed. `~` is the real home.
DEFAULT_SECRETS: tuple[str, ...] = (
    "~/.ssh",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.config/gh",
    "~/.config/hub",
    "~/.config/rcc",
    "~/.local/state/rcc",
    "~/.netrc",
    "~/.git-credentials",
    "~/.config/git/credentials",
    "~/.docker",
    "~/.gnupg",
    "~/.kube",
    "~/.password-store",
    "~/.pypirc",
    "~/.npmrc",
    "~/.yarnrc",
    "~/.cargo/credentials",
    "~/.cargo/credentials.toml",
    "~/.terraform.d",
    "~/.vault-token",
    "~/.bash_history",
    "~/.zsh_history",
    "~/.histfile",
    "~/.python_history",
    "~/.node_repl_history",
    "~/.psql_history",
    "~/.mysql_history",
    "~/.sqlite_history",
    "~/.lesshst",
    "~/.local/share/fish/fish_history",
    "~/.claude",
    "~/.claude.json",
    "~/.config/claude",
    "~/.codex",
    "~/.gemini",
    "~/.local/share/keyrings",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/etc/rcc",
    # root-only system secrets: unreadable for a user's sandbox, but root's sandbox owns them (cap-drop ALL
    # does not stop an owner): TLS and VPN private keys, wifi passwords, cluster admin configs, keytabs
    "/etc/ssl/private",
    "/etc/pki/tls/private",
    "/etc/letsencrypt",
    "/etc/NetworkManager/system-connections",
    "/etc/wireguard",
    "/etc/openvpn",
    "/etc/ipsec.secrets",
    "/etc/ipsec.d/private",
    "/etc/ppp/chap-secrets",
    "/etc/ppp/pap-secrets",
    "/etc/krb5.keytab",
    "/etc/kubernetes",
    "/etc/rancher",
    "/etc/docker/key.json",
    "/etc/containers/auth.json",
    "/etc/libvirt/secrets",
    "/etc/sssd",
    "/etc/security/opasswd",
)

# Inside the project: paths that make the host run code later. Never writable, whether or not they exist.
# (.git itself is handled specially by compile.py: bound onto itself so it cannot be renamed or deleted.)
DEFAULT_PROTECTED: tuple[str, ...] = (
    ".git/hooks",
    ".git/config",
    ".git/modules",
    ".git/info",
    ".git/commondir",  # redirects git's config and hooks to another directory (one the agent could fill)
    ".git/worktrees",  # linked worktrees' commondir/config.worktree: the same redirect for the host's worktrees
    ".git/config.worktree",  # read as config (core.pager, core.fsmonitor) where extensions.worktreeConfig is on
    # legacy remotes: a file .git/remotes/origin (or .git/branches/origin) gives `origin` a URL when the config
    # names none, so the user's plain `git push` sends the project (and credentials) to a planted URL
    ".git/remotes",
    ".git/branches",
    ".gitmodules",
    # the project root as a *bare* repository: git tries DIR/.git, then DIR itself (HEAD, objects/, refs/ and
    # DIR/config). An agent that breaks .git (`rm .git/HEAD`) and plants HEAD, objects, refs and a config with
    # core.pager at the root makes the host's next `git log` run it. Without a HEAD the root is never a repo.
    "HEAD",
    # hook managers: the host's next `git commit` runs what these name (husky's scripts, pre-commit's and
    # lefthook's `run`/`entry` commands). A core.hooksPath inside the project is protected too (compile.py).
    ".husky",
    ".pre-commit-config.yaml",
    "lefthook.yml",
    ".lefthook.yml",
    "lefthook-local.yml",  # merged over lefthook.yml: the same `run` commands
    ".lefthook-local.yml",
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".claude/commands",
    ".claude/agents",
    ".claude/hooks",
    ".claude/skills",  # the twin of .claude/commands: a skill's allowed-tools runs its commands without asking
    ".mcp.json",
    # other agents' project configs that make the host run commands when the user next runs that agent there:
    # Gemini CLI's mcpServers (like .mcp.json), aider's lint-cmd/test-cmd (aider lints after each edit by default)
    ".gemini/settings.json",
    ".gemini/extensions",  # workspace extensions (older Gemini CLI): their mcpServers run commands
    ".gemini/commands",  # custom slash commands: `!{...}` runs shell commands
    ".gemini/.env",  # Gemini CLI loads it before .env: base URLs, system prompt file
    ".codex",  # Codex's project config (.codex/config.toml in trusted projects): mcp_servers, notify commands
    ".aider.conf.yml",
    ".aider.model.settings.yml",  # extra_params.api_base: the user's API key goes to a planted URL
    # aider loads the git root's .env over its own settings: AIDER_LINT_CMD / AIDER_TEST_CMD run after each edit
    # (and autoenv runs .env as a script, direnv loads it where load_dotenv is on)
    ".env",
    ".cursor/mcp.json",
    ".vscode",
    ".devcontainer",  # initializeCommand runs on the host when the user reopens the folder in a container
    ".devcontainer.json",
    ".idea",
    ".zed",  # Zed's project settings name language server binaries and tasks
    ".helix",  # Helix's workspace languages.toml names language server commands
    ".nvim.lua",  # Neovim's exrc files (trusted by hash, but a trusted file must not change under the user)
    ".nvimrc",
    ".lazy.lua",  # lazy.nvim's local spec: Lua run at start
    # version managers: mise runs a config's [hooks] and env scripts on `cd`, and `path:` versions (mise, asdf
    # .tool-versions) make the host's `node`/`python` shims run a binary from the project
    "mise.toml",
    ".mise.toml",
    "mise.local.toml",
    ".mise.local.toml",
    ".mise",
    ".tool-versions",
    # package managers that load code named in their config on *every* command (`yarn --version` included):
    # yarnPath / yarn-path and plugins (the files they point to: compile.PROTECTED_IF_PRESENT)
    ".yarnrc.yml",
    ".yarnrc",
    ".envrc",
    ".rcc.toml",
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".exrc",
)

# Environment variables passed through from rcc's environment when set. Everything else is dropped.
DEFAULT_ENV_PASS: tuple[str, ...] = (
    "PATH",
    "TERM",
    "COLORTERM",
    "TERM_PROGRAM",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "NO_COLOR",
    "FORCE_COLOR",
    "COLUMNS",
    "LINES",
    "EDITOR",
    "VISUAL",
    "PAGER",
)


@record
class FilesystemPolicy:
    """What the sandbox sees of the filesystem."""

    toolchains: tuple[str, ...] = DEFAULT_TOOLCHAINS  # read-only if they exist
    read_only: tuple[str, ...] = ()  # extra read-only paths
    read_write: tuple[str, ...] = ()  # extra read-write paths
    hide: tuple[str, ...] = DEFAULT_SECRETS  # never visible
    protect: tuple[str, ...] = DEFAULT_PROTECTED  # project-relative, never writable


@record
class EnvironmentPolicy:
    """Which variables reach the sandbox."""

    passthrough: tuple[str, ...] = DEFAULT_ENV_PASS  # names or `PREFIX_*` patterns
    set: tuple[tuple[str, str], ...] = ()  # explicit values


@record
class NetworkPolicy:
    """How the sandbox reaches the network."""

    mode: NetworkMode = "allowlist"
    allow: tuple[str, ...] = ()  # host rules (see rcc.net.rules), presets as "@name"
    deny: tuple[str, ...] = ()
    resolve: tuple[tuple[str, str], ...] = ()  # static name -> address overrides (like curl --resolve)
    publish: tuple[str, ...] = ()  # "[HOSTADDR:]HOSTPORT[:PORT]" (parse_publish below)
    host_services: tuple[int, ...] = ()  # host loopback ports the sandbox may reach at its own loopback
    on_unknown: str = "deny"  # "ask": hold hosts no rule covers for `rcc watch` (rcc.live.ask)
    ask_timeout: int = 60  # seconds a held connection waits for an answer
    # [credentials.NAME]: (name, (env var, hosts, request rules)), sorted by name (rcc.net.credentials)
    credentials: tuple[tuple[str, tuple[str, tuple[str, ...], tuple[str, ...]]], ...] = ()


@record
class LimitsPolicy:
    """Resource limits (rcc.limits): validated strings, "none" for no limit; the defaults are rcc.limits'."""

    memory: str = "75%"  # a size ("4G") or a share of physical memory
    processes: str = "4096"
    cpu: str = "none"  # CPUs ("2", "0.5")
    tmp: str = "2G"  # size of each private tmpfs (/tmp, the home, /var/tmp, /dev/shm, /run, /var)


@record
class Policy:
    """The effective policy (see the module docstring for invariants)."""

    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    environment: EnvironmentPolicy = field(default_factory=EnvironmentPolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)
    backend: BackendName = "bwrap"
    container_image: str = ""  # podman/docker backend: "" = rcc's own agent image
    workspace: str = "direct"  # "review": the project through a copy-on-write layer (rcc.workspace)


def parse_publish(spec: str) -> tuple[str, int, int]:
    """`[HOSTADDR:]HOSTPORT[:PORT]` -> (host address, host port, port inside). An IPv6 address goes in brackets
    ([::1]:8080:80); without an address the host side is 127.0.0.1. Raises ValueError with the reason."""
    import ipaddress

    s = spec.strip()
    addr = ""
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or not s[end + 1 :].startswith(":"):
            raise ValueError(f"{spec!r}: an IPv6 address goes in brackets, then :HOSTPORT ([::1]:8080:80)")
        addr, s = s[1:end], s[end + 2 :]
        try:
            if ipaddress.ip_address(addr).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"{spec!r}: {addr!r} is not an IPv6 address") from None
    parts = s.split(":")
    if not addr and (len(parts) == 3 or (len(parts) == 2 and not parts[0].isdigit())):
        addr, parts = parts[0], parts[1:]
        try:
            if ipaddress.ip_address(addr).version != 4:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{spec!r}: {addr!r} is not an IPv4 address (IPv6 goes in brackets: [::1]:8080:80)"
            ) from None
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"{spec!r}: expected [HOSTADDR:]HOSTPORT[:PORT], e.g. 5173, 8080:5173, 0.0.0.0:8080:5173")
    ports = [int(p) for p in parts]
    if not all(1 <= p <= 65535 for p in ports):
        raise ValueError(f"{spec!r}: ports are 1-65535")
    return addr or "127.0.0.1", ports[0], ports[-1]
