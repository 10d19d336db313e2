"""Fixtures for the live-decision tests: test hosts (tests/testhosts.py) and a real `rcc run` world."""

from testhosts import test_ca, testhost  # noqa: F401  (re-exported fixtures)
