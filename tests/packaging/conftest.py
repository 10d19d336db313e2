"""Fixtures of the packaging tests: a clean copy of the repository, the wheel and sdist built from it, a tools
venv (hatchling, uv, pipx from PyPI), and install locations that root and the unprivileged `rccuser` can both
read. Helpers live in pkgworld.py (a unique module name: several test directories have a conftest.py)."""

from pkgworld import built, clean_tree, shared_dir, tools

__all__ = ["built", "clean_tree", "shared_dir", "tools"]
