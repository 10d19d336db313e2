"""Render a Plan into a macOS Seatbelt profile (SBPL). Pure: no disk access; golden-tested on any OS.

The bwrap backend builds a private filesystem view from the plan's mounts. Seatbelt cannot remap paths: it
allows or denies each operation on the *host* path the kernel resolved. So each mount becomes rules on its host
path (`Bind.src`), and what bwrap does by mounting becomes a rule:

  Bind ro / rw           -> allow file-read* / file-read* + file-write* on (subpath src)
  Bind under a home      -> (the backend links it into the session's private home; the rule is on src)
  Mask                   -> deny file-read* file-write* on (literal) + (subpath) of its host path
  ro Bind inside a rw one (a never-writable path, placeholder or not)
                         -> deny file-write* on (literal) + (subpath): covers a path that does not exist yet,
                            so no placeholder is needed; and deny file-write-create/-unlink on each ancestor
                            up to the writable root, so `mv .git x` or a parent swapped for a symlink fails
  rw Bind inside a rw one (a pinned parent)
                         -> deny file-write-unlink on (literal): it cannot be renamed or removed
  Tmpfs /tmp, the home   -> the session's own TMPDIR and HOME (Layout), the host's /tmp and home denied

Invariants (tests/seatbelt/ checks them on every generated profile):
1. `(deny default)` first; Seatbelt applies the LAST rule that matches an operation, so every deny that must
   win (secrets, never-writable paths, rcc's own files, lsopen, appleevent-send) comes after the allows.
2. Never `(with no-sandbox)`; never lsopen or appleevent-send allowed; `ip` filters name only `localhost`
   (never a `(local ip ...)` filter on outbound: it matches every connection).
3. Every path is absolute and canonical: /tmp -> /private/tmp, /var -> /private/var, /etc -> /private/etc; no
   `//`, `/./` or `..` (such filters silently match nothing); no control characters; every string at most
   MAX_STRING bytes. A path that breaks this is an error (exit 78), never a rule left out.
4. The rendered text depends only on its inputs (the Plan and the Layout), in the plan's order.
"""

from __future__ import annotations

from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, FileData, Mask, Plan
from rcc.record import record

MAX_STRING = 1024  # bytes; Seatbelt's limit is reported as 1025 with the terminator (srt): stay under it

# macOS's top-level symlinks into /private: Seatbelt sees only the resolved path.
_PRIVATE = ("/tmp", "/var", "/etc")

# The home directories and shared places of every user, and the user-wide temp dirs: the host's, never the
# sandbox's (Linux: a private empty home and private /tmp over the same paths).
HOST_PRIVATE_ROOTS = (
    "/Users",
    "/Volumes",
    "/private/var/root",  # root's home
    "/private/tmp",
    "/private/var/tmp",
    "/private/var/folders",
)

# mach services a plain command-line program needs, each with the reason. Nothing else is reachable: no
# keychain (com.apple.SecurityServer, securityd, secd), no launchservicesd/lsd (open apps outside the sandbox),
# no trustd (see docs/macos.md: Go programs that verify TLS through the system trust store fail), no
# cfprefsd (the user's preferences are read through it, past the file rules).
MACH_SERVICES: tuple[tuple[str, str], ...] = (
    ("com.apple.system.opendirectoryd.libinfo", "getpwuid/getgrgid: git, ssh, whoami, Python's getpass"),
    ("com.apple.system.notification_center", "libnotify: libc's timezone and logging state changes"),
    ("com.apple.system.logger", "asl: a program's own log lines (write-only)"),
    ("com.apple.logd", "os_log: a program's own log lines (write-only)"),
)

# Character devices a shell and its tools open for writing. Reads of /dev are covered by the system rule.
_DEV_WRITE = ("/dev/null", "/dev/zero", "/dev/tty", "/dev/dtracehelper", "/dev/ptmx")
_TTY_REGEX = "^/dev/ttys[0-9]+$"
_FD_REGEX = "^/dev/fd/[0-9]+$"


