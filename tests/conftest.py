"""Test-suite setup: isolate every test from the developer's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["aliquot.testing.plugin"]


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No ALIQUOT_* variable leaks in, and per-store keys go to a temporary config dir."""
    for name in list(os.environ):
        if name.startswith("ALIQUOT_"):
            monkeypatch.delenv(name)
    config = tmp_path_factory.mktemp("aliquot-config")
    monkeypatch.setenv("ALIQUOT_CONFIG_DIR", str(config))
    return


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A path for an LMDB store that does not exist yet."""
    return tmp_path / "store"
