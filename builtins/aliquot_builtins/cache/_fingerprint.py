"""Code fingerprints: a task's own code, and what it reaches inside the user's project.

A cached result is only as fresh as the code that made it. The fingerprint of a
task covers:

- its own code (:func:`aliquot.code_fingerprint`: the source without comments,
  docstrings or layout; the bytecode when there is no source), its default
  argument values and closure values;
- every function and class *of the user's project* it reaches -- called by name,
  through a project module (``helpers.normalize``), or from another reached
  function -- each by its own code, recursively;
- every module-level constant of the project it reads, by value.

"The user's project" is every module that is not part of Python, of an
installed distribution (site-packages) or of aliquot itself: scripts,
``__main__``, and packages installed in editable mode from a source tree.
Library code is not fingerprinted (upgrading a library does not invalidate
results). A module-level object with no canonical value (a logger, a client)
is keyed by its type only; a function that builds a task's result from such an
object's state should take that state as an input instead.

Each part is kept by name, so ``aliquot explain`` can say *what* changed: the
task's code, helper ``normalize``, or constant ``SCALE``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from typing import Any

import orjson

import aliquot
from aliquot import Unfingerprintable, fingerprint

#: Per process, shared by every kernel: own-code fingerprints by code object (a code
#: object never changes), and module-level values by object (see ``_constant_fp``).
_OWN: dict[Any, str] = {}
_CONSTANTS: dict[int, tuple[Any, str]] = {}


def digest(data: Any) -> str:
    """SHA-256 hex of JSON-able data (already canonical), with sorted keys."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    for module in (aliquot, sys.modules.get("aliquot_builtins")):
        path = getattr(module, "__file__", None)
        if path:
            roots.add(os.path.dirname(path))
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots))


def _names_of(code: types.CodeType) -> Iterator[str]:
    """Global and attribute names a code object (and the code nested in it) uses."""
    stack = [code]
    while stack:
        current = stack.pop()
        yield from current.co_names
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))


