"""Parameter types: Dioptra's type language, checked statically and at run time.

A type is a JSON value (so it can be stored with a task and written in a task
graph):

- a builtin name: ``any``, ``string``, ``integer``, ``number``, ``boolean``, ``null``;
- a structure: ``{"list": T}``, ``{"tuple": [T, ...]}``, ``{"mapping": [K, V]}``
  (keys of type K, values of type V), ``{"mapping": {"key": T, ...}}`` (exactly
  these keys), ``{"union": [T, ...]}``;
- the name of a custom type defined in a :class:`TypeTable`: ``{}`` (a simple,
  nominal type), ``{"is_a": T}`` (a named refinement of T) or any structure
  above under a name. A dotted name that names a Python class
  (``numpy.ndarray``) is checked with ``isinstance`` once its module is imported.

Two checks use types. :func:`check` tests a value before a task runs (and the
literal arguments of a task graph when it is validated). :func:`assignable`
tests, without running anything, whether what one step produces fits what the
next takes. Unlike Dioptra, ``any`` fits everywhere statically: a value typed
``any`` is checked when it arrives instead of refusing the graph.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import math
import sys
import types as pytypes
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from aliquot import AliquotError

#: Type expressions are JSON: a name, or a one-key dict.
TypeExpr = str | dict[str, Any]

BUILTIN: Final = ("any", "string", "integer", "number", "boolean", "null")
STRUCTURES: Final = ("list", "tuple", "mapping", "union", "is_a")

_PYTHON_NAMES: Final[dict[str, str]] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "None": "null",
    "NoneType": "null",
    "Any": "any",
    "object": "any",
}
_LIST_NAMES: Final = {"list", "List", "Sequence", "MutableSequence", "Iterable", "set", "frozenset"}
_MAPPING_NAMES: Final = {"dict", "Dict", "Mapping", "MutableMapping"}


class TypeDefinitionError(AliquotError):
    """A type expression or a custom type definition is malformed."""


class TypeTable:
    """Custom types by name: their structure (``{}`` for a simple type)."""

    def __init__(self, definitions: Mapping[str, Any] | None = None) -> None:
        self._defs: dict[str, TypeExpr] = {}
        for name, structure in (definitions or {}).items():
            self.define(name, structure)

    def define(self, name: str, structure: Any = None) -> None:
        if not isinstance(name, str) or not name or name in BUILTIN:
            raise TypeDefinitionError(
                f"custom type name {name!r} is empty or clashes with a builtin type"
            )
        if not all(part.isidentifier() for part in name.split(".")):
            raise TypeDefinitionError(f"custom type name {name!r} is not a dotted identifier")
        normal: TypeExpr = {} if structure in (None, {}) else self.normalize(structure, name)
        old = self._defs.get(name)
        if old is not None and old != normal:
            raise TypeDefinitionError(
                f"custom type {name!r} is defined twice, differently: {describe(old)} and "
                f"{describe(normal)}"
            )
        self._defs[name] = normal

    def merge(self, other: TypeTable) -> None:
        for name, structure in other._defs.items():
            self.define(name, structure)

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def structure(self, name: str) -> TypeExpr:
        return self._defs[name]

    def to_json(self) -> dict[str, TypeExpr]:
        return dict(sorted(self._defs.items()))

    def renamed(self, rename: Callable[[str], str]) -> TypeTable:
        out = TypeTable()
        out._defs = {rename(k): renamed(v, rename) for k, v in self._defs.items()}
        return out

    def normalize(self, expr: Any, where: str = "type") -> TypeExpr:
        """``expr`` checked for shape (names may still be undefined: see :meth:`undefined`)."""
        if isinstance(expr, str):
            if not expr:
                raise TypeDefinitionError(f"{where}: empty type name")
            return expr
        if not isinstance(expr, dict) or len(expr) != 1:
            raise TypeDefinitionError(
                f"{where}: {expr!r} is not a type (a name, or one of "
                + ", ".join(f"{{{s!r}: ...}}" for s in STRUCTURES)
                + ")"
            )
        ((key, arg),) = expr.items()
        if key == "list" or key == "is_a":
            return {key: self.normalize(arg, where)}
        if key in ("tuple", "union"):
            if not isinstance(arg, list) or (key == "union" and not arg):
                raise TypeDefinitionError(f"{where}: {{{key!r}: ...}} takes a list of types")
            return {key: [self.normalize(a, where) for a in arg]}
        if key == "mapping":
            if isinstance(arg, list) and len(arg) == 2:
                return {"mapping": [self.normalize(arg[0], where), self.normalize(arg[1], where)]}
            if isinstance(arg, dict):
                bad = [k for k in arg if not isinstance(k, str)]
                if bad:
                    raise TypeDefinitionError(f"{where}: mapping keys must be strings: {bad}")
                return {"mapping": {k: self.normalize(v, where) for k, v in arg.items()}}
            raise TypeDefinitionError(
                f"{where}: {{'mapping': ...}} takes [key type, value type] or {{key: type}}"
            )
        raise TypeDefinitionError(
            f"{where}: unknown type structure {key!r} (expected one of {', '.join(STRUCTURES)})"
        )

    def undefined(self, expr: TypeExpr) -> list[str]:
        """Names in ``expr`` that are neither builtin nor defined here."""
        out: list[str] = []
        for name in names_in(expr):
            if name not in BUILTIN and name not in self._defs and name not in out:
                out.append(name)
        return out


def renamed(expr: TypeExpr, rename: Callable[[str], str]) -> TypeExpr:
    """``expr`` with every type name passed through ``rename``."""
    if isinstance(expr, str):
        return rename(expr)
    if not expr:
        return expr
    ((key, arg),) = expr.items()
    if isinstance(arg, dict):
        return {key: {k: renamed(v, rename) for k, v in arg.items()}}
    if isinstance(arg, list):
        return {key: [renamed(a, rename) for a in arg]}
    return {key: renamed(arg, rename)}


def names_in(expr: TypeExpr) -> list[str]:
    if isinstance(expr, str):
        return [expr]
    out: list[str] = []
    for arg in expr.values():
        items = arg.values() if isinstance(arg, dict) else arg if isinstance(arg, list) else [arg]
        for item in items:
            out.extend(names_in(item))
    return out


def describe(expr: TypeExpr) -> str:
    """``list[integer]``, ``mapping[string, number]``, ``union[string, null]``..."""
    if isinstance(expr, str):
        return expr
    if not expr:
        return "{}"
    ((key, arg),) = expr.items()
    if key in ("list", "is_a"):
        return f"{key}[{describe(arg)}]"
    if key == "mapping" and isinstance(arg, dict):
        inner = ", ".join(f"{k}: {describe(v)}" for k, v in arg.items())
        return f"mapping{{{inner}}}"
    return f"{key}[{', '.join(describe(a) for a in arg)}]"


# ---------------------------------------------------------------------------
# From Python annotations (live objects, or source text without running it)
# ---------------------------------------------------------------------------


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def from_annotation(annotation: Any, table: TypeTable) -> TypeExpr:
    """The type an annotation means; custom classes are defined in ``table``."""
    if annotation is None or annotation is type(None):
        return "null"
    if annotation is typing.Any or annotation is object:
        return "any"
    if isinstance(annotation, str):
        try:
            node = ast.parse(annotation, mode="eval").body
        except SyntaxError:
            return "any"
        return from_annotation_node(node, {}, table)
    for python, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number")):
        if annotation is python:
            return name
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return from_annotation(args[0], table)
    if origin is typing.Union or origin is pytypes.UnionType:
        return _union([from_annotation(a, table) for a in args])
    if origin is typing.Literal:
        return _union([literal_type(a) for a in args])
    if origin is tuple or annotation is tuple:
        if args == ((),) or (origin is tuple and not args and annotation is not tuple):
            return {"tuple": []}
        if not args:
            return {"list": "any"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"list": from_annotation(args[0], table)}
        return {"tuple": [from_annotation(a, table) for a in args]}
    if origin in (list, set, frozenset) or annotation in (list, set, frozenset):
        return {"list": from_annotation(args[0], table) if args else "any"}
    if origin in (collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection):
        return {"list": from_annotation(args[0], table) if args else "any"}
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) or annotation in (
        dict,
        collections.abc.Mapping,
    ):
        if len(args) == 2:
            return {"mapping": [from_annotation(args[0], table), from_annotation(args[1], table)]}
        return {"mapping": ["string", "any"]}
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        fields = {k: from_annotation(v, table) for k, v in hints.items()}
        if set(getattr(annotation, "__required_keys__", fields)) == set(fields):
            return {"mapping": fields}
        # Optional keys have no spelling in the type language: keys checked, values by union.
        return {"mapping": ["string", _union(list(fields.values()) or ["any"])]}
    if isinstance(annotation, type):
        name = class_name(annotation)
        table.define(name)
        return name
    return "any"


def literal_type(value: Any) -> TypeExpr:
    """The type of a scalar written as a value (``1.5`` -> ``number``; ``None`` -> ``null``)."""
    for python, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number")):
        if isinstance(value, python):
            return name
    return "null" if value is None else "any"


def _union(members: Sequence[TypeExpr]) -> TypeExpr:
    flat: list[TypeExpr] = []
    for m in members:
        for item in m["union"] if isinstance(m, dict) and "union" in m else [m]:
            if item not in flat:
                flat.append(item)
    if "any" in flat:
        return "any"
    return flat[0] if len(flat) == 1 else {"union": flat}


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def from_annotation_node(node: ast.expr, aliases: Mapping[str, str], table: TypeTable) -> TypeExpr:
    """The type a source annotation means, without importing anything.

    ``aliases`` maps names bound by the file's imports to what they import
    (``np`` -> ``numpy``, ``ndarray`` -> ``numpy.ndarray``); other dotted names
    become custom types named by their full path.
    """
    if isinstance(node, ast.Constant):
        if node.value is None:
            return "null"
        if isinstance(node.value, str):
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return "any"
            return from_annotation_node(inner, aliases, table)
        return "any"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(
            [
                from_annotation_node(node.left, aliases, table),
                from_annotation_node(node.right, aliases, table),
            ]
        )
    if isinstance(node, ast.Subscript):
        base = _resolved(dotted(node.value), aliases)
        short = (base or "").rpartition(".")[2]
        elts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if short in ("Optional",):
            return _union([from_annotation_node(elts[0], aliases, table), "null"])
        if short == "Union":
            return _union([from_annotation_node(e, aliases, table) for e in elts])
        if short == "Annotated":
            return from_annotation_node(elts[0], aliases, table)
        if short == "Literal":
            return _union(
                [literal_type(e.value) if isinstance(e, ast.Constant) else "any" for e in elts]
            )
        if short in ("tuple", "Tuple"):
            if len(elts) == 2 and isinstance(elts[1], ast.Constant) and elts[1].value is ...:
                return {"list": from_annotation_node(elts[0], aliases, table)}
            return {"tuple": [from_annotation_node(e, aliases, table) for e in elts]}
        if short in _LIST_NAMES:
            return {"list": from_annotation_node(elts[0], aliases, table)}
        if short in _MAPPING_NAMES and len(elts) == 2:
            return {
                "mapping": [
                    from_annotation_node(elts[0], aliases, table),
                    from_annotation_node(elts[1], aliases, table),
                ]
            }
        return "any" if base is None else _named(base, table)
    name = _resolved(dotted(node), aliases)
    if name is None:
        return "any"
    return _named(name, table)


def _resolved(name: str | None, aliases: Mapping[str, str]) -> str | None:
    if name is None:
        return None
    head, dot, rest = name.partition(".")
    if head in aliases:
        return aliases[head] + dot + rest
    return name


def _named(name: str, table: TypeTable) -> TypeExpr:
    short = name.rpartition(".")[2]
    if name in _PYTHON_NAMES or (
        name.startswith(("typing.", "builtins.")) and short in _PYTHON_NAMES
    ):
        return _PYTHON_NAMES[short]
    if short in _LIST_NAMES and name in (short, f"typing.{short}", f"collections.abc.{short}"):
        return {"list": "any"}
    if short in _MAPPING_NAMES and name in (short, f"typing.{short}", f"collections.abc.{short}"):
        return {"mapping": ["string", "any"]}
    if short in ("tuple", "Tuple"):
        return {"list": "any"}
    if "." not in name and isinstance(getattr(builtins, name, None), type):
        name = f"builtins.{name}"
    table.define(name)
    return name


# ---------------------------------------------------------------------------
# Checking values
# ---------------------------------------------------------------------------


def resolve_class(name: str) -> type | None:
    """The class a dotted name denotes, looked up among imported modules only."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj if isinstance(obj, type) else None
    return None