@record
class Layout:
    """Where the session's own files live on the host (made by the backend before start, removed after).
    Host paths as given; the profile uses their canonical() form.

    All of them are under rcc's state dir, which the profile denies as a whole; only home and tmp are
    re-allowed. `profile` is the file sandbox-exec reads (mode 0600); the sandbox can neither read nor write it."""

    state_dir: str
    config_dir: str
    session_dir: str  # <state>/seatbelt/<session id>
    home: str  # the sandbox's HOME
    tmp: str  # the sandbox's TMPDIR
    files: str  # FileData contents (e.g. git's excludes file)
    profile: str
    proxy_port: int  # the port rcc's proxy listens on, on the host's loopback (0: no network)
    tag: str  # in every deny's message: finds this session's denials in the unified log


def layout_for(plan: Plan, state_dir: str, config_dir: str, proxy_port: int) -> Layout:
    sid = plan.session_id or "session"
    session_dir = f"{state_dir.rstrip('/')}/seatbelt/{sid}"
    return Layout(
        state_dir=state_dir,
        config_dir=config_dir,
        session_dir=session_dir,
        home=f"{session_dir}/home",
        tmp=f"{session_dir}/tmp",
        files=f"{session_dir}/files",
        profile=f"{session_dir}/profile.sb",
        proxy_port=proxy_port if plan.net.mode == "proxy" else 0,
        tag=f"rcc-sbx-{sid}",
    )


def canonical(path: str) -> str:
    """The path as Seatbelt matches it. Refuses what would make a filter silently match nothing."""
    if not path.startswith("/"):
        raise _bad(path, "is not absolute")
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        raise _bad(path, "contains a control character")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _bad(path, "contains '..'")
    out = "/" + "/".join(parts)
    for p in _PRIVATE:
        if out == p or out.startswith(p + "/"):
            out = "/private" + out
    if len(out.encode()) > MAX_STRING:
        raise _bad(path[:80] + "...", f"is longer than Seatbelt's limit ({MAX_STRING} bytes)")
    return out


def _bad(path: str, why: str) -> RccError:
    return RccError(
        f"cannot express {path!r} in a Seatbelt profile: it {why}",
        hint="name the path differently (rcc never leaves a rule out of the profile)",
        code=ExitCode.CONFIG,
    )


def quote(s: str) -> str:
    """An SBPL (Scheme) string literal."""
    if len(s.encode()) > MAX_STRING:
        raise _bad(s[:80] + "...", f"is longer than Seatbelt's limit ({MAX_STRING} bytes)")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _ancestors(path: str, stop: str) -> list[str]:
    """Directories strictly between `stop` and `path` (both excluded), outermost first."""
    out: list[str] = []
    cur = path.rsplit("/", 1)[0]
    while _under(cur, stop) and cur != stop:
        out.append(cur)
        cur = cur.rsplit("/", 1)[0]
    return out[::-1]


def _all_ancestors(path: str) -> list[str]:
    out: list[str] = []
    cur = path
    while cur != "/":
        cur = cur.rsplit("/", 1)[0] or "/"
        out.append(cur)
    return out[::-1]


def _lit_sub(paths: list[str]) -> str:
    return " ".join(f"(literal {quote(p)}) (subpath {quote(p)})" for p in paths)


def home_links(plan: Plan, layout: Layout) -> list[tuple[str, str]]:
    """(host path of a symlink, its target): the binds the plan puts inside the sandbox's home. Seatbelt cannot
    mount, so the backend makes each a symlink in the session's private home (a bind nested in another one,
    like ~/.claude/projects in ~/.claude: a symlink at its mount point inside the outer bind's source). The
    profile's rules are on the targets (the kernel resolves the link before Seatbelt checks)."""
    out: list[tuple[str, str]] = []
    seen: list[Bind] = []
    for m in plan.mounts:
        if not (isinstance(m, Bind) and _under(m.dest, plan.home) and m.dest != plan.home):
            continue
        if _under(m.dest, plan.project):
            continue  # the project (and what is protected in it) is used at its real path
        outer = [b for b in seen if _under(m.dest, b.dest) and m.dest != b.dest]
        if outer:
            o = outer[-1]
            if o.src != o.dest or m.src != m.dest:
                out.append((o.src.rstrip("/") + m.dest[len(o.dest.rstrip("/")) :], m.src))
        else:
            out.append((layout.home + m.dest[len(plan.home.rstrip("/")) :], m.src))
        seen.append(m)
    return out