class CodeFingerprints:
    """Computes and memoizes code fingerprints (one instance per run)."""

    def __init__(
        self,
        own: dict[Any, str] | None = None,
        constants: dict[int, tuple[Any, str]] | None = None,
    ) -> None:
        self._roots = _library_roots()
        self._project_modules: dict[str, bool] = {}
        # Own-code fingerprints by code object: source parsing is the slow part,
        # and a code object never changes (reloading a module makes new ones).
        self._own = own if own is not None else _OWN
        self._constants = constants if constants is not None else _CONSTANTS
        self._done: dict[int, tuple[str, dict[str, Any]]] = {}

    # ---------------------------------------------------------------- public

    def of(self, fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
        """``(digest, parts)`` for a task's callable; ``parts`` names what was included."""
        target = inspect.unwrap(fn)
        cached = self._done.get(id(target))
        if cached is not None:
            return cached
        parts: dict[str, Any] = {"self": self._own_fp(target), "reaches": {}, "constants": {}}
        self._walk(target, parts, {aliquot.qualified_name(target)})
        result = (digest(parts), parts)
        self._done[id(target)] = result
        return result

    def value_fp(self, value: Any) -> str:
        """The fingerprint of a value a task takes or reads.

        Values by their canonical form; classes and functions of the user's
        project by their code (a parameter holding ``MyModel`` changes when
        ``MyModel`` is edited), library ones by name.

        Raises:
            Unfingerprintable: the value has no canonical form.
        """
        if isinstance(value, (type, types.FunctionType)):
            module = getattr(value, "__module__", None)
            name = aliquot.qualified_name(value)
            if self._is_project(module):
                if isinstance(value, type):
                    return digest(["class", name, self._class_fp(value)])
                return digest(["function", name, self.of(value)[0]])
            return digest(["library", name])
        if isinstance(value, (types.BuiltinFunctionType, functools.partial)):
            if isinstance(value, functools.partial):
                return digest(
                    [
                        "partial",
                        self.value_fp(value.func),
                        fingerprint((value.args, value.keywords)),
                    ]
                )
            return digest(["library", aliquot.qualified_name(value)])
        return fingerprint(value)

    # ---------------------------------------------------------------- walking

    def _own_fp(self, fn: Any) -> str:
        code = getattr(fn, "__code__", None)
        key = code if code is not None else id(fn)
        own = self._own.get(key)
        if own is None:
            own = aliquot.code_fingerprint(fn)
            extra = []
            for attr in ("__defaults__", "__kwdefaults__"):
                value = getattr(fn, attr, None)
                if value:
                    extra.append(self._value_fp(value))
            cells = getattr(fn, "__closure__", None)
            if cells:
                for cell in cells:
                    try:
                        extra.append(self._value_fp(cell.cell_contents))
                    except ValueError:  # an empty cell
                        extra.append("empty")
            if extra:
                own = digest([own, extra])
            if code is not None:
                self._own[key] = own
        return own

    def _constant_fp(self, obj: Any) -> str:
        """A module-level value's fingerprint, taken the first time this process sees the
        object: editing the constant (a new object, a new process) changes it, while an
        object the program mutates in place (a counter, a registry) keeps keys stable."""
        entry = self._constants.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        fp = self._value_fp(obj)
        self._constants[id(obj)] = (obj, fp)  # holding obj keeps its id from being reused
        return fp

    def _value_fp(self, value: Any) -> str:
        if callable(value) and not isinstance(value, type):
            return "callable:" + aliquot.qualified_name(value)
        try:
            return fingerprint(value)
        except Unfingerprintable:
            return f"opaque:{type(value).__module__}.{type(value).__qualname__}"

    def _walk(self, fn: Any, parts: dict[str, Any], seen: set[str]) -> None:
        code = getattr(fn, "__code__", None)
        namespace = getattr(fn, "__globals__", None)
        if code is None or namespace is None:
            return
        names = set(_names_of(code))
        for name in sorted(names):
            if name in namespace:
                self._reach(name, namespace[name], names, parts, seen, fn)

    def _reach(
        self,
        label: str,
        obj: Any,
        names: set[str],
        parts: dict[str, Any],
        seen: set[str],
        owner: Any,
    ) -> None:
        if isinstance(obj, types.ModuleType):
            if self._is_project(obj.__name__):
                for attr in sorted(names):
                    if attr in vars(obj):
                        self._reach(
                            f"{obj.__name__}.{attr}", vars(obj)[attr], names, parts, seen, obj
                        )
            return
        if isinstance(obj, functools.partial):
            self._reach(label, obj.func, names, parts, seen, owner)
            parts["constants"][label + ".partial"] = self._value_fp((obj.args, obj.keywords))
            return
        if isinstance(obj, (types.FunctionType, type)):
            if not self._is_project(getattr(obj, "__module__", None)):
                return
            key = aliquot.qualified_name(obj)
            if key in seen:
                return
            seen.add(key)
            if isinstance(obj, type):
                parts["reaches"][key] = self._class_fp(obj)
                for member in vars(obj).values():
                    inner = getattr(member, "__func__", member)
                    if isinstance(inner, types.FunctionType):
                        self._walk(inner, parts, seen)
            else:
                parts["reaches"][key] = self._own_fp(obj)
                self._walk(obj, parts, seen)
            return
        if callable(obj):
            return  # builtins, library callables and other callable objects
        module = (
            owner.__name__
            if isinstance(owner, types.ModuleType)
            else getattr(owner, "__module__", None)
        )
        if self._is_project(module):
            key = label if "." in label else f"{module}.{label}"
            parts["constants"][key] = self._constant_fp(obj)

    def _class_fp(self, cls: type) -> str:
        try:
            import ast
            import textwrap

            source = textwrap.dedent(inspect.getsource(cls))
            return digest(["class", ast.dump(ast.parse(source), include_attributes=False)])
        except (OSError, TypeError, SyntaxError):
            methods = sorted(
                (name, aliquot.code_fingerprint(m))
                for name, m in vars(cls).items()
                if isinstance(m, types.FunctionType)
            )
            return digest(["class-methods", methods])

    def _is_project(self, module_name: str | None) -> bool:
        if not module_name:
            return False
        known = self._project_modules.get(module_name)
        if known is not None:
            return known
        module = sys.modules.get(module_name)
        path = getattr(module, "__file__", None) if module is not None else None
        if module_name in ("__main__", "__mp_main__"):
            result = True
        elif not path:
            result = False  # builtin or namespace modules
        else:
            real = os.path.realpath(path)
            result = not any(real.startswith(root) for root in self._roots)
        self._project_modules[module_name] = result
        return result
