"""``Operator``: nbox's nested callables, structured like ``torch.nn.Module``.

An operator is a callable object whose ``forward`` does the work. Operators
assigned as attributes (directly, or in a list, tuple or dict of operators)
become its children; the tree is walked depth-first by
:meth:`Operator.named_operators` with dotted names, each operator once.
Calling an operator is a plain Python call: no kernel is needed.

``@operator()`` (or bare ``@operator``) turns a function into an operator
(default deployment: ``job``), or a class into an operator class whose
instances wrap an instance of it (default deployment: ``serving``); attribute
access on the wrapper reaches the wrapped instance.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, TypeVar, overload

from aliquot import TaskDefinitionError

from ._graph import CallGraph
from ._record import _RECORDER

T = TypeVar("T")

#: Attributes an operator keeps for itself (never forwarded to a wrapped instance).
_OWN = frozenset({"_operators", "_wrapped", "_last_graph", "deployment", "cache", "version"})


def is_operator_container(value: Any) -> bool:
    """A non-empty list, tuple or dict whose items are all operators."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(isinstance(v, Operator) for v in value)
    if isinstance(value, dict):
        return bool(value) and all(isinstance(v, Operator) for v in value.values())
    return False


class Operator:
    """Base class of operators: override :meth:`forward`; assign children as attributes."""

    #: ``job`` (a batch run) or ``serving`` (a long-lived API); how ``deploy`` runs it.
    deployment: ClassVar[str] = "job"
    #: The plugin that runs operators under a kernel (named when it is not loaded).
    __aliquot_plugin__: ClassVar[str] = "operators"
    #: Under a kernel, look calls up in (and store them to) the store.
    cache: ClassVar[bool] = False

    def __init__(self) -> None:
        object.__setattr__(self, "_operators", {})

    # ------------------------------------------------------------ the tree

    def __setattr__(self, name: str, value: Any) -> None:
        children = self.__dict__.get("_operators")
        if children is None:
            if isinstance(value, Operator) or is_operator_container(value):
                raise TaskDefinitionError(
                    f"cannot assign operator {name!r} before Operator.__init__() is called: "
                    f"call super().__init__() first in {type(self).__name__}.__init__"
                )
        elif isinstance(value, Operator) or is_operator_container(value):
            children[name] = value
        else:
            children.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        children = self.__dict__.get("_operators")
        if children is not None:
            children.pop(name, None)
        object.__delattr__(self, name)

    def named_children(self) -> Iterator[tuple[str, Operator]]:
        """Direct children, in assignment order (``layers.0``, ``heads.key`` for containers)."""
        for name, value in self.__dict__.get("_operators", {}).items():
            if isinstance(value, Operator):
                yield name, value
            elif isinstance(value, dict):
                for key, child in value.items():
                    yield f"{name}.{key}", child
            else:
                for index, child in enumerate(value):
                    yield f"{name}.{index}", child

    def children(self) -> Iterator[Operator]:
        for _name, child in self.named_children():
            yield child

    def named_operators(
        self, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Operator]]:
        """``(dotted name, operator)`` for this operator and every descendant, depth-first;
        an operator reached twice is listed once (unless ``remove_duplicate=False``)."""
        seen: set[int] = set()
        stack: list[tuple[str, Operator]] = [(prefix, self)]
        while stack:
            name, op = stack.pop()
            if remove_duplicate:
                if id(op) in seen:
                    continue
                seen.add(id(op))
            yield name, op
            below = [
                (f"{name}.{child}" if name else child, op2) for child, op2 in op.named_children()
            ]
            stack.extend(reversed(below))

    def operators(self) -> Iterator[Operator]:
        for _name, op in self.named_operators():
            yield op

    def propagate(self, **kwargs: Any) -> None:
        """Set each keyword as an attribute on every operator of the tree."""
        for _name, op in self.named_operators():
            for key, value in kwargs.items():
                setattr(op, key, value)

    def __remote_init__(self) -> None:
        """Override to prepare an operator where it runs remotely (load a model...)."""

    def remote_init(self) -> None:
        """Call ``__remote_init__`` on every operator of the tree, parents first."""
        for _name, op in self.named_operators():
            op.__remote_init__()

    # ------------------------------------------------------------ calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.forward() is not defined")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        recorder = _RECORDER.get()
        if recorder is None:
            return self.forward(*args, **kwargs)
        return recorder.call(self, args, kwargs)

    def deploy(self, kind: str = "job", inputs: Any = None, kernel: Any = None) -> Any:
        """Run this operator with ``inputs`` in a background process; returns a :class:`Job`
        (``id``, ``status()``, ``result(timeout=...)``, ``logs()``, ``cancel()``)."""
        from ._jobs import deploy

        return deploy(self, kind=kind, inputs=inputs, kernel=kernel)

    @classmethod
    def from_job(cls, job_id: str | int, kernel: Any = None) -> Any:
        """Re-attach to a job from any process (``spec/operators.md``, "Jobs")."""
        from ._jobs import from_job

        return from_job(job_id, kernel=kernel)

    def get_dag(self) -> CallGraph:
        """The calls of this operator's latest run under a kernel in this process, with
        the data flow between them (see :meth:`aliquot.Run.graph` for stored runs)."""
        graph = self.__dict__.get("_last_graph")
        if graph is None:
            raise LookupError(
                f"{type(self).__name__} has not run under a kernel in this process; run it "
                "(kernel.run(op, inputs=...)) or read a stored run's run.graph()"
            )
        result: CallGraph = graph
        return result

    def map(
        self,
        inputs: Iterable[Any],
        workers: int | None = None,
        *,
        executor: str = "threads",
        return_exceptions: bool = False,
        kernel: Any = None,
    ) -> list[Any]:
        """Call the operator once per input (one positional argument each).

        Results come back in input order. At most ``workers`` calls run at once
        (default: the executor's own default), on the kernel executor named by
        ``executor`` (``threads``, ``processes``, ``inline``, or any plugin's).
        The first failure cancels the rest and raises :class:`MapError` naming
        the input's index; with ``return_exceptions=True`` failures are
        returned in place of results instead.
        """
        from ._map import run_map

        return run_map(
            self,
            [(x,) for x in inputs],
            workers=workers,
            executor=executor,
            return_exceptions=return_exceptions,
            kernel=kernel,
        )

    def star_map(
        self,
        inputs: Iterable[Iterable[Any]],
        workers: int | None = None,
        *,
        executor: str = "threads",
        return_exceptions: bool = False,
        kernel: Any = None,
    ) -> list[Any]:
        """Like :meth:`map`, each input being a tuple of positional arguments."""
        from ._map import run_map

        return run_map(
            self,
            [tuple(args) for args in inputs],
            workers=workers,
            executor=executor,
            return_exceptions=return_exceptions,
            kernel=kernel,
        )

    # ------------------------------------------------------------ display

    def extra_repr(self) -> str:
        """One line shown inside this operator's parentheses in its ``repr``."""
        return ""

    def _repr_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        lines = []
        for name, child in self.named_children():
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {text}")
        extra = self.extra_repr()
        if not lines:
            return f"{self._repr_name()}({extra})"
        head = f"{self._repr_name()}(" + (f"\n  {extra}" if extra else "")
        return head + "\n" + "\n".join(lines) + "\n)"


