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
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import orjson

import aliquot
from aliquot import Unfingerprintable, fingerprint

#: Per process, shared by every kernel: source fingerprints by code object (a code
#: object never changes; functions made by one factory share it, so defaults and
#: closures are fingerprinted apart), module-level values by object (see
#: ``_constant_fp``), and whole results of ``of()`` (see ``_Walk``).
_OWN: dict[Any, str] = {}
_CONSTANTS: dict[int, tuple[Any, str]] = {}
_RESULTS: dict[int, tuple[Any, list[tuple[Any, ...]], tuple[str, dict[str, Any]]]] = {}
_ABSENT: Any = object()
_CLASSES: dict[int, tuple[type, str]] = {}


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


#: bytes and str values this long are fingerprinted once per run (``value_fp``).
LARGE_IMMUTABLE = 1 << 20


class CodeFingerprints:
    """Computes and memoizes code fingerprints (one instance per run)."""

    def __init__(
        self,
        own: dict[Any, str] | None = None,
        constants: dict[int, tuple[Any, str]] | None = None,
        sources: SourceFingerprints | None = None,
    ) -> None:
        self._roots = _library_roots()
        self._sources = sources
        self._project_modules: dict[str, bool] = {}
        # Own-code fingerprints by code object: source parsing is the slow part,
        # and a code object never changes (reloading a module makes new ones).
        self._own = own if own is not None else _OWN
        self._constants = constants if constants is not None else _CONSTANTS
        self._done: dict[int, tuple[str, dict[str, Any]]] = {}
        # Fingerprints of large bytes/str values seen in this run (see ``value_fp``).
        self._large: dict[int, tuple[Any, str]] = {}
        # What the walk in progress depends on (see ``of``); None outside a walk.
        self._deps: list[tuple[Any, ...]] | None = None
        self._walking: set[int] = set()

    # ---------------------------------------------------------------- public

    def of(self, fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
        """``(digest, parts)`` for a task's callable (or a class); ``parts`` names what was
        included.

        The walk is kept across runs with what it depended on -- every global name it
        looked up (and what that name held), and every function's defaults and closure
        cells -- and reused while all of those are still the same objects. Editing a
        file makes new objects (a new process, or a reloaded module), so it is seen.
        """
        target = fn if isinstance(fn, type) else inspect.unwrap(fn)
        cached = self._done.get(id(target))
        if cached is not None:
            return cached
        memo = _RESULTS.get(id(target))
        if memo is not None and memo[0] is target and _still_valid(memo[1]):
            self._done[id(target)] = memo[2]
            if self._deps is not None:
                self._deps.extend(memo[1])
            return memo[2]
        name = aliquot.qualified_name(target)
        if id(target) in self._walking:  # a cycle (a closure holding its own maker...)
            return digest(["cycle", name]), {}
        self._walking.add(id(target))
        outer = self._deps
        self._deps = []
        try:
            parts: dict[str, Any] = {"reaches": {}, "constants": {}}
            if isinstance(target, type):
                parts["self"] = self._class_fp(target)
                self._walk_class(target, parts, {name})
            else:
                parts["self"] = self._own_fp(target)
                self._walk(target, parts, {name})
            deps = self._deps
        finally:
            self._deps = outer
            self._walking.discard(id(target))
        if outer is not None:
            outer.extend(deps)
        result = (digest(parts), parts)
        self._done[id(target)] = result
        _RESULTS[id(target)] = (target, deps, result)
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
            return self._code_value_fp(value)
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
        if type(value) in (bytes, str) and len(value) >= LARGE_IMMUTABLE:
            # A big constant bound to many nodes is hashed once per run, not once per
            # node. Only immutable types: a mutated array must be hashed again. The memo
            # holds the value, so its id cannot be reused while the entry exists.
            seen = self._large.get(id(value))
            if seen is not None and seen[0] is value:
                return seen[1]
            found = fingerprint(value)
            self._large[id(value)] = (value, found)
            return found
        return fingerprint(value)

    def _code_value_fp(self, value: Any) -> str:
        """A class or function: by its code in the project -- with the project code it
        reaches, as for a task -- and by its name elsewhere."""
        name = aliquot.qualified_name(value)
        if not self._is_project(getattr(value, "__module__", None)):
            return digest(["library", name])
        kind = "class" if isinstance(value, type) else "function"
        return digest([kind, name, self.of(value)[0]])

    # ---------------------------------------------------------------- walking

    def _own_fp(self, fn: Any) -> str:
        """A function's own code, default values and closure values."""
        code = getattr(fn, "__code__", None)
        source = self._own.get(code) if code is not None else None
        if source is None:
            where = self._sources.where_function(code) if self._sources and code else None
            if where is not None:
                source = self._sources.get(where)  # type: ignore[union-attr]
            if source is None:
                source = aliquot.code_fingerprint(fn)
                if where is not None:
                    self._sources.put(where, source)  # type: ignore[union-attr]
            if code is not None:
                self._own[code] = source
        defaults = getattr(fn, "__defaults__", None)
        kwdefaults = getattr(fn, "__kwdefaults__", None)
        cells = getattr(fn, "__closure__", None) or ()
        contents = tuple(_cell_contents(cell) for cell in cells)
        if self._deps is not None:
            self._deps.append(("function", fn, defaults, kwdefaults, contents))
        extra = []
        for value in (defaults, kwdefaults):
            if value:
                extra.append(self._value_fp(value))
        for value in contents:
            extra.append("empty" if value is _ABSENT else self._value_fp(value))
        return digest([source, extra]) if extra else source

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
        """A default, closure or module-level value; never raises. Project functions and
        classes count by their code (what they compute), other callables by name."""
        if isinstance(value, (types.FunctionType, type)):
            return self._code_value_fp(value)
        if callable(value):
            return "callable:" + aliquot.qualified_name(value)
        try:
            return fingerprint(value)
        except Unfingerprintable:
            if isinstance(value, (tuple, list)):
                return digest([type(value).__name__, [self._value_fp(v) for v in value]])
            if isinstance(value, dict) and all(type(k) is str for k in value):
                return digest(["dict", {k: self._value_fp(v) for k, v in value.items()}])
            return f"opaque:{type(value).__module__}.{type(value).__qualname__}"

    def _walk(self, fn: Any, parts: dict[str, Any], seen: set[str]) -> None:
        code = getattr(fn, "__code__", None)
        namespace = getattr(fn, "__globals__", None)
        if code is None or namespace is None:
            return
        names = set(_names_of(code))
        deps = self._deps
        for name in sorted(names):
            value = namespace.get(name, _ABSENT)
            if deps is not None:
                deps.append(("name", namespace, name, value))
            if value is not _ABSENT:
                self._reach(name, value, names, parts, seen, fn)

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
                namespace = vars(obj)
                deps = self._deps
                for attr in sorted(names):
                    value = namespace.get(attr, _ABSENT)
                    if deps is not None:
                        deps.append(("name", namespace, attr, value))
                    if value is not _ABSENT:
                        self._reach(f"{obj.__name__}.{attr}", value, names, parts, seen, obj)
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
                self._walk_class(obj, parts, seen)
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

    def _walk_class(self, cls: type, parts: dict[str, Any], seen: set[str]) -> None:
        """Walk what a class's methods (static, class and property ones too) reach."""
        for member in list(vars(cls).values()):
            if isinstance(member, property):
                functions = [member.fget, member.fset, member.fdel]
            else:
                functions = [getattr(member, "__func__", member)]
            for inner in functions:
                if isinstance(inner, types.FunctionType):
                    self._walk(inner, parts, seen)

    def _class_fp(self, cls: type) -> str:
        """A class's code (memoized per class object: a redefined class is a new one)."""
        entry = _CLASSES.get(id(cls))
        if entry is not None and entry[0] is cls:
            return entry[1]
        where = self._sources.where_class(cls) if self._sources else None
        fp = self._sources.get(where) if self._sources and where else None
        if fp is None:
            fp = self._class_source_fp(cls)
            if self._sources and where:
                self._sources.put(where, fp)
        _CLASSES[id(cls)] = (cls, fp)
        return fp

    def _class_source_fp(self, cls: type) -> str:
        """The class's source without comments, docstrings or layout; its methods' code
        when there is no source."""
        try:
            inspect.getsource(cls)
            return aliquot.code_fingerprint(cls)
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


def _cell_contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _ABSENT


def _still_valid(deps: list[tuple[Any, ...]]) -> bool:
    """Whether every name and function a memoized walk depended on is unchanged."""
    for dep in deps:
        if dep[0] == "name":
            _, namespace, name, value = dep
            if namespace.get(name, _ABSENT) is not value:
                return False
        else:
            _, fn, defaults, kwdefaults, contents = dep
            if fn.__defaults__ is not defaults or fn.__kwdefaults__ is not kwdefaults:
                return False
            cells = fn.__closure__ or ()
            if len(cells) != len(contents):
                return False
            for cell, value in zip(cells, contents, strict=True):
                if _cell_contents(cell) is not value:
                    return False
    return True


class SourceFingerprints:
    """Source fingerprints kept in the store, so a new process need not parse code again.

    Parsing is most of the cost of a fingerprint (``inspect.getsource`` tokenizes,
    ``ast`` parses and dumps). A fingerprint is stored under where the code lives --
    its file, the file's size and modification time (nanoseconds), its qualified name
    and first line -- plus the Python version. Nothing is stored for a file modified
    in the last two seconds (an edit within the filesystem's timestamp resolution
    could keep both size and time), so an entry can never outlive an edit.
    """

    SPACE = "cache_code"
    FRESH = 2.0

    def __init__(self, store: Any, *, writable: bool) -> None:
        self.store = store
        self.writable = writable
        # path -> (mtime_ns, size, modified recently), once per run
        self._stats: dict[str, tuple[int, int, bool] | None] = {}
        self._fresh: set[bytes] = set()
        self._tag = f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}"

    def _stat(self, path: str) -> tuple[int, int, bool] | None:
        if path in self._stats:
            return self._stats[path]
        found: tuple[int, int, bool] | None = None
        if path and not path.startswith("<"):
            try:
                st = os.stat(path)
            except OSError:
                pass
            else:
                fresh = time.time() - st.st_mtime < self.FRESH
                found = (st.st_mtime_ns, st.st_size, fresh)
        self._stats[path] = found
        return found

    def _where(self, kind: str, path: str, qualname: str, line: int) -> bytes | None:
        stat = self._stat(path)
        if stat is None:
            return None
        text = f"{kind}|{self._tag}|{path}|{stat[0]}|{stat[1]}|{qualname}|{line}"
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        if stat[2]:
            self._fresh.add(key)
        return key

    def where_function(self, code: types.CodeType) -> bytes | None:
        qualname = getattr(code, "co_qualname", code.co_name)
        return self._where("function", code.co_filename, qualname, code.co_firstlineno)

    def where_class(self, cls: type) -> bytes | None:
        module = sys.modules.get(cls.__module__)
        path = getattr(module, "__file__", None) if module is not None else None
        if not path:
            return None
        # Classes carry no line number (before 3.13): their first method's stands in.
        lines = [
            f.__code__.co_firstlineno
            for f in vars(cls).values()
            if isinstance(f, types.FunctionType) and f.__code__.co_filename == path
        ]
        return self._where("class", path, cls.__qualname__, min(lines, default=0))

    def get(self, where: bytes) -> str | None:
        raw = self.store.get(self.SPACE, where)
        return raw.decode() if raw is not None else None

    def put(self, where: bytes, fingerprint: str) -> None:
        if self.writable and where not in self._fresh:
            self.store.put(self.SPACE, where, fingerprint.encode())
