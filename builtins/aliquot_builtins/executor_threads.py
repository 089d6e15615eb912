"""The ``threads`` executor: calls run in worker threads (``trio.to_thread``).

Good for tasks that release the GIL (I/O, NumPy, most native libraries).
``threads:N`` runs calls on at most N threads at once (default:
``min(32, cpus + 4)``, like :class:`concurrent.futures.ThreadPoolExecutor`),
through ``trio.to_thread.run_sync`` under a capacity limiter of N.
``async def`` tasks are awaited in the trio thread instead.

A thread hop costs tens of microseconds, more than a small task itself. So
when calls are known to be short, one hop carries several: the batch size
adapts so a batch takes about 10 ms, and a batch never takes more than its
share of what is queued. Until call durations are known every hop carries one
call, so slow calls (the usual reason to use threads) keep all N threads.

Threads cannot be interrupted: when a run is cancelled the scheduler stops
waiting for them at once (the node is recorded as cancelled) and the thread
finishes its call in the background, its result discarded. Use the
``processes`` executor for work that must be killable.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar

from aliquot import Call, hookimpl

#: A batch should take about this long (seconds) once call durations are known.
TARGET_BATCH_SECONDS = 0.01


class _Pending:
    __slots__ = ("call", "cancelled", "done", "ok", "value")

    def __init__(self, call: Call, done: Any) -> None:
        self.call = call
        self.done = done
        self.ok = False
        self.value: Any = None
        self.cancelled = False


def _run_batch(batch: list[_Pending]) -> float:
    """Run a batch in a worker thread; returns the seconds spent in calls."""
    spent = 0.0
    for pending in batch:
        if pending.cancelled:
            continue
        start = time.perf_counter()
        try:
            pending.value = pending.call()
            pending.ok = True
        except BaseException as exc:
            pending.value = exc
        spent += time.perf_counter() - start
    return spent


class ThreadsExecutor:
    """Calls in worker threads, batched when they are short (see the module docstring)."""

    name: ClassVar[str] = "threads"

    def __init__(self, workers: int | None = None, max_batch: int = 256) -> None:
        self.workers = workers or min(32, (os.cpu_count() or 1) + 4)
        self.max_batch = max(1, int(max_batch))
        # Enough calls in flight for batching to have something to batch.
        self.capacity = self.workers * min(self.max_batch, 64)
        self._queue: deque[_Pending] = deque()
        self._avg_call = 0.0
        self._lot: Any = None
        self._limiter: Any = None
        self._nursery: Any = None
        self._nursery_cm: Any = None

    async def __aenter__(self) -> ThreadsExecutor:
        import trio

        self._lot = trio.lowlevel.ParkingLot()
        self._limiter = trio.CapacityLimiter(self.workers)
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        for _ in range(self.workers):
            self._nursery.start_soon(self._runner)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._nursery.cancel_scope.cancel()
        return bool(await self._nursery_cm.__aexit__(exc_type, exc, tb))

    async def submit(self, call: Call) -> Any:
        import trio

        if inspect.iscoroutinefunction(call.fn):
            return await call.fn(*call.args, **call.kwargs)
        if self._nursery is None:
            raise RuntimeError("the threads executor is used outside `async with`")
        pending = _Pending(call, trio.Event())
        self._queue.append(pending)
        self._lot.unpark()
        try:
            await pending.done.wait()
        except BaseException:
            pending.cancelled = True
            raise
        if pending.ok:
            return pending.value
        raise pending.value

    async def _runner(self) -> None:
        import trio

        while True:
            while not self._queue:
                await self._lot.park()
            batch = self._take_batch()
            if not batch:
                continue
            spent = await trio.to_thread.run_sync(
                _run_batch, batch, limiter=self._limiter, abandon_on_cancel=True
            )
            mean = spent / len(batch)
            self._avg_call = mean if self._avg_call == 0 else 0.8 * self._avg_call + 0.2 * mean
            for pending in batch:
                pending.done.set()

    def _take_batch(self) -> list[_Pending]:
        queue = self._queue
        size = 1
        if self._avg_call > 0:
            size = max(1, min(self.max_batch, int(TARGET_BATCH_SECONDS / self._avg_call)))
            size = min(size, math.ceil(len(queue) / self.workers))
        batch: list[_Pending] = []
        while queue and len(batch) < size:
            pending = queue.popleft()
            if not pending.cancelled:
                batch.append(pending)
        return batch


@hookimpl(trylast=True)
def aliquot_register_executors(register: Callable[..., None]) -> None:
    register(ThreadsExecutor)
