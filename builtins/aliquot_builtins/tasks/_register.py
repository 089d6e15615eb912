"""Function tasks: ``@register`` and the metadata every task carries.

A registered task's inputs and their types come from its signature, its
outputs from its return annotation (one output ``output``; one per item of a
``tuple[...]`` return, ``output_0``, ``output_1``...; one per field of a
NamedTuple return). A registration may override output names, input and output
types and ``required``; what disagrees with the code (an input the function
does not take, a required parameter left out, a parameter with no default made
optional) is refused when it is registered, not when it runs.

The same metadata is derived from source text by :mod:`._analysis` (task-plugin
files are never executed to register them), so both paths meet in
:func:`apply_registration`.
"""

from __future__ import annotations

import inspect
import keyword
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, overload

import attrs

from aliquot import (
    Output,
    TaskDefinitionError,
    TaskOptions,
    TaskSpec,
    qualified_name,
    set_task_spec,
    signature_params,
)

from ._types import TypeDefinitionError, TypeExpr, TypeTable, from_annotation, renamed

KIND = "task"
F = TypeVar("F", bound=Callable[..., Any])

InputKind = Literal[
    "positional", "positional_or_keyword", "keyword", "var_positional", "var_keyword", "extra"
]


@attrs.frozen
class InputInfo:
    """One input of a task: its type, whether a value must be given, and how it is passed.

    ``kind`` is the Python parameter kind, or ``extra`` for a registered input
    the function takes through ``**kwargs``. The type of ``*args`` is that of
    each extra positional value; of ``**kwargs``, that of each extra keyword value.
    """

    name: str
    type: TypeExpr = "any"
    required: bool = True
    kind: InputKind = "positional_or_keyword"
    description: str | None = None

    @property
    def is_variadic(self) -> bool:
        return self.kind in ("var_positional", "var_keyword")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "kind": self.kind,
        }
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputInfo:
        return cls(
            str(data["name"]),
            data.get("type", "any"),
            bool(data.get("required", True)),
            data.get("kind", "positional_or_keyword"),
            data.get("description"),
        )


@attrs.frozen
class OutputInfo:
    name: str
    type: TypeExpr = "any"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputInfo:
        return cls(str(data["name"]), data.get("type", "any"))


@attrs.frozen(eq=False)
class Signature:
    """Inputs, outputs and the custom types they use."""

    inputs: tuple[InputInfo, ...]
    outputs: tuple[OutputInfo, ...]
    types: TypeTable

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [i.to_json() for i in self.inputs],
            "outputs": [o.to_json() for o in self.outputs],
            "types": self.types.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(InputInfo.from_json(i) for i in data.get("inputs", ())),
            tuple(OutputInfo.from_json(o) for o in data.get("outputs", ())),
            TypeTable(data.get("types") or {}),
        )

    def renamed(self, rename: Callable[[str], str]) -> Signature:
        """The same signature with custom type names passed through ``rename``."""
        return Signature(
            tuple(attrs.evolve(i, type=renamed(i.type, rename)) for i in self.inputs),
            tuple(attrs.evolve(o, type=renamed(o.type, rename)) for o in self.outputs),
            self.types.renamed(rename),
        )

    @property
    def takes_varargs(self) -> bool:
        return any(i.kind == "var_positional" for i in self.inputs)

    @property
    def takes_kwargs(self) -> bool:
        return any(i.kind == "var_keyword" for i in self.inputs)


# ---------------------------------------------------------------------------
# Deriving from live functions
# ---------------------------------------------------------------------------


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        # Unresolvable string annotations: read each one as source text instead.
        return dict(getattr(fn, "__annotations__", {}) or {})


