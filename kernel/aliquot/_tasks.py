"""The task vocabulary: what a task is, what it takes and what it returns.

A *task* is a callable that a task-type plugin has described as a
:class:`TaskSpec`. Decorators keep the original function and hang the spec on it
as ``__aliquot_task__``: the function stays a plain function (callable,
picklable by reference, inspectable), and the kernel finds the spec in O(1).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs

from ._errors import TaskDefinitionError

#: The attribute under which a decorated object carries its :class:`TaskSpec`.
SPEC_ATTRIBUTE: Final = "__aliquot_task__"

ParamKind = Literal[
    "positional", "positional_or_keyword", "keyword", "var_positional", "var_keyword"
]


class _Missing:
    """The default of a parameter that has none."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTHING"

    def __reduce__(self) -> str:
        return "NOTHING"


#: Sentinel: "this parameter has no default".
NOTHING: Final = _Missing()

_KINDS: Final[dict[inspect._ParameterKind, ParamKind]] = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


@attrs.frozen
class Param:
    """One input of a task.

    ``kind`` follows Python's parameter kinds: ``positional`` (positional-only),
    ``positional_or_keyword``, ``keyword`` (keyword-only), ``var_positional``
    (``*args``) and ``var_keyword`` (``**kwargs``).
    """

    name: str
    annotation: Any = None
    default: Any = NOTHING
    kind: ParamKind = "positional_or_keyword"

    @property
    def required(self) -> bool:
        """True when a value must be bound (no default, not ``*args``/``**kwargs``)."""
        return self.default is NOTHING and self.kind not in ("var_positional", "var_keyword")

    @property
    def is_variadic(self) -> bool:
        return self.kind in ("var_positional", "var_keyword")


@attrs.frozen
class Output:
    """One named output of a task.

    ``serializer`` is an optional serializer name. A ``lazy`` output is stored
    as soon as it is produced and dropped from memory; every consumer loads its
    own copy from the store.
    """

    name: str
    annotation: Any = None
    serializer: str | None = None
    lazy: bool = False


@attrs.frozen
class TaskOptions:
    """Options a task declares; the plugins that handle them read them from here.

    ``cache`` (None = the cache plugin's default), ``retries``, ``timeout``
    (seconds), ``executor`` (a name, optionally ``name:N``) and free-form
    ``resources``.
    """

    cache: bool | None = None
    retries: int = 0
    timeout: float | None = None
    executor: str | None = None
    resources: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.retries < 0:
            raise TaskDefinitionError(f"retries must be >= 0, got {self.retries}")
        if self.timeout is not None and self.timeout <= 0:
            raise TaskDefinitionError(f"timeout must be > 0 seconds, got {self.timeout}")


