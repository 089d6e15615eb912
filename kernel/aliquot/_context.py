"""The per-node context that middleware and the terminal handler receive."""

from __future__ import annotations

import contextvars
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


#: The run executing in this context (set by the scheduler; worker threads of the
#: ``threads`` executor inherit it, worker processes do not).
CURRENT_RUN: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "aliquot_current_run", default=None
)


def current_run() -> Run | None:
    """The :class:`~aliquot.Run` whose node is executing here, or None.

    Set while a run executes -- in the trio thread and in the threads the
    ``threads`` executor runs calls on -- so that code called by a task (an
    operator's nested calls) can reach its run. None elsewhere, including in
    worker processes.
    """
    return CURRENT_RUN.get()
