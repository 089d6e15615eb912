"""The ``processes`` executor: worker processes, batching, scripts, deaths, cancellation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import aliquot
from aliquot.testing import check_executor, make_kernel, run_cli
from aliquot_builtins.executor_processes import ProcessesExecutor


@aliquot.task(outputs=["pid"])
def pid() -> int:
    return os.getpid()


@aliquot.task(outputs=["died"])
def die() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@aliquot.task(outputs=["survivor"])
def survivor() -> int:
    return 7


def test_conformance() -> None:
    check_executor(lambda: ProcessesExecutor(2))


def test_calls_run_in_other_processes() -> None:
    with make_kernel() as kernel:
        assert kernel.run([pid], executor="processes:1")["pid"] != os.getpid()


def test_many_small_calls_are_batched_and_all_correct() -> None:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    graph = Graph()
    leaf = make_spec(_square, outputs=["out"])
    for i in range(3000):
        graph.add(Node(f"n{i}", leaf, {"i": i}))
    graph.add(
        Node(
            "sum",
            make_spec(_total, outputs=["total"]),
            {"values": [Ref(f"n{i}", "out") for i in range(3000)]},
        )
    )
    graph.name("total", Ref("sum", "total"))
    graph.default_targets.append("total")
    with make_kernel() as kernel:
        run = kernel.run(graph, executor="processes:2")
    assert run["total"] == sum(i * i for i in range(3000))


def _square(i: int) -> int:
    return i * i


def _total(values: list[int]) -> int:
    return sum(values)


def test_an_unpicklable_task_fails_with_a_clear_message() -> None:
    def local_function() -> int:  # a closure: pickle cannot find it by name
        return 1

    local = aliquot.task(outputs=["local"])(local_function)
    with make_kernel() as kernel:
        run = kernel.run([local], executor="processes:1")
    record = run.nodes["local_function"]
    assert record.status == "failed"
    assert "cannot run in a worker process" in record.reason
    assert "module level" in record.reason


def test_a_worker_that_dies_fails_only_its_node_and_is_replaced() -> None:
    with make_kernel() as kernel:
        run = kernel.run([die, survivor], executor="processes:1")
        again = kernel.run([pid], executor="processes:1")
    assert run.nodes["die"].status == "failed"
    assert "died (killed by signal 9)" in run.nodes["die"].reason
    assert run.nodes["survivor"].status == "computed"
    assert again.status == "succeeded"


def test_exceptions_keep_type_message_and_remote_traceback() -> None:
    with make_kernel() as kernel:
        run = kernel.run([_failing_task], executor="processes:1")
    error = run.nodes["fails_remotely"].error
    assert error is not None and error.type == "KeyError"
    assert "in fails_remotely" in error.traceback and "raise KeyError" in error.traceback


@aliquot.task(outputs=["never"])
def fails_remotely() -> int:
    raise KeyError("missing thing")


_failing_task = fails_remotely


def test_tasks_from_a_script_file_run_in_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file loaded by path (not importable by name) is loaded by path in the workers too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "script_tasks.py").write_text(
        "import os, aliquot\n"
        "@aliquot.task(outputs=['where'])\n"
        "def where() -> int:\n"
        "    return os.getpid()\n"
    )
    result = run_cli("run", "script_tasks.py", "-e", "processes:1", "-q", "--json")
    assert result.exit_code == 0, result
    assert '"status": "succeeded"' in result.stdout


def test_tasks_defined_in_main_work(tmp_path: Path) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, aliquot

            @aliquot.task(outputs=["where"])
            def where() -> int:
                return os.getpid()

            if __name__ == "__main__":
                with aliquot.Kernel.open("memory://") as kernel:
                    run = kernel.run([where], executor="processes:1")
                    assert run["where"] != os.getpid(), "ran in the parent"
                    print("ok", run.status)
            """
        )
    )
    env = {**os.environ, "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok succeeded"


def test_an_unguarded_script_gets_a_clear_error_not_a_fork_bomb(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import aliquot

            @aliquot.task(outputs=["x"])
            def x() -> int:
                return 1

            kernel = aliquot.Kernel.open("memory://")
            run = kernel.run([x], executor="processes:1")
            print(run.status, run.nodes["x"].reason)
            """
        )
    )
    env = {**os.environ, "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("failed") == 1
    assert 'if __name__ == "__main__":' in out.stdout


def test_cancellation_kills_the_workers(tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    with make_kernel() as kernel:
        start = time.monotonic()
        run = kernel.run(
            [_sleep_and_record],
            inputs={"marker": str(marker)},
            executor="processes:1",
            deadline=1.0,
        )
        elapsed = time.monotonic() - start
    assert run.status == "cancelled"
    assert elapsed < 10
    worker = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {worker} is still alive after the run was cancelled")


@aliquot.task(outputs=["slept"])
def sleep_and_record(marker: str) -> int:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(60)
    return 1


_sleep_and_record = sleep_and_record


def test_prints_in_tasks_reach_the_terminal(tmp_path: Path) -> None:
    script = tmp_path / "printer.py"
    script.write_text(
        "import aliquot\n"
        "@aliquot.task(outputs=['x'])\n"
        "def x() -> int:\n"
        "    print('hello from a worker', flush=True)\n"
        "    return 1\n"
    )
    env = {**os.environ, "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [sys.executable, "-m", "aliquot.cli", "run", str(script), "-e", "processes:1", "-q"]
    command += ["--store", "memory://"]
    out = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "hello from a worker" in out.stdout