# ---------------------------------------------------------------------------
# @operator on functions and classes
# ---------------------------------------------------------------------------


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class FunctionOperator(Operator):
    """A function as an operator (made by ``@operator()``); calling it calls the function."""

    deployment = "job"
    _wrapped: Callable[..., Any]

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        object.__setattr__(self, "_wrapped", fn)
        functools.update_wrapper(self, fn)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def _repr_name(self) -> str:
        return f"operator {getattr(self._wrapped, '__qualname__', self._wrapped)!r}"

    def __reduce__(self) -> Any:
        # A module-level decorated function is found again by name (the module attribute
        # is this operator); anything else is pickled with its function.
        module = getattr(self, "__module__", None)
        qualname = getattr(self, "__qualname__", None)
        if module and qualname and "<locals>" not in qualname:
            try:
                if _lookup(module, qualname) is self:
                    return (_lookup, (module, qualname))
            except (ImportError, AttributeError):
                pass
        return (FunctionOperator, (self._wrapped,))


class ClassOperator(Operator):
    """Base of the operator classes ``@operator()`` makes from classes.

    An instance wraps an instance of the decorated class: attribute reads and
    writes that are not the operator's own reach it, and calling the operator
    calls it (when it is callable).
    """

    deployment = "serving"
    __wrapped__: ClassVar[type]
    _wrapped: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        object.__setattr__(self, "_wrapped", type(self).__wrapped__(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: the wrapped instance's attributes.
        if name.startswith("__") or name in _OWN:
            raise AttributeError(name)
        wrapped = self.__dict__.get("_wrapped")
        if wrapped is None:
            raise AttributeError(name)
        return getattr(wrapped, name)

    def __setattr__(self, name: str, value: Any) -> None:
        wrapped = self.__dict__.get("_wrapped")
        if (
            wrapped is None
            or name in _OWN
            or isinstance(value, Operator)
            or is_operator_container(value)
        ):
            super().__setattr__(name, value)
            return
        if name in self.__dict__.get("_operators", {}):
            # A child replaced by a plain value: it stops being a child (and an attribute of
            # the operator); the value goes to the wrapped instance like any other.
            super().__delattr__(name)
        setattr(wrapped, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not callable(self._wrapped):
            raise TypeError(
                f"operator {type(self).__qualname__!r}: {self.__wrapped__.__name__} instances "
                "are not callable; call their methods (they are reached through the operator)"
            )
        return self._wrapped(*args, **kwargs)

    def _repr_name(self) -> str:
        return f"operator {type(self).__qualname__!r}"

    def extra_repr(self) -> str:
        return repr(self._wrapped)


@overload
def operator(fn: Callable[..., T], /, *, cache: bool = ..., version: str | None = ...) -> Any: ...


@overload
def operator(*, cache: bool = ..., version: str | None = ...) -> Callable[[Any], Any]: ...


def operator(fn: Any = None, /, *, cache: bool = False, version: str | None = None) -> Any:
    """Wrap a function or a class as an operator: ``@operator()`` or ``@operator``.

    A function becomes a :class:`FunctionOperator` (deployment ``job``); a
    class becomes an operator class whose instances wrap instances of it
    (deployment ``serving``). The result keeps the name, module and docstring,
    so it pickles by reference like the original.
    """
    if fn is None:
        return lambda target: operator(target, cache=cache, version=version)
    if isinstance(fn, Operator):
        return fn
    if isinstance(fn, type):
        if issubclass(fn, Operator):
            return fn
        namespace: dict[str, Any] = {
            "cache": cache,
            "version": version,
            "__wrapped__": fn,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "__doc__": fn.__doc__,
        }
        wrapper = type(fn.__name__, (ClassOperator,), namespace)
        # The original stays reachable by name for pickle: ``module.Name.__wrapped__``.
        fn.__qualname__ = f"{fn.__qualname__}.__wrapped__"
        return wrapper
    if callable(fn):
        made = FunctionOperator(fn)
        if cache:
            object.__setattr__(made, "cache", True)
        if version is not None:
            object.__setattr__(made, "version", version)
        return made
    raise TaskDefinitionError(f"@operator needs a function or a class, got {fn!r}")
