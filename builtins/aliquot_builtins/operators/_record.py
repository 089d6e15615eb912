"""Recording the calls an operator makes when it runs under a kernel.

The ``operator`` node calls :func:`drive`, which runs the operator with a
:class:`Recorder` in a context variable; every operator call made inside (a
child, a grandchild, the same child twice) goes through the recorder, which
notes the call (its dotted name in the tree, its parent call, timing, status)
and where its arguments came from: an argument that *is* the object an
earlier call returned is an edge from that call -- the actual data flow, not
the order of the source lines. Identity is the only reliable signal without
rewriting user code; Python shares small integers, booleans, ``None`` and
interned strings, so an edge for such a value names the latest call that
returned that very object.

Operators that ask for it (``@operator(cache=True)``, or ``cache = True`` on
the class) are looked up by a key over their code and state -- the code of
every operator in their subtree, their attributes -- and their arguments,
and their results are stored through the kernel's values. The store is only
touched from the kernel's trio thread (the kernel is its single writer); in a
process worker there is no store, so nothing is cached there (and the record
says so).
"""

from __future__ import annotations

import contextvars
import hashlib
import time
import weakref
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from aliquot import (
    ArtifactRef,
    Node,
    Outcome,
    Output,
    TaskSpec,
    Unfingerprintable,
    code_fingerprint,
    current_run,
    fingerprint,
)

_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "aliquot_operator_recorder", default=None
)
#: Kernels by token, so a call made in this process can reach its kernel (weakly).
_KERNELS: dict[int, weakref.ReferenceType[Any]] = {}
SPACE = "op_cache"


def kernel_token(kernel: Any) -> int:
    token = id(kernel)
    _KERNELS[token] = weakref.ref(kernel)
    return token


@attrs.frozen
class Traced:
    """What :func:`drive` returns: the operator's value and its call record."""

    value: Any
    calls: list[dict[str, Any]]


