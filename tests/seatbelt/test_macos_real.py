"""The escape suite under the REAL sandbox-exec: runs only on macOS (the release workflow
.github/workflows/macos.yml, macos-14 and macos-15 runners; a maintainer's Mac: `make venv && .venv/bin/pytest
tests/seatbelt`). Skipped on every other OS: nothing here has run on Linux.

Each attack is a real command inside `rcc run` that must fail, next to a control that must succeed. Network
attacks talk only to listeners this test opens on the host's loopback (never any other address).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "darwin", reason="the real Seatbelt exists only on macOS")


class Mac:
    def __init__(self, tmp: Path) -> None:
        tmp = tmp.resolve()  # /private/var/folders/...: what Seatbelt sees
        self.home = tmp / "home"
        self.project = self.home / "proj"
        (self.project / ".git" / "hooks").mkdir(parents=True)
        (self.project / ".git" / "config").write_text("[core]\n")
        (self.project / "src").mkdir()
        (self.home / ".ssh").mkdir()
        (self.home / ".ssh" / "id_rsa").write_text("SECRET\n")
        (self.home / "notes.txt").write_text("private\n")
        (self.home / ".config" / "rcc").mkdir(parents=True)
        (self.home / ".local" / "state" / "rcc").mkdir(parents=True, mode=0o700)
        (self.home / ".local" / "state" / "rcc" / "trust.json").write_text("{}\n")
        self.env = {
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "en_US.UTF-8",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
        }

    def run(self, script: str, *, network: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # the test's Python (a runner keeps it under /Users, which the sandbox denies) is named like a toolchain
        argv = [sys.executable, "-m", "rcc", "run", "--ro", sys.base_prefix, *([] if network else ["--no-network"])]
        argv += ["--project", str(self.project), "--", "/bin/sh", "-c", script]
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )


@pytest.fixture
def mac(tmp_path: Path) -> Mac:
    return Mac(tmp_path)


def attacks(m: Mac) -> dict[str, str]:
    h, p = m.home, m.project
    state = h / ".local" / "state" / "rcc"
    return {
        "read_home_secret": f"cat {h}/.ssh/id_rsa",
        "read_home_file": f"cat {h}/notes.txt",
        "list_home": f"ls {h}",
        "list_users": "ls /Users",
        "hard_link_secret_into_project": f"ln {h}/.ssh/id_rsa {p}/src/alias && cat {p}/src/alias",
        "read_rcc_state": f"cat {state}/trust.json",
        "list_rcc_state": f"ls {state}",
        "write_outside_project": f"touch {h}/evil",
        "write_shared_tmp": "touch /private/tmp/rcc-escape-$$",
        "write_system": "touch /usr/local/rcc-escape-$$ || touch /Library/rcc-escape-$$",
        "launch_agent": f"mkdir -p {h}/Library/LaunchAgents && touch {h}/Library/LaunchAgents/evil.plist",
        "plant_git_hook": f"echo 'touch /tmp/pwned' > {p}/.git/hooks/pre-commit",
        "change_git_config": f"echo '[core] fsmonitor = x' >> {p}/.git/config",
        "rename_git": f"mv {p}/.git {p}/x",
        "rename_hooks": f"mv {p}/.git/hooks {p}/.git/h2",
        "plant_claude_settings": f"mkdir -p {p}/.claude && echo '{{}}' > {p}/.claude/settings.json",
        "symlink_in_place_of_claude": f"ln -s {p}/src {p}/.claude",
        "plant_mcp_json": f"echo '{{}}' > {p}/.mcp.json",
        "plant_envrc": f"echo 'curl x' > {p}/.envrc",
        "plant_vscode_tasks": f"mkdir -p {p}/.vscode",
        "rename_project": f"cd / && mv {p} {p}2",
        "open_app": "/usr/bin/open -a Calculator",
        "apple_events": "/usr/bin/osascript -e 'tell application \"Finder\" to get name'",
        # 44: "item not found", i.e. the keychain answered; blocked, security fails differently
        "keychain": "/usr/bin/security find-generic-password -s rcc-test-nothing; test $? -eq 44",
    }


CONTROLS = {
    "project_write": "echo hi > src/out.txt && cat src/out.txt",
    "project_create_delete": "mkdir -p build/x && rm -rf build",
    "git_objects": "mkdir -p .git/objects/ab && touch .git/objects/ab/cd",
    "read_system": "cat /etc/hosts >/dev/null && /usr/bin/true",
    "tmpdir": 'echo x > "$TMPDIR/t" && cat "$TMPDIR/t"',
    "home_is_private_and_writable": 'echo x > "$HOME/.cache-test" && cat "$HOME/.cache-test"',
    "python_runs": f"{sys.executable} -c 'import os, tempfile; os.getcwd(); tempfile.mkstemp()'",
    "whoami": "/usr/bin/id -un",
}


def test_every_attack_fails_under_the_real_sandbox(mac: Mac) -> None:
    survived = {}
    for name, script in attacks(mac).items():
        r = mac.run(script)
        if r.returncode == 0:
            survived[name] = (script, r.stdout, r.stderr)
    assert survived == {}, survived
    assert (mac.project / ".git").is_dir() and not (mac.project / ".claude").exists()
    assert not (mac.project / ".mcp.json").exists() and not (mac.home / "evil").exists()
    assert (mac.project / ".git" / "config").read_text() == "[core]\n"
    assert not any(Path("/private/tmp").glob("rcc-escape-*"))


def test_every_control_works_under_the_real_sandbox(mac: Mac) -> None:
    failed = {}
    for name, script in CONTROLS.items():
        r = mac.run(script)
        if r.returncode != 0:
            failed[name] = (script, r.returncode, r.stderr)
    assert failed == {}, failed
    assert (mac.project / "src" / "out.txt").read_text() == "hi\n"


def test_host_loopback_services_are_unreachable_but_the_proxy_is(mac: Mac) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        py = (
            f'{sys.executable} -c "import socket,sys; s=socket.socket(); s.settimeout(5); '
            f"sys.exit(0 if s.connect_ex(('127.0.0.1', {port})) == 0 else 3)\""
        )
        r = mac.run(py, network=True)
        assert r.returncode != 0, "a host service on loopback was reachable"
        r = mac.run(py, network=False)
        assert r.returncode != 0
    proxy = (
        f"{sys.executable} -c \"import os,socket,urllib.parse as u; p=u.urlsplit(os.environ['HTTP_PROXY']); "
        "s=socket.create_connection((p.hostname,p.port),5); "
        "s.sendall(b'CONNECT denied.invalid:443 HTTP/1.1\\r\\nHost: denied.invalid:443\\r\\n\\r\\n'); "
        'print(s.recv(100).split()[1].decode())"'
    )
    r = mac.run(proxy, network=True)
    assert r.returncode == 0 and r.stdout.strip() == "403", r.stderr


def test_host_processes_cannot_be_signalled(mac: Mac) -> None:
    victim = subprocess.Popen(["/bin/sleep", "60"])
    try:
        r = mac.run(f"kill -TERM {victim.pid}")
        assert r.returncode != 0
        time.sleep(0.5)
        assert victim.poll() is None
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_environment_is_the_allowlist(mac: Mac) -> None:
    mac.env["AWS_SECRET_ACCESS_KEY"] = "leak"
    r = mac.run("env")
    assert r.returncode == 0 and "leak" not in r.stdout and "RCC_SANDBOX=1" in r.stdout


def test_denials_show_in_rcc_log(mac: Mac) -> None:
    """The unified log delivers with a delay: the command waits before the denied read."""
    r = mac.run(f"sleep 3; cat {mac.home}/.ssh/id_rsa")
    assert r.returncode != 0
    assert "rcc: sandbox denied" in r.stderr, r.stderr
    out = subprocess.run(
        [sys.executable, "-m", "rcc", "log", "--session", "last", "--denied", "--json"],
        env=mac.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    recs = [json.loads(x) for x in out.splitlines()]
    assert any(x["proto"] == "seatbelt" and x["host"].endswith("/.ssh/id_rsa") for x in recs), recs


def test_state_dir_holds_no_session_leftovers(mac: Mac) -> None:
    assert mac.run("true").returncode == 0
    sb = mac.home / ".local" / "state" / "rcc" / "seatbelt"
    assert not sb.exists() or list(sb.iterdir()) == []
    assert os.stat(mac.home / ".local" / "state" / "rcc").st_mode & 0o077 == 0


def test_catalogue_file_probes_under_the_real_sandbox(mac: Mac) -> None:
    """The shared catalogue's file probes (tests/attacks.py), performed by its own PROBE_SCRIPT inside the real
    sandbox and judged by its judge(), with the macOS translation of test_catalogue_simulated.py."""
    import shlex
    import uuid

    from test_catalogue_simulated import SKIP, TRANSLATE, expected

    from attacks import FILE_PROBES, PRIVATE, PROBE_SCRIPT, PROJECT_README, SECRETS, host_state, judge, resolve

    outside = mac.home.parent / "outside"
    outside.mkdir()
    (outside / "marker.txt").write_text("OUTSIDE-marker\n")
    (mac.project / "README.md").write_text(PROJECT_README)
    for rel, content in {**SECRETS, **PRIVATE}.items():
        (mac.home / rel).parent.mkdir(parents=True, exist_ok=True)
        (mac.home / rel).write_text(content)
    tag = uuid.uuid4().hex[:8]
    cases = []
    for probe in FILE_PROBES:
        want = expected(probe)
        if want == SKIP:
            continue
        target = resolve(probe.target, home=str(mac.home), project=str(mac.project), outside=str(outside), tag=tag)
        for linux, mac_path in TRANSLATE.items():
            if target == linux or target.startswith(linux):
                target = mac_path + target[len(linux) :]
        before = host_state(target)
        if probe.op in ("read", "list") and not before.exists:
            continue  # a Linux system file macOS does not have (/etc/shadow): nothing to leak
        cases.append((probe, want, target, before))
    items = [[p.name, p.op, t] for p, _w, t, _b in cases]
    r = mac.run(f"{sys.executable} -c {shlex.quote(PROBE_SCRIPT)} {shlex.quote(json.dumps(items))}")
    got = {d["name"]: d for d in (json.loads(line) for line in r.stdout.splitlines() if line.startswith("{"))}
    assert len(got) == len(cases), (r.returncode, r.stderr)
    wrong = {}
    for probe, want, target, before in cases:
        problem = judge(probe, want, got[probe.name], before, host_state(target))
        if problem:
            wrong[probe.name] = problem
    assert wrong == {}, wrong
    assert len(cases) >= len(SECRETS) + len(PRIVATE)
