"""The seatbelt launcher end to end on Linux: the real `rcc run --backend seatbelt`, with a stand-in for
/usr/bin/sandbox-exec (RCC_SANDBOX_EXEC) that records what it was given and then runs the command WITHOUT any
sandbox.

What this proves: the argv rcc passes (the absolute sandbox-exec path, `-f` and a profile file, never the
profile text), the profile file's mode, owner and place (rcc's state dir, gone after the session), that the
profile handed over is the one that passes the structural check and names the proxy's real port, the
environment (the allowlist; HOME and TMPDIR the session's own), exit codes, signal deaths, SIGTERM to rcc
ending the sandboxed process, a terminal for interactive sessions, and the proxy on the host's loopback.
What it does NOT prove: any enforcement (the stand-in enforces nothing; see test_simulated_escapes.py and the
macOS release workflow).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import rcc

SRC = str(Path(rcc.__file__).resolve().parents[1])
HERE = str(Path(__file__).resolve().parent)


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.project = tmp / "home" / "proj"
        self.project.mkdir(parents=True)
        (self.project / ".git").mkdir()
        (self.project / ".git" / "hooks").mkdir()
        (self.home / ".config" / "rcc").mkdir(parents=True)
        self.records = tmp / "records"
        self.records.mkdir()
        self.stand_in = tmp / "bin" / "sandbox-exec"
        self.stand_in.parent.mkdir()
        # The stand-in: record argv, the profile file's stat and text, env and cwd; check the profile; then run
        # the command (what follows `--`) with nothing enforced. Its paths are baked in: the sandbox's
        # environment is the allowlist, so nothing can be passed to it through the environment.
        self.stand_in.write_text(
            textwrap.dedent(
                f"""\
                #!{sys.executable}
                import json, os, sys
                sys.path[:0] = [{HERE!r}, {SRC!r}]
                import sbpl
                args = sys.argv[1:]
                assert args[0] == "-f" and args[2] == "--", args
                st = os.stat(args[1])
                text = open(args[1]).read()
                rec = dict(argv=sys.argv, mode=st.st_mode & 0o7777, uid=st.st_uid, profile=text,
                           problems=sbpl.check(text), env=dict(os.environ), cwd=os.getcwd(),
                           pgid=os.getpgid(0), sid=os.getsid(0))
                with open(os.path.join({str(self.records)!r}, str(os.getpid())), "w") as f:
                    json.dump(rec, f)
                os.execvp(args[3], args[3:])
                """
            )
        )
        self.stand_in.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "PYTHONPATH": SRC,
            "RCC_SANDBOX_EXEC": str(self.stand_in),
            "AWS_SECRET_ACCESS_KEY": "must-not-pass",
            "LANG": "C.UTF-8",
            **extra,
        }

    def argv(self, *cmd: str, net: bool = False) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rcc",
            "run",
            "--backend",
            "seatbelt",
            *([] if net else ["--no-network"]),
            "--project",
            str(self.project),
            "--",
            *cmd,
        ]

    def run(self, *cmd: str, net: bool = False, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*cmd, net=net),
            check=False,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            **kw,  # type: ignore[call-overload]
        )

    def record(self) -> dict[str, object]:
        files = sorted(self.records.iterdir())
        assert len(files) == 1, files
        data: dict[str, object] = json.loads(files[0].read_text())
        files[0].unlink()
        return data

    def state(self) -> Path:
        return self.home / ".local" / "state" / "rcc"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_argv_profile_file_mode_place_and_removal(world: World) -> None:
    r = world.run("true")
    assert r.returncode == 0, r.stderr
    rec = world.record()
    argv = rec["argv"]
    assert isinstance(argv, list)
    state = world.state()
    assert argv[0] == str(world.stand_in)
    assert argv[1] == "-f"
    profile = Path(argv[2])
    assert profile.parent.parent == state / "seatbelt" and profile.name == "profile.sb"
    assert argv[3:] == ["--", "/usr/bin/env", "--", "true"]
    assert rec["mode"] == 0o600 and rec["uid"] == os.getuid()
    assert rec["problems"] == []
    assert "(version 1)" in str(rec["profile"]) and "(deny default" in str(rec["profile"])
    assert not any("(version" in a for a in argv)  # never the profile text in argv
    assert not profile.exists() and not profile.parent.exists(), "the session dir is removed after the session"
    assert list((state / "seatbelt").iterdir()) == []


def test_default_sandbox_exec_is_the_absolute_system_path(world: World) -> None:
    """Without the test override, rcc names /usr/bin/sandbox-exec: a sandbox-exec earlier on PATH never runs."""
    env = world.env()
    del env["RCC_SANDBOX_EXEC"]
    env["PATH"] = f"{world.stand_in.parent}:{env['PATH']}"
    r = subprocess.run(
        [*world.argv("true")[:-2], "--dry-run", "--", "true"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["backend"]["argv"][:2] == ["/usr/bin/sandbox-exec", "-f"]
    assert "(deny default" in doc["backend"]["profile"]
    assert list(world.records.iterdir()) == []
    if sys.platform != "darwin":  # and a real run on Linux is refused, never run unsandboxed
        r = subprocess.run(world.argv("true"), check=False, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 69 and "only on macOS" in r.stderr
        assert list(world.records.iterdir()) == []


def test_env_is_the_allowlist_with_the_sessions_home_and_tmpdir(world: World) -> None:
    r = world.run("true")
    assert r.returncode == 0, r.stderr
    env = world.record()["env"]
    assert isinstance(env, dict)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "RCC_SANDBOX_EXEC" not in env and "PYTHONPATH" not in env
    session = world.state() / "seatbelt"
    assert env["HOME"].startswith(str(session)) and env["HOME"].endswith("/home")
    assert env["TMPDIR"].startswith(str(session)) and env["TMPDIR"].endswith("/tmp/")
    assert env["RCC_SANDBOX"] == "1"
    assert "HTTP_PROXY" not in env  # --no-network


def test_cwd_and_project_writes_land(world: World) -> None:
    sub = world.project / "src"
    sub.mkdir()
    r = subprocess.run(
        world.argv("sh", "-c", 'pwd; echo hi > out.txt; echo "$TMPDIR" > tmpdir.txt; touch "$TMPDIR/t"'),
        check=False,
        env=world.env(),
        cwd=sub,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sub)
    assert (sub / "out.txt").read_text() == "hi\n"
    world.record()


def test_exit_codes(world: World) -> None:
    assert world.run("sh", "-c", "exit 3").returncode == 3
    world.record()
    assert world.run("no-such-command-xyz").returncode == 127
    world.record()
    (world.project / "noexec").write_text("#!/bin/sh\n")
    assert world.run("./noexec").returncode == 126
    world.record()
    assert world.run("sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    world.record()


def test_rcc_errors_keep_their_codes(world: World) -> None:
    env = world.env(RCC_SANDBOX_EXEC="relative/sandbox-exec")
    r = subprocess.run(world.argv("true"), check=False, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 78
    env = world.env(RCC_SANDBOX_EXEC=str(world.tmp / "missing"))
    r = subprocess.run(world.argv("true"), check=False, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 69
    assert list(world.records.iterdir()) == []


def test_non_interactive_session_has_its_own_session_and_group(world: World) -> None:
    r = world.run("true")
    assert r.returncode == 0
    rec = world.record()
    assert rec["sid"] == rec["pgid"] != os.getsid(0)  # setsid: no controlling terminal (no TIOCSTI)


def test_sigterm_to_rcc_ends_the_sandboxed_command_and_its_group(world: World) -> None:
    """test_kill_rcc_kills_sandbox: rcc killed must not leave the command (or what it started) running."""
    marker = world.project / "pids"
    proc = subprocess.Popen(
        world.argv("sh", "-c", f"sleep 300 & echo $! > {marker}; echo $$ >> {marker}; wait"),
        env=world.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (marker.exists() and len(marker.read_text().split()) == 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    pids = [int(p) for p in marker.read_text().split()]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.05)
    assert alive == [], "processes left behind after rcc was killed"
    world.record()
    assert not any((world.state() / "seatbelt").iterdir()), "session dir removed"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_interactive_session_gets_the_terminal(world: World) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        world.argv("sh", "-c", "test -t 0 && test -t 1 && echo TTY-OK; exit 7")[0],
        world.argv("sh", "-c", "test -t 0 && test -t 1 && echo TTY-OK; exit 7")[1:],
        env=world.env(),
        timeout=60,
    )
    child.expect("TTY-OK")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7
    world.record()


def test_proxy_listens_on_host_loopback_at_the_port_the_profile_allows(world: World) -> None:
    """The proxy answers a CONNECT to an unlisted host with rcc's 403, on the port in the environment, and
    the profile allows exactly that port (remote ip "localhost:PORT")."""
    script = (
        "import os, socket, urllib.parse as u; p = u.urlsplit(os.environ['HTTP_PROXY']); "
        "s = socket.create_connection((p.hostname, p.port), timeout=10); "
        "s.sendall(b'CONNECT denied.example:443 HTTP/1.1\\r\\nHost: denied.example:443\\r\\n\\r\\n'); "
        "print(s.recv(200).split(b'\\r\\n')[0].decode())"
    )
    r = world.run(sys.executable, "-c", script, net=True)
    assert r.returncode == 0, r.stderr
    assert " 403 " in r.stdout
    rec = world.record()
    env = rec["env"]
    assert isinstance(env, dict)
    port = int(env["HTTP_PROXY"].rsplit(":", 1)[1])
    assert f'(allow network-outbound (remote ip "localhost:{port}"))' in str(rec["profile"])
    with socket.socket() as s:  # the session's proxy is closed with the session
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_sandbox_exec_override_is_ignored_on_macos() -> None:
    """On a Mac no environment variable (a project's .envrc, say) can replace /usr/bin/sandbox-exec."""
    from rcc.backends.seatbelt import SANDBOX_EXEC, SeatbeltBackend

    assert SeatbeltBackend({"RCC_SANDBOX_EXEC": "/tmp/fake"}, platform="darwin").sandbox_exec == SANDBOX_EXEC
    assert SeatbeltBackend({"RCC_SANDBOX_EXEC": "/tmp/fake"}, platform="linux").sandbox_exec == "/tmp/fake"
    assert SeatbeltBackend({}, platform="linux").problems()[0].code == 69


def test_agent_session_state_through_links_and_the_profile_allows_it(world: World) -> None:
    """`rcc claude --backend seatbelt` with a stand-in claude: ~/.claude is the session's fresh state dir (a link
    in the private home), ~/.claude/projects this project's kept store (a link at its mount point); what the
    agent writes there lands in the store; and the profile handed to sandbox-exec allows exactly those
    resolved paths (checked with the decision simulator)."""
    from sb_simulator import Profile, Request

    from rcc.backends.seatbelt_profile import canonical

    agent_bin = world.tmp / "agent-bin"
    agent_bin.mkdir()
    claude = agent_bin / "claude"
    claude.write_text(
        "#!/bin/sh\n"
        'echo hi > "$CLAUDE_CONFIG_DIR/projects/s.jsonl" && echo state > "$HOME/.claude/state.json" && '
        'realpath "$CLAUDE_CONFIG_DIR/projects/s.jsonl" "$HOME/.claude/state.json"\n'
    )
    claude.chmod(0o755)
    env = world.env()
    env["PATH"] = f"{agent_bin}:{env['PATH']}"
    r = subprocess.run(
        [sys.executable, "-m", "rcc", "claude", "--backend", "seatbelt", "--project", str(world.project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    kept, fresh = r.stdout.split()
    state = world.state()
    assert kept.startswith(str(state / "agents" / "claude" / "projects")) and Path(kept).read_text() == "hi\n"
    assert fresh.startswith(str(state / "agents" / "claude" / "run"))
    rec = world.record()
    assert rec["env"]["CLAUDE_CONFIG_DIR"] == rec["env"]["HOME"] + "/.claude"  # type: ignore[index]
    prof = Profile(str(rec["profile"]))
    for path in (kept, fresh):
        assert prof.allows(Request("file-write-data", canonical(path))), path
    assert not prof.allows(Request("file-write-data", canonical(str(state / "agents" / "claude" / "settings" / "x"))))
    assert list((state / "agents" / "claude" / "run").iterdir()) == []  # the fresh state is gone after
