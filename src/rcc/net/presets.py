"""The named host presets of the rule syntax (`@npm`, `@anthropic`, ...): data only, so that the agent profiles
can name them without importing the rule parser (rcc.net.rules) on `rcc claude`'s start-up path."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Named presets. Explicit hosts, no wildcards over shared-hosting domains (anyone can publish there).
PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # The one list of Claude's hosts: the claude agent profile allows exactly this preset (rcc.agents.profiles
        # says why each host is needed). The browser part of /login (claude.ai) runs on the host, never here.
        "anthropic": ("api.anthropic.com", "platform.claude.com"),
        "openai": ("api.openai.com", "auth.openai.com", "chatgpt.com"),
        "gemini": ("generativelanguage.googleapis.com", "oauth2.googleapis.com", "cloudcode-pa.googleapis.com"),
        "npm": ("registry.npmjs.org", "registry.yarnpkg.com"),
        "pypi": ("pypi.org", "files.pythonhosted.org"),
        "github": (
            "github.com",
            "api.github.com",
            "codeload.github.com",
            "objects.githubusercontent.com",
            "raw.githubusercontent.com",
            "release-assets.githubusercontent.com",
        ),
        "crates": ("crates.io", "index.crates.io", "static.crates.io"),
        "go": ("proxy.golang.org", "sum.golang.org"),
        "rubygems": ("rubygems.org", "index.rubygems.org"),
    }
)
