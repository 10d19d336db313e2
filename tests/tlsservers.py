"""Servers that want a credential, over real TLS, for real clients (issue 15: credentials the agent uses but never
holds). Each one runs on a test host (tests/testhosts.py: `host.serve_http(tls=ca.server_context([...]),
handler=...)`) and records every request it receives in a `Seen`, in the test process's memory only: nothing a
sandbox could read ever holds a real token because of these servers.

    sites = TlsSites(TestCA(tmp))                        # or the `tls_sites` fixture
    seen = Seen()
    git   = git_http_handler(repos_dir, TOKEN, seen)     # git smart HTTP (git http-backend), HTTP basic auth
    pypi  = pypi_handler(build_wheel(tmp), TOKEN, seen)  # PEP 503 simple index, HTTP basic auth (pip's __token__)
    npm   = npm_handler(build_npm_tarball(), TOKEN, seen) # npm registry, Bearer token (.npmrc _authToken)
    other = recorder_handler(seen)                       # any request: 200, recorded (where a placeholder may go)
    host = sites.serve("github.test", git)               # its own test host, https://github.test:443
    sites.resolve                                        # {"github.test": "10.200.x.2", ...} for --resolve

Invariants:
1. A server that wants a credential answers 401 (with a Basic challenge where the real service sends one) unless
   the request carries exactly its token; it records the request first, so a test sees what a rejected client sent.
2. Records keep the headers as received (`Request.header`, `Request.basic_password`); tests compare them with the
   real value and the placeholder. The fake Anthropic API (tests/agents/fake_anthropic.py) runs in a separate
   process and logs only SHA-256 digests of the key headers, since its log is a file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rcctest import is_root, require
from testhosts import TestCA, TestHost, test_host

PKG = "rcc-probe-pkg"
PKG_MESSAGE = "installed through the rcc proxy"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str:
        """The value of header `name` (case-insensitive), "" when absent; repeated headers are joined by ", "."""
        return ", ".join(v for k, v in self.headers if k.lower() == name.lower())

    @property
    def host(self) -> str:
        return self.header("Host")

    def basic_password(self) -> str | None:
        """The password of `Authorization: Basic ...`, None without one."""
        kind, _, b64 = self.header("Authorization").partition(" ")
        if kind.lower() != "basic":
            return None
        try:
            _user, sep, password = base64.b64decode(b64.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password if sep else None

    def bearer(self) -> str | None:
        kind, _, token = self.header("Authorization").partition(" ")
        return token.strip() if kind.lower() == "bearer" else None


@dataclass
class Seen:
    """Every request the servers sharing this object received, in order."""

    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, r: Request) -> None:
        with self.lock:
            self.requests.append(r)

    def all(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def contains(self, value: str) -> bool:
        """Whether `value` appeared anywhere in a received request line or header (base64 of basic auth decoded)."""
        for r in self.all():
            if value in r.path or any(value in v for _, v in r.headers) or value == r.basic_password():
                return True
        return False


class _Recording(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: Seen

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def record(self) -> Request:
        r = Request(self.command, self.path, tuple((k, v) for k, v in self.headers.items()))
        self.seen.add(r)
        return r

    def body(self) -> bytes:
        """The request body, from Content-Length or chunked transfer coding (git sends large pushes chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self, status: int, ctype: str, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def unauthorized(self, challenge: bool = True) -> None:
        extra = {"WWW-Authenticate": 'Basic realm="rcc test"'} if challenge else {}
        self.answer(401, "text/plain", b"bad credentials\n", extra)


# --------------------------------------------------------------------------------------------------- git


def git_http_handler(root: str | os.PathLike[str], token: str, seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    """git's smart HTTP protocol for the bare repositories under `root`, through the real `git http-backend` (CGI),
    behind HTTP basic auth like github.com: any user name, the password must be `token`. Fetch and push both need
    it (push works because the backend sees REMOTE_USER)."""
    project_root = str(root)

    class GitHttp(_Recording):
        def handle_git(self) -> None:
            req = self.record()
            body = self.body() if self.command == "POST" else b""
            if req.basic_password() != token:
                self.unauthorized()
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": project_root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": project_root,
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "rcc-test",
                "REMOTE_ADDR": str(self.client_address[0]),
            }
            if enc := self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = enc
            if proto := self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = proto
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
            head, sep, payload = out.stdout.partition(b"\r\n\r\n")
            if not sep:
                head, sep, payload = out.stdout.partition(b"\n\n")
            status, headers = 200, {}
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.split()[0])
                elif k.lower() != "content-length":
                    headers[k.strip()] = v.strip()
            if not sep:
                status, headers, payload = 500, {}, out.stderr
            ctype = headers.pop("Content-Type", "text/plain")
            self.answer(status, ctype, payload, headers)

        do_GET = handle_git
        do_POST = handle_git

    GitHttp.seen = seen
    return GitHttp