def check(value: Any, expr: TypeExpr, table: TypeTable) -> str | None:
    """None when ``value`` has type ``expr``; otherwise why not (for error messages)."""
    return _check(value, expr, table, 0)


def _check(value: Any, expr: TypeExpr, table: TypeTable, depth: int) -> str | None:
    if depth > 64:
        return "the type nests too deeply (a recursive custom type?)"
    if isinstance(expr, str):
        if expr == "any":
            return None
        if expr == "string":
            return None if isinstance(value, str) else _not(value, "a string")
        if expr == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return None if ok else _not(value, "an integer")
        if expr == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return None if ok else _not(value, "a number")
        if expr == "boolean":
            return None if isinstance(value, bool) else _not(value, "a boolean")
        if expr == "null":
            return None if value is None else _not(value, "null")
        if expr in table:
            structure = table.structure(expr)
            if structure:
                inner = (
                    structure.get("is_a", structure) if isinstance(structure, dict) else structure
                )
                return _check(value, inner, table, depth + 1)
            cls = resolve_class(expr)
            if cls is not None and not isinstance(value, cls):
                return _not(value, f"a {expr}")
            return None
        return f"type {expr!r} is not defined"
    ((key, arg),) = expr.items()
    if key == "is_a":
        return _check(value, arg, table, depth + 1)
    if key == "union":
        reasons = [_check(value, member, table, depth + 1) for member in arg]
        if any(r is None for r in reasons):
            return None
        return _not(value, "one of " + ", ".join(describe(m) for m in arg))
    if key == "list":
        if not isinstance(value, (list, tuple)):
            return _not(value, "a list")
        for index, item in enumerate(value):
            why = _check(item, arg, table, depth + 1)
            if why is not None:
                return f"item {index}: {why}"
        return None
    if key == "tuple":
        if not isinstance(value, (list, tuple)):
            return _not(value, f"a tuple of {len(arg)}")
        if len(value) != len(arg):
            return f"{_show(value)} has {len(value)} items, not {len(arg)}"
        for index, (item, member) in enumerate(zip(value, arg, strict=True)):
            why = _check(item, member, table, depth + 1)
            if why is not None:
                return f"item {index}: {why}"
        return None
    if key == "mapping":
        if not isinstance(value, Mapping):
            return _not(value, "a mapping")
        if isinstance(arg, dict):
            missing = [k for k in arg if k not in value]
            extra = [k for k in value if k not in arg]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing key(s) {missing}")
                if extra:
                    parts.append(f"unexpected key(s) {extra}")
                return f"{_show(value)}: " + ", ".join(parts)
            for k, member in arg.items():
                why = _check(value[k], member, table, depth + 1)
                if why is not None:
                    return f"key {k!r}: {why}"
            return None
        for k, v in value.items():
            why = _check(k, arg[0], table, depth + 1)
            if why is not None:
                return f"key {k!r}: {why}"
            why = _check(v, arg[1], table, depth + 1)
            if why is not None:
                return f"key {k!r}: {why}"
        return None
    return f"unknown type structure {key!r}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _not(value: Any, what: str) -> str:
    return f"{_show(value)} ({type(value).__name__}) is not {what}"


