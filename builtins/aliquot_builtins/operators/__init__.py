"""The ``operators`` plugin: nbox's nested operators, with ``map`` on kernel executors.

- :class:`Operator`: a ``torch.nn.Module``-like tree of callables (children by
  attribute assignment, ``named_operators``, ``propagate``, ``remote_init``).
- ``@operator()`` / ``@operator``: a function (deployment ``job``) or a class
  (deployment ``serving``) as an operator.
- ``map`` / ``star_map``: any number of inputs, in order, at most ``workers``
  at once, on any registered executor; the first failure cancels the rest.

The contract is ``spec/operators.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from aliquot import hookimpl

from ._graph import CallGraph, Edge, RunGraph
from ._map import MapError, shared_kernel
from ._operator import ClassOperator, FunctionOperator, Operator, operator
from ._tasktype import OperatorTaskType, operator_spec

__all__ = [
    "CallGraph",
    "Edge",
    "RunGraph",
    "ClassOperator",
    "FunctionOperator",
    "MapError",
    "Operator",
    "OperatorTaskType",
    "operator",
    "operator_spec",
    "shared_kernel",
]


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(OperatorTaskType())


@hookimpl(trylast=True)
def aliquot_register_run_views(register: Callable[..., None]) -> None:
    register("graph", RunGraph)


@hookimpl(trylast=True)
def aliquot_register_commands(register: Callable[..., None]) -> None:
    from ._jobs_cli import jobs_group

    register(jobs_group)


@hookimpl(trylast=True)
def aliquot_register_value_roots(register: Callable[..., None]) -> None:
    from ._jobs import job_values

    register("operator_jobs", job_values)


@hookimpl(trylast=True)
def aliquot_register_job_sources(register: Callable[..., None]) -> None:
    from ._jobs import job_source

    register("operator", job_source)
