"""From a validated task graph to an :class:`aliquot.Graph`.

One node per step (id: the step's name; task: the registered task), one node
per artifact (id ``artifact:<name>``; task kind ``graph_artifact``, an
identity call whose one output is stored through the artifact task's
serializer). Bindings hold constants (parameter values, literals), :class:`Ref`
values, and lists and dicts of both, so the cache fingerprints them like any
other node's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from aliquot import (
    Graph,
    Node,
    Output,
    Param,
    Ref,
    TaskSpec,
    Unfingerprintable,
    fingerprint,
)

from ..tasks import Catalog
from ._semantics import Analysis, Reference, reference_of
from ._tasktype import ARTIFACT_KIND, identity

ARTIFACT_TASK: Final = "aliquot_builtins.taskgraph.artifact"


def _converter(analysis: Analysis) -> Any:
    values = analysis.values
    refs = analysis.refs

    def convert(raw: Any) -> Any:
        if isinstance(raw, str):
            if reference_of(raw) is None:
                return raw[1:] if raw.startswith("$$") else raw
            return resolved(refs[raw])
        if isinstance(raw, list):
            return [convert(item) for item in raw]
        if isinstance(raw, tuple):
            return tuple(convert(item) for item in raw)
        if isinstance(raw, dict):
            return {key: convert(item) for key, item in raw.items()}
        return raw

    def resolved(ref: Reference) -> Any:
        if ref.parameter is not None:
            return values[ref.parameter]
        assert ref.step is not None
        assert ref.output is not None
        return Ref(ref.step, ref.output)

    return convert


def _jsonish(value: Any) -> Any:
    try:
        orjson.dumps(value)
    except TypeError:
        try:
            return {"fingerprint": fingerprint(value)}
        except Unfingerprintable:
            return {"repr": repr(value)[:200]}
    return value


def build(analysis: Analysis, catalog: Catalog, *, source: str, digest: str) -> Graph:
    """The graph of an analysis without issues."""
    convert = _converter(analysis)
    graph = Graph(source=source, inputs=analysis.values)
    for name, resolved in analysis.steps.items():
        spec = resolved.info.load()
        bindings: dict[str, Any] = {key: convert(raw) for key, raw in resolved.bound.items()}
        if resolved.varargs and resolved.varargs_name is not None:
            bindings[resolved.varargs_name] = [convert(raw) for raw in resolved.varargs]
        if resolved.varkw and resolved.varkw_name is not None:
            bindings[resolved.varkw_name] = {
                key: convert(raw) for key, raw in resolved.varkw.items()
            }
        graph.add(
            Node(
                name,
                spec,
                bindings,
                labels={"step": name},
                after=resolved.step.dependencies,
            )
        )
        for output in resolved.outputs:
            graph.name(f"{name}.{output.name}", Ref(name, output.name))
    for name, artifact in analysis.artifacts.items():
        node_id = f"artifact:{name}"
        spec = TaskSpec(
            name=ARTIFACT_TASK,
            kind=ARTIFACT_KIND,
            fn=identity,
            inputs=(Param("value"),),
            outputs=(Output(name, serializer=artifact.serializer),),
            short_name="artifact",
        )
        value = convert(artifact.artifact.contents)
        graph.add(Node(node_id, spec, {"value": value}, labels={"artifact": name}))
        graph.name(name, Ref(node_id, name))
        graph.default_targets.append(name)
    for name, resolved in analysis.steps.items():
        if name in analysis.consumed:
            continue
        if resolved.outputs:
            graph.default_targets.extend(f"{name}.{o.name}" for o in resolved.outputs)
        else:
            graph.default_targets.append(name)
    graph.meta["taskgraph"] = {
        "source": source,
        "digest": digest,
        "parameters": {k: _jsonish(v) for k, v in analysis.values.items()},
        "snapshots": _snapshots(catalog.snapshots),
    }
    return graph


def _snapshots(snapshots: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _jsonish(v) for k, v in snapshots.items()}
