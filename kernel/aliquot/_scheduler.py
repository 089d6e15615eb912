"""The trio scheduler: runs a plan's nodes concurrently, in dependency order.

A fixed pool of worker tasks pulls ready nodes from a queue. The pool is as
large as the executors' capacity, so an inline run is one worker walking the
plan (the cheapest possible loop), a ``threads:8`` run has eight, and a
batching process executor asks for hundreds. Each node goes through the
middleware chain and ends with exactly one outcome recorded on the run.

Failure policy (``spec/run.md``): a failed node fails the run; the nodes that
depend on it are *skipped* (reason: the upstream failure), and independent
branches **finish** -- their results are stored and cached, so a re-run after
the fix only computes what failed. ``fail_fast=True`` cancels them instead.
Cancellation (Ctrl-C, a deadline, the host's cancel scope) marks running and
waiting nodes *cancelled*; nodes already finished keep their records, which
are committed before the run ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from ._context import CURRENT_RUN, Handler, NodeContext
from ._errors import AliquotError
from ._graph import Node, Ref
from ._outcome import ErrorInfo, Outcome
from ._runs import NodeRecord, Run, RunWriter
from ._tasks import Executed, Output

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._planner import Plan
    from ._plugins import Events
    from ._values import ArtifactRef
    from .abc import Executor, Middleware, TaskType

#: Staged store writes are committed at least this often during a run (seconds).
COMMIT_INTERVAL = 1.0
#: A node that computed for at least this long is committed (with its record) at once.
COMMIT_AFTER = 0.25
#: A worker walking inline nodes yields to other trio tasks at least this often.
YIELD_INTERVAL = 0.02


def task_traceback(exc: BaseException, fn: Any) -> str:
    """The traceback from the task's own frame down (kernel frames dropped)."""
    remote = getattr(exc, "__aliquot_traceback__", None)
    if isinstance(remote, str) and remote:
        return remote
    code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)
    tb = exc.__traceback__
    start = tb
    while tb is not None:
        if tb.tb_frame.f_code is code:
            start = tb
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, start))


class _NodeFailed(Exception):
    """Internal: preparing a node (binding, loading an input) failed."""


