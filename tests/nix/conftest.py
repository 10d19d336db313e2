"""The `nix` fixture: a real Nix with a private, throw-away store for the whole session (see nixtest.py)."""

from __future__ import annotations

import pytest
from nixtest import Nix, make_nix


@pytest.fixture(scope="session")
def nix(tmp_path_factory: pytest.TempPathFactory) -> Nix:
    return make_nix(tmp_path_factory.mktemp("nix"))