def make_bare_repo(root: Path, name: str, content: str) -> Path:
    """A bare repository `root/name` with one commit on main (README with `content`)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    work = root / f"{name}.work"
    bare = root / name

    def git(*args: str) -> None:
        subprocess.run(["git", *args], check=True, env=env, capture_output=True)

    git("init", "-q", "-b", "main", str(work))
    (work / "README").write_text(content)
    git("-C", str(work), "add", "README")
    git("-C", str(work), "commit", "-qm", "init")
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def branch_head(bare: Path, branch: str = "main") -> str:
    """The commit `branch` points at in bare repository `bare`, "" when it does not exist."""
    r = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(bare)},
    )
    return r.stdout.strip()


# -------------------------------------------------------------------------------------------------- pip


def build_wheel(dest: Path) -> Path:
    """A minimal valid wheel (PEP 427) for `rcc-probe-pkg` 0.1, built by hand with zipfile."""
    name = "rcc_probe_pkg-0.1-py3-none-any.whl"
    files = {
        "rcc_probe_pkg/__init__.py": f"MESSAGE = {PKG_MESSAGE!r}\n".encode(),
        "rcc_probe_pkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: rcc-probe-pkg\nVersion: 0.1\n",
        "rcc_probe_pkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("rcc_probe_pkg-0.1.dist-info/RECORD,,")
    files["rcc_probe_pkg-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    out = dest / name
    with zipfile.ZipFile(out, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return out


def simple_index_routes(wheel: Path) -> dict[str, tuple[str, bytes]]:
    """The PEP 503 pages serving `wheel`: {path: (content type, body)}."""
    data = wheel.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    index = f'<!DOCTYPE html><html><body><a href="/packages/{wheel.name}#sha256={sha}">{wheel.name}</a></body></html>'
    return {
        f"/simple/{PKG}/": ("text/html", index.encode()),
        f"/packages/{wheel.name}": ("application/octet-stream", data),
    }


def _routes_with_auth(
    routes: Any, seen: Seen, authorized: Any, challenge: bool
) -> type[http.server.BaseHTTPRequestHandler]:
    """`routes`: {path: (content type, body)}, or a function of the request's Host giving them."""

    class Routes(_Recording):
        def do_GET(self) -> None:
            req = self.record()
            if not authorized(req):
                self.unauthorized(challenge)
                return
            path = self.path.split("?", 1)[0]
            table = routes(req.host) if callable(routes) else routes
            if path not in table:
                self.answer(404, "text/plain", b"not found\n")
                return
            ctype, body = table[path]
            self.answer(200, ctype, body)

        do_HEAD = do_GET

    Routes.seen = seen
    return Routes


def pypi_handler(wheel: Path, token: str, seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    """A private package index: HTTP basic auth with password `token` (pip: https://__token__:TOKEN@host/simple/)."""
    return _routes_with_auth(simple_index_routes(wheel), seen, lambda r: r.basic_password() == token, True)


# -------------------------------------------------------------------------------------------------- npm


def build_npm_tarball() -> bytes:
    buf = io.BytesIO()
    files = {
        "package/package.json": json.dumps({"name": PKG, "version": "1.0.0", "main": "index.js"}).encode(),
        "package/index.js": f"module.exports = {PKG_MESSAGE!r};\n".encode(),
    }
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def npm_routes(tgz: bytes, base_url: str) -> dict[str, tuple[str, bytes]]:
    """The packument and tarball of `rcc-probe-pkg` 1.0.0 for a registry at `base_url` (no trailing slash)."""
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    tar_path = f"/{PKG}/-/{PKG}-1.0.0.tgz"
    packument = {
        "name": PKG,
        "dist-tags": {"latest": "1.0.0"},
        "versions": {
            "1.0.0": {
                "name": PKG,
                "version": "1.0.0",
                "dist": {
                    "tarball": base_url + tar_path,
                    "integrity": integrity,
                    "shasum": hashlib.sha1(tgz).hexdigest(),
                },
            }
        },
    }
    return {
        f"/{PKG}": ("application/json", json.dumps(packument).encode()),
        tar_path: ("application/octet-stream", tgz),
    }


def npm_handler(tgz: bytes, token: str, seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    """A private npm registry: `Authorization: Bearer TOKEN` on every request (.npmrc `//host/:_authToken=TOKEN`).
    Tarball URLs name the host the request named (https://HOST/...), as a registry behind its own name does."""
    return _routes_with_auth(
        lambda host: npm_routes(tgz, f"https://{host}"), seen, lambda r: r.bearer() == token, False
    )


# ------------------------------------------------------------------------------------------------ other


def recorder_handler(seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    """Any method, any path: 200 "recorded". The allowed host that holds no credential, where an agent might send
    what it believes is a token."""

    class Recorder(_Recording):
        def record_any(self) -> None:
            self.record()
            self.body()
            self.answer(200, "text/plain", b"recorded\n")

        do_GET = do_POST = do_PUT = do_HEAD = record_any

    Recorder.seen = seen
    return Recorder


# ------------------------------------------------------------------------------------------------ sites


@dataclass
class TlsSites:
    """HTTPS sites, each on its own test host at port 443 with a certificate from `ca` for its name and address."""

    ca: TestCA
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    hosts: dict[str, TestHost] = field(default_factory=dict)

    def add_host(self, name: str) -> TestHost:
        """A test host for `name`, serving nothing yet (a test starts its own server process on it)."""
        host = self.stack.enter_context(test_host())
        self.hosts[name] = host
        return host

    def serve(self, name: str, handler: type[http.server.BaseHTTPRequestHandler]) -> TestHost:
        host = self.add_host(name)
        host.serve_http(port=443, tls=self.ca.server_context([name, host.address]), handler=handler)
        return host

    @property
    def resolve(self) -> dict[str, str]:
        return {name: h.address for name, h in self.hosts.items()}

    def close(self) -> None:
        self.stack.close()


@pytest.fixture
def tls_sites(tmp_path: Path) -> Iterator[TlsSites]:
    require(is_root(), "test hosts need root (ip netns add, veth)")
    sites = TlsSites(TestCA(tmp_path / "ca"))
    try:
        yield sites
    finally:
        sites.close()
