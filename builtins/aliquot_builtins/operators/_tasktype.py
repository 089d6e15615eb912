"""The ``operator`` task type: an operator run under a kernel.

``kernel.run(p, inputs={"x": 2})`` or ``aliquot run file.py:p --input x=2``
plans one node that calls the operator with the inputs bound to its
``forward`` parameters by name; its return value is the output ``output``.
Operator calls are not cached unless asked (the operator's state is not part
of any key yet), so ``cache=False`` is set on the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aliquot import (
    Call,
    Graph,
    Node,
    Output,
    TaskOptions,
    TaskSpec,
    graph_from_tasks,
    signature_params,
)
from aliquot.abc import PlanRequest

from ..function import bind_signature
from ._graph import CallGraph
from ._operator import ClassOperator, FunctionOperator, Operator
from ._record import Traced, drive, kernel_token

KIND = "operator"


def operator_spec(op: Operator, kernel: Any = None) -> TaskSpec:
    if isinstance(op, (FunctionOperator, ClassOperator)):
        target: Any = op._wrapped
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
        module = getattr(target, "__module__", None) or type(target).__module__
    else:
        target = op.forward
        name = type(op).__qualname__
        module = type(op).__module__
    return TaskSpec(
        name=f"{module}.{name}",
        kind=KIND,
        fn=op,
        inputs=signature_params(target),
        outputs=(Output("output"),),
        options=TaskOptions(cache=False),
        short_name=name.rpartition(".")[2].removesuffix(".__wrapped__"),
        version=None,
        extra={"kernel": kernel_token(kernel) if kernel is not None else None},
    )


class OperatorTaskType:
    name = KIND

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        call = bind_signature(node.task, values)
        op = call.fn
        return Call(
            drive,
            (op, call.args, dict(call.kwargs), node.task.extra.get("kernel"), node.id),
            {},
            node.task.name,
            modules=(type(op).__module__,),
        )

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        if isinstance(result, Traced):
            graph = CallGraph.from_calls(result.calls, node.id)
            op = node.task.fn
            if isinstance(op, Operator):
                object.__setattr__(op, "_last_graph", graph)
            return {"output": result.value}
        return {"output": result}

    def facts(self, node: Node, result: Any) -> Mapping[str, Any]:
        if isinstance(result, Traced):
            return {"operator_calls": result.calls}
        return {}

    def plan(self, target: object, request: PlanRequest) -> Graph | None:
        if not isinstance(target, Operator):
            return None
        spec = operator_spec(target, request.kernel)
        return graph_from_tasks([spec], request.inputs, source=spec.name)
