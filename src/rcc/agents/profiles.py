"""Agent profiles: what each coding agent needs from the sandbox, as data.

A profile names the executable, where installers put it, the endpoints it talks to (derived from its own
environment variables), the variables it may receive, fixed variables set for it, and where its state lives.
Adding an agent is one more `AgentProfile(...)` in PROFILES.

Invariants:
1. Everything here is pure: `endpoints(profile, env)` and `passthrough(profile, env)` read only the mapping they
   are given. Finding the executable on disk is find.py's job.
2. Keys and tokens reach an agent only when named here (or by the user with `--env`); provider credentials
   (AWS, Google) only when that provider is switched on in the environment.
3. An endpoint is derived from a URL the user configured (ANTHROPIC_BASE_URL, ...) or is the provider's fixed
   host; a malformed URL is a ConfigError, never "allow everything".
"""

from __future__ import annotations

from collections.abc import Mapping

from rcc.errors import ConfigError
from rcc.net.presets import PRESETS
from rcc.record import record


@record
class Provider:
    """An alternative backend the agent switches to with an environment variable (Bedrock, Vertex, ...).

    When `switch` is set to a true value, `hosts` replace the profile's default endpoints. `{region}` in a host is
    the first set variable of `region_vars` (else `default_region`); `{region-}` is "" for the region "global"
    and "<region>-" otherwise. A set `base_url_var` replaces `hosts` by its URL's host."""

    switch: str
    hosts: tuple[str, ...]
    base_url_var: str = ""
    region_vars: tuple[str, ...] = ()
    default_region: str = ""
    passthrough: tuple[str, ...] = ()


@record
class Keep:
    """A file an agent keeps from one session to the next: data only (a login and its refresh, a history), never
    anything that makes the agent run code, load tools or change its instructions (state.py copies it into each
    session's fresh state and, when the session ends, back into its store, filtered by `form`).

    form "file": the bytes as they are; "json": a JSON object of which only `keys` (dotted paths into nested
    objects) are kept; "env": `NAME=value` lines of which only the names in `keys` are kept.
    scope "login": one store shared by every project; "project": a store per project.
    `project_keys` ("json" only): keys of the object's `projects[<project path>]` entry, kept per project."""

    rel: str  # home-relative
    scope: str = "login"
    form: str = "file"
    keys: tuple[str, ...] = ()
    project_keys: tuple[str, ...] = ()
    limit: int = 1 << 20  # bytes: a larger file is not kept


@record
class AgentProfile:
    name: str  # the rcc subcommand: `rcc claude`
    executable: str  # looked up on PATH
    install_hint: str  # shown when the executable is missing
    # Extra places installers put the executable (home-relative with ~, globs allowed), tried after PATH.
    candidates: tuple[str, ...] = ()
    # Default endpoints (rcc.net.rules syntax) when no base URL variable or provider is set.
    default_hosts: tuple[str, ...] = ()
    # Variables holding the API's base URL; when one is set its host replaces default_hosts.
    base_url_vars: tuple[str, ...] = ()
    # (variable, host): host is allowed when the variable is set (multi-provider agents like aider).
    key_hosts: tuple[tuple[str, str], ...] = ()
    providers: tuple[Provider, ...] = ()
    # Variable names (or PREFIX_* patterns) passed from rcc's environment when set.
    passthrough: tuple[str, ...] = ()
    # Fixed variables set inside the sandbox; `~` at the start of a value is the sandbox's home.
    env: tuple[tuple[str, str], ...] = ()
    # Home-relative directories the agent writes its state in: a fresh directory for each session (state.py),
    # seeded from the user's settings and the kept files, mounted read-write at ~/<rel>, removed at the end.
    state: tuple[str, ...] = ()
    # What carries from one session to the next (data only): see Keep.
    keep: tuple[Keep, ...] = ()
    # Home-relative directories (under a state dir) kept per project and mounted read-write in that project's
    # sessions only: transcripts, per-project history.
    project_dirs: tuple[str, ...] = ()
    # Home-relative files and directories `--import-settings` copies from the real home into rcc's settings for
    # the agent (host-owned; each session gets a fresh copy of them).
    importable: tuple[str, ...] = ()
    version_args: tuple[str, ...] = ("--version",)


