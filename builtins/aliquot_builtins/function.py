"""The ``function`` task type: plain Python functions as tasks (``@aliquot.task``).

Parameters bind by name -- to another task's output of the same name, or to a
run input. Outputs are named by ``outputs=[...]`` (default: the function's
name). A task with several outputs returns a tuple, list, NamedTuple, attrs or
dataclass instance, unpacked by position; a count mismatch is an error naming
the task and both counts, and a ``str`` or ``bytes`` return is never unpacked.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

import attrs

from aliquot import (
    NOTHING,
    Call,
    Node,
    Output,
    OutputMismatchError,
    TaskDefinitionError,
    TaskOptions,
    TaskSpec,
    hookimpl,
    qualified_name,
    set_task_spec,
    signature_params,
)

KIND = "function"
F = TypeVar("F", bound=Callable[..., Any])


class FunctionTaskType:
    """Binds parameters by keyword (positionally only where Python requires it)."""

    name = KIND

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        spec = node.task
        if spec.extra.get("keywords_only", False):
            return Call(spec.fn, (), values, spec.name)
        return bind_signature(spec, values)

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        return unpack_outputs(node.task, result)


def bind_signature(spec: TaskSpec, values: Mapping[str, Any]) -> Call:
    """Build a call for any signature: positional-only parameters and ``*args`` go
    positionally (defaults fill the gaps before them), everything else by keyword."""
    params = spec.inputs
    varpos = next((p for p in params if p.kind == "var_positional"), None)
    extra_args = list(values.get(varpos.name, ())) if varpos is not None else []
    if extra_args:
        cut = params.index(varpos)  # type: ignore[arg-type,unused-ignore]
    else:
        positional_only = [
            i for i, p in enumerate(params) if p.kind == "positional" and p.name in values
        ]
        cut = positional_only[-1] + 1 if positional_only else 0
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for index, param in enumerate(params):
        if param.kind == "var_positional":
            continue
        if param.kind == "var_keyword":
            extra = values.get(param.name) or {}
            clash = sorted(set(extra) & set(kwargs))
            if clash:
                raise TaskDefinitionError(
                    f"task {spec.name!r}: extra keyword value(s) {clash} clash with parameters"
                )
            kwargs.update(extra)
            continue
        if index < cut and param.kind in ("positional", "positional_or_keyword"):
            value = values.get(param.name, param.default)
            if value is NOTHING:
                raise TaskDefinitionError(
                    f"task {spec.name!r}: parameter {param.name!r} has no value and no default"
                )
            args.append(value)
        elif param.name in values:
            kwargs[param.name] = values[param.name]
    args.extend(extra_args)
    return Call(spec.fn, tuple(args), kwargs, spec.name)


def unpack_outputs(spec: TaskSpec, result: Any) -> dict[str, Any]:
    """Map a return value onto a task's declared outputs (see the module docstring)."""
    names = spec.output_names
    count = len(names)
    if count == 1:
        return {names[0]: result}
    if count == 0:
        if result is not None:
            raise OutputMismatchError(
                f"task {spec.short_name!r} declares no outputs but returned "
                f"{type(result).__name__}; declare outputs=[...] or return None"
            )
        return {}
    if isinstance(result, (str, bytes, bytearray)):
        raise OutputMismatchError(
            f"task {spec.short_name!r} declares {count} outputs {list(names)} but returned a "
            f"{type(result).__name__}; a str or bytes return is never unpacked"
        )
    items: Sequence[Any]
    if isinstance(result, (tuple, list)):
        items = result
    elif attrs.has(type(result)):
        items = [getattr(result, f.name) for f in attrs.fields(type(result))]
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        items = [getattr(result, f.name) for f in dataclasses.fields(result)]
    else:
        raise OutputMismatchError(
            f"task {spec.short_name!r} declares {count} outputs {list(names)} but returned a "
            f"single {type(result).__name__}; return a tuple of {count} values"
        )
    if len(items) != count:
        raise OutputMismatchError(
            f"task {spec.short_name!r} declares {count} outputs {list(names)} but returned "
            f"{len(items)} values"
        )
    return dict(zip(names, items, strict=True))


