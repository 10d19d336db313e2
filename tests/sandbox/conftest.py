"""The escape suite's world lives in tests/escape_world.py (shared with other test directories; a unique module
name: several test directories have a conftest.py, so `from conftest import ...` would be ambiguous). Its
`pytest_generate_tests` runs each test against the backends in attacks.BACKENDS that the test is for."""

from escape_world import pytest_generate_tests, world

__all__ = ["pytest_generate_tests", "world"]
