"""Seatbelt denials made visible: parsed from `log stream --style ndjson` (a stand-in `log` on Linux), written to
the audit log beside the proxy's records and shown by `rcc log`.

What this proves: the predicate rcc asks for (this session's tag only), the parsing of the kernel's message
layout sandbox-runtime documents, that lines of other sessions and garbage are ignored, and the path from a log
line to `rcc log --session ID --denied`. What it does NOT prove: the exact text macOS writes (the macOS release
workflow triggers a real denial and looks for it in `rcc log`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from test_launcher import World, world  # noqa: F401 (the fixture)

from rcc.backends.seatbelt_log import parse_denial, stream_argv


def test_stream_argv_asks_for_this_sessions_tag_only() -> None:
    argv = stream_argv("rcc-sbx-abc")
    assert argv[0] == "/usr/bin/log"
    assert argv[1:] == ["stream", "--style", "ndjson", "--predicate", 'eventMessage CONTAINS "rcc-sbx-abc"']


def test_parse_denial() -> None:
    line = json.dumps({"eventMessage": "Sandbox: cat(4242) deny(1) file-read-data /Users/u/.ssh/id_rsa rcc-sbx-abc"})
    rec = parse_denial(line, "rcc-sbx-abc", "abc")
    assert rec is not None
    assert (rec.session, rec.proto, rec.decision, rec.rule, rec.host) == (
        "abc",
        "seatbelt",
        "deny",
        "file-read-data",
        "/Users/u/.ssh/id_rsa",
    )
    assert rec.reason == "cat[4242]: seatbelt denied file-read-data"
    net = json.dumps({"eventMessage": "rcc-sbx-abc Sandbox: curl(7) deny(1) network-outbound 1.1.1.1:443"})
    r2 = parse_denial(net, "rcc-sbx-abc", "abc")
    assert r2 is not None and r2.rule == "network-outbound" and r2.host == "1.1.1.1:443"
    assert (
        parse_denial(json.dumps({"eventMessage": "Sandbox: x(1) deny(1) lsopen rcc-sbx-other"}), "rcc-sbx-abc", "abc")
        is None
    )
    assert parse_denial("not json", "rcc-sbx-abc", "abc") is None
    assert parse_denial("[1]", "rcc-sbx-abc", "abc") is None
    odd = parse_denial(json.dumps({"eventMessage": "something else rcc-sbx-abc"}), "rcc-sbx-abc", "abc")
    assert odd is not None and odd.reason == "something else"


def test_denials_reach_stderr_and_rcc_log(world: World) -> None:  # noqa: F811
    log_stand_in = world.tmp / "bin" / "log"
    log_stand_in.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys, time
            tag = sys.argv[-1].split('"')[1]
            for msg in (f"Sandbox: cat(11) deny(1) file-read-data /Users/u/.ssh/id_rsa {{tag}}",
                        "Sandbox: other(12) deny(1) file-read-data /x rcc-sbx-someone-else",
                        f"Sandbox: curl(13) deny(1) network-outbound 1.1.1.1:443 {{tag}}"):
                print(json.dumps({{"eventMessage": msg}}), flush=True)
            time.sleep(300)
            """
        )
    )
    log_stand_in.chmod(0o755)
    env = world.env(RCC_MACOS_LOG=str(log_stand_in))
    r = subprocess.run(world.argv("true"), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "rcc: sandbox denied file-read-data /Users/u/.ssh/id_rsa" in r.stderr
    assert "rcc: sandbox denied network-outbound 1.1.1.1:443" in r.stderr
    assert "someone-else" not in r.stderr and "/x" not in r.stderr
    sid = world.record()["argv"][2].split("/")[-2]  # type: ignore[index]
    assert f"rcc log --session {sid} --denied" in r.stderr
    out = subprocess.run(
        [sys.executable, "-m", "rcc", "log", "--session", sid, "--denied", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    recs = [json.loads(x) for x in out.splitlines()]
    assert [(x["proto"], x["rule"], x["host"]) for x in recs] == [
        ("seatbelt", "file-read-data", "/Users/u/.ssh/id_rsa"),
        ("seatbelt", "network-outbound", "1.1.1.1:443"),
    ]
    table = subprocess.run(
        [sys.executable, "-m", "rcc", "log", "--session", sid], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "/Users/u/.ssh/id_rsa" in table and "seatbelt" in table
