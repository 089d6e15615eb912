"""The ``processes`` executor: calls run in worker processes.

For CPU-bound Python code (the GIL does not serialize it) and for work that
must be killable. ``processes:N`` starts N workers (default: the CPU count),
lazily on the first call, each in its own session so that cancelling a run
can kill a worker and everything it started.

How a call travels: the call is pickled in the parent (a function is pickled
by reference, so it must be defined at module level; a call that cannot be
pickled fails with a message saying so) and sent with the modules it needs
over a private pipe -- not stdin/stdout, which stay the user's. A worker
imports a module by name, or, for scripts and test files that are not
importable by name, from its file under the same name; functions from the
parent's ``__main__`` are found by running the main file as ``__mp_main__``,
as :mod:`multiprocessing` does. Small calls are batched: the batch size adapts
so a batch takes about 10 ms, which keeps the per-call cost low without
holding a long call behind short ones.

Only the parent's own pickles cross the pipe (this is not a trust boundary:
the worker is our child process), and results come back the same way; the
kernel remains the only writer of the store. A worker that dies fails the
calls it held (naming its exit code) and is replaced for the next call.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Any, ClassVar

from aliquot import AliquotError, Call, hookimpl

_HEADER = struct.Struct(">Q")
#: A batch should take about this long (seconds) once call durations are known.
TARGET_BATCH_SECONDS = 0.01
#: Batches a worker may hold at once (one running, one queued behind it).
PIPELINE = 2


class WorkerDiedError(AliquotError):
    """A worker process died while it held a call."""


class RemoteTaskError(Exception):
    """A task's exception that could not be sent back as itself (not picklable)."""


def _module_source(module_name: str) -> tuple[str, str | None]:
    module = sys.modules.get(module_name)
    if module_name == "__main__" and module is not None:
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            return ("__main__", "spec:" + spec.name)
    return (module_name, getattr(module, "__file__", None) if module is not None else None)


class _Pending:
    __slots__ = ("answered", "call", "cancelled", "done", "id", "ok", "payload", "task", "value")

    def __init__(self, call: Call, payload: bytes, done: Any, call_id: int) -> None:
        self.call = call
        self.payload = payload
        self.done = done
        self.ok = False
        self.value: Any = None
        self.cancelled = False
        self.answered = False
        self.task = call.task
        self.id = call_id


class _Worker:
    def __init__(self, process: Any, send: Any, receive: Any) -> None:
        self.process = process
        self.send = send
        self.receive = receive
        #: batch id -> its calls, in the order the worker runs them
        self.inflight: dict[int, list[_Pending]] = {}
        #: batch id -> how many of its calls have not answered yet
        self.unanswered: dict[int, int] = {}
        self.alive = True
        self.modules: set[str] = set()


