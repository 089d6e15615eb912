"""The ``dask`` executor: bound calls run as tasks on a Dask ``distributed`` cluster.

Lifecycle. Without an address the executor starts a ``LocalCluster`` for the
run -- worker processes, one thread each, sized to the machine (or ``dask:N``),
every server bound to 127.0.0.1 and no dashboard -- and closes it after the
run. With ``address`` it connects a ``distributed.Client`` to that scheduler
(``security`` and any other ``client_options`` pass through) and closes only
the client.

How a call travels. ``submit`` queues the call; a feeder task sends whatever
is queued as one graph update (``client.map`` over the batch: one round trip
to the scheduler for many small calls), and one waiter thread follows every
future with ``as_completed`` and wakes the trio task that asked. Functions
travel with cloudpickle, so functions defined in the user's ``__main__``
script work on the workers. Top-level arguments of 1 MiB and more (bytes,
arrays, anything with ``nbytes``) are scattered once per object and passed as
futures: Dask moves them to each worker at most once however many calls use
them. Workers only compute and return values; the kernel stores them.

Failures. A worker that dies holding a call: the scheduler reruns the call on
another worker, up to ``allowed_failures`` times (local clusters; a remote
scheduler applies its own setting), then the node fails with Dask's
``KilledWorker`` named. Cancelling a run (Ctrl-C, a deadline) cancels the
Dask futures of every call in flight.

Each result comes back as :class:`aliquot.Executed` with the worker's address,
so ``aliquot show RUN`` says where each node ran.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

import trio

from aliquot import AliquotError, Call, Executed

#: Arguments at least this large are scattered once and shared by every call using them.
SCATTER_BYTES = 1 << 20
#: The most calls sent in one graph update.
BATCH = 512
#: Calls the kernel may have in flight with the executor (Dask queues them).
CAPACITY = 1024


class DaskExecutorError(AliquotError):
    """The cluster could not be started or reached."""


class _Runner:
    """What a Dask worker runs: one function over each call's arguments, returning the value
    and the worker's address. One runner per function and batch, so the function (sent by
    value when it lives in ``__main__``) is serialized once per batch, not once per call."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", None) or type(fn).__name__

    def __reduce__(self) -> Any:
        # Dask pickles a runner with plain pickle (it is importable), which would send the
        # function by reference; cloudpickle sends a script's functions by value instead.
        import cloudpickle  # type: ignore[import-untyped,unused-ignore]

        return (_runner_from, (cloudpickle.dumps(self.fn),))

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        from distributed import get_worker

        value = self.fn(*args, **kwargs)
        if inspect.iscoroutine(value):  # an async def task: run it to completion here
            import trio

            coroutine = value

            async def wait() -> Any:
                return await coroutine

            value = trio.run(wait)
        try:
            where = get_worker().address
        except ValueError:
            where = "client"
        return value, where


def _size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value) if not isinstance(value, memoryview) else value.nbytes
    nbytes = getattr(value, "nbytes", None)
    return nbytes if isinstance(nbytes, int) else 0


def _runner_from(data: bytes) -> _Runner:
    import cloudpickle  # type: ignore[import-untyped,unused-ignore]

    return _Runner(cloudpickle.loads(data))


def _unsendable(call: Call, exc: BaseException) -> DaskExecutorError:
    """Why a call could not be sent to the workers, naming the task and the culprit."""
    import cloudpickle  # type: ignore[import-untyped,unused-ignore]

    why = f"{type(exc).__name__}: {exc}"
    for part in (call.fn, *call.args, *call.kwargs.values()):
        try:
            cloudpickle.dumps(part)
        except Exception as inner:
            why = f"{type(inner).__name__}: {inner}"
            break
    return DaskExecutorError(
        f"dask: cannot send the call of task {call.task or call.fn!r} to the workers: {why}"
    )


def _by_value(call: Call) -> None:
    """Send the code of the user's own scripts with the call (cloudpickle by value): the
    workers of an existing cluster cannot import a script loaded from a file path."""
    import cloudpickle  # type: ignore[import-untyped,unused-ignore]

    names = {getattr(call.fn, "__module__", None), *call.modules}
    for name in names:
        module = sys.modules.get(name or "")
        if module is None or name in _REGISTERED or "." in (name or ""):
            continue
        path = getattr(module, "__file__", None) or ""
        if not path or "site-packages" in path or path.startswith(_STDLIB):
            continue
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:
            continue
        _REGISTERED.add(name or "")


_REGISTERED: set[str] = set()
_STDLIB = os.path.dirname(os.__file__)


