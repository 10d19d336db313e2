# rcc: `make demo` (a fresh Debian/Ubuntu machine, as root or with sudo) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := bubblewrap nftables iproute2 uidmap socat git curl openssl ca-certificates python3-venv

.PHONY: demo test test-fast lint typecheck bench system-deps venv clean

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "rcc needs Python >= 3.11 ($(PYTHON) is $$($(PYTHON) --version)); set PYTHON=python3.11 or newer" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: system-deps venv
	@$(PY) scripts/demo.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check src

typecheck: venv
	$(VENV)/bin/mypy

# The whole suite. pytest's exit code 5 ("no tests collected") is a failure here: a suite that ran nothing
# proves nothing.
test: venv lint typecheck
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# Only the pure tier (no bubblewrap, no namespaces): what the Nix build sandbox can run.
test-fast: venv
	$(VENV)/bin/pytest -q -m "not sandbox and not netns and not podman and not agent and not nix" $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/startup.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
