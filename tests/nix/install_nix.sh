#!/usr/bin/env bash
# CI install step for the `nix` test tier (tests/nix): Debian's Nix (2.8). Idempotent; needs root.
# The tests use a private, throw-away store under pytest's tmp dir (no daemon, no /nix, no binary cache,
# no network): nothing here configures the machine-wide Nix.
set -euo pipefail
if command -v nix >/dev/null 2>&1 && command -v nix-instantiate >/dev/null 2>&1; then
  echo "nix already installed: $(nix --version)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends nix-bin >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends nix-bin >/dev/null; }
echo "installed: $(nix --version)"
