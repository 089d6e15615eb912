"""Resolving ``aliquot run TARGET`` strings to Python objects.

Forms: ``file.py`` (the file's module), ``file.py:object``, ``module``,
``module:object`` (``object`` may be dotted: ``module:experiments.small``),
and any other existing file (passed on as a :class:`pathlib.Path`, for plugins
that run documents such as task-graph YAML).

A script is imported under its file stem when no importable module has that
name (so ``examples/quickstart.py`` becomes module ``quickstart``), otherwise
under ``aliquot_script_<stem>_<hash>``; the name is the same on every load
of the same path, which keeps the qualified names of its tasks -- and so their
cache keys -- stable. Its directory is put first on ``sys.path``, as
``python file.py`` does, so it can import its neighbours.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

from ._errors import TargetLoadError


def load_target(target: str) -> Any:
    """Import what ``target`` names (see the module docstring)."""
    path_part, sep, attr = target.partition(":")
    if sep and len(path_part) == 1 and path_part.isalpha():
        # A Windows drive letter, not a separator (kept for clarity; we run on POSIX).
        path_part, attr = target, ""
    if not path_part:
        raise TargetLoadError(
            f"empty target {target!r}: expected file.py[:object] or module[:object]"
        )
    candidate = Path(path_part)
    if path_part.endswith(".py") or candidate.is_file():
        if not candidate.exists():
            raise TargetLoadError(f"no such file: {path_part}")
        if not path_part.endswith(".py"):
            if attr:
                raise TargetLoadError(f"{path_part} is not a Python file; drop ':{attr}'")
            return candidate.absolute()
        module = load_file(candidate)
    else:
        try:
            module = importlib.import_module(path_part)
        except ModuleNotFoundError as exc:
            if exc.name and path_part.startswith(exc.name):
                raise TargetLoadError(
                    f"cannot import {path_part!r}: no module or file of that name"
                ) from exc
            raise TargetLoadError(f"importing {path_part!r} failed: {exc}") from exc
        except Exception as exc:
            raise TargetLoadError(
                f"importing {path_part!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if not attr:
        return module
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = sorted(n for n in vars(module) if not n.startswith("_"))
            raise TargetLoadError(
                f"{path_part!r} has no {attr!r} (it defines: {', '.join(names[:20])})"
            ) from None
    return obj


def script_module_name(path: Path) -> str:
    stem = path.stem
    if stem.isidentifier():
        existing = sys.modules.get(stem)
        if existing is not None:
            if os.path.abspath(getattr(existing, "__file__", "") or "") == str(path):
                return stem
        else:
            try:
                spec = importlib.util.find_spec(stem)
            except (ImportError, ValueError):
                spec = None
            # Free, or importable as the script itself (its folder is on sys.path, as
            # under `python -m aliquot.cli`): the same name either way.
            if spec is None or (
                spec.origin is not None and os.path.realpath(spec.origin) == os.path.realpath(path)
            ):
                return stem
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    return f"aliquot_script_{safe}_{digest}"


def load_file(path: Path) -> types.ModuleType:
    """Import a Python file as a module (see the module docstring for its name)."""
    path = path.absolute()
    name = script_module_name(path)
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == str(
        path
    ):
        return existing
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetLoadError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise TargetLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise TargetLoadError(f"running {path} failed: {type(exc).__name__}: {exc}") from exc
    return module