def check_output_names(owner: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise TaskDefinitionError(
            f"{owner}: outputs must be a list of names, not the string {names!r}"
        )
    out = []
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise TaskDefinitionError(f"{owner}: output name {name!r} is not a valid identifier")
        out.append(name)
    if len(set(out)) != len(out):
        raise TaskDefinitionError(f"{owner}: output names repeat: {out}")
    return tuple(out)


def make_spec(
    fn: Callable[..., Any],
    *,
    outputs: Sequence[str] | None = None,
    name: str | None = None,
    serializers: Sequence[str | None] | Mapping[str, str] | None = None,
    options: TaskOptions | None = None,
    version: str | None = None,
) -> TaskSpec:
    if not callable(fn):
        raise TaskDefinitionError(f"@task needs a function, got {fn!r}")
    short = getattr(fn, "__name__", None) or type(fn).__name__
    owner = f"task {short!r}"
    names = check_output_names(owner, [short] if outputs is None else outputs)
    if serializers is None:
        hints: list[str | None] = [None] * len(names)
    elif isinstance(serializers, Mapping):
        unknown = sorted(set(serializers) - set(names))
        if unknown:
            raise TaskDefinitionError(f"{owner}: serializers name unknown outputs {unknown}")
        hints = [serializers.get(n) for n in names]
    else:
        hints = list(serializers)
        if len(hints) != len(names):
            raise TaskDefinitionError(
                f"{owner}: {len(hints)} serializers for {len(names)} outputs {list(names)}"
            )
    params = signature_params(fn)
    simple = all(p.kind in ("positional_or_keyword", "keyword") for p in params)
    return TaskSpec(
        name=name or qualified_name(fn),
        kind=KIND,
        fn=fn,
        inputs=params,
        outputs=tuple(Output(n, None, h) for n, h in zip(names, hints, strict=True)),
        options=options or TaskOptions(),
        short_name=name.rpartition(".")[2] if name else short,
        version=version,
        extra={"keywords_only": simple},
    )


@overload
def task(fn: F, /) -> F: ...


@overload
def task(
    *,
    outputs: Sequence[str] | None = ...,
    name: str | None = ...,
    serializers: Sequence[str | None] | Mapping[str, str] | None = ...,
    cache: bool | None = ...,
    retries: int = ...,
    timeout: float | None = ...,
    executor: str | None = ...,
    resources: Mapping[str, Any] | None = ...,
    version: str | None = ...,
) -> Callable[[F], F]: ...


def task(
    fn: Any = None,
    /,
    *,
    outputs: Sequence[str] | None = None,
    name: str | None = None,
    serializers: Sequence[str | None] | Mapping[str, str] | None = None,
    cache: bool | None = None,
    retries: int = 0,
    timeout: float | None = None,
    executor: str | None = None,
    resources: Mapping[str, Any] | None = None,
    version: str | None = None,
) -> Any:
    """Declare a function as a task: ``@aliquot.task`` or ``@aliquot.task(outputs=[...])``.

    Args:
        outputs: names of the values it returns, in order (default: the
            function's name). Other tasks' parameters of the same name receive them.
        name: qualified name (default ``module.function``).
        serializers: a serializer name per output (list, or dict by output name).
        cache, retries, timeout, executor, resources: task options, handled by
            the plugins that implement them (a run refuses an option nobody handles).
        version: a code version that replaces the source fingerprint.

    The function is returned unchanged (still callable and picklable), with
    its :class:`~aliquot.TaskSpec` attached.
    """

    def decorate(f: F) -> F:
        spec = make_spec(
            f,
            outputs=outputs,
            name=name,
            serializers=serializers,
            options=TaskOptions(
                cache=cache,
                retries=retries,
                timeout=timeout,
                executor=executor,
                resources=dict(resources or {}),
            ),
            version=version,
        )
        set_task_spec(f, spec)
        return f

    if fn is not None:
        if not callable(fn):
            raise TaskDefinitionError(
                f"@task got {fn!r}; use @task or @task(outputs=[...]) with keyword arguments"
            )
        return decorate(fn)
    return decorate


@hookimpl(trylast=True)
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    register(FunctionTaskType())
