"""The container backend's image and what the machine needs to run it.

Two images, both tagged by a hash of their inputs, so each is built once and rebuilt only when an input changes:
  localhost/rcc-base:bookworm-<h>   Debian 12 built from the distribution's packages with debootstrap and
                                    imported (`sudo rcc setup --container`, see base.py); works with no
                                    container registry. h = hash(suite, variant, package list).
  localhost/rcc-agent:<h>           the Containerfile next to this file, FROM the base. h = hash(Containerfile, base).
A user image named in config replaces both (it must have the tools the user's agent needs).

machine_problems() is what `rcc doctor` reports for the container backend: cheap checks on files only, no engine
calls (the runner calls it before every start).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tomllib
from importlib import resources
from typing import Literal, TextIO

from rcc.backends._base import Problem
from rcc.errors import ExitCode, RccError
from rcc.paths import read_text

BASE_SUITE = "bookworm"
BASE_VARIANT = "minbase"
# What agents call: version control, fetching, search, the two runtimes most agent CLIs and tools need.
# npm is not here: debootstrap's resolver cannot follow its virtual packages, and it weighs 160 MB; the
# Containerfile installs it only for as long as it installs the agents' CLIs.
BASE_PACKAGES: tuple[str, ...] = ("ca-certificates", "git", "curl", "ripgrep", "python3", "nodejs")

# The host's trust store (Debian/Ubuntu path): given to the image build so a TLS-inspecting proxy's CA works.
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# podman's own default RLIMIT_NOFILE / RLIMIT_NPROC for containers run by root.
_PODMAN_NOFILE = 1048576
_PODMAN_NPROC = 4194304
_CAP_SYS_RESOURCE = 24

# The fix for the hybrid cgroup v1/v2 machines this was built on; `rcc doctor` repeats it.
HUGETLB_FIX = (
    "this machine mounts cgroup v1 controllers next to a cgroup v2 hierarchy that still holds a controller "
    "(crun: 'cgroups in hybrid mode not supported, drop all controllers from cgroupv2'). Move it to v1 (as root): "
    "`mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}`, or boot with "
    "systemd.unified_cgroup_hierarchy=1"
)
ULIMITS_FIX = (
    "podman raises RLIMIT_NOFILE/RLIMIT_NPROC in every container by default, which this machine does not allow "
    "(crun: 'setrlimit RLIMIT_NOFILE: Operation not permitted'). Let containers inherit the limits: "
    "add `[containers]` / `default_ulimits = []` to /etc/containers/containers.conf.d/50-rcc.conf "
    "(or ~/.config/containers/containers.conf for one user)"
)


def _h(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def base_image_tag() -> str:
    return f"localhost/rcc-base:{BASE_SUITE}-{_h(BASE_SUITE, BASE_VARIANT, *BASE_PACKAGES)}"


def containerfile_text() -> str:
    return (resources.files(__package__) / "Containerfile").read_text()


def docker_containerfile(text: str) -> str:
    """docker's builder has no build-time volumes (podman's --volume): the host's CA bundle comes through the
    build context instead, copied to where the Containerfile looks for it and deleted after the install step.
    A lower layer keeps the file (public certificates, the host's trust store); the running image does not."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("FROM ")) + 1
    lines.insert(at, "COPY rcc-host-ca.crt /run/rcc-host-ca.crt\n")
    env = next(i for i, line in enumerate(lines) if line.startswith("ENV PATH="))
    lines.insert(env, "RUN rm -f /run/rcc-host-ca.crt\n")
    return "".join(lines)


def agent_image_tag(base: str | None = None) -> str:
    return f"localhost/rcc-agent:{_h(containerfile_text(), base or base_image_tag())}"


def image_exists(engine_path: str, engine: str, ref: str) -> bool:
    argv = [engine_path, "image", "exists", ref] if engine == "podman" else [engine_path, "image", "inspect", ref]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def base_missing_error(engine: str, base: str) -> RccError:
    from rcc.paths import self_command

    rcc = self_command(os.environ)
    flag = "" if engine == "podman" else f" --engine {engine}"
    return RccError(
        f"the container base image {base} is not in {engine}'s image store",
        hint=(
            f"build it from Debian's packages (no registry needed), as root: `sudo {rcc} setup --container{flag}`; "
            f"a normal user then imports the saved tarball: `{rcc} setup --container{flag}`; or, where a registry "
            f"is reachable: `{engine} pull docker.io/library/debian:bookworm-slim && {engine} tag "
            f"docker.io/library/debian:bookworm-slim {base}`. See docs/containers.md"
        ),
        code=ExitCode.SETUP,
    )


def ensure_agent_image(engine_path: str, engine: str, base: str | None = None, out: TextIO | None = None) -> str:
    """The agent image's tag, built now (with visible progress) if it is not there yet."""
    out = out or sys.stderr
    base = base or base_image_tag()
    tag = agent_image_tag(base)
    if image_exists(engine_path, engine, tag):
        return tag
    if not image_exists(engine_path, engine, base):
        raise base_missing_error(engine, base)
    import tempfile

    out.write(f"rcc: building the agent image {tag} (once; later runs reuse it)\n")
    out.flush()
    with tempfile.TemporaryDirectory(prefix="rcc-image-") as ctx:
        text = containerfile_text()
        argv = [engine_path, "build", "--pull=never" if engine == "podman" else "--pull=false"]
        # The build reaches the npm registry from the host's network; the agent never runs here.
        argv += ["--network", "host", "--build-arg", f"BASE={base}", "--tag", tag]
        if os.path.isfile(HOST_CA_BUNDLE):
            if engine == "podman":
                argv += ["--volume", f"{HOST_CA_BUNDLE}:/run/rcc-host-ca.crt:ro"]
            else:
                import shutil

                shutil.copyfile(HOST_CA_BUNDLE, os.path.join(ctx, "rcc-host-ca.crt"))
                text = docker_containerfile(text)
        path = os.path.join(ctx, "Containerfile")
        with open(path, "w") as f:
            f.write(text)
        argv += ["--file", path, ctx]
        r = subprocess.run(argv, stdout=out, stderr=out, check=False)
    if r.returncode != 0:
        raise RccError(
            f"building the agent image failed ({engine} build exited {r.returncode})",
            hint="the output above says why; the npm registry must be reachable for the agents' CLIs",
            code=ExitCode.SETUP,
        )
    return tag


# ----------------------------------------------------------------------------------------------- doctor


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def hybrid_cgroup_controllers(root: str = "/sys/fs/cgroup") -> list[str]:
    """Controllers still on a cgroup v2 hierarchy mounted beside v1 ones (crun refuses to run then)."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return []  # pure cgroup v2: fine
    return _read(os.path.join(root, "unified", "cgroup.controllers")).split()


def containers_conf_files(rootless: bool, env: dict[str, str] | None = None) -> list[str]:
    """containers.conf files in the order podman reads them (later ones override)."""
    env = dict(os.environ) if env is None else env
    dirs = ["/usr/share/containers", "/etc/containers"]
    if rootless:
        xdg = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "/"), ".config")
        dirs.append(os.path.join(xdg, "containers"))
    out: list[str] = []
    for d in dirs:
        out.append(os.path.join(d, "containers.conf"))
        dd = os.path.join(d, "containers.conf.d")
        with contextlib.suppress(OSError):
            out += sorted(os.path.join(dd, n) for n in os.listdir(dd) if n.endswith(".conf"))
    return out


def default_ulimits(files: list[str]) -> list[str] | None:
    """The effective `[containers] default_ulimits`, or None when no file sets it."""
    value: list[str] | None = None
    for path in files:
        text = _read(path)
        if not text:
            continue
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue  # podman itself reports a broken file
        got = doc.get("containers", {}).get("default_ulimits")
        if isinstance(got, list):
            value = [str(x) for x in got]
    return value


def _can_raise_rlimits() -> bool:
    if os.geteuid() != 0:
        return False
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    return False


def ulimits_problem(rootless: bool) -> bool:
    """True when podman's default container rlimits cannot be set here and config does not turn them off."""
    import resource

    if rootless or _can_raise_rlimits():
        return False  # rootless podman asks for the limits it already has (seen here: no error without the fix)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    unlimited = resource.RLIM_INFINITY
    if (nofile == unlimited or nofile >= _PODMAN_NOFILE) and (nproc == unlimited or nproc >= _PODMAN_NPROC):
        return False
    return default_ulimits(containers_conf_files(rootless)) != []


def _subid_ok(user: str, uid: int, path: str) -> bool:
    for line in _read(path).splitlines():
        name = line.split(":", 1)[0]
        if name in (user, str(uid)):
            return True
    return False


# Problem ids rootless podman's own checks use; `rcc doctor` has fuller checks of these (setuid bit, range size).
ID_NEWUIDMAP_MISSING = "newuidmap-missing"
ID_SUBIDS_MISSING = "subids-missing"


def machine_problems(engine: str, engine_path: str, image: str | None) -> list[Problem]:
    if not engine_path:
        fix = (
            "install it: `sudo apt-get install podman` (Debian/Ubuntu), `sudo dnf install podman` (Fedora)"
            if engine == "podman"
            else "install Docker Engine and start the daemon (https://docs.docker.com/engine/install/)"
        )
        return [Problem(f"{engine} is not installed", fix, ExitCode.DEPENDENCY, id="engine-missing")]
    out: list[Problem] = []
    if engine == "docker":
        host = os.environ.get("DOCKER_HOST", "")
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        socks = ["/var/run/docker.sock", *([os.path.join(runtime, "docker.sock")] if runtime else [])]
        if not host and not any(os.path.exists(s) for s in socks):
            out.append(
                Problem(
                    "no Docker engine is running here (the docker CLI is installed, but there is no daemon socket)",
                    "start the daemon (`sudo systemctl start docker`), set DOCKER_HOST, or use `--backend podman`",
                    ExitCode.SETUP,
                    id="docker-daemon-missing",
                )
            )
        return out
    rootless = os.geteuid() != 0
    hybrid = hybrid_cgroup_controllers()
    if hybrid:
        fix = HUGETLB_FIX.format(c=hybrid[0])
        if len(hybrid) > 1:
            fix += f" (the same for each of: {', '.join(hybrid)})"
        out.append(
            Problem(
                f"cgroup v2 still holds {', '.join(hybrid)} beside cgroup v1", fix, ExitCode.SETUP, id="cgroup-hybrid"
            )
        )
    if ulimits_problem(rootless):
        out.append(
            Problem(
                "podman's default container rlimits cannot be set here",
                ULIMITS_FIX,
                ExitCode.SETUP,
                id="podman-ulimits",
            )
        )
    if rootless:
        import pwd
        import shutil

        uid = os.geteuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        if not shutil.which("newuidmap") or not shutil.which("newgidmap"):
            out.append(
                Problem(
                    "rootless podman needs newuidmap/newgidmap",
                    "`sudo apt-get install uidmap`",
                    ExitCode.DEPENDENCY,
                    id=ID_NEWUIDMAP_MISSING,
                )
            )
        if not (_subid_ok(user, uid, "/etc/subuid") and _subid_ok(user, uid, "/etc/subgid")):
            out.append(
                Problem(
                    f"user {user} has no subordinate ids in /etc/subuid and /etc/subgid",
                    f"`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`",
                    ExitCode.SETUP,
                    id=ID_SUBIDS_MISSING,
                )
            )
    return out


# ------------------------------------------------------------------------------------------- machine facts
# What rootless containers need of this machine, read for `rcc doctor` (its checks say what each means).


def subid_count(path: str, user: str, uid: int) -> int:
    total = 0
    for line in (read_text(path) or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit():
            total += int(parts[2])
    return total


def privileged(path: str) -> bool:
    if not path:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_uid == 0 and st.st_mode & 0o4000:
        return True
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def cgroup_layout() -> Literal["v2", "hybrid", "v1", "none"]:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2"
    if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
        return "hybrid"
    return "v1" if os.path.isdir("/sys/fs/cgroup") else "none"
