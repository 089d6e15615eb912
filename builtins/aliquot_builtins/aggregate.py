"""The ``aggregate`` task type: one step over many records (``@aggregate``).

An aggregate is a stage that sees every record it aggregates:
``f(record, records, **inputs)``, where each input arrives as a dict keyed by
record (``mean: dict[Record, float]``). A record that lacks an input is left
out of that dict, and the run says so (a warning on the run, not an error).
An aggregate never runs on a value that was not computed
(:class:`ExecutingWithSkippedInputError`), unlike the seed's.

Records, experiments and recording live in the ``stages`` plugin; this plugin
adds the aggregate decorator and task type.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aliquot import Call, Node, hookimpl

from .stages._execute import execute_aggregate, run_aggregate_eagerly
from .stages._record import RECORDING
from .stages._spec import build_spec, info_of
from .stages._stage import (
    RecordTaskType,
    declared,
    modules_of,
    positional_to_keywords,
    task_options,
    wrapper_of,
)

F = TypeVar("F", bound=Callable[..., Any])


def aggregate(
    inputs: Sequence[str] | Callable[..., Any] | None = None,
    outputs: Sequence[Any] | None = None,
    cachers: Sequence[Any] | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    cache: bool | None = None,
    retries: int = 0,
    timeout: float | None = None,
    executor: str | None = None,
    resources: Mapping[str, Any] | None = None,
    track_reads: bool = True,
) -> Any:
    """Declare a step across records: ``f(record, records, **inputs) -> outputs``.

    Arguments mean what they mean for :func:`aliquot.stage`; each name in
    ``inputs`` reaches the function as ``{record: value}`` over the records
    that have it. Called as ``best(Record(None), records)``; ``records=None``
    (inside an experiment) means every other record created so far.
    """
    if callable(inputs) and not isinstance(inputs, (list, tuple)):  # bare @aggregate
        return aggregate()(inputs)
    options = task_options(cache, retries, timeout, executor, resources)

    def decorate(fn: F) -> F:
        spec = build_spec(
            fn,
            kind="aggregate",
            inputs=inputs,
            outputs=outputs,
            cachers=cachers,
            suppress_missing_inputs=False,
            name=name,
            version=version,
            options=options,
            track_reads=track_reads,
        )
        info = info_of(spec)

        @functools.wraps(fn)
        def wrapper(record: Any, records: Any = None, *args: Any, **kwargs: Any) -> Any:
            if args:
                kwargs = positional_to_keywords(spec, info, args, kwargs)
            recorder = RECORDING.get()
            if recorder is not None:
                return recorder.call_aggregate(spec, record, records, kwargs)
            return run_aggregate_eagerly(spec, record, records, kwargs)

        return declared(wrapper, spec)  # type: ignore[return-value]

    return decorate


class AggregateTaskType(RecordTaskType):
    """Binds an aggregate node into a call of ``execute_aggregate``."""

    name = "aggregate"

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        spec = node.task
        inputs = dict(values)
        record = inputs.pop("record")
        records = inputs.pop("records")
        return Call(
            execute_aggregate,
            (wrapper_of(spec), record, records, inputs),
            {},
            spec.name,
            modules_of(spec, [record, *records]),
        )


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(AggregateTaskType())
