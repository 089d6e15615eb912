"""The ``task`` task type: registered function tasks, with their types checked.

Inputs are checked against their declared types before the function is
called, outputs after it returns; the error names the task, the parameter (or
output), the expected type and the value. Binding follows the signature:
positional-only parameters and ``*args`` go positionally, the rest by keyword,
and registered inputs the function takes through ``**kwargs`` arrive in the
``**kwargs`` binding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aliquot import Call, Node, TaskSpec

from ..function import bind_signature, unpack_outputs
from ._errors import ParameterTypeError
from ._register import KIND, Signature, signature_of
from ._types import check, describe


class RegisteredTaskType:
    name = KIND

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        spec = node.task
        check_inputs(spec, signature_of(spec), values)
        if spec.extra.get("keywords_only", False):
            return Call(spec.fn, (), values, spec.name)
        return bind_signature(spec, values)

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        spec = node.task
        signature = signature_of(spec)
        if not signature.outputs:
            return {}  # no outputs registered: the return value is not kept
        out = unpack_outputs(spec, result)
        for output in signature.outputs:
            why = check(out[output.name], output.type, signature.types)
            if why is not None:
                raise ParameterTypeError(
                    f"task {spec.name!r}: output {output.name!r} should be "
                    f"{describe(output.type)}, but {why}"
                )
        return out


def check_inputs(spec: TaskSpec, signature: Signature, values: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterTypeError` for the first value that does not fit."""
    table = signature.types
    kwargs_name = next((i.name for i in signature.inputs if i.kind == "var_keyword"), None)
    extra_values: Mapping[str, Any] = values.get(kwargs_name) or {} if kwargs_name else {}
    for info in signature.inputs:
        if info.kind == "extra":
            present = info.name in extra_values
            value = extra_values.get(info.name)
        else:
            present = info.name in values
            value = values.get(info.name)
        if not present:
            if info.required:
                raise ParameterTypeError(
                    f"task {spec.name!r}: required input {info.name!r} "
                    f"({describe(info.type)}) has no value"
                )
            continue
        if info.type == "any":
            continue
        if info.kind == "var_positional":
            items: list[tuple[str, Any]] = [
                (f"{info.name}[{i}]", v) for i, v in enumerate(value or ())
            ]
        elif info.kind == "var_keyword":
            items = [
                (f"{info.name}[{k!r}]", v)
                for k, v in (value or {}).items()
                if not any(e.name == k and e.kind == "extra" for e in signature.inputs)
            ]
        else:
            items = [(info.name, value)]
        for label, item in items:
            why = check(item, info.type, table)
            if why is not None:
                raise ParameterTypeError(
                    f"task {spec.name!r}: parameter {label!r} expects {describe(info.type)}, "
                    f"but {why}"
                )