def _rehome(value: str, old: str, new: str) -> str:
    """A path (or a PATH-like list of them) under the real home, moved to the session's private home."""
    parts = value.split(":")
    if not all(p.startswith("/") for p in parts):
        return value
    return ":".join(new + p[len(old.rstrip("/")) :] if _under(p, old) else p for p in parts)


def host_path(plan: Plan, dest: str) -> str | None:
    """Where `dest` in the sandbox's view is on the host: through the last bind that covers it."""
    for m in reversed(plan.mounts):
        if isinstance(m, Bind) and _under(dest, m.dest):
            return m.src + dest[len(m.dest.rstrip("/")) :] if dest != m.dest else m.src
    return None


def env_for(plan: Plan, layout: Layout) -> dict[str, str]:
    """The plan's environment (already the allowlist) with the session's own HOME and TMPDIR, FileData paths
    replaced by the session's copies, and the proxy's real port."""
    env = {k: _rehome(v, plan.home, layout.home) for k, v in plan.env}
    env["HOME"] = layout.home
    env["TMPDIR"] = layout.tmp + "/"
    files = {m.dest: f"{layout.files}/{_file_name(m.dest)}" for m in plan.mounts if isinstance(m, FileData)}
    for k, v in env.items():
        if v in files:
            env[k] = files[v]
    if layout.proxy_port and plan.net.proxy_port != layout.proxy_port:
        from rcc.net.env import proxy_env

        for k, v in proxy_env(layout.proxy_port).items():
            if k in env:
                env[k] = v
    return env


def _file_name(dest: str) -> str:
    return dest.strip("/").replace("/", "_")