# Bedrock and Vertex as Claude Code documents them (code.claude.com/docs: amazon-bedrock, google-vertex-ai).
_CLAUDE_BEDROCK = Provider(
    switch="CLAUDE_CODE_USE_BEDROCK",
    hosts=("bedrock-runtime.{region}.amazonaws.com",),
    base_url_var="ANTHROPIC_BEDROCK_BASE_URL",
    region_vars=("AWS_REGION", "AWS_DEFAULT_REGION"),
    default_region="us-east-1",
    passthrough=(
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
        "ANTHROPIC_BEDROCK_BASE_URL",
        "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
    ),
)
_CLAUDE_VERTEX = Provider(
    switch="CLAUDE_CODE_USE_VERTEX",
    hosts=("{region-}aiplatform.googleapis.com", "oauth2.googleapis.com"),
    base_url_var="ANTHROPIC_VERTEX_BASE_URL",
    region_vars=("CLOUD_ML_REGION",),
    default_region="us-east5",
    passthrough=(
        "CLOUD_ML_REGION",
        "ANTHROPIC_VERTEX_PROJECT_ID",
        "ANTHROPIC_VERTEX_BASE_URL",
        "VERTEX_REGION_*",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH",
    ),
)

CLAUDE = AgentProfile(
    name="claude",
    executable="claude",
    install_hint="npm install -g @anthropic-ai/claude-code   (or the native installer: "
    "curl -fsSL https://claude.ai/install.sh | bash)",
    candidates=(
        "~/.local/bin/claude",  # native installer: a link into ~/.local/share/claude/versions/
        "~/.claude/local/claude",  # the older "local" npm install
        "~/.npm-global/bin/claude",
        "~/.volta/bin/claude",
        "~/.bun/bin/claude",
        "~/.nvm/versions/node/*/bin/claude",
        "/usr/local/bin/claude",
    ),
    # api.anthropic.com: the Messages API, also OAuth profile/roles/API-key creation after /login.
    # platform.claude.com: /login's token exchange and every later token refresh (TOKEN_URL). The browser
    # part of /login (claude.ai, claude.com, platform.claude.com/oauth/authorize) runs on the host, not here.
    default_hosts=PRESETS["anthropic"],  # one source with the @anthropic preset
    base_url_vars=("ANTHROPIC_BASE_URL",),
    providers=(_CLAUDE_BEDROCK, _CLAUDE_VERTEX),
    passthrough=(
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_CUSTOM_HEADERS",
        "ANTHROPIC_MODEL",
        "ANTHROPIC_SMALL_FAST_MODEL",
        "ANTHROPIC_DEFAULT_*",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "DISABLE_TELEMETRY",
        "DISABLE_ERROR_REPORTING",
        "MAX_THINKING_TOKENS",
        "BASH_DEFAULT_TIMEOUT_MS",
        "BASH_MAX_TIMEOUT_MS",
    ),
    env=(
        # Claude Code refuses --dangerously-skip-permissions as root unless told it runs in a sandbox.
        ("IS_SANDBOX", "1"),
        # The install tree is read-only in here; updating is the host's business.
        ("DISABLE_AUTOUPDATER", "1"),
        # Everything (settings, login, history, and .claude.json) in one directory: Claude Code replaces
        # .claude.json by rename(), which fails on a single bind-mounted file (EBUSY).
        ("CLAUDE_CONFIG_DIR", "~/.claude"),
    ),
    state=(".claude",),
    keep=(
        # the OAuth login (Linux keeps it in a file) and the account it belongs to; never mcpOAuth (MCP servers)
        Keep(".claude/.credentials.json", form="json", keys=("claudeAiOauth",)),
        Keep(
            ".claude/.claude.json",
            form="json",
            keys=(
                "oauthAccount",
                "primaryApiKey",
                "userID",
                "customApiKeyResponses",
                "hasCompletedOnboarding",
                "lastOnboardingVersion",
                "theme",
            ),
            # never mcpServers, allowedTools, enabledMcpjsonServers, ... (tools the agent would load)
            project_keys=("hasTrustDialogAccepted", "hasCompletedProjectOnboarding"),
        ),
        Keep(".claude/history.jsonl", scope="project", limit=16 << 20),  # prompt history (up-arrow)
    ),
    # transcripts (--resume, --continue) and the project's auto memory: this project's sessions only
    project_dirs=(".claude/projects",),
    importable=(
        ".claude/settings.json",
        ".claude/CLAUDE.md",
        ".claude/commands",
        ".claude/agents",
        ".claude/output-styles",
        ".claude/skills",
        ".claude/keybindings.json",
    ),
)

