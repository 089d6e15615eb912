"""Name-keyed registries filled by the ``aliquot_register_*`` hooks.

Each entry remembers the plugin that registered it. A second registration
under a taken name is refused with both plugins named, unless exactly one of
the two says ``replace=True`` -- overriding a builtin is then explicit and
visible in ``aliquot plugins`` and in every run manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import attrs

from ._errors import RegistrationError, UnknownNameError

T = TypeVar("T")


@attrs.frozen
class Registration(Generic[T]):
    """One registered object: its name, the object, the plugin, what it replaced."""

    name: str
    obj: T
    plugin: str
    replace: bool = False
    replaced: str | None = None


class Registry(Generic[T]):
    """A mapping name -> object for one kind (serializer, store, executor...)."""

    def __init__(self, kind: str, *, hint: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Registration[T]] = {}
        self._hint = hint

    def add(self, name: str, obj: T, plugin: str, *, replace: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise RegistrationError(
                f"plugin {plugin!r} registered a {self.kind} without a name: {obj!r}"
            )
        current = self._entries.get(name)
        if current is None:
            self._entries[name] = Registration(name, obj, plugin, replace)
            return
        if replace and not current.replace:
            self._entries[name] = Registration(name, obj, plugin, True, current.plugin)
            return
        if current.replace and not replace:
            # The override was registered first (pluggy calls later plugins first).
            self._entries[name] = attrs.evolve(current, replaced=plugin)
            return
        raise RegistrationError(
            f"{self.kind} {name!r} from plugin {plugin!r} conflicts with {self.kind} {name!r} "
            f"registered by plugin {current.plugin!r}. Block one of them (`-p no:NAME`), or "
            "pass replace=True to register() to override on purpose."
        )

    def get(self, name: str) -> T:
        entry = self._entries.get(name)
        if entry is None:
            hint = self._hint(name) if self._hint else ""
            raise UnknownNameError(self.kind, name, list(self._entries), hint)
        return entry.obj

    def entry(self, name: str) -> Registration[T]:
        self.get(name)
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, e.obj) for name, e in self._entries.items()]

    def entries(self) -> list[Registration[T]]:
        return list(self._entries.values())
