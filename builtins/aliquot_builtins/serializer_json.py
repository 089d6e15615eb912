"""The ``json`` serializer: orjson, with explicit type tags so values come back as the same type.

Payload: one flag byte, then JSON. ``J`` means plain JSON -- dicts with string
keys, lists, strings, ints, finite floats, booleans and None, nothing else --
and loads with a single ``orjson.loads``. ``T`` means the JSON carries type
tags, objects of the form ``{"$t": kind, ...}``:

============  ============================================================
kind          value
============  ============================================================
tuple         ``v``: list of items
set           ``v``: list of items (frozenset: ``frozenset``)
dict          ``v``: list of ``[key, value]`` pairs (non-string keys, or a
              user key ``"$t"``, which would otherwise read as a tag)
float         ``v``: ``"nan"``, ``"inf"`` or ``"-inf"``
int           ``v``: decimal string (beyond 64 bits)
bytes         ``v``: base64 (bytearray: ``bytearray``)
datetime      ``v``: ISO 8601 (``date``, ``time`` likewise); timedelta:
              ``v`` = [days, seconds, microseconds]
uuid          ``v``: canonical string; decimal: ``v`` = string
complex       ``v``: [real, imag]
path          ``v``: string (``pathlib.Path`` / ``PurePosixPath`` / ``PureWindowsPath`` in ``k``)
enum          ``c``: ``module:qualname``, ``v``: the member's value
attrs         ``c``: ``module:qualname``, ``v``: {init argument: value}
dataclass     ``c``: ``module:qualname``, ``v``: {field: value}
namedtuple    ``c``: ``module:qualname``, ``v``: list of items
============  ============================================================

Classes named in tags are looked up among modules *already imported*; a
stored value never makes aliquot import a module (that would let whoever can
write the store choose code to run). Subclasses of the builtin types other
than enums and namedtuples are refused, so another serializer (pickle) takes
them rather than silently losing their type.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import gc
import math
import pathlib
import sys
import threading
import types
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import orjson

from aliquot import SerializationError, SerializerContext, hookimpl

_PLAIN = frozenset({str, int, bool, type(None), float, dict, list})
_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_is_float = float.__instancecheck__
_is_dict = dict.__instancecheck__
_is_list = list.__instancecheck__
_MAX_DEPTH = 250
#: Python nesting the tagged encoding allows (a tag adds a JSON level; orjson stops at 255).
_MAX_TAGGED_DEPTH = 120


def is_plain(value: Any) -> bool:
    """True when ``value`` is plain JSON that orjson round-trips exactly.

    Walks the structure level by level with C-level helpers
    (``gc.get_referents``, ``map(type, ...)``): no Python call per element,
    which keeps a 100,000-entry dict in the low milliseconds.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return kind in _PLAIN and (kind is not float or math.isfinite(value))
    frontier: list[Any] = [value]
    for _ in range(_MAX_DEPTH):
        # Referents of dicts whose keys are all strings are just their values.
        refs = gc.get_referents(*frontier)
        types = set(map(type, refs))
        if not types <= _PLAIN:
            return False
        if float in types:
            try:
                if not math.isfinite(math.fsum(filter(_is_float, refs))):
                    return False
            except (OverflowError, ValueError):  # huge sums, or inf + -inf
                return False
        has_dict = dict in types
        has_list = list in types
        if has_dict and has_list:
            frontier = [*filter(_is_dict, refs), *filter(_is_list, refs)]
        elif has_dict:
            frontier = list(filter(_is_dict, refs))
        elif has_list:
            frontier = list(filter(_is_list, refs))
        else:
            return True
    return False


def _class_ref(kind: type) -> str:
    return f"{kind.__module__}:{kind.__qualname__}"


def _resolve_class(ref: str) -> type:
    module_name, _, qualname = ref.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise SerializationError(
            f"stored value has type {ref.replace(':', '.')}; import {module_name!r} before loading "
            "it (aliquot never imports modules named in stored data)"
        )
    # Plain dictionary lookups: a module's __getattr__ (PEP 562) or a class's
    # descriptors could import or run code chosen by whoever wrote the store.
    obj: Any = module
    for part in qualname.split("."):
        namespace = vars(obj) if isinstance(obj, types.ModuleType) else getattr(obj, "__dict__", {})
        obj = namespace.get(part)
        if obj is None:
            raise SerializationError(f"stored value has type {ref}, which no longer exists")
    if not isinstance(obj, type):
        raise SerializationError(f"stored type {ref} is not a class")
    return obj


