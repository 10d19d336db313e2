"""The environment that points tools inside the sandbox at the egress proxy. Pure.

What honours what (checked with the versions in docs/network.md):
- curl, git (libcurl), pip (requests), npm, Python urllib, Go, Rust/cargo, Deno, Claude Code: HTTPS_PROXY /
  HTTP_PROXY / NO_PROXY (lower- or upper-case; curl reads only lower-case http_proxy, so both are set).
- ALL_PROXY=socks5h://... for tools that only speak SOCKS (the same port serves both protocols).
- npm also reads npm_config_proxy / npm_config_https_proxy (set explicitly so a user .npmrc cannot be needed).
- Node's built-in fetch() honours the variables only with NODE_USE_ENV_PROXY=1 (Node >= 24, 22.21);
  Node 20 ignores them, so plain `fetch()` there gets no network (fails closed, never bypasses the proxy).
NO_PROXY holds loopback only: nothing else is reachable without the proxy anyway.
"""

from __future__ import annotations

NO_PROXY = "localhost,127.0.0.1,::1"


def proxy_env(port: int) -> dict[str, str]:
    http = f"http://127.0.0.1:{port}"
    socks = f"socks5h://127.0.0.1:{port}"
    env = {
        "HTTP_PROXY": http,
        "HTTPS_PROXY": http,
        "ALL_PROXY": socks,
        "NO_PROXY": NO_PROXY,
    }
    env.update({k.lower(): v for k, v in env.items()})
    env.update(
        {
            "npm_config_proxy": http,
            "npm_config_https_proxy": http,
            "npm_config_noproxy": NO_PROXY,
            "NODE_USE_ENV_PROXY": "1",
            "CARGO_HTTP_PROXY": http,
        }
    )
    return env
