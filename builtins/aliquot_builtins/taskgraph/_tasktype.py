"""The ``graph_artifact`` task type: artifact nodes, and planning task-graph documents."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Final

from aliquot import Call, Graph, Node
from aliquot.abc import PlanRequest

#: The ``aliquot run`` option (``-P NAME=VALUE``) that carries parameter values.
OPTION: Final = "graph_params"
SUFFIXES: Final = (".yaml", ".yml")
#: The task type of artifact nodes.
ARTIFACT_KIND: Final = "graph_artifact"
_DOCUMENT: Final = "aliquot_builtins.taskgraph._document"


def identity(value: Any) -> Any:
    """What an artifact node runs: its value is stored by its output's serializer."""
    return value


class GraphArtifactTaskType:
    """Artifact nodes pass their value through; their output's serializer stores it.

    ``plan`` turns a :class:`TaskGraph`, or the path of a ``.yaml``/``.yml``
    file (what ``aliquot run FILE`` passes), into a graph.
    """

    name = ARTIFACT_KIND

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        return Call(identity, (values["value"],), {}, node.task.name)

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        return {node.task.outputs[0].name: result}

    def plan(self, target: object, request: PlanRequest) -> Graph | None:
        # The document machinery is imported only when there is a document: a TaskGraph
        # object cannot exist before its module is imported.
        loaded = sys.modules.get(_DOCUMENT)
        if loaded is not None and isinstance(target, loaded.TaskGraph):
            document = target
        elif isinstance(target, PurePath) and target.suffix.lower() in SUFFIXES:
            from ._document import TaskGraph

            document = TaskGraph.load(target)
        else:
            return None
        texts = request.options.get(OPTION) or ()
        if isinstance(texts, str):
            texts = (texts,)
        graph: Graph = document.plan(request.kernel, request.inputs, tuple(texts))
        return graph
