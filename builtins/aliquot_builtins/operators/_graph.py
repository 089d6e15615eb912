"""The call graph of an operator run: which calls happened, nested how, fed by what."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs


@attrs.frozen
class Edge:
    """``source``'s return value was passed to ``target`` as argument ``argument``."""

    source: str
    target: str
    argument: str


@attrs.frozen(eq=False)
class CallGraph:
    """Calls (dicts: ``id``, ``operator``, ``class``, ``parent``, ``inputs``, ``status``,
    ``duration``, and ``cache``/``error`` when they apply) and the data-flow edges.

    A call's ``parent`` is the call whose ``forward`` made it; ``edges`` are data
    flow only. ``str(graph)`` draws the nesting with each call's sources.
    """

    calls: tuple[Mapping[str, Any], ...]
    node: str = ""

    @classmethod
    def from_calls(cls, calls: Iterable[Mapping[str, Any]], node: str = "") -> CallGraph:
        return cls(tuple(calls), node)

    @property
    def edges(self) -> list[Edge]:
        out = []
        for call in self.calls:
            for argument, source in (call.get("inputs") or {}).items():
                out.append(Edge(source, call["id"], argument))
        return out

    def call(self, call_id: str) -> Mapping[str, Any]:
        for call in self.calls:
            if call["id"] == call_id:
                return call
        raise KeyError(f"no call {call_id!r} (calls: {', '.join(c['id'] for c in self.calls)})")

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "calls": [dict(c) for c in self.calls],
            "edges": [attrs.asdict(e) for e in self.edges],
        }

    def __str__(self) -> str:
        children: dict[str | None, list[Mapping[str, Any]]] = {}
        for call in self.calls:
            children.setdefault(call.get("parent"), []).append(call)
        lines: list[str] = []

        def walk(parent: str | None, depth: int) -> None:
            for call in children.get(parent, []):
                fed = ", ".join(f"{arg} <- {src}" for arg, src in call.get("inputs", {}).items())
                status = call.get("status", "")
                extra = f"  [{fed}]" if fed else ""
                lines.append(f"{'  ' * depth}{call['id']}  {status}{extra}")
                walk(call["id"], depth + 1)

        walk(None, 0)
        head = f"node {self.node}" if self.node else "calls"
        return "\n".join([head, *("  " + line for line in lines)])

    def __len__(self) -> int:
        return len(self.calls)


class RunGraph:
    """``run.graph()``: the call graphs of a run's operator nodes."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def __call__(self, node: str | None = None) -> CallGraph:
        graphs = self.all()
        if not graphs:
            raise LookupError(f"run {self._run.id} ran no operators (nothing was recorded)")
        if node is None:
            if len(graphs) > 1:
                raise LookupError(
                    f"run {self._run.id} has several operator nodes ({', '.join(graphs)}); "
                    "name one: run.graph(NODE)"
                )
            return next(iter(graphs.values()))
        if node not in graphs:
            raise LookupError(f"run {self._run.id} has no operator node {node!r}")
        return graphs[node]

    def __str__(self) -> str:
        graphs = self.all()
        if not graphs:
            return f"run {self._run.id} recorded no operator calls"
        return "\n".join(str(g) for g in graphs.values())

    def all(self) -> dict[str, CallGraph]:
        out = {}
        for record in self._run.nodes.values():
            calls = (record.info or {}).get("operator_calls")
            if calls is not None:
                out[record.id] = CallGraph.from_calls(calls, record.id)
        return out
