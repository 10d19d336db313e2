"""Ask mode end to end in real terminals (pexpect): a real `rcc run` (bubblewrap) on a pty whose curl to a host no
rule covers is held while `rcc watch` (another pty) shows the question; a key answers it. Also: no watcher,
not a terminal, a watcher leaving mid-question, the timeout, deny rules and address guards, two watchers."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcctest import require
from testhosts import TestHost

pexpect = pytest.importorskip("pexpect")

pytestmark = [pytest.mark.sandbox, pytest.mark.netns]

NAME = "pkgs.test"
RCC = [sys.executable, "-m", "rcc"]
# Inside: wait for the test's go-ahead (a file in the project), fetch once, report.
FETCH_ON_GO = (
    "while [ ! -e go ]; do sleep 0.05; done; s=$(date +%s%N); "
    f"curl -sS --max-time 90 -o out.txt -w '%{{http_code}}' http://{NAME}/hello.txt > code.txt 2> err.txt; "
    "echo $(( ($(date +%s%N) - s) / 1000000 )) > ms.txt; touch done; sleep 0.5"
)


class Ask:
    def __init__(self, tmp: Path, address: str, timeout: int = 60) -> None:
        self.home, self.project = tmp / "home", tmp / "project"
        self.project.mkdir()
        cfg = self.home / ".config" / "rcc"
        cfg.mkdir(parents=True)
        (cfg / "config.toml").write_text(f'[network]\non_unknown = "ask"\nask_timeout = {timeout}\n')
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "TERM": "xterm",
            "NO_COLOR": "1",
            "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
        }
        self.address = address
        self.children: list[pexpect.spawn] = []

    def session(self, *opts: str, tty: bool = True) -> pexpect.spawn | object:
        argv = [*RCC, "run", "--resolve", f"{NAME}={self.address}", "--allow", "other.test", *opts]
        argv += ["--", "sh", "-c", FETCH_ON_GO]
        if tty:
            child = pexpect.spawn(argv[0], argv[1:], env=self.env, cwd=str(self.project), encoding="utf-8")
            self.children.append(child)
            return child
        import subprocess

        return subprocess.Popen(argv, env=self.env, cwd=self.project, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def wait_registered(self, n: int = 1) -> None:
        d = self.home / ".local" / "state" / "rcc" / "sessions"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if d.is_dir() and len(list(d.glob("*.sock"))) >= n:
                return
            time.sleep(0.05)
        raise AssertionError("the session did not register")

    def watch(self) -> pexpect.spawn:
        child = pexpect.spawn(RCC[0], [*RCC[1:], "watch"], env=self.env, cwd=str(self.project), encoding="utf-8")
        self.children.append(child)
        child.expect("rcc watch: session ", timeout=20)
        return child

    def go(self) -> None:
        (self.project / "go").touch()

    def result(self, timeout: float = 120) -> tuple[str, int, str]:
        deadline = time.monotonic() + timeout
        while not (self.project / "done").exists():
            assert time.monotonic() < deadline, "the fetch never finished"
            time.sleep(0.05)
        out = (self.project / "out.txt").read_text() if (self.project / "out.txt").exists() else ""
        return (self.project / "code.txt").read_text(), int((self.project / "ms.txt").read_text()), out

    def changes(self) -> list[dict[str, object]]:
        f = self.home / ".local" / "state" / "rcc" / "policy-changes.jsonl"
        return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []

    def close(self) -> None:
        for c in self.children:
            c.close(force=True)


@pytest.fixture
def ask(tmp_path: Path, testhost: TestHost) -> Iterator[Ask]:
    require(shutil.which("bwrap") is not None and shutil.which("curl") is not None, "needs bwrap and curl")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from the test host\n")
    testhost.serve_http(www, port=80)
    a = Ask(tmp_path, testhost.address)
    yield a
    a.close()


def test_watch_answer_session_lets_the_held_request_through(ask: Ask) -> None:
    """The issue's "done when": the agent asks, the user approves in `rcc watch`, the request succeeds (the
    very connection that was held), no restart; the rule stays for the session; NO_COLOR: no escapes."""
    ask.session()
    ask.wait_registered()
    w = ask.watch()
    w.expect("asking")
    ask.go()
    w.expect(rf"\? \[1\] {NAME}:80 wants to connect: o once, s session, a always, d deny", timeout=30)
    w.send("s")
    w.expect(rf"\[1\] {NAME}:80: session", timeout=10)
    code, _ms, out = ask.result()
    assert code == "200" and out == "hello from the test host\n"
    w.expect(rf"allow {NAME}:80", timeout=10)  # the live view shows the decision
    assert "\x1b[" not in (w.before or "")
    acts = [(c["action"], c.get("rule"), c.get("answer")) for c in ask.changes()]
    assert acts == [("allow", NAME, None), ("answer", "", "session")]


def test_watch_answer_deny_refuses(ask: Ask) -> None:
    ask.session()
    ask.wait_registered()
    w = ask.watch()
    ask.go()
    w.expect(r"wants to connect", timeout=30)
    w.send("d")
    code, ms, _ = ask.result()
    assert code == "403" and ms < 20000


def test_no_watcher_attached_is_denied_at_once(ask: Ask) -> None:
    """Unattended: ask mode, a terminal session, nobody watching: denied at once, never held."""
    ask.session()
    ask.wait_registered()
    ask.go()
    code, ms, _ = ask.result()
    assert code == "403" and ms < 3000


def test_session_not_on_a_terminal_is_denied_at_once_even_with_a_watcher(ask: Ask) -> None:
    p = ask.session(tty=False)
    try:
        ask.wait_registered()
        w = ask.watch()
        w.expect("not asking")
        ask.go()
        code, ms, _ = ask.result()
    finally:
        p.kill()  # type: ignore[attr-defined]
    assert code == "403" and ms < 3000


def test_print_mode_run_is_not_asking() -> None:
    """-p/--print runs (one-shot agents) never ask: compile turns ask mode off for them."""
    from rcc.compile import Session, compile_plan
    from rcc.policy import NetworkPolicy, Policy
    from rcc.probe import probe

    pol = Policy(network=NetworkPolicy(on_unknown="ask"))
    facts = probe("/tmp", [])
    assert compile_plan(pol, facts, Session(argv=("claude",), interactive=True)).net.on_unknown == "ask"
    for argv in (("claude", "-p", "hi"), ("claude", "--print", "hi")):
        assert compile_plan(pol, facts, Session(argv=argv, interactive=True)).net.on_unknown == "deny"
    assert compile_plan(pol, facts, Session(argv=("claude",), interactive=False)).net.on_unknown == "deny"


def test_watcher_leaving_mid_question_denies_it_at_once(ask: Ask) -> None:
    ask.session()
    ask.wait_registered()
    w = ask.watch()
    ask.go()
    w.expect(r"wants to connect", timeout=30)
    t0 = time.monotonic()
    w.close(force=True)
    code, _ms, _ = ask.result()
    assert code == "403" and time.monotonic() - t0 < 10


def test_unanswered_question_is_denied_at_the_timeout(tmp_path: Path, testhost: TestHost) -> None:
    require(shutil.which("bwrap") is not None and shutil.which("curl") is not None, "needs bwrap and curl")
    a = Ask(tmp_path, testhost.address, timeout=2)
    try:
        a.session()
        a.wait_registered()
        w = a.watch()
        a.go()
        w.expect(r"wants to connect", timeout=30)
        w.expect(r"deny \(no answer within 2 s\)", timeout=15)
        code, ms, _ = a.result()
        assert code == "403" and 1500 < ms < 10000
    finally:
        a.close()


def test_deny_rule_stays_absolute_in_ask_mode(ask: Ask) -> None:
    """Attack: get a denied host approved. A deny rule is never asked about: denied at once, no question shown.
    Control: the first test (a host no rule covers is asked about). The address guards after an approval are
    pinned in test_ask_flow.py (an approved name resolving to loopback is refused)."""
    ask.session("--deny", NAME)
    ask.wait_registered()
    w = ask.watch()
    ask.go()
    code, ms, _ = ask.result()
    assert code == "403" and ms < 3000
    w.expect(rf"deny  {NAME}:80  {NAME}", timeout=10)
    assert "wants to connect" not in (w.before or "")


def test_two_watchers_both_see_the_question_first_answer_wins(ask: Ask) -> None:
    ask.session()
    ask.wait_registered()
    w1, w2 = ask.watch(), ask.watch()
    ask.go()
    w1.expect(r"\? \[1\]", timeout=30)
    w2.expect(r"\? \[1\]", timeout=30)
    w2.send("o")
    w1.expect(rf"\[1\] {NAME}:80: once", timeout=10)
    code, _ms, out = ask.result()
    assert code == "200" and out.startswith("hello")


def test_watch_answer_always_saves_to_the_user_config_only(ask: Ask) -> None:
    import tomllib

    ask.session()
    ask.wait_registered()
    w = ask.watch()
    ask.go()
    w.expect(r"wants to connect", timeout=30)
    w.send("a")
    w.expect(r"saved pkgs.test to network.allow in ", timeout=10)
    code, _ms, _ = ask.result()
    assert code == "200"
    cfg = tomllib.loads((ask.home / ".config" / "rcc" / "config.toml").read_text())
    assert cfg["network"] == {"on_unknown": "ask", "ask_timeout": 60, "allow": [NAME]}
    proj = ask.project / ".rcc.toml"  # while the session runs, rcc's own empty placeholder may be there
    assert not proj.exists() or proj.read_text() == ""
