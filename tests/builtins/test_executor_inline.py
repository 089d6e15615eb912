"""The ``inline`` executor."""

from __future__ import annotations

import threading

import aliquot
from aliquot.testing import check_executor, make_kernel
from aliquot_builtins.executor_inline import InlineExecutor


def test_conformance() -> None:
    check_executor(InlineExecutor, interrupts_sync_calls=False)


def test_capacity_defaults_to_one_and_takes_workers() -> None:
    assert InlineExecutor().capacity == 1
    assert InlineExecutor(workers=8).capacity == 8


def test_calls_run_in_the_calling_thread() -> None:
    @aliquot.task(outputs=["where"])
    def where() -> str:
        return threading.current_thread().name

    with make_kernel() as kernel:
        assert kernel.run([where])["where"] == threading.current_thread().name
