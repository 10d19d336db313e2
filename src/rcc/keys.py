"""The one description of rcc's config keys and of the `rcc run` options that set them.

Everything that knows a key reads it from here: parsing and validation (rcc.config: `kind`), the trust gate
(`widens`), merging into a Policy (`merge` and `field`), `rcc policy show`, the command-line parser
(rcc.runner: RUN_OPTIONS), `rcc run --help`, the shell completions and the man page (rcc.commands.completion).
A new key is one CONFIG_KEYS entry (plus a `kind` rcc.config can validate, if it is a new kind) and, when it
has a flag, one RUN_OPTIONS entry.

Invariants:
1. Pure data, stdlib-free: `rcc run` imports this module on its hot path.
2. Every RUN_OPTIONS entry with a `key` names a CONFIG_KEYS entry; a flag never bypasses validation (the
   parser hands its value to rcc.config.Flags.add, which validates it like a file's value).
3. `widens` = setting the key from an untrusted project file would widen access, so the trust gate drops it
   (network.mode = "none" is the one value-dependent exception, in rcc.config).
"""

from __future__ import annotations

from rcc.record import record


@record
class ConfigKey:
    """One config key: `[table] name = value` in a TOML file, `table.name` everywhere else."""

    name: str  # dotted: "network.allow"; top-level keys have no dot ("backend")
    kind: str  # the validator in rcc.config.validate
    widens: bool  # dropped from an untrusted project file
    merge: str  # "append": lists accumulate across layers; "update": tables merge per entry; "set": last wins
    target: str  # where it lands in the Policy: "network.allow", "container_image"; "" = handled by merge itself
    doc: str  # one line, for `rcc policy show`, docs and completions

    @property
    def table(self) -> str:
        return self.name.rpartition(".")[0]


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("backend", "backend", True, "set", "backend", "the sandbox: bwrap, seatbelt, podman or docker"),
    # "direct" from an untrusted project would undo the user's "review": dropped like any widening key
    ConfigKey(
        "workspace",
        "workspace",
        True,
        "set",
        "workspace",
        'how the project is seen: "direct" (written in place) or "review" (a layer; rcc review/apply)',
    ),
    ConfigKey(
        "filesystem.toolchains", "paths", True, "append", "filesystem.toolchains", "read-only toolchain directories"
    ),
    # false only narrows (true is the default), so an untrusted project may set it
    ConfigKey(
        "filesystem.default_toolchains", "bool", False, "set", "", "whether rcc's default toolchain list applies"
    ),
    ConfigKey("filesystem.read_only", "paths", True, "append", "filesystem.read_only", "extra read-only paths"),
    ConfigKey("filesystem.read_write", "paths", True, "append", "filesystem.read_write", "extra read-write paths"),
    ConfigKey("filesystem.hide", "paths", False, "append", "filesystem.hide", "paths never visible"),
    ConfigKey(
        "filesystem.protect",
        "relpaths",
        False,
        "append",
        "filesystem.protect",
        "project-relative paths never writable",
    ),
    ConfigKey(
        "environment.passthrough",
        "envnames",
        True,
        "append",
        "environment.passthrough",
        "variables (or PREFIX_*) passed from rcc's environment",
    ),
    ConfigKey("environment.set", "envtable", True, "update", "environment.set", "variables set in the sandbox"),
    # "none" narrows: rcc.config lets an untrusted project set that value
    ConfigKey("network.mode", "netmode", True, "set", "network.mode", '"allowlist" (the proxy) or "none"'),
    ConfigKey("network.allow", "hostrules", True, "append", "network.allow", "hosts the proxy lets through"),
    ConfigKey("network.deny", "hostrules", False, "append", "network.deny", "hosts denied (deny wins)"),
    ConfigKey("network.resolve", "resolve", True, "update", "network.resolve", "host -> address in the proxy"),
    # "ask" lets the user approve hosts from `rcc watch`: an untrusted project may not turn that on
    ConfigKey(
        "network.on_unknown",
        "onunknown",
        True,
        "set",
        "network.on_unknown",
        '"deny" (default), "ask" (hold it for `rcc watch`) or "learn" (let public hosts through, recorded)',
    ),
    ConfigKey(
        "network.ask_timeout",
        "asktimeout",
        False,
        "set",
        "network.ask_timeout",
        "seconds a held connection waits for an answer in `rcc watch` (1-600, default 60)",
    ),
    # opens the sandbox to the host (or, with an address, the network)
    ConfigKey(
        "network.publish",
        "publish",
        True,
        "append",
        "network.publish",
        "host ports forwarded into the sandbox",
    ),
    # opens host services to the sandbox
    ConfigKey(
        "network.host_services",
        "ports",
        True,
        "append",
        "network.host_services",
        "host loopback ports the sandbox may reach",
    ),
    # a credential the proxy injects for its hosts: it terminates TLS for them, so it needs trust
    ConfigKey(
        "credentials",
        "credentials",
        True,
        "update",
        "network.credentials",
        '[credentials.NAME] env = "VAR", hosts = [...]: VAR holds a placeholder inside; the proxy swaps in '
        "the real value for these hosts only",
    ),
    ConfigKey("container.image", "image", True, "set", "container_image", "the podman/docker image"),
    # A hostile project could lift the limits that keep the host alive: changing them needs trust.
    ConfigKey("limits.memory", "memsize", True, "set", "limits.memory", "memory limit (4G, 75%, none)"),
    ConfigKey("limits.processes", "count", True, "set", "limits.processes", "process limit (or none)"),
    ConfigKey("limits.cpu", "cpus", True, "set", "limits.cpu", "CPUs the session may use (or none)"),
    ConfigKey("limits.tmp", "tmpsize", True, "set", "limits.tmp", "size of each private tmpfs"),
)