def _encode(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_TAGGED_DEPTH:
        raise SerializationError("value is nested too deeply for JSON")
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -(1 << 63) <= value < (1 << 64):
            return value
        return {"$t": "int", "v": str(value)}
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$t": "float", "v": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    d = depth + 1
    if kind is list:
        return [_encode(v, d) for v in value]
    if kind is dict:
        if "$t" not in value and all(type(k) is str for k in value):
            return {k: _encode(v, d) for k, v in value.items()}
        return {"$t": "dict", "v": [[_encode(k, d), _encode(v, d)] for k, v in value.items()]}
    if kind is tuple:
        return {"$t": "tuple", "v": [_encode(v, d) for v in value]}
    if kind is set or kind is frozenset:
        items = [_encode(v, d) for v in value]
        try:
            items.sort(key=orjson.dumps)  # canonical order: equal sets give equal bytes
        except TypeError:
            pass
        return {"$t": kind.__name__, "v": items}
    if kind is bytes or kind is bytearray:
        return {"$t": kind.__name__, "v": base64.b64encode(value).decode()}
    if kind is dt.datetime or kind is dt.date or kind is dt.time:
        return {"$t": kind.__name__, "v": value.isoformat()}
    if kind is dt.timedelta:
        return {"$t": "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if kind is uuid.UUID:
        return {"$t": "uuid", "v": str(value)}
    if kind is decimal.Decimal:
        return {"$t": "decimal", "v": str(value)}
    if kind is complex:
        return {"$t": "complex", "v": [_encode(value.real, d), _encode(value.imag, d)]}
    if isinstance(value, pathlib.PurePath) and kind.__module__ == "pathlib":
        return {"$t": "path", "k": kind.__name__, "v": str(value)}
    if isinstance(value, enum.Enum):
        return {"$t": "enum", "c": _class_ref(kind), "v": _encode(value.value, d)}
    if attrs.has(kind):
        fields = {
            f.alias or f.name: _encode(getattr(value, f.name), d)
            for f in attrs.fields(kind)
            if f.init
        }
        return {"$t": "attrs", "c": _class_ref(kind), "v": fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _encode(getattr(value, f.name), d) for f in dataclasses.fields(value) if f.init
        }
        return {"$t": "dataclass", "c": _class_ref(kind), "v": fields}
    if isinstance(value, tuple) and hasattr(kind, "_fields"):
        return {"$t": "namedtuple", "c": _class_ref(kind), "v": [_encode(v, d) for v in value]}
    raise SerializationError(f"JSON cannot carry a {kind.__module__}.{kind.__qualname__}")


def _tuple(node: dict[str, Any]) -> Any:
    return tuple(_decode(v) for v in node["v"])


def _dict(node: dict[str, Any]) -> Any:
    return {_decode(k): _decode(v) for k, v in node["v"]}


def _float(node: dict[str, Any]) -> Any:
    return float(node["v"])


def _path(node: dict[str, Any]) -> Any:
    kinds = {
        "PosixPath": pathlib.Path,
        "WindowsPath": pathlib.Path,
        "Path": pathlib.Path,
        "PurePosixPath": pathlib.PurePosixPath,
        "PureWindowsPath": pathlib.PureWindowsPath,
        "PurePath": pathlib.PurePath,
    }
    return kinds.get(node.get("k", "Path"), pathlib.Path)(node["v"])


def _enum(node: dict[str, Any]) -> Any:
    cls = _resolve_class(node["c"])
    if not issubclass(cls, enum.Enum):
        raise SerializationError(f"stored enum type {node['c']} is not an Enum")
    return cls(_decode(node["v"]))


def _attrs(node: dict[str, Any]) -> Any:
    cls = _resolve_class(node["c"])
    if not attrs.has(cls):
        raise SerializationError(f"stored attrs type {node['c']} is not an attrs class")
    return cls(**{k: _decode(v) for k, v in node["v"].items()})


def _dataclass(node: dict[str, Any]) -> Any:
    cls = _resolve_class(node["c"])
    if not dataclasses.is_dataclass(cls):
        raise SerializationError(f"stored dataclass type {node['c']} is not a dataclass")
    return cls(**{k: _decode(v) for k, v in node["v"].items()})


def _namedtuple(node: dict[str, Any]) -> Any:
    cls = _resolve_class(node["c"])
    if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise SerializationError(f"stored namedtuple type {node['c']} is not a namedtuple")
    return cls(*[_decode(v) for v in node["v"]])


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tuple": _tuple,
    "set": lambda n: {_decode(v) for v in n["v"]},
    "frozenset": lambda n: frozenset(_decode(v) for v in n["v"]),
    "dict": _dict,
    "float": _float,
    "int": lambda n: int(n["v"]),
    "bytes": lambda n: base64.b64decode(n["v"]),
    "bytearray": lambda n: bytearray(base64.b64decode(n["v"])),
    "datetime": lambda n: dt.datetime.fromisoformat(n["v"]),
    "date": lambda n: dt.date.fromisoformat(n["v"]),
    "time": lambda n: dt.time.fromisoformat(n["v"]),
    "timedelta": lambda n: dt.timedelta(days=n["v"][0], seconds=n["v"][1], microseconds=n["v"][2]),
    "uuid": lambda n: uuid.UUID(n["v"]),
    "decimal": lambda n: decimal.Decimal(n["v"]),
    "complex": lambda n: complex(_decode(n["v"][0]), _decode(n["v"][1])),
    "path": _path,
    "enum": _enum,
    "attrs": _attrs,
    "dataclass": _dataclass,
    "namedtuple": _namedtuple,
}


#: JSON nesting a payload may have: orjson writes at most 255 levels, so deeper data was
#: not written by this serializer. Counted explicitly (per thread), so the answer never
#: depends on the interpreter's recursion limit (which other libraries raise).
_MAX_DECODE_DEPTH = 255
_decoding = threading.local()


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is not list and kind is not dict:
        return value
    depth = getattr(_decoding, "depth", 0)
    if depth >= _MAX_DECODE_DEPTH:
        raise SerializationError(
            f"damaged JSON payload: nested deeper than {_MAX_DECODE_DEPTH} levels"
        )
    _decoding.depth = depth + 1
    try:
        if kind is list:
            return [_decode(v) for v in value]
        tag = value.get("$t")
        if tag is None:
            return {k: _decode(v) for k, v in value.items()}
        decoder = _DECODERS.get(tag)
        if decoder is None:
            raise SerializationError(f"unknown JSON type tag {tag!r} (written by a newer aliquot?)")
        return decoder(value)
    finally:
        _decoding.depth = depth


class JsonSerializer:
    """orjson with type tags (see the module docstring for the format)."""

    name = "json"
    version = "1"
    priority = 10
    types: tuple[type, ...] = (
        dict, list, tuple, str, int, float, bool, type(None), set, frozenset,
        bytes, bytearray, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID,
        decimal.Decimal, complex, pathlib.PurePath, enum.Enum,
    )  # fmt: skip

    def accepts(self, value: Any) -> bool:
        kind = type(value)
        return attrs.has(kind) or (dataclasses.is_dataclass(value) and not isinstance(value, type))

    def dumps(self, value: Any, ctx: SerializerContext) -> Sequence[bytes]:
        if is_plain(value):
            try:
                return [b"J", orjson.dumps(value, option=_OPTIONS)]  # no copy to prepend
            except orjson.JSONEncodeError:
                pass  # e.g. an int beyond 64 bits: take the tagged path
        try:
            return [b"T", orjson.dumps(_encode(value))]
        except orjson.JSONEncodeError as exc:
            raise SerializationError(f"JSON cannot carry this value: {exc}") from exc

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        if not data:
            raise SerializationError("empty JSON payload")
        flag = data[0]
        try:
            value = orjson.loads(data[1:])
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"damaged JSON payload: {exc}") from exc
        if flag == ord("J"):
            return value
        if flag != ord("T"):
            raise SerializationError(f"unknown JSON payload flag {bytes([flag])!r}")
        try:
            return _decode(value)
        except SerializationError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
            # binascii.Error is a ValueError
            raise SerializationError(
                f"damaged JSON payload: malformed type tag ({type(exc).__name__}: {exc})"
            ) from exc


@hookimpl(trylast=True)
def aliquot_register_serializers(register: Callable[..., None]) -> None:
    register(JsonSerializer())
