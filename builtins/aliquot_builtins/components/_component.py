"""The ``Component`` base class: annotated fields, identity, lifecycle methods.

A subclass declares annotated fields and nothing else; ``__init_subclass__``
turns it into an attrs class (``identifier`` first and positional, every other
field keyword-only), checks its declarations -- field names, ``non_breaking``,
the ``@trigger`` methods -- and makes ``setup`` run once per instance. All of
that happens when the class is defined, so a mistake is an error at import,
never in the middle of an apply.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import threading
import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final, cast

import attrs

from aliquot import AliquotError

from ..triggers._decorator import Trigger, collect_triggers

_IDENTIFIER: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
#: Names a field may not take: they are the component's own attributes.
RESERVED: Final = frozenset(
    {
        "version",
        "uuid",
        "huuid",
        "type_name",
        "encode",
        "decode",
        "postinit",
        "setup",
        "on_create",
        "cleanup",
        "triggers",
        "non_breaking",
        "fields",
        "children",
    }
)


class ComponentError(AliquotError):
    """A component is invalid, or an operation on stored components failed."""


class ComponentDefinitionError(ComponentError):
    """A ``Component`` subclass is declared wrongly (raised when the class is defined)."""


def _once(setup: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap ``setup`` so it runs once per instance, even when triggers race to call it."""

    @functools.wraps(setup)
    def run_once(self: Component) -> None:
        state = self.__dict__
        if state.get("_setup_done"):
            return
        with state["_setup_lock"]:
            if state.get("_setup_done"):
                return
            setup(self)
            state["_setup_done"] = True

    run_once.__aliquot_once__ = True  # type: ignore[attr-defined]
    return run_once


def is_classvar(annotation: Any) -> bool:
    """Whether an annotation (an object, or a string under postponed evaluation) is a ClassVar."""
    if isinstance(annotation, str):
        head = annotation.strip().split("[", 1)[0]
        return head in ("ClassVar", "typing.ClassVar", "t.ClassVar", "typing_extensions.ClassVar")
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _factory_defaults(cls: type) -> None:
    """Mutable defaults (``c: dict = {}``) become per-instance copies, as users mean."""
    for name, annotation in inspect.get_annotations(cls).items():
        if is_classvar(annotation):
            continue
        default = cls.__dict__.get(name, attrs.NOTHING)
        if isinstance(default, (list, dict, set)):
            setattr(cls, name, attrs.Factory(functools.partial(copy.deepcopy, default)))


@typing.dataclass_transform(kw_only_default=True, field_specifiers=(attrs.field,))
class _Declarative:
    """Tells type checkers that components are dataclass-like (PEP 681): ``identifier``
    positional, every other field keyword-only. At run time attrs does the work."""


