"""The per-node context that middleware and the terminal handler receive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._graph import Node
    from ._outcome import Outcome
    from ._planner import Decision
    from ._runs import Run
    from ._values import ArtifactRef, Values
    from .abc import Executor, Store, TaskType


@attrs.define(eq=False)
class NodeContext:
    """Everything one node's middleware chain may use.

    Attributes:
        run: the :class:`~aliquot.Run` in progress.
        node: the :class:`~aliquot.Node` to execute.
        decision: the planner's :class:`~aliquot.Decision` (``run`` or ``load``).
        task_type: the task type that binds and unpacks the call.
        executor: the executor the call goes to.
        values: store and load values (:class:`~aliquot.Values`).
        store: the run's store.
        inputs: parameter name -> resolved value (empty for ``load`` decisions).
        input_refs: parameter name -> :class:`~aliquot.ArtifactRef` of the upstream
            value, for parameters bound to a stored upstream output.
        attempt: 1 for the first try; retry middleware increments it.
        info: plugin data copied into the node's record (must be JSON-serializable).
        notes: what plan participants noted for this node (``plan.notes[node.id]``).
        upstream_refs: node id -> output name -> :class:`~aliquot.ArtifactRef` of every
            stored output produced so far in this run (for refs nested in lists and dicts).
    """

    run: Run
    node: Node
    decision: Decision
    task_type: TaskType
    executor: Executor
    values: Values
    store: Store
    inputs: dict[str, Any] = attrs.field(factory=dict)
    input_refs: dict[str, ArtifactRef] = attrs.field(factory=dict)
    attempt: int = 1
    info: dict[str, Any] = attrs.field(factory=dict)
    notes: dict[str, Any] = attrs.field(factory=dict)
    upstream_refs: Mapping[str, Mapping[str, ArtifactRef]] = attrs.field(factory=dict)

    @property
    def upstream(self) -> Mapping[str, Any]:
        """Alias of :attr:`inputs`, for readability in middleware."""
        return self.inputs


#: The rest of the chain, as seen by a middleware: ``await call_next(ctx)``.
Handler = Callable[[NodeContext], Awaitable["Outcome"]]
