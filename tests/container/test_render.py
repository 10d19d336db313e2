"""Pure tests: how a Plan becomes a podman/docker command line, the image tags, and the doctor's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcc.backends.container import ContainerBackend, HostInfo, Limits, translate
from rcc.backends.container_image import (
    agent_image_tag,
    base_image_tag,
    containers_conf_files,
    default_ulimits,
    hybrid_cgroup_controllers,
)
from rcc.backends.container_image.base import apt_mirror, debootstrap_argv
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, Dir, FileData, Mask, NetPlan, Plan, Special, Symlink, Tmpfs

ROOTLESS = HostInfo(rootless=True, tty=False, cgroup_limits=False)
ROOT = HostInfo(rootless=False, tty=True, cgroup_limits=True)
P = "/home/u/proj"


def plan(**kw: object) -> Plan:
    base: dict[str, object] = {
        "argv": ("claude", "--help"),
        "cwd": P,
        "project": P,
        "home": "/home/u",
        "mounts": (
            Bind("/usr", "/usr", False, "system"),
            Symlink("usr/bin", "/bin", "merged /usr"),
            Bind("/etc", "/etc", False, "system"),
            Special("dev", "/dev"),
            Special("proc", "/proc"),
            Tmpfs("/tmp", 0o1777),
            Symlink("/run", "/var/run"),
            Tmpfs("/home/u", 0o700),
            Bind("/home/u/.local/bin", "/home/u/.local/bin", False, "toolchain"),
            Bind(P, P, True, "project"),
            Mask(f"{P}/.env", False, "secret"),
            Mask("/home/u/.local/bin/creds", True, "secret dir"),
            Bind(f"{P}/.git/hooks", f"{P}/.git/hooks", False, "protected"),
            FileData("/run/rcc/git-excludes", "x\n"),
        ),
        "env": (("HOME", "/home/u"), ("PATH", "/usr/bin:/bin"), ("WEIRD", "a b=c\nd")),
        "uid": 1000,
        "gid": 1000,
        "session_id": "abcd",
    }
    base.update(kw)
    return Plan(**base)  # type: ignore[arg-type]


def test_rootless_podman_argv_golden() -> None:
    argv = ContainerBackend("podman", "localhost/img:1", host=ROOTLESS, engine_path="podman").render(plan())
    assert argv == [
        "podman", "run", "--rm", "--name", "rcc-abcd", "--interactive", "--detach-keys", "",
        "--pull", "never", "--log-driver", "none", "--init",
        "--network", "none", "--hostname", "rcc", "--ipc", "private", "--cgroupns", "private", "--no-hosts",
        "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--security-opt", "seccomp=/run/rcc-staging/seccomp.json", "--systemd", "false",
        "--read-only", "--read-only-tmpfs=false", "--userns", "keep-id", "--user", "1000:1000",
        "--unsetenv-all",
        "--env", "HOME=/home/u", "--env", "PATH=/usr/bin:/bin", "--env", "WEIRD=a b=c\nd",
        "--mount", "type=tmpfs,dst=/tmp,tmpfs-mode=1777,notmpcopyup,U=true",
        "--mount", "type=tmpfs,dst=/home/u,tmpfs-mode=0700,notmpcopyup,U=true",
        "--mount", "type=bind,src=/home/u/.local/bin,dst=/home/u/.local/bin,ro=true",
        "--mount", f"type=bind,src={P},dst={P},ro=false",
        "--mount", f"type=bind,src=/dev/null,dst={P}/.env,ro=true",
        "--mount", "type=tmpfs,dst=/home/u/.local/bin/creds,tmpfs-mode=0555,notmpcopyup,ro=true",
        "--mount", f"type=bind,src={P}/.git/hooks,dst={P}/.git/hooks,ro=true",
        "--mount", "type=bind,src=/run/rcc-staging/" + _staging_name("/run/rcc/git-excludes")
        + ",dst=/run/rcc/git-excludes,ro=true",
        "--mount", "type=bind,src=/run/rcc-staging/hosts,dst=/etc/hosts,ro=true",
        "--workdir", P, "localhost/img:1", "/usr/bin/env", "--", "claude", "--help",
    ]  # fmt: skip


def _staging_name(dest: str) -> str:
    import hashlib

    return hashlib.sha256(dest.encode()).hexdigest()[:16]


def test_root_podman_has_limits_tty_and_no_keep_id() -> None:
    argv = ContainerBackend("podman", "img", host=ROOT, limits=Limits(pids=100, memory="1g")).render(plan())
    assert "--tty" in argv
    assert "keep-id" not in argv
    i = argv.index("--pids-limit")
    assert argv[i + 1] == "100"
    assert argv[argv.index("--memory") + 1] == "1g" and argv[argv.index("--memory-swap") + 1] == "1g"


def test_host_ca_bundle_is_the_only_file_of_host_etc() -> None:
    host = HostInfo(rootless=True, tty=False, cgroup_limits=False, ca_bundle="/etc/ssl/certs/ca-certificates.crt")
    argv = ContainerBackend("podman", "img", host=host).render(plan())
    etc = [a for a in argv if "dst=/etc" in a]
    assert etc == [
        "type=bind,src=/etc/ssl/certs/ca-certificates.crt,dst=/etc/ssl/certs/ca-certificates.crt,ro=true",
        "type=bind,src=/run/rcc-staging/hosts,dst=/etc/hosts,ro=true",  # rcc's own (hosts_text), not the host's
    ]
    # a plan that does not show the host's /etc (none does today, but the rule is the plan's) gets nothing of it
    no_etc = plan(mounts=tuple(m for m in plan().mounts if m.dest != "/etc"))
    assert not [a for a in ContainerBackend("podman", "img", host=host).render(no_etc) if "src=/etc/" in a]


def test_podman_hosts_file_names_only_localhost_and_the_sandbox() -> None:
    """`localhost` resolves in a podman container (rcc's images have no /etc/hosts, --no-hosts drops podman's):
    a host service reached as localhost:PORT needs it; the host's address (host.containers.internal) is not in it."""
    from rcc.backends.container import hosts_text

    text = hosts_text("rcc")
    assert text.splitlines() == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "127.0.1.1\trcc"]