class Scheduler:
    """Executes one :class:`~aliquot.Plan` for one :class:`~aliquot.Run`."""

    def __init__(
        self,
        kernel: Kernel,
        plan: Plan,
        run: Run,
        events: Events,
        executors: Mapping[str, Executor],
        node_executor: Mapping[str, str],
        middleware: list[Middleware],
        *,
        fail_fast: bool = False,
        persist: str = "targets",
    ) -> None:
        self.kernel = kernel
        self.plan = plan
        self.run = run
        self.events = events
        self.executors = executors
        self.node_executor = node_executor
        self.fail_fast = fail_fast
        self.persist = persist
        self.handler: Handler = _compose(middleware, _terminal)
        self.direct = not middleware
        self.results: dict[str, Mapping[str, Any]] = {}
        self.refs: dict[str, Mapping[str, ArtifactRef]] = {}
        self.task_types: dict[str, TaskType] = {}
        self._failed = False
        self._stop_scope: trio.CancelScope | None = None
        self._stop_reason = ""
        self._deadline: float | None = None
        self._emit_started = events.active("aliquot_node_started")
        self._emit_finished = events.active("aliquot_node_finished")

        graph = plan.graph
        order = plan.order
        in_plan = set(order)
        self.dependents: dict[str, list[str]] = {nid: [] for nid in order}
        self.waiting: dict[str, int] = {}
        decisions = plan.decisions
        graph_nodes = graph.nodes
        for nid in order:
            if decisions[nid].action == "load":
                deps: tuple[str, ...] | list[str] = ()
            else:
                deps = graph_nodes[nid].deps
                if any(d not in in_plan for d in deps):
                    deps = [d for d in deps if d in in_plan]
            self.waiting[nid] = len(deps)
            for dep in deps:
                self.dependents[dep].append(nid)
        self.consumers: dict[str, int] = {nid: len(self.dependents[nid]) for nid in order}
        self.lazy_outputs: dict[str, list[Output]] = {}
        for nid in order:
            lazy = [o for o in graph_nodes[nid].task.outputs if o.lazy]
            if lazy:
                self.lazy_outputs[nid] = lazy
        self.target_nodes: dict[str, list[tuple[str, Ref]]] = {}
        for name, ref in plan.targets.items():
            self.target_nodes.setdefault(ref.node, []).append((name, ref))
        self.ready: deque[str] = deque(nid for nid in order if self.waiting[nid] == 0)
        self.left = len(order)
        self.lot = trio.lowlevel.ParkingLot()
        self.nodes = graph.nodes

        for index, nid in enumerate(graph.nodes):
            node = graph.nodes[nid]
            record = NodeRecord(nid, index, node.task.name, node.task.kind, dict(node.labels))
            decision = plan.decisions[nid]
            if decision.action == "skip":
                record.status = "skipped"
                record.reason = decision.reason
                stored = plan.stored.get(nid)
                if stored:
                    record.outputs = dict(stored)
            run.nodes[nid] = record
        self.log = RunWriter(kernel.store, run)
        self._durable = _GroupCommit(self.log, kernel.store)

    # ------------------------------------------------------------------ driving

    async def execute(self, deadline: float | None = None) -> None:
        """Run every planned node; always leaves the run in a final state, committed."""
        run = self.run
        run.started = time.time()
        # A run that computes nothing (every node loaded or skipped) runs no user code
        # and ends in moments: it is made durable once, at its end. Any other run is
        # made durable now (one fsync per run): a long synchronous task on the inline
        # executor holds the trio loop, so group commits cannot happen until it ends
        # -- and if the process dies meanwhile, the next kernel must still find the
        # run and mark it crashed. Its committer then commits about once a second.
        computes = any(d.action == "run" for d in self.plan.decisions.values())
        self.log.begin(write_records=computes)
        if computes:
            await trio.to_thread.run_sync(self.kernel.store.commit)
        self.events.run_planned(run=run, plan=self.plan)
        self.events.run_started(run=run)
        run._events = self.events
        current = CURRENT_RUN.set(run)
        cancelled_by = ""
        committer = _Committer(self.log, self.kernel.store, run)
        if computes:
            committer.start()
        try:
            async with trio.open_nursery() as outer:
                with trio.CancelScope() as stop:
                    self._stop_scope = stop
                    if deadline is not None:
                        stop.deadline = trio.current_time() + deadline
                        self._deadline = deadline
                    async with contextlib.AsyncExitStack() as stack:
                        for executor in self.executors.values():
                            await stack.enter_async_context(executor)
                        await self._work()
                if stop.cancelled_caught:
                    cancelled_by = self._why_cancelled()
                outer.cancel_scope.cancel()
        except BaseException as caught:
            if _only_cancellation(caught):
                cancelled_by = "run cancelled"
                raise
            # One real error inside trio's exception groups (an executor that could not
            # start, say) is raised as itself, so its message reaches the user.
            exc = _sole_error(caught)
            if run.error is None:
                run.error = ErrorInfo.from_exception(exc)
            cancelled_by = cancelled_by or (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else "the run crashed"
            )
            if exc is not caught:
                raise exc from None
            raise
        finally:
            CURRENT_RUN.reset(current)
            run._events = None
            with trio.CancelScope(shield=True):
                if committer.is_alive():
                    await trio.to_thread.run_sync(committer.stop)
                await self._finish(cancelled_by)

    async def _work(self) -> None:
        capacity = sum(max(1, e.capacity) for e in self.executors.values())
        workers = max(1, min(capacity, self.left))
        if self.left == 0:
            return
        if workers == 1:
            await self._worker()
            return
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        ready = self.ready
        last_yield = time.monotonic()
        while True:
            if not ready:
                if self.left <= 0:
                    return
                await self.lot.park()
                continue
            nid = ready.popleft()
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._run_node(nid)
            now = time.monotonic()
            if now - last_yield > YIELD_INTERVAL:
                last_yield = now
                await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ one node

    async def _run_node(self, nid: str) -> None:
        node = self.nodes[nid]
        run = self.run
        record = run.nodes[nid]
        decision = self.plan.decisions[nid]
        executor = self.executors[self.node_executor[nid]]
        kind = node.task.kind
        task_type = self.task_types.get(kind)
        if task_type is None:
            task_type = self.task_types[kind] = self.kernel.task_type_for(node.task)
        record.status = "running"
        record.started = time.time()
        self.log.touch(record)
        if self._emit_started:
            self.events.node_started(run=run, node=node)
        ctx: NodeContext | None = None
        t0 = time.perf_counter()
        try:
            if self.direct and decision.action == "run":
                # No middleware: skip the context object and the handler chain.
                inputs, _ = self._resolve(node)
                result = await executor.submit(task_type.bind(node, inputs))
                outcome = _computed(task_type, node, result)
            else:
                ctx = NodeContext(
                    run, node, decision, task_type, executor, self.kernel.values, self.kernel.store
                )
                notes = self.plan.notes.get(nid)
                if notes is not None:
                    ctx.notes = notes
                ctx.upstream_refs = self.refs
                if decision.action == "run":
                    ctx.inputs, ctx.input_refs = self._resolve(node)
                outcome = await self.handler(ctx)
                if not isinstance(outcome, Outcome):
                    raise AliquotError(
                        f"middleware returned {type(outcome).__name__} instead of an Outcome"
                    )
        except trio.Cancelled:
            self._finish_node(node, record, Outcome("cancelled", reason=self._why_cancelled()), t0)
            raise
        except _NodeFailed as exc:
            outcome = Outcome.failed(exc.args[1], reason=exc.args[0])
        except Exception as exc:
            error = ErrorInfo.from_exception(
                exc, remote_traceback=task_traceback(exc, node.task.fn)
            )
            outcome = Outcome.failed(error)
        if outcome.ok and outcome.values:
            if self.lazy_outputs.get(nid):
                outcome = await self._store_lazy(node, outcome)
            if nid in self.target_nodes and self.persist != "none":
                outcome = await self._persist_targets(nid, outcome)
        info = ctx.info if ctx is not None else None
        duration = time.perf_counter() - t0
        if outcome.status == "computed" and duration >= COMMIT_AFTER:
            # Work that took a while is made durable at once, with its record, before
            # anyone hears it finished: a crash right after it must not throw it away
            # (quick nodes wait for the periodic commit). Nodes finishing together share
            # one commit (many long nodes end at once on a cluster).
            self._record_outcome(record, outcome, duration, info)
            with trio.CancelScope(shield=True):
                await self._durable.wait()
        self._finish_node(node, record, outcome, t0, info, duration)

    def _resolve(self, node: Node) -> tuple[dict[str, Any], dict[str, ArtifactRef]]:
        """The node's parameter values, and the stored refs of upstream values it takes."""
        inputs: dict[str, Any] = {}
        input_refs: dict[str, ArtifactRef] = {}
        nested = node.nested
        for name, binding in node.bindings.items():
            if type(binding) is Ref:
                inputs[name] = self._value(binding, node, name)
                artifact = self.refs.get(binding.node, _NO_REFS).get(binding.output)
                if artifact is not None:
                    input_refs[name] = artifact
            elif nested and name in nested:
                inputs[name] = self._resolve_nested(binding, node, name)
            else:
                inputs[name] = binding
        consumers = self.consumers
        for dep in node.deps:
            left = consumers.get(dep)
            if left is not None:
                left -= 1
                consumers[dep] = left
                if left <= 0 and dep not in self.target_nodes:
                    self.results.pop(dep, None)
        return inputs, input_refs

    def _resolve_nested(self, value: Any, node: Node, param: str) -> Any:
        if type(value) is Ref:
            return self._value(value, node, param)
        if isinstance(value, list):
            return [self._resolve_nested(v, node, param) for v in value]
        if isinstance(value, tuple):
            return tuple(self._resolve_nested(v, node, param) for v in value)
        if isinstance(value, dict):
            return {k: self._resolve_nested(v, node, param) for k, v in value.items()}
        return value

    def _value(self, ref: Ref, node: Node, param: str) -> Any:
        values = self.results.get(ref.node, _NO_REFS)
        if ref.output in values:
            return values[ref.output]
        artifact = self.refs.get(ref.node, _NO_REFS).get(ref.output)
        if artifact is None:
            raise _NodeFailed(
                f"input {param!r} ({ref}) is not available",
                AliquotError(f"node {ref.node!r} produced no value for output {ref.output!r}"),
            )
        try:
            value = self.kernel.values.load(artifact)
        except Exception as exc:
            raise _NodeFailed(f"could not load input {param!r} ({ref}): {exc}", exc) from exc
        lazy = self.lazy_outputs.get(ref.node)
        if not (lazy and any(o.name == ref.output for o in lazy)):
            # Keep it for the node's other consumers (a lazy output is loaded by each).
            self.results[ref.node] = {**values, ref.output: value}
        return value

    async def _store_lazy(self, node: Node, outcome: Outcome) -> Outcome:
        """Store the node's lazy outputs (unless stored already) and drop them from memory."""
        refs = dict(outcome.refs)
        values = dict(outcome.values)
        for output in self.lazy_outputs[node.id]:
            if output.name not in values:
                continue
            if output.name not in refs:
                try:
                    refs[output.name] = await self.kernel.values.asave(
                        values[output.name], output.serializer
                    )
                except Exception as exc:
                    raise _NodeFailed(
                        f"lazy output {output.name!r} could not be stored: {exc}", exc
                    ) from exc
            del values[output.name]  # consumers load their own copy from the store
        return Outcome(outcome.status, values, refs, outcome.reason, outcome.error, outcome.info)

    async def _persist_targets(self, nid: str, outcome: Outcome) -> Outcome:
        refs = dict(outcome.refs)
        changed = False
        for _name, ref in self.target_nodes[nid]:
            if ref.output in refs or ref.output not in outcome.values:
                continue
            value = outcome.values[ref.output]
            hint = _output_serializer(self.nodes[nid], ref.output)
            try:
                refs[ref.output] = await self.kernel.values.asave(value, hint)
                changed = True
            except Exception as exc:
                self.run.warnings.append(f"output {ref} was not stored: {exc}")
        if not changed:
            return outcome
        return Outcome(
            outcome.status, outcome.values, refs, outcome.reason, outcome.error, outcome.info
        )

    def _record_outcome(
        self,
        record: NodeRecord,
        outcome: Outcome,
        duration: float,
        info: dict[str, Any] | None = None,
    ) -> None:
        record.status = outcome.status
        record.reason = outcome.reason
        record.error = outcome.error
        record.finished = (record.started or time.time()) + duration
        record.duration = duration
        if outcome.refs:
            record.outputs = dict(outcome.refs)
        if outcome.info or info:
            record.info = {**(info or {}), **outcome.info}
        self.log.touch(record)

    def _finish_node(
        self,
        node: Node,
        record: NodeRecord,
        outcome: Outcome,
        t0: float | None,
        info: dict[str, Any] | None = None,
        duration: float | None = None,
    ) -> None:
        nid = node.id
        if duration is None:
            duration = time.perf_counter() - t0 if t0 is not None else 0.0
        self._record_outcome(record, outcome, duration, info)
        self.left -= 1

        if outcome.ok:
            self.results[nid] = outcome.values
            if outcome.refs:
                self.refs[nid] = outcome.refs
            for name, ref in self.target_nodes.get(nid, ()):
                if ref.output in outcome.values:
                    self.run._values[name] = outcome.values[ref.output]
            ready = self.ready
            for child in self.dependents[nid]:
                self.waiting[child] -= 1
                if self.waiting[child] == 0:
                    ready.append(child)
        elif outcome.status == "failed":
            self._failed = True
            self._skip_downstream(nid, f"upstream node {nid!r} failed")
            if self.fail_fast and self._stop_scope is not None:
                self._stop_reason = self._stop_reason or f"run stopped after node {nid!r} failed"
                self._stop_scope.cancel()
        elif outcome.status == "skipped":
            self._skip_downstream(nid, f"upstream node {nid!r} was skipped")
        # A cancelled node leaves its dependents pending: the run's end marks them cancelled.

        if self._emit_finished:
            self.events.node_finished(run=self.run, node=node, outcome=outcome, duration=duration)
        if self.lot and (self.ready or self.left <= 0):
            self.lot.unpark_all()

    def _skip_downstream(self, nid: str, reason: str) -> None:
        stack = list(self.dependents[nid])
        records = self.run.nodes
        while stack:
            child = stack.pop()
            record = records[child]
            if record.status != "pending":
                continue
            record.status = "skipped"
            record.reason = reason
            self.log.touch(record)
            self.left -= 1
            stack.extend(self.dependents[child])

    def _why_cancelled(self) -> str:
        if self._stop_reason:
            return self._stop_reason
        scope = self._stop_scope
        if (
            self._deadline is not None
            and scope is not None
            and trio.current_time() >= scope.deadline
        ):
            return f"deadline of {self._deadline:g}s reached"
        return "run cancelled"

    # ------------------------------------------------------------------ ending

    async def _finish(self, cancelled_by: str) -> None:
        run = self.run
        for record in run.nodes.values():
            if record.status in ("pending", "running"):
                record.status = "cancelled"
                why = cancelled_by or "run stopped"
                record.reason = f"{why} before it started" if record.started is None else why
                record.finished = record.finished or time.time()
                self.log.touch(record)
        counts = run.counts()
        if self._failed:
            run.status = "failed"
        elif counts.get("cancelled"):
            run.status = "cancelled"
        elif run.error is not None:
            run.status = "failed"
        else:
            run.status = "succeeded"
        run.finished = time.time()
        run.warnings.extend(self.events.reports)
        self.events.reports.clear()
        self.log.end()
        await trio.to_thread.run_sync(self.kernel.store.commit)
        self.events.run_finished(run=run)


