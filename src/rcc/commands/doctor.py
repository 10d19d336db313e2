"""`rcc doctor [--json]`: what rcc needs on this machine, each with why it matters and the exact fix.

Shape (so simulated conditions are just different values):

    gather_facts()  reads the machine once -> Facts (frozen: /proc/sys, PATH, /etc files, one bwrap probe)
    checks(facts)   pure -> list[Check]; each Check says status, why, and the fix for this distribution
    render_text / render_json, and command() prints and returns 0 when every *required* check passes

Invariants:
1. checks() never touches the machine; every input is a field of Facts.
2. A check is required only if rcc cannot run without it under the configured backend; the firewall, the
   agents and the other backend are reported (warn) but never fail the exit status.
3. Fixes are commands to copy, never run: rcc never runs sudo itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from rcc.backends import apparmor, container_image
from rcc.errors import ExitCode, UsageError
from rcc.firewall import apply
from rcc.paths import read_text, self_command

Status = Literal["ok", "warn", "fail", "info"]

USERNS_SYSCTLS = (
    "kernel.unprivileged_userns_clone",
    "user.max_user_namespaces",
    "kernel.apparmor_restrict_unprivileged_userns",
)
UIDMAP = ("newuidmap", "newgidmap")
BINARIES = ("bwrap", "podman", "docker", "nft", "iptables", "newuidmap", "newgidmap", "sandbox-exec", "pfctl")
AGENTS = ("claude", "codex", "gemini", "aider")


@dataclass(frozen=True)
class Facts:
    """Everything the checks look at. Tests build these directly; gather_facts() reads the real machine."""

    system: str = "linux"  # sys.platform: "linux", "darwin"
    distro: str = ""  # os-release ID ("debian", "ubuntu", "fedora", "arch", "nixos", ...)
    distro_like: tuple[str, ...] = ()
    euid: int = 1000
    user: str = "user"
    binaries: tuple[tuple[str, str], ...] = ()  # name -> resolved path (absent: not found)
    bwrap_version: str = ""
    sysctls: tuple[tuple[str, str], ...] = ()  # name -> value (absent: not present on this kernel)
    apparmor_userns_profiles: tuple[tuple[str, str], ...] = ()  # (profile name, attach path glob) allowing userns
    bwrap_probe: str | None = None  # None: not run; "": a sandbox started; else why it did not
    seccomp_filter: bool = True
    uidmap_privileged: tuple[tuple[str, bool], ...] = ()  # newuidmap/newgidmap -> setuid root or file caps
    subuid_count: int = 0  # subordinate ids allotted to the user in /etc/subuid
    subgid_count: int = 0
    cgroup: Literal["v2", "hybrid", "v1", "none"] = "v2"
    container_problems: tuple[tuple[str, str], ...] = ()  # from the container backend: (message, fix)
    bwrap_backend_problems: tuple[tuple[str, str], ...] = ()  # BwrapBackend().problems(): what `rcc run` refuses
    agents: tuple[tuple[str, str], ...] = ()  # name -> path ("" not found)
    backend: str = "bwrap"  # the configured backend
    config_error: str = ""  # "" when every config file that applies is valid
    firewall_file: str | None = None  # /etc/rcc/firewall.nft (or pf.anchor) content; None: not installed
    firewall_loaded: Literal["current", "stale", "absent", "unknown"] = "unknown"  # unknown: needs root
    firewall_counters: tuple[tuple[str, int], ...] = ()
    nix_runtime_path: tuple[str, ...] = ()  # RCC_NIX_RUNTIME_PATH: the Nix package's tool directories
    os_version: str = ""  # macOS: platform.mac_ver() ("15.1"); "" elsewhere
    rcc: str = "rcc"  # how a `sudo ...` fix names this rcc (setup.self_command: a path where sudo would not find it)
    # rcc.limits.enforcement() for bwrap sessions: limit -> how ("cgroup v1", "rlimit", "" not enforced), and the
    # way to get the rest
    limits: tuple[tuple[str, str], ...] = ()
    limits_fix: str = ""
    cryptography: str | None = None  # its version; "" not installed; None not checked ([credentials]' session CA)

    def which(self, name: str) -> str:
        return dict(self.binaries).get(name, "")

    def sysctl(self, name: str) -> str | None:
        return dict(self.sysctls).get(name)


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    summary: str  # what was found
    why: str  # why it matters
    fix: str = ""  # the exact fix (empty when ok)
    required: bool = False


# ------------------------------------------------------------------------------------- distribution fixes

_PKG = {  # what each distribution calls the package that provides a binary
    "bwrap": {"default": "bubblewrap", "alpine": "bubblewrap"},
    "nft": {"default": "nftables"},
    "podman": {"default": "podman"},
    "newuidmap": {
        "debian": "uidmap",
        "fedora": "shadow-utils",
        "arch": "shadow",
        "alpine": "shadow-uidmap",
        "opensuse": "shadow",
        "default": "uidmap",
    },
}
_INSTALL = {
    "debian": "sudo apt-get install {p}",
    "fedora": "sudo dnf install {p}",
    "arch": "sudo pacman -S {p}",
    "opensuse": "sudo zypper install {p}",
    "alpine": "sudo apk add {p}",
}


def _family(f: Facts) -> str:
    for d in (f.distro, *f.distro_like):
        if d in ("debian", "ubuntu"):
            return "debian"
        if d in ("fedora", "rhel", "centos"):
            return "fedora"
        if d in ("arch", "opensuse", "alpine", "nixos"):
            return d
        if d.startswith("opensuse"):
            return "opensuse"
    return ""


def install_fix(f: Facts, binary: str) -> str:
    fam = _family(f)
    pkg = _PKG[binary].get(fam) or _PKG[binary]["default"]
    if fam == "nixos":
        return f"add pkgs.{pkg} to environment.systemPackages (rcc's flake brings bubblewrap itself)"
    if fam in _INSTALL:
        return _INSTALL[fam].format(p=pkg)
    return f"install your distribution's `{pkg}` package"


def _sysctl_fix(name: str, value: str) -> str:
    conf = f"/etc/sysctl.d/60-rcc-{name.rsplit('.', 1)[1].replace('_', '-')}.conf"
    return f"sudo sysctl -w {name}={value} && echo '{name} = {value}' | sudo tee {conf}"


# ------------------------------------------------------------------------------------------------ checks


def checks(f: Facts) -> list[Check]:
    if f.system == "darwin":
        return _macos_checks(f)
    return [
        *_bwrap_checks(f),
        _seccomp_check(f),
        *_container_checks(f),
        _nft_check(f),
        _agents_check(f),
        _config_check(f),
        _limits_check(f),
        _credentials_check(f),
        *_firewall_checks(f),
    ]


def _credentials_check(f: Facts) -> Check:
    why = "[credentials] (and rcc claude's ANTHROPIC_API_KEY) keep keys out of the sandbox with a per-session CA"
    if f.cryptography is None:
        return Check("credentials", "info", "not checked", why)
    if f.cryptography:
        return Check("credentials", "ok", f"Python package cryptography {f.cryptography}", why, required=False)
    fix = "apt install python3-cryptography, or pip install 'rcc[credentials]'"
    return Check(
        "credentials",
        "info",
        "Python package cryptography not installed: sessions with [credentials] stop (exit 69), "
        "rcc claude passes ANTHROPIC_API_KEY in as it is",
        why,
        fix,
        required=False,
    )


def _limits_check(f: Facts) -> Check:
    why = "a runaway agent or test (fork bomb, memory leak, a /tmp filler) must not take the machine down"
    if not f.limits:
        return Check("resource limits", "info", "not checked", why)
    how = dict(f.limits)
    parts = [f"{k}: {v or 'not enforced'}" for k, v in f.limits]
    missing = [k for k, v in f.limits if not v]
    weak = [k for k, v in f.limits if "per process" in v]
    status: Status = "ok" if not missing and not weak else "info"
    summary = "; ".join(parts)
    if how.get("memory", "").startswith("rlimit"):
        summary += " (memory is limited per process, not for the whole session)"
    return Check("resource limits", status, summary, why, f.limits_fix if status != "ok" else "")


def bwrap_origin(bwrap: str, nix_dirs: tuple[str, ...]) -> str:
    """Which bubblewrap a Nix-installed rcc uses, and why (its wrapper appends Nix's tools to PATH)."""
    if not nix_dirs:
        return ""
    if os.path.dirname(bwrap) in nix_dirs:
        return (
            "Nix's bubblewrap (no system bwrap on PATH; Ubuntu 23.10+ AppArmor blocks user namespaces for it: "
            "sudo apt-get install bubblewrap)"
        )
    return "the system's bubblewrap (preferred over Nix's copy: AppArmor profiles allow /usr/bin/bwrap)"


def _bwrap_checks(f: Facts) -> list[Check]:
    req = f.backend == "bwrap"
    why_bwrap = "bubblewrap builds rcc's default sandbox"
    bwrap = f.which("bwrap")
    out: list[Check] = []
    if not bwrap:
        return [
            Check(
                "bubblewrap",
                "fail" if req else "warn",
                "bwrap not found on PATH",
                why_bwrap,
                install_fix(f, "bwrap"),
                req,
            )
        ]
    summary = f"{bwrap} {f.bwrap_version}".strip()
    if origin := bwrap_origin(bwrap, f.nix_runtime_path):
        summary += f": {origin}"
    out.append(Check("bubblewrap", "ok", summary, why_bwrap, required=req))

    why_userns = "bubblewrap needs unprivileged user namespaces to build the sandbox without root"
    from rcc.backends.bwrap import USERNS_SYSCTLS, userns_problems

    bad = []
    # the bwrap backend's own checks, on the gathered facts; for any user (root's run does not need them)
    for p in userns_problems(f.sysctl, unprivileged=True):
        name, value = USERNS_SYSCTLS[p.id]
        bad.append((f"{name} = {f.sysctl(name)}", _sysctl_fix(name, value)))
    if bad:
        out.append(
            Check(
                "user namespaces",
                "fail" if req else "warn",
                "; ".join(b[0] for b in bad),
                why_userns,
                " && ".join(b[1] for b in bad),
                req,
            )
        )
    else:
        max_ns = f.sysctl("user.max_user_namespaces")
        out.append(
            Check(
                "user namespaces",
                "ok",
                f"allowed (user.max_user_namespaces = {max_ns or '?'})",
                why_userns,
                required=req,
            )
        )

    why_aa = (
        "Ubuntu's AppArmor lets only profiled binaries create user namespaces, and profiles match a "
        "binary's path: /usr/bin/bwrap may be allowed while a bwrap from /nix/store is not"
    )
    if f.sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        allowed = [name for name, glob in f.apparmor_userns_profiles if apparmor.glob_match(glob, bwrap)]
        if allowed:
            out.append(
                Check(
                    "apparmor userns", "ok", f"restricted; profile {allowed[0]!r} allows {bwrap}", why_aa, required=req
                )
            )
        else:
            out.append(
                Check(
                    "apparmor userns",
                    "fail" if req else "warn",
                    f"restricted, and no AppArmor profile allows user namespaces for {bwrap}",
                    why_aa,
                    apparmor.profile_fix(bwrap),
                    req,
                )
            )
    else:
        out.append(Check("apparmor userns", "ok", "no AppArmor user-namespace restriction", why_aa, required=req))

    if f.bwrap_backend_problems and not any(c.status == "fail" for c in out):
        # The runner's own view: never say "ready" when `rcc run` would refuse to start.
        out += [
            Check("bwrap backend", "fail" if req else "warn", m, why_bwrap, fix, req)
            for m, fix in f.bwrap_backend_problems
        ]
    why_probe = "the checks above can all pass and a sandbox still fail to start (containers, LSMs, seccomp)"
    if f.bwrap_probe is None:
        pass
    elif f.bwrap_probe == "":
        who = " (as root: run `rcc doctor` as yourself to check your account)" if f.euid == 0 else ""
        out.append(Check("bubblewrap works", "ok", f"a test sandbox started{who}", why_probe, required=req))
    else:
        fix = (
            "see the user namespace and AppArmor checks above; inside a container the container must allow "
            "namespaces (podman/docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined)"
        )
        out.append(
            Check(
                "bubblewrap works",
                "fail" if req else "warn",
                f"a test sandbox failed: {f.bwrap_probe}",
                why_probe,
                fix,
                req,
            )
        )
    return out


def _seccomp_check(f: Facts) -> Check:
    why = "rcc's seccomp filter blocks the syscalls a sandbox could escape or spy with (TIOCSTI, ptrace, bpf)"
    if f.seccomp_filter:
        return Check("seccomp", "ok", "seccomp filters supported", why, required=f.backend == "bwrap")
    return Check(
        "seccomp",
        "fail" if f.backend == "bwrap" else "warn",
        "the kernel has no seccomp filter support",
        why,
        "use a kernel built with CONFIG_SECCOMP_FILTER=y (every mainstream distribution kernel is)",
        f.backend == "bwrap",
    )


def _container_checks(f: Facts) -> list[Check]:
    engine = f.backend if f.backend in ("podman", "docker") else ("podman" if f.which("podman") else "docker")
    req = f.backend in ("podman", "docker")
    sev: Status = "fail" if req else "warn"
    why = f'the {engine} backend (`backend = "{engine}"`) runs the sandbox in a container'
    path = f.which(engine)
    if not path:
        status: Status = "fail" if req else "info"
        fix = (
            install_fix(f, "podman") if engine == "podman" else "install Docker Engine (docs.docker.com/engine/install)"
        )
        return [Check(engine, status, f"{engine} not found (only needed for backend = {engine!r})", why, fix, req)]
    out = [Check(engine, "ok", path, why, required=req)]
    if engine != "podman" or f.euid == 0:
        out += [Check(f"{engine} backend", sev, m, why, fix, req) for m, fix in f.container_problems]
        return out
    why_ids = "rootless podman maps the container's users onto subordinate ids, through setuid newuidmap/newgidmap"
    missing = [b for b in ("newuidmap", "newgidmap") if not dict(f.uidmap_privileged).get(b, False)]
    if missing:
        absent = [b for b in missing if not f.which(b)]
        fix = install_fix(f, "newuidmap") if absent else f"sudo chmod u+s {' '.join(f.which(b) for b in missing)}"
        out.append(
            Check(
                "newuidmap/newgidmap",
                sev,
                f"{', '.join(missing)}: " + ("not found" if absent else "neither setuid root nor file capabilities"),
                why_ids,
                fix,
                req,
            )
        )
    else:
        out.append(Check("newuidmap/newgidmap", "ok", "present and privileged", why_ids, required=req))
    if f.subuid_count < 65536 or f.subgid_count < 65536:
        out.append(
            Check(
                "subuid/subgid",
                sev,
                f"{f.user} has {f.subuid_count} subordinate uids and {f.subgid_count} gids (needs 65536)",
                why_ids,
                f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {f.user}  "
                "(pick a range no other user has in /etc/subuid and /etc/subgid), then "
                "`podman system migrate`",
                req,
            )
        )
    else:
        out.append(
            Check(
                "subuid/subgid", "ok", f"{f.user}: {f.subuid_count} uids, {f.subgid_count} gids", why_ids, required=req
            )
        )
    why_cg = (
        "rootless containers get cgroup limits (the whole container's memory, processes, CPU) only on the unified "
        "cgroup v2 hierarchy; elsewhere rcc passes rlimits (processes of all your rootless containers together, "
        "memory per process, no CPU share)"
    )
    if f.cgroup == "v2":
        out.append(Check("cgroup layout", "ok", "cgroup v2 (unified)", why_cg, required=False))
    else:
        out.append(
            Check(
                "cgroup layout",
                "warn",
                f"cgroup {f.cgroup}: rootless containers get rlimits only, no cgroup limits",
                why_cg,
                "boot with systemd.unified_cgroup_hierarchy=1 (kernel command line)",
                False,
            )
        )
    out += [Check(f"{engine} backend", sev, m, why, fix, req) for m, fix in f.container_problems]
    return out


def _nft_check(f: Facts) -> Check:
    why = "rcc's optional kernel firewall (`sudo rcc setup --firewall`) is an nftables table"
    if f.which("nft"):
        return Check("nftables", "ok", f.which("nft"), why)
    if f.which("iptables"):
        return Check(
            "nftables",
            "warn",
            "iptables found but no nft command (rcc's firewall needs nft)",
            why,
            install_fix(f, "nft"),
        )
    return Check("nftables", "warn", "nft not found", why, install_fix(f, "nft"))


def _agents_check(f: Facts) -> Check:
    found = [f"{n} ({p})" for n, p in f.agents if p]
    why = "`rcc claude|codex|gemini|aider` runs these; `rcc run CMD` works without any"
    if found:
        return Check("agents", "ok", ", ".join(found), why)
    return Check(
        "agents",
        "info",
        "no coding agent found on PATH",
        why,
        "install one, e.g. `npm install -g @anthropic-ai/claude-code`",
    )


def _config_check(f: Facts) -> Check:
    why = "rcc refuses to run with a config it cannot read (it never falls back to a weaker policy)"
    if f.config_error:
        return Check(
            "config", "fail", f.config_error, why, "fix the file named above; `rcc policy show` checks it", True
        )
    return Check("config", "ok", f"valid (backend = {f.backend!r})", why, required=True)


def _setup_cmd(spec_text: str | None, rcc: str = "rcc") -> str:
    """The exact command that re-installs the recorded firewall (keeping its --proxy-port choices)."""
    ports = ""
    if spec_text:
        from rcc.firewall.nft import spec_from_rendered
        from rcc.firewall.spec import DEFAULT_PROXY_PORT

        try:
            spec = spec_from_rendered(spec_text, "installed firewall")
        except Exception:  # a tampered header: the default command is the fix
            spec = None
        if spec and spec.proxy_ports != (DEFAULT_PROXY_PORT,):
            ports = "".join(f" --proxy-port {p}" for p in spec.proxy_ports)
    return f"sudo {rcc} setup --firewall{ports}"


def _firewall_checks(f: Facts) -> list[Check]:
    why = (
        "defence in depth: traffic from rcc's sandbox networks (interfaces rcc*) may reach only rcc's proxy; "
        "the sandboxes are already isolated without it"
    )
    if f.firewall_file is None:
        return [Check("firewall", "info", "not installed (optional)", why, f"sudo {f.rcc} setup --firewall")]
    fix = _setup_cmd(f.firewall_file, f.rcc)
    if not apply.file_current(f.firewall_file, f.system):
        return [
            Check(
                "firewall", "warn", "the installed ruleset is not what this rcc renders (older rcc or edited)", why, fix
            )
        ]
    if f.firewall_loaded == "current":
        drops = ", ".join(f"{n} {v}" for n, v in f.firewall_counters)
        return [
            Check("firewall", "ok", "installed and loaded, current" + (f"; dropped: {drops}" if drops else ""), why)
        ]
    if f.firewall_loaded == "unknown":
        return [
            Check(
                "firewall",
                "ok",
                f"installed file current; loaded table not checked (needs root: `sudo {f.rcc} doctor`)",
                why,
            )
        ]
    if f.firewall_loaded == "absent":
        return [
            Check("firewall", "warn", "installed but not loaded (a reboot without --persist?)", why, fix + " --persist")
        ]
    return [Check("firewall", "warn", "the loaded table differs from the installed ruleset", why, fix)]


def _macos_version() -> str:
    import platform

    return platform.mac_ver()[0]


# The macOS releases the release workflow runs the real escape suite on (.github/workflows/macos.yml).
MACOS_TESTED = ("14", "15")


def _macos_checks(f: Facts) -> list[Check]:
    out = []
    why_os = "rcc's Seatbelt profile is checked under the real sandbox-exec on macOS " + " and ".join(MACOS_TESTED)
    major = f.os_version.split(".")[0]
    out.append(
        Check(
            "macos",
            "ok" if major in MACOS_TESTED else "warn",
            f"macOS {f.os_version or '(unknown version)'}",
            why_os,
            "" if major in MACOS_TESTED else "run `rcc run --dry-run -- true` and the release checks in docs/macos.md",
        )
    )
    if f.backend != "seatbelt":
        out.append(Check("backend", "info", f"backend = {f.backend!r} (Seatbelt is the default on macOS)", why_os))
    else:
        out.append(
            Check(
                "limits",
                "info",
                "[limits] memory/processes/cpu/tmp are not enforced by the seatbelt backend (no cgroups on macOS)",
                "a runaway build or fork bomb inside is limited only by macOS's own per-user limits",
                "use --backend podman (a Linux VM) where limits matter; see docs/macos.md",
            )
        )
    why = "sandbox-exec (Seatbelt) is rcc's sandbox on macOS (the seatbelt backend runs /usr/bin/sandbox-exec)"
    if f.which("sandbox-exec") == "/usr/bin/sandbox-exec":
        out.append(Check("sandbox-exec", "ok", "/usr/bin/sandbox-exec", why, required=True))
    elif f.which("sandbox-exec"):
        out.append(
            Check(
                "sandbox-exec",
                "warn",
                f"{f.which('sandbox-exec')} comes first on PATH; rcc runs /usr/bin/sandbox-exec only",
                why,
                "check that /usr/bin/sandbox-exec exists (it ships with macOS)",
            )
        )
    else:
        out.append(
            Check(
                "sandbox-exec",
                "fail",
                "sandbox-exec not found",
                why,
                "it ships with macOS in /usr/bin; check PATH",
                True,
            )
        )
    why_pf = "rcc's optional firewall on macOS is a pf anchor (com.apple/rcc)"
    out.append(
        Check(
            "pfctl",
            "ok" if f.which("pfctl") else "warn",
            f.which("pfctl") or "pfctl not found",
            why_pf,
            "" if f.which("pfctl") else "pfctl ships with macOS in /sbin; check PATH",
        )
    )
    out += [_agents_check(f), _config_check(f)]
    if f.firewall_file is None:
        out.append(Check("pf anchor", "info", "not installed (optional)", why_pf, f"sudo {f.rcc} setup --firewall"))
    elif not apply.file_current(f.firewall_file, "darwin"):
        out.append(
            Check(
                "pf anchor",
                "warn",
                "the installed anchor is not what this rcc renders",
                why_pf,
                _setup_cmd(f.firewall_file, f.rcc),
            )
        )
    elif f.firewall_loaded == "absent":
        out.append(Check("pf anchor", "warn", "installed but not loaded", why_pf, _setup_cmd(f.firewall_file, f.rcc)))
    else:
        state = "loaded" if f.firewall_loaded == "current" else f"loaded state needs root: `sudo {f.rcc} doctor`"
        out.append(Check("pf anchor", "ok", f"installed; {state}", why_pf))
    return out


def passed(results: list[Check]) -> bool:
    return not any(c.status == "fail" for c in results)


# ------------------------------------------------------------------------------------------------ output

_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "info": "info"}