def test_rootless_on_cgroup_v1_leaves_limits_out() -> None:
    argv = ContainerBackend("podman", "img", host=ROOTLESS).render(plan())
    assert "--pids-limit" not in argv and "--memory" not in argv


def test_rootless_on_cgroup_v1_gets_rlimits_instead() -> None:
    """podman ignores cgroup limits there: a fork bomb in such a container took the test machine to a load of 5000."""
    from rcc.plan import ResourceLimits

    limited = plan(limits=ResourceLimits(memory=200 << 20, processes=64))
    argv = ContainerBackend("podman", "img", host=ROOTLESS).render(limited)
    assert "--pids-limit" not in argv and "--memory" not in argv
    ulimits = [argv[i + 1] for i, a in enumerate(argv) if a == "--ulimit"]
    assert ulimits == ["nproc=64:64", f"data={200 << 20}:{200 << 20}"]
    assert "--ulimit" not in ContainerBackend("podman", "img", host=ROOT).render(limited)  # cgroups there


def test_docker_argv_uses_docker_syntax() -> None:
    argv = ContainerBackend("docker", "img", host=ROOT, engine_path="docker").render(plan())
    assert argv[:2] == ["docker", "run"]
    for podman_only in ("--unsetenv-all", "--read-only-tmpfs=false", "--systemd", "--no-hosts", "keep-id"):
        assert podman_only not in argv
    assert "/home/u:rw,mode=0700,uid=1000,gid=1000" in argv
    assert f"type=bind,src={P},dst={P},readonly=false" in argv
    assert argv[argv.index("--user") + 1] == "1000:1000"