class ProcessesExecutor:
    """Worker processes fed by an adaptive batching dispatcher."""

    name: ClassVar[str] = "processes"

    def __init__(self, workers: int | None = None, max_batch: int = 512) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.max_batch = max(1, int(max_batch))
        self.capacity = self.workers * min(self.max_batch, 256) * PIPELINE
        self._queue: deque[_Pending] = deque()
        self._pool: list[_Worker] = []
        self._nursery: Any = None
        self._nursery_cm: Any = None
        self._wakeup: Any = None
        self._batch_ids = 0
        self._call_ids = 0
        self._calls: dict[int, tuple[_Worker | None, int, _Pending]] = {}
        self._avg_call = 0.0
        self._fn_modules: dict[int, tuple[str, str | None]] = {}
        self._closing = False

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ProcessesExecutor:
        import trio

        self._wakeup = trio.lowlevel.ParkingLot()
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._dispatcher)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        import trio

        self._closing = True
        graceful = exc_type is None
        with trio.CancelScope(shield=True):
            await self._stop_workers(graceful)
        # Exit the nursery outside the shield: scopes must unwind in nesting order.
        self._nursery.cancel_scope.cancel()
        return bool(await self._nursery_cm.__aexit__(exc_type, exc, tb))

    async def _stop_workers(self, graceful: bool) -> None:
        """Close every worker: politely when it is idle, by killing its session otherwise.

        A worker still holding a batch when the executor closes can only be
        running calls nobody waits for any more (their nodes were cancelled),
        so it is killed rather than waited for.
        """
        import trio

        for worker in self._pool:
            polite = graceful and worker.alive and not worker.inflight
            if polite:
                try:
                    await worker.send.aclose()  # EOF: the worker exits
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    polite = False
            process = worker.process
            if process.returncode is None:
                if not polite:
                    _kill_group(process.pid, signal.SIGTERM)
                with trio.move_on_after(5.0 if polite else 1.0):
                    await process.wait()
                if process.returncode is None:
                    _kill_group(process.pid, signal.SIGKILL)
                    await process.wait()
            for stream in (worker.send, worker.receive):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        self._pool.clear()

    # ------------------------------------------------------------ submitting

    async def submit(self, call: Call) -> Any:
        import trio

        if self._nursery is None:
            raise RuntimeError("the processes executor is used outside `async with`")
        try:
            payload = pickle.dumps((call.fn, tuple(call.args), dict(call.kwargs)), protocol=5)
        except Exception as exc:
            raise AliquotError(
                f"task {call.task or call.fn!r} cannot run in a worker process: its function or "
                f"arguments cannot be pickled ({type(exc).__name__}: {exc}). Define the function "
                "at module level, or use the threads or inline executor."
            ) from exc
        self._call_ids += 1
        pending = _Pending(call, payload, trio.Event(), self._call_ids)
        self._queue.append(pending)
        self._wakeup.unpark_all()
        try:
            await pending.done.wait()
        except BaseException:
            pending.cancelled = True
            raise
        if pending.ok:
            return pending.value
        raise pending.value

    # ------------------------------------------------------------ dispatching

    async def _dispatcher(self) -> None:
        while True:
            while not self._queue or self._closing:
                await self._wakeup.park()
            worker = await self._idle_worker()
            if worker is None:
                await self._wakeup.park()
                continue
            batch = self._take_batch()
            if batch:
                await self._send_batch(worker, batch)

    async def _idle_worker(self) -> _Worker | None:
        self._pool = [w for w in self._pool if w.alive or w.inflight]
        live = [w for w in self._pool if w.alive]
        while len(live) < self.workers:
            live.append(await self._start_worker())
        best = min(live, key=lambda w: len(w.inflight))
        return best if len(best.inflight) < PIPELINE else None

    def _take_batch(self) -> list[_Pending]:
        queue = self._queue
        # One call per batch until call durations are known, so slow calls are never
        # queued behind each other; then batches of about TARGET_BATCH_SECONDS, never
        # more than a worker's share of what is queued.
        size = 1
        if self._avg_call > 0:
            size = max(1, min(self.max_batch, int(TARGET_BATCH_SECONDS / self._avg_call)))
            size = max(1, min(size, math.ceil(len(queue) / self.workers)))
        batch: list[_Pending] = []
        while queue and len(batch) < size:
            pending = queue.popleft()
            if not pending.cancelled:
                batch.append(pending)
        return batch

    async def _send_batch(self, worker: _Worker, batch: list[_Pending]) -> None:
        import trio

        self._batch_ids += 1
        batch_id = self._batch_ids
        modules = []
        for pending in batch:
            fn = pending.call.fn
            key = id(fn)
            source = self._fn_modules.get(key)
            if source is None:
                source = _module_source(getattr(fn, "__module__", "") or "")
                self._fn_modules[key] = source
            if source[0] and source[0] not in worker.modules:
                modules.append(source)
                worker.modules.add(source[0])
            for name in pending.call.modules:
                if name and name not in worker.modules:
                    modules.append(_module_source(name))
                    worker.modules.add(name)
        message = pickle.dumps(
            ("batch", batch_id, modules, [(p.id, p.payload) for p in batch]), protocol=5
        )
        worker.inflight[batch_id] = batch
        worker.unanswered[batch_id] = len(batch)
        for pending in batch:
            self._calls[pending.id] = (worker, batch_id, pending)
        try:
            await worker.send.send_all(_HEADER.pack(len(message)) + message)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the reader sees the death and fails the batch

    async def _start_worker(self) -> _Worker:
        import trio

        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        command = [
            sys.executable,
            "-c",
            "from aliquot_builtins.executor_processes import _worker_main; _worker_main()",
            str(child_read),
            str(child_write),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [p for p in sys.path if p] + [env.get("PYTHONPATH", "")]
        )
        try:
            process = await trio.lowlevel.open_process(
                command, pass_fds=(child_read, child_write), start_new_session=True, env=env
            )
        finally:
            os.close(child_read)
            os.close(child_write)
        worker = _Worker(
            process, trio.lowlevel.FdStream(parent_write), trio.lowlevel.FdStream(parent_read)
        )
        self._pool.append(worker)
        self._nursery.start_soon(self._reader, worker)
        return worker

    async def _reader(self, worker: _Worker) -> None:
        import trio

        buffer = bytearray()
        try:
            while True:
                chunk = await worker.receive.receive_some(1 << 20)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= _HEADER.size:
                    (size,) = _HEADER.unpack_from(buffer)
                    if len(buffer) < _HEADER.size + size:
                        break
                    message = bytes(buffer[_HEADER.size : _HEADER.size + size])
                    del buffer[: _HEADER.size + size]
                    self._deliver(worker, pickle.loads(message))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        worker.alive = False
        if worker.inflight:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(2):
                    await worker.process.wait()
            code = worker.process.returncode
            why = (
                f"killed by signal {-code}"
                if code is not None and code < 0
                else f"exit code {code}"
            )
            # Calls run in order: the first unanswered one was running when the worker
            # died and fails; the ones behind it never started and go back in the queue.
            unanswered = [
                p for b in sorted(worker.inflight) for p in worker.inflight[b] if not p.answered
            ]
            for index, pending in enumerate(unanswered):
                self._calls.pop(pending.id, None)
                if index == 0:
                    pending.value = WorkerDiedError(
                        f"worker process {worker.process.pid} died ({why}) while running "
                        f"task {pending.task!r}"
                    )
                    pending.answered = True
                    pending.done.set()
                elif not pending.cancelled:
                    self._queue.appendleft(pending)
            worker.inflight.clear()
            worker.unanswered.clear()
        self._wakeup.unpark_all()

    def _deliver(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        _kind, call_id, ok, payload, duration = message
        entry = self._calls.pop(call_id, None)
        if entry is None:
            return
        _, batch_id, pending = entry
        pending.answered = True
        left = worker.unanswered.get(batch_id, 0) - 1
        if left <= 0:
            worker.inflight.pop(batch_id, None)
            worker.unanswered.pop(batch_id, None)
            self._wakeup.unpark_all()  # a pipeline slot is free: the dispatcher may send more
        else:
            worker.unanswered[batch_id] = left
        self._avg_call = duration if self._avg_call == 0 else 0.9 * self._avg_call + 0.1 * duration
        if pending.done.is_set():
            return
        pending.ok = ok
        pending.value = pickle.loads(payload) if ok else _rebuild_exception(payload)
        pending.done.set()


def _rebuild_exception(payload: bytes) -> BaseException:
    exc_bytes, type_name, message, text = pickle.loads(payload)
    exc: BaseException
    if exc_bytes is not None:
        try:
            exc = pickle.loads(exc_bytes)
        except Exception:
            exc = RemoteTaskError(f"{type_name}: {message}")
    else:
        exc = RemoteTaskError(f"{type_name}: {message}")
    exc.__aliquot_traceback__ = text  # type: ignore[attr-defined]
    return exc


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------
# The worker side (runs in the child process)
# ---------------------------------------------------------------------------


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


#: Set while a worker imports the parent's modules: opening a kernel then means the
#: script has no ``if __name__ == "__main__":`` guard (see ``Kernel.open``).
BOOTSTRAP_FLAG = "_aliquot_worker_bootstrap"


def _ensure_module(name: str, source: str | None) -> None:
    setattr(sys, BOOTSTRAP_FLAG, True)
    try:
        _import_module(name, source)
    finally:
        setattr(sys, BOOTSTRAP_FLAG, False)


def _import_module(name: str, source: str | None) -> None:
    if name == "__main__":
        if "__mp_main__" in sys.modules or source is None:
            return
        if source.startswith("spec:"):
            main = importlib.import_module(source[5:])
        else:
            import runpy

            namespace = runpy.run_path(source, run_name="__mp_main__")
            main = ModuleType("__mp_main__")
            main.__dict__.update(namespace)
        sys.modules["__mp_main__"] = main
        sys.modules["__main__"] = main
        return
    if not name or name in sys.modules:
        return
    try:
        importlib.import_module(name)
        return
    except ImportError:
        if not source or not source.endswith(".py"):
            raise
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load module {name!r} from {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _run_one(payload: bytes) -> tuple[bool, bytes, float]:
    start = time.perf_counter()
    try:
        fn, args, kwargs = pickle.loads(payload)
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            import trio

            coro = result

            async def _await() -> Any:
                return await coro

            result = trio.run(_await)
        duration = time.perf_counter() - start
        try:
            return True, pickle.dumps(result, protocol=5), duration
        except Exception as exc:
            raise TypeError(
                f"the task's result ({type(result).__name__}) cannot be pickled back to the "
                f"parent: {exc}"
            ) from exc
    except BaseException as exc:
        duration = time.perf_counter() - start
        text = "".join(traceback.format_exception(exc))
        exc_bytes: bytes | None
        try:
            exc_bytes = pickle.dumps(exc, protocol=5)
            pickle.loads(exc_bytes)  # it must also come back, or the parent could not raise it
        except Exception:
            exc_bytes = None
        kind = type(exc)
        name = f"{kind.__module__}.{kind.__qualname__}"
        return False, pickle.dumps((exc_bytes, name, str(exc), text), protocol=5), duration


def _worker_main() -> None:
    """Entry point of a worker process: ``python -c ... <read fd> <write fd>``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about Ctrl-C
    read_fd, write_fd = int(sys.argv[1]), int(sys.argv[2])
    while True:
        header = _read_exact(read_fd, _HEADER.size)
        if header is None:
            return
        (size,) = _HEADER.unpack(header)
        data = _read_exact(read_fd, size)
        if data is None:
            return
        _kind, _batch_id, modules, calls = pickle.loads(data)
        module_error: BaseException | None = None
        for name, source in modules:
            try:
                _ensure_module(name, source)
            except BaseException as exc:
                module_error = exc
        for call_id, payload in calls:
            if module_error is not None:
                ok, out, duration = _run_one(
                    pickle.dumps((functools.partial(_raise, module_error), (), {}))
                )
            else:
                ok, out, duration = _run_one(payload)
            # One message per call, sent at once: if this process dies later, the
            # parent knows exactly which calls finished.
            message = pickle.dumps(("result", call_id, ok, out, duration), protocol=5)
            _write_all(write_fd, _HEADER.pack(len(message)) + message)


def _raise(exc: BaseException) -> None:
    raise exc


@hookimpl(trylast=True)
def aliquot_register_executors(register: Callable[..., None]) -> None:
    register(ProcessesExecutor)
