"""Users' type checkers understand components (PEP 681 ``dataclass_transform`` + ``py.typed``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

USER_CODE = """\
import typing as t
from aliquot import Component, trigger

class Notifier(Component):
    a: int
    b: str = "x"
    d: t.Callable[..., None] | None = None

    @trigger("apply")
    def start(self) -> None: ...

n = Notifier("n1", a=1)
reveal_type(n.a)
reveal_type(n.identifier)
"""


def _mypy(tmp_path: Path, code: str) -> tuple[str, int]:
    """mypy in its own process: in-process it raises the recursion limit for everyone."""
    (tmp_path / "user.py").write_text(code)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(tmp_path / "user.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out.stdout + out.stderr, out.returncode


def test_a_component_subclass_type_checks(tmp_path: Path) -> None:
    out, status = _mypy(tmp_path, USER_CODE)
    assert status == 0, out
    assert 'Revealed type is "int"' in out
    assert 'Revealed type is "str"' in out


def test_fields_after_the_identifier_are_keyword_only_for_type_checkers(tmp_path: Path) -> None:
    out, status = _mypy(tmp_path, USER_CODE + 'bad = Notifier("n2", 1)\nworse = Notifier(a=1)\n')
    assert status == 1
    assert "Too many positional arguments" in out
    assert 'Missing positional argument "identifier"' in out
