"""The planner: from a graph and targets to an ordered list of decisions.

Planning is pure and linear in the size of the graph (no recursion, so a
100,000-node chain is fine). It prunes to what the targets need, finds cycles
and unbound parameters before anything runs, and lets plan participants
(middleware with a ``plan`` method, e.g. the cache) decide that a node can be
*loaded* instead of run -- the nodes only such a node needed are then skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from ._errors import CycleError, GraphError, MissingInputError
from ._graph import Graph, Node, Ref, _collect_refs

Action = Literal["run", "load", "skip"]
ACTIONS: Final = ("run", "load", "skip")


@attrs.frozen
class Decision:
    """What the planner decided for one node, and why."""

    action: Action
    reason: str = ""


_RUN: Final = Decision("run", "")


class Plan:
    """An executable plan: the nodes to execute, in dependency order.

    Attributes:
        graph: the planned graph.
        targets: public name -> :class:`Ref` of every value the run returns.
        target_nodes: ids of the nodes the targets name.
        order: ids of the nodes to execute (run or load), dependencies first.
        decisions: node id -> :class:`Decision`, for every node of the graph.
        options: the run's options (``kernel.run(options=...)``, CLI run options).
        notes: node id -> a dict plan participants may fill (a computed cache key,
            say); the node's middleware sees it as ``ctx.notes``.
        stored: node id -> output name -> :class:`~aliquot.ArtifactRef` of outputs a
            participant knows are in the store already (a cache hit). A node that
            ends up skipped keeps them in its run record, so its values stay
            readable (``run.records[...]``, ``aliquot get``) without running it.
    """

    def __init__(
        self,
        graph: Graph,
        targets: dict[str, Ref],
        target_nodes: list[str],
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.targets = targets
        self.target_nodes = target_nodes
        self.options: dict[str, Any] = dict(options or {})
        self.notes: dict[str, dict[str, Any]] = {}
        self.stored: dict[str, Mapping[str, Any]] = {}
        self.order: list[str] = []
        self.decisions: dict[str, Decision] = {}
        self._frozen = False
        self._initially_needed: frozenset[str] = frozenset()

    def decide(self, node_id: str, action: Action, reason: str = "") -> None:
        """Record a decision for a node (plan participants call this before execution)."""
        if self._frozen:
            raise GraphError("the plan is final; decisions can only be made while planning")
        if action not in ACTIONS:
            raise GraphError(f"unknown plan action {action!r} (expected one of {ACTIONS})")
        if node_id not in self.graph.nodes:
            raise GraphError(f"no node {node_id!r} in the plan")
        self.decisions[node_id] = Decision(action, reason)

    def nodes(self) -> Iterable[Node]:
        """The nodes that will execute, in order."""
        nodes = self.graph.nodes
        return (nodes[nid] for nid in self.order)

    def deps(self, node_id: str) -> tuple[str, ...]:
        """Dependencies that matter for execution: none for a node that is loaded."""
        if self.decisions.get(node_id, _RUN).action == "load":
            return ()
        return self.graph.nodes[node_id].deps

    def counts(self) -> dict[str, int]:
        counts = {a: 0 for a in ACTIONS}
        for decision in self.decisions.values():
            counts[decision.action] += 1
        return counts

    def _finalize(self) -> None:
        """Re-prune after participants decided, then freeze."""
        needed = _reachable(self.graph, self.target_nodes, self.deps)
        order = [nid for nid in self.order if nid in needed]
        for nid in self.graph.nodes:
            if nid in needed:
                self.decisions.setdefault(nid, _RUN)
            else:
                previous = self.decisions.get(nid)
                if previous is None or previous.action != "skip":
                    reason = (
                        "not needed: a node that needs it is loaded from the cache"
                        if nid in self._initially_needed
                        else "not needed for the requested targets"
                    )
                    self.decisions[nid] = Decision("skip", reason)
        self.order = order
        self._frozen = True


def plan(
    graph: Graph, targets: Sequence[str] | None = None, options: Mapping[str, Any] | None = None
) -> Plan:
    """Prune ``graph`` to ``targets`` and order it; participants run afterwards.

    Raises:
        UnknownTargetError: a target names nothing in the graph.
        MissingInputError: a needed node has a required parameter nothing provides.
        CycleError: the needed part of the graph has a cycle.
        GraphError: a ref points to a node or output that does not exist.
    """
    values, target_nodes = graph.resolve_targets(targets)
    result = Plan(graph, values, target_nodes, options)
    nodes = graph.nodes

    needed = _reachable(graph, target_nodes, lambda nid: nodes[nid].deps)

    missing = [(nodes[nid].task.short_name, p) for nid in needed for p in nodes[nid].missing]
    if missing:
        raise MissingInputError(missing)
    for nid in needed:
        node = nodes[nid]
        for name, value in node.bindings.items():
            if type(value) is Ref:
                _check_ref(graph, node, name, value)
        if node.nested:
            for name in node.nested:
                refs: list[Ref] = []
                _collect_refs(node.bindings[name], refs)
                for ref in refs:
                    _check_ref(graph, node, name, ref)

    result.order = _toposort(graph, needed)
    result._initially_needed = frozenset(needed)
    return result


def finalize(result: Plan) -> Plan:
    """Apply the participants' decisions (prune again) and freeze the plan."""
    result._finalize()
    return result


