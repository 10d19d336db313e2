"""`rcc setup`: prepare this machine. Three parts that never mix, each in its own module:

- `rcc setup` (as yourself; here): the config directory, a commented default config, the state directories.
  Idempotent: existing files are never overwritten.
- `sudo rcc setup --firewall [--persist] [--dry-run] [--uninstall]`: rcc's kernel firewall (defence in depth,
  see rcc.firewall; rcc.commands.setup_firewall). The only privileged code in rcc: render (pure), validate,
  apply atomically (rcc.firewall.apply runs nft and pfctl), record.
- `[sudo] rcc setup --container [--engine podman|docker] [--mirror URL]`: the container backend's base image,
  built from the distribution's packages by root (rcc.backends.container_image.base), imported by each user
  (container_base below only hands over to it).

rcc never runs sudo itself: without root, the firewall part stops and says the exact command to run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from rcc import paths
from rcc.errors import ExitCode, RccError, UsageError
from rcc.paths import missing_setup, self_command  # noqa: F401 (missing_setup re-exported; `rcc run` calls it from rcc.paths)

USAGE = """\
usage: rcc setup [--dry-run]
       sudo rcc setup --firewall [--persist] [--proxy-port PORT]... [--dry-run] [--uninstall] [--root DIR]
       [sudo] rcc setup --container [--engine podman|docker] [--mirror URL]

  (no options)        create ~/.config/rcc/config.toml (commented defaults) and rcc's state directories
  --firewall          install rcc's kernel firewall (nftables table inet rcc; pf anchor on macOS); needs root
  --persist           also load it at boot (systemd unit rcc-firewall.service)
  --proxy-port PORT   the proxy port sandboxes may reach (default 3128; repeat for several)
  --dry-run           print exactly what would be written and applied, change nothing (no root needed)
  --uninstall         with --firewall: remove exactly what `--firewall` added
  --root DIR          write the firewall's files under DIR instead of / (image builds; the ruleset is
                      still applied to the running kernel)
  --container         the container backend's base image (no registry needed): as root, build it from the
                      Debian packages apt uses (debootstrap, about 2 minutes once) and import it; as a normal
                      user, import the tarball root saved into your own (rootless) image store
  --engine ENGINE     with --container: podman (default) or docker
  --mirror URL        with --container: the Debian mirror (default: the one apt uses)
"""


_HINT = "run `rcc setup --help`"


@dataclass(frozen=True)
class SetupOptions:
    firewall: bool = False
    persist: bool = False
    dry_run: bool = False
    uninstall: bool = False
    proxy_ports: tuple[int, ...] = ()
    root: str = "/"
    container: bool = False
    engine: str = "podman"
    mirror: str = ""


@dataclass(frozen=True)
class SetupContext:
    """Everything setup reads from the machine, passed in (tests build their own)."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    euid: int = field(default_factory=os.geteuid)
    platform: str = sys.platform
    nft_prefix: tuple[str, ...] = ("nft",)
    pfctl: str = "/sbin/pfctl"  # macOS; tests pass a stand-in