def test_docker_detach_keys_are_never_the_default() -> None:
    """docker reads an empty --detach-keys as its default (Ctrl-P Ctrl-Q): the agent would lose Ctrl-P and the
    session could be detached, leaving the container running headless."""
    from rcc.backends.container import DOCKER_DETACH_KEYS

    argv = ContainerBackend("docker", "img", host=ROOT, engine_path="docker").render(plan())
    keys = argv[argv.index("--detach-keys") + 1]
    assert keys == DOCKER_DETACH_KEYS and "ctrl-p" not in keys and len(keys.split(",")) == 8


def test_docker_proxy_mode_starts_the_command_behind_the_gate() -> None:
    from rcc.backends.container import DOCKER_GATE, DOCKER_GATE_SCRIPT

    p = plan(net=NetPlan("proxy", 3128), argv=("sh", "-c", 'echo "$1"', "x y", "$(id)\n"))
    argv = ContainerBackend("docker", "img", host=ROOT, engine_path="docker").render(p)
    assert argv[:2] == ["docker", "create"]
    assert argv[argv.index("--network") + 1] == "none"
    assert f"type=bind,src=/run/rcc-staging/gate,dst={DOCKER_GATE},readonly=true" in argv
    tail = argv[argv.index("img") + 1 :]
    # the gate script is constant; the command follows as separate arguments ("$@"), exactly as given
    assert tail == ["/bin/sh", "-c", DOCKER_GATE_SCRIPT, "rcc-gate", "/usr/bin/env", "--", *p.argv]
    assert 'exec "$@"' in DOCKER_GATE_SCRIPT and DOCKER_GATE_SCRIPT.endswith("exit 125")


def test_podman_proxy_mode_has_no_gate() -> None:
    argv = ContainerBackend("podman", "img", host=ROOT, engine_path="podman").render(plan(net=NetPlan("proxy", 3128)))
    assert argv[1] == "run" and "/bin/sh" not in argv and not [a for a in argv if "rcc-gate" in a]


def test_docker_leaves_proc_sys_to_the_engine() -> None:
    """runc refuses binds inside /proc; docker mounts /proc/sys read-only itself. podman keeps the plan's bind."""
    p = plan(mounts=(Special("proc", "/proc"), Bind("/proc/sys", "/proc/sys", False)))
    skipped = {op.dest: why for op, why in translate(p, "docker").skipped}
    assert "read-only itself" in skipped["/proc/sys"]
    assert translate(p, "docker").mounts == ()
    assert translate(p).mounts == (Bind("/proc/sys", "/proc/sys", False),)
    # a writable /proc/sys is never silently dropped: docker would refuse it (fail closed)
    assert translate(plan(mounts=(Bind("/proc/sys", "/proc/sys", True),)), "docker").mounts != ()


def test_translate_skips_system_and_engine_provided_ops() -> None:
    t = translate(plan())
    dests = [m.dest for m in t.mounts]
    assert "/usr" not in dests and "/etc" not in dests and "/dev" not in dests and "/bin" not in dests
    skipped = {op.dest: why for op, why in t.skipped}
    assert "image provides" in skipped["/bin"] and "image provides" in skipped["/usr"]
    assert "engine provides" in skipped["/proc"]


def test_later_op_covers_earlier_ones_at_and_below_its_destination() -> None:
    p = plan(
        mounts=(
            Bind("/data/a", "/data/a", True),
            Bind("/data/a/b", "/data/a/b", True),
            Tmpfs("/data/a"),
            Mask("/data/x", False),
            Bind("/data/x", "/data/x", False),
        )
    )
    t = translate(p)
    assert t.mounts == (Tmpfs("/data/a"), Bind("/data/x", "/data/x", False))


