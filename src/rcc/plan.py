"""The sandbox plan: everything a backend needs, as data.

compile.py builds it from a Policy and HostFacts; `rcc run --dry-run` prints it; every backend renders it.
Invariants:
1. Mount operations are applied in order; a later one may cover an earlier one (that is how secrets inside an
   allowed directory are hidden and protected paths inside the writable project become read-only).
2. Every `Bind.src` is a resolved host path that exists when the plan is made (probe.py checked it).
3. `placeholders` are host paths the backend must create before start (empty file or directory, never
   following symlinks) and remove afterwards if unchanged: they are the mount points that keep protected
   paths which do not exist yet from being created.
"""

from __future__ import annotations

from rcc.record import asdict, field, is_record, record

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from typing import Literal


@record
class Bind:
    """A host path mounted at dest (read-only unless writable)."""

    src: str
    dest: str
    writable: bool = False
    why: str = ""


@record
class Tmpfs:
    """An empty tmpfs at dest."""

    dest: str
    mode: int = 0o755
    read_only: bool = False
    why: str = ""
    size: int = 0  # bytes; 0: the kernel's default (half the memory)


@record
class Mask:
    """Hide an existing path: a file becomes an empty read-only file, a directory an empty read-only dir."""

    dest: str
    is_dir: bool
    why: str = ""


@record
class Symlink:
    """A symlink at dest pointing to target."""

    target: str
    dest: str
    why: str = ""


@record
class Dir:
    """An empty directory at dest."""

    dest: str
    mode: int = 0o755
    why: str = ""


@record
class FileData:
    """A small read-only file whose content the plan carries (e.g. /etc/passwd entry, placeholder JSON)."""

    dest: str
    content: str
    why: str = ""


@record
class Special:
    """/dev, /proc or mqueue at dest."""

    kind: Literal["dev", "proc", "mqueue"]
    dest: str
    why: str = ""


MountOp = Bind | Tmpfs | Mask | Symlink | Dir | FileData | Special


@record
class Overlay:
    """Review mode (rcc.workspace): the project is seen through overlayfs, mounted by rcc in a private mount
    namespace just before the backend starts. `upper` and `work` are in rcc's state dir (reviews/ID), hidden
    from every sandbox; `userxattr`: mounted in a user namespace (a user other than root)."""

    lower: str
    upper: str
    work: str
    userxattr: bool = False


@record
class DevNode:
    """A character device the backend makes fresh for one session (in `Plan.devices_dir`) and binds over dest,
    on top of the host's node that bwrap's /dev binds there: root's sandbox owns the host's nodes and could
    chmod/chown them; it owns only this copy."""

    dest: str  # /dev/null
    major: int
    minor: int
    mode: int = 0o666  # the host node's permission bits


@record
class Placeholder:
    """An empty host file/dir that takes a missing protected name for the session."""

    path: str  # absolute host path inside the project (or a placeholder anchor: Plan.placeholder_anchors)
    is_dir: bool
    content: str = ""  # for files


@record
class Namespaces:
    """Which namespaces the sandbox gets (all, by default)."""

    user: bool = True
    pid: bool = True
    ipc: bool = True
    uts: bool = True
    cgroup: bool = True
    net: bool = True


@record
class Publish:
    """A published port (rcc.forward): connections to host:host_port on the host reach port inside."""

    host: str  # the host address rcc listens on ("127.0.0.1" unless the user named one)
    host_port: int
    port: int


@record
class CredentialPlan:
    """A credential of the session (rcc.net.credentials): inside, `env` holds `placeholder`; the proxy reads the
    real value from rcc's own environment and swaps it in for `hosts` only. The value is never in the plan."""

    name: str
    env: str
    hosts: tuple[str, ...]
    placeholder: str
    requests: tuple[str, ...] = ()  # "HOST METHODS PATH" rules (rcc.net.credentials.parse_request_rule)


