"""Import boundaries: the kernel never imports builtins; layers only import downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
KERNEL = ROOT / "kernel" / "aliquot"
BUILTINS = ROOT / "builtins" / "aliquot_builtins"


def _package_of(path: Path) -> list[str]:
    for root, name in ((KERNEL, "aliquot"), (BUILTINS, "aliquot_builtins")):
        if root in path.parents or path.parent == root:
            return [name, *path.parent.relative_to(root).parts]
    raise ValueError(path)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path)
                base = package[: len(package) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


KERNEL_FILES = sorted(KERNEL.rglob("*.py"))


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: str(p.relative_to(KERNEL)))
def test_kernel_never_imports_builtins(path: Path) -> None:
    bad = {m for m in imports_of(path) if m.split(".")[0] == "aliquot_builtins"}
    if path.parent == KERNEL and path.name in ("__init__.py", "pyplugs.py"):
        # The facade (and its Dioptra-spelled corner, aliquot.pyplugs) may name builtins,
        # but only for type checkers; at run time it imports them lazily by name.
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                assert not any((n or "").startswith("aliquot_builtins") for n in names), (
                    "the facade imports aliquot_builtins eagerly"
                )
        return
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the kernel holds no policy"


# A lower layer never imports a higher one (STYLE.md): cli is the top; hookspecs, abc the bottom.
LAYERS = {
    "hookspecs": 0,
    "_errors": 0,
    "_version": 0,
    "pyplugs": 0,
    "_tasks": 1,
    "_graph": 1,
    "_outcome": 1,
    "_values": 1,
    "_context": 1,
    "_fingerprints": 1,
    "abc": 2,
    "_planner": 2,
    "_registry": 2,
    "_runs": 2,
    "_plugins": 3,
    "_registries": 3,
    "_scheduler": 4,
    "_kernel": 5,
    "_loader": 5,
    "_progress": 5,
    "testing": 6,
    "cli": 7,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_import_only_downwards(name: str) -> None:
    path = KERNEL / f"{name}.py"
    if not path.exists():
        path = KERNEL / name / "__init__.py"
    level = LAYERS[name]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            target = node.module.split(".")[0]
            if target in LAYERS and not _type_checking_only(tree, node):
                assert LAYERS[target] <= level, (
                    f"aliquot.{name} (layer {level}) imports "
                    f"aliquot.{target} (layer {LAYERS[target]})"
                )


def _type_checking_only(tree: ast.Module, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ) and any(target is child for child in ast.walk(node)):
            return True
    return False


def test_every_kernel_module_has_a_layer() -> None:
    modules = {p.stem for p in KERNEL.glob("*.py") if p.stem != "__init__"} | {"testing"}
    assert modules <= set(LAYERS), f"add {sorted(modules - set(LAYERS))} to LAYERS"


@pytest.mark.parametrize("path", sorted(BUILTINS.rglob("*.py")), ids=lambda p: p.name)
def test_builtins_use_only_the_public_api(path: Path) -> None:
    """Builtins are plugins like any other: no private kernel modules."""
    private = {
        m for m in imports_of(path) if m.startswith("aliquot.") and m.split(".")[1].startswith("_")
    }
    assert not private, f"{path.name} imports private kernel modules {private}"
