"""Which parameters a stage reads.

A stage's cache key covers the parameters it *reads*, not every parameter of
its record: changing ``seed`` must not recompute a stage that only reads
``n``. While a stage runs, ``record.params`` is a *tracked copy* of the
parameter object: an instance of a subclass made once per parameter class,
whose ``__getattribute__`` notes each field read as a dotted path
(``record.params.n``, ``record.params.model.lr``) before returning the value.
The copy looks like the original to the stage -- ``isinstance``, ``==``,
``repr``, ``attrs.asdict``, ``dataclasses.asdict``, ``attrs.evolve`` and
``pickle`` all work, and ``__class__`` is the original class -- and it is a
copy, so a stage that mutates it changes nothing outside itself.

Whole-object reads are noted as the object's own path: pickling or copying
the parameters, ``vars(params)``, or parameters of a kind that cannot be
tracked field by field (dicts, named tuples, objects with slots only, ...).
Any tracked object also notes ``<path>.__class__``: two parameter classes with
equal fields are different parameters.

What tracking cannot see: code that reads an object's memory without
attribute access (``orjson.dumps`` of a dataclass). Such a stage should
convert first (``dataclasses.asdict(record.params)``) or be declared with
``track_reads=False``, which keys it on all of its record's parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from typing import Any, Final

import attrs

#: Values returned as they are (their reads end at their own path).
_LEAVES: Final = (str, bytes, int, float, bool, complex, type(None))


class Reads:
    """The paths one call read (an ordered set)."""

    __slots__ = ("paths",)

    def __init__(self) -> None:
        self.paths: dict[str, None] = {}

    def add(self, path: str) -> None:
        self.paths[path] = None

    def result(self) -> list[str]:
        """Sorted paths, without those a shorter path already covers."""
        out: list[str] = []
        for path in sorted(self.paths):
            if out and path.startswith(out[-1] + "."):
                continue
            out.append(path)
        return out


def track(value: Any, path: str, reads: Reads) -> Any:
    """``value`` as a stage should see it at ``path``: a tracked copy, or itself (a read)."""
    if isinstance(value, _LEAVES):
        reads.add(path)
        return value
    tracked_class = _tracked_class(type(value))
    if tracked_class is None:
        reads.add(path)
        return value
    try:
        instance = tracked_class._aliquot_copy(value)  # type: ignore[attr-defined]
    except Exception:  # an unusual layout: fall back to a whole read
        reads.add(path)
        return value
    object.__setattr__(instance, "_aliquot_reads", reads)
    object.__setattr__(instance, "_aliquot_path", path)
    reads.add(path + ".__class__")
    return instance


_CLASSES: dict[type, type | None] = {}
_LOCK = threading.Lock()


def _tracked_class(cls: type) -> type | None:
    try:
        return _CLASSES[cls]
    except KeyError:
        pass
    with _LOCK:
        if cls not in _CLASSES:
            _CLASSES[cls] = _make_tracked_class(cls)
    return _CLASSES[cls]


def _field_names(cls: type) -> tuple[str, ...] | None:
    if attrs.has(cls):
        return tuple(f.name for f in attrs.fields(cls))
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return None


def _make_tracked_class(cls: type) -> type | None:
    """A subclass of ``cls`` that notes field reads, or None when ``cls`` cannot be tracked."""
    fields = _field_names(cls)
    if fields is None or getattr(cls, "__new__", object.__new__) is not object.__new__:
        return None
    field_set = frozenset(fields)
    has_dict = _has_instance_dict(cls)

    def _aliquot_copy(tracked: type, original: Any) -> Any:
        instance: Any = object.__new__(tracked)
        if has_dict:
            vars_of = object.__getattribute__(original, "__dict__")
            object.__getattribute__(instance, "__dict__").update(vars_of)
        for name in fields:
            try:
                value = object.__getattribute__(original, name)
            except AttributeError:
                continue
            object.__setattr__(instance, name, value)
        return instance

    def __getattribute__(self: Any, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in field_set:
            return track(
                value,
                object.__getattribute__(self, "_aliquot_path") + "." + name,
                object.__getattribute__(self, "_aliquot_reads"),
            )
        if name == "__dict__":
            _whole(self)
        return value

    def _original(self: Any) -> Any:
        """An untracked copy (noting a whole read)."""
        _whole(self)
        plain: Any = object.__new__(cls)
        if has_dict:
            object.__getattribute__(plain, "__dict__").update(
                object.__getattribute__(self, "__dict__")
            )
        for name in fields:
            try:
                object.__setattr__(plain, name, object.__getattribute__(self, name))
            except AttributeError:
                continue
        return plain

    def __reduce_ex__(self: Any, protocol: Any) -> Any:
        return _original(self).__reduce_ex__(protocol)

    def __copy__(self: Any) -> Any:
        return copy.copy(_original(self))

    def __deepcopy__(self: Any, memo: Any) -> Any:
        return copy.deepcopy(_original(self), memo)

    namespace: dict[str, Any] = {
        "__slots__": ("_aliquot_reads", "_aliquot_path"),
        "__getattribute__": __getattribute__,
        "__class__": property(lambda self: cls),
        "__reduce_ex__": __reduce_ex__,
        "__copy__": __copy__,
        "__deepcopy__": __deepcopy__,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "_aliquot_copy": classmethod(_aliquot_copy),
    }
    try:
        return type(cls.__name__, (cls,), namespace)
    except Exception:  # final classes, metaclass conflicts, __init_subclass__ rules
        return None


def _has_instance_dict(cls: type) -> bool:
    return any("__dict__" in vars(base) for base in cls.__mro__ if base is not object)


def _whole(tracked: Any) -> None:
    reads: Reads = object.__getattribute__(tracked, "_aliquot_reads")
    reads.add(object.__getattribute__(tracked, "_aliquot_path"))