@attrs.frozen(slots=False, eq=False)
class TaskSpec:
    """Everything the kernel knows about one task.

    Attributes:
        name: qualified name, ``module.function`` (or ``plugin.name``).
        kind: the task type that owns it (``function``, ``stage``, ...).
        fn: the callable.
        inputs: parameters, in signature order.
        outputs: named outputs, in return order.
        options: :class:`TaskOptions`.
        short_name: the name users type (``load``); defaults to the last part of ``name``.
        version: a user-declared code version; when set it replaces the source
            fingerprint (for code whose source is unavailable or deliberately pinned).
        extra: private data of the task type (read only by that plugin).
    """

    name: str
    kind: str
    fn: Callable[..., Any]
    inputs: tuple[Param, ...] = ()
    outputs: tuple[Output, ...] = ()
    options: TaskOptions = attrs.field(factory=TaskOptions)
    short_name: str = ""
    version: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.short_name:
            object.__setattr__(self, "short_name", self.name.rpartition(".")[2])
        names = [o.name for o in self.outputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TaskDefinitionError(f"task {self.name!r} declares output(s) {dupes} twice")

    @functools.cached_property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the task's own code (or of ``version`` when declared).

        The source is parsed and dumped without docstrings, so comments,
        docstrings and formatting do not change it; any change to the code
        does. Plugins that need a transitive fingerprint (helpers, constants)
        build on this one.
        """
        if self.version is not None:
            return hashlib.sha256(f"version:{self.version}".encode()).hexdigest()
        return code_fingerprint(self.fn)

    def __repr__(self) -> str:
        return f"<TaskSpec {self.kind}:{self.name} -> {list(self.output_names)}>"


@attrs.frozen
class Call:
    """A bound call: what an executor runs. It must be picklable for process executors."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    #: The task's qualified name, for error messages raised far from the kernel.
    task: str = ""
    #: Modules, besides ``fn``'s, that must be imported to unpickle the arguments in
    #: another process (a task type whose ``fn`` is generic names the user's modules).
    modules: tuple[str, ...] = ()

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


@attrs.frozen
class Executed:
    """What an executor may return instead of a call's bare value: the value, plus facts
    about where it ran (``{"worker": "tcp://10.0.0.5:39211"}``). The kernel unwraps it and
    records ``info`` in the node's record under ``executor``; it must be JSON-serializable.
    """

    value: Any
    info: Mapping[str, Any] = attrs.field(factory=dict)


def set_task_spec(obj: object, spec: TaskSpec) -> None:
    """Attach ``spec`` to a decorated object (what task-type decorators call)."""
    try:
        setattr(obj, SPEC_ATTRIBUTE, spec)
    except (AttributeError, TypeError) as exc:
        raise TaskDefinitionError(
            f"cannot attach a task spec to {obj!r}: {exc}; decorate a def function"
        ) from exc


def task_spec_of(obj: object) -> TaskSpec | None:
    """The :class:`TaskSpec` a decorated object carries, or None."""
    spec = getattr(obj, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, TaskSpec) else None


def signature_params(fn: Callable[..., Any]) -> tuple[Param, ...]:
    """Describe a callable's parameters as :class:`Param` values (signature order)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TaskDefinitionError(f"cannot read the signature of {fn!r}: {exc}") from exc
    params = []
    for p in sig.parameters.values():
        annotation = None if p.annotation is inspect.Parameter.empty else p.annotation
        default = NOTHING if p.default is inspect.Parameter.empty else p.default
        params.append(Param(p.name, annotation, default, _KINDS[p.kind]))
    return tuple(params)


def qualified_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "<unknown>"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
    return f"{module}.{qualname}"


def annotation_text(annotation: Any) -> str | None:
    """A readable form of an annotation for run records (never raises)."""
    if annotation is None:
        return None
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        mod = annotation.__module__
        return annotation.__qualname__ if mod == "builtins" else f"{mod}.{annotation.__qualname__}"
    return repr(annotation).replace("typing.", "")


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: Any) -> Any:
        self.generic_visit(node)
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = _strip
    visit_AsyncFunctionDef = _strip
    visit_ClassDef = _strip


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """SHA-256 of a callable's code, insensitive to comments, docstrings and layout.

    Uses the source when it is available and falls back to the compiled code
    object (bytecode, constants and names) when it is not (functions built with
    ``exec``, some notebooks). A callable with neither gets a fingerprint of its
    qualified name only, which is marked so it can never match real code.
    """
    target = inspect.unwrap(fn)
    try:
        source = textwrap.dedent(inspect.getsource(target))
        tree = ast.parse(source)
        material = "src:" + ast.dump(_StripDocstrings().visit(tree), include_attributes=False)
    except (OSError, TypeError, SyntaxError, IndentationError):
        code = getattr(target, "__code__", None)
        if code is None:
            material = "name-only:" + qualified_name(fn)
        else:
            material = "code:" + _code_material(code)
    return hashlib.sha256(material.encode()).hexdigest()


def _code_material(code: Any) -> str:
    consts = [_code_material(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts]
    return "|".join([code.co_code.hex(), repr(code.co_names), repr(code.co_varnames), *consts])