def derive(fn: Callable[..., Any]) -> Signature:
    """Inputs and outputs as the signature and annotations say."""
    table = TypeTable()
    hints = _hints(fn)
    inputs = []
    for param in signature_params(fn):
        annotation = hints.get(param.name, inspect.Parameter.empty)
        typ = "any" if annotation is inspect.Parameter.empty else from_annotation(annotation, table)
        inputs.append(InputInfo(param.name, typ, param.required, param.kind))
    returns = hints.get("return", inspect.Signature.empty)
    outputs = outputs_from_return(returns, table)
    return Signature(tuple(inputs), outputs, table)


def outputs_from_return(annotation: Any, table: TypeTable) -> tuple[OutputInfo, ...]:
    if annotation is inspect.Signature.empty:
        return (OutputInfo("output", "any"),)
    if annotation is None or annotation is type(None):
        return ()
    if isinstance(annotation, type) and issubclass(annotation, tuple):
        fields = getattr(annotation, "_fields", None)
        if fields:
            hints = _hints(annotation)
            return tuple(
                OutputInfo(
                    f,
                    from_annotation(hints[f], table) if f in hints else "any",
                )
                for f in fields
            )
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple and len(args) >= 2 and args[1] is not Ellipsis:
        return tuple(
            OutputInfo(f"output_{i}", from_annotation(a, table)) for i, a in enumerate(args)
        )
    return (OutputInfo("output", from_annotation(annotation, table)),)


# ---------------------------------------------------------------------------
# Registration overrides (shared with static analysis and the client)
# ---------------------------------------------------------------------------


def _type_of(entry: Mapping[str, Any], owner: str, table: TypeTable) -> TypeExpr | None:
    keys = [k for k in ("type", "parameterType", "parameter_type") if k in entry]
    if len(keys) > 1:
        raise TaskDefinitionError(f"{owner}: give one of {keys}, not several")
    if not keys:
        return None
    try:
        typ = table.normalize(entry[keys[0]], owner)
        for name in table.undefined(typ):
            if "." not in name:
                raise TypeDefinitionError(
                    f"{owner}: type {name!r} of {entry.get('name')!r} is not defined (builtin "
                    "types: any, string, integer, number, boolean, null; a class is named by "
                    "its dotted path, e.g. numpy.ndarray)"
                )
            table.define(name)  # a class by its dotted path: a simple custom type
    except TypeDefinitionError as exc:
        raise TaskDefinitionError(str(exc)) from None
    return typ


_INPUT_KEYS = {"name", "type", "parameterType", "parameter_type", "required", "description"}
_OUTPUT_KEYS = {"name", "type", "parameterType", "parameter_type", "description"}