CODEX = AgentProfile(
    name="codex",
    executable="codex",
    install_hint="npm install -g @openai/codex",
    candidates=(
        "~/.npm-global/bin/codex",
        "~/.volta/bin/codex",
        "~/.nvm/versions/node/*/bin/codex",
        "/usr/local/bin/codex",
    ),
    # api.openai.com: the API; auth.openai.com and chatgpt.com: "Sign in with ChatGPT" and its token refresh.
    default_hosts=("api.openai.com", "auth.openai.com", "chatgpt.com"),
    base_url_vars=("OPENAI_BASE_URL",),
    passthrough=(
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_ORGANIZATION",
        "OPENAI_PROJECT_ID",
        "CODEX_API_KEY",
    ),
    env=(("CODEX_HOME", "~/.codex"),),
    state=(".codex",),
    keep=(
        Keep(".codex/auth.json", form="json", keys=("OPENAI_API_KEY", "tokens", "last_refresh", "auth_mode")),
        Keep(".codex/history.jsonl", scope="project", limit=16 << 20),
    ),
    project_dirs=(".codex/sessions",),  # rollouts: `codex resume`
    importable=(".codex/config.toml", ".codex/AGENTS.md", ".codex/prompts"),
)

GEMINI = AgentProfile(
    name="gemini",
    executable="gemini",
    install_hint="npm install -g @google/gemini-cli",
    candidates=(
        "~/.npm-global/bin/gemini",
        "~/.volta/bin/gemini",
        "~/.nvm/versions/node/*/bin/gemini",
        "/usr/local/bin/gemini",
    ),
    # generativelanguage: the Gemini API; cloudcode-pa and oauth2: "Login with Google" and its refresh.
    default_hosts=("generativelanguage.googleapis.com", "cloudcode-pa.googleapis.com", "oauth2.googleapis.com"),
    base_url_vars=("GOOGLE_GEMINI_BASE_URL",),
    passthrough=(
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GEMINI_MODEL",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GENAI_USE_VERTEXAI",
    ),
    env=(("GEMINI_CLI_NO_RELAUNCH", "true"),),
    state=(".gemini",),
    keep=(
        # "Login with Google": the OAuth tokens, the account, and which auth method was chosen (nothing else of
        # settings.json: mcpServers, tools.discoveryCommand, hooks, ... run code)
        Keep(
            ".gemini/oauth_creds.json",
            form="json",
            keys=("access_token", "refresh_token", "scope", "token_type", "id_token", "expiry_date"),
        ),
        Keep(".gemini/google_accounts.json", form="json", keys=("active", "old")),
        Keep(".gemini/settings.json", form="json", keys=("security.auth.selectedType",)),
        Keep(".gemini/projects.json", scope="project"),
    ),
    project_dirs=(".gemini/tmp",),  # chats, checkpoints and shell history of this project
    importable=(".gemini/settings.json", ".gemini/GEMINI.md", ".gemini/commands"),
)

