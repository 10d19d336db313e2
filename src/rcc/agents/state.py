"""An agent's state across sessions: what carries from one session to the next, and what never does.

A session can write everything in its agent's state directory (~/.claude, ~/.codex, ~/.gemini, ~/.aider), and
the agent loads much of it at start: Claude Code's settings.json hooks, commands, agents, skills, plugins, output
styles, CLAUDE.md and MCP servers; codex's config.toml, AGENTS.md, prompts, rules, skills, hooks; gemini's
settings.json, extensions, GEMINI.md, commands; aider's environment file. Shared between projects, that would be
code execution in another project's sandbox. So, in rcc.paths.agent_state_dir(name):

  settings/<rel>        the user's own: `--import-settings` copies, the user's edits on the host. Never mounted
                        writable; each session gets a fresh copy (or a read-only bind, outside the state dirs).
  login/<rel>           profile.keep files of scope "login" (credentials, the account): data only, filtered.
  projects/<key>/<rel>  scope "project" keeps, and profile.project_dirs (transcripts), for one project only.
  run/<sid>/home/<rel>  a fresh directory per session for each profile.state dir, mounted read-write at ~/<rel>:
                        seeded from settings/ and the stores, harvested (keep files only) and removed at the end.
  run/<sid>/seed/...    what was seeded, to tell what the session changed; run/<sid>/project: the project path.

Invariants:
1. Nothing but profile.keep files (filtered by their form: only named JSON keys, only named variables) and
   profile.project_dirs (same project only) outlives a session; everything else a session wrote is removed.
2. Every host read and write here goes through rcc.hostfs: no component is followed if it is a link; a kept
   file the session replaced by a link, a fifo, a directory or something too large is not kept (warned).
3. A session whose rcc was killed leaves run/<sid>; the next session of the agent harvests and removes it once
   it can take its lock (held by a running session).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping

from rcc import hostfs
from rcc.agents.profiles import AgentProfile, Keep
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind
from rcc.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SETTINGS, LOGIN, PROJECTS, RUN, LEGACY = "settings", "login", "projects", "run", "home"
SETTINGS_LIMIT = 16 << 20  # bytes per settings file copied into a session


@record
class AgentRun:
    """One session's agent state: its run directory (locked while it runs) and the binds that mount it."""

    profile: AgentProfile
    state_dir: str  # rcc's state dir (rcc.paths.state_dir)
    root: str  # the agent's directory in it (absolute)
    project: str
    sid: str
    lock_fd: int
    binds: tuple[Bind, ...]


def project_key(project: str) -> str:
    """A directory name for the project: readable, and unique by its path."""
    import hashlib

    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(project.rstrip("/")))[:40]
    return f"{base.lstrip('.') or 'root'}-{hashlib.sha256(os.fsencode(project)).hexdigest()[:16]}"


def _agent_fd(state_dir: str, name: str, create: bool = True) -> int:
    return hostfs.open_state(state_dir, f"agents/{name}", create=create)


def _under_state(profile: AgentProfile, rel: str) -> bool:
    return any(rel == s or rel.startswith(s + "/") for s in profile.state)


# ----------------------------------------------------------------------------------------------- file helpers


def _read(dfd: int, rel: str, limit: int) -> bytes | None:
    """dfd/rel without following links (None when missing); UnsafePathError for a link, fifo, too large..."""
    parent, name = os.path.split(rel)
    try:
        fd = hostfs.walk_dir(dfd, parent)
    except RccError as e:
        if e.code == ExitCode.UNSAFE_PATH:
            raise
        return None  # a directory on the way is missing
    try:
        return hostfs.read_file(fd, name, limit, shown=rel)
    finally:
        os.close(fd)


def _write(dfd: int, rel: str, data: bytes | None) -> None:
    """Replace dfd/rel with data (None: remove it), making directories on the way; never through a link."""
    parent, name = os.path.split(rel)
    fd = hostfs.walk_dir(dfd, parent, create=True)
    try:
        if data is None:
            st = hostfs.lstat_at(fd, name)
            if st is not None:
                hostfs.remove_tree(fd, name)
        else:
            hostfs.replace_file(fd, name, data, shown=rel)
    finally:
        os.close(fd)


