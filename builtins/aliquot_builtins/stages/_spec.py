"""Declaring stages and aggregates: argument checks, cachers, and the task spec.

Everything the seed checks when a stage *runs* is checked here, when it is
*declared*: a wrong ``inputs`` list or a ``cachers`` list of the wrong length is
an error on the ``@stage`` line, not after an hour of upstream work.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from aliquot import (
    Output,
    TaskDefinitionError,
    TaskOptions,
    TaskSpec,
    qualified_name,
    signature_params,
)

from ._errors import (
    CachersMismatchError,
    EmptyCachersError,
    InputSignatureError,
    OutputSignatureError,
)
from ._record import Lazy

#: cacher names curifactory users write, and the serializer each means.
ALIASES: Final = {"npy": "numpy", "pkl": "pickle", "str": "text"}


@attrs.frozen
class StageInfo:
    """What the stages plugin keeps in ``TaskSpec.extra["stage"]``."""

    inputs: tuple[str, ...]
    suppress_missing_inputs: bool
    aggregate: bool
    #: Parameters after the record (and ``records``), for positional call arguments.
    positional: tuple[str, ...]
    accepts_any: bool
    #: Why the stage is never cached (a None cacher, no outputs), or "".
    uncached: str


def _cacher_name(owner: str, index: int, output: str, cacher: Any) -> str | None:
    """A serializer name for one entry of ``cachers`` (None: that output is not cached)."""
    if cacher is None:
        return None
    if isinstance(cacher, str):
        if not cacher:
            raise TaskDefinitionError(f"{owner}: cachers[{index}] is an empty name")
        return ALIASES.get(cacher, cacher)
    name = getattr(cacher, "name", None)
    if isinstance(name, str) and name and callable(getattr(cacher, "dumps", None)):
        return name
    if isinstance(cacher, type) and hasattr(cacher, "serialize"):
        # An artifact task class (Dioptra's cacher shape): stored by the artifacts plugin.
        from aliquot_builtins.artifacts import serializer_name

        try:
            return serializer_name(cacher)
        except TaskDefinitionError as exc:
            raise TaskDefinitionError(
                f"{owner}: cachers[{index}] (for output {output!r}): {exc}"
            ) from exc
    raise TaskDefinitionError(
        f"{owner}: cachers[{index}] (for output {output!r}) is {cacher!r}; use a serializer "
        "name ('json', 'pickle', 'bytes', 'npy', ...), a serializer object or an artifact "
        "task class"
    )


def _outputs(owner: str, outputs: Sequence[Any] | None) -> list[tuple[str, bool]]:
    if outputs is None:
        return []
    if isinstance(outputs, (str, Lazy)):
        raise TaskDefinitionError(f"{owner}: outputs must be a list, not {outputs!r}")
    out: list[tuple[str, bool]] = []
    for item in outputs:
        if isinstance(item, Lazy):
            if not item.resolve:
                raise TaskDefinitionError(
                    f"{owner}: Lazy({item.name!r}, resolve=False) is not supported: values live "
                    "in aliquot's store, not in files, so there is no cacher path to hand over; "
                    "return a path as the output if the stage manages its own file"
                )
            name, lazy = item.name, True
        elif isinstance(item, str):
            name, lazy = item, False
        else:
            raise TaskDefinitionError(
                f"{owner}: output {item!r} is not a name (str) or a Lazy(name)"
            )
        if not name.isidentifier() or keyword.iskeyword(name):
            raise TaskDefinitionError(f"{owner}: output name {name!r} is not a valid identifier")
        out.append((name, lazy))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise TaskDefinitionError(f"{owner}: output names repeat: {names}")
    return out


def build_spec(
    fn: Callable[..., Any],
    *,
    kind: str,
    inputs: Sequence[str] | None,
    outputs: Sequence[Any] | None,
    cachers: Sequence[Any] | None,
    suppress_missing_inputs: bool,
    name: str | None,
    version: str | None,
    options: TaskOptions,
    track_reads: bool,
) -> TaskSpec:
    aggregate = kind == "aggregate"
    decorator = "@aggregate" if aggregate else "@stage"
    if not callable(fn) or isinstance(fn, type):
        raise TaskDefinitionError(f"{decorator} needs a function, got {fn!r}")
    short = name.rpartition(".")[2] if name else getattr(fn, "__name__", type(fn).__name__)
    owner = f"{kind} {short!r}"

    # ---- inputs and the signature
    if inputs is None:
        inputs = []
    if isinstance(inputs, str):
        raise TaskDefinitionError(f"{owner}: inputs must be a list of names, not {inputs!r}")
    inputs = list(inputs)
    for item in inputs:
        if not isinstance(item, str):
            raise TaskDefinitionError(f"{owner}: input {item!r} is not a name (str)")
    if len(set(inputs)) != len(inputs):
        raise TaskDefinitionError(f"{owner}: inputs repeat: {inputs}")
    params = signature_params(fn)
    leading = 2 if aggregate else 1
    positional = [p for p in params if p.kind in ("positional", "positional_or_keyword")]
    if len(positional) < leading:
        wanted = "(record, records, ...)" if aggregate else "(record, ...)"
        raise InputSignatureError(
            f"{owner}: the function must take {wanted}: the record comes first"
            + (", then the list of records" if aggregate else "")
        )
    rest = [p for p in params if p.name not in {q.name for q in positional[:leading]}]
    by_name = {p.name: p for p in rest if not p.is_variadic}
    accepts_any = any(p.kind == "var_keyword" for p in params)
    missing = [i for i in inputs if i not in by_name]
    if missing and not accepts_any:
        raise InputSignatureError(
            f"{owner}: input(s) {missing} are not parameters of {short}(); every name in "
            "inputs=[...] must be a parameter of the function, with the same name"
        )
    if suppress_missing_inputs:
        if aggregate:
            raise TaskDefinitionError(f"{owner}: aggregates take no suppress_missing_inputs")
        no_default = [i for i in inputs if i in by_name and by_name[i].required]
        if no_default:
            raise InputSignatureError(
                f"{owner}: suppress_missing_inputs=True but input(s) {no_default} have no "
                "default value; a missing input is left out of the call, so give each a default"
            )

    # ---- outputs and cachers
    outs = _outputs(owner, outputs)
    if cachers is not None:
        if isinstance(cachers, (str, bytes)) or not isinstance(cachers, Sequence):
            raise TaskDefinitionError(
                f"{owner}: cachers must be a list (one per output) or None, not {cachers!r}"
            )
        if len(cachers) == 0:
            raise EmptyCachersError(
                f"{owner}: cachers=[] is empty; use cachers=None for 'any suitable serializer', "
                "or one cacher per output"
            )
        if len(cachers) != len(outs):
            raise CachersMismatchError(
                f"{owner}: {len(cachers)} cacher(s) for {len(outs)} output(s) "
                f"{[n for n, _ in outs]}; give exactly one per output (None: not cached)"
            )
        hints = [_cacher_name(owner, i, outs[i][0], c) for i, c in enumerate(cachers)]
    else:
        hints = [None] * len(outs)
    uncached = ""
    if cachers is not None:
        for (out_name, lazy), cacher in zip(outs, cachers, strict=True):
            if cacher is None:
                if lazy:
                    raise OutputSignatureError(
                        f"{owner}: Lazy output {out_name!r} has no cacher: a lazy value lives "
                        "only in the store; give it a cacher (or cachers=None for automatic)"
                    )
                uncached = uncached or f"output {out_name!r} has no cacher (None)"
    if not outs:
        uncached = "it has no outputs (a stage without outputs always runs)"
    if uncached and options.cache is True:
        raise TaskDefinitionError(f"{owner}: cache=True, but {uncached}")

    info = StageInfo(
        inputs=tuple(inputs),
        suppress_missing_inputs=suppress_missing_inputs,
        aggregate=aggregate,
        positional=tuple(p.name for p in rest if not p.is_variadic and p.kind != "keyword"),
        accepts_any=accepts_any,
        uncached=uncached,
    )
    task_options = options
    if uncached:
        task_options = attrs.evolve(options, cache=False)
    by_reads: tuple[str, ...] = ()
    if track_reads:
        by_reads = ("record", "records") if aggregate else ("record",)
    annotation = inspect.signature(fn).return_annotation
    single = annotation if len(outs) == 1 and annotation is not inspect.Signature.empty else None
    return TaskSpec(
        name=name or qualified_name(fn),
        kind=kind,
        fn=fn,
        inputs=params,
        outputs=tuple(
            Output(n, single, hint, lazy) for (n, lazy), hint in zip(outs, hints, strict=True)
        ),
        options=task_options,
        short_name=short,
        version=version,
        extra={"stage": info, "cache_by_reads": by_reads},
    )


def unpack(spec: TaskSpec, value: Any) -> dict[str, Any]:
    """Map a stage's return value onto its outputs (one output: the value, whatever it is)."""
    names = spec.output_names
    count = len(names)
    if count == 0:
        return {}
    if count == 1:
        return {names[0]: value}
    if isinstance(value, (tuple, list)) and len(value) == count:
        return dict(zip(names, value, strict=True))
    got = (
        f"{len(value)} values"
        if isinstance(value, (tuple, list))
        else f"a single {type(value).__name__}"
    )
    raise OutputSignatureError(
        f"{spec.kind} {spec.short_name!r} declares {count} outputs {list(names)} but returned "
        f"{got}; return a tuple of {count} values in that order"
    )


def info_of(spec: TaskSpec) -> StageInfo:
    info = spec.extra.get("stage")
    if not isinstance(info, StageInfo):
        raise TaskDefinitionError(f"task {spec.short_name!r} is not a stage or an aggregate")
    return info
