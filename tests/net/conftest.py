"""Fixtures for the proxy tests: a real EgressProxy on 127.0.0.1, loopback origin servers, test hosts."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from proxyhelpers import RunningProxy, echo_handler, http_handler, serve

from rcc.net.proxy import EgressProxy
from rcc.net.rules import compile_rules
from testhosts import test_ca, testhost  # noqa: F401  (re-exported fixtures)


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def start(
        allow: Sequence[str] = (), deny: Sequence[str] = (), resolve: dict[str, str] | None = None, **kw: object
    ) -> RunningProxy:
        rules = compile_rules(list(allow), list(deny), resolve or {})
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1024)
        audit = tmp_path / f"audit{len(started)}.jsonl"
        rp = RunningProxy(None, lsock.getsockname()[1], audit)  # type: ignore[arg-type]

        async def recording_resolver(name: str, port: int) -> list[str]:
            import asyncio

            rp.resolved.append(name)
            infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
            return [str(i[4][0]) for i in infos]

        rp.proxy = EgressProxy(rules, str(audit), "test-session", rp.notes.append, resolver=recording_resolver, **kw)  # type: ignore[arg-type]
        rp.proxy.start([lsock])
        started.append(rp)
        return rp

    yield start
    for rp in started:
        rp.proxy.close()


@pytest.fixture
def echo_server() -> Iterator[int]:
    lsock, port = serve(echo_handler)
    yield port
    lsock.close()


@pytest.fixture
def http_origin() -> Iterator[int]:
    lsock, port = serve(http_handler)
    yield port
    lsock.close()
