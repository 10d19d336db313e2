"""Credentials through the real proxy over loopback: TLS terminated for a credential host with a real session CA,
placeholders swapped for the real value in the headers that reach a real TLS origin (test CA), and the attacks
that try to carry the value elsewhere. Each attack test has its control beside it.

The origin is `api.cred.test` (network.resolve -> 127.0.0.1, with 127.0.0.1:<port> allowed, as the other loopback
tests do); it answers every request with the request head it received, so a test sees exactly what went upstream.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from proxyhelpers import RunningProxy

from rcc.net.credentials import Credential, CredentialSet, new_placeholder
from rcc.net.sessionca import SessionCA, upstream_context
from rcc.net.terminate import Terminator
from testhosts import TestCA

HOST = "api.cred.test"
OTHER = "other.cred.test"
REAL = "sk-real-secret-0123456789abcdef"
CredProxy = tuple[RunningProxy, str, str]


class Origin:
    """A TLS origin on 127.0.0.1 that answers each request with the head it got (keep-alive, pipelining)."""

    def __init__(self, ca: TestCA, names: list[str]) -> None:
        self.ctx = ca.server_context(names)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            c = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        d = c.recv(65536)
                    except (ssl.SSLError, OSError):
                        return
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                self.heads.append(head)
                out = head + b"\r\n\r\n" + body
                try:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def origin(test_ca: TestCA) -> Iterator[Origin]:
    o = Origin(test_ca, [HOST, OTHER])
    yield o
    o.close()


@pytest.fixture
def cred_proxy(
    start_proxy: Callable[..., RunningProxy], origin: Origin, test_ca: TestCA, tmp_path: Path
) -> tuple[RunningProxy, str, str]:
    """(proxy, placeholder, the session CA's cert file) with `anthropic` for HOST; OTHER allowed, no credential."""
    ph = new_placeholder("anthropic")
    ca = SessionCA.create("test")
    creds = CredentialSet([Credential("anthropic", "ANTHROPIC_API_KEY", (HOST,), ph, REAL)])
    term = Terminator(ca, creds, upstream=upstream_context(test_ca.cert))
    rp = start_proxy(
        allow=[f"{HOST}:{origin.port}", f"{OTHER}:{origin.port}", f"127.0.0.1:{origin.port}"],
        resolve={HOST: "127.0.0.1", OTHER: "127.0.0.1"},
        terminator=term,
    )
    bundle = tmp_path / "session-ca.pem"
    bundle.write_bytes(ca.cert_pem())
    return rp, ph, str(bundle)


def tunnel(rp: RunningProxy, host: str, port: int, cafile: str, sni: str | None = None) -> ssl.SSLSocket:
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=10)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        d = s.recv(1)
        assert d, head
        head += d
    assert head.startswith(b"HTTP/1.1 200"), head
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # rcc must pick http/1.1: the one protocol it reads
    ctx.check_hostname = sni is None
    return ctx.wrap_socket(s, server_hostname=sni or host)