@record
class NetPlan:
    """How the sandbox reaches the network. mode "none": loopback only. mode "proxy": rcc's egress proxy
    listens on 127.0.0.1:`proxy_port` inside the sandbox's own network namespace. In either mode, `publish`
    and `host_services` are rcc's forwarders (rcc.forward) between the host's loopback and the sandbox's."""

    mode: Literal["none", "proxy"] = "none"
    proxy_port: int = 3128
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    resolve: tuple[tuple[str, str], ...] = ()
    publish: tuple[Publish, ...] = ()
    host_services: tuple[int, ...] = ()  # ports of the host's loopback reachable at the sandbox's loopback
    # "ask" only for a session on a terminal (not -p/--print): the proxy holds unknown hosts for `rcc watch`
    on_unknown: Literal["deny", "ask", "learn"] = "deny"  # "learn": let public hosts through, recorded
    ask_timeout: int = 60
    credentials: tuple[CredentialPlan, ...] = ()
    # rcc's state directory for the session CA (its 0600 key and the bundle the sandbox trusts), when credentials
    ca_dir: str = ""


@record
class ResourceLimits:
    """A session's resource limits as numbers (0: none); rcc.limits enforces them, tmp via Tmpfs.size."""

    memory: int = 0  # bytes
    processes: int = 0
    cpu: float = 0.0  # CPUs
    tmp: int = 0  # bytes, each writable tmpfs


@record
class Plan:
    argv: tuple[str, ...]
    cwd: str
    project: str
    home: str  # the sandbox's HOME (private, at the real home's path)
    mounts: tuple[MountOp, ...]
    env: tuple[tuple[str, str], ...]
    namespaces: Namespaces = field(default_factory=Namespaces)
    net: NetPlan = field(default_factory=NetPlan)
    placeholders: tuple[Placeholder, ...] = ()
    hostname: str = "rcc"
    uid: int = 0
    gid: int = 0
    new_session: bool = True  # setsid: no controlling terminal, so no TIOCSTI even without seccomp
    seccomp: bool = True
    notices: tuple[str, ...] = ()  # things the user should know (ignored untrusted config, ...)
    session_id: str = ""
    # Interactive sessions: rcc and bwrap ignore SIGINT/SIGQUIT (the terminal sends them to the whole foreground
    # process group, and a dying bwrap would take the sandbox with it); the command gets them back by
    # `env --default-signal` (coreutils >= 8.31) when this is set.
    reset_signals: bool = False
    # Root only (probe found host device nodes the caller owns): private copies of them, made in devices_dir (a
    # fresh directory under rcc's state dir, named by the session) and bound over /dev/null etc.
    dev_nodes: tuple[DevNode, ...] = ()
    devices_dir: str = ""
    # The policy's hidden paths (as written and resolved). bwrap needs only the masks above (its view starts
    # empty); a backend that filters the host's own view (seatbelt) denies each of these.
    hidden: tuple[str, ...] = ()
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # Directories besides the project below which placeholders are made and recorded (a linked worktree's main
    # repository, whose ledger its own sessions share); a placeholder belongs to the first that contains it.
    placeholder_anchors: tuple[str, ...] = ()
    # A linked worktree's git dirs (outside the project), swept like `.git` at the start and end of a session.
    git_dirs: tuple[str, ...] = ()
    branch: str = ""  # a linked worktree's branch, for `rcc sessions`
    overlay: Overlay | None = None  # review mode: the project through a copy-on-write layer (rcc.workspace)

    def to_json(self) -> str:
        import json  # only --dry-run prints a plan: `rcc run` does not pay for the import

        def enc(op: object) -> object:
            if is_record(op):
                d = asdict(op)
                if isinstance(op, MountOp):
                    d = {"op": type(op).__name__.lower(), **d}
                return d
            return op

        doc = {
            "argv": list(self.argv),
            "cwd": self.cwd,
            "project": self.project,
            "home": self.home,
            "uid": self.uid,
            "gid": self.gid,
            "hostname": self.hostname,
            "namespaces": asdict(self.namespaces),
            "new_session": self.new_session,
            "seccomp": self.seccomp,
            "net": asdict(self.net),
            "env": dict(self.env),
            "mounts": [enc(m) for m in self.mounts],
            "placeholders": [asdict(p) for p in self.placeholders],
            "dev_nodes": [asdict(n) for n in self.dev_nodes],
            "devices_dir": self.devices_dir,
            "hidden": list(self.hidden),
            "notices": list(self.notices),
            "session_id": self.session_id,
            "limits": asdict(self.limits),
            "placeholder_anchors": list(self.placeholder_anchors),
            "git_dirs": list(self.git_dirs),
            "branch": self.branch,
        }
        if self.overlay is not None:  # only in review mode (plans without it print as before)
            doc["overlay"] = asdict(self.overlay)
        return json.dumps(doc, indent=2)
