"""The ``triggers`` plugin: component methods run as ordered, recorded jobs.

- ``@trigger(event, ..., depends_on=..., requires=...)`` marks a method;
  the ``Component`` class checks the declarations when it is defined.
- The task type ``trigger`` plans a batch of jobs as a kernel graph, so jobs
  run on the kernel's executors, in dependency order, independent ones
  concurrently (``threads`` unless the kernel has another default).
- Job records (space ``trigger_jobs``) are listed by ``aliquot jobs ls|show``
  through the job source ``trigger``.
- ``kernel.trigger(component, "retrain", **kwargs)`` fires a custom event.

The contract is ``spec/components.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aliquot import Node, hookimpl

from ._decorator import Trigger, TriggerDefinitionError, collect_triggers, trigger
from ._jobs import (
    JobBook,
    JobsFailed,
    TriggerError,
    TriggerTaskType,
    Unit,
    find_trigger_job,
    list_trigger_jobs,
    require_sync,
    run_batch,
    select,
)

__all__ = [
    "JobsFailed",
    "Trigger",
    "TriggerDefinitionError",
    "TriggerError",
    "Unit",
    "collect_triggers",
    "fire",
    "require_sync",
    "run_batch",
    "select",
    "trigger",
]


def fire(
    kernel: Any, component: Any, event: str, *, executor: str | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """``kernel.trigger(component, event, **kwargs)``: run the triggers of a custom event.

    ``component`` is a stored component (one that ``kernel.apply`` or
    ``kernel.load`` returned) or its ``"Type:identifier"``. Keyword arguments
    reach the trigger methods that take them. Returns the job records; raises
    :class:`JobsFailed` when a job failed.
    """
    from ..components._component import Component
    from ..components._store import require_stored

    if isinstance(component, str):
        type_name, sep, identifier = component.partition(":")
        if not sep:
            raise TriggerError(
                f"kernel.trigger: {component!r} is not 'Type:identifier' (or pass the component)"
            )
        component = kernel.load(type_name, identifier)
    if not isinstance(component, Component):
        raise TriggerError(f"kernel.trigger takes a component, not {type(component).__name__}")
    cls = type(component)
    events = sorted({e for t in cls.triggers.values() for e in t.events})
    if event not in events:
        raise TriggerError(
            f"{cls.type_name()} has no trigger for event {event!r} "
            f"(its events: {', '.join(events) or 'none'})"
        )
    version, huuid = require_stored(kernel, component)
    run, skipped = select(component, event)
    unit = Unit(component, huuid, version, run, skipped)
    jobs, _run_id = run_batch(kernel, [unit], event, executor=executor, kwargs=kwargs)
    return jobs


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(TriggerTaskType())


@hookimpl(trylast=True)
def aliquot_register_kernel_methods(register: Callable[..., None]) -> None:
    register("trigger", fire)


def _source(kernel: Any, limit: int | None) -> list[dict[str, Any]]:
    return list_trigger_jobs(kernel, limit)


_source.find = find_trigger_job  # type: ignore[attr-defined]


@hookimpl(trylast=True)
def aliquot_register_job_sources(register: Callable[..., None]) -> None:
    register("trigger", _source)


@hookimpl
def aliquot_node_started(run: Any, node: Node) -> None:
    if node.task.kind == "trigger":
        book = node.task.extra.get("book")
        if isinstance(book, JobBook):
            book.started(run, node)
