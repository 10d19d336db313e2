"""Credentials through a real `rcc run` session on every backend (the escape suite's worlds: bwrap and podman as
root and as rccuser, docker): the variable holds a placeholder inside, curl inside uses it against a credential
host (a test host serving HTTPS with a test CA, which rcc's own upstream check trusts through SSL_CERT_FILE in
rcc's environment), and the host receives the real value. While the session runs, everything the sandbox can
read is searched for the real value and for the session CA's key: neither is there.
"""

from __future__ import annotations

import http.server
import json
import shutil
from pathlib import Path

import pytest

from escape_world import World
from testhosts import TestCA, TestHost, test_ca, testhost  # noqa: F401  (the fixtures)

pytestmark = [pytest.mark.sandbox, pytest.mark.netns]

HOST = "api.cred.test"
REAL = "sk-real-0e5b2c9d7a41f3866d0c"
CONFIG = f"""
[credentials.demo]
env = "DEMO_TOKEN"
hosts = ["{HOST}"]
"""


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers with the request's headers as JSON (what reached the server), and records them."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        h = dict(self.headers.items())
        Echo.seen.append(h)
        body = json.dumps(h).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


# Inside: what the variable holds, what the host received (echoed), then a search of everything the sandbox can
# read for the real value and for the CA key. The search is Python, given the value in hex (so neither the
# script, its argv nor its environment holds the value itself).
SEARCH = r"""
import os, sys
real = bytes.fromhex(os.environ["REAL_HEX"])
placeholder = os.environ["DEMO_TOKEN"].encode()  # the search's control: it must find this one in /proc
fs, proc, keys, seen, phfiles = [], [], [], 0, []
SKIP = ("proc", "sys", "dev", "usr", "nix", "lib", "lib32", "lib64", "bin", "sbin", "opt", "gnu")
for top in ("/",):
    for d, dirs, files in os.walk(top):
        if d == "/":  # /proc below; the host's read-only system trees (GBs, never written by rcc) are skipped
            dirs[:] = [x for x in dirs if x not in SKIP]
        for f in files:
            p = os.path.join(d, f)
            try:
                if not os.path.isfile(p) or os.path.islink(p) or os.path.getsize(p) > 50 << 20:
                    continue
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if real in data:
                fs.append(p)
            if placeholder in data:
                phfiles.append(p)
            if b"PRIVATE KEY-----" in data and not p.startswith(("/usr/", "/etc/")):
                keys.append(p)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as fh:
                    data = fh.read()
                if real in data:
                    proc.append(f"/proc/{pid}/{what}")
                seen += placeholder in data
            except OSError:
                pass
print("FSHITS=" + ",".join(fs))
print("PROCHITS=" + ",".join(proc))
print("KEYS=" + ",".join(keys))
print(f"PLACEHOLDERSEEN={seen}")
print("PHFILES=" + ",".join(phfiles))
"""
SCRIPT = r"""
echo "VAR=$DEMO_TOKEN"
curl -sS --max-time 20 -H "Authorization: Bearer $DEMO_TOKEN" https://{host}/v1/x; echo
printf '%s' "$DEMO_TOKEN" > /tmp/ph-marker   # the file search's control: it must find this file
python3 -c "$SEARCH"
echo "BUNDLE=$SSL_CERT_FILE $(grep -c 'BEGIN CERTIFICATE' "$SSL_CERT_FILE")"
"""


def test_credential_injected_through_a_real_session_and_nowhere_inside(
    world: World,
    testhost: TestHost,  # noqa: F811
    test_ca: TestCA,  # noqa: F811
    tmp_path: Path,
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    Echo.seen = []
    testhost.serve_http(port=443, tls=test_ca.server_context([HOST]), handler=Echo)
    ca = world.write(world.base / "test-ca.pem", Path(test_ca.cert).read_text())
    world.write(world.home / ".config" / "rcc" / "config.toml", CONFIG)
    env = {"DEMO_TOKEN": REAL, "SSL_CERT_FILE": str(ca)}
    r = world.rcc(
        "run", "--resolve", f"{HOST}={testhost.address}", "--env", f"REAL_HEX={REAL.encode().hex()}",
        "--env", f"SEARCH={SEARCH}", "--", "sh", "-c", SCRIPT.replace("{host}", HOST), env=env, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = dict(ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln and ln.split("=", 1)[0].isupper())
    assert lines["VAR"].startswith("rcc-cred-demo-") and REAL not in r.stdout
    # the host got the real value, the sandbox saw a mask where the host echoed it
    assert Echo.seen and Echo.seen[-1].get("Authorization") == f"Bearer {REAL}"
    assert '"Authorization": "Bearer rcc-redacted-' in r.stdout
    # the searches work: they find the placeholder in /proc and in the marker file written before
    assert int(lines["PLACEHOLDERSEEN"]) >= 1 and "/tmp/ph-marker" in lines["PHFILES"].split(","), r.stdout
    assert lines["FSHITS"] == "" and lines["PROCHITS"] == "" and lines["KEYS"] == "", r.stdout
    assert lines["BUNDLE"].startswith("/run/rcc/ca-bundle.pem ")
    # the session CA's directory is gone once the session has ended
    assert not list((world.home / ".local" / "state" / "rcc" / "credentials").glob("*"))
    # the audit log names the credential for the request, never the value
    audit = (world.home / ".local" / "state" / "rcc" / "audit.jsonl").read_text()
    recs = [json.loads(x) for x in audit.splitlines()]
    assert any(x["proto"] == "https" and x["rule"] == "credential:demo" and "GET /v1/x" in x["reason"] for x in recs)
    assert REAL not in audit and REAL not in r.stderr


def test_control_without_the_credential_the_variable_is_passed_as_is(
    world: World,
    testhost: TestHost,  # noqa: F811
    test_ca: TestCA,  # noqa: F811
) -> None:
    """Control: without [credentials], nothing is terminated: the sandbox talks TLS to the host itself (its own
    trust, here the test CA through --env) and the variable (passed through) is what the host receives."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    Echo.seen = []
    testhost.serve_http(port=443, tls=test_ca.server_context([HOST]), handler=Echo)
    ca = world.write(world.base / "test-ca.pem", Path(test_ca.cert).read_text())
    script = f'curl -sS --max-time 20 --cacert {ca} -H "Authorization: Bearer $DEMO_TOKEN" https://{HOST}/v1/x'
    r = world.rcc(
        "run", "--resolve", f"{HOST}={testhost.address}", "--allow", HOST, "--env", "DEMO_TOKEN", "--ro", str(ca),
        "--", "sh", "-c", script, env={"DEMO_TOKEN": "plain-value"}, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Echo.seen and Echo.seen[-1].get("Authorization") == "Bearer plain-value"