def _copy_tree(src_fd: int, dest_fd: int, dest_rel: str) -> list[str]:
    """Copy the regular files below src_fd into dest_fd/dest_rel (links and special files are skipped)."""
    copied = []
    for dirpath, _dirs, files, dirfd in os.fwalk(".", dir_fd=src_fd, follow_symlinks=False):
        for f in sorted(files):
            st = hostfs.lstat_at(dirfd, f)
            if st is None or not stat.S_ISREG(st.st_mode):
                continue
            data = hostfs.read_file(dirfd, f, SETTINGS_LIMIT)
            rel = os.path.normpath(os.path.join(dirpath, f))
            _write(dest_fd, os.path.join(dest_rel, rel), data)
            copied.append(rel)
    return copied


# ----------------------------------------------------------------------------------------------- filters


def _pick(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The dotted `keys` of obj, as a nested object of the same shape."""
    out: dict[str, Any] = {}
    missing = object()
    for key in keys:
        parts = key.split(".")
        cur: Any = obj
        for p in parts:
            cur = cur.get(p, missing) if isinstance(cur, dict) else missing
            if cur is missing:
                break
        if cur is missing:
            continue
        dest = out
        for p in parts[:-1]:
            dest = dest.setdefault(p, {})
        dest[parts[-1]] = cur
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _json_bytes(obj: dict[str, Any]) -> bytes | None:
    return json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n" if obj else None


def filter_keep(keep: Keep, data: bytes, project: str) -> dict[str, bytes | None]:
    """What of a session's file is kept, per store ("login"/"project"). ValueError when it is not of its form."""
    if keep.form == "file":
        return {keep.scope: data}
    if keep.form == "env":
        names = set(keep.keys)
        lines = []
        for line in data.decode("utf-8").splitlines():
            name, eq, value = line.partition("=")
            if eq and name.strip() in names and "\0" not in value:
                lines.append(f"{name.strip()}={value}\n")
        return {keep.scope: "".join(lines).encode() or None}
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    out: dict[str, bytes | None] = {keep.scope: _json_bytes(_pick(obj, keep.keys))}
    if keep.project_keys:
        entry = obj.get("projects", {}).get(project) if isinstance(obj.get("projects"), dict) else None
        out["project"] = _json_bytes(_pick(entry, keep.project_keys)) if isinstance(entry, dict) else None
    return out


def _seeded(keep: Keep, base: bytes | None, stores: dict[str, bytes | None], project: str) -> bytes | None:
    """The file a session starts with: the settings copy (base) with the kept parts laid over it."""
    if keep.form != "json":
        got = stores.get(keep.scope)
        return got if got is not None else base
    try:
        obj = json.loads(base) if base else {}
    except ValueError:
        obj = {}
    if not isinstance(obj, dict):
        obj = {}
    if stores.get(keep.scope):
        obj = _merge(obj, json.loads(stores[keep.scope] or b"{}"))
    if stores.get("project"):
        projects: dict[str, Any] = obj["projects"] if isinstance(obj.get("projects"), dict) else {}
        entry: dict[str, Any] = projects[project] if isinstance(projects.get(project), dict) else {}
        obj["projects"] = {**projects, project: _merge(entry, json.loads(stores["project"] or b"{}"))}
    return json.dumps(obj, indent=2).encode() + b"\n" if obj else base


def _store_rel(scope: str, project: str, rel: str) -> str:
    return f"{LOGIN}/{rel}" if scope == "login" else f"{PROJECTS}/{project_key(project)}/{rel}"


def _load_store(agent_fd: int, scope: str, project: str, rel: str, limit: int) -> bytes | None:
    try:
        return _read(agent_fd, _store_rel(scope, project, rel), limit)
    except RccError:
        return None  # a damaged store is as good as none: the session starts logged out


# ----------------------------------------------------------------------------------------------- a session


def prepare(profile: AgentProfile, home: str, project: str, env: Mapping[str, str]) -> AgentRun:
    """Make this session's fresh state (seeded), sweep what killed sessions left, and return the binds."""
    import fcntl

    from rcc.paths import state_dir

    sdir = state_dir(env)
    root = os.path.join(sdir, "agents", profile.name)
    afd = _agent_fd(sdir, profile.name)
    try:
        if hostfs.lstat_at(afd, LEGACY) is not None and hostfs.lstat_at(afd, LOGIN) is None:
            _migrate_legacy(profile, afd, root)
        rfd = hostfs.walk_dir(afd, RUN, create=True, shown=os.path.join(root, RUN))
        try:
            _sweep(profile, afd, rfd, root)
            sid = os.urandom(6).hex()
            os.mkdir(sid, 0o700, dir_fd=rfd)
            lock = hostfs.walk_dir(rfd, sid, shown=os.path.join(root, RUN, sid))
        finally:
            os.close(rfd)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            binds = _seed(profile, afd, lock, root=root, sid=sid, home=home, project=project)
        except BaseException:
            os.close(lock)
            _remove_run(afd, sid)
            raise
        return AgentRun(profile, sdir, root, project, sid, lock, binds)
    except OSError as e:
        raise RccError(f"cannot prepare the agent state in {root}: {e}", code=ExitCode.SETUP) from e
    finally:
        os.close(afd)


def _seed(
    profile: AgentProfile, afd: int, run_fd: int, *, root: str, sid: str, home: str, project: str
) -> tuple[Bind, ...]:
    run_path = os.path.join(root, RUN, sid)
    hostfs.create_file(run_fd, "project", os.fsencode(project))
    binds: list[Bind] = []
    home_fd = hostfs.walk_dir(run_fd, "home", create=True)
    try:
        for rel in profile.state:
            os.close(hostfs.walk_dir(home_fd, rel, create=True))
            try:
                src = hostfs.walk_dir(afd, f"{SETTINGS}/{rel}", shown=os.path.join(root, SETTINGS, rel))
            except RccError as e:
                if e.code == ExitCode.UNSAFE_PATH:
                    raise
                src = -1
            if src >= 0:
                try:
                    _copy_tree(src, home_fd, rel)
                finally:
                    os.close(src)
            binds.append(
                Bind(
                    os.path.join(run_path, "home", rel),
                    os.path.join(home, rel),
                    True,
                    f"{profile.name}: agent state, fresh for this session",
                )
            )
        for keep in profile.keep:
            base = _read(home_fd, keep.rel, keep.limit) if _under_state(profile, keep.rel) else None
            stores = {
                scope: _load_store(afd, scope, project, keep.rel, keep.limit)
                for scope in {keep.scope, *(["project"] if keep.project_keys else [])}
            }
            for scope, content in stores.items():
                if content is not None:
                    _write(run_fd, f"seed/{scope}/{keep.rel}", content)
            data = _seeded(keep, base, stores, project)
            if data is not None and _under_state(profile, keep.rel):
                _write(home_fd, keep.rel, data)
        for rel in profile.project_dirs:
            store = f"{PROJECTS}/{project_key(project)}/{rel}"
            os.close(hostfs.walk_dir(afd, store, create=True, shown=os.path.join(root, store)))
            os.close(hostfs.walk_dir(home_fd, rel, create=True))  # the mount point
            binds.append(
                Bind(
                    os.path.join(root, store),
                    os.path.join(home, rel),
                    True,
                    f"{profile.name}: agent state kept for this project only",
                )
            )
    finally:
        os.close(home_fd)
    for rel in profile.importable:
        if _under_state(profile, rel):
            continue
        st = _settings_stat(afd, rel)
        if st is not None:  # e.g. ~/.aider.conf.yml: read-only, the user's own
            binds.append(
                Bind(
                    os.path.join(root, SETTINGS, rel),
                    os.path.join(home, rel),
                    False,
                    f"{profile.name}: your settings, read-only",
                )
            )
    return tuple(binds)


def _settings_stat(afd: int, rel: str) -> os.stat_result | None:
    parent, name = os.path.split(f"{SETTINGS}/{rel}")
    try:
        fd = hostfs.walk_dir(afd, parent)
    except RccError as e:
        if e.code == ExitCode.UNSAFE_PATH:
            raise
        return None
    try:
        st = hostfs.lstat_at(fd, name)
        if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise hostfs.UnsafePathError(f"{parent}/{name}", "it is a symbolic link or a special file")
        return st
    finally:
        os.close(fd)


def _harvest(profile: AgentProfile, afd: int, run_fd: int, project: str, home_rel: str = "home") -> list[str]:
    """Keep what profile.keep allows of a finished session's state; returns warnings."""
    warnings: list[str] = []
    for keep in profile.keep:
        if not project and (keep.scope == "project" or keep.project_keys):
            continue
        try:
            data = _read(run_fd, f"{home_rel}/{keep.rel}", keep.limit)
        except RccError as e:
            warnings.append(f"not keeping ~/{keep.rel} from the session: {e.message}")
            continue
        try:
            parts = filter_keep(keep, data, project) if data is not None else {}
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurdly nested JSON
            warnings.append(f"not keeping ~/{keep.rel} from the session: {e}")
            continue
        scopes = {keep.scope, *(["project"] if keep.project_keys else [])}
        for scope in scopes:
            new = parts.get(scope)
            try:
                old = _read(run_fd, f"seed/{scope}/{keep.rel}", keep.limit) if home_rel == "home" else None
            except RccError:
                old = None
            if new == old:
                continue  # unchanged by this session: never overwrite what a later one stored
            if new is None and data is not None:
                continue  # the file is there but holds nothing to keep: leave the store alone
            _write(afd, _store_rel(scope, project, keep.rel), new)
    return warnings


def finish(run: AgentRun) -> None:
    """Keep what may be kept of the session, then remove its state. Never raises: the agent's exit status is
    what rcc reports; problems are warnings."""
    try:
        afd = _agent_fd(run.state_dir, run.profile.name, create=False)
    except RccError as e:
        sys.stderr.write(f"rcc: warning: agent state not kept: {e.message}\n")
        os.close(run.lock_fd)
        return
    try:
        for w in _harvest(run.profile, afd, run.lock_fd, run.project):
            sys.stderr.write(f"rcc: warning: {w}\n")
        _remove_run(afd, run.sid)
    except (OSError, RccError) as e:
        sys.stderr.write(f"rcc: warning: agent state of this session not cleaned up: {e}\n")
    finally:
        os.close(afd)
        os.close(run.lock_fd)


def _remove_run(afd: int, sid: str) -> None:
    rfd = hostfs.walk_dir(afd, RUN)
    try:
        hostfs.remove_tree(rfd, sid)
    finally:
        os.close(rfd)


def _sweep(profile: AgentProfile, afd: int, rfd: int, root: str) -> None:
    """Harvest and remove what sessions whose rcc was killed left in run/."""
    import fcntl

    for name in os.listdir(rfd):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rfd)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a session still running
            try:
                project = os.fsdecode(hostfs.read_file(fd, "project", 65536) or b"")
            except RccError:
                project = ""
            for w in _harvest(profile, afd, fd, project):
                sys.stderr.write(f"rcc: warning: (an earlier session) {w}\n")
            hostfs.remove_tree(rfd, name)
        except (OSError, RccError) as e:
            sys.stderr.write(f"rcc: warning: cannot clean up {os.path.join(root, RUN, name)}: {e}\n")
        finally:
            os.close(fd)


