"""The trio scheduler: concurrency, outcomes, failures, middleware, events, cancellation."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
import trio

import aliquot
from aliquot import Outcome
from aliquot.testing import HookRecorder, make_kernel


def _independent(n: int, fn: Any, prefix: str = "t") -> list[Any]:
    """n independent tasks calling fn(i), each with its own output name."""
    tasks = []
    for i in range(n):
        namespace: dict[str, Any] = {"fn": fn}
        exec(f"def {prefix}{i}():\n    return fn({i})\n", namespace)
        tasks.append(aliquot.task(outputs=[f"{prefix}{i}_out"])(namespace[f"{prefix}{i}"]))
    return tasks


def test_independent_nodes_run_concurrently_up_to_capacity() -> None:
    """threads:4 runs four waiting tasks at once (a 4-party barrier would time out otherwise)."""
    barrier = threading.Barrier(4, timeout=10)

    def meet(i: int) -> int:
        barrier.wait()
        return i

    with make_kernel() as kernel:
        run = kernel.run(_independent(4, meet), executor="threads:4")
    assert run.status == "succeeded", run.failed_nodes


def test_concurrency_never_exceeds_capacity() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def busy(i: int) -> int:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return i

    with make_kernel() as kernel:
        run = kernel.run(_independent(12, busy), executor="threads:3")
    assert run.status == "succeeded"
    assert 1 < state["peak"] <= 3


def test_async_tasks_interleave_on_inline_with_capacity() -> None:
    gate = trio.Event()
    arrived: list[int] = []

    async def wait_all(i: int) -> int:
        arrived.append(i)
        if len(arrived) == 3:
            gate.set()
        with trio.fail_after(5):
            await gate.wait()
        return i

    def make(i: int) -> Any:
        return wait_all(i)

    with make_kernel() as kernel:
        run = kernel.run(_independent(3, make), executor="inline:3")
    assert run.status == "succeeded"
    assert sorted(arrived) == [0, 1, 2]


@aliquot.task(outputs=["base"])
def base() -> int:
    return 1


@aliquot.task(outputs=["broken"])
def broken(base: int) -> int:
    raise ValueError(f"bad base {base}")


@aliquot.task(outputs=["after_broken"])
def after_broken(broken: int) -> int:
    return broken + 1


@aliquot.task(outputs=["independent"])
def independent(base: int) -> int:
    return base + 100


def test_failure_fails_the_run_skips_dependents_and_finishes_independent_branches() -> None:
    with make_kernel() as kernel:
        run = kernel.run([base, broken, after_broken, independent])
        stored = kernel.get_run(run.id)
    assert run.status == "failed"
    assert run.nodes["broken"].status == "failed"
    assert run.nodes["after_broken"].status == "skipped"
    assert "upstream node 'broken' failed" in run.nodes["after_broken"].reason
    assert run.nodes["independent"].status == "computed" and run["independent"] == 101
    error = stored.nodes["broken"].error
    assert error is not None and error.type == "ValueError" and error.message == "bad base 1"
    # The traceback starts at the task's own frame, not in the kernel.
    assert 'in broken\n    raise ValueError(f"bad base {base}")' in error.traceback
    assert "aliquot/_scheduler.py" not in error.traceback
    with pytest.raises(KeyError, match="node 'after_broken' is skipped"):
        run["after_broken"]


def test_fail_fast_cancels_the_rest() -> None:
    started = threading.Event()

    def slow(i: int) -> int:
        started.set()
        time.sleep(0.5)
        return i

    @aliquot.task(outputs=["boom"])
    def boom() -> int:
        started.wait(5)
        raise RuntimeError("boom")

    with make_kernel() as kernel:
        run = kernel.run([boom, *_independent(6, slow)], executor="threads:2", fail_fast=True)
    assert run.status == "failed"
    statuses = [r.status for r in run.nodes.values()]
    assert "cancelled" in statuses
    cancelled = [r for r in run.nodes.values() if r.status == "cancelled"]
    assert all("run stopped after node 'boom' failed" in r.reason for r in cancelled)


def test_every_node_ends_with_an_outcome_recorded() -> None:
    with make_kernel() as kernel:
        run = kernel.run([base, broken, after_broken, independent])
        stored = kernel.get_run(run.id)
    assert {r.status for r in stored.nodes.values()} <= {
        "computed", "cached", "skipped", "failed", "cancelled",
    }  # fmt: skip
    assert all(r.status != "pending" for r in stored.nodes.values())
    assert stored.counts() == {"computed": 2, "failed": 1, "skipped": 1}


class Recorder:
    """A middleware that logs enter/exit order."""

    def __init__(self, name: str, order: int, log: list[str]) -> None:
        self.name = name
        self.order = order
        self.handles: frozenset[str] = frozenset()
        self.log = log

    async def __call__(self, ctx: aliquot.NodeContext, call_next: Any) -> Outcome:
        self.log.append(f"{self.name}>{ctx.node.id}")
        outcome = await call_next(ctx)
        self.log.append(f"{self.name}<{ctx.node.id}")
        return outcome


def _middleware_plugin(*middleware: Any) -> Any:
    class Plugin:
        __name__ = "test-middleware"

        @aliquot.hookimpl
        def aliquot_register_middleware(self, register: Any) -> None:
            for mw in middleware:
                register(mw)

    return Plugin()


def test_middleware_is_composed_around_each_node_lowest_order_outermost() -> None:
    log: list[str] = []
    plugin = _middleware_plugin(Recorder("inner", 20, log), Recorder("outer", 10, log))
    with make_kernel([plugin]) as kernel:
        run = kernel.run([base])
    assert run.status == "succeeded"
    assert log == ["outer>base", "inner>base", "inner<base", "outer<base"]


class FakeCache:
    """Serves a node without running it, and plans it as 'load'."""

    name = "fake-cache"
    order = 0
    handles = frozenset({"cache"})

    def __init__(self) -> None:
        self.calls = 0

    def plan(self, plan: aliquot.Plan, kernel: Any) -> None:
        if "independent" in plan.graph.nodes:
            plan.decide("independent", "load", "pretend it is cached")

    async def __call__(self, ctx: aliquot.NodeContext, call_next: Any) -> Outcome:
        if ctx.decision.action == "load":
            self.calls += 1
            return Outcome("cached", {"independent": 42}, reason=ctx.decision.reason)
        return await call_next(ctx)


def test_a_middleware_can_serve_a_node_and_planning_skips_its_inputs() -> None:
    ran = []

    @aliquot.task(outputs=["base"])
    def base() -> int:
        ran.append("base")
        return 1

    cache = FakeCache()
    with make_kernel([_middleware_plugin(cache)]) as kernel:
        run = kernel.run([base, independent])
    assert run["independent"] == 42
    assert run.nodes["independent"].status == "cached"
    assert run.nodes["base"].status == "skipped" and ran == []
    assert cache.calls == 1


def test_middleware_that_returns_garbage_fails_the_node_clearly() -> None:
    class Bad:
        name = "bad"
        order = 0
        handles: frozenset[str] = frozenset()

        async def __call__(self, ctx: Any, call_next: Any) -> Any:
            return 42

    with make_kernel([_middleware_plugin(Bad())]) as kernel:
        run = kernel.run([base])
    assert run.status == "failed"
    assert "instead of an Outcome" in run.nodes["base"].reason


def test_events_are_emitted_in_order() -> None:
    recorder = HookRecorder()
    with make_kernel(recorder=recorder) as kernel:
        recorder.clear()
        run = kernel.run([base, independent])
    names = [n for n in recorder.names() if not n.startswith("aliquot_register")]
    assert names == [
        "aliquot_run_planned",
        "aliquot_run_started",
        "aliquot_node_started",
        "aliquot_node_finished",
        "aliquot_node_started",
        "aliquot_node_finished",
        "aliquot_run_finished",
        "aliquot_kernel_closing",
    ]
    finished = recorder.getcalls("node_finished")
    assert [c.node.id for c in finished] == ["base", "independent"]
    assert all(c.outcome.status == "computed" and c.duration >= 0 for c in finished)
    assert recorder.getcalls("run_finished")[0].run is run


def test_registration_and_kernel_started_are_recorded() -> None:
    recorder = HookRecorder()
    with make_kernel(recorder=recorder):
        pass
    recorder.assert_called("aliquot_kernel_started", 1)
    plugins = {c.plugin for c in recorder.getcalls("register_serializers")}
    assert {"serializer_json", "serializer_pickle"} <= plugins


def test_an_observer_that_raises_is_disabled_and_changes_nothing() -> None:
    class Flaky:
        __name__ = "flaky-observer"

        def __init__(self) -> None:
            self.calls = 0

        @aliquot.hookimpl
        def aliquot_node_finished(self, node: Any) -> None:
            self.calls += 1
            raise RuntimeError("observer bug")

    observer = Flaky()
    with make_kernel([observer]) as kernel:
        with pytest.warns(aliquot.PluginWarning, match="flaky-observer"):
            run = kernel.run([base, independent])
        stored = kernel.get_run(run.id)
    assert run.status == "succeeded" and run["independent"] == 101
    assert observer.calls == 1  # disabled after the first failure
    assert any("flaky-observer" in w and "disabled" in w for w in stored.warnings)


def test_deadline_cancels_the_run_and_keeps_finished_nodes() -> None:
    @aliquot.task(outputs=["quick"])
    def quick() -> int:
        return 7

    @aliquot.task(outputs=["slow"])
    async def slow(quick: int) -> int:
        await trio.sleep(30)
        return quick

    with make_kernel() as kernel:
        started = time.monotonic()
        run = kernel.run([quick, slow], deadline=0.3)
        elapsed = time.monotonic() - started
        stored = kernel.get_run(run.id)
        again = kernel.run([quick], targets=["quick"])
    assert elapsed < 10
    assert run.status == "cancelled" and stored.status == "cancelled"
    assert stored.nodes["quick"].status == "computed"
    assert stored.nodes["slow"].status == "cancelled"
    assert "deadline" in stored.nodes["slow"].reason
    assert again.status == "succeeded"


def test_ctrl_c_cancels_cleanly_and_a_rerun_completes(store_path: Any) -> None:
    """SIGINT during a run: the run is stored as cancelled, RunInterrupted is raised."""

    @aliquot.task(outputs=["first"])
    def first() -> int:
        return 1

    @aliquot.task(outputs=["second"])
    async def second(first: int) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep(30)
        return first

    kernel = aliquot.Kernel.open(store_path)
    try:
        with pytest.raises(aliquot.RunInterrupted) as info:
            kernel.run([first, second])
        run_id = info.value.run.id
        stored = kernel.get_run(run_id)
        assert stored.status == "cancelled"
        assert stored.nodes["first"].status == "computed"
        assert stored.nodes["second"].status == "cancelled"
        assert kernel.store.verify()["ok"]
        rerun = kernel.run([first], targets=["first"])
        assert rerun.status == "succeeded"
    finally:
        kernel.close()
    # The default SIGINT handler is restored after the run.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_arun_under_a_host_cancel_scope_stores_the_run_cancelled() -> None:
    @aliquot.task(outputs=["forever"])
    async def forever() -> int:
        await trio.sleep(30)
        return 0

    async def main() -> None:
        async with aliquot.open_kernel("memory://") as kernel:
            with trio.move_on_after(0.2):
                await kernel.arun([forever])
            latest = kernel.get_run("latest")
            assert latest.status == "cancelled"
            assert latest.nodes["forever"].status == "cancelled"
            ok = await kernel.arun([base])
            assert ok["base"] == 1

    trio.run(main)


def test_kernel_run_inside_trio_is_refused() -> None:
    async def main() -> None:
        with (
            make_kernel() as kernel,
            pytest.raises(aliquot.AliquotError, match=r"await kernel\.arun"),
        ):
            kernel.run([base])

    trio.run(main)


def test_large_fan_out_completes() -> None:
    """2,000 independent nodes on threads: every one finishes, each value correct."""
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    def ident(i: int) -> int:
        return i

    def total(values: list[int]) -> int:
        return sum(values)

    graph = Graph()
    leaf = make_spec(ident, outputs=["out"])
    for i in range(2000):
        graph.add(Node(f"n{i}", leaf, {"i": i}))
    graph.add(
        Node(
            "sum",
            make_spec(total, outputs=["total"]),
            {"values": [Ref(f"n{i}", "out") for i in range(2000)]},
        )
    )
    graph.name("total", Ref("sum", "total"))
    graph.default_targets.append("total")
    with make_kernel() as kernel:
        run = kernel.run(graph, executor="threads:4")
    assert run["total"] == sum(range(2000))


def test_target_values_are_persisted_and_reload_in_a_new_kernel(store_path: Any) -> None:
    with aliquot.Kernel.open(store_path) as kernel:
        run = kernel.run([base, independent])
    with aliquot.Kernel.open(store_path) as kernel:
        stored = kernel.get_run(run.id)
        assert stored["independent"] == 101
        assert stored.nodes["independent"].outputs["independent"].serializer == "json"
        with pytest.raises(KeyError, match="not a target"):
            stored["base"]


def test_persist_none_stores_no_values() -> None:
    with make_kernel(block=["cache"]) as kernel:  # the cache stores what it caches
        run = kernel.run([base], persist="none")
        assert run["base"] == 1  # in memory
        assert kernel.get_run(run.id).nodes["base"].outputs == {}
        with pytest.raises(aliquot.AliquotError, match="persist"):
            kernel.run([base], persist="sometimes")


def test_unstorable_target_value_warns_but_the_run_succeeds() -> None:
    @aliquot.task(outputs=["lock"])
    def lock() -> Any:
        return threading.Lock()  # nothing can serialize a lock

    with make_kernel() as kernel:
        run = kernel.run([lock])
    assert run.status == "succeeded"
    assert any("was not stored" in w for w in run.warnings)


def test_a_task_type_reports_facts_into_the_node_record() -> None:
    """A task type's facts(node, result) land in the outcome's info and the node record."""
    from aliquot_builtins.function import FunctionTaskType, make_spec

    class Counting(FunctionTaskType):
        name = "counting"

        def facts(self, node: Any, result: Any) -> dict[str, Any]:
            return {"result_type": type(result).__name__}

    class Plugin:
        __name__ = "counting-plugin"

        @aliquot.hookimpl
        def aliquot_register_task_types(self, register: Any) -> None:
            register(Counting())

    def answer() -> int:
        return 42

    spec = make_spec(answer, outputs=["answer"])
    spec = aliquot.TaskSpec(
        spec.name, "counting", spec.fn, spec.inputs, spec.outputs, extra=spec.extra
    )
    graph = aliquot.Graph()
    graph.add(aliquot.Node("answer", spec))
    graph.name("answer", aliquot.Ref("answer", "answer"))
    graph.default_targets.append("answer")
    with make_kernel([Plugin()], block=["cache"]) as kernel:
        run = kernel.run(graph)
        stored = kernel.get_run(run.id)
    assert run["answer"] == 42
    assert stored.nodes["answer"].info == {"result_type": "int"}


def test_lazy_outputs_are_stored_and_each_consumer_loads_its_own_copy() -> None:
    from aliquot import Graph, Node, Output, Ref
    from aliquot_builtins.function import make_spec

    def produce() -> list[int]:
        return [1, 2, 3]

    def consume(values: list[int]) -> list[int]:
        values.append(99)  # must not leak into the other consumer's copy
        return values

    lazy_spec = make_spec(produce, outputs=["data"])
    lazy_spec = aliquot.TaskSpec(
        lazy_spec.name,
        lazy_spec.kind,
        lazy_spec.fn,
        lazy_spec.inputs,
        (Output("data", lazy=True),),
        extra=lazy_spec.extra,
    )
    consumer = make_spec(consume, outputs=["out"])
    graph = Graph()
    graph.add(Node("produce", lazy_spec))
    graph.add(Node("a", consumer, {"values": Ref("produce", "data")}))
    graph.add(Node("b", consumer, {"values": Ref("produce", "data")}))
    graph.name("a", Ref("a", "out"))
    graph.name("b", Ref("b", "out"))
    graph.default_targets.extend(["a", "b"])
    with make_kernel() as kernel:
        run = kernel.run(graph)
    assert run["a"] == [1, 2, 3, 99] and run["b"] == [1, 2, 3, 99]
    assert "data" in run.nodes["produce"].outputs  # stored


def test_a_run_that_computes_nothing_is_committed_once_and_others_at_start_too() -> None:
    cache = FakeCache()
    with make_kernel([_middleware_plugin(cache)]) as kernel:
        commits = []
        original = kernel.store.commit

        def counting() -> None:
            commits.append(1)
            original()

        kernel.store.commit = counting  # type: ignore[method-assign]
        run = kernel.run([base, independent])  # independent loaded, base skipped
        assert run.counts() == {"cached": 1, "skipped": 1}
        assert len(commits) == 1
        commits.clear()
        kernel.run([base])  # computes: durable when it starts, and when it ends
        assert len(commits) == 2
