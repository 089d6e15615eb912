"""The ``taskgraph`` plugin: Dioptra's entrypoint YAML as aliquot graphs.

A task graph names parameters, steps that call registered tasks (three
invocation forms, ``$param`` / ``$step.output`` references, explicit
``dependencies``) and artifacts stored through artifact tasks. It is
validated completely -- every problem at once, each with its location --
before anything runs; then each step is a node, so independent steps run
concurrently and every step is cached like any other node. The contract is
``spec/taskgraph.md`` (format) and ``spec/taskgraph.schema.json`` (shape).

- ``_shape``: the document's shape (what the JSON Schema says) and its model;
- ``_semantics``: tasks, references, arguments, types and cycles;
- ``_build``: the :class:`aliquot.Graph`;
- ``_document``: :class:`TaskGraph` (YAML loading, catalogs, parameters);
- ``_tasktype``: the ``graph_artifact`` task type, which also plans documents;
- ``_commands``: ``aliquot graphs validate``.

Run option: ``-P NAME=VALUE`` (``--graph-param``; repeatable), typed by the
parameter's type.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from aliquot import hookimpl

from ._build import ARTIFACT_KIND, identity
from ._commands import graphs_group
from ._document import TaskGraph
from ._issues import CODES, SHAPE_CODES, GraphValidationError, ValidationIssue
from ._tasktype import OPTION, GraphArtifactTaskType

__all__ = [
    "ARTIFACT_KIND",
    "CODES",
    "OPTION",
    "SHAPE_CODES",
    "GraphArtifactTaskType",
    "GraphValidationError",
    "TaskGraph",
    "ValidationIssue",
    "identity",
]


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(GraphArtifactTaskType())


@hookimpl(trylast=True)
def aliquot_register_run_options(register: Callable[..., None]) -> None:
    register(
        click.Option(
            ["-P", "--graph-param", OPTION],
            multiple=True,
            metavar="NAME=VALUE",
            help="A task-graph parameter, read as its declared type (repeatable).",
        )
    )


@hookimpl(trylast=True)
def aliquot_register_commands(register: Callable[..., None]) -> None:
    register(graphs_group)