AIDER = AgentProfile(
    name="aider",
    executable="aider",
    install_hint="python -m pip install aider-install && aider-install   (or: uv tool install aider-chat)",
    candidates=("~/.local/bin/aider",),
    # aider talks to whichever provider it has a key for.
    key_hosts=(
        ("ANTHROPIC_API_KEY", "api.anthropic.com"),
        ("OPENAI_API_KEY", "api.openai.com"),
        ("GEMINI_API_KEY", "generativelanguage.googleapis.com"),
        ("OPENROUTER_API_KEY", "openrouter.ai"),
        ("DEEPSEEK_API_KEY", "api.deepseek.com"),
    ),
    base_url_vars=("OPENAI_API_BASE", "ANTHROPIC_BASE_URL"),
    passthrough=(
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "OPENROUTER_API_KEY",
        "DEEPSEEK_API_KEY",
        "OPENAI_API_BASE",
        "ANTHROPIC_BASE_URL",
        "AIDER_*",
    ),
    # No update checks or analytics from inside the sandbox (their hosts are not allowed anyway).
    env=(("AIDER_CHECK_UPDATE", "false"), ("AIDER_ANALYTICS", "false")),
    state=(".aider",),
    # OpenRouter's OAuth key; aider loads this file as environment, so only that variable is kept (AIDER_* there
    # would set lint-cmd/test-cmd)
    keep=(Keep(".aider/oauth-keys.env", form="env", keys=("OPENROUTER_API_KEY",)),),
    importable=(".aider.conf.yml",),
)

PROFILES: Mapping[str, AgentProfile] = {p.name: p for p in (CLAUDE, CODEX, GEMINI, AIDER)}


def profile(name: str) -> AgentProfile:
    from rcc.errors import UsageError

    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown agent {name!r}", hint="agents: " + ", ".join(PROFILES)) from None


def _truthy(v: str | None) -> bool:
    return v is not None and v.strip().lower() not in ("", "0", "false", "no", "off")


def url_host_rule(url: str, var: str) -> str:
    """The allow rule for the host a base URL names: `host` for the default port of its scheme (rules allow
    80 and 443 without a port), `host:port` otherwise. Never splits on ':' by hand (IPv6)."""
    from urllib.parse import urlsplit  # only when a base URL is set: keeps start-up light

    try:
        u = urlsplit(url.strip())
        port = u.port
    except ValueError as e:
        raise ConfigError(f"${var}", "", f"not a valid URL: {url!r} ({e})") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"${var}", "", f"not an http(s) URL with a host: {url!r}")
    host = u.hostname
    if ":" in host:
        host = f"[{host}]"
    default = 443 if u.scheme == "https" else 80
    return host if port in (None, default) else f"{host}:{port}"


def _region(p: Provider, env: Mapping[str, str]) -> str:
    for v in p.region_vars:
        if env.get(v):
            return env[v].strip()
    return p.default_region


def active_provider(profile: AgentProfile, env: Mapping[str, str]) -> Provider | None:
    for p in profile.providers:
        if _truthy(env.get(p.switch)):
            return p
    return None


def endpoints(profile: AgentProfile, env: Mapping[str, str]) -> tuple[str, ...]:
    """The host rules this agent needs, from its own environment variables (pure)."""
    out: list[str] = []
    prov = active_provider(profile, env)
    if prov is not None:
        if prov.base_url_var and env.get(prov.base_url_var):
            out.append(url_host_rule(env[prov.base_url_var], prov.base_url_var))
        else:
            region = _region(prov, env)
            if not region or not all(c.isalnum() or c == "-" for c in region):
                raise ConfigError(f"${prov.region_vars[0]}", "", f"not a region name: {region!r}")
            dash = "" if region == "global" else f"{region}-"
            out += [h.replace("{region-}", dash).replace("{region}", region) for h in prov.hosts]
    else:
        urls = [(v, env[v]) for v in profile.base_url_vars if env.get(v)]
        if urls:
            out += [url_host_rule(u, v) for v, u in urls]
        else:
            out += profile.default_hosts
        out += [host for var, host in profile.key_hosts if env.get(var)]
    return tuple(dict.fromkeys(out))


def passthrough(profile: AgentProfile, env: Mapping[str, str]) -> tuple[str, ...]:
    """Variable names/patterns the agent may receive: its own, plus the active provider's credentials."""
    prov = active_provider(profile, env)
    return (*profile.passthrough, *(prov.passthrough if prov else ()))


def fixed_env(profile: AgentProfile, home: str) -> tuple[tuple[str, str], ...]:
    """The profile's fixed variables with a leading `~` made the sandbox's home."""
    return tuple((k, home + v[1:] if v == "~" or v.startswith("~/") else v) for k, v in profile.env)
