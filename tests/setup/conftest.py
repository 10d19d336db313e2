"""Fixtures for the setup/doctor/firewall tests; the helpers live in fwhosts.py (a unique module name, so
`from fwhosts import ...` never picks up another directory's conftest)."""

from fwhosts import clean_host, topology

__all__ = ["clean_host", "topology"]