class Component(_Declarative):
    """A declarative component: typed fields, stored as JSON plus content-addressed blobs.

    Subclasses annotate fields; there is no ``__init__`` to write::

        class Notifier(Component):
            a: int
            d: t.Callable | None = None

            @trigger("apply")
            def start(self): ...

        Notifier("n1", a=1)

    Class-level knobs:
        non_breaking: fields whose change is an *update* (same version) rather
            than a *breaking* change (a new version). Default: none, so every
            field breaks.

    Lifecycle methods a subclass may define: ``postinit`` (after construction
    and after loading), ``setup`` (before the first trigger runs, once per
    instance), ``on_create`` (after a new version is saved), ``cleanup``
    (when it is removed).
    """

    identifier: str = attrs.field(kw_only=False)
    #: Fields whose change keeps the version (see the class docstring).
    non_breaking: ClassVar[tuple[str, ...]] = ()
    #: name -> Trigger, collected and checked when the class is defined.
    triggers: ClassVar[dict[str, Trigger]] = {}
    #: Field names in declaration order, without ``identifier``.
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        own = {name: a for name, a in inspect.get_annotations(cls).items() if not is_classvar(a)}
        for name in own:
            if name in RESERVED or name.startswith("_"):
                raise ComponentDefinitionError(
                    f"{where}: a field may not be called {name!r} (reserved by Component)"
                )
            if name == "identifier":
                raise ComponentDefinitionError(
                    f"{where}: 'identifier' is the first field of every Component; do not "
                    "declare it again"
                )
        _factory_defaults(cls)
        if "__attrs_attrs__" in cls.__dict__:
            raise ComponentDefinitionError(
                f"{where}: do not decorate a Component with attrs/dataclass; it is one already"
            )
        try:
            attrs.define(
                cls,
                slots=False,
                kw_only=True,
                eq=False,
                repr=False,
                order=False,
                hash=False,
                auto_attribs=True,
                init=True,
                weakref_slot=False,
            )
        except (TypeError, ValueError, attrs.exceptions.PythonTooOldError) as exc:
            raise ComponentDefinitionError(f"{where}: {exc}") from exc
        names = tuple(a.name for a in attrs.fields(cast(Any, cls)) if a.name != "identifier")
        cls.fields = names
        non_breaking = cls.__dict__.get("non_breaking", cls.non_breaking)
        if isinstance(non_breaking, str):
            non_breaking = (non_breaking,)
        non_breaking = tuple(non_breaking)
        unknown = [n for n in non_breaking if n not in names]
        if unknown:
            raise ComponentDefinitionError(
                f"{where}: non_breaking names {unknown[0]!r}, which is not a field "
                f"(fields: {', '.join(names) or 'none'})"
            )
        cls.non_breaking = non_breaking
        cls.triggers = collect_triggers(cls, names)
        setup = cls.__dict__.get("setup")
        if callable(setup) and not getattr(setup, "__aliquot_once__", False):
            cls.setup = _once(setup)  # type: ignore[method-assign]

    def __attrs_post_init__(self) -> None:
        state = self.__dict__
        state["_setup_lock"] = threading.RLock()
        state.setdefault("_version", None)
        state.setdefault("_stored_uuid", None)
        ident = self.identifier
        if not isinstance(ident, str) or not _IDENTIFIER.fullmatch(ident):
            raise ComponentError(
                f"{type(self).__name__}: invalid identifier {ident!r} (1-100 characters: "
                "letters, digits, '_', '.', '-'; not starting with '.' or '-')"
            )
        self.postinit()

    # ------------------------------------------------------------ lifecycle

    def postinit(self) -> None:
        """Called right after construction, and after loading. Override freely."""

    @_once
    def setup(self) -> None:
        """Called before the first trigger runs, once per instance. Override freely."""

    def on_create(self) -> None:
        """Called after a new version is saved to the store. Override freely."""

    def cleanup(self) -> None:
        """Called when the component is removed from the store. Override freely."""

    # ------------------------------------------------------------- identity

    @classmethod
    def type_name(cls) -> str:
        """The name stores and ``huuid`` use: the class name."""
        return cls.__name__

    @property
    def uuid(self) -> str:
        """Identity: class, identifier and breaking fields (see ``spec/components.md``)."""
        from ._encoding import identity

        return identity(self).uuid

    @property
    def version(self) -> int | None:
        """The stored version this object is (set by ``apply`` and ``load``), else None."""
        version: int | None = self.__dict__.get("_version")
        return version

    @property
    def huuid(self) -> str:
        """``Class:identifier:uuid``."""
        return f"{self.type_name()}:{self.identifier}:{self.uuid}"

    def children(self) -> Iterator[Component]:
        """Components held by fields (directly or in lists, tuples and dicts), in field order."""
        for name in self.fields:
            yield from _components_in(getattr(self, name))

    # ------------------------------------------------------------ encoding

    def encode(self, kernel: Any = None) -> Any:
        """The encoded form: :class:`Encoded` (a JSON document plus blobs by digest).

        Values JSON cannot carry go through ``kernel``'s serializers (default:
        a process-wide ``memory://`` kernel).
        """
        from ._encoding import encode

        return encode(self, kernel)

    @classmethod
    def decode(cls, encoded: Any, kernel: Any = None) -> Component:
        """Rebuild a component from :meth:`encode`'s result (or its document and blobs)."""
        from ._encoding import decode

        return decode(encoded, kernel, expect=cls)

    # ------------------------------------------------------------ equality

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Component)
        if self.identifier != other.identifier:
            return False
        return all(values_equal(getattr(self, n), getattr(other, n)) for n in self.fields)

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        """Fields and identity only: what ``setup`` made (clients, models) stays behind,
        and a copy (a job under ``processes``) runs ``setup`` again where it lands."""
        state = {name: getattr(self, name) for name in ("identifier", *self.fields)}
        state["_version"] = self.__dict__.get("_version")
        state["_stored_uuid"] = self.__dict__.get("_stored_uuid")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_setup_lock"] = threading.RLock()

    def __repr__(self) -> str:
        parts = [repr(self.identifier)]
        parts += [f"{n}={_short(getattr(self, n))}" for n in self.fields]
        version = self.version
        tail = f" version={version}" if version is not None else ""
        return f"{type(self).__name__}({', '.join(parts)}){tail}"


attrs.define(
    Component, slots=False, eq=False, repr=False, order=False, hash=False, auto_attribs=True
)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _components_in(value: Any) -> Iterator[Component]:
    if isinstance(value, Component):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _components_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _components_in(item)


def values_equal(a: Any, b: Any) -> bool:
    """Equality that works for arrays (elementwise ``==`` is reduced) and nested containers."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a and b != b:
        return True  # nan
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        try:
            import numpy as np

            return bool(a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        except Exception:
            return False
    try:
        result = a == b
    except Exception:
        return False
    if isinstance(result, bool):
        return result
    try:
        return bool(result.all())
    except Exception:
        return False
