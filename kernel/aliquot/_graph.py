"""Graphs of task calls.

A :class:`Node` is one call of one task with its parameters bound: each binding
is either a constant or a :class:`Ref` to another node's output (or a list,
tuple or dict that contains refs). Edges come only from refs, so every way of
wiring a graph -- by output name (curifactory, Hamilton), by explicit
``$step.output`` references (Dioptra), by recording calls (operators) -- ends
up in the same structure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from ._errors import GraphError, UnknownTargetError
from ._tasks import NOTHING, TaskSpec


@attrs.frozen
class Ref:
    """A reference to output ``output`` of node ``node``."""

    node: str
    output: str

    def __str__(self) -> str:
        return f"{self.node}.{self.output}"


def _collect_refs(value: Any, into: list[Ref]) -> bool:
    """Append every Ref inside ``value`` (lists, tuples, dicts); True if any."""
    if isinstance(value, Ref):
        into.append(value)
        return True
    found = False
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _collect_refs(item, into) or found
    elif isinstance(value, dict):
        for item in value.values():
            found = _collect_refs(item, into) or found
    return found


@attrs.frozen(eq=False)
class Node:
    """One call of one task.

    Attributes:
        id: unique within its graph.
        task: the :class:`TaskSpec` to call.
        bindings: parameter name -> constant, :class:`Ref`, or a container of refs.
            ``*args`` binds to a list and ``**kwargs`` to a dict.
        labels: free-form strings for display and grouping (``record``, ``step``...).
        missing: required parameters nothing provides; an error if the node is planned.
        after: ids of nodes that must finish first although no value flows from them
            (explicit ordering, as Dioptra's ``dependencies``).
    """

    id: str
    task: TaskSpec
    bindings: Mapping[str, Any] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    missing: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    #: Node ids this node waits for: those its ``bindings`` refer to, then ``after``.
    deps: tuple[str, ...] = attrs.field(init=False)
    #: Parameters whose binding is a container holding refs (resolved recursively).
    nested: frozenset[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        deps: dict[str, None] = {}
        nested = []
        for name, value in self.bindings.items():
            if type(value) is Ref:
                deps[value.node] = None
            elif isinstance(value, (list, tuple, dict)):
                refs: list[Ref] = []
                if _collect_refs(value, refs):
                    nested.append(name)
                    for ref in refs:
                        deps[ref.node] = None
        for nid in self.after:
            deps[nid] = None
        object.__setattr__(self, "deps", tuple(deps))
        object.__setattr__(self, "nested", frozenset(nested))

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.task.output_names

    @classmethod
    def _wired(
        cls,
        id: str,
        task: TaskSpec,
        bindings: dict[str, Any],
        deps: tuple[str, ...],
        missing: tuple[str, ...],
    ) -> Node:
        """A node whose bindings are known to hold only constants and direct refs.

        The name-binding builder knows the dependencies already; skipping the
        scan of the bindings keeps graph building cheap for large graphs.
        """
        node = object.__new__(cls)
        for name, value in (
            ("id", id),
            ("task", task),
            ("bindings", bindings),
            ("labels", {}),
            ("missing", missing),
            ("after", ()),
            ("deps", deps),
            ("nested", frozenset()),
        ):
            object.__setattr__(node, name, value)
        return node

    def __repr__(self) -> str:
        return f"<Node {self.id} ({self.task.kind}:{self.task.name})>"


class Graph:
    """A set of nodes plus the public names of the values they produce.

    ``names`` maps what a user types (``mean``, ``small.mean``) to the
    :class:`Ref` that produces it; targets and ``run[name]`` use these names.
    """

    def __init__(self, *, source: str = "", inputs: Mapping[str, Any] | None = None) -> None:
        self.nodes: dict[str, Node] = {}
        self.names: dict[str, Ref] = {}
        self.default_targets: list[str] = []
        self.inputs: dict[str, Any] = dict(inputs or {})
        self.source = source
        #: Data a task type attaches for its own plan participants (e.g. records).
        self.extra: dict[str, Any] = {}
        #: Problems found while building the graph that do not stop it (recorded on the run).
        self.warnings: list[str] = []
        #: JSON-able data a task type keeps with the run (``run.meta``), keyed by plugin name.
        self.meta: dict[str, Any] = {}

    def add(self, node: Node) -> Node:
        if node.id in self.nodes:
            raise GraphError(f"two nodes share the id {node.id!r}")
        self.nodes[node.id] = node
        return node

    def name(self, name: str, ref: Ref) -> None:
        """Publish ``ref`` under ``name`` (refusing a name that is already taken)."""
        existing = self.names.get(name)
        if existing is not None and existing != ref:
            raise GraphError(
                f"output name {name!r} is produced by both {existing.node!r} and {ref.node!r}"
            )
        self.names[name] = ref

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {nid: [] for nid in self.nodes}
        for node in self.nodes.values():
            for dep in node.deps:
                if dep in out:
                    out[dep].append(node.id)
        return out

    def resolve_targets(self, targets: Sequence[str] | None) -> tuple[dict[str, Ref], list[str]]:
        """Turn target strings into (named values to return, node ids to run).

        A target is a published value name, or a node id / task name (meaning
        every output of that node, or the node itself when it has none).
        """
        wanted = list(self.default_targets) if targets is None else list(targets)
        values: dict[str, Ref] = {}
        nodes: dict[str, None] = {}
        by_task: dict[str, list[str]] | None = None
        for target in wanted:
            ref = self.names.get(target)
            if ref is not None:
                values[target] = ref
                nodes[ref.node] = None
                continue
            ids: list[str]
            if target in self.nodes:
                ids = [target]
            else:
                if by_task is None:
                    by_task = {}
                    for node in self.nodes.values():
                        for key in {node.task.short_name, node.task.name}:
                            by_task.setdefault(key, []).append(node.id)
                ids = by_task.get(target, [])
            if not ids:
                choices = list(self.names) + list(self.nodes)
                close = difflib.get_close_matches(target, choices, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise UnknownTargetError(
                    f"target {target!r} is not an output or task of this graph{hint}"
                )
            for nid in ids:
                nodes[nid] = None
                for out in self.nodes[nid].outputs:
                    ref = Ref(nid, out)
                    public = next((k for k, v in self.names.items() if v == ref), None)
                    values[public or str(ref)] = ref
        return values, list(nodes)


def graph_from_tasks(
    specs: Iterable[TaskSpec], inputs: Mapping[str, Any] | None = None, *, source: str = ""
) -> Graph:
    """Wire tasks by name: a parameter binds to the output of the same name, or to ``inputs``.

    Raises:
        GraphError: two tasks produce the same output, an input shadows a task
            output, or an input is a parameter of no task.
    """
    specs = list(specs)
    inputs = dict(inputs or {})
    graph = Graph(source=source, inputs=inputs)

    short_counts: dict[str, int] = {}
    for spec in specs:
        short_counts[spec.short_name] = short_counts.get(spec.short_name, 0) + 1
    ids = [s.short_name if short_counts[s.short_name] == 1 else s.name for s in specs]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise GraphError(f"the same task is listed twice: {', '.join(dupes)}")

    producers: dict[str, str] = {}
    for spec, nid in zip(specs, ids, strict=True):
        for out in spec.output_names:
            if out in producers:
                raise GraphError(
                    f"output {out!r} is produced by both task {producers[out]!r} and task {nid!r}"
                )
            if out in inputs:
                raise GraphError(
                    f"input {out!r} is also the output of task {nid!r}; "
                    "rename the input or leave the task out of the run"
                )
            producers[out] = nid

    used_inputs: set[str] = set()
    consumed: set[str] = set()
    nodes = graph.nodes
    names = graph.names
    for spec, nid in zip(specs, ids, strict=True):
        bindings: dict[str, Any] = {}
        missing: list[str] = []
        deps: dict[str, None] = {}
        for param in spec.inputs:
            name = param.name
            if param.kind in ("var_positional", "var_keyword"):
                continue
            producer = producers.get(name)
            if producer is not None:
                bindings[name] = Ref(producer, name)
                deps[producer] = None
                consumed.add(name)
            elif name in inputs:
                bindings[name] = inputs[name]
                used_inputs.add(name)
            elif param.default is NOTHING:
                missing.append(name)
        nodes[nid] = Node._wired(nid, spec, bindings, tuple(deps), tuple(missing))
        for out in spec.output_names:
            names[out] = Ref(nid, out)  # unique: duplicates were refused above

    unused = sorted(set(inputs) - used_inputs)
    if unused:
        params = sorted({p.name for s in specs for p in s.inputs if not p.is_variadic})
        hints = []
        for name in unused:
            close = difflib.get_close_matches(name, params, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise GraphError(f"input {', '.join(hints)} is not a parameter of any task in the run")

    for spec, nid in zip(specs, ids, strict=True):
        leaf_outputs = [o for o in spec.output_names if o not in consumed]
        if not spec.output_names:
            graph.default_targets.append(nid)
        graph.default_targets.extend(leaf_outputs)
    if not graph.default_targets:
        # Every output feeds another task: only a cycle does that. Target everything
        # so the planner names the cycle instead of silently running nothing.
        graph.default_targets.extend(ids)
    return graph
