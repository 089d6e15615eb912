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

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aliquot import hookimpl

if TYPE_CHECKING:
    from ._catalog import Catalog, TaskInfo, info_from_artifact_class, info_from_spec
    from ._client import Client
    from ._errors import (
        AmbiguousTaskError,
        ParameterTypeError,
        TaskPluginError,
        TaskPluginImportError,
        UnknownTaskError,
    )
    from ._loading import catalog_for
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

# Public names, imported on first use: loading the plugin (every `aliquot` command, every
# Kernel.open) must stay cheap, and most runs never touch task plugins.
_EXPORTS: dict[str, str] = {
    "AmbiguousTaskError": "_errors",
    "BUILTIN": "_types",
    "Catalog": "_catalog",
    "Client": "_client",
    "InputInfo": "_register",
    "KIND": "_register",
    "OutputInfo": "_register",
    "ParameterTypeError": "_errors",
    "RegisteredTaskType": "_tasktype",
    "Signature": "_register",
    "TaskInfo": "_catalog",
    "TaskPluginError": "_errors",
    "TaskPluginImportError": "_errors",
    "TaskPluginStore": "_store",
    "TypeDefinitionError": "_types",
    "TypeExpr": "_types",
    "TypeTable": "_types",
    "UnknownTaskError": "_errors",
    "apply_registration": "_register",
    "assignable": "_types",
    "catalog_for": "_loading",
    "check": "_types",
    "check_filename": "_store",
    "check_inputs": "_tasktype",
    "check_plugin_name": "_store",
    "coerce_text": "_types",
    "derive": "_register",
    "describe": "_types",
    "from_annotation": "_types",
    "infer": "_types",
    "info_from_artifact_class": "_catalog",
    "info_from_spec": "_catalog",
    "literal_type": "_types",
    "register": "_register",
    "signature_of": "_register",
}

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
    from ._tasktype import RegisteredTaskType

    register(RegisteredTaskType())


@hookimpl(trylast=True)
def aliquot_register_commands(register: Callable[..., None]) -> None:
    from ._commands import task_plugins, tasks

    register(task_plugins)
    register(tasks)


def _live_files(kernel: Any) -> Any:
    from ._store import TaskPluginStore

    return TaskPluginStore(kernel.store).live_values()


@hookimpl(trylast=True)
def aliquot_register_value_roots(register: Callable[..., None]) -> None:
    register("task-plugins", _live_files)


@hookimpl
def aliquot_kernel_started(kernel: Any) -> None:
    from ._finder import watch_store

    watch_store(kernel.store)
