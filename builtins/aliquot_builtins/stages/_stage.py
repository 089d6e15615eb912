"""``@stage`` and the ``stage`` task type."""

from __future__ import annotations

import functools
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aliquot import (
    Call,
    Graph,
    Node,
    TargetLoadError,
    TaskOptions,
    TaskSpec,
    set_task_spec,
    task_spec_of,
)
from aliquot.abc import PlanRequest

from ._execute import StageResult, execute_stage, run_stage_eagerly
from ._experiment import KINDS, Experiment, find_experiment, record_graph
from ._record import RECORDING, Record
from ._spec import StageInfo, build_spec, info_of, unpack

F = TypeVar("F", bound=Callable[..., Any])


def positional_to_keywords(
    spec: TaskSpec, info: StageInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Map extra positional call arguments onto parameter names (after the record)."""
    if len(args) > len(info.positional):
        raise TypeError(
            f"{spec.short_name}() takes {len(info.positional)} argument(s) after the record, "
            f"got {len(args)}"
        )
    out = dict(kwargs)
    for name, value in zip(info.positional, args, strict=False):
        if name in out:
            raise TypeError(f"{spec.short_name}() got two values for {name!r}")
        out[name] = value
    return out


def task_options(
    cache: bool | None,
    retries: int,
    timeout: float | None,
    executor: str | None,
    resources: Mapping[str, Any] | None,
) -> TaskOptions:
    return TaskOptions(
        cache=cache,
        retries=retries,
        timeout=timeout,
        executor=executor,
        resources=dict(resources or {}),
    )


def stage(
    inputs: Sequence[str] | Callable[..., Any] | None = None,
    outputs: Sequence[Any] | None = None,
    cachers: Sequence[Any] | None = None,
    suppress_missing_inputs: bool = False,
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
    """Declare one step of an experiment: ``f(record, *inputs) -> outputs``.

    Args:
        inputs: names the stage takes from its record's state; each must be a
            parameter of the function with the same name.
        outputs: names (or :class:`Lazy` names) of the returned values, in
            order; they go into the record's state.
        cachers: one per output: a serializer name (``"json"``, ``"pickle"``,
            ``"bytes"``, ``"npy"``...), a serializer object, or None (that
            output -- and so the stage -- is not cached). ``cachers=None``
            means any suitable serializer for every output.
        suppress_missing_inputs: leave inputs no earlier stage produced out of
            the call (their defaults apply) instead of failing.
        name, version, cache, retries, timeout, executor, resources: as for
            ``@aliquot.task``.
        track_reads: key the cache on the parameters the stage reads (default);
            False keys it on all of its record's parameters.

    Calling the decorated stage on a record returns the record, so stages
    chain: ``stats(load(Record(params)))``. Inside an experiment the call is
    recorded; outside one it runs at once (see ``spec/stages.md``).
    """
    if callable(inputs) and not isinstance(inputs, (list, tuple)):  # bare @stage
        return stage()(inputs)
    options = task_options(cache, retries, timeout, executor, resources)

    def decorate(fn: F) -> F:
        spec = build_spec(
            fn,
            kind="stage",
            inputs=inputs,
            outputs=outputs,
            cachers=cachers,
            suppress_missing_inputs=suppress_missing_inputs,
            name=name,
            version=version,
            options=options,
            track_reads=track_reads,
        )
        info = info_of(spec)

        @functools.wraps(fn)
        def wrapper(record: Any, *args: Any, **kwargs: Any) -> Any:
            if args:
                kwargs = positional_to_keywords(spec, info, args, kwargs)
            recorder = RECORDING.get()
            if recorder is not None:
                return recorder.call_stage(spec, record, kwargs)
            return run_stage_eagerly(spec, record, kwargs)

        return declared(wrapper, spec)  # type: ignore[return-value]

    return decorate


def declared(wrapper: Callable[..., Any], spec: TaskSpec) -> Callable[..., Any]:
    """Attach ``spec`` to a stage's or aggregate's decorated function and remember it."""
    set_task_spec(wrapper, spec)
    WRAPPERS[spec] = weakref.ref(wrapper)
    return wrapper


class RecordTaskType:
    """What the ``stage`` and ``aggregate`` task types share: the runner returns a
    :class:`StageResult` (the value, and the parameter paths the body read)."""

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        value = result.value if isinstance(result, StageResult) else result
        return unpack(node.task, value)

    def facts(self, node: Node, result: Any) -> Mapping[str, Any]:
        if isinstance(result, StageResult) and node.task.extra.get("cache_by_reads"):
            return {"reads": list(result.reads)}
        return {}


class StageTaskType(RecordTaskType):
    """Binds a stage node into a call of :func:`execute_stage`; plans experiments."""

    name = "stage"

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        spec = node.task
        inputs = dict(values)
        record = inputs.pop("record")
        return Call(
            execute_stage,
            (wrapper_of(spec), record, inputs),
            {},
            spec.name,
            modules_of(spec, [record]),
        )

    def plan(self, target: object, request: PlanRequest) -> Graph | None:
        if isinstance(target, Experiment):
            experiment: Experiment | None = target
        elif isinstance(target, types.ModuleType):
            experiment = find_experiment(target)
        else:
            _refuse_bare_stages(target)
            return None
        if experiment is None:
            return None
        if request.inputs:
            raise TargetLoadError(
                f"experiment {experiment.name!r} takes no inputs (-i); its values come from "
                "its parameter sets"
            )
        return record_graph(experiment, request.options)


#: The decorated object of each stage spec: what calls carry (process executors pickle it
#: by its module and name, and unwrap it in the worker).
WRAPPERS: weakref.WeakKeyDictionary[TaskSpec, weakref.ref[Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)


def wrapper_of(spec: TaskSpec) -> Callable[..., Any]:
    ref = WRAPPERS.get(spec)
    wrapper = ref() if ref is not None else None
    if wrapper is None:
        raise TargetLoadError(
            f"{spec.kind} {spec.short_name!r} has no decorated function (was its spec built by "
            "hand?)"
        )
    return wrapper


def modules_of(spec: TaskSpec, records: Sequence[Record]) -> tuple[str, ...]:
    """The modules a worker process must import to unpickle a stage call: the stage's,
    and those of the records' parameter classes (parents included)."""
    modules = {spec.fn.__module__}
    stack = list(records)
    while stack:
        record = stack.pop()
        params = record._params
        if params is not None:
            modules.add(type(params).__module__)
        stack.extend(record.input_records)
    modules.discard("builtins")
    return tuple(sorted(modules))


def _refuse_bare_stages(target: object) -> None:
    items = target if isinstance(target, (list, tuple)) else [target]
    for item in items:
        spec = task_spec_of(item)
        if spec is not None and spec.kind in KINDS:
            raise TargetLoadError(
                f"{spec.kind} {spec.short_name!r} runs on records: put it in an experiment, "
                f"Experiment(name, stages=[...], params=[...]), and run that"
            )