def parse_args(argv: list[str]) -> SetupOptions:
    opts: dict[str, object] = {}
    ports: list[int] = []
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            raise _Help
        if arg in ("--firewall", "--persist", "--dry-run", "--uninstall", "--container"):
            opts[arg[2:].replace("-", "_")] = True
        elif arg in ("--engine", "--mirror") or arg.startswith(("--engine=", "--mirror=")):
            name, eq, inline = arg.partition("=")
            got = inline if eq else next(it, None)
            if name == "--engine" and got not in ("podman", "docker"):
                raise UsageError(f"--engine is podman or docker, got {got!r}", _HINT)
            if name == "--mirror" and not (got or "").startswith(("http://", "https://", "file:/")):
                raise UsageError(f"--mirror needs a Debian mirror URL, got {got!r}", _HINT)
            opts[name[2:]] = got
        elif arg == "--proxy-port" or arg.startswith("--proxy-port="):
            value = arg.split("=", 1)[1] if "=" in arg else next(it, None)
            if value is None or not value.isdigit():
                raise UsageError(f"--proxy-port needs a port number, got {value!r}", _HINT)
            ports.append(int(value))
        elif arg == "--root" or arg.startswith("--root="):
            value = arg.split("=", 1)[1] if "=" in arg else next(it, None)
            if not value or not os.path.isabs(value):
                raise UsageError(f"--root needs an absolute directory, got {value!r}", _HINT)
            opts["root"] = value
        else:
            raise UsageError(f"rcc setup: unknown option {arg!r}", _HINT)
    o = SetupOptions(proxy_ports=tuple(ports), **opts)  # type: ignore[arg-type]
    if o.container and (o.firewall or o.dry_run):
        raise UsageError("--container goes alone (with --engine/--mirror)", _HINT)
    if not o.container and ("engine" in opts or "mirror" in opts):
        raise UsageError("--engine and --mirror go with --container", _HINT)
    if not o.firewall and (o.persist or o.uninstall or o.proxy_ports or o.root != "/"):
        raise UsageError("--persist, --uninstall, --proxy-port and --root go with --firewall", _HINT)
    if o.uninstall and (o.persist or o.proxy_ports):
        raise UsageError("--uninstall removes everything rcc added; it takes no --persist/--proxy-port", _HINT)
    return o


class _Help(Exception):
    pass


