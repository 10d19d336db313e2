"""The container tests' fixture lives in ctrbox.py (a unique module name: tests import helpers from there)."""

from ctrbox import box

__all__ = ["box"]