def render_text(results: list[Check]) -> str:
    width = max((len(c.id) for c in results), default=0)
    lines = []
    for c in results:
        lines.append(f"{_MARK[c.status]}  {c.id:<{width}}  {c.summary} -- {c.why}")
        if c.fix and c.status != "ok":
            lines.append(f"{'':6}{'':<{width}}  fix: {c.fix}")
    failed = [c.id for c in results if c.status == "fail"]
    lines.append("")
    lines.append(
        f"rcc doctor: {len(failed)} required check(s) failed: {', '.join(failed)}"
        if failed
        else "rcc doctor: every required check passed"
    )
    return "\n".join(lines) + "\n"


def render_json(results: list[Check]) -> str:
    return json.dumps({"ok": passed(results), "checks": [asdict(c) for c in results]}, indent=2) + "\n"


# ----------------------------------------------------------------------------------------------- gathering


def _os_release() -> tuple[str, tuple[str, ...]]:
    text = read_text("/etc/os-release") or read_text("/usr/lib/os-release") or ""
    kv = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            kv[k.strip()] = v.strip().strip('"')
    return kv.get("ID", ""), tuple(kv.get("ID_LIKE", "").split())


def _bwrap_probe(bwrap: str) -> str:
    import subprocess

    from rcc.backends.bwrap import BwrapBackend

    argv = BwrapBackend(bwrap).probe_argv()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return "" if r.returncode == 0 else (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]


