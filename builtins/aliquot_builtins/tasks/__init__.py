"""The ``tasks`` plugin: registered function tasks with typed parameters, and task plugins.

- ``@aliquot.register`` (also ``aliquot.pyplugs.register``) declares a function
  task whose inputs, outputs and types come from its signature (task type
  ``task``; values are checked against their types before it runs).
- Task plugins -- named, versioned sets of ``.py`` files -- live in the store,
  one immutable snapshot per change, and are managed with ``aliquot
  task-plugins ...``, ``aliquot tasks ...`` or :class:`Client`.
- :class:`Catalog` finds tasks by (short or qualified) name for task graphs.

The contract is ``spec/tasks.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aliquot import hookimpl

from ._catalog import Catalog, TaskInfo, info_from_artifact_class, info_from_spec
from ._client import Client
from ._errors import (
    AmbiguousTaskError,
    ParameterTypeError,
    TaskPluginError,
    TaskPluginImportError,
    UnknownTaskError,
)
from ._loading import catalog_for, watch_store
from ._register import (
    KIND,
    InputInfo,
    OutputInfo,
    Signature,
    apply_registration,
    derive,
    register,
    signature_of,
)
from ._store import TaskPluginStore, check_filename, check_plugin_name
from ._tasktype import RegisteredTaskType, check_inputs
from ._types import (
    BUILTIN,
    TypeDefinitionError,
    TypeExpr,
    TypeTable,
    assignable,
    check,
    coerce_text,
    describe,
    from_annotation,
    infer,
    literal_type,
)

__all__ = [
    "BUILTIN",
    "KIND",
    "AmbiguousTaskError",
    "Catalog",
    "Client",
    "InputInfo",
    "OutputInfo",
    "ParameterTypeError",
    "RegisteredTaskType",
    "Signature",
    "TaskInfo",
    "TaskPluginStore",
    "TaskPluginError",
    "TaskPluginImportError",
    "TypeDefinitionError",
    "TypeExpr",
    "TypeTable",
    "UnknownTaskError",
    "apply_registration",
    "assignable",
    "catalog_for",
    "check",
    "check_filename",
    "check_plugin_name",
    "check_inputs",
    "coerce_text",
    "derive",
    "describe",
    "from_annotation",
    "infer",
    "literal_type",
    "info_from_artifact_class",
    "info_from_spec",
    "register",
    "signature_of",
]


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(RegisteredTaskType())


@hookimpl(trylast=True)
def aliquot_register_commands(register: Callable[..., None]) -> None:
    from ._commands import task_plugins, tasks

    register(task_plugins)
    register(tasks)


@hookimpl(trylast=True)
def aliquot_register_value_roots(register: Callable[..., None]) -> None:
    register("task-plugins", lambda kernel: TaskPluginStore(kernel.store).live_values())


@hookimpl
def aliquot_kernel_started(kernel: Any) -> None:
    watch_store(kernel.store)