# ---------------------------------------------------------------------------
# Static compatibility between an output and an input
# ---------------------------------------------------------------------------


def assignable(src: TypeExpr, dst: TypeExpr, table: TypeTable) -> bool:
    """Can a value of type ``src`` be passed where ``dst`` is expected?"""
    return _assignable(src, dst, table, 0)


def _expand(expr: TypeExpr, table: TypeTable) -> TypeExpr:
    """A named structured type replaced by its structure (simple and is_a names kept)."""
    if isinstance(expr, str) and expr in table:
        structure = table.structure(expr)
        if structure and not (isinstance(structure, dict) and "is_a" in structure):
            return structure
    return expr


def _assignable(src: TypeExpr, dst: TypeExpr, table: TypeTable, depth: int) -> bool:
    if depth > 64:
        return True
    if src == dst or dst == "any" or src == "any":
        return True
    src, dst = _expand(src, table), _expand(dst, table)
    if src == dst:
        return True
    if isinstance(src, dict) and "union" in src:
        return all(_assignable(m, dst, table, depth + 1) for m in src["union"])
    if isinstance(dst, dict) and "union" in dst:
        return any(_assignable(src, m, table, depth + 1) for m in dst["union"])
    if src == "integer" and dst == "number":
        return True
    if isinstance(src, str) and src in table:
        structure = table.structure(src)
        if isinstance(structure, dict) and "is_a" in structure:
            return _assignable(structure["is_a"], dst, table, depth + 1)
        if isinstance(dst, str) and dst in table and not table.structure(dst):
            a, b = resolve_class(src), resolve_class(dst)
            return a is not None and b is not None and issubclass(a, b)
        return False
    if not (isinstance(src, dict) and isinstance(dst, dict)):
        return False
    ((skey, sarg),) = src.items()
    ((dkey, darg),) = dst.items()
    if dkey == "list":
        if skey == "list":
            return _assignable(sarg, darg, table, depth + 1)
        if skey == "tuple":
            return all(_assignable(s, darg, table, depth + 1) for s in sarg)
        return False
    if dkey == "tuple":
        if skey == "tuple":
            return len(sarg) == len(darg) and all(
                _assignable(s, d, table, depth + 1) for s, d in zip(sarg, darg, strict=True)
            )
        return False
    if dkey == "mapping" and skey == "mapping":
        if isinstance(darg, list):
            if isinstance(sarg, list):
                return _assignable(sarg[0], darg[0], table, depth + 1) and _assignable(
                    sarg[1], darg[1], table, depth + 1
                )
            return _assignable("string", darg[0], table, depth + 1) and all(
                _assignable(v, darg[1], table, depth + 1) for v in sarg.values()
            )
        if isinstance(sarg, dict):
            return set(sarg) == set(darg) and all(
                _assignable(sarg[k], darg[k], table, depth + 1) for k in darg
            )
        return False
    return False


# ---------------------------------------------------------------------------
# Values from text (command-line parameters) and from defaults
# ---------------------------------------------------------------------------

_TRUE: Final = {"true", "yes", "on", "1"}
_FALSE: Final = {"false", "no", "off", "0"}


def coerce_text(text: str, expr: TypeExpr, table: TypeTable) -> Any:
    """Parse a command-line value as the type expects; ValueError says why not."""
    if expr == "string":
        return text
    if expr == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if expr == "number":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return int(text) if text.strip().lstrip("+-").isdigit() else value
    if expr == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (true/false, yes/no, 1/0)")
    if expr == "null":
        if text.strip().lower() in ("null", "none", ""):
            return None
        raise ValueError(f"{text!r} is not null")
    parsed: Any
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = text
    why = check(parsed, expr, table)
    if why is not None:
        raise ValueError(why)
    return parsed


def infer(value: Any) -> TypeExpr:
    """The type of a default value written in a document (``World`` -> ``string``)."""
    if value is None:
        return "any"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return {"list": "any"}
    if isinstance(value, dict):
        return {"mapping": ["string", "any"]}
    return "any"
