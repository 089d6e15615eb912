"""The ``stages`` plugin: curifactory's stages, records and experiments, done right.

A *stage* is one step of an experiment, ``f(record, *inputs) -> outputs``; a
*record* is one parameter set's line of state; an *experiment* runs stages
over parameter sets. The contract is in ``spec/stages.md``; the parts live in:

- ``_spec``: ``@stage`` / ``@aggregate`` arguments, checked when declared;
- ``_record``: :class:`Record`, its state, :class:`Lazy`, :class:`SkippedOutput`;
- ``_tracking``: which parameters a stage reads (its cache key uses only those);
- ``_experiment``: :class:`Experiment`, recording experiment code into a graph,
  parameter files and selection;
- ``_execute``: running stage bodies, in a run and eagerly;
- ``_stage``: the decorator and the ``stage`` task type;
- ``_runview``: ``run.records``.

Run options: ``--params FILE`` (repeatable; the file defines ``get_params()``),
``--names a,b``, ``--indices 0-3`` (end excluded; per file) and
``--global-indices`` (over all files).
"""

from __future__ import annotations

from collections.abc import Callable

import click

from aliquot import hookimpl

from ._errors import (
    CachersMismatchError,
    EmptyCachersError,
    ExecutingWithSkippedInputError,
    InputSignatureError,
    MissingStageInputError,
    OutputSignatureError,
    RecordingError,
)
from ._experiment import Experiment, ExperimentContext
from ._record import Lazy, Record, SkippedOutput
from ._runview import records_view
from ._stage import StageTaskType, stage

__all__ = [
    "CachersMismatchError",
    "EmptyCachersError",
    "ExecutingWithSkippedInputError",
    "Experiment",
    "ExperimentContext",
    "InputSignatureError",
    "Lazy",
    "MissingStageInputError",
    "OutputSignatureError",
    "Record",
    "RecordingError",
    "SkippedOutput",
    "StageTaskType",
    "stage",
]


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(StageTaskType())


@hookimpl(trylast=True)
def aliquot_register_run_options(register: Callable[..., None]) -> None:
    register(
        click.Option(
            ["--params", "params"],
            multiple=True,
            metavar="FILE",
            help="Parameter sets from FILE's get_params() (repeatable; replaces the experiment's).",
        )
    )
    register(
        click.Option(
            ["--names", "names"],
            multiple=True,
            metavar="A,B",
            help="Only the parameter sets with these names.",
        )
    )
    register(
        click.Option(
            ["--indices", "indices"],
            metavar="A-B",
            help="Only parameter sets A..B-1 of each file (also: 2, 5-, 0-2,7).",
        )
    )
    register(
        click.Option(
            ["--global-indices", "global_indices"],
            metavar="A-B",
            help="Only parameter sets A..B-1 of all files together.",
        )
    )


@hookimpl(trylast=True)
def aliquot_register_run_views(register: Callable[..., None]) -> None:
    register("records", records_view)
