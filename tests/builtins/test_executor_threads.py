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


def test_default_capacity_is_like_thread_pool_executor() -> None:
    assert ThreadsExecutor().capacity == min(32, (os.cpu_count() or 1) + 4)
    assert ThreadsExecutor(3).capacity == 3


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
