#!/usr/bin/env bash
# Installs the tools rcc is compared against (not needed for the test suite):
# Anthropic's sandbox-runtime (`srt`, npm @anthropic-ai/sandbox-runtime) and what it needs on Linux.
set -euo pipefail
prefix=${RCC_BENCH_PREFIX:-/var/cache/rcc-bench}
command -v rg >/dev/null && command -v socat >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ripgrep socat bubblewrap >/dev/null; }
[ -x "$prefix/node_modules/.bin/srt" ] || npm install --silent --prefix "$prefix" @anthropic-ai/sandbox-runtime
echo "srt: $prefix/node_modules/.bin/srt ($(npm ls --prefix "$prefix" --depth 0 2>/dev/null | grep sandbox-runtime))"
