"""Resource limits for a session: memory, processes, CPU and the size of the private tmpfs mounts.

Policy values are strings ("4G", "75%", "4096", "2", "none"); parse_*() validate them (config.py) and compile.py
resolves them to numbers in the plan (ResourceLimits: 0 = no limit). The bwrap backend enforces them here:

- cgroups, when the machine gives rcc one: cgroup v2 as root (a cgroup `rcc/<session>` below rcc's own root),
  cgroup v2 as a user with a systemd user manager (a transient scope `rcc-<session>.scope` that systemd-run makes
  with the limits before it execs bwrap in place; see wrap()), cgroup v1 as root or as a user whose own v1
  cgroups were delegated to them (rcc's own cgroup directory writable, e.g. made and chowned by root: one cgroup
  per controller, memory, pids, cpu, each below rcc's own). The sandbox's processes are moved in while the
  command is still held (bwrap --block-fd), or start in the scope, so nothing it forks is outside. memory and
  processes count the whole session; cpu is a share of CPUs (cpu.max / cfs quota).
- rlimits on the sandbox's first processes (inherited by everything it starts), where there is no cgroup:
  RLIMIT_NPROC for processes (counted per user namespace, so only the sandbox's own processes count; the kernel
  never applies it to root), RLIMIT_DATA for memory (per process, not per session). Soft and hard: the sandbox
  cannot raise them back.
- tmpfs sizes: bwrap --size on each writable tmpfs (compile.py), everywhere.

Invariants:
1. Limits are applied before the command runs; if a cgroup rcc decided to use cannot be made, the session does
   not start (never a session that silently lost its limits).
2. The sandbox cannot leave or change its cgroup: /sys is not mounted inside and every capability is dropped.
3. When a limit stopped the command, rcc says which (memory: the cgroup's OOM kill count; processes: refused
   forks), on stderr after the session.
4. A systemd scope is trusted only after checking it: bwrap's own cgroup (/proc/PID/cgroup) must be the scope
   rcc asked for and its memory.max, pids.max and cpu.max must hold the limits, before the command runs; a
   systemd-run that did not deliver (failed, or a stand-in that made no scope) ends the session unstarted.

Assumptions of the systemd path (this project's test machine has a hybrid cgroup layout and no systemd user
manager, so they are checked there by the structural tests, and on a real machine by the release workflow's
linux-user-scope job): `systemd-run --user --scope` asks the user manager for a transient scope holding its own
pid, waits for it, then execs the command (same pid); MemoryMax=, MemorySwapMax=, TasksMax= and CPUQuota= become
memory.max, memory.swap.max, pids.max and cpu.max of the scope's cgroup; systemd removes the scope's cgroup soon
after its last process ends, so its event counters are read while it lives (a watcher woken by the kernel's
change notification on memory.events and pids.events).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from rcc.errors import ExitCode, RccError
from rcc.plan import ResourceLimits
from rcc.record import record

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_MEMORY = 64 << 20
MIN_TMP = 1 << 20
MIN_PROCESSES = 16

# Built-in defaults (README "Resource limits" says why).
DEFAULT_MEMORY = "75%"  # of physical memory: a leak stops before the host's own programs are pushed out
DEFAULT_PROCESSES = "4096"  # far above any build's need, far below what takes a machine down (fork bomb)
DEFAULT_CPU = "none"  # a busy build slows the host but does not take it down; the scheduler shares
DEFAULT_TMP = "2G"  # each private tmpfs (/tmp, home, /var/tmp, /dev/shm, /run, /var): a /tmp filler stops there


def parse_size(value: object, what: str, minimum: int) -> str:
    """ "4G", "512M", "1.5G", "75%" (of physical memory) or "none" -> the normalised string. ValueError."""
    if not isinstance(value, str):
        raise ValueError(f'{what} must be a string like "4G", "75%" or "none"')
    v = value.strip().upper().removesuffix("IB").removesuffix("B")
    if v == "NONE":
        return "none"
    if v.endswith("%"):
        pct = v[:-1]
        if not (pct.isascii() and pct.isdigit() and 1 <= int(pct) <= 100):
            raise ValueError(f"{what} {value!r}: a percentage is 1% to 100% of physical memory")
        return f"{int(pct)}%"
    unit = v[-1:] if v[-1:] in _UNITS and v[-1:] else ""
    num = v[: len(v) - len(unit)]
    if not (num.isascii() and num.replace(".", "", 1).isdigit()):
        raise ValueError(f'{what} {value!r}: expected a size like "4G", "512M", "75%" or "none"')
    if float(num) * _UNITS[unit] < minimum:
        raise ValueError(f"{what} {value!r}: at least {minimum >> 20}M")
    return f"{num}{unit}"


def parse_count(value: object, what: str) -> str:
    if value == "none":
        return "none"
    if type(value) is str and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or value < MIN_PROCESSES:
        raise ValueError(f'{what} must be a number of processes (at least {MIN_PROCESSES}) or "none"')
    return str(value)


def parse_cpus(value: object, what: str) -> str:
    if value == "none":
        return "none"
    try:
        n = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else -1.0
    except ValueError:
        n = -1.0
    if not 0.01 <= n <= 4096:
        raise ValueError(f'{what} must be a number of CPUs (e.g. 2 or 0.5) or "none"')
    return f"{n:g}"


def resolve_size(spec: str, memory_total: int) -> int:
    """Bytes for a normalised size (0: no limit; a percentage of unknown memory is no limit)."""
    if spec == "none":
        return 0
    if spec.endswith("%"):
        return memory_total * int(spec[:-1]) // 100
    unit = spec[-1] if spec[-1] in _UNITS else ""
    return int(float(spec[: len(spec) - len(unit)]) * _UNITS[unit])


def show_size(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    if n >= _UNITS["G"]:
        return f"{n / _UNITS['G']:.1f}G"
    return f"{n >> 20}M"


# ------------------------------------------------------------------------------------------- the machine


@record
class Enforcement:
    """How this machine enforces each limit for this user: "cgroup v2", "cgroup v1", "rlimit (per process)",
    "rlimit", "tmpfs size" or "" (not enforced)."""

    memory: str
    processes: str
    cpu: str
    tmp: str
    cgroup: str  # "v2", "scope" (cgroup v2 through a systemd scope), "v1" or "": the kind rcc uses
    how_to_get_the_rest: str = ""
    systemd_run: str = ""  # "scope": the systemd-run that makes it


CGROUP = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "pids", "cpu")


def _own_cgroup_v1(controller: str) -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _n, ctrls, path = line.rstrip("\n").split(":", 2)
                if controller in ctrls.split(","):
                    return path
    except OSError:
        return None
    return None


def _v1_dir(controller: str) -> str | None:
    """The directory for rcc's session cgroups of a v1 controller (rcc's own cgroup), if root may use it."""
    own = _own_cgroup_v1(controller)
    base = os.path.join(CGROUP, controller)
    if own is None or not os.path.isfile(os.path.join(base, "cgroup.procs")):
        return None
    d = os.path.normpath(base + own)
    return d if os.access(d, os.W_OK) else None


def _v2_root() -> str | None:
    """cgroup v2 as root: rcc's own cgroup root (its cgroup namespace's), if controllers can be delegated."""
    if not os.path.isfile(os.path.join(CGROUP, "cgroup.controllers")) or os.geteuid() != 0:
        return None
    return CGROUP if os.access(CGROUP, os.W_OK) else None


def _v2_controllers() -> set[str]:
    try:
        with open(os.path.join(CGROUP, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


def _find_tool(name: str) -> str:
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        p = os.path.join(d or ".", name)
        if os.path.isabs(p) and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return ""


def _user_scope() -> tuple[str, set[str]] | None:
    """cgroup v2 for a user: (systemd-run, the controllers the user's systemd may give a scope), when the
    machine has the unified hierarchy, this user's systemd manager is running and systemd-run is installed."""
    if os.geteuid() == 0 or not os.path.isfile(os.path.join(CGROUP, "cgroup.controllers")):
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
        return None
    tool = _find_tool("systemd-run")
    uid = os.getuid()
    manager = os.path.join(CGROUP, "user.slice", f"user-{uid}.slice", f"user@{uid}.service", "cgroup.controllers")
    try:
        with open(manager) as f:
            have = set(f.read().split())
    except OSError:
        return None
    return (tool, have) if tool else None


def enforcement() -> Enforcement:
    """What this machine can enforce for rcc as the current user (for rcc doctor and the backend)."""
    memory = processes = cpu = cgroup = tool = ""
    root = os.geteuid() == 0
    if root and _v2_root():
        have = _v2_controllers()
        cgroup = "v2"
        memory = "cgroup v2" if "memory" in have else ""
        processes = "cgroup v2" if "pids" in have else ""
        cpu = "cgroup v2" if "cpu" in have else ""
    elif (scope := _user_scope()) is not None and scope[1] & set(V1_CONTROLLERS):
        tool, have = scope
        cgroup = "scope"
        memory = "cgroup v2 (systemd scope)" if "memory" in have else ""
        processes = "cgroup v2 (systemd scope)" if "pids" in have else ""
        cpu = "cgroup v2 (systemd scope)" if "cpu" in have else ""
    elif any(_v1_dir(c) for c in V1_CONTROLLERS):  # root, or a user's delegated v1 cgroups
        cgroup = "v1"
        memory = "cgroup v1" if _v1_dir("memory") else ""
        processes = "cgroup v1" if _v1_dir("pids") else ""
        cpu = "cgroup v1" if _v1_dir("cpu") else ""
    memory = memory or "rlimit (per process)"
    processes = processes or ("" if root else "rlimit")
    rest = []
    if not cgroup or "" in (memory, processes, cpu) or "rlimit" in memory + processes:
        if root:
            rest.append("mount cgroup v2 with the memory, pids and cpu controllers (or cgroup v1 ones) writable")
        else:
            rest.append(
                "on cgroup v2, log in so that your systemd user manager runs (or `loginctl enable-linger`) with "
                "systemd-run installed: rcc then puts each session in a systemd scope with the limits "
                "(the memory, pids and cpu controllers delegated to user@.service); on cgroup v1, have root "
                "delegate a cgroup directory per controller (memory, pids, cpu: mkdir, chown -R to you, and "
                "start rcc in it)"
            )
    return Enforcement(memory, processes, cpu, "tmpfs size", cgroup, "; ".join(rest), tool)


# ------------------------------------------------------------------------------------------- a session


class SessionLimits:
    """Applies a plan's limits to a held sandbox (apply), then reports what stopped it (close)."""

    def __init__(self, limits: ResourceLimits, session: str) -> None:
        self.limits = limits
        self.session = session or f"pid{os.getpid()}"
        self.dirs: dict[str, str] = {}  # controller ("memory", "pids", "cpu"; "" for v2) -> cgroup dir rcc made
        self.kind = ""
        self.found = Enforcement("", "", "", "", "")
        self.decided = False
        self.scope: _Watch | None = None  # "scope": the scope's event counters

    def _decide(self) -> None:
        if not self.decided:
            self.found = enforcement()
            self.kind = self.found.cgroup
            self.decided = True

    def wrap(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """bwrap's argv and environment, started by systemd-run in a scope with the limits where that is how
        this machine gives a user cgroup v2 (kind "scope"); unchanged otherwise. systemd-run needs the user
        manager's address (XDG_RUNTIME_DIR): it gets it, and bwrap removes it again (--unsetenv) unless the
        policy lets it into the sandbox."""
        if not self.wanted:
            return argv, env
        self._decide()
        if self.kind != "scope":
            return argv, env
        lim, f = self.limits, self.found
        props: list[str] = []
        if lim.memory and f.memory.startswith("cgroup"):
            props += ["-p", f"MemoryMax={lim.memory}", "-p", "MemorySwapMax=0"]
        if lim.processes and f.processes.startswith("cgroup"):
            props += ["-p", f"TasksMax={lim.processes}"]
        if lim.cpu and f.cpu.startswith("cgroup"):
            props += ["-p", f"CPUQuota={_cpu_percent(lim.cpu)}%"]
        if not props:
            self.kind = ""
            return argv, env
        env = dict(env)
        opts: list[str] = []
        for name in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
            if name not in env and name in os.environ:
                env[name] = os.environ[name]
                opts += ["--unsetenv", name]
        head = [f.systemd_run, "--user", "--scope", "--quiet", "--collect", f"--unit={self.unit}", *props, "--"]
        return [*head, argv[0], *opts, *argv[1:]], env

    @property
    def unit(self) -> str:
        return f"rcc-{self.session}.scope"

    @property
    def wanted(self) -> bool:
        lim = self.limits
        return bool(lim.memory or lim.processes or lim.cpu)

    def start(self, bwrap_pid: int) -> None:
        """Make the session's cgroups and move bwrap in, right after it was spawned: the first move into a
        cgroup waits for an RCU grace period (about 15 ms here), which then overlaps bwrap's own set-up."""
        if not self.wanted:
            return
        self._decide()
        if self.kind == "scope":
            return  # bwrap is in its scope already (or not yet: systemd-run may still be at work); apply() checks
        self._cgroups(self._make_v2 if self.kind == "v2" else self._make_v1 if self.kind == "v1" else None)
        self._cgroups(lambda: self._move([bwrap_pid]))

    def apply(self, pids: list[int]) -> None:
        """Put the held sandbox's processes (bwrap and its first child, and anything they forked) under the
        limits; the command has not run yet."""
        if not self.wanted:
            return
        if self.kind == "scope":
            self._cgroups(lambda: self._check_scope(pids[0]))
        else:
            self._cgroups(lambda: self._move(_tree(pids)))
        self._rlimits(pids, self.found)

    def _check_scope(self, pid: int) -> None:
        """bwrap runs in the scope rcc asked systemd-run for, and the scope holds the limits (invariant 4)."""
        path = cgroup_v2_path(pid)
        if path is None or os.path.basename(path) != self.unit:
            raise OSError(f"bubblewrap is not in the scope {self.unit} systemd-run was to make (its cgroup: {path})")
        d = os.path.normpath(CGROUP + path)
        lim, f = self.limits, self.found
        want: list[tuple[str, str]] = []
        if lim.memory and f.memory.startswith("cgroup"):
            want.append(("memory.max", str(lim.memory & ~4095)))  # the kernel keeps whole pages
        if lim.processes and f.processes.startswith("cgroup"):
            want.append(("pids.max", str(lim.processes)))
        if lim.cpu and f.cpu.startswith("cgroup"):
            want.append(("cpu.max", f"{_cpu_percent(lim.cpu) * 1000} 100000"))
        for name, value in want:
            try:
                with open(os.path.join(d, name)) as fh:
                    have = fh.read().strip()
            except OSError as e:
                raise OSError(f"the scope {self.unit} has no {name}: {e.strerror}") from e
            if have != value:
                raise OSError(f"the scope {self.unit} has {name} {have!r}, not {value!r}")
        self.scope = _Watch(d)

    def _cgroups(self, step: Callable[[], None] | None) -> None:
        if step is None:
            return
        try:
            step()
        except OSError as e:
            self.close(0, quiet=True)
            raise RccError(
                f"cannot set up the session's cgroup: {e}",
                hint='run `rcc doctor`; set [limits] to "none" to run without cgroup limits',
                code=ExitCode.SETUP,
            ) from e

    def _move(self, pids: list[int]) -> None:
        for d in self.dirs.values():
            for pid in pids:
                try:
                    _write(os.path.join(d, "cgroup.procs"), str(pid))
                except ProcessLookupError:
                    continue  # a process bwrap forked has already ended (ESRCH)

    def _make_v2(self) -> None:
        parent = os.path.join(CGROUP, "rcc")
        with contextlib.suppress(FileExistsError):
            os.mkdir(parent, 0o755)
        have = _v2_controllers()
        want = [c for c, on in (("memory", self.limits.memory), ("pids", self.limits.processes),
                                ("cpu", self.limits.cpu)) if on and c in have]  # fmt: skip
        for d in (CGROUP, parent):
            _write(os.path.join(d, "cgroup.subtree_control"), " ".join(f"+{c}" for c in want))
        _sweep(parent, "")
        d = os.path.join(parent, self.session)
        os.mkdir(d, 0o755)
        self.dirs[""] = d
        if self.limits.memory and "memory" in want:
            _write(os.path.join(d, "memory.max"), str(self.limits.memory))
            with contextlib.suppress(OSError):
                _write(os.path.join(d, "memory.swap.max"), "0")
        if self.limits.processes and "pids" in want:
            _write(os.path.join(d, "pids.max"), str(self.limits.processes))
        if self.limits.cpu and "cpu" in want:
            _write(os.path.join(d, "cpu.max"), f"{int(self.limits.cpu * 100000)} 100000")

    def _make_v1(self) -> None:
        for ctrl, on in (("memory", self.limits.memory), ("pids", self.limits.processes), ("cpu", self.limits.cpu)):
            base = _v1_dir(ctrl)
            if not on or base is None:
                continue
            _sweep(base, "rcc-")
            d = os.path.join(base, f"rcc-{self.session}")
            os.mkdir(d, 0o755)
            self.dirs[ctrl] = d
            if ctrl == "memory":
                _write(os.path.join(d, "memory.limit_in_bytes"), str(self.limits.memory))
                with contextlib.suppress(OSError):  # swap accounting may be off: then there is no swap to use
                    _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(self.limits.memory))
            elif ctrl == "pids":
                _write(os.path.join(d, "pids.max"), str(self.limits.processes))
            else:
                _write(os.path.join(d, "cpu.cfs_period_us"), "100000")
                _write(os.path.join(d, "cpu.cfs_quota_us"), str(int(self.limits.cpu * 100000)))

    def _rlimits(self, pids: list[int], found: Enforcement) -> None:
        import resource

        todo = []
        if self.limits.processes and found.processes == "rlimit":
            todo.append((resource.RLIMIT_NPROC, self.limits.processes))
        if self.limits.memory and found.memory.startswith("rlimit"):
            todo.append((resource.RLIMIT_DATA, self.limits.memory))
        for pid in _tree(pids):
            for res, n in todo:
                try:
                    resource.prlimit(pid, res, (n, n))
                except OSError as e:
                    raise RccError(
                        f"cannot set the session's resource limits: {e}", hint="run `rcc doctor`", code=ExitCode.SETUP
                    ) from e

    def close(self, code: int, quiet: bool = False) -> str:
        """Remove the cgroups; return what stopped the command ("" if no limit did)."""
        why = "" if quiet else self._why(code)
        if self.scope is not None:
            self.scope.stop()  # systemd removes the scope itself once its last process has ended
        import time

        deadline = time.monotonic() + 1.0
        for d in self.dirs.values():
            while True:  # the sandbox's last processes leave the cgroup a moment after bwrap ends
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # a later session sweeps it (_sweep)
                    time.sleep(0.001)
        self.dirs = {}
        return why

    def _why(self, code: int) -> str:
        if self.scope is not None:
            oom, refused = self.scope.read()
            if oom and code != 0:
                return f"killed: memory limit {show_size(self.limits.memory)} reached"
            if refused:
                return f"process limit {self.limits.processes} reached: {refused} forks refused"
            return ""
        mem = self.dirs.get("memory") or self.dirs.get("")
        if mem and code != 0:
            events = "memory.events" if self.kind == "v2" else "memory.oom_control"
            if _counter(os.path.join(mem, events), "oom_kill") > 0:
                return f"killed: memory limit {show_size(self.limits.memory)} reached"
        pids = self.dirs.get("pids") or self.dirs.get("")
        if pids:
            refused = _counter(os.path.join(pids, "pids.events"), "max")
            if refused > 0:
                return f"process limit {self.limits.processes} reached: {refused} forks refused"
        return ""


def _cpu_percent(cpus: float) -> int:
    return max(1, round(cpus * 100))


def cgroup_v2_path(pid: int) -> str | None:
    """The process's cgroup on the unified hierarchy ("0::PATH" in /proc/PID/cgroup)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        return None
    return None


class _Watch:
    """A cgroup's OOM kills (memory.events oom_kill) and refused forks (pids.events max), kept up to date while
    the cgroup exists: the kernel marks a cgroup's event file changed (poll: POLLPRI) when a counter moves, and a
    thread reads them then, so the figures survive the cgroup's removal."""

    FILES = (("memory.events", "oom_kill"), ("pids.events", "max"))

    def __init__(self, cgroup_dir: str) -> None:
        import threading

        self.fds: list[tuple[int, str]] = []
        self.counts = [0] * len(self.FILES)
        for name, key in self.FILES:
            try:
                self.fds.append((os.open(os.path.join(cgroup_dir, name), os.O_RDONLY | os.O_CLOEXEC), key))
            except OSError:
                self.fds.append((-1, key))
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        self.lock = threading.Lock()
        self.read()  # also arms the change notification
        self.thread = threading.Thread(target=self._run, name="rcc-scope-events", daemon=True)
        self.thread.start()

    def read(self, gone: set[int] | None = None) -> tuple[int, int]:
        with self.lock:
            for i, (fd, key) in enumerate(self.fds):
                if fd < 0:
                    continue
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    data = os.read(fd, 4096).decode("ascii", "replace")
                except OSError:
                    if gone is not None:
                        gone.add(fd)
                    continue  # the cgroup is gone (ENODEV): the last figures stay
                for line in data.splitlines():
                    k, _, v = line.partition(" ")
                    if k == key and v.strip().isdigit():
                        self.counts[i] = max(self.counts[i], int(v))
            return self.counts[0], self.counts[1]

    def _run(self) -> None:
        import select

        p = select.poll()
        p.register(self.wake_r, select.POLLIN)
        for fd, _ in self.fds:
            if fd >= 0:
                p.register(fd, select.POLLPRI | select.POLLERR)
        while True:
            events = p.poll()
            if any(fd == self.wake_r for fd, _ in events):
                return
            gone: set[int] = set()
            self.read(gone)
            for fd in gone:  # a removed cgroup's file reads as changed for ever: stop listening to it
                p.unregister(fd)

    def stop(self) -> None:
        os.write(self.wake_w, b"x")
        self.thread.join()
        for fd, _ in self.fds:
            if fd >= 0:
                os.close(fd)
        os.close(self.wake_r)
        os.close(self.wake_w)


def _sweep(parent: str, prefix: str, age: float = 60.0) -> None:
    """Remove the empty cgroups of sessions whose rcc was killed (SIGKILL skips close()). Only ones older than
    `age` seconds: a cgroup another session just made is empty until its processes are moved in."""
    import time

    with contextlib.suppress(OSError):
        for e in os.scandir(parent):
            if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if time.time() - e.stat(follow_symlinks=False).st_mtime > age:
                        os.rmdir(e.path)  # fails (EBUSY) while processes are in it


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _counter(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key and v.strip().isdigit():
                    return int(v)
    except OSError:
        pass
    return 0


def _tree(pids: list[int]) -> list[int]:
    """The given processes and all their descendants (the held sandbox: bwrap, its monitor, the sandbox init)."""
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
            todo.extend(int(x) for x in f.read().split())
    return out


# ------------------------------------------------------------------------------------------- containers

# A container's cgroup is the engine's, and `--rm` removes it (with its counters) before rcc could read them;
# podman's OOMKilled reads false on cgroup v1. The kernel's log names the cgroup whose limit fired, and a
# container's cgroup path carries its id: that is rcc's signal there (root only: dmesg_restrict keeps the log
# from other users, whose sessions then end with the bare exit status).


class KernelLog:
    """The kernel's log from the moment it was opened (/dev/kmsg: one record per read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def follow(cls) -> KernelLog | None:
        """None when this user may not read the kernel's log (kernel.dmesg_restrict) or there is none."""
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            os.lseek(fd, 0, os.SEEK_END)
        except OSError:
            os.close(fd)
            return None
        return cls(fd)

    def read_new(self, most: int = 100_000) -> str:
        """The records logged since follow() (or the last read_new); closes the log."""
        out: list[bytes] = []
        try:
            for _ in range(most):
                try:
                    out.append(os.read(self.fd, 8192))
                except BlockingIOError:
                    break
                except BrokenPipeError:
                    continue  # records were overwritten before we read them (EPIPE): carry on with the next
        finally:
            os.close(self.fd)
        return "\n".join(b.decode("utf-8", "replace").rstrip("\n") for b in out)


def container_limit_hits(kmsg: str, container_id: str) -> tuple[bool, bool]:
    """(memory, processes): did the container's memory limit OOM-kill one of its processes, were forks refused
    by its pids limit? From /dev/kmsg records ("PRIO,SEQ,TIME,FLAGS;MESSAGE"). Only records naming a cgroup
    whose last path component carries the full container id count (another session's container, or the host's
    own OOM killer, never does)."""
    if len(container_id) < 12 or not all(c in "0123456789abcdef" for c in container_id):
        return False, False
    memory = processes = False
    for line in kmsg.splitlines():
        msg = line.partition(";")[2]
        if msg.startswith("oom-kill:") and "constraint=CONSTRAINT_MEMCG" in msg:
            fields = dict(f.partition("=")[::2] for f in msg.removeprefix("oom-kill:").split(","))
            memory = memory or container_id in fields.get("oom_memcg", "").rsplit("/", 1)[-1]
        elif msg.startswith("cgroup: fork rejected by pids controller in "):
            processes = processes or container_id in msg.rsplit("/", 1)[-1]
    return memory, processes


def container_stop_reason(limits: ResourceLimits, memory: bool, processes: bool, code: int) -> str:
    """What rcc says after a container session (the same words as for bwrap's cgroups)."""
    if memory and code != 0:
        return f"killed: memory limit {show_size(limits.memory)} reached"
    if processes:
        return f"process limit {limits.processes} reached: forks were refused"
    return ""
