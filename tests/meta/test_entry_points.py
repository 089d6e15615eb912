"""Every builtin module is an entry point, and every entry point imports."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import importlib_metadata
import pytest

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DECLARED: dict[str, str] = PYPROJECT["project"]["entry-points"]["aliquot.plugins"]
MODULES = sorted(
    p.stem for p in (ROOT / "builtins" / "aliquot_builtins").glob("*.py") if p.stem != "__init__"
) + sorted(
    p.name for p in (ROOT / "builtins" / "aliquot_builtins").iterdir()
    if p.is_dir() and (p / "__init__.py").exists()
)  # fmt: skip
REINSTALL = "run `pip install -e .` again: entry points live in the installed metadata"


def test_every_builtin_module_has_an_entry_point_named_after_it() -> None:
    declared_modules = {
        value.partition(":")[0].rpartition(".")[2]: name for name, value in DECLARED.items()
    }
    missing = [m for m in MODULES if m not in declared_modules]
    assert not missing, f"builtin modules without an entry point in pyproject.toml: {missing}"
    assert all(declared_modules[m] == m for m in MODULES), (
        "entry point names must be the module names"
    )


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_entry_point_is_installed_and_imports(name: str) -> None:
    installed = {ep.name: ep for ep in importlib_metadata.entry_points(group="aliquot.plugins")}
    assert name in installed, f"entry point {name!r} is declared but not installed; {REINSTALL}"
    ep = installed[name]
    assert ep.value == DECLARED[name], (
        f"installed entry point differs from pyproject.toml; {REINSTALL}"
    )
    assert ep.dist is not None and ep.dist.name == "aliquot"
    module = importlib.import_module(ep.value)
    assert any(n.startswith("aliquot_") for n in dir(module)), f"{name} implements no hook"


def test_no_stray_installed_builtin() -> None:
    installed = {
        ep.name
        for ep in importlib_metadata.entry_points(group="aliquot.plugins")
        if ep.dist and ep.dist.name == "aliquot"
    }
    assert installed == set(DECLARED), f"installed builtins differ from pyproject.toml; {REINSTALL}"


def test_source_roots_hold_only_their_package() -> None:
    """kernel/ and builtins/ are source roots on sys.path: a stray file would become a module."""
    assert sorted(p.name for p in (ROOT / "kernel").iterdir() if p.name != "__pycache__") == [
        "aliquot"
    ]
    assert sorted(p.name for p in (ROOT / "builtins").iterdir() if p.name != "__pycache__") == [
        "aliquot_builtins"
    ]