def test_dir_becomes_user_owned_tmpfs() -> None:
    argv = ContainerBackend("podman", "img", host=ROOTLESS).render(plan(mounts=(Dir("/home/u/.cache", 0o700),)))
    assert "type=tmpfs,dst=/home/u/.cache,tmpfs-mode=0700,notmpcopyup,U=true" in argv


def test_comma_in_a_path_is_refused_not_passed() -> None:
    evil = "/home/u/p,U=true"
    with pytest.raises(RccError) as e:
        ContainerBackend("podman", "img", host=ROOTLESS).render(plan(mounts=(Bind(evil, evil, True),)))
    assert e.value.code == ExitCode.CONFIG


def test_colon_in_tmpfs_is_refused_for_docker_syntax() -> None:
    with pytest.raises(RccError):
        ContainerBackend("docker", "img", host=ROOT).render(plan(mounts=(Tmpfs("/a:b"),)))


def test_newline_in_a_path_is_refused() -> None:
    with pytest.raises(RccError):
        ContainerBackend("podman", "img", host=ROOT).render(plan(mounts=(Bind("/a\nb", "/a\nb"),)))


@pytest.mark.parametrize("image", ["", "-v", "--privileged", "a b"])
def test_option_like_image_names_are_refused(image: str) -> None:
    with pytest.raises(RccError) as e:
        ContainerBackend("podman", image)
    assert e.value.code == ExitCode.CONFIG


def test_control_registry_image_names_are_accepted() -> None:
    b = ContainerBackend("podman", "registry.example:5000/team/agent@sha256:" + "a" * 64, host=ROOT)
    assert b.render(plan())[-5] == b.image


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(RccError):
        ContainerBackend("lxc")


def test_argv_starting_with_dash_stays_the_commands() -> None:
    argv = ContainerBackend("podman", "img", host=ROOT).render(plan(argv=("--privileged", "x")))
    assert argv[-4:] == ["/usr/bin/env", "--", "--privileged", "x"]
    assert argv.index("--privileged") > argv.index("img")


def test_network_is_always_none_even_in_proxy_mode() -> None:
    argv = ContainerBackend("podman", "img", host=ROOT).render(plan(net=NetPlan("proxy", 3128)))
    assert argv[argv.index("--network") + 1] == "none"
    assert argv.count("--network") == 1