class Recorder:
    def __init__(self, root: Any, kernel: Any, node_id: str = "") -> None:
        self.kernel = kernel
        self.node_id = node_id
        # In the kernel's process the run is reachable: nested calls are announced to its
        # observers as steps of the operator node (progress lines, test monitors).
        run = current_run() if kernel is not None else None
        self.run = run if run is not None and node_id and run.observed() else None
        self._specs: dict[type, TaskSpec] = {}
        self.names = {id(op): name for name, op in root.named_operators()}
        self.calls: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self._produced: dict[int, tuple[str, Any]] = {}
        self._stack: list[str] = []

    def call(self, op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        name = self.names.get(id(op))
        if name is None:
            name = type(op).__name__  # an operator outside the root's tree
        label = name or "(root)"
        count = self._counts[label] = self._counts.get(label, 0) + 1
        call_id = label if count == 1 else f"{label}#{count}"
        record: dict[str, Any] = {
            "id": call_id,
            "operator": name,
            "class": f"{type(op).__module__}.{type(op).__qualname__}",
            "parent": self._stack[-1] if self._stack else None,
            "inputs": self._sources(args, kwargs),
            "status": "computed",
        }
        self.calls.append(record)
        step = self._step(op, call_id) if self.run is not None and self._stack else None
        self._stack.append(call_id)
        start = time.perf_counter()
        try:
            key, why = self._key(op, args, kwargs) if _wants_cache(op) else (None, None)
            if why:
                record["cache"] = why
            if key is not None:
                hit = self._lookup(key)
                if hit is not _MISS:
                    record["status"] = "cached"
                    result = hit
                else:
                    result = op.forward(*args, **kwargs)
                    record["cache"] = self._save(key, result)
            else:
                result = op.forward(*args, **kwargs)
        except BaseException as exc:
            record["status"] = "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record["duration"] = time.perf_counter() - start
            self._stack.pop()
            if step is not None:
                self._announce_end(step, record)
        self._produced[id(result)] = (call_id, result)
        return result

    # ------------------------------------------------------------ step events

    def _step(self, op: Any, call_id: str) -> Node:
        spec = self._specs.get(type(op))
        if spec is None:
            spec = self._specs[type(op)] = TaskSpec(
                name=f"{type(op).__module__}.{type(op).__qualname__}",
                kind="operator",
                fn=type(op),
                outputs=(Output("output"),),
            )
        node = Node(
            f"{self.node_id}/{call_id}",
            spec,
            labels={"within": self.node_id, "call": call_id},
        )
        run = self.run
        assert run is not None
        self._on_kernel(run.notify_step_started, node)
        return node

    def _announce_end(self, node: Node, record: Mapping[str, Any]) -> None:
        status = record["status"]
        outcome = Outcome(status, reason=record.get("error", "") if status == "failed" else "")
        run = self.run
        assert run is not None
        self._on_kernel(run.notify_step_finished, node, outcome, record["duration"])

    def _sources(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for label, value in [*((str(i), a) for i, a in enumerate(args)), *kwargs.items()]:
            found = self._produced.get(id(value))
            if found is not None and found[1] is value:
                out[label] = found[0]
                continue
            if isinstance(value, (list, tuple)):
                items = {
                    f"{label}[{i}]": self._produced[id(v)][0]
                    for i, v in enumerate(value)
                    if id(v) in self._produced and self._produced[id(v)][1] is v
                }
                out.update(items)
            elif isinstance(value, dict):
                items = {
                    f"{label}[{k!r}]": self._produced[id(v)][0]
                    for k, v in value.items()
                    if id(v) in self._produced and self._produced[id(v)][1] is v
                }
                out.update(items)
        return out

    # ------------------------------------------------------------ caching

    def _key(
        self, op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[bytes | None, str | None]:
        if self.kernel is None:
            return None, "not cached: no store in a process worker"
        try:
            material = orjson.dumps(
                [
                    "operator-call/1",
                    [(name, _code(sub), _state(sub)) for name, sub in op.named_operators()],
                    fingerprint(list(args)),
                    fingerprint(dict(kwargs)),
                ]
            )
        except (Unfingerprintable, TypeError) as exc:
            return None, f"not cached: {exc}"
        return hashlib.sha256(material).digest(), None

    def _on_kernel(self, fn: Any, *args: Any) -> Any:
        import trio

        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return trio.from_thread.run_sync(fn, *args)
        return fn(*args)

    def _lookup(self, key: bytes) -> Any:
        def find() -> Any:
            raw = self.kernel.store.get(SPACE, key)
            if raw is None:
                return _MISS
            ref = ArtifactRef.from_json(orjson.loads(bytes(raw)))
            try:
                return self.kernel.values.load(ref)
            except Exception:
                return _MISS  # a damaged or unloadable entry is a miss

        return self._on_kernel(find)

    def _save(self, key: bytes, value: Any) -> str:
        def save() -> str:
            try:
                ref = self.kernel.values.save(value)
            except Exception as exc:
                return f"not cached: {type(exc).__name__}: {exc}"
            self.kernel.store.put(SPACE, key, orjson.dumps(ref.to_json()))
            return "stored"

        result: str = self._on_kernel(save)
        return result


_MISS = object()


def _wants_cache(op: Any) -> bool:
    return bool(getattr(op, "cache", False))


def _code(op: Any) -> str:
    version = getattr(op, "version", None)
    if isinstance(version, str):
        return f"version:{version}"
    wrapped = op.__dict__.get("_wrapped")
    target = wrapped if callable(wrapped) and not isinstance(wrapped, type) else type(op).forward
    if wrapped is not None and not callable(wrapped):
        target = type(wrapped)
    try:
        return code_fingerprint(target)
    except Exception:
        return code_fingerprint(type(op).forward)


def _state(op: Any) -> str:
    state = {
        k: v
        for k, v in vars(op).items()
        if k not in ("_operators", "_wrapped", "_last_graph", "__wrapped__") and not _is_op(v)
    }
    wrapped = op.__dict__.get("_wrapped")
    if (wrapped is not None and not callable(wrapped)) or (
        wrapped is not None and hasattr(wrapped, "__dict__") and not _is_function(wrapped)
    ):
        state["__wrapped_state__"] = dict(vars(wrapped)) if hasattr(wrapped, "__dict__") else {}
    return fingerprint(state)


def _is_function(obj: Any) -> bool:
    import types

    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


def _is_op(value: Any) -> bool:
    from ._operator import Operator, is_operator_container

    return isinstance(value, Operator) or is_operator_container(value)


def drive(
    op: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    token: int | None,
    node_id: str = "",
) -> Traced:
    """Run ``op`` as the root of a recorded call (what an ``operator`` node executes)."""
    ref = _KERNELS.get(token) if token is not None else None
    kernel = ref() if ref is not None else None
    recorder = Recorder(op, kernel, node_id)
    reset = _RECORDER.set(recorder)
    try:
        value = recorder.call(op, args, kwargs)
    except BaseException as exc:
        exc.add_note(_trace_note(recorder))
        raise
    finally:
        _RECORDER.reset(reset)
    return Traced(value, recorder.calls)


def _trace_note(recorder: Recorder) -> str:
    failed = [c["id"] for c in recorder.calls if c["status"] == "failed"]
    return f"operator calls that failed (innermost last): {', '.join(failed) or '-'}"
