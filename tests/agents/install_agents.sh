#!/bin/sh
# Install the real agent CLIs the agent tests run, at pinned versions, into a cacheable npm prefix.
# Idempotent: does nothing when the pinned versions are already there (CI caches $RCC_AGENT_PREFIX).
#   usage: tests/agents/install_agents.sh [PREFIX]     (default /var/cache/rcc-test/npm)
# The tests find the agents through RCC_TEST_AGENT_PREFIX (same default).
# Needs: node >= 18 and npm (Debian: apt-get install -y nodejs npm). Claude Code itself is a native binary.
set -eu

PREFIX="${1:-${RCC_TEST_AGENT_PREFIX:-/var/cache/rcc-test/npm}}"
CLAUDE_VERSION="2.1.332"
CODEX_VERSION="0.171.0"
GEMINI_VERSION="0.61.0"

installed() { # package version -> true when PREFIX has exactly that version
    f="$PREFIX/node_modules/$1/package.json"
    [ -f "$f" ] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' "$f" "$2"
}

want=""
installed @anthropic-ai/claude-code "$CLAUDE_VERSION" || want="$want @anthropic-ai/claude-code@$CLAUDE_VERSION"
installed @openai/codex "$CODEX_VERSION" || want="$want @openai/codex@$CODEX_VERSION"
installed @google/gemini-cli "$GEMINI_VERSION" || want="$want @google/gemini-cli@$GEMINI_VERSION"

if [ -n "$want" ]; then
    mkdir -p "$PREFIX"
    echo "installing:$want" >&2
    # All three in one command, so npm keeps every one of them in the prefix.
    npm install --prefix "$PREFIX" --no-audit --no-fund \
        @anthropic-ai/claude-code@"$CLAUDE_VERSION" @openai/codex@"$CODEX_VERSION" @google/gemini-cli@"$GEMINI_VERSION"
fi
# Readable and runnable by the unprivileged test user too.
chmod -R a+rX "$PREFIX"
"$PREFIX/node_modules/.bin/claude" --version
"$PREFIX/node_modules/.bin/codex" --version
"$PREFIX/node_modules/.bin/gemini" --version
