"""Every hook is documented, in the code and in spec/hooks.md, with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from aliquot import hookspecs

ROOT = Path(__file__).parents[2]
HOOKS_MD = (ROOT / "spec" / "hooks.md").read_text()
NAMES = hookspecs.all_hook_names()


def test_there_are_hooks_of_both_shapes() -> None:
    assert any(n.startswith("aliquot_register_") for n in NAMES)
    assert {"aliquot_kernel_started", "aliquot_run_started", "aliquot_node_started",
            "aliquot_node_finished", "aliquot_run_finished"} <= set(NAMES)  # fmt: skip
    shapes = [n for n in NAMES if not n.startswith("aliquot_register_")]
    assert all(re.fullmatch(r"aliquot_[a-z]+_[a-z]+", n) for n in shapes), shapes


@pytest.mark.parametrize("name", NAMES)
def test_hook_is_in_spec_with_its_exact_signature(name: str) -> None:
    signature = hookspecs.spec_signature(name)
    assert f"### {signature}\n" in HOOKS_MD, (
        f"spec/hooks.md lacks a heading '### {signature}'; "
        "run `python tests/meta/regenerate_hooks_md.py`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_hook_docstring_says_who_calls_it_and_who_implements_it(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Called" in doc, f"{name}: say when and by whom it is called"
    assert "Implemented by:" in doc, f"{name}: name the builtin implementation (or 'no builtin')"
    for param in inspect.signature(getattr(hookspecs, name)).parameters:
        assert f":param {param}:" in doc, f"{name}: document argument {param!r}"


def test_spec_lists_no_hook_that_does_not_exist() -> None:
    documented = re.findall(r"^### (aliquot_[a-z_]+)\(", HOOKS_MD, flags=re.MULTILINE)
    assert sorted(documented) == sorted(NAMES)


def test_registration_hooks_take_only_register() -> None:
    for name in NAMES:
        if name.startswith("aliquot_register_"):
            assert list(inspect.signature(getattr(hookspecs, name)).parameters) == ["register"]
