"""The ``threads`` executor: calls run in worker threads (``trio.to_thread``).

Good for tasks that release the GIL (I/O, NumPy, most native libraries).
``threads:N`` runs at most N calls at once (default: ``min(32, cpus + 4)``,
like :class:`concurrent.futures.ThreadPoolExecutor`). ``async def`` tasks are
awaited in the trio thread instead.

Threads cannot be interrupted: when a run is cancelled the scheduler stops
waiting for them at once (the node is recorded as cancelled) and the thread
finishes its call in the background, its result discarded. Use the
``processes`` executor for work that must be killable.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar

from aliquot import Call, hookimpl


class ThreadsExecutor:
    """Run calls with ``trio.to_thread.run_sync`` under a capacity limiter."""

    name: ClassVar[str] = "threads"

    def __init__(self, workers: int | None = None) -> None:
        self.capacity = workers or min(32, (os.cpu_count() or 1) + 4)
        self._limiter: Any = None

    async def __aenter__(self) -> ThreadsExecutor:
        import trio

        self._limiter = trio.CapacityLimiter(self.capacity)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter = None

    async def submit(self, call: Call) -> Any:
        import trio

        if inspect.iscoroutinefunction(call.fn):
            return await call.fn(*call.args, **call.kwargs)
        if self._limiter is None:
            raise RuntimeError("the threads executor is used outside `async with`")
        return await trio.to_thread.run_sync(call, limiter=self._limiter, abandon_on_cancel=True)


@hookimpl(trylast=True)
def aliquot_register_executors(register: Callable[..., None]) -> None:
    register(ThreadsExecutor)