def _migrate_legacy(profile: AgentProfile, afd: int, root: str) -> None:
    """rcc before this layout kept one read-write home/ for every project: keep its login (filtered like any
    session's), nothing else. home/ is left for the user to delete."""
    fd = hostfs.walk_dir(afd, LEGACY, shown=os.path.join(root, LEGACY))
    try:
        for w in _harvest(profile, afd, fd, "", home_rel="."):
            sys.stderr.write(f"rcc: warning: (old agent state) {w}\n")
    finally:
        os.close(fd)
    os.close(hostfs.walk_dir(afd, LOGIN, create=True))


# ----------------------------------------------------------------------------------------------- import


def import_settings(profile: AgentProfile, real_home: str, env: Mapping[str, str]) -> list[str]:
    """Copy the profile's importable files from the real home into settings/ (the user's own, never mounted
    writable). The real files are only read (links there are the user's own and followed); rcc's side is
    written without following any link. Never credentials, history or per-project data."""
    from rcc.paths import state_dir

    afd = _agent_fd(state_dir(env), profile.name)
    copied: list[str] = []
    try:
        for rel in profile.importable:
            src = os.path.join(real_home, rel)
            if os.path.isdir(src):
                for dirpath, _dirs, files in os.walk(src, followlinks=False):
                    for f in sorted(files):
                        s = os.path.join(dirpath, f)
                        if os.path.isfile(s):
                            _import_file(afd, s, f"{SETTINGS}/{os.path.relpath(s, real_home)}")
                            copied.append(os.path.relpath(s, real_home))
            elif os.path.isfile(src):
                _import_file(afd, src, f"{SETTINGS}/{rel}")
                copied.append(rel)
    finally:
        os.close(afd)
    return copied


def _import_file(afd: int, src: str, dest_rel: str) -> None:
    with open(src, "rb") as f:
        data = f.read(SETTINGS_LIMIT + 1)
    if len(data) > SETTINGS_LIMIT:
        raise RccError(f"cannot import {src}: larger than {SETTINGS_LIMIT} bytes", code=ExitCode.CONFIG)
    _write(afd, dest_rel, data)
