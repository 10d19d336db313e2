"""The server side of a terminated connection: TLS from the sandbox, requests judged and rewritten, TLS upstream.

Only proxy.py calls this (after the flow said Terminate: CONNECT host == SNI == a credential host, addresses
checked, TCP upstream connected). Imported only when the session has credentials (it needs sessionca, hence
`cryptography`).

    sandbox --TLS (leaf cert of the session CA)--> rcc --TLS (the real server, verified)--> upstream
               requests: RequestReader -> judge_request (Host of EVERY request) -> inject -> upstream
               responses: streamed back as they arrive (Redactor: an echoed real value becomes its placeholder)

Invariants:
1. No request byte goes upstream before its head was judged; a refused request ends the connection: nothing of
   it is sent, earlier responses still in flight get GRACE seconds, then the client gets rcc's 403 (X-Rcc-Denied)
   and both sides are closed.
2. A client that refuses rcc's certificate (pinning, or not trusting the session CA) is reported naming the
   credential and the host (`notify` and the result), never silently retried as a tunnel.
3. Messages and audit records carry names, hosts, methods and paths, never a real value.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from rcc.net import http_rewrite
from rcc.net.credentials import CredentialSet, judge_request, request_line_for_audit
from rcc.net.http1 import bad_gateway, denied
from rcc.net.sessionca import SessionCA, upstream_context

READ = 256 * 1024
GRACE = 2.0  # seconds the responses of requests already sent may take once no more requests will come


@dataclass
class Outcome:
    refused: str = ""  # a policy refusal (wrong Host, SNI, malformed request): audited as deny
    error: str = ""  # a failure (TLS to either side, upstream verification)
    up: int = 0
    down: int = 0
    requests: int = 0


# (method and path, credential names injected) for each request sent upstream
OnRequest = Callable[[str, tuple[str, ...]], None]


class Terminator:
    """The session's terminating side: the CA's leaf contexts, the upstream context, the credentials."""

    def __init__(
        self,
        ca: SessionCA,
        creds: CredentialSet,
        upstream: ssl.SSLContext | None = None,
        handshake_timeout: float = 15.0,
    ) -> None:
        self.ca = ca
        self.creds = creds
        self.upstream = upstream if upstream is not None else upstream_context()
        self.handshake_timeout = handshake_timeout

    def hosts(self) -> frozenset[str]:
        return self.creds.hosts()

    async def serve(
        self,
        *,
        client: socket.socket,
        upstream: socket.socket,
        host: str,
        port: int,
        on_request: OnRequest,
        notify: Callable[[str], None],
        idle_timeout: float = 900.0,
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        out = Outcome()
        names = ", ".join(self.creds.names_for(host))
        # TLS with the sandbox first: the leaf for the CONNECT host (SNI was checked equal to it by the flow)
        creader = asyncio.StreamReader(limit=READ)
        cproto = asyncio.StreamReaderProtocol(creader)
        try:
            ctransport, _ = await loop.connect_accepted_socket(
                lambda: cproto,
                sock=client,
                ssl=self.ca.server_context(host),
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as e:
            why = _tls_reason(e)
            notify(
                f"rcc: credential {names}: the client refused rcc's certificate for {host} ({why}); a client that "
                "pins certificates or ignores SSL_CERT_FILE cannot use a credential rcc injects"
            )
            out.error = f"client refused rcc's certificate for {host} (credential {names}): {why}"
            return out
        cwriter = asyncio.StreamWriter(ctransport, cproto, creader, loop)
        try:
            try:
                ureader, uwriter = await asyncio.wait_for(
                    asyncio.open_connection(
                        sock=upstream, ssl=self.upstream, server_hostname=host, limit=READ, ssl_handshake_timeout=None
                    ),
                    self.handshake_timeout,
                )
            except (ssl.SSLError, OSError, TimeoutError) as e:
                why = _tls_reason(e)
                out.error = f"TLS to {host} failed: {why}"
                notify(f"rcc: credential {names}: TLS to {host}:{port} failed ({why}); nothing was sent")
                cwriter.write(bad_gateway(f"TLS to {host}:{port} failed ({why}); the credential was not sent"))
                with contextlib.suppress(OSError, ssl.SSLError):
                    await cwriter.drain()
                return out
            try:
                await self._pump(
                    creader=creader,
                    cwriter=cwriter,
                    ureader=ureader,
                    uwriter=uwriter,
                    host=host,
                    port=port,
                    on_request=on_request,
                    idle_timeout=idle_timeout,
                    out=out,
                )
            finally:
                uwriter.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(uwriter.wait_closed(), 2)
        finally:
            cwriter.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cwriter.wait_closed(), 2)
        if out.refused:  # the flow audits it and tells the user (a denial notice)
            out.refused = f"{out.refused} (a connection of credential {names})"
        return out

    async def _pump(
        self,
        *,
        creader: asyncio.StreamReader,
        cwriter: asyncio.StreamWriter,
        ureader: asyncio.StreamReader,
        uwriter: asyncio.StreamWriter,
        host: str,
        port: int,
        on_request: OnRequest,
        idle_timeout: float,
        out: Outcome,
    ) -> None:
        swaps = self.creds.swaps_for(host)

        async def requests() -> None:
            reader = http_rewrite.RequestReader()
            while True:
                data = await asyncio.wait_for(creader.read(READ), idle_timeout)
                if not data:
                    return
                for ev in reader.feed(data):
                    if isinstance(ev, http_rewrite.Error):
                        out.refused = ev.reason
                        return
                    if isinstance(ev, http_rewrite.Head):
                        why = judge_request(ev, host, port) or self.creds.judge_rules(ev, host)
                        if why:
                            out.refused = why
                            return
                        new, used = http_rewrite.inject(ev, swaps)
                        raw = http_rewrite.render(new)
                        on_request(request_line_for_audit(ev), used)
                        out.requests += 1
                    else:
                        raw = ev.data
                    uwriter.write(raw)
                    out.up += len(raw)
                await uwriter.drain()

        async def responses() -> None:
            red = http_rewrite.Redactor(self.creds.redactions())
            while True:
                data = await asyncio.wait_for(ureader.read(READ), idle_timeout)
                if not data:
                    rest = red.flush()
                    if rest:
                        cwriter.write(rest)
                        out.down += len(rest)
                        await cwriter.drain()
                    return
                data = red.feed(data)
                if data:
                    cwriter.write(data)
                    out.down += len(data)
                    await cwriter.drain()

        up = asyncio.ensure_future(requests())
        down = asyncio.ensure_future(responses())
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if down in done and not up.done():
                up.cancel()  # the server closed: nothing more can be answered
            elif up in done and not down.done():
                # A refused request (nothing of it went upstream) or the client closed its side: the responses to
                # the requests already sent may still be on their way; give them a bounded grace, then close.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(down), GRACE)
            if out.refused:  # after the answers already on their way: rcc's 403 for the refused request
                down.cancel()
                await asyncio.gather(down, return_exceptions=True)
                cwriter.write(denied(out.refused, host, port))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(cwriter.drain(), GRACE)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)


def _tls_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {e.verify_message}"
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    if isinstance(e, TimeoutError):
        return "TLS handshake timed out"
    return str(e) or type(e).__name__