_NO_REFS: Mapping[str, Any] = {}


class _GroupCommit:
    """Commits on demand, shared: a caller waits for a commit that *started* after it
    asked, and callers arriving while one runs share the next one.

    The run's records are flushed and the store committed in a worker thread; if that
    fails, the callers it was for see the error (each retries once by starting the
    next commit, so one bad moment does not strand them).
    """

    def __init__(self, log: RunWriter, store: Any) -> None:
        self.log = log
        self.store = store
        self.started = 0  # commits started
        self.finished = 0  # highest commit number that succeeded
        self.running = False
        self.changed = trio.Event()

    async def wait(self) -> None:
        target = self.started + 1  # a commit that starts from now on covers our writes
        while self.finished < target:
            if self.running:
                await self.changed.wait()
                continue
            self.running = True
            self.started += 1
            number = self.started
            try:
                await trio.to_thread.run_sync(self._commit)
                self.finished = max(self.finished, number)
            finally:
                self.running = False
                self.changed.set()
                self.changed = trio.Event()

    def _commit(self) -> None:
        self.log.flush()
        self.store.commit()


class _Committer(threading.Thread):
    """Flushes the run's records and commits the store about once a second.

    A thread rather than a trio task: a synchronous task on the inline
    executor holds the trio loop for as long as it runs, and the run must
    still become durable at least every second. Writing the store from this
    thread is safe: stores serialize staging and commits internally.
    """

    def __init__(self, log: RunWriter, store: Any, run: Run) -> None:
        super().__init__(name=f"aliquot-commit-{run.id}", daemon=True)
        self.log = log
        self.store = store
        self.aliquot_run = run
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(COMMIT_INTERVAL):
            try:
                self.log.flush()
                self.store.commit()
            except Exception as exc:  # reported on the run; the final commit retries
                self.aliquot_run.warnings.append(
                    f"a periodic commit failed: {type(exc).__name__}: {exc}"
                )

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def _only_cancellation(exc: BaseException) -> bool:
    """True for trio.Cancelled, or an exception group holding nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellation(e) for e in exc.exceptions)
    return False


def _output_serializer(node: Node, output: str) -> str | None:
    for out in node.task.outputs:
        if out.name == output:
            return out.serializer
    return None


async def _terminal(ctx: NodeContext) -> Outcome:
    """The end of every middleware chain: bind, execute, unpack."""
    if ctx.decision.action == "load":
        raise AliquotError(
            f"node {ctx.node.id!r} was planned to be loaded ({ctx.decision.reason}) but no "
            "middleware served it; is the plugin that planned it still loaded?"
        )
    call = ctx.task_type.bind(ctx.node, ctx.inputs)
    result = await ctx.executor.submit(call)
    return _computed(ctx.task_type, ctx.node, result)


def _computed(task_type: TaskType, node: Node, result: Any) -> Outcome:
    """The outcome of a call that returned: its outputs, and what the task type learned
    (and, when the executor says, where it ran)."""
    placed: Mapping[str, Any] | None = None
    if type(result) is Executed:
        placed, result = result.info, result.value
    values = task_type.unpack(node, result)
    facts = getattr(task_type, "facts", None)
    if facts is None:
        if placed is None:
            return Outcome("computed", values)
        return Outcome("computed", values, info={"executor": dict(placed)})
    info = dict(facts(node, result))
    if placed is not None:
        info["executor"] = dict(placed)
    return Outcome("computed", values, info=info)


def _sole_error(exc: BaseException) -> BaseException:
    """The only non-cancellation exception inside (nested) exception groups, else ``exc``."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        elif not isinstance(item, trio.Cancelled):
            leaves.append(item)
    if len(leaves) == 1 and isinstance(leaves[0], AliquotError):
        return leaves[0]
    return exc


def _compose(middleware: list[Middleware], terminal: Handler) -> Handler:
    """Wrap ``terminal`` in every middleware, the lowest ``order`` outermost."""
    handler = terminal
    for mw in sorted(middleware, key=lambda m: (m.order, m.name), reverse=True):
        handler = _layer(mw, handler)
    return handler


def _layer(mw: Middleware, call_next: Handler) -> Handler:
    async def layer(ctx: NodeContext) -> Outcome:
        return await mw(ctx, call_next)

    layer.__qualname__ = f"middleware[{mw.name}]"
    return layer
