"""The escape suite's fixtures live in escape_world.py (a unique module name: several test directories have a
conftest.py, so `from conftest import ...` would be ambiguous)."""

from escape_world import world

__all__ = ["world"]
