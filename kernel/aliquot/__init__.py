"""aliquot: a pluggable microkernel for machine-learning experiment pipelines.

The public API, curated here. Everything is imported lazily (module
``__getattr__``), so ``import aliquot`` costs almost nothing and trio is
imported only when something runs. Names that builtin plugins define --
``aliquot.task`` from the ``function`` plugin, and later ``stage``,
``Component``, ``operator`` -- are re-exported the way ``pytest.fixture`` is:
the declaration imports even when its plugin is blocked, and running it then
fails with a message naming the plugin.

Layout: private ``_*.py`` modules hold the machinery; the public modules are
``aliquot.hookspecs`` (every hook), ``aliquot.abc`` (what plugins implement),
``aliquot.testing`` (the kit for plugin authors) and ``aliquot.cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from aliquot._context import (
        NodeContext as NodeContext,
        current_run as current_run,
    )
    from aliquot._errors import (
        AliquotError as AliquotError,
        CycleError as CycleError,
        GraphError as GraphError,
        MissingInputError as MissingInputError,
        OutputMismatchError as OutputMismatchError,
        PluginError as PluginError,
        PluginLoadError as PluginLoadError,
        PluginNotActiveError as PluginNotActiveError,
        PluginUnavailable as PluginUnavailable,
        RegistrationError as RegistrationError,
        RunInterrupted as RunInterrupted,
        RunNotFoundError as RunNotFoundError,
        SerializationError as SerializationError,
        StoreError as StoreError,
        StoreForkedError as StoreForkedError,
        TargetLoadError as TargetLoadError,
        TaskDefinitionError as TaskDefinitionError,
        UnknownNameError as UnknownNameError,
        UnknownTargetError as UnknownTargetError,
        UntrustedPayloadError as UntrustedPayloadError,
        ValueUnavailableError as ValueUnavailableError,
    )
    from aliquot._fingerprints import (
        Unfingerprintable as Unfingerprintable,
        canonical as canonical,
        fingerprint as fingerprint,
    )
    from aliquot._graph import (
        Graph as Graph,
        Node as Node,
        Ref as Ref,
        graph_from_tasks as graph_from_tasks,
    )
    from aliquot._kernel import (
        Kernel as Kernel,
        open_kernel as open_kernel,
    )
    from aliquot._loader import (
        load_target as load_target,
    )
    from aliquot._outcome import (
        ErrorInfo as ErrorInfo,
        Outcome as Outcome,
    )
    from aliquot._planner import (
        Decision as Decision,
        Plan as Plan,
    )
    from aliquot._plugins import (
        PluginInfo as PluginInfo,
        PluginWarning as PluginWarning,
    )
    from aliquot._runs import (
        NodeRecord as NodeRecord,
        Run as Run,
    )
    from aliquot._tasks import (
        NOTHING as NOTHING,
        Call as Call,
        Executed as Executed,
        Output as Output,
        Param as Param,
        TaskOptions as TaskOptions,
        TaskSpec as TaskSpec,
        code_fingerprint as code_fingerprint,
        qualified_name as qualified_name,
        set_task_spec as set_task_spec,
        signature_params as signature_params,
        task_spec_of as task_spec_of,
    )
    from aliquot._values import (
        ArtifactRef as ArtifactRef,
        SerializerContext as SerializerContext,
        Serializers as Serializers,
        Values as Values,
    )
    from aliquot.hookspecs import (
        hookimpl as hookimpl,
    )
    from aliquot_builtins.aggregate import (
        aggregate as aggregate,
    )
    from aliquot_builtins.artifacts import (
        ArtifactTask as ArtifactTask,
        ArtifactTaskInterface as ArtifactTaskInterface,
    )
    from aliquot_builtins.components import (
        Component as Component,
    )
    from aliquot_builtins.function import (
        task as task,
    )
    from aliquot_builtins.operators import (
        MapError as MapError,
        Operator as Operator,
        operator as operator,
    )
    from aliquot_builtins.stages import (
        CachersMismatchError as CachersMismatchError,
        EmptyCachersError as EmptyCachersError,
        ExecutingWithSkippedInputError as ExecutingWithSkippedInputError,
        Experiment as Experiment,
        ExperimentContext as ExperimentContext,
        InputSignatureError as InputSignatureError,
        Lazy as Lazy,
        MissingStageInputError as MissingStageInputError,
        OutputSignatureError as OutputSignatureError,
        Record as Record,
        RecordingError as RecordingError,
        SkippedOutput as SkippedOutput,
        stage as stage,
    )
    from aliquot_builtins.triggers import (
        JobsFailed as JobsFailed,
        trigger as trigger,
    )

# name -> (module, attribute). Kernel names first, then builtin re-exports.
_EXPORTS: dict[str, tuple[str, str]] = {
    **{
        name: ("aliquot._errors", name)
        for name in (
            "AliquotError",
            "CycleError",
            "GraphError",
            "MissingInputError",
            "OutputMismatchError",
            "PluginError",
            "PluginLoadError",
            "PluginNotActiveError",
            "PluginUnavailable",
            "RegistrationError",
            "RunInterrupted",
            "RunNotFoundError",
            "SerializationError",
            "StoreError",
            "StoreForkedError",
            "TargetLoadError",
            "TaskDefinitionError",
            "UnknownNameError",
            "UnknownTargetError",
            "UntrustedPayloadError",
            "ValueUnavailableError",
        )
    },
    "NodeContext": ("aliquot._context", "NodeContext"),
    "current_run": ("aliquot._context", "current_run"),
    "Unfingerprintable": ("aliquot._fingerprints", "Unfingerprintable"),
    "canonical": ("aliquot._fingerprints", "canonical"),
    "fingerprint": ("aliquot._fingerprints", "fingerprint"),
    "Graph": ("aliquot._graph", "Graph"),
    "Node": ("aliquot._graph", "Node"),
    "Ref": ("aliquot._graph", "Ref"),
    "graph_from_tasks": ("aliquot._graph", "graph_from_tasks"),
    "Kernel": ("aliquot._kernel", "Kernel"),
    "open_kernel": ("aliquot._kernel", "open_kernel"),
    "load_target": ("aliquot._loader", "load_target"),
    "ErrorInfo": ("aliquot._outcome", "ErrorInfo"),
    "Outcome": ("aliquot._outcome", "Outcome"),
    "Decision": ("aliquot._planner", "Decision"),
    "Plan": ("aliquot._planner", "Plan"),
    "PluginInfo": ("aliquot._plugins", "PluginInfo"),
    "PluginWarning": ("aliquot._plugins", "PluginWarning"),
    "NodeRecord": ("aliquot._runs", "NodeRecord"),
    "Run": ("aliquot._runs", "Run"),
    "NOTHING": ("aliquot._tasks", "NOTHING"),
    "Call": ("aliquot._tasks", "Call"),
    "Executed": ("aliquot._tasks", "Executed"),
    "Output": ("aliquot._tasks", "Output"),
    "Param": ("aliquot._tasks", "Param"),
    "TaskOptions": ("aliquot._tasks", "TaskOptions"),
    "TaskSpec": ("aliquot._tasks", "TaskSpec"),
    "code_fingerprint": ("aliquot._tasks", "code_fingerprint"),
    "signature_params": ("aliquot._tasks", "signature_params"),
    "qualified_name": ("aliquot._tasks", "qualified_name"),
    "set_task_spec": ("aliquot._tasks", "set_task_spec"),
    "task_spec_of": ("aliquot._tasks", "task_spec_of"),
    "ArtifactRef": ("aliquot._values", "ArtifactRef"),
    "SerializerContext": ("aliquot._values", "SerializerContext"),
    "Serializers": ("aliquot._values", "Serializers"),
    "Values": ("aliquot._values", "Values"),
    "hookimpl": ("aliquot.hookspecs", "hookimpl"),
    # Re-exported from builtin plugins (the facade is the one place the kernel
    # names aliquot_builtins; a meta-test checks that nothing else does).
    "task": ("aliquot_builtins.function", "task"),
    "register": ("aliquot_builtins.tasks", "register"),
    "Client": ("aliquot_builtins.tasks", "Client"),
    "ArtifactTask": ("aliquot_builtins.artifacts", "ArtifactTask"),
    "ArtifactTaskInterface": ("aliquot_builtins.artifacts", "ArtifactTaskInterface"),
    "TaskGraph": ("aliquot_builtins.taskgraph", "TaskGraph"),
    "Operator": ("aliquot_builtins.operators", "Operator"),
    "operator": ("aliquot_builtins.operators", "operator"),
    "MapError": ("aliquot_builtins.operators", "MapError"),
    "Component": ("aliquot_builtins.components", "Component"),
    "trigger": ("aliquot_builtins.triggers", "trigger"),
    "JobsFailed": ("aliquot_builtins.triggers", "JobsFailed"),
    "aggregate": ("aliquot_builtins.aggregate", "aggregate"),
    **{
        name: ("aliquot_builtins.stages", name)
        for name in (
            "stage",
            "Record",
            "Experiment",
            "ExperimentContext",
            "Lazy",
            "SkippedOutput",
            "InputSignatureError",
            "OutputSignatureError",
            "CachersMismatchError",
            "EmptyCachersError",
            "ExecutingWithSkippedInputError",
            "MissingStageInputError",
            "RecordingError",
        )
    },
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'aliquot' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
