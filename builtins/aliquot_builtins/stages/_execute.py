"""Running stage and aggregate bodies: in a run (any executor) and eagerly.

In a run, the executor calls :func:`execute_stage` / :func:`execute_aggregate`
-- module-level functions, so process executors can pickle the call. They
build the records the body sees (tracked parameters, declared inputs as
state), refuse :class:`SkippedOutput` inputs, call the body, and return a
:class:`StageResult`: the value, plus the parameter paths the body read, which
the task type reports as facts for the cache.

Outside a run, calling a stage on a record executes it at once
(:func:`run_stage_eagerly`): inputs come from ``record.state`` and outputs go
back into it. Nothing is stored and nothing is cached.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from aliquot import TaskDefinitionError, TaskSpec, task_spec_of

from ._errors import ExecutingWithSkippedInputError, MissingStageInputError, RecordingError
from ._record import Record, SkippedOutput
from ._spec import info_of, unpack
from ._tracking import Reads


@attrs.frozen
class StageResult:
    """What a stage call returns to the kernel: its value and what it read."""

    value: Any
    reads: tuple[str, ...] = ()


def _spec_of(wrapper: Callable[..., Any]) -> TaskSpec:
    spec = task_spec_of(wrapper)
    if spec is None:
        raise TaskDefinitionError(f"{wrapper!r} is not a stage")
    return spec


def _refuse_skipped(spec: TaskSpec, record_name: str, inputs: Mapping[str, Any]) -> None:
    for name, value in inputs.items():
        values = value.values() if spec.kind == "aggregate" and isinstance(value, dict) else [value]
        for item in values:
            if isinstance(item, SkippedOutput):
                raise ExecutingWithSkippedInputError(
                    f"{spec.kind} {spec.short_name!r} of record {record_name!r} would run on "
                    f"input {name!r}, which was never computed ({item!r}); run the experiment "
                    "so that the stage producing it runs (target it, or --overwrite-stage it)"
                )


def execute_stage(
    wrapper: Callable[..., Any], record: Record, inputs: dict[str, Any]
) -> StageResult:
    """Run a stage body as a run does (see the module docstring)."""
    spec = _spec_of(wrapper)
    _refuse_skipped(spec, record._name, inputs)
    reads = Reads() if spec.extra.get("cache_by_reads") else None  # track_reads=False: none
    view = record._view(reads, "record", inputs, spec.short_name)
    value = spec.fn(view, **inputs)
    return StageResult(value, tuple(reads.result()) if reads is not None else ())


def execute_aggregate(
    wrapper: Callable[..., Any],
    record: Record,
    records: Sequence[Record],
    inputs: dict[str, Any],
) -> StageResult:
    """Run an aggregate body: input dicts arrive keyed by record index and leave keyed by record."""
    spec = _spec_of(wrapper)
    declared = set(info_of(spec).inputs)
    _refuse_skipped(spec, record._name, {k: v for k, v in inputs.items() if k in declared})
    reads = Reads() if spec.extra.get("cache_by_reads") else None  # track_reads=False: none
    view = record._view(reads, "record", {}, spec.short_name)
    # Each member sees the declared inputs it has as its state (r.state["mean"] works).
    states: list[dict[str, Any]] = [{} for _ in records]
    for name, value in inputs.items():
        if name in declared and isinstance(value, dict):
            for index, item in value.items():
                states[index][name] = item
    members = [
        r._view(reads, f"records.{i}", states[i], spec.short_name) for i, r in enumerate(records)
    ]
    call: dict[str, Any] = {}
    for name, value in inputs.items():
        if name in declared and isinstance(value, dict):
            call[name] = {members[i]: v for i, v in value.items()}
        else:
            call[name] = value
    value = spec.fn(view, members, **call)
    return StageResult(value, tuple(reads.result()) if reads is not None else ())


# ---------------------------------------------------------------------------- eager calls


def _check_eager(spec: TaskSpec, record: Any) -> Record:
    if not isinstance(record, Record):
        raise TaskDefinitionError(
            f"{spec.kind} {spec.short_name!r} was called on {record!r}; call it on a Record"
        )
    if record._recorder is not None:
        raise RecordingError(
            f"record {record.name!r} belongs to an experiment whose graph was already recorded; "
            f"call {spec.short_name} inside the experiment's code, or read results from the run"
        )
    return record


def _store_outputs(spec: TaskSpec, record: Record, value: Any) -> Record:
    outputs = unpack(spec, value)
    record.state.update(outputs)
    record.output = value
    record.stages.append(spec.short_name)
    return record


def run_stage_eagerly(spec: TaskSpec, record: Any, kwargs: dict[str, Any]) -> Record:
    record = _check_eager(spec, record)
    info = info_of(spec)
    inputs: dict[str, Any] = {}
    for name in info.inputs:
        if name in kwargs:
            continue
        if name in record.state:
            inputs[name] = record.state[name]
        elif not info.suppress_missing_inputs:
            have = ", ".join(map(repr, record.state)) or "nothing"
            raise MissingStageInputError(
                f"stage {spec.short_name!r} needs input {name!r}, which record {record.name!r} "
                f"does not have in its state (it has {have})"
            )
    inputs.update(kwargs)
    _refuse_skipped(spec, record.name, inputs)
    return _store_outputs(spec, record, spec.fn(record, **inputs))


def run_aggregate_eagerly(
    spec: TaskSpec, record: Any, records: Sequence[Record] | None, kwargs: dict[str, Any]
) -> Record:
    record = _check_eager(spec, record)
    if records is None:
        raise TaskDefinitionError(
            f"aggregate {spec.short_name!r} called outside an experiment needs the records: "
            f"{spec.short_name}(record, [r1, r2, ...])"
        )
    members = [_check_eager(spec, r) for r in records]
    record.is_aggregate = True
    record.input_records = list(members)
    inputs: dict[str, Any] = {}
    for name in info_of(spec).inputs:
        if name in kwargs:
            continue
        per_record: dict[Record, Any] = {}
        for member in members:
            if name in member.state:
                per_record[member] = member.state[name]
            else:
                warnings.warn(
                    f"aggregate {spec.short_name!r}: record {member.name!r} has no {name!r}; "
                    "it is left out",
                    stacklevel=3,
                )
        inputs[name] = per_record
    inputs.update(kwargs)
    _refuse_skipped(spec, record.name, inputs)
    return _store_outputs(spec, record, spec.fn(record, members, **inputs))