def read_responses(s: ssl.SSLSocket, n: int = 1) -> list[bytes]:
    """`n` responses (each with a Content-Length), read with one buffer: pipelined answers may share a read."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return [*out, buf]
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            d = s.recv(65536)
            if not d:
                break
            rest += d
        out.append(head + b"\r\n\r\n" + rest[:length])
        buf = rest[length:]
    return out


def read_response(s: ssl.SSLSocket) -> bytes:
    return read_responses(s, 1)[0]


def req(host: str, port: int, *headers: str, method: str = "GET", path: str = "/v1/messages") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------------------------------------------------------------ the swap


def test_placeholder_swapped_for_the_real_value_in_headers(cred_proxy: CredProxy, origin: Origin) -> None:
    rp, ph, cafile = cred_proxy
    with tunnel(rp, HOST, origin.port, cafile) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(req(HOST, origin.port, f"x-api-key: {ph}", f"Authorization: Bearer {ph}"))
        out = read_response(s)
    assert out.startswith(b"HTTP/1.1 200")
    got = origin.heads[-1]
    assert f"x-api-key: {REAL}".encode() in got and f"Authorization: Bearer {REAL}".encode() in got
    assert ph.encode() not in got
    # the origin echoed the real value back: the sandbox sees a mask of the same length instead
    assert REAL.encode() not in out and b"rcc-redacted-" in out
    recs = rp.records(2)
    inj = [r for r in recs if r["proto"] == "https"]
    assert inj and inj[0]["rule"] == "credential:anthropic" and "GET /v1/messages" in str(inj[0]["reason"])
    assert all(REAL not in str(r) for r in recs)
    conn = [r for r in recs if r["proto"] == "connect"]
    assert conn and conn[0]["decision"] == "allow" and "TLS terminated" in str(conn[0]["reason"])


def test_basic_auth_placeholder_swapped_as_git_sends_it(cred_proxy: CredProxy, origin: Origin) -> None:
    rp, ph, cafile = cred_proxy
    basic = base64.b64encode(f"x-access-token:{ph}".encode()).decode()
    with tunnel(rp, HOST, origin.port, cafile) as s:
        s.sendall(req(HOST, origin.port, f"Authorization: Basic {basic}"))
        read_response(s)
    got = origin.heads[-1]
    want = base64.b64encode(f"x-access-token:{REAL}".encode())
    assert b"Authorization: Basic " + want in got


def test_keepalive_and_pipelined_requests_each_swapped(cred_proxy: CredProxy, origin: Origin) -> None:
    rp, ph, cafile = cred_proxy
    with tunnel(rp, HOST, origin.port, cafile) as s:
        body = b'{"a": 1}'
        post = req(HOST, origin.port, f"x-api-key: {ph}", f"Content-Length: {len(body)}", method="POST") + body
        s.sendall(post + req(HOST, origin.port, f"x-api-key: {ph}", path="/second"))
        a, b = read_responses(s, 2)
    assert a.startswith(b"HTTP/1.1 200") and b.startswith(b"HTTP/1.1 200")
    assert a.endswith(body)
    assert [h.split(b"\r\n")[0] for h in origin.heads[-2:]] == [b"POST /v1/messages HTTP/1.1", b"GET /second HTTP/1.1"]
    assert all(f"x-api-key: {REAL}".encode() in h for h in origin.heads[-2:])


def test_curl_through_the_proxy_gets_the_value_injected(cred_proxy: CredProxy, origin: Origin) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    rp, ph, cafile = cred_proxy
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--proxy", rp.url, "--cacert", cafile, "-H", f"x-api-key: {ph}",
         f"https://{HOST}:{origin.port}/v1/models"],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"x-api-key: {REAL}".encode() in origin.heads[-1]
    assert REAL not in r.stdout and "x-api-key: rcc-redacted-" in r.stdout


# ------------------------------------------------------------------------------------------------ attacks


def test_placeholder_sent_to_another_allowed_host_arrives_as_placeholder(
    cred_proxy: CredProxy, origin: Origin, test_ca: TestCA
) -> None:
    rp, ph, _cafile = cred_proxy
    # OTHER is allowed but has no credential: a plain tunnel, its real certificate (the test CA's), no swap
    with tunnel(rp, OTHER, origin.port, test_ca.cert) as s:
        s.sendall(req(OTHER, origin.port, f"x-api-key: {ph}"))
        read_response(s)
    got = origin.heads[-1]
    assert f"x-api-key: {ph}".encode() in got and REAL.encode() not in got


def test_second_request_with_another_host_in_a_terminated_connection_refused(
    cred_proxy: CredProxy, origin: Origin
) -> None:
    rp, ph, cafile = cred_proxy
    with tunnel(rp, HOST, origin.port, cafile) as s:
        smuggled = req(OTHER, origin.port, f"x-api-key: {ph}", path="/smuggled")
        s.sendall(req(HOST, origin.port, f"x-api-key: {ph}") + smuggled)
        first = read_response(s)
        with contextlib.suppress(ssl.SSLError, OSError):
            while s.recv(65536):
                pass
    assert first.startswith(b"HTTP/1.1 200")  # control: the first request went through, swapped
    assert not any(b"/smuggled" in h for h in origin.heads), "the smuggled request reached the origin"
    recs = rp.records(2)
    denied = [r for r in recs if r["decision"] == "deny"]
    assert denied and "is not api.cred.test" in str(denied[0]["reason"])
    assert any("refused" in n or "deny" in n or "denied" in n for n in rp.notes), rp.notes


def test_host_header_of_another_host_refused(cred_proxy: CredProxy, origin: Origin) -> None:
    rp, ph, cafile = cred_proxy
    with tunnel(rp, HOST, origin.port, cafile) as s:
        s.sendall(req(OTHER, origin.port, f"x-api-key: {ph}"))
        got = b""
        with contextlib.suppress(ssl.SSLError, OSError):
            while d := s.recv(65536):
                got += d
    assert got.startswith(b"HTTP/1.1 403") and b"X-Rcc-Denied:" in got, got  # rcc's refusal, readable
    assert not origin.heads


def test_request_rules_judge_every_request_of_a_keepalive_connection(
    start_proxy: Callable[..., RunningProxy], origin: Origin, test_ca: TestCA
) -> None:
    """`requests = ["HOST GET,POST /repos/me/*"]`: a matching request gets the value (control); the next request
    on the same connection, to another path, is refused with rcc's 403 and never reaches the origin."""
    ph = new_placeholder("github")
    rule = f"{HOST} GET,POST /repos/me/*"
    creds = CredentialSet([Credential("github", "GITHUB_TOKEN", (HOST,), ph, REAL, (rule,))])
    term = Terminator(SessionCA.create("t"), creds, upstream=upstream_context(test_ca.cert))
    rp = start_proxy(
        allow=[f"{HOST}:{origin.port}", f"127.0.0.1:{origin.port}"], resolve={HOST: "127.0.0.1"}, terminator=term
    )
    cafile = Path(test_ca.dir) / "session-ca.pem"
    cafile.write_bytes(term.ca.cert_pem())
    with tunnel(rp, HOST, origin.port, str(cafile)) as s:
        s.sendall(req(HOST, origin.port, f"Authorization: Bearer {ph}", path="/repos/me/x?page=2"))
        ok = read_response(s)
        s.sendall(req(HOST, origin.port, f"Authorization: Bearer {ph}", method="DELETE", path="/repos/me/x"))
        refused = b""
        with contextlib.suppress(ssl.SSLError, OSError):
            while d := s.recv(65536):
                refused += d
    assert ok.startswith(b"HTTP/1.1 200") and f"Bearer {REAL}".encode() in origin.heads[0]
    assert refused.startswith(b"HTTP/1.1 403") and b"matches no request rule" in refused
    assert len(origin.heads) == 1
    recs = rp.records(2)
    why = "DELETE /repos/me/x matches no request rule"
    assert any(r["decision"] == "deny" and why in str(r["reason"]) for r in recs)