def render_profile(plan: Plan, layout: Layout) -> str:
    tag = quote(layout.tag)
    msg = f"(with message {tag})"
    out: list[str] = [
        ";; rcc's Seatbelt profile for one session, rendered from its plan (rcc/backends/seatbelt_profile.py).",
        ";; The LAST matching rule decides: allows first, then the denies that must win.",
        "(version 1)",
        f"(deny default {msg})",
        "",
        ";; processes: run anything visible; signals and process info only within this sandbox",
        "(allow process-fork)",
        "(allow process-exec)",
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow ipc-posix-sem)  ; Python multiprocessing's locks",
        "(allow mach-host*)  ; host_processor_info: Node's os.cpus() (Claude Code, Gemini CLI)",
        "(allow pseudo-tty)",
        ";; never allowed: file-link (a hard link to a denied file would be readable at an allowed path)",
    ]
    for name, why in MACH_SERVICES:
        out.append(f"(allow mach-lookup (global-name {quote(name)}))  ; {why}")

    # -- files: the system readable; every user's home and temp dirs, and rcc's own files, not
    home = canonical(plan.home)
    project = canonical(plan.project)
    lay_home, lay_tmp, lay_files = canonical(layout.home), canonical(layout.tmp), canonical(layout.files)
    lay_profile = canonical(layout.profile)
    denied_roots = [*HOST_PRIVATE_ROOTS, home, canonical(layout.state_dir), canonical(layout.config_dir)]
    out += [
        "",
        ";; files: the system read-only",
        "(allow file-read*)",
        ";; every home, user temp dir and external volume; rcc's own config and state",
        f"(deny file-read* {_lit_sub(_dedup(denied_roots))} {msg})",
    ]
    hidden = _dedup([canonical(h) for h in plan.hidden])
    if hidden:
        out.append(";; the policy's hidden paths (a bind below re-allows only what rcc itself put there)")
        out.append(f"(deny file-read* file-write* {_lit_sub(hidden)} {msg})")
    reads: list[str] = []
    writes: list[str] = []
    for m in plan.mounts:
        if isinstance(m, Bind):
            src = canonical(m.src)
            if any(_under(src, r) for r in denied_roots) or _under(src, project):
                reads.append(src)
            if m.writable:
                writes.append(src)
    reads = _outermost([project, *reads, lay_home, lay_tmp, lay_files])
    writes = _outermost([project, *writes, lay_home, lay_tmp])
    # realpath() and getcwd() stat every directory on the way to an allowed path: metadata only, no listing.
    walk = _dedup([a for p in reads for a in _all_ancestors(p) if any(_under(a, r) for r in denied_roots)])
    if walk:
        out.append(";; the directories on the way to each allowed path: stat only (realpath, getcwd)")
        out.append(f"(allow file-read-metadata {' '.join(f'(literal {quote(a)})' for a in walk)})")
    out.append(";; the project, toolchains, extra paths, agent state, this session's home and TMPDIR")
    out.append(f"(allow file-read* {' '.join(f'(subpath {quote(p)})' for p in reads)})")
    out.append(f"(allow file-write* {' '.join(f'(subpath {quote(p)})' for p in writes)})")
    out.append(";; terminals and the usual devices")
    out.append(
        "(allow file-write-data file-ioctl "
        + " ".join(f"(literal {quote(d)})" for d in _DEV_WRITE)
        + f" (regex #{quote(_TTY_REGEX)}) (regex #{quote(_FD_REGEX)}))"
    )

    # -- secrets and never-writable paths: after every allow, so they win
    masks: list[str] = []
    never: list[str] = []
    pinned: list[str] = []
    for m in plan.mounts:
        if isinstance(m, Mask):
            at = host_path(plan, m.dest)
            if at is not None:
                masks.append(canonical(at))
        elif isinstance(m, Bind):
            src = canonical(m.src)
            inside = [w for w in writes if _under(src, w) and w != src]
            if not inside:
                continue
            root = max(inside, key=len)
            if m.writable:
                pinned.append(src)
            else:
                never.append(src)
            pinned += _ancestors(src, root)
    if masks:
        out.append(";; secrets under an allowed path: neither readable nor writable")
        out.append(f"(deny file-read* file-write* {_lit_sub(_dedup(masks))} {msg})")
    if never:
        out.append(";; never writable (a hostile agent could plant hooks or settings the host runs); absent or not")
        out.append(f"(deny file-write* {_lit_sub(_dedup(never))} {msg})")
    # every writable root itself (Linux: a mount point): `rmdir`/`mv` of the project could not plant anything
    # (its parent is not writable), but the project must stay where the host expects it
    pinned = [p for p in _dedup([*writes, *pinned]) if not any(_under(p, n) for n in never)]
    if pinned:
        out.append(";; writable roots and the parents of never-writable paths: never renamed, removed or replaced")
        out.append(
            f"(deny file-write-unlink file-write-create {' '.join(f'(literal {quote(p)})' for p in pinned)} {msg})"
        )
    out += [
        ";; rcc's profile (the rest of the session's directory is under the denied state dir)",
        f"(deny file-read* file-write* (literal {quote(lay_profile)}) {msg})",
        "",
        ";; network: only rcc's proxy on the host's loopback (no DNS: mDNSResponder's socket is not allowed)",
    ]
    if layout.proxy_port:
        out.append(f'(allow network-outbound (remote ip "localhost:{layout.proxy_port}"))')
    else:
        out.append(";; no proxy (network.mode = none)")
    for port in plan.net.host_services:
        out.append(f'(allow network-outbound (remote ip "localhost:{port}"))  ; --host-service {port}')
    for pub in plan.net.publish:
        # The sandbox shares the host's network: its server listens on the host's loopback itself, so the port
        # is the same on both sides and nothing but loopback may be bound. `(local ip)` only ever on bind and
        # inbound: on outbound it would match every connection (sandbox-runtime's exfiltration bug).
        if pub.host not in ("127.0.0.1", "::1") or pub.host_port != pub.port:
            raise RccError(
                f"--publish {pub.host}:{pub.host_port}:{pub.port} cannot be expressed with Seatbelt",
                hint="on macOS the sandbox's server listens on the host's loopback itself: publish PORT "
                "(the same port on both sides, 127.0.0.1 only)",
                code=ExitCode.CONFIG,
            )
        out.append(f'(allow network-bind network-inbound (local ip "localhost:{pub.port}"))  ; --publish {pub.port}')
    out += [
        "",
        ";; never: opening apps or sending Apple events runs code outside the sandbox",
        f"(deny lsopen appleevent-send {msg})",
        "",
    ]
    return "\n".join(out)


def _outermost(paths: list[str]) -> list[str]:
    """The paths no other one in the list contains, in their first order."""
    uniq = _dedup(paths)
    return [p for p in uniq if not any(q != p and _under(p, q) for q in uniq)]


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
