"""Canonical fingerprints of values: equal values give equal digests, in every process.

Plugins key things by value (the cache, record identities); this is the one
canonical form they share (``aliquot.fingerprint``).

A fingerprint is SHA-256 over a canonical JSON form (orjson, sorted keys) in
which every non-JSON type carries an explicit tag: ``(1, 2)`` and ``[1, 2]``
differ, ``1`` and ``1.0`` and ``True`` differ, ``Params(a=1)`` and
``OtherParams(a=1)`` differ (the class is part of it), and sets are sorted so
their order never matters. A value with no canonical form (an open file, a
lock, an arbitrary object) raises :class:`Unfingerprintable` -- the cache then
does not cache that node and says why; it never builds a key from part of a
value.

A class can give its instances a canonical form by defining
``__aliquot_fingerprint__(self)``, returning any value that has one (the
class's qualified name is always added).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import math
import pathlib
import sys
import uuid
from typing import Any

import attrs
import orjson

from ._errors import AliquotError

_MAX_DEPTH = 100


class Unfingerprintable(AliquotError):
    """A value has no canonical form (the message says which type and where)."""


def _qualname(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def canonical(value: Any, depth: int = 0) -> Any:
    """The canonical JSON-able form of ``value`` (see the module docstring)."""
    if depth > _MAX_DEPTH:
        raise Unfingerprintable("a value nested more than 100 levels deep")
    kind = type(value)
    if value is None or kind is str or kind is bool:
        return value
    if kind is int:
        return value if -(1 << 63) <= value < (1 << 63) else ["int", str(value)]
    if kind is float:
        return value if math.isfinite(value) else ["float", repr(value)]
    d = depth + 1
    if kind is list:
        return [canonical(v, d) for v in value]
    if kind is tuple:
        return ["tuple", [canonical(v, d) for v in value]]
    if kind is dict:
        if all(type(k) is str for k in value):
            return ["dict", {k: canonical(v, d) for k, v in value.items()}]
        pairs = [[canonical(k, d), canonical(v, d)] for k, v in value.items()]
        pairs.sort(key=lambda pair: orjson.dumps(pair[0], option=orjson.OPT_SORT_KEYS))
        return ["dict*", pairs]
    if kind is set or kind is frozenset:
        items = [canonical(v, d) for v in value]
        items.sort(key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        return [kind.__name__, items]
    if kind is bytes or kind is bytearray:
        return [kind.__name__, hashlib.sha256(value).hexdigest()]
    if isinstance(value, enum.Enum):
        return ["enum", _qualname(kind), canonical(value.value, d)]
    custom = getattr(value, "__aliquot_fingerprint__", None)
    if custom is not None and callable(custom):
        return ["custom", _qualname(kind), canonical(custom(), d)]
    if attrs.has(kind):
        fields = {f.name: canonical(getattr(value, f.name), d) for f in attrs.fields(kind)}
        return ["attrs", _qualname(kind), fields]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name), d) for f in dataclasses.fields(value)}
        return ["dataclass", _qualname(kind), fields]
    if isinstance(value, tuple) and hasattr(kind, "_fields"):
        return ["namedtuple", _qualname(kind), [canonical(v, d) for v in value]]
    if kind in (dt.datetime, dt.date, dt.time):
        return [kind.__name__, value.isoformat()]
    if kind is dt.timedelta:
        return ["timedelta", [value.days, value.seconds, value.microseconds]]
    if kind in (uuid.UUID, decimal.Decimal) or isinstance(value, pathlib.PurePath):
        return [_qualname(kind), str(value)]
    if kind is complex:
        return ["complex", [canonical(value.real, d), canonical(value.imag, d)]]
    if kind.__module__ == "numpy" and "numpy" in sys.modules:
        return _numpy(value, d)
    if isinstance(value, type):
        return ["class", _qualname(value)]
    raise Unfingerprintable(f"a {_qualname(kind)} has no canonical form")


def _numpy(value: Any, depth: int) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise Unfingerprintable("a numpy array of objects has no canonical form")
        data = np.ascontiguousarray(value)
        return [
            "ndarray",
            value.dtype.str if not value.dtype.names else repr(value.dtype.descr),
            list(value.shape),
            hashlib.sha256(data.data.cast("B") if data.size else b"").hexdigest(),
        ]
    if isinstance(value, np.generic):
        return ["npscalar", value.dtype.str, canonical(value.item(), depth)]
    raise Unfingerprintable(f"a {_qualname(type(value))} has no canonical form")


def fingerprint(value: Any) -> str:
    """SHA-256 hex of the canonical form of ``value``.

    Raises:
        Unfingerprintable: the value (or something inside it) has no canonical form.
    """
    return hashlib.sha256(orjson.dumps(canonical(value), option=orjson.OPT_SORT_KEYS)).hexdigest()
