"""The ``graph_artifact`` task type: artifact nodes, and planning task-graph documents."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from aliquot import Call, Graph, Node
from aliquot.abc import PlanRequest

from ._build import ARTIFACT_KIND, identity
from ._document import TaskGraph

#: The ``aliquot run`` option (``-P NAME=VALUE``) that carries parameter values.
OPTION = "graph_params"
SUFFIXES = (".yaml", ".yml")


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
        if isinstance(target, TaskGraph):
            document = target
        elif isinstance(target, PurePath) and target.suffix.lower() in SUFFIXES:
            document = TaskGraph.load(target)
        else:
            return None
        texts = request.options.get(OPTION) or ()
        if isinstance(texts, str):
            texts = (texts,)
        return document.plan(request.kernel, request.inputs, tuple(texts))
