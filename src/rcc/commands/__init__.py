"""rcc's commands: the table of them, and the commands that are not a session.

How the parts fit:
- COMMANDS (below) is the one table of rcc's commands and their options. rcc.cli dispatches from it and prints
  `rcc --help` from it; `rcc completion bash|zsh|fish` and the man page (rcc.commands.completion) are generated
  from it. `rcc run`'s options (shared by the agent commands and `rcc shell`) are rcc.keys.RUN_OPTIONS, the same
  table rcc.runner parses them with.
- Each command module (doctor, setup, policy, trust, completion; the log command is rcc.net.logcmd, the session
  commands rcc.runner and rcc.agents.cli) exposes `command(argv) -> int` and raises rcc.errors.RccError: it
  returns a result and never chooses how rcc exits. rcc.cli is the one place that prints an error and exits.
- Commands sit at the top of the layers (docs/architecture.md): they may import any subsystem; no subsystem
  imports a command.

Invariant: this module stays a table (stdlib-free apart from rcc.keys and rcc.record): `rcc run` imports it.
"""

from __future__ import annotations

from rcc.keys import RUN_OPTIONS, Option
from rcc.record import record

AGENTS: tuple[str, ...] = ("claude", "codex", "gemini", "aider")


@record
class Command:
    name: str
    module: str  # where `func(argv) -> int` lives ("" = built into rcc.cli)
    func: str
    synopsis: str  # after `rcc NAME`
    summary: str
    options: tuple[Option, ...] = ()
    words: tuple[str, ...] = ()  # sub-commands or the one positional choice (completion, policy's `show`)
    takes_command: bool = False  # the rest of the line is a command (completion: complete commands after it)


_HELP = Option("--help", "", "this help")

AGENT_OPTIONS: tuple[Option, ...] = (
    Option(
        "--import-settings",
        "",
        "copy your settings (e.g. ~/.claude/settings.json, CLAUDE.md) into rcc's settings for this agent first",
    ),
    Option(
        "--pass-api-key",
        "",
        "claude: ANTHROPIC_API_KEY itself goes into the sandbox (default: a placeholder rcc's proxy swaps)",
    ),
    Option("--rcc-help", "", "rcc's help for the agent commands"),
    *(o for o in RUN_OPTIONS if o.flag not in ("-h", "--help")),
)

SETUP_OPTIONS: tuple[Option, ...] = (
    Option("--firewall", "", "install rcc's kernel firewall (nftables; pf on macOS); needs root"),
    Option("--persist", "", "with --firewall: also load it at boot"),
    Option("--proxy-port", "PORT", "the proxy port sandboxes may reach (default 3128; repeatable)"),
    Option("--dry-run", "", "print exactly what would be written and applied, change nothing"),
    Option("--uninstall", "", "with --firewall: remove exactly what --firewall added"),
    Option("--root", "DIR", "write the firewall's files under DIR instead of /", complete="dir"),
    Option("--container", "", "the container backend's base image"),
    Option("--engine", "ENGINE", "with --container: podman (default) or docker", complete="podman docker"),
    Option("--mirror", "URL", "with --container: the Debian mirror (default: the one apt uses)"),
    _HELP,
)

COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        "rcc.runner",
        "command",
        "[OPTIONS] [--] COMMAND [ARGS...]",
        "run COMMAND in the sandbox (project: current directory)",
        RUN_OPTIONS,
        takes_command=True,
    ),
    *(
        Command(
            a,
            "rcc.agents.cli",
            "agent_command",
            "[OPTIONS] [--] [AGENT ARGS...]",
            f"run {a} in the sandbox with its profile",
            AGENT_OPTIONS,
        )
        for a in AGENTS
    ),
    Command(
        "shell",
        "rcc.agents.cli",
        "shell_command",
        "[OPTIONS] [--agent NAME]",
        "an interactive shell under the same policy",
        (Option("--agent", "NAME", "the agent whose profile applies", complete=" ".join(AGENTS)), *RUN_OPTIONS),
    ),
    Command(
        "policy",
        "rcc.commands.policy",
        "command",
        "show [--json] [--project DIR] | suggest [--session ID|last] [--write [user|project]]",
        "the effective policy and where each value came from; the allow list a --learn session needed",
        (
            Option("--json", "", "as JSON"),
            Option("--project", "DIR", "the project directory", complete="dir"),
            Option("--session", "ID|last", "suggest: the learn-mode session (default: the newest)", complete="last"),
            Option("--write", "", "suggest: add it to network.allow in your config (or the project's)"),
        ),
        words=("show", "suggest"),
    ),
    Command(
        "trust",
        "rcc.commands.trust",
        "command",
        "[--project DIR] [--show] [--revoke]",
        "trust this project's .rcc.toml (exact content)",
        (
            Option("--project", "DIR", "the project directory", complete="dir"),
            Option("--show", "", "print the file and whether it is trusted"),
            Option("--revoke", "", "stop trusting it"),
            _HELP,
        ),
    ),
    Command(
        "log",
        "rcc.net.logcmd",
        "command",
        "[--json] [--denied] [--session ID|last] [--limit N] [--follow]",
        "the egress audit log",
        (
            Option("--json", "", "one JSON object per line"),
            Option("--denied", "", "only denials"),
            Option("--session", "ID|last", "only this session ('last': the most recent one)", complete="last"),
            Option("--limit", "N", "only the newest N records"),
            Option("--follow", "", "then print new records as they come (Ctrl-C ends)"),
            Option("-f", "", "the same as --follow"),
            _HELP,
        ),
    ),
    Command(
        "review",
        "rcc.workspace.cli",
        "review_command",
        "[--session ID] [--stat]",
        "what a review-mode session changed (--review): the list, then the diff",
        (
            Option("--session", "ID", "the review (default: the newest of this project)"),
            Option("--stat", "", "the list only"),
            _HELP,
        ),
    ),
    Command(
        "apply",
        "rcc.workspace.cli",
        "apply_command",
        "[--session ID] [PATH...]",
        "write a review's changes (or those under PATH) into the project",
        (Option("--session", "ID", "the review (default: the newest of this project)"), _HELP),
    ),
    Command(
        "discard",
        "rcc.workspace.cli",
        "discard_command",
        "[--session ID]",
        "drop a review's changes",
        (Option("--session", "ID", "the review (default: the newest of this project)"), _HELP),
    ),
    Command(
        "sessions",
        "rcc.live.cli",
        "sessions_command",
        "[--json]",
        "the running sessions: id, project, command, connections allowed/denied",
        (Option("--json", "", "as JSON"), _HELP),
    ),
    *(
        Command(
            op,
            "rcc.live.cli",
            f"{op}_command",
            "RULE [--session ID|last] [--save]",
            f"{op} a host in a running session at once (--save: in your config too)",
            (
                Option("--session", "ID|last", "the session (default: the newest)", complete="last"),
                Option("--save", "", "also add it to network.allow/deny in your config"),
                _HELP,
            ),
        )
        for op in ("allow", "deny")
    ),
    Command(
        "watch",
        "rcc.live.watch",
        "command",
        "[--session ID|last]",
        "live view of a session's decisions; answer its questions in ask mode",
        (Option("--session", "ID|last", "the session (default: the newest)", complete="last"), _HELP),
    ),
    Command(
        "setup",
        "rcc.commands.setup",
        "command",
        "[--firewall [--persist] [--uninstall]] [--container [--engine ENGINE]] [--dry-run]",
        "prepare this machine (the firewall part needs sudo)",
        SETUP_OPTIONS,
    ),
    Command(
        "doctor",
        "rcc.commands.doctor",
        "command",
        "[--json] [--root DIR]",
        "check what rcc needs on this machine",
        (Option("--json", "", "as JSON"), Option("--root", "DIR", "look for the firewall's files under DIR"), _HELP),
    ),
    Command(
        "completion",
        "rcc.commands.completion",
        "command",
        "bash|zsh|fish|man",
        "print the shell completion script for SHELL (or the man page)",
        words=("bash", "zsh", "fish", "man"),
    ),
    Command("version", "", "", "", "print rcc's version"),
)

BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}


def usage() -> str:
    """`rcc --help`, from the table."""
    lines = ["usage: rcc COMMAND [OPTIONS] [--] [ARGS...]", "", "commands:"]
    shown: set[str] = set()
    for c in COMMANDS:
        if c.name in AGENTS:
            if AGENTS[0] in shown:
                continue
            shown.add(AGENTS[0])
            head = f"{'|'.join(AGENTS)} {c.synopsis}"
            summary = "run a coding agent in the sandbox"
        else:
            head = f"{c.name} {c.synopsis}".rstrip()
            summary = c.summary
        if len(head) > 33:
            lines += [f"  {head}", f"{'':37}{summary}"]
        else:
            lines.append(f"  {head:<35}{summary}")
    lines += ["", "run `rcc run --help` for the sandbox options.", ""]
    return "\n".join(lines)