def test_connect_to_credential_host_with_sni_of_another_refused(cred_proxy: CredProxy, origin: Origin) -> None:
    rp, _ph, cafile = cred_proxy
    with pytest.raises((ssl.SSLError, OSError)):
        tunnel(rp, HOST, origin.port, cafile, sni=OTHER)
    recs = rp.records(1)
    assert recs[0]["decision"] == "deny" and "is not the credential host" in str(recs[0]["reason"])
    assert not origin.heads


def test_plain_http_to_credential_host_never_swapped(start_proxy: Callable[..., RunningProxy], test_ca: TestCA) -> None:
    """Downgrade: the same host over plain HTTP (a forward-proxy request) is relayed as is, placeholder and all."""
    got: list[bytes] = []
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]

    def one() -> None:
        c, _ = ls.accept()
        with c:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(65536)
            got.append(buf)
            c.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    threading.Thread(target=one, daemon=True).start()
    ph = new_placeholder("anthropic")
    creds = CredentialSet([Credential("anthropic", "ANTHROPIC_API_KEY", (HOST,), ph, REAL)])
    term = Terminator(SessionCA.create("t"), creds, upstream=upstream_context(test_ca.cert))
    rp = start_proxy(allow=[f"{HOST}:{port}", f"127.0.0.1:{port}"], resolve={HOST: "127.0.0.1"}, terminator=term)
    with socket.create_connection(("127.0.0.1", rp.port), timeout=10) as s:
        s.sendall(f"GET http://{HOST}:{port}/ HTTP/1.1\r\nHost: {HOST}:{port}\r\nx-api-key: {ph}\r\n\r\n".encode())
        reply = s.recv(65536)
    ls.close()
    assert reply.startswith(b"HTTP/1.1 204")
    assert got and f"x-api-key: {ph}".encode() in got[0] and REAL.encode() not in got[0]


@pytest.mark.parametrize("addr", ["127.0.0.1", "169.254.169.254"])
def test_credential_host_resolving_to_loopback_or_metadata_refused(
    start_proxy: Callable[..., RunningProxy], test_ca: TestCA, addr: str
) -> None:
    ph = new_placeholder("anthropic")
    creds = CredentialSet([Credential("anthropic", "ANTHROPIC_API_KEY", (HOST,), ph, REAL)])
    term = Terminator(SessionCA.create("t"), creds, upstream=upstream_context(test_ca.cert))
    rp = start_proxy(allow=[HOST], resolve={HOST: addr}, terminator=term)  # the host allowed, the address not
    with socket.create_connection(("127.0.0.1", rp.port), timeout=10) as s:
        s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 403"), reply
    recs = rp.records(1)
    assert recs[0]["decision"] == "deny" and recs[0]["addr"] == addr


def test_client_refusing_rccs_certificate_names_credential_and_host(
    cred_proxy: CredProxy, origin: Origin, test_ca: TestCA
) -> None:
    """A pinning client (here: one that trusts only the test CA, not the session CA) fails closed, and rcc says
    which credential and host."""
    rp, _ph, _cafile = cred_proxy
    with pytest.raises(ssl.SSLError):
        tunnel(rp, HOST, origin.port, test_ca.cert)
    recs = rp.records(1)
    assert recs[0]["decision"] == "error" and "anthropic" in str(recs[0]["reason"])
    assert any("credential anthropic" in n and HOST in n for n in rp.notes), rp.notes
    assert not origin.heads