class _Pending:
    __slots__ = ("call", "done", "error", "future", "value")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.done = trio.Event()
        self.future: Any = None
        self.value: Any = None
        self.error: BaseException | None = None


class DaskExecutor:
    """Runs calls on a Dask cluster (see the module docstring)."""

    name: ClassVar[str] = "dask"

    def __init__(
        self,
        workers: int | None = None,
        *,
        address: str | None = None,
        security: Any = None,
        client_options: Mapping[str, Any] | None = None,
        threads_per_worker: int = 1,
        allowed_failures: int = 2,
        scatter_bytes: int = SCATTER_BYTES,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise DaskExecutorError(f"dask: workers must be >= 1, got {workers}")
        if address is not None and workers is not None:
            raise DaskExecutorError(
                "dask: give a worker count (dask:N) for a local cluster, or an address, not both"
            )
        if allowed_failures < 0:
            raise DaskExecutorError("dask: allowed_failures must be >= 0")
        self.workers = workers or (os.cpu_count() or 1)
        self.address = address
        self.security = security
        self.client_options = dict(client_options or {})
        self.cluster_options = dict(cluster_options or {})
        self.threads_per_worker = threads_per_worker
        self.allowed_failures = allowed_failures
        self.scatter_bytes = scatter_bytes
        #: How many calls the kernel may have in flight here. Dask queues them on its own
        #: scheduler; many in flight make large batches (one graph update each), which is
        #: what keeps small tasks cheap.
        self.capacity = CAPACITY
        self.client: Any = None
        self.cluster: Any = None
        self._queue: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._feeder: threading.Thread | None = None
        self._scattered: dict[int, tuple[Any, Any]] = {}
        self._inflight: dict[str, _Pending] = {}
        self._completed: Any = None
        self._waiter: threading.Thread | None = None
        self._token: Any = None
        self._closing = False

    @classmethod
    def from_run_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``aliquot run --dask-address ADDR`` -> ``address=ADDR``."""
        address = options.get("dask_address")
        return {"address": address} if address else {}

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> DaskExecutor:
        self._token = trio.lowlevel.current_trio_token()
        try:
            await trio.to_thread.run_sync(self._connect)
        except DaskExecutorError:
            raise
        except Exception as exc:
            where = self.address or "a local cluster"
            raise DaskExecutorError(
                f"dask: cannot start or reach {where}: {type(exc).__name__}: {exc}"
            ) from exc
        self._feeder = threading.Thread(target=self._feed, name="aliquot-dask-feeder", daemon=True)
        self._feeder.start()
        return self

    def _connect(self) -> None:
        import dask
        import distributed

        # distributed is untyped: keep its objects as Any.
        Client: Any = distributed.Client
        LocalCluster: Any = distributed.LocalCluster
        as_completed: Any = distributed.as_completed

        if self.address is None:
            with dask.config.set({"distributed.scheduler.allowed-failures": self.allowed_failures}):
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=self.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    # The scheduler's HTTP server (health, metrics) on a free loopback port,
                    # never on Dask's fixed 8787 (taken by any other cluster on the machine).
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": False},  # and no dashboard pages on it
                    silence_logs=40,  # logging.ERROR: worker chatter stays out of the run
                    **self.cluster_options,
                )
            self.client = Client(self.cluster, set_as_default=False, **self.client_options)
        else:
            options = dict(self.client_options)
            if self.security is not None:
                options["security"] = self.security
            self.client = Client(self.address, set_as_default=False, **options)
        self._completed = as_completed([], loop=self.client.loop, with_results=False)
        self._waiter = threading.Thread(target=self._wait, name="aliquot-dask-waiter", daemon=True)
        self._waiter.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        with trio.CancelScope(shield=True):
            if self._feeder is not None:
                await trio.to_thread.run_sync(self._feeder.join, 5.0)
            await trio.to_thread.run_sync(self._close)
            if self._waiter is not None:
                await trio.to_thread.run_sync(self._waiter.join, 5.0)
        return None

    def _close(self) -> None:
        futures = [p.future for p in self._inflight.values() if p.future is not None]
        if futures and self.client is not None:
            try:
                self.client.cancel(futures, force=True)
            except Exception:
                pass
        if self._completed is not None:
            self._completed.clear()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    # ------------------------------------------------------------ calls

    async def submit(self, call: Call) -> Any:
        if self.client is None:
            raise DaskExecutorError("the dask executor is not started (use it with `async with`)")
        pending = _Pending(call)
        with self._ready:
            self._queue.append(pending)
            self._ready.notify()
        try:
            await pending.done.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._cancel(pending)
            raise
        if pending.error is not None:
            raise pending.error
        value, worker = pending.value
        return Executed(value, {"executor": "dask", "worker": worker})

    async def _cancel(self, pending: _Pending) -> None:
        with self._ready:
            if pending in self._queue:
                self._queue.remove(pending)
                return
        future = pending.future
        if future is not None and not future.done():
            await trio.to_thread.run_sync(self._stop, future)

    def _stop(self, future: Any) -> None:
        """Cancel a call's future. Dask cannot interrupt a worker thread already running it,
        so on a cluster this executor started, that worker is restarted (as the processes
        executor kills its worker): the thread must not stay busy with abandoned work."""
        holder = None
        if self.cluster is not None:
            try:
                processing = self.client.processing()
                holder = next((w for w, keys in processing.items() if future.key in keys), None)
            except Exception:
                holder = None
        future.cancel()
        if holder is not None:
            # In the background: the cancelled submit returns at once; calls the scheduler
            # places on that worker meanwhile are rescheduled when it restarts.
            client = self.client

            def restart() -> None:
                try:
                    client.restart_workers([holder], timeout=30)
                except Exception:
                    pass  # the worker may be gone already; the scheduler routes around it

            threading.Thread(target=restart, name="aliquot-dask-restart", daemon=True).start()

    def _feed(self) -> None:
        """The feeder thread: send whatever is queued to the cluster, in batches."""
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if self._closing:
                    return
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            self._send(batch)

    def _send(self, batch: list[_Pending]) -> None:
        groups: dict[int, list[_Pending]] = {}
        for pending in batch:
            groups.setdefault(id(pending.call.fn), []).append(pending)
        for group in groups.values():
            runner = _Runner(group[0].call.fn)
            _by_value(group[0].call)
            try:
                args = [tuple(self._shared(a) for a in p.call.args) for p in group]
                kwargs = [{k: self._shared(v) for k, v in p.call.kwargs.items()} for p in group]
                # Task keys start with the function's name (Dask groups tasks by prefix).
                keys = [f"{runner.__name__}-{uuid.uuid4().hex}" for _ in group]
                futures = self.client.map(runner, args, kwargs, key=keys, pure=False)
            except Exception as exc:  # an unpicklable call, the cluster gone...
                for pending in group:
                    pending.error = _unsendable(pending.call, exc)
                    trio.from_thread.run_sync(pending.done.set, trio_token=self._token)
                continue
            for pending, future in zip(group, futures, strict=True):
                pending.future = future
                self._inflight[future.key] = pending
            self._completed.update(futures)

    def _shared(self, value: Any) -> Any:
        if _size(value) < self.scatter_bytes:
            return value
        found = self._scattered.get(id(value))
        if found is not None and found[0] is value:
            return found[1]
        (future,) = self.client.scatter([value], hash=False)
        self._scattered[id(value)] = (value, future)  # keeps the object (and its id) alive
        return future

    def _wait(self) -> None:
        """The waiter thread: deliver every finished future to its trio task."""
        completed = self._completed
        while not self._closing:
            try:
                batch = completed.next_batch(block=True)
            except StopIteration:
                # Nothing in flight: look again shortly (futures arrive with update()).
                threading.Event().wait(0.005)
                continue
            results = self._results(batch)
            for future in batch:
                pending = self._inflight.pop(future.key, None)
                if pending is None:
                    continue
                outcome = results.get(future.key)
                if future.cancelled():
                    pending.error = DaskExecutorError(
                        f"dask cancelled the call of {pending.call.task or 'a task'}"
                    )
                elif isinstance(outcome, _Failed):
                    pending.error = outcome.error
                else:
                    pending.value = outcome
                try:
                    trio.from_thread.run_sync(pending.done.set, trio_token=self._token)
                except trio.RunFinishedError:
                    return

    def _results(self, batch: list[Any]) -> dict[str, Any]:
        """The results of finished futures: one gather for the batch; when that fails (an
        error, a value that cannot come back), each future on its own."""
        ok = [f for f in batch if f.status == "finished"]
        try:
            values = self.client.gather(ok) if ok else []
            out: dict[str, Any] = {f.key: v for f, v in zip(ok, values, strict=True)}
        except BaseException:
            out = {}
            ok = []
        for future in batch:
            if future.key in out or future.cancelled():
                continue
            try:
                out[future.key] = future.result()
            except BaseException as exc:
                out[future.key] = _Failed(exc)
        return out


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