def _check_ref(graph: Graph, node: Node, param: str, ref: Ref) -> None:
    producer = graph.nodes.get(ref.node)
    if producer is None:
        raise GraphError(
            f"node {node.id!r} parameter {param!r} refers to node {ref.node!r}, "
            "which does not exist"
        )
    if ref.output not in producer.outputs:
        raise GraphError(
            f"node {node.id!r} parameter {param!r} refers to output {ref.output!r} of "
            f"{ref.node!r}, which has outputs {list(producer.outputs)}"
        )


def _reachable(
    graph: Graph, roots: Iterable[str], deps_of: Callable[[str], Iterable[str]]
) -> dict[str, None]:
    """Every node the roots need, found iteratively (insertion-ordered set)."""
    seen: dict[str, None] = {}
    stack = [r for r in roots]
    nodes = graph.nodes
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        if nid not in nodes:
            raise GraphError(f"a reference points to node {nid!r}, which does not exist")
        seen[nid] = None
        stack.extend(deps_of(nid))
    return seen


def _toposort(graph: Graph, needed: dict[str, None]) -> list[str]:
    """Kahn's algorithm in graph insertion order; names a cycle if there is one."""
    nodes = graph.nodes
    indegree: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    for nid in nodes:
        if nid not in needed:
            continue
        deps = nodes[nid].deps
        indegree[nid] = len(deps)
        for dep in deps:
            dependents.setdefault(dep, []).append(nid)
    queue = deque(nid for nid, deg in indegree.items() if deg == 0)
    order: list[str] = []
    while queue:
        nid = queue.popleft()
        order.append(nid)
        for child in dependents.get(nid, ()):
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if len(order) != len(indegree):
        left = {nid for nid, deg in indegree.items() if deg > 0}
        raise CycleError(_find_cycle(graph, left))
    return order


def _find_cycle(graph: Graph, candidates: set[str]) -> list[str]:
    """One cycle among ``candidates`` (each has an unfinished dependency), iteratively."""
    nodes = graph.nodes
    start = next(nid for nid in nodes if nid in candidates)
    # Walk dependencies inside the candidate set until a node repeats: every
    # candidate has at least one candidate dependency, so the walk must loop.
    path: list[str] = []
    position: dict[str, int] = {}
    nid = start
    while nid not in position:
        position[nid] = len(path)
        path.append(nid)
        nid = next(d for d in nodes[nid].deps if d in candidates)
    cycle = path[position[nid] :]
    # Report in data-flow order: producer -> consumer.
    cycle.reverse()
    return [*cycle, cycle[0]]