def _bwrap_version(bwrap: str) -> str:
    import subprocess

    try:
        r = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout.strip()


def _agents(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    from rcc.agents.find import find_all

    try:
        return tuple((n, found.path if found else "") for n, found in find_all(dict(env)).items())
    except Exception as e:  # an agent lookup bug must not hide every other check
        return (("(agent lookup failed)", str(e)),)


def _config(project: str) -> tuple[str, str]:
    """(error, backend). Loads every config file that applies to `project` through rcc's own loader."""
    from rcc.config import load_policy
    from rcc.errors import RccError

    try:
        return "", load_policy(project).backend
    except RccError as e:
        return e.message, "bwrap"


def gather_facts(env: Mapping[str, str], project: str, *, probe: bool = True, root: str = "/") -> Facts:
    """Read the machine. `root` is where the firewall's files are looked for (as `rcc setup --root`)."""
    import pwd
    import shutil

    system = "darwin" if sys.platform == "darwin" else ("linux" if sys.platform.startswith("linux") else sys.platform)
    euid = os.geteuid()
    try:
        user = pwd.getpwuid(euid).pw_name
    except KeyError:
        user = str(euid)
    # Administrators' tools live in sbin, which a normal user's PATH often lacks (Debian).
    path = os.pathsep.join([env.get("PATH", os.defpath), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    binaries = {b: os.path.realpath(p) for b in BINARIES if (p := shutil.which(b, path=path))}
    sysctls = {}
    for name in USERNS_SYSCTLS:
        v = read_text("/proc/sys/" + name.replace(".", "/"))
        if v is not None:
            sysctls[name] = v.strip()
    distro, like = _os_release()
    config_error, backend = _config(project)
    bwrap = binaries.get("bwrap", "")
    container_problems: tuple[tuple[str, str], ...] = ()
    engine = backend if backend in ("podman", "docker") else ("podman" if "podman" in binaries else "docker")
    if engine in binaries:
        from rcc.backends.container_image import ID_NEWUIDMAP_MISSING, ID_SUBIDS_MISSING, machine_problems

        container_problems = tuple(
            (p.message, p.fix)
            for p in machine_problems(engine, binaries[engine], None)
            # doctor's own uidmap/subid checks say more (setuid bit, range size)
            if p.id not in (ID_NEWUIDMAP_MISSING, ID_SUBIDS_MISSING)
        )
    bwrap_backend_problems: tuple[tuple[str, str], ...] = ()
    if bwrap and system == "linux":
        from rcc.backends.bwrap import BwrapBackend

        bwrap_backend_problems = tuple((p.message, p.fix) for p in BwrapBackend(bwrap).problems())
    fw_path = os.path.join(root, "etc", "rcc", "pf.anchor" if system == "darwin" else "firewall.nft")
    fw_text = read_text(fw_path)
    loaded, counters = apply.loaded_state(fw_text, system, euid)
    limits, limits_fix = _limits_facts(system)
    return Facts(
        nix_runtime_path=tuple(d for d in env.get("RCC_NIX_RUNTIME_PATH", "").split(":") if d),
        rcc=self_command(env),
        system=system,
        os_version=_macos_version() if system == "darwin" else "",
        distro=distro,
        distro_like=like,
        euid=euid,
        user=user,
        binaries=tuple(sorted(binaries.items())),
        bwrap_version=_bwrap_version(bwrap) if bwrap and probe else "",
        sysctls=tuple(sorted(sysctls.items())),
        apparmor_userns_profiles=apparmor.userns_profiles(apparmor.profile_texts())
        if sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == "1"
        else (),
        bwrap_probe=_bwrap_probe(bwrap) if bwrap and probe and system == "linux" else None,
        seccomp_filter=os.path.exists("/proc/sys/kernel/seccomp/actions_avail") or system != "linux",
        uidmap_privileged=tuple(
            (b, container_image.privileged(binaries.get(b, ""))) for b in ("newuidmap", "newgidmap")
        ),
        subuid_count=container_image.subid_count("/etc/subuid", user, euid),
        subgid_count=container_image.subid_count("/etc/subgid", user, euid),
        cgroup=container_image.cgroup_layout() if system == "linux" else "none",
        container_problems=container_problems,
        bwrap_backend_problems=bwrap_backend_problems,
        agents=_agents(env),
        backend=backend,
        config_error=config_error,
        firewall_file=fw_text,
        firewall_loaded=loaded,  # type: ignore[arg-type]
        firewall_counters=counters,
        limits=limits,
        limits_fix=limits_fix,
        cryptography=_cryptography_version(),
    )


def _cryptography_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cryptography")
    except metadata.PackageNotFoundError:
        return ""


def _limits_facts(system: str) -> tuple[tuple[tuple[str, str], ...], str]:
    if system != "linux":
        return (), ""
    from rcc.limits import enforcement

    e = enforcement()
    limits = (("memory", e.memory), ("processes", e.processes), ("cpu", e.cpu), ("tmp", e.tmp))
    return limits, e.how_to_get_the_rest


@dataclass(frozen=True)
class DoctorOptions:
    json: bool = False
    project: str = field(default_factory=os.getcwd)
    root: str = "/"


def command(argv: list[str]) -> int:
    opts = DoctorOptions()
    it = iter(argv)
    for arg in it:
        if arg == "--json":
            opts = dataclasses.replace(opts, json=True)
        elif arg == "--root":
            root = next(it, "")
            if not os.path.isabs(root):
                raise UsageError("--root needs an absolute directory")
            opts = dataclasses.replace(opts, root=root)
        elif arg in ("-h", "--help"):
            sys.stdout.write(
                "usage: rcc doctor [--json] [--root DIR]\n  check what rcc needs on this machine; exit 0 when "
                "every required check passes\n  --root DIR: look for the firewall's files under DIR (as rcc setup)\n"
            )
            return ExitCode.OK
        else:
            raise UsageError(f"rcc doctor: unknown option {arg!r}", hint="usage: rcc doctor [--json]")
    results = checks(gather_facts(os.environ, opts.project, root=opts.root))
    sys.stdout.write(render_json(results) if opts.json else render_text(results))
    return ExitCode.OK if passed(results) else ExitCode.SETUP
