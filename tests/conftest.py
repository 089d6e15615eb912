"""Test-suite setup: isolate every test from the developer's environment.

Also shared fixtures: ``make_dist`` writes a real installed distribution
(modules plus ``<name>-<version>.dist-info`` with ``METADATA`` and
``entry_points.txt``) into a temporary "site" directory; ``sys_path`` puts such a
directory on ``sys.path`` for one test and forgets every module imported from it
afterwards.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
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


MakeDist = Callable[..., Path]


@pytest.fixture(scope="session")
def make_dist(tmp_path_factory: pytest.TempPathFactory) -> MakeDist:
    """``make_dist(name, version="1.0", entry_points={ep: target}, modules={mod: source},
    site=None, group="aliquot.plugins") -> site``: an installed distribution in ``site``
    (a new temporary directory unless given)."""

    def make(
        name: str,
        version: str = "1.0",
        *,
        entry_points: Mapping[str, str] | None = None,
        modules: Mapping[str, str] | None = None,
        site: Path | None = None,
        group: str = "aliquot.plugins",
    ) -> Path:
        if site is None:
            site = tmp_path_factory.mktemp("site")
        site.mkdir(parents=True, exist_ok=True)
        for module, source in (modules or {}).items():
            path = site.joinpath(*module.split(".")).with_suffix(".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        # The directory name uses the escaped name (wheel spec): importlib_metadata
        # derives a distribution's identity from it and de-duplicates on it.
        escaped = re.sub(r"[-_.]+", "_", name)
        info = site / f"{escaped}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{ep} = {target}\n" for ep, target in (entry_points or {}).items())
        (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
        return site

    return make


@pytest.fixture
def sys_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Path], None]]:
    """``sys_path(site)`` prepends ``site`` to ``sys.path`` for this test only.

    Afterwards ``sys.path`` is restored (also from what scripts run in-process
    added) and every module imported from a temporary directory (plugin
    modules, scripts) is dropped from ``sys.modules``.
    """
    saved = sys.path[:]
    root = str(tmp_path_factory.getbasetemp()) + os.sep

    def add(site: Path) -> None:
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()

    yield add
    sys.path[:] = saved
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(root):
            del sys.modules[name]
    importlib.invalidate_caches()