def command(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
    except _Help:
        sys.stdout.write(USAGE)
        return ExitCode.OK
    ctx = SetupContext()
    lines = run(opts, ctx)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return ExitCode.OK


def run(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    if opts.container:
        return container_base(opts, ctx)
    if opts.firewall:
        from rcc.commands.setup_firewall import install_firewall, uninstall_firewall

        if opts.uninstall:
            return uninstall_firewall(opts, ctx)
        return install_firewall(opts, ctx)
    return user_setup(opts, ctx)


# ---------------------------------------------------------------- the unprivileged part


def user_setup(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    if ctx.euid == 0 and ctx.env.get("SUDO_USER"):
        # Under sudo, HOME may still be the user's: files created here would belong to root.
        raise RccError(
            "`rcc setup` prepares your own account; do not run it with sudo",
            hint="run `rcc setup` as yourself; only `sudo rcc setup --firewall` needs root",
            code=ExitCode.USAGE,
        )
    cfg_dir, state = paths.config_dir(ctx.env), paths.state_dir(ctx.env)
    cfg_file = paths.user_config_file(ctx.env)
    steps: list[tuple[str, str]] = [
        ("dir", cfg_dir),
        ("config", cfg_file),
        ("dir", state),
        ("dir", os.path.join(state, "agents")),
    ]
    out: list[str] = []
    verb = "would create" if opts.dry_run else "created"
    for kind, path in steps:
        if os.path.lexists(path):
            if kind == "dir" and not os.path.isdir(path):
                raise RccError(f"{path} exists and is not a directory", code=ExitCode.SETUP)
            out.append(f"ok       {path} (exists, left as it is)")
            continue
        if not opts.dry_run:
            if kind == "dir":
                # 0700: the config and the audit log say what the agent was allowed to do; the trust store
                # decides which project files are obeyed. Other local users must not edit them.
                os.makedirs(path, mode=0o700, exist_ok=True)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(default_config_text())
        out.append(f"{verb:<8} {path}")
    out.append("next: `rcc doctor` checks everything else this machine needs")
    out.append(f"optional, needs root once: `sudo {self_command(ctx.env)} setup --firewall` (see `rcc doctor`)")
    return out


def container_base(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    """The container base image in this account's store: root builds the tarball (once) and imports it; a normal
    user imports the tarball root saved (rootless podman keeps one store per user)."""
    import shutil

    from rcc.backends.container_image import base

    engine_path = shutil.which(opts.engine)
    if not engine_path:
        raise RccError(f"{opts.engine} is not installed", hint="see `rcc doctor`", code=ExitCode.DEPENDENCY)
    tarball = base.tarball_path(base.DEFAULT_CACHE)
    if ctx.euid == 0:
        tarball = base.build_tarball(base.DEFAULT_CACHE, opts.mirror or base.apt_mirror(base.read_apt_sources()))
    elif opts.mirror:
        raise UsageError("--mirror is for the build, which root does: `sudo rcc setup --container`", _HINT)
    tag = base.import_tarball(engine_path, opts.engine, tarball)
    return [f"ok       {opts.engine} image {tag}", "the agent image is built on top of it on first use"]


def _builtin(items: tuple[str, ...], width: int = 108) -> str:
    """A built-in list as comment lines, wrapped: `#   built in: a, b, c`."""
    lines, cur = [], "#   built in:"
    for n, item in enumerate(items):
        word = f" {item}" + ("," if n < len(items) - 1 else "")
        if len(cur) + len(word) > width:
            lines.append(cur)
            cur = "#            "
        cur += word
    return "\n".join([*lines, cur])


def default_config_text() -> str:
    """The commented config `rcc setup` writes: every key, commented out, with its default explained.
    Lists *add* to rcc's built-in entries (rcc.config merges layers that way), so the built-ins are shown as
    comments, not as values to copy."""
    from rcc import policy

    return f"""\
# rcc user config. Every key is commented out at its default; uncomment a line to change it.
# Lists ADD to rcc's built-in entries (shown as "built in:"); they never remove one.
# A project may add its own .rcc.toml; rcc obeys the parts that widen access only after `rcc trust`.
# `rcc policy show` prints the effective policy and where each value came from; `rcc doctor` checks this file.

# Which sandbox runs commands: "bwrap" (bubblewrap, the default on Linux), "podman" or "docker".
# backend = "bwrap"

[filesystem]
# The project directory is read-write; the rest of your home is invisible unless listed here.
# Extra read-only toolchain directories (absolute or ~/...), mounted when they exist:
# toolchains = []
{_builtin(policy.DEFAULT_TOOLCHAINS)}
# false: drop the built-in toolchain list above (yours still apply).
# default_toolchains = true
# Extra paths the sandbox may read:
# read_only = []
# Extra paths the sandbox may write:
# read_write = []
# Extra paths that are never visible, even inside an allowed directory:
# hide = []
{_builtin(policy.DEFAULT_SECRETS)}
# Extra project-relative paths that are never writable, whether or not they exist (they make your own tools
# run code later: git hooks, editor and agent settings, shell rc files):
# protect = []
{_builtin(policy.DEFAULT_PROTECTED)}

[environment]
# Extra variables passed through from your environment (NAME, or PREFIX_* with at least 3 characters
# before the *). Everything else is dropped:
# passthrough = []
{_builtin(policy.DEFAULT_ENV_PASS)}
# Variables set to a fixed value inside the sandbox:
# set = {{ }}

[network]
# "allowlist": only the hosts allowed below, through rcc's egress proxy. "none": no network at all.
# mode = "allowlist"
# Hosts the sandbox may reach: names ("github.com"), wildcards ("*.github.com"), presets ("@pypi"):
# allow = []
# Hosts refused even when an allow rule matches:
# deny = []
# Fixed name -> address answers for the proxy (like /etc/hosts), e.g. {{ "git.internal" = "10.0.0.5" }}:
# resolve = {{ }}
# A host no rule covers: "deny" at once, or "ask": held while a `rcc watch` on a terminal is attached, for you to
# allow once, for the session or always (interactive sessions only; unattended runs are still denied at once):
# on_unknown = "deny"
# Seconds a held connection waits for your answer in `rcc watch` (1-600):
# ask_timeout = 60

[container]
# The image the podman/docker backend runs ("": rcc's own agent image, built on first use):
# image = ""
"""