KEYS: dict[str, ConfigKey] = {k.name: k for k in CONFIG_KEYS}
TABLES: tuple[str, ...] = tuple(dict.fromkeys(k.table for k in CONFIG_KEYS if k.table))


@record
class Option:
    """One command-line option of `rcc run` (and of the agent commands, which share them).

    `shape` says how the flag's text becomes the key's value: "item" a one-element list, "value" the text
    itself, "pair" HOST=ADDR into a table, "env" NAME (passthrough) or NAME=VALUE (set), "port" a port number,
    "const:TEXT" no argument and the value TEXT. `key` = "" for rcc's own options that are not policy.
    """

    flag: str
    metavar: str  # "" = takes no value
    help: str
    key: str = ""
    shape: str = "value"
    complete: str = ""  # what the shells complete the value with: "dir", "file", "presets" (@pypi ...), or words


BACKENDS = "bwrap seatbelt podman docker"

RUN_OPTIONS: tuple[Option, ...] = (
    Option("--project", "DIR", "the project directory (default: the current directory)", complete="dir"),
    Option(
        "--worktree",
        "NAME",
        "run in the git worktree NAME of the project, made on the host if missing (branch NAME, at\n"
        "<project>/../<project>-worktrees/NAME); several sessions run side by side, one per worktree",
    ),
    Option(
        "--review",
        "",
        "review mode: the project through a copy-on-write layer; the session's changes wait for\n"
        '`rcc review`, `rcc apply` or `rcc discard` (workspace = "review")',
        "workspace",
        "const:review",
    ),
    Option(
        "--allow",
        "RULE",
        "allow a host through the proxy: example.com, *.example.com, host:port, 10.0.0.1,\n"
        "[::1]:8080, or a preset like @pypi (repeatable)",
        "network.allow",
        "item",
        "presets",
    ),
    Option("--deny", "RULE", "deny a host (deny wins; repeatable)", "network.deny", "item", "presets"),
    Option(
        "--resolve",
        "HOST=ADDR",
        "resolve HOST to ADDR in the proxy (like curl --resolve; repeatable)",
        "network.resolve",
        "pair",
    ),
    Option(
        "--learn",
        "",
        "learn mode: let hosts no rule covers through (public addresses only; the guards stay on) and\n"
        'record them for `rcc policy suggest` (network.on_unknown = "learn")',
        "network.on_unknown",
        "const:learn",
    ),
    Option("--no-network", "", 'no proxy at all: loopback only (network.mode = "none")', "network.mode", "const:none"),
    Option("--network", "MODE", "allowlist or none (network.mode)", "network.mode", complete="allowlist none"),
    Option(
        "--publish",
        "[HOSTADDR:]HOSTPORT[:PORT]",
        "forward the host's HOSTADDR:HOSTPORT (default 127.0.0.1) to PORT inside the sandbox,\n"
        "e.g. a dev server: --publish 5173 (repeatable; network.publish)",
        "network.publish",
        "item",
    ),
    Option(
        "--host-service",
        "PORT",
        "let the sandbox reach the host's loopback service on PORT at its own 127.0.0.1:PORT,\n"
        "[::1]:PORT and localhost:PORT, e.g. postgres: --host-service 5432 (repeatable)",
        "network.host_services",
        "port",
    ),
    Option(
        "--memory",
        "SIZE",
        "memory limit for the session: 4G, 512M, 75% (of RAM; default) or none (limits.memory)",
        "limits.memory",
    ),
    Option("--processes", "N", "process limit (default 4096) or none (limits.processes)", "limits.processes"),
    Option("--cpu", "N", "CPUs the session may use, e.g. 2 or 0.5 (default none) (limits.cpu)", "limits.cpu"),
    Option(
        "--tmp",
        "SIZE",
        "size of each private tmpfs: /tmp, the home, /var/tmp, /dev/shm (default 2G) (limits.tmp)",
        "limits.tmp",
    ),
    Option("--ro", "PATH", "also mount PATH read-only (repeatable)", "filesystem.read_only", "item", "file"),
    Option("--rw", "PATH", "also mount PATH read-write (repeatable)", "filesystem.read_write", "item", "file"),
    Option("--hide", "PATH", "hide PATH even if a parent is visible (repeatable)", "filesystem.hide", "item", "file"),
    Option("--env", "NAME", "pass variable NAME (or PREFIX_*) from rcc's environment (repeatable)", "", "env"),
    Option("--env", "NAME=VALUE", "set NAME inside the sandbox (repeatable)", "", "env"),
    Option(
        "--backend",
        "NAME",
        "bwrap (default on Linux), seatbelt (default on macOS), podman or docker",
        "backend",
        complete=BACKENDS,
    ),
    Option(
        "--image", "NAME", "the container image for podman/docker (default: rcc's own agent image)", "container.image"
    ),
    Option("--dry-run", "", "print the sandbox plan and the backend command as JSON; run nothing"),
    Option("-h", "", "this help"),
    Option("--help", "", "this help"),
)

# flag -> the option (the first, for --env which has two help lines)
RUN_FLAGS: dict[str, Option] = {}
for _o in RUN_OPTIONS:
    RUN_FLAGS.setdefault(_o.flag, _o)
del _o


def options_help(options: tuple[Option, ...], width: int = 21) -> str:
    """The `options:` block of a help text, two columns; -h and --help share one line."""
    lines = []
    for o in options:
        if o.flag == "-h":
            continue
        label = "-h, --help" if o.flag == "--help" else f"{o.flag} {o.metavar}".rstrip()
        first, *rest = o.help.split("\n")
        if len(label) > width - 2:
            lines.append(f"  {label}")
            lines.append(" " * (width + 2) + first)
        else:
            lines.append(f"  {label:<{width}}" + first)
        lines.extend(" " * (width + 2) + r for r in rest)
    return "\n".join(lines) + "\n"