def test_server_sent_events_pass_through_as_they_arrive(
    start_proxy: Callable[..., RunningProxy], test_ca: TestCA, tmp_path: Path
) -> None:
    """The origin sends the first event and waits until the client has it before sending the second: a proxy that
    buffered the response (to its end, or to a size) would deadlock here."""
    ctx = test_ca.server_context([HOST])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]
    got_first = threading.Event()

    def serve() -> None:
        raw, _ = ls.accept()
        with ctx.wrap_socket(raw, server_side=True) as c:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            ev = b"event: a\ndata: 1\n\n"
            c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            if got_first.wait(10):
                ev = b"event: b\ndata: 2\n\n"
                c.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))

    threading.Thread(target=serve, daemon=True).start()
    ph = new_placeholder("anthropic")
    term = Terminator(
        SessionCA.create("t"),
        CredentialSet([Credential("anthropic", "ANTHROPIC_API_KEY", (HOST,), ph, REAL)]),
        upstream=upstream_context(test_ca.cert),
    )
    rp = start_proxy(allow=[f"{HOST}:{port}", f"127.0.0.1:{port}"], resolve={HOST: "127.0.0.1"}, terminator=term)
    cafile = tmp_path / "sse-ca.pem"
    cafile.write_bytes(term.ca.cert_pem())
    with tunnel(rp, HOST, port, str(cafile)) as s:
        s.sendall(
            req(HOST, port, f"x-api-key: {ph}", method="POST", path="/v1/messages").replace(
                b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"
            )
        )
        buf = b""
        while b"data: 1" not in buf:
            d = s.recv(65536)
            assert d, buf
            buf += d
        got_first.set()
        while b"data: 2" not in buf:
            d = s.recv(65536)
            assert d, buf
            buf += d
    ls.close()


def test_upstream_certificate_that_does_not_verify_gets_nothing(
    start_proxy: Callable[..., RunningProxy], test_ca: TestCA, tmp_path: Path
) -> None:
    """The real server's certificate is checked against rcc's trust store: a server it does not trust (here: rcc
    trusts only another CA) never receives the request; the client gets 502 naming the host."""
    origin = Origin(test_ca, [HOST])
    other_ca = TestCA(tmp_path / "other-ca")
    ph = new_placeholder("anthropic")
    term = Terminator(
        SessionCA.create("t"),
        CredentialSet([Credential("anthropic", "ANTHROPIC_API_KEY", (HOST,), ph, REAL)]),
        upstream=upstream_context(other_ca.cert),
    )
    rp = start_proxy(
        allow=[f"{HOST}:{origin.port}", f"127.0.0.1:{origin.port}"], resolve={HOST: "127.0.0.1"}, terminator=term
    )
    cafile = tmp_path / "s-ca.pem"
    cafile.write_bytes(term.ca.cert_pem())
    with tunnel(rp, HOST, origin.port, str(cafile)) as s:
        s.sendall(req(HOST, origin.port, f"x-api-key: {ph}"))
        got = b""
        with contextlib.suppress(ssl.SSLError, OSError):
            while d := s.recv(65536):
                got += d
    origin.close()
    assert got.startswith(b"HTTP/1.1 502") and HOST.encode() in got and b"certificate verify failed" in got
    assert not origin.heads
    rec = rp.records(1)[0]
    assert rec["decision"] == "error" and "certificate verify failed" in str(rec["reason"])


def test_not_tls_to_a_credential_host_is_an_ordinary_tunnel(
    start_proxy: Callable[..., RunningProxy], echo_server: int, test_ca: TestCA
) -> None:
    """ssh-like traffic to a credential host (github.com:22): relayed untouched, the placeholder in it stays the
    placeholder (nothing is injected outside terminated TLS)."""
    ph = new_placeholder("github")
    term = Terminator(
        SessionCA.create("t"),
        CredentialSet([Credential("github", "GITHUB_TOKEN", (HOST,), ph, REAL)]),
        upstream=upstream_context(test_ca.cert),
    )
    rp = start_proxy(
        allow=[f"{HOST}:{echo_server}", f"127.0.0.1:{echo_server}"], resolve={HOST: "127.0.0.1"}, terminator=term
    )
    s = socket.create_connection(("127.0.0.1", rp.port), timeout=10)
    with s:
        s.sendall(f"CONNECT {HOST}:{echo_server} HTTP/1.1\r\nHost: {HOST}:{echo_server}\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        line = f"SSH-2.0-test {ph}\r\n".encode()
        s.sendall(line)
        got = b""
        while len(got) < len(line):
            d = s.recv(65536)
            assert d
            got += d
    assert got == line  # echoed as sent: the placeholder, never the value