def _entries(
    value: Any, owner: str, what: str, allowed: set[str]
) -> tuple[list[dict[str, Any]], bool]:
    """Override entries as dicts with a ``name``, and whether they form a full list."""
    if isinstance(value, Mapping):
        out = []
        for name, spec in value.items():
            if isinstance(spec, Mapping):
                entry = {"name": name, **spec}
            else:
                entry = {"name": name, "type": spec}
            out.append(entry)
        full = False
    elif isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, Mapping):
                out.append(dict(item))
            else:
                raise TaskDefinitionError(
                    f"{owner}: each of {what} is a name or a mapping with a 'name', not {item!r}"
                )
        full = True
    else:
        raise TaskDefinitionError(
            f"{owner}: {what} must be a list or a mapping, not {type(value).__name__}"
        )
    seen: set[str] = set()
    for entry in out:
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise TaskDefinitionError(
                f"{owner}: {what} entry {entry.get('name')!r} has unknown key(s) {unknown} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise TaskDefinitionError(f"{owner}: {what} name {name!r} is not a valid identifier")
        if name in seen:
            raise TaskDefinitionError(f"{owner}: {what} name {name!r} is given twice")
        seen.add(name)
    return out, full


def apply_registration(
    derived: Signature,
    owner: str,
    *,
    inputs: Any = None,
    outputs: Any = None,
) -> Signature:
    """``derived`` with a registration's overrides applied, or an error naming the
    disagreement.

    ``inputs``: a mapping ``{param: type or {type, required, description}}``
    overrides those parameters; a list of ``{name, type, required}`` is the
    complete list (Dioptra's ``inputParams``) and must cover every required
    parameter. Names the function does not take are refused, unless it takes
    ``**kwargs`` (they reach it there). ``outputs``: names, or ``{name, type}``
    entries, or a mapping name -> type; the count must agree with a return
    annotation that gives several.
    """
    table = TypeTable()
    table.merge(derived.types)
    by_name = {i.name: i for i in derived.inputs}
    result_inputs = list(derived.inputs)
    if inputs is not None:
        entries, full = _entries(inputs, owner, "inputs", _INPUT_KEYS)
        named = {i.name for i in derived.inputs if i.kind not in ("var_positional", "var_keyword")}
        if full:
            given = {e["name"] for e in entries}
            left_out = [i.name for i in derived.inputs if i.required and i.name not in given]
            if left_out:
                raise TaskDefinitionError(
                    f"{owner}: the registered inputs leave out required parameter(s) "
                    f"{left_out} of the function"
                )
        extra: list[InputInfo] = []
        for entry in entries:
            name = entry["name"]
            typ = _type_of(entry, owner, table)
            required = entry.get("required")
            if required is not None and not isinstance(required, bool):
                raise TaskDefinitionError(
                    f"{owner}: 'required' of input {name!r} must be true or false"
                )
            base = by_name.get(name)
            if base is not None and base.is_variadic:
                if required:
                    raise TaskDefinitionError(
                        f"{owner}: input {name!r} takes the extra "
                        + ("positional" if base.kind == "var_positional" else "keyword")
                        + " values; it cannot be required (give it a type only)"
                    )
                by_name[name] = attrs.evolve(
                    base,
                    type=typ if typ is not None else base.type,
                    description=entry.get("description", base.description),
                )
                continue
            if base is None:
                if not derived.takes_kwargs:
                    takes = ", ".join(sorted(named)) or "no named parameters"
                    raise TaskDefinitionError(
                        f"{owner}: registered input {name!r} is not a parameter of the "
                        f"function (it takes {takes}"
                        + ("" if derived.takes_kwargs else " and no **kwargs")
                        + ")"
                    )
                extra.append(
                    InputInfo(
                        name,
                        typ or "any",
                        True if required is None else required,
                        "extra",
                        entry.get("description"),
                    )
                )
                continue
            if required is False and base.required:
                raise TaskDefinitionError(
                    f"{owner}: input {name!r} is registered as not required, but the function "
                    "gives it no default"
                )
            by_name[name] = attrs.evolve(
                base,
                type=typ if typ is not None else base.type,
                required=base.required if required is None else required,
                description=entry.get("description", base.description),
            )
        result_inputs = [by_name[i.name] for i in derived.inputs] + extra
    result_outputs = list(derived.outputs)
    if outputs is not None:
        if isinstance(outputs, str):
            raise TaskDefinitionError(
                f"{owner}: outputs must be a list of names, not the string {outputs!r}"
            )
        entries, _full = _entries(outputs, owner, "outputs", _OUTPUT_KEYS)
        count = len(derived.outputs)
        if count > 1 and len(entries) not in (1, count):
            raise TaskDefinitionError(
                f"{owner}: {len(entries)} output name(s) {[e['name'] for e in entries]} for a "
                f"function whose return annotation gives {count} values"
            )
        result_outputs = []
        for index, entry in enumerate(entries):
            typ = _type_of(entry, owner, table)
            if typ is None:
                if len(entries) == count:
                    typ = derived.outputs[index].type
                elif count == 1 and len(entries) == 1:
                    typ = derived.outputs[0].type
                elif count > 1 and len(entries) == 1:
                    typ = {"tuple": [o.type for o in derived.outputs]}
                else:
                    typ = "any"
            result_outputs.append(OutputInfo(entry["name"], typ))
    return Signature(tuple(result_inputs), tuple(result_outputs), table)


# ---------------------------------------------------------------------------
# @register
# ---------------------------------------------------------------------------


def make_task_spec(
    fn: Callable[..., Any],
    signature: Signature,
    *,
    name: str,
    short_name: str | None = None,
    options: TaskOptions | None = None,
    version: str | None = None,
    description: str | None = None,
    origin: str = "",
) -> TaskSpec:
    params = signature_params(fn)
    simple = all(p.kind in ("positional_or_keyword", "keyword") for p in params) and not any(
        i.kind == "extra" for i in signature.inputs
    )
    return TaskSpec(
        name=name,
        kind=KIND,
        fn=fn,
        inputs=params,
        outputs=tuple(Output(o.name) for o in signature.outputs),
        options=options or TaskOptions(),
        short_name=short_name or name.rpartition(".")[2],
        version=version,
        extra={
            "signature": signature,
            "keywords_only": simple,
            "description": description,
            "origin": origin,
        },
    )


def signature_of(spec: TaskSpec) -> Signature:
    found = spec.extra.get("signature")
    if isinstance(found, Signature):
        return found
    raise TaskDefinitionError(f"task {spec.name!r} is not a registered task (@aliquot.register)")


@overload
def register(fn: F, /) -> F: ...


@overload
def register(
    *,
    name: str | None = ...,
    outputs: Any = ...,
    inputs: Any = ...,
    description: str | None = ...,
    cache: bool | None = ...,
    retries: int = ...,
    timeout: float | None = ...,
    executor: str | None = ...,
    resources: Mapping[str, Any] | None = ...,
    version: str | None = ...,
) -> Callable[[F], F]: ...


def register(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    outputs: Any = None,
    inputs: Any = None,
    description: str | None = None,
    cache: bool | None = None,
    retries: int = 0,
    timeout: float | None = None,
    executor: str | None = None,
    resources: Mapping[str, Any] | None = None,
    version: str | None = None,
) -> Any:
    """Register a function task: ``@register`` or ``@register(outputs=[...])``.

    Inputs and types come from the signature, outputs from the return
    annotation (see the module docstring). Overrides:

    Args:
        name: qualified name (default ``module.function``; in a task plugin,
            ``plugin.file.function``).
        outputs: output names (``["loss", "acc"]``), ``{name, type}`` entries or
            a mapping name -> type.
        inputs: a mapping parameter -> type (or ``{type, required, description}``)
            overriding those parameters, or a complete list of ``{name, type,
            required}`` entries.
        description: shown by ``aliquot tasks show``.
        cache, retries, timeout, executor, resources, version: task options, as
            for :func:`aliquot.task`.

    The function is returned unchanged, with its task spec attached.
    """

    def decorate(f: F) -> F:
        if not callable(f) or isinstance(f, type):
            raise TaskDefinitionError(f"@register needs a function, got {f!r}")
        qualified = name or qualified_name(f)
        owner = f"task {qualified!r}"
        try:
            derived = derive(f)
        except TypeDefinitionError as exc:
            raise TaskDefinitionError(f"{owner}: {exc}") from None
        signature = apply_registration(derived, owner, inputs=inputs, outputs=outputs)
        spec = make_task_spec(
            f,
            signature,
            name=qualified,
            options=TaskOptions(
                cache=cache,
                retries=retries,
                timeout=timeout,
                executor=executor,
                resources=dict(resources or {}),
            ),
            version=version,
            description=description if description is not None else inspect.getdoc(f),
            origin=f"module {getattr(f, '__module__', '?')}",
        )
        set_task_spec(f, spec)
        return f

    if fn is not None:
        if not callable(fn):
            raise TaskDefinitionError(
                f"@register got {fn!r}; use @register or @register(outputs=[...]) with keywords"
            )
        return decorate(fn)
    return decorate
