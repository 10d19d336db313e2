"""Container backend: run the same Plan with podman (rootless or root) or docker.

How a Plan maps onto a container (translate() does this, pure):
  Bind     -> --mount type=bind (ro unless writable). Binds of the host's system entries (/usr, /bin, /sbin,
              /lib*, /etc, /opt, /nix) are skipped: the image provides the system. Everything else (project,
              toolchains, extra paths, protected paths, placeholders) is mounted at the same path.
  Tmpfs    -> --mount type=tmpfs with the plan's mode, owned by the sandbox user (podman `U=true`; docker
              uid=/gid= options), read-only when the plan says so.
  Mask     -> a file: /dev/null bound read-only on it; a directory: an empty read-only tmpfs (mode 555).
  Dir      -> an empty tmpfs owned by the user (a container cannot mkdir into its image before start).
  FileData -> the content written to a private staging file, bound read-only.
  Special  -> skipped: the engine always gives the container its own /dev, /proc and /dev/mqueue.
  Symlink  -> skipped: the only symlinks compile.py makes are the merged-/usr ones and /var/run, which the
              image has, and a logical-home link (noted by translate()).

Invariants:
1. render() is pure: a function of the Plan, the backend's engine, image, limits and HostInfo.
2. The same-destination rule of a Plan (a later op covers an earlier one, also below it) is applied before
   rendering, because engines refuse duplicate destinations and sort mounts by depth.
3. A path that the engine's option syntax cannot carry (a ',' in a --mount value, a newline, an image name
   starting with '-') is refused, never passed: "proj,dst=/etc" must not become a second mount option.
4. Network: always `--network none`. In proxy mode the command never runs without its proxy, and never with
   any other network. podman: the container is created and initialised but not started; rcc opens the proxy
   listener inside the container's network namespace (rcc.netns.listen_in_netns) and only then starts it.
   docker has no `init`: the container starts with a gate as its command (sh blocks reading one line from a
   fifo rcc binds in read-only) and rcc writes "go" only once the listener is in place; if anything fails, rcc
   closes the fifo (the gate reads EOF and exits 125 without running the command) and removes the container.
5. Never inside: the engine's socket, the host's /run, any capability, setuid gains (no-new-privileges),
   a writable image (read-only root; tmpfs only where the plan asks).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from rcc.backends._base import Problem
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, Dir, FileData, Mask, MountOp, Overlay, Plan, Special, Symlink, Tmpfs
from rcc.sessionhost import SessionHost

Engine = Literal["podman", "docker"]
_PR_SET_PDEATHSIG = 1
ENGINES: tuple[Engine, ...] = ("podman", "docker")

# docker cannot turn its detach keys off (an empty --detach-keys means its default, Ctrl-P Ctrl-Q, which belongs
# to the agent): an eight-key sequence nobody types instead, and rcc removes the container if the client ends.
DOCKER_DETACH_KEYS = "ctrl-],ctrl-^,ctrl-],ctrl-^,ctrl-],ctrl-^,ctrl-],ctrl-^"
# docker's proxy-mode gate (invariant 4): where the fifo appears in the container, and the script that waits for
# rcc's "go" line. The command follows as "$@": positional parameters, never joined into the script.
DOCKER_GATE = "/run/rcc-gate"
DOCKER_GATE_SCRIPT = f'IFS= read -r go <{DOCKER_GATE} && [ "$go" = go ] && exec "$@"; exit 125'
_ENOSYS = 38

# Host entries the image replaces (compile.py binds them read-only for bubblewrap).
SYSTEM_PREFIXES: tuple[str, ...] = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix",
)

# The host's trust store: the only file of the host's /etc the container sees (a TLS-inspecting proxy's CA must
# work in the container as it does with bwrap, which shows the host's whole /etc read-only).
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# The engine's default seccomp profile (containers-common); rcc narrows it (harden_seccomp) to what the bwrap
# backend's own filter blocks. Without it rcc refuses to start: never a container with a wider syscall surface.
ENGINE_SECCOMP_PROFILE = "/usr/share/containers/seccomp.json"
SECCOMP_FILE = "seccomp.json"  # in the run's staging directory
HOSTS_FILE = "hosts"  # podman: the container's /etc/hosts, in the run's staging directory


def hosts_text(hostname: str) -> str:
    """podman's /etc/hosts: `localhost` and the sandbox's own name only. (--no-hosts drops podman's generated
    one, which names the host's address as host.containers.internal; rcc's images have none of their own, and
    without it `psql -h localhost` to a host service finds no address at all.)"""
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"


_CLONE_NEWUSER = 0x10000000
_S_IFMT, _S_IFREG, _S_IFIFO, _S_IFCHR, _S_IFBLK, _S_IFSOCK = 0o170000, 0o100000, 0o010000, 0o020000, 0o060000, 0o140000
_EPERM = 1


def harden_seccomp(profile: dict[str, Any]) -> dict[str, Any]:
    """podman's default profile allows keyctl, unshare/clone of user namespaces and every ioctl (it relies on
    capabilities). Deny what rcc's bwrap filter denies: the kernel keyring (keyctl, add_key, request_key: other
    sessions' secrets) and new user namespaces (unshare/clone with CLONE_NEWUSER: kernel attack surface; clone3
    cannot be filtered by flags and returns ENOSYS, so libc falls back to clone). Pure.
    Not needed here: TIOCSTI/TIOCLINUX. The container never holds the user's terminal (the engine relays it through
    a pty of its own, or pipes), so injected input can only reach the container itself."""
    out = dict(profile)
    drop = {"keyctl", "add_key", "request_key", "unshare", "clone", "clone3", "mknod", "mknodat", "openat2"}
    drop |= {name for name, _ in _MODE_ARG} | {name for name, _, _ in _CREATE_ARGS}
    rules: list[dict[str, Any]] = []
    for rule in profile.get("syscalls", []):
        r = dict(rule)
        if r.get("action") == "SCMP_ACT_ALLOW":
            r["names"] = [n for n in r.get("names", []) if n not in drop]
            if not r["names"]:
                continue
        rules.append(r)
    no_newuser = {"index": 0, "value": _CLONE_NEWUSER, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    newuser = {"index": 0, "value": _CLONE_NEWUSER, "valueTwo": _CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}
    rules += [
        {"names": ["keyctl", "add_key", "request_key"], "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
        # Said explicitly: docker 20.10 ignores the profile's defaultErrnoRet (ENOSYS) and would answer EPERM,
        # which glibc does not fall back from ("can't start new thread").
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
        {"names": ["unshare", "clone"], "action": "SCMP_ACT_ALLOW", "args": [no_newuser]},
        {"names": ["unshare", "clone"], "action": "SCMP_ACT_ERRNO", "args": [newuser], "errnoRet": _EPERM},
    ]
    # mknod only of regular files (type 0 or S_IFREG): a fifo left in .git makes the host's `git status` hang
    # forever (seccomp.S_IFNOTREG; the type is in args[1] of mknod, args[2] of mknodat)
    for name, index in (("mknod", 1), ("mknodat", 2)):
        for kind in (0, _S_IFREG):
            arg = {"index": index, "value": _S_IFMT, "valueTwo": kind, "op": "SCMP_CMP_MASKED_EQ"}
            rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [arg]})
        for kind in (_S_IFIFO, _S_IFCHR, _S_IFBLK, _S_IFSOCK):
            arg = {"index": index, "value": _S_IFMT, "valueTwo": kind, "op": "SCMP_CMP_MASKED_EQ"}
            rules.append({"names": [name], "action": "SCMP_ACT_ERRNO", "args": [arg], "errnoRet": _EPERM})
    rules += _no_setuid_files()
    out["syscalls"] = rules
    return out


# Where the mode is in the calls that set one, and where the flags are in the calls that create with one (index of
# flags, index of mode). As the bwrap filter does (seccomp.py, _SUID_WHY): a set-uid/set-gid file left in the project
# outlives the session (root's container would leave a set-uid root shell: a root backdoor for every local user).
_MODE_ARG: tuple[tuple[str, int], ...] = (("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2))
_CREATE_ARGS: tuple[tuple[str, int, int], ...] = (("open", 1, 2), ("openat", 2, 3))
_S_ISUID, _S_ISGID = 0o4000, 0o2000
_O_CREAT, _O_TMPFILE_BIT = 0o100, 0o20000000  # O_TMPFILE is __O_TMPFILE | O_DIRECTORY


def _masked(index: int, mask: int, value: int) -> dict[str, Any]:
    return {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def _no_setuid_files() -> list[dict[str, Any]]:
    """Rules that never overlap with a different action (libseccomp's condition): allow a mode without the set-uid and
    set-gid bits; refuse one with either. Creating calls: allowed when they do not create (the mode is then unused)
    or create without those bits; refused when they create with one. openat2 takes its mode in memory a filter cannot
    read: ENOSYS, so libc falls back to openat (as the bwrap filter answers)."""
    rules: list[dict[str, Any]] = [{"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS}]
    for name, index in (*_MODE_ARG, ("creat", 1)):
        rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [_masked(index, _S_ISUID | _S_ISGID, 0)]})
        for bit in (_S_ISUID, _S_ISGID):
            arg = _masked(index, bit, bit)
            rules.append({"names": [name], "action": "SCMP_ACT_ERRNO", "args": [arg], "errnoRet": _EPERM})
    for name, flags, mode in _CREATE_ARGS:
        no_bits = _masked(mode, _S_ISUID | _S_ISGID, 0)
        no_create = _masked(flags, _O_CREAT | _O_TMPFILE_BIT, 0)
        rules += [
            {"names": [name], "action": "SCMP_ACT_ALLOW", "args": [no_bits]},
            {"names": [name], "action": "SCMP_ACT_ALLOW", "args": [no_create]},
        ]
        for create in (_O_CREAT, _O_TMPFILE_BIT):
            for bit in (_S_ISUID, _S_ISGID):
                args = [_masked(flags, create, create), _masked(mode, bit, bit)]
                rules.append({"names": [name], "action": "SCMP_ACT_ERRNO", "args": args, "errnoRet": _EPERM})
    return rules


def seccomp_profile_text(source: str = ENGINE_SECCOMP_PROFILE) -> str:
    import json

    try:
        with open(source) as f:
            profile = json.load(f)
    except (OSError, ValueError) as e:
        raise RccError(
            f"cannot read the container engine's default seccomp profile {source}: {e}",
            hint="install containers-common (Debian: golang-github-containers-common, comes with podman); rcc "
            "does not start a container without its seccomp filter",
            code=ExitCode.DEPENDENCY,
        ) from e
    return json.dumps(harden_seccomp(profile))


@dataclass(frozen=True)
class Limits:
    """Resource limits for the container (cgroups). None: no limit."""

    pids: int | None = 4096
    memory: str | None = "8g"


@dataclass(frozen=True)
class HostInfo:
    """What render() needs to know about the machine: probed once by HostInfo.probe(), given directly in tests."""

    rootless: bool  # podman runs as a normal user (user namespace with keep-id)
    tty: bool  # stdin is a terminal: allocate a pty in the container
    cgroup_limits: bool  # the engine can enforce pids/memory limits here (not rootless on cgroup v1)
    ca_bundle: str = ""  # the host's CA bundle (public certificates), shown where the plan shows the host's /etc

    @classmethod
    def probe(cls, engine: Engine) -> HostInfo:
        rootless = engine == "podman" and os.geteuid() != 0
        v2 = _cgroup_v2_only()
        return cls(
            rootless=rootless,
            tty=sys.stdin.isatty(),
            cgroup_limits=not rootless or v2,
            ca_bundle=HOST_CA_BUNDLE if os.path.isfile(HOST_CA_BUNDLE) else "",
        )


@dataclass(frozen=True)
class Translation:
    """The container's view of a plan's mount operations."""

    mounts: tuple[MountOp, ...]
    skipped: tuple[tuple[MountOp, str], ...]  # (op, why it does not apply in a container)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _cgroup_v2_only() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _dest(op: MountOp) -> str:
    return op.dest


def translate(plan: Plan, engine: Engine = "podman") -> Translation:
    """Which of the plan's mount operations apply in a container, after the covering rule (invariant 2)."""
    kept: list[MountOp] = []
    skipped: list[tuple[MountOp, str]] = []
    for op in plan.mounts:
        if isinstance(op, Special):
            skipped.append((op, f"the engine provides {op.dest}"))
            continue
        if engine == "docker" and isinstance(op, Bind) and op.dest == "/proc/sys" and not op.writable:
            # runc refuses any mount inside /proc ("cannot be mounted because it is inside /proc"); docker
            # mounts /proc/sys read-only itself (its default readonly paths, for every unprivileged container).
            skipped.append((op, "docker mounts /proc/sys read-only itself"))
            continue
        if engine == "docker" and isinstance(op, Mask) and _under(op.dest, "/proc"):
            # the same refusal; docker masks /proc/keys itself, /proc/key-users (per-uid counts) stays visible
            skipped.append((op, "runc refuses mounts inside /proc (docker masks /proc/keys itself)"))
            continue
        if isinstance(op, Symlink):
            if any(_under(op.dest, p) for p in (*SYSTEM_PREFIXES, "/var/run")):
                skipped.append((op, "the image provides it"))
            else:
                skipped.append((op, "a container cannot create symlinks outside its image"))
            continue
        if isinstance(op, Bind) and any(_under(op.dest, p) for p in SYSTEM_PREFIXES) and op.src == op.dest:
            skipped.append((op, "host system path: the image provides the system"))
            continue
        # A later op covers every earlier op at or below its destination.
        d = _dest(op)
        for old in [k for k in kept if _under(_dest(k), d)]:
            kept.remove(old)
            skipped.append((old, f"covered by a later mount at {d}"))
        kept.append(op)
    return Translation(tuple(kept), tuple(skipped))


OVERLAY_PARAMETERS = "/sys/module/overlay/parameters"


def overlay_defaults_problem(parameters: str = OVERLAY_PARAMETERS) -> str:
    """Root's podman mounts its overlay volume with the kernel's defaults (rootless podman adds `userxattr`, which
    turns both off). rcc.workspace.layer's invariant 2 needs metacopy and redirect_dir off: with either on, upper/
    could hold a metadata-only copy or a redirect, and scanning it would not be the whole story."""
    if parameters == OVERLAY_PARAMETERS and not os.path.isdir(parameters) and os.geteuid() == 0:
        # not loaded yet (no overlay mounted since boot): podman would load it at its mount; load it now to read it
        with contextlib.suppress(OSError):  # no modprobe: the read below says the module is not loaded
            subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
    for name in ("metacopy", "redirect_dir"):
        path = os.path.join(parameters, name)
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError as e:
            return f"cannot read the kernel's overlayfs default {path} ({e.strerror}; is the overlay module loaded?)"
        if value != "N":
            return f"the kernel's overlayfs turns {name} on by default ({path} is {value!r})"
    return ""


def check_review_mounts(t: Translation, ov: Overlay) -> None:
    """Review mode (podman), before rendering: the project must be among the writable binds (it becomes the
    overlay volume), and no writable bind of a directory holding the project may show it at another path (the
    real project, writable, past the layer). Raises REVIEW_UNAVAILABLE. Pure."""
    from rcc.workspace.mount import unavailable

    layered = False
    for op in t.mounts:
        if not (isinstance(op, Bind) and op.writable):
            continue
        if op.src == ov.lower:
            layered = True
        elif _under(ov.lower, op.src) and op.dest != op.src:
            raise unavailable(f"{op.src} is mounted writable at {op.dest}: the project would be writable there")
    if not layered:
        raise unavailable(f"the project {ov.lower} is not mounted writable in the container")


def _check_value(what: str, value: str, forbidden: str) -> str:
    bad = [c for c in forbidden if c in value]
    if bad or "\n" in value or "\0" in value:
        raise RccError(
            f"the container backend cannot mount {what} {value!r}: it contains {bad[0] if bad else 'a newline'!r}, "
            "which the engine would read as option syntax",
            hint="rename the path, or use the bwrap backend (`--backend bwrap`)",
            code=ExitCode.CONFIG,
        )
    if not value.startswith("/"):
        raise RccError(f"the container backend needs absolute paths, got {value!r}", code=ExitCode.INTERNAL)
    return value


class ContainerBackend:
    """`podman` or `docker` running a Plan. Construct with the engine name and the image (None: rcc's image)."""

    placeholders = True  # mounted read-only over the never-writable paths that do not exist, as bwrap's

    def __init__(
        self,
        engine: str = "podman",
        image: str | None = None,
        *,
        host: HostInfo | None = None,
        limits: Limits | None = None,
        engine_path: str | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise RccError(f"unknown container engine {engine!r}", code=ExitCode.CONFIG)
        self.engine: Engine = "podman" if engine == "podman" else "docker"
        self.name = engine
        if image is not None and (not image or image.startswith("-") or any(c.isspace() for c in image)):
            raise RccError(f"invalid container image name {image!r}", code=ExitCode.CONFIG)
        self.image = image
        self.limits = limits  # None: the plan's (rcc.limits; [limits] in the config)
        self.engine_path = engine_path or shutil.which(engine) or ""
        self._host = host

    @property
    def host(self) -> HostInfo:
        if self._host is None:
            self._host = HostInfo.probe(self.engine)
        return self._host

    def image_ref(self) -> str:
        if self.image:
            return self.image
        from rcc.backends.container_image import agent_image_tag

        return agent_image_tag()

    # ------------------------------------------------------------------------------------------- checks
    def problems(self) -> list[Problem]:
        from rcc.backends.container_image import machine_problems

        return machine_problems(self.engine, self.engine_path, self.image)

    def image_problems(self) -> list[Problem]:
        """For `rcc doctor` only (asks the engine, ~0.1 s): is the image there, or can rcc build it?"""
        from rcc.backends.container_image import base_image_tag, base_missing_error, image_exists

        if not self.engine_path:
            return []
        ref = self.image_ref()
        if image_exists(self.engine_path, self.engine, ref):
            return []
        if self.image:
            return [
                Problem(
                    f"the configured image {ref} is not in {self.engine}'s image store",
                    f"`{self.engine} pull {ref}` (or build it), or remove `image` from the config to use rcc's image",
                    ExitCode.SETUP,
                )
            ]
        base = base_image_tag()
        if image_exists(self.engine_path, self.engine, base):
            return []  # the agent image is built from it on first use (a few minutes, with progress)
        e = base_missing_error(self.engine, base)
        return [Problem(e.message, e.hint, ExitCode.SETUP)]

    # ------------------------------------------------------------------------------------------- render
    def render(self, plan: Plan) -> list[str]:
        """`podman run ...` for the plan (proxy mode really uses create + init + start, same options; docker:
        create with the gate, then start)."""
        name, staging = f"rcc-{plan.session_id or 'session'}", "/run/rcc-staging"
        if self.engine == "docker" and (plan.net.mode == "proxy" or plan.net.publish or plan.net.host_services):
            return self.render_for(plan, "create", name=name, staging=staging, gate=os.path.join(staging, "gate"))
        return self.render_for(plan, "run", name=name, staging=staging)

    def render_for(
        self,
        plan: Plan,
        verb: Literal["run", "create"],
        *,
        name: str,
        staging: str,
        gate: str = "",
        cidfile: str = "",
    ) -> list[str]:
        """The engine's command line. `gate` (docker, proxy mode): the host fifo the command waits on; `cidfile`:
        where the engine writes the container's id (rcc then finds the limits that fired in the kernel's log)."""
        podman = self.engine == "podman"
        host = self.host
        a = [self.engine_path or self.engine, verb, "--rm", "--name", name, "--interactive"]
        if cidfile:
            a += ["--cidfile", cidfile]
        if host.tty:
            a.append("--tty")
        if verb == "run":  # ctrl-p belongs to the agent, not to the engine (create: see start)
            a += ["--detach-keys", "" if podman else DOCKER_DETACH_KEYS]
        a += ["--pull", "never", "--log-driver", "none", "--init"]
        # Isolation: own namespaces; no network at all (the proxy listener is added inside, invariant 4).
        a += ["--network", "none", "--hostname", plan.hostname, "--ipc", "private", "--cgroupns", "private"]
        a += ["--no-hosts"] if podman else []
        # Privileges: none to gain.
        a += ["--cap-drop", "all", "--security-opt", "no-new-privileges"]
        a += ["--security-opt", f"seccomp={os.path.join(staging, SECCOMP_FILE)}"]
        if podman:
            a += ["--systemd", "false"]
        # The image stays read-only; writable places are the plan's tmpfs and binds only.
        a += ["--read-only"]
        if podman:
            a += ["--read-only-tmpfs=false"]
        # The same user as on the host, so files in the project stay the user's.
        if podman and host.rootless:
            a += ["--userns", "keep-id"]
        a += ["--user", f"{plan.uid}:{plan.gid}"]
        if host.cgroup_limits:
            lim = self.limits or Limits(plan.limits.processes or None, str(plan.limits.memory or "") or None)
            if lim.pids is not None:
                a += ["--pids-limit", str(lim.pids)]
            if lim.memory is not None:
                a += ["--memory", lim.memory, "--memory-swap", lim.memory]
            if plan.limits.cpu:
                a += ["--cpus", f"{plan.limits.cpu:g}"]
        elif podman:
            # Rootless podman on cgroup v1 has no cgroup limits: rlimits instead, as for a user's bwrap session
            # (a fork bomb there took this test machine to a load of 5000). RLIMIT_NPROC counts the user's processes
            # in podman's user namespace (all of this user's rootless containers), RLIMIT_DATA each process.
            lim = self.limits or Limits(plan.limits.processes or None, str(plan.limits.memory or "") or None)
            if lim.pids is not None:
                a += ["--ulimit", f"nproc={lim.pids}:{lim.pids}"]
            if plan.limits.memory and self.limits is None:
                a += ["--ulimit", f"data={plan.limits.memory}:{plan.limits.memory}"]
        # Environment: exactly the plan's allowlist (podman: drop the image's defaults too).
        if podman:
            a.append("--unsetenv-all")
        for k, v in plan.env:
            a += ["--env", f"{k}={v}"]
        t = translate(plan, self.engine)
        ov = plan.overlay
        if ov is not None:
            check_review_mounts(t, ov)
        for op in t.mounts:
            if ov is not None and isinstance(op, Bind) and op.writable and _under(op.src, ov.lower):
                # Review mode (podman): the project is the engine's overlay with rcc's upper and work dirs. A
                # writable bind from inside the project (the pinned .git) would be the user's real tree: the
                # layer already has it writable. Read-only binds (the never-writable paths) stay as they are.
                if op.src == ov.lower:
                    a += self._overlay_args(op.dest, ov)
                continue
            a += self._mount_args(op, plan, staging)
        shows_etc = any(isinstance(op, Bind) and op.dest == "/etc" for op, _ in t.skipped)
        if host.ca_bundle and shows_etc and not any(_under(host.ca_bundle, m.dest) for m in t.mounts):
            a += self._mount_args(Bind(host.ca_bundle, host.ca_bundle, False), plan, staging)
        if podman and not any(_under("/etc/hosts", m.dest) for m in t.mounts):
            a += self._mount_args(Bind(os.path.join(staging, HOSTS_FILE), "/etc/hosts", False), plan, staging)
        if gate:
            a += self._mount_args(Bind(gate, DOCKER_GATE, False), plan, staging)
        a += ["--workdir", _check_value("working directory", plan.cwd, "")]
        a.append(self.image_ref())
        if gate:
            a += ["/bin/sh", "-c", DOCKER_GATE_SCRIPT, "rcc-gate"]
        # GNU env gives the shell's answer for a missing (127) or non-executable (126) command; the init process
        # (catatonit/tini) would exit 1 for both. A first word with "=" would be an assignment, so it goes direct.
        if plan.argv and "=" not in plan.argv[0]:
            a += ["/usr/bin/env", "--"]
        a += list(plan.argv)
        return a

    def review_problem(self) -> str:
        """Why review mode cannot run on this engine here ("" if it can), asked before the session's layer is
        made. Only podman has overlay volumes with an upper dir of rcc's choosing; they take no overlay options,
        so the kernel's and the engine's defaults must give the layer rcc.workspace.layer reads."""
        if self.engine == "docker":
            return "docker has no overlay volumes with an upper directory rcc could keep (use podman or bwrap)"
        if not self.engine_path:
            return "podman is not installed"
        if os.geteuid() == 0 and (why := overlay_defaults_problem()):
            return why
        graph = subprocess.run(
            [self.engine_path, "info", "--format", "{{.Store.GraphDriverName}} {{json .Store.GraphOptions}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if graph.returncode != 0:
            return f"`podman info` failed: {graph.stderr.strip()}"
        if "mount_program" in graph.stdout:  # fuse-overlayfs: whiteouts and opaque marks of another form
            return "podman mounts overlays with a mount_program (fuse-overlayfs) here; review mode needs the kernel's"
        return ""

    def _overlay_args(self, dest: str, ov: Overlay) -> list[str]:
        """podman's overlay volume (`:O`) with rcc's persistent upper and work dirs (rcc.workspace.mount made
        them; their paths were checked for the option syntax's `,` and `:`)."""
        if self.engine != "podman":
            raise RccError("docker has no overlay volumes: review mode needs podman or bwrap", code=ExitCode.INTERNAL)
        for what, path in (("project", ov.lower), ("path", dest), ("layer", ov.upper), ("layer", ov.work)):
            _check_value(what, path, ",:")
        return ["--volume", f"{ov.lower}:{dest}:O,upperdir={ov.upper},workdir={ov.work}"]

    def _mount_args(self, op: MountOp, plan: Plan, staging: str) -> list[str]:
        podman = self.engine == "podman"
        owner = f"uid={plan.uid},gid={plan.gid}"

        def tmpfs(dest: str, mode: int, read_only: bool, size: int = 0) -> list[str]:
            dest = _check_value("tmpfs", dest, ",:")
            if podman:
                # notmpcopyup: an empty tmpfs, as with bwrap (podman would copy the image's files into it).
                spec = f"type=tmpfs,dst={dest},tmpfs-mode={mode:04o},notmpcopyup"
                spec += ",ro=true" if read_only else ",U=true"
                spec += f",tmpfs-size={size}" if size else ""
                return ["--mount", spec]
            opts = f"{'ro' if read_only else 'rw'},mode={mode:04o}" + ("" if read_only else f",{owner}")
            opts += f",size={size}" if size else ""
            return ["--tmpfs", f"{dest}:{opts}"]

        def bind(src: str, dest: str, writable: bool) -> list[str]:
            src = _check_value("host path", src, ",")
            dest = _check_value("path", dest, ",")
            ro = "false" if writable else "true"
            if podman:
                return ["--mount", f"type=bind,src={src},dst={dest},ro={ro}"]
            return ["--mount", f"type=bind,src={src},dst={dest},readonly={ro}"]

        if isinstance(op, Bind):
            return bind(op.src, op.dest, op.writable)
        if isinstance(op, Tmpfs):
            return tmpfs(op.dest, op.mode, op.read_only, op.size)
        if isinstance(op, Mask):
            return tmpfs(op.dest, 0o555, True) if op.is_dir else bind("/dev/null", op.dest, False)
        if isinstance(op, Dir):
            return tmpfs(op.dest, op.mode, False)
        if isinstance(op, FileData):
            return bind(_staging_path(staging, op), op.dest, False)
        raise RccError(f"container backend: unexpected mount op {op!r}", code=ExitCode.INTERNAL)

    # ------------------------------------------------------------------------------------------- run
    def prepare(self, plan: Plan) -> None:
        """The engine and the image (built on first use), before the session host makes anything."""
        if not self.engine_path:
            raise RccError(f"{self.engine} is not installed", hint=self._install_hint(), code=ExitCode.DEPENDENCY)
        if self.image is None:
            from rcc.backends.container_image import ensure_agent_image

            self.image = ensure_agent_image(self.engine_path, self.engine)
        if self.engine == "docker" and os.geteuid() != 0:
            self._refuse_rootless_docker()

    def run(self, plan: Plan, host: SessionHost) -> int:
        return self.run_with(plan, host, _egress_proxy)

    def run_with(self, plan: Plan, host: SessionHost, serve: Callable[[Plan, Any], Any]) -> int:
        """Run the plan; in proxy mode `serve(plan, listener_socket)` starts the proxy and returns something
        with close(). Tests pass their own server here; run() passes rcc's egress proxy."""
        import tempfile

        if not self.engine_path or self.image is None:
            self.prepare(plan)
        staging = tempfile.mkdtemp(prefix="rcc-ctr-")
        host.callback(lambda: shutil.rmtree(staging, ignore_errors=True))
        name = f"rcc-{plan.session_id or os.urandom(4).hex()}-{os.getpid()}"
        with open(os.path.join(staging, SECCOMP_FILE), "x") as f:
            f.write(seccomp_profile_text())
        with open(os.path.join(staging, HOSTS_FILE), "x") as f:
            f.write(hosts_text(plan.hostname))
        for op in translate(plan, self.engine).mounts:
            if isinstance(op, FileData):
                with open(_staging_path(staging, op), "x") as f:
                    f.write(op.content)
        cidfile = os.path.join(staging, "cid")
        log = self._follow_limits(plan)
        code = int(ExitCode.INTERNAL)
        reaper = _reaper(self.engine_path, name)
        try:
            code = self._run_in(plan, name, staging, host, serve, cidfile=cidfile if log else "")
            return code
        finally:
            reaper.done()
            if log is not None and (why := _stop_reason(plan, log, cidfile, code)):
                sys.stderr.write(f"rcc: {why}\n")
            if plan.overlay is not None and self.engine == "podman" and self.host.rootless:
                self._release_work_dir(plan.overlay)

    def _making(self, ov: Overlay | None, *args: str) -> str:
        """A step that makes the container (create, init). With the review's overlay its failure is
        REVIEW_UNAVAILABLE: nothing ran, and nothing runs without the layer."""
        try:
            return self._engine(*args)
        except RccError as e:
            if ov is None:
                raise
            from rcc.workspace.mount import unavailable

            raise unavailable(f"{self.engine} could not mount the overlay on {ov.lower}: {e.message}") from e

    def _release_work_dir(self, ov: Overlay) -> None:
        """Rootless podman mounts the overlay as its user namespace's root, a subordinate uid on the host: the
        overlay's private work/work (mode 000, holding the shared whiteout inode) is then that uid's, and the
        user could not remove the review. Removed here, in podman's user namespace (the upper dir is the user's)."""
        subprocess.run(
            [self.engine_path, "unshare", "rm", "-rf", "--", os.path.join(ov.work, "work")],
            capture_output=True,
            check=False,
        )

    def _run_in(
        self, plan: Plan, name: str, staging: str, host: SessionHost, serve: Callable[[Plan, Any], Any], *, cidfile: str
    ) -> int:
        # review mode goes through create + init too: podman mounts the overlay at init, and a failure there must
        # be rcc's exit 72 before anything ran, not an exit status the command could have given itself (125)
        if plan.net.mode == "proxy" or plan.net.publish or plan.net.host_services or plan.overlay is not None:
            if self.engine == "docker":
                return self._run_docker_with_proxy(plan, name, staging, host, serve, cidfile=cidfile)
            return self._run_with_proxy(plan, name, staging, host, serve, cidfile=cidfile)
        code = self._attached(self.render_for(plan, "run", name=name, staging=staging, cidfile=cidfile))
        if self.engine == "docker" and self.host.tty:
            # The client also ends when someone types docker's detach keys: never leave the container
            # running headless behind rcc.
            self._remove(name)
        return code

    def _follow_limits(self, plan: Plan) -> Any:
        """The kernel's log from now on, when the engine enforces rcc's memory or process limit here and this
        user may read the log (root); None otherwise (the session then ends with the bare exit status)."""
        if self.limits is not None or not self.host.cgroup_limits or not (plan.limits.memory or plan.limits.processes):
            return None
        from rcc.limits import KernelLog

        return KernelLog.follow()

    def _attached(self, argv: list[str], started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> int:
        """Run the attached engine client; the container lives exactly as long as it does. `started(proc)` runs
        once the client is running (docker's proxy mode installs the listener then); if it raises, the client is
        stopped and the error passes on.

        The client proxies signals to the container (--sig-proxy, the default when attached). So that the
        container cannot outlive rcc: SIGTERM/SIGHUP to rcc are passed on to the client, and the client gets
        SIGTERM if rcc dies without a chance to pass anything on (SIGKILL: PR_SET_PDEATHSIG)."""
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only makes one syscall

        def die_with_rcc() -> None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

        try:
            proc = subprocess.Popen(argv, preexec_fn=die_with_rcc)  # noqa: PLW1509 (one async-signal-safe call)
        except OSError as e:
            raise RccError(f"cannot start {self.engine}: {e}", code=ExitCode.DEPENDENCY) from e

        def forward(signum: int, _frame: object) -> None:
            proc.send_signal(signum)

        import threading

        main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)} if main else {}
        try:
            if started is not None:
                try:
                    started(proc)
                except BaseException:
                    _stop(proc)
                    raise
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:  # the engine forwards the signal; wait for the container to end
                    continue
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return 128 - code if code < 0 else code

    def _engine(self, *args: str) -> str:
        r = subprocess.run([self.engine_path, *args], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RccError(
                f"`{self.engine} {args[0]}` failed: {r.stderr.strip() or r.stdout.strip()}",
                hint="run `rcc doctor`",
                code=ExitCode.SETUP,
            )
        return r.stdout.strip()

    def _run_with_proxy(
        self,
        plan: Plan,
        name: str,
        staging: str,
        host: SessionHost,
        serve: Callable[[Plan, Any], Any],
        *,
        cidfile: str = "",
    ) -> int:
        argv = self.render_for(plan, "create", name=name, staging=staging, cidfile=cidfile)
        cid = self._making(plan.overlay, *argv[1:])
        forwarders: Any = None
        try:
            self._making(plan.overlay, "init", cid)
            pid = int(self._engine("inspect", "--format", "{{.State.Pid}}", cid))
            if pid <= 0:
                raise RccError(f"{self.engine} did not report the container's pid", code=ExitCode.SETUP)
            listener = None
            if plan.net.mode == "proxy":
                from rcc.netns import listen_in_netns

                listener = listen_in_netns(pid, plan.net.proxy_port)
            forwarders = _forwarders(plan, pid)  # forks, then starts a thread: after the listener's fork
            if listener is not None:
                host.serve_proxy(listener, serve)
            start = [self.engine_path, "start", "--attach", "--detach-keys", ""]
            if True:  # stdin is always forwarded, as with `run --interactive`
                start.append("--interactive")
            return self._attached([*start, cid])
        finally:
            if forwarders is not None:
                forwarders.close()
            subprocess.run(
                [self.engine_path, "rm", "--force", "--ignore", cid],
                capture_output=True,
                check=False,
            )

    def _refuse_rootless_docker(self) -> None:
        """A normal user's docker is either a rootful daemon (docker group: --user works as for root) or a
        rootless one (dockerd-rootless.sh), which maps the container's uids to subordinate ids (files made in the
        project would belong to 100000+uid) and on cgroup v1 ignores --pids-limit/--memory without an error.
        rcc does not render for it yet: refuse instead of running with wrong owners or without limits."""
        info = self._engine("info", "--format", "{{json .SecurityOptions}}")
        if "name=rootless" in info:
            raise RccError(
                "rootless docker is not supported by rcc's docker backend",
                hint="use rootless podman (`--backend podman`), or a rootful docker daemon; see docs/containers.md",
                code=ExitCode.CONFIG,
            )

    def _remove(self, name: str) -> None:
        subprocess.run([self.engine_path, "rm", "--force", name], capture_output=True, check=False)

    def _run_docker_with_proxy(
        self,
        plan: Plan,
        name: str,
        staging: str,
        host: SessionHost,
        serve: Callable[[Plan, Any], Any],
        *,
        cidfile: str = "",
    ) -> int:
        """docker has no `init` step: create the container with the gate as its command, start it attached, put
        the proxy listener into its network namespace, then let the gate exec the command (invariant 4)."""
        gate_dir = os.path.join(staging, "gate.d")  # staging is 0700 and rcc's own (mkdtemp)
        os.mkdir(gate_dir, 0o700)
        gate = os.path.join(gate_dir, "go")
        os.mkfifo(gate, 0o400)
        os.chmod(gate, 0o400)  # readable by the container's user (rcc's uid), writable by no one without caps
        # rcc holds it read-write: the gate's open never blocks, and closing it is the gate's EOF (no "go").
        gate_fd = os.open(gate, os.O_RDWR | os.O_CLOEXEC)
        forwarders: Any = None
        created = False
        try:
            self._engine(*self.render_for(plan, "create", name=name, staging=staging, gate=gate, cidfile=cidfile)[1:])
            created = True

            def release(proc: subprocess.Popen[bytes]) -> None:
                nonlocal gate_fd, forwarders
                pid = self._running_pid(name, proc)
                from rcc.netns import listen_in_netns

                listener = listen_in_netns(pid, plan.net.proxy_port) if plan.net.mode == "proxy" else None
                forwarders = _forwarders(plan, pid)
                self._check_same_netns(name, pid)
                if listener is not None:
                    host.serve_proxy(listener, serve)
                os.write(gate_fd, b"go\n")
                os.close(gate_fd)
                gate_fd = -1

            start = [self.engine_path, "start", "--attach", "--interactive", "--detach-keys", DOCKER_DETACH_KEYS]
            return self._attached([*start, name], release)
        finally:
            if gate_fd >= 0:
                os.close(gate_fd)  # the gate reads EOF: the command never runs
            if forwarders is not None:
                forwarders.close()
            if created:
                self._remove(name)

    def _running_pid(self, name: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
        """The host pid of the started container's init, once `docker start --attach` has started it."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            out = self._engine("inspect", "--format", "{{.State.Running}} {{.State.Pid}}", name)
            running, _, pid = out.partition(" ")
            if running == "true" and pid.isdigit() and int(pid) > 0:
                return int(pid)
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RccError(
                    f"the {self.engine} container did not start ({out or 'no state'}); its command did not run",
                    hint="see the engine's message above; run `rcc doctor`",
                    code=ExitCode.SETUP,
                )
            time.sleep(0.02)

    def _check_same_netns(self, name: str, pid: int) -> None:
        """The listener went into the netns of `pid`: make sure that is still the container's own, not the
        host's (the pid could only have been reused if the container was removed under rcc)."""
        try:
            theirs = os.stat(f"/proc/{pid}/ns/net").st_ino
            ours = os.stat("/proc/self/ns/net").st_ino
        except OSError as e:
            msg = f"the {self.engine} container ended before it was released: {e}"
            raise RccError(msg, code=ExitCode.SETUP) from e
        again = self._engine("inspect", "--format", "{{.State.Pid}}", name)
        if theirs == ours or again != str(pid):
            raise RccError(
                f"the {self.engine} container's network namespace changed while rcc set up its proxy",
                code=ExitCode.SETUP,
            )

    def _install_hint(self) -> str:
        if self.engine == "podman":
            return "install it: `sudo apt-get install podman` (Debian/Ubuntu), `sudo dnf install podman` (Fedora)"
        return "install Docker Engine (https://docs.docker.com/engine/install/) and start the daemon"


_REAP = 'read -r said; [ "$said" = done ] && exit 0; "$0" rm --force "$1"; sleep 2; exec "$0" rm --force "$1"'


class _Reaper:
    """A watcher outside rcc's process group that removes the session's container if rcc dies without saying
    it is done. PR_SET_PDEATHSIG covers rcc alone being killed (the client passes SIGTERM on); this covers rcc
    and its engine client killed together (`kill -9 -PGID`, the OOM killer): the container, held by the
    engine's monitor, would otherwise run on with nobody attached. It reads a pipe only rcc holds: EOF means rcc
    is gone; it tries twice, in case the container was still being made."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, fd: int) -> None:
        self.proc, self.fd = proc, fd

    def done(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.fd, b"done\n")
            os.close(self.fd)
            self.fd = -1
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)


def _reaper(engine_path: str, name: str) -> _Reaper:
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _REAP, engine_path, name],
            stdin=r,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in rcc's process group: a kill of the group leaves it to do its work
            close_fds=True,
        )
    except OSError as e:
        os.close(w)
        raise RccError(f"cannot start the session's container watcher: {e}", code=ExitCode.SETUP) from e
    finally:
        os.close(r)
    return _Reaper(proc, w)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End an engine client that rcc no longer waits for (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop_reason(plan: Plan, log: Any, cidfile: str, code: int) -> str:
    """Which of rcc's limits stopped the container, from the kernel's log ("" if none did, or rcc cannot tell)."""
    from rcc.limits import container_limit_hits, container_stop_reason

    kmsg = log.read_new()
    try:
        with open(cidfile) as f:
            cid = f.read().strip()
    except OSError:
        return ""  # the container was never created
    memory, processes = container_limit_hits(kmsg, cid)
    return container_stop_reason(plan.limits, memory and bool(plan.limits.memory), processes, code)


def _staging_path(staging: str, op: FileData) -> str:
    import hashlib

    return os.path.join(staging, hashlib.sha256(op.dest.encode()).hexdigest()[:16])


def _egress_proxy(plan: Plan, listener: Any) -> Any:
    """rcc's allowlisting proxy on the listener (the same one the bwrap backend starts)."""
    from rcc.backends._proxy import start_proxy

    return start_proxy(plan, listener, "container")


def _forwarders(plan: Plan, pid: int) -> Any:
    """Published ports and host services (rcc.forward) into the container's network namespace: the same
    forwarders as bwrap's (the container has `--network none`, so the engine's own -p cannot apply)."""
    if not (plan.net.publish or plan.net.host_services):
        return None
    from rcc.forward import Forwarders

    f = Forwarders(plan, pid)
    f.start()
    return f