def test_seccomp_profile_denies_keyring_and_user_namespaces() -> None:
    from rcc.backends.container import harden_seccomp

    default = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "keyctl", "unshare", "clone", "clone3", "add_key"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }
    out = harden_seccomp(default)
    allowed_always = [
        n for r in out["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]
    ]
    assert allowed_always == ["read"]
    denied = {n for r in out["syscalls"] if r["action"] == "SCMP_ACT_ERRNO" and not r.get("args") for n in r["names"]}
    assert {"keyctl", "add_key", "request_key", "setns"} <= denied
    clone = [r for r in out["syscalls"] if "clone" in r["names"]]
    assert {(r["action"], r["args"][0]["valueTwo"]) for r in clone} == {
        ("SCMP_ACT_ALLOW", 0),
        ("SCMP_ACT_ERRNO", 0x10000000),
    }
    # clone3 answers ENOSYS explicitly (glibc then falls back to clone): docker 20.10 ignores defaultErrnoRet
    assert [r.get("errnoRet") for r in out["syscalls"] if r["names"] == ["clone3"]] == [38]
    assert default["syscalls"][0]["names"][1] == "keyctl"  # the input is not modified


def test_missing_engine_seccomp_profile_refuses_to_start(tmp_path: Path) -> None:
    from rcc.backends.container import seccomp_profile_text

    with pytest.raises(RccError) as e:
        seccomp_profile_text(str(tmp_path / "absent.json"))
    assert e.value.code == ExitCode.DEPENDENCY


def test_image_tags_hash_their_inputs() -> None:
    assert base_image_tag().startswith("localhost/rcc-base:bookworm-")
    assert agent_image_tag() == agent_image_tag()
    assert agent_image_tag("localhost/other:1") != agent_image_tag()
    assert ContainerBackend("podman", None, host=ROOT).render(plan())[-5] == agent_image_tag()


def test_debootstrap_argv() -> None:
    a = debootstrap_argv("/tmp/r", "http://mirror.example/debian")
    assert a[0] == "debootstrap" and a[-3:] == ["bookworm", "/tmp/r", "http://mirror.example/debian"]
    assert "--variant=minbase" in a and any(x.startswith("--include=") and "git" in x for x in a)


def test_apt_mirror_reads_deb822_and_one_line_sources() -> None:
    deb822 = (
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert apt_mirror([("/etc/apt/sources.list.d/debian.sources", deb822)]) == "http://deb.example/debian"
    one = "# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n"
    assert apt_mirror([("/etc/apt/sources.list", one)]) == "http://m.example/debian"
    assert apt_mirror([]) == "http://deb.debian.org/debian"


def test_hybrid_cgroup_detection(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    assert hybrid_cgroup_controllers(str(tmp_path)) == ["hugetlb"]
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")
    assert hybrid_cgroup_controllers(str(tmp_path)) == []  # the fix applied: v2 holds nothing
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert hybrid_cgroup_controllers(str(tmp_path)) == []  # pure cgroup v2


def test_default_ulimits_last_file_wins(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.conf", tmp_path / "b.conf", tmp_path / "c.conf"
    a.write_text('[containers]\ndefault_ulimits = ["nofile=1048576:1048576"]\n')
    b.write_text("[containers]\ndefault_ulimits = []\n")
    c.write_text("[engine]\nevents_logger = 'file'\n")
    assert default_ulimits([str(a)]) == ["nofile=1048576:1048576"]
    assert default_ulimits([str(a), str(b), str(c)]) == []
    assert default_ulimits([str(c)]) is None
    assert default_ulimits([str(tmp_path / "missing.conf")]) is None


def test_containers_conf_files_include_user_files_only_rootless(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert not any(str(tmp_path) in f for f in containers_conf_files(False, env))
    assert str(tmp_path / ".config" / "containers" / "containers.conf") in containers_conf_files(True, env)


def test_rcc_run_dry_run_prints_the_podman_command(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    src = Path(__file__).resolve().parents[2] / "src"
    project = tmp_path / "proj"
    project.mkdir()
    env = {
        "HOME": str(tmp_path / "home"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(src),
        "LANG": "C.UTF-8",
    }
    os.makedirs(env["HOME"])
    res = subprocess.run(
        [sys.executable, "-m", "rcc", "run", "--backend", "podman", "--dry-run", "--", "echo", "hi"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    argv = doc["backend"]["argv"]
    assert doc["backend"]["name"] == "podman"
    assert argv[1] == "run" and argv[argv.index("--network") + 1] == "none"
    assert f"type=bind,src={project},dst={project},ro=false" in argv
    assert agent_image_tag() in argv and argv[-2:] == ["echo", "hi"]


def test_rootless_podman_needs_no_rlimit_fix() -> None:
    from rcc.backends.container_image import ulimits_problem

    assert ulimits_problem(rootless=True) is False  # it asks for the limits it already has


def test_review_mode_podman_mounts_the_project_as_an_overlay_volume_with_rcc_upper() -> None:
    """Review mode: the project is podman's overlay volume with rcc's upper and work dirs; a writable bind from
    inside the project (the pinned .git) is left out (it would be the user's real tree); read-only binds of
    never-writable paths stay on top. The upper dir never appears as a bind of its own."""
    from rcc.plan import Overlay

    ov = Overlay(P, "/home/u/.local/state/rcc/reviews/abcd/upper", "/home/u/.local/state/rcc/reviews/abcd/work", True)
    base = list(plan().mounts)
    at = base.index(Bind(P, P, True, "project")) + 1
    mounts = (*base[:at], Bind(f"{P}/.git", f"{P}/.git", True, "git dir pinned"), *base[at:])  # as compile.py
    argv = ContainerBackend("podman", "img", host=ROOTLESS, engine_path="podman").render(
        plan(mounts=mounts, overlay=ov)
    )
    assert f"{P}:{P}:O,upperdir={ov.upper},workdir={ov.work}" in argv
    joined = " ".join(argv)
    assert f"src={P},dst={P}," not in joined and f"src={P}/.git,dst={P}/.git,ro=false" not in joined
    assert f"type=bind,src={P}/.git/hooks,dst={P}/.git/hooks,ro=true" in joined  # protections on top
    assert ov.upper not in joined.replace(f"upperdir={ov.upper}", "")
    control = ContainerBackend("podman", "img", host=ROOTLESS, engine_path="podman").render(plan(mounts=mounts))
    assert f"type=bind,src={P},dst={P},ro=false" in " ".join(control)  # without review: the project itself


def test_review_mode_refuses_option_syntax_in_the_layer_paths() -> None:
    from rcc.plan import Overlay

    ov = Overlay(P, "/s/re,views/upper", "/s/re,views/work", True)
    with pytest.raises(RccError):
        ContainerBackend("podman", "img", host=ROOTLESS, engine_path="podman").render(plan(overlay=ov))


def _layered(*extra: Bind) -> Plan:
    from rcc.plan import Overlay

    ov = Overlay(P, "/home/u/.local/state/rcc/reviews/abcd/upper", "/home/u/.local/state/rcc/reviews/abcd/work", True)
    return plan(mounts=(*plan().mounts, *extra), overlay=ov)


def test_review_mode_refuses_a_writable_bind_showing_the_project_elsewhere() -> None:
    """`--rw` of a directory holding the project, mounted at another path, would show the real project writable
    beside its layer: refused (72). Control: a writable bind beside the project renders as usual."""
    b = ContainerBackend("podman", "img", host=ROOT, engine_path="podman")
    with pytest.raises(RccError) as e:
        b.render(_layered(Bind("/home/u", "/mnt/u", True, "--rw elsewhere")))
    assert e.value.code == ExitCode.REVIEW_UNAVAILABLE
    ok = b.render(_layered(Bind("/home/u/other", "/mnt/other", True, "--rw beside the project")))
    assert "type=bind,src=/home/u/other,dst=/mnt/other,ro=false" in ok


def test_review_mode_refuses_a_plan_without_the_writable_project() -> None:
    p = _layered()
    mounts = tuple(m for m in p.mounts if not (isinstance(m, Bind) and m.src == P))
    with pytest.raises(RccError) as e:
        ContainerBackend("podman", "img", host=ROOT, engine_path="podman").render(
            plan(mounts=mounts, overlay=p.overlay)
        )
    assert e.value.code == ExitCode.REVIEW_UNAVAILABLE


def test_review_mode_needs_the_kernels_overlay_defaults_off(tmp_path: Path) -> None:
    """Root's podman overlay volume takes the kernel's defaults: metacopy or redirect_dir on would put
    metadata-only copies or redirects in the layer. Control: both off (Debian's defaults) pass."""
    from rcc.backends.container import overlay_defaults_problem

    for name in ("metacopy", "redirect_dir"):
        (tmp_path / name).write_text("N\n")
    assert overlay_defaults_problem(str(tmp_path)) == ""
    (tmp_path / "redirect_dir").write_text("Y\n")
    assert "redirect_dir" in overlay_defaults_problem(str(tmp_path))
    (tmp_path / "redirect_dir").write_text("N\n")
    (tmp_path / "metacopy").unlink()
    assert "cannot read" in overlay_defaults_problem(str(tmp_path))


def test_docker_has_no_review_mode() -> None:
    b = ContainerBackend("docker", "img", host=ROOT, engine_path="docker")
    assert "docker has no overlay" in b.review_problem()
