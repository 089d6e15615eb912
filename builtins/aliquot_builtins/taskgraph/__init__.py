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

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aliquot import hookimpl

from ._tasktype import ARTIFACT_KIND, OPTION, GraphArtifactTaskType, identity

if TYPE_CHECKING:
    from ._document import TaskGraph
    from ._issues import CODES, SHAPE_CODES, GraphValidationError, ValidationIssue

# Imported on first use: loading the plugin must stay cheap (YAML, JSON Schema and the
# validator load only when a document is read).
_EXPORTS: dict[str, str] = {
    "TaskGraph": "_document",
    "CODES": "_issues",
    "SHAPE_CODES": "_issues",
    "GraphValidationError": "_issues",
    "ValidationIssue": "_issues",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(GraphArtifactTaskType())


@hookimpl(trylast=True)
def aliquot_register_run_options(register: Callable[..., None]) -> None:
    import click

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
    from ._commands import graphs_group

    register(graphs_group)
