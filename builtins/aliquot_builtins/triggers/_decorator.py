"""``@trigger``: marking component methods as jobs, and checking them when the class is defined.

A trigger is a method plus three things: the events it runs on, the trigger
methods it waits for (``depends_on``) and the fields that must be set for it
to run (``requires``). ``collect_triggers`` gathers them over a class's MRO
and refuses, at class definition, what Superduper only found out at run time
or never: an unknown ``depends_on`` name, a dependency that does not run on
the same event, a ``requires`` naming no field, and a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import attrs

from aliquot import AliquotError

F = TypeVar("F", bound=Callable[..., Any])

_EVENT: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: The attribute ``@trigger`` puts on a function.
MARK: Final = "__aliquot_trigger__"


class TriggerDefinitionError(AliquotError):
    """A ``@trigger`` declaration is invalid (raised when the class is defined)."""


@attrs.frozen
class Trigger:
    """One trigger method of a component class."""

    name: str
    events: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()


def _names(value: str | Iterable[str] | None, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item.isidentifier():
            raise TriggerDefinitionError(
                f"@trigger on {where}: {what} must be method or field names, got {item!r}"
            )
    return tuple(dict.fromkeys(items))


def trigger(
    *events: str,
    depends_on: str | Iterable[str] | None = None,
    requires: str | Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Mark a component method as a job that runs on ``events`` (``"apply"``, ``"retrain"``).

    ``depends_on`` names other trigger methods that must succeed first;
    ``requires`` names fields that must not be ``None`` for this trigger to
    run (otherwise it is recorded as skipped), and on an *update* apply the
    trigger re-runs only when one of them changed. Both are checked when the
    class is defined.
    """
    if not events or (len(events) == 1 and callable(events[0])):
        raise TriggerDefinitionError(
            "@trigger needs at least one event name: write @trigger('apply')"
        )
    for event in events:
        if not isinstance(event, str) or not _EVENT.match(event):
            raise TriggerDefinitionError(
                f"@trigger: invalid event {event!r} (lowercase letters, digits and _, "
                "starting with a letter)"
            )

    def mark(fn: F) -> F:
        where = getattr(fn, "__qualname__", repr(fn))
        if not callable(fn):
            raise TriggerDefinitionError(f"@trigger decorates methods, not {fn!r}")
        info = Trigger(
            name=getattr(fn, "__name__", ""),
            events=tuple(dict.fromkeys(events)),
            depends_on=_names(depends_on, "depends_on", where),
            requires=_names(requires, "requires", where),
        )
        setattr(fn, MARK, info)
        return fn

    return mark


def collect_triggers(cls: type, fields: Iterable[str]) -> dict[str, Trigger]:
    """The trigger methods of ``cls`` (over its MRO), checked.

    Raises:
        TriggerDefinitionError: unknown ``depends_on`` or ``requires`` names,
            a dependency that does not run on one of the dependant's events,
            or a dependency cycle (the error names it).
    """
    found: dict[str, Trigger] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            info = getattr(fn, MARK, None)
            if isinstance(info, Trigger):
                found[name] = attrs.evolve(info, name=name)
            elif name in found:
                del found[name]  # overridden by a plain method: no longer a trigger
    field_names = set(fields)
    where = cls.__qualname__
    for info in found.values():
        for dep in info.depends_on:
            if dep == info.name:
                raise TriggerDefinitionError(
                    f"{where}.{info.name}: a trigger cannot depend on itself"
                )
            if dep not in found:
                known = ", ".join(sorted(found)) or "none"
                raise TriggerDefinitionError(
                    f"{where}.{info.name}: depends_on names {dep!r}, which is not a trigger "
                    f"method of {where} (its triggers: {known})"
                )
            missing = [e for e in info.events if e not in found[dep].events]
            if missing:
                raise TriggerDefinitionError(
                    f"{where}.{info.name}: depends_on {dep!r}, which does not run on "
                    f"event {missing[0]!r} (it runs on {', '.join(found[dep].events)})"
                )
        for field in info.requires:
            if field not in field_names:
                raise TriggerDefinitionError(
                    f"{where}.{info.name}: requires names {field!r}, which is not a field of "
                    f"{where} (fields: {', '.join(sorted(field_names)) or 'none'})"
                )
    cycle = find_cycle({name: info.depends_on for name, info in found.items()})
    if cycle:
        raise TriggerDefinitionError(
            f"{where}: the triggers depend on each other in a cycle: {' -> '.join(cycle)}"
        )
    return found


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle of the graph ``node -> nodes it depends on`` (``[a, b, a]``), or ``[]``."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in edges.get(node, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def order(triggers: Mapping[str, Trigger], names: Iterable[str]) -> list[str]:
    """``names`` in an order where every trigger comes after those it depends on."""
    wanted = list(names)
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in triggers[name].depends_on:
            if dep in wanted:
                visit(dep)
        done.append(name)

    for name in wanted:
        visit(name)
    return done
