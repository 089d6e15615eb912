"""``Operator.map`` / ``star_map``: one call per input on a kernel executor.

Every input gets its own :class:`aliquot.Call` built before anything runs (so
each call holds its own arguments: no late binding), the calls are submitted
at once into a trio nursery, and results land in input order. The executor
bounds concurrency: ``threads:N`` runs at most N calls at once, ``processes:N``
has N worker processes, ``inline`` runs one at a time in the trio thread.
Without a ``kernel`` the executors come from a process-wide kernel on a
``memory://`` store (plugins loaded once; nothing is stored).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from aliquot import AliquotError, Call, Executed

_SHARED: Any = None
_SHARED_LOCK = threading.Lock()


class MapError(AliquotError):
    """One input of a ``map``/``star_map`` failed (the others were cancelled).

    Attributes: ``index`` (the input's position), ``input`` (its arguments)
    and ``error`` (the exception, also the ``__cause__``).
    """

    user_error = False

    def __init__(self, index: int, args: tuple[Any, ...], error: BaseException) -> None:
        self.index = index
        self.input = args
        self.error = error
        shown = repr(args[0]) if len(args) == 1 else repr(args)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"input {index} ({shown}) failed: {type(error).__name__}: {error}")


def shared_kernel() -> Any:
    """The process-wide kernel whose executors ``map`` uses by default."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            import aliquot

            _SHARED = aliquot.Kernel.open("memory://")
        return _SHARED


def _parse(executor: str, workers: int | None) -> tuple[str, int | None]:
    name, _, count = executor.partition(":")
    if not name:
        raise AliquotError(f"map: invalid executor {executor!r}: expected NAME or NAME:N")
    if count:
        try:
            declared = int(count)
        except ValueError:
            raise AliquotError(f"map: invalid executor {executor!r}: N must be a number") from None
        if workers is not None and workers != declared:
            raise AliquotError(
                f"map: executor {executor!r} says {declared} workers but workers={workers}"
            )
        workers = declared
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise AliquotError(f"map: workers must be a whole number >= 1, got {workers!r}")
    return name, workers


def run_map(
    fn: Any,
    arguments: Sequence[tuple[Any, ...]],
    *,
    workers: int | None,
    executor: str,
    return_exceptions: bool,
    kernel: Any,
) -> list[Any]:
    name, count = _parse(executor, workers)
    kernel = kernel if kernel is not None else shared_kernel()
    factory = kernel.executors.get(name)  # an unknown name is an error even with no inputs
    if not arguments:
        return []
    label = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    calls = [Call(fn, args, {}, f"{label}.map[{i}]") for i, args in enumerate(arguments)]
    results: list[Any] = [None] * len(calls)

    import trio

    async def main() -> None:
        failure: list[MapError] = []
        async with factory(workers=count) as pool, trio.open_nursery() as nursery:

            async def one(index: int, call: Call) -> None:
                # An executor may run the call before its first await: after a failure,
                # calls not started yet must not start at all.
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    value = await pool.submit(call)
                    results[index] = value.value if type(value) is Executed else value
                except Exception as exc:
                    if return_exceptions:
                        results[index] = exc
                        return
                    if not failure:
                        failure.append(MapError(index, call.args, exc))
                        nursery.cancel_scope.cancel()

            for index, call in enumerate(calls):
                nursery.start_soon(one, index, call)
        if failure:
            raise failure[0] from failure[0].error

    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        trio.run(main)
    else:
        # Already inside a trio loop (an operator running inline under a kernel):
        # run the map on a thread of its own, which owns its own loop.
        box: list[BaseException] = []

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:
                box.append(exc)

        thread = threading.Thread(target=run, name="aliquot-map")
        thread.start()
        thread.join()
        if box:
            raise box[0]
    return results
