"""The ``threads`` executor."""

from __future__ import annotations

import os
import threading
import time

import aliquot
from aliquot.testing import check_executor, make_kernel
from aliquot_builtins.executor_threads import ThreadsExecutor


def test_conformance() -> None:
    check_executor(lambda: ThreadsExecutor(4))
    check_executor(ThreadsExecutor)


def test_default_workers_are_like_thread_pool_executor() -> None:
    assert ThreadsExecutor().workers == min(32, (os.cpu_count() or 1) + 4)
    assert ThreadsExecutor(3).workers == 3


def test_slow_calls_keep_every_thread() -> None:
    """Batching never serializes slow calls: 6 calls of 0.3 s on threads:6 take ~0.3 s."""
    barrier = threading.Barrier(6, timeout=10)

    def wait_for_all(i: int) -> int:
        barrier.wait()  # fails unless all six run at the same time
        time.sleep(0.3)
        return i

    tasks = []
    for i in range(6):
        namespace: dict = {"wait_for_all": wait_for_all}
        exec(f"def slow{i}():\n    return wait_for_all({i})\n", namespace)
        tasks.append(aliquot.task(outputs=[f"slow{i}"])(namespace[f"slow{i}"]))
    with make_kernel() as kernel:
        run = kernel.run(tasks, executor="threads:6")
    assert run.status == "succeeded", run.failed_nodes


def test_many_short_calls_are_batched_and_all_correct() -> None:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    def square(i: int) -> int:
        return i * i

    def total(values: list[int]) -> int:
        return sum(values)

    graph = Graph()
    leaf = make_spec(square, outputs=["out"])
    for i in range(3000):
        graph.add(Node(f"n{i}", leaf, {"i": i}))
    refs = [Ref(f"n{i}", "out") for i in range(3000)]
    graph.add(Node("sum", make_spec(total, outputs=["total"]), {"values": refs}))
    graph.name("total", Ref("sum", "total"))
    graph.default_targets.append("total")
    with make_kernel() as kernel:
        run = kernel.run(graph, executor="threads:3")
    assert run["total"] == sum(i * i for i in range(3000))


def test_calls_run_in_worker_threads() -> None:
    @aliquot.task(outputs=["where"])
    def where() -> str:
        return threading.current_thread().name

    with make_kernel() as kernel:
        assert kernel.run([where], executor="threads")["where"] != threading.current_thread().name


def test_a_cancelled_thread_is_abandoned_not_waited_for() -> None:
    """Threads cannot be interrupted: the run ends at its deadline, the thread finishes alone."""
    finished = threading.Event()

    @aliquot.task(outputs=["slow"])
    def slow() -> int:
        time.sleep(1.0)
        finished.set()
        return 1

    with make_kernel() as kernel:
        start = time.monotonic()
        run = kernel.run([slow], executor="threads:1", deadline=0.2)
        assert time.monotonic() - start < 0.9
    assert run.status == "cancelled"
    assert finished.wait(5)  # it still ran to completion in the background
