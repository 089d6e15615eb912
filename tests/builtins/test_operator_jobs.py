"""Operators as background jobs: ``op.deploy(kind="job")``, ``Operator.from_job``, ``aliquot jobs``.

Every job here runs in a real process of its own. Operators live in a script
(as users write them), loaded with ``aliquot.load_target``; jobs that must stay
unfinished wait for a "gate" file the test creates (or never creates), so no
test depends on how fast anything runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import aliquot
from aliquot import Operator
from aliquot.testing import make_kernel, run_cli
from aliquot_builtins.operators._jobs import (
    SPACE,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobNotFoundError,
    job_values,
)

OPS = """
import os
import time

from aliquot import Operator, operator


class Add(Operator):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x: int) -> int:
        print("adding", x, self.k)
        return x + self.k


@operator()
def gated(gate: str, value: int = 1) -> int:
    print("waiting for the gate", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError("the gate never opened")
        time.sleep(0.02)
    return value * 2


@operator()
def boom(x: int = 1) -> int:
    print("about to fail")
    raise ValueError(f"boom {x}")


@operator()
class Counter:
    def __init__(self, start=0):
        self.n = start


@operator()
class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x: int) -> int:
        return x * self.factor


def triple(x: int) -> int:
    return 3 * x


class Loaded(Operator):
    def __init__(self):
        super().__init__()
        self.model = None
        self.inner = Add(1)

    def __remote_init__(self):
        print("remote init", type(self).__name__, flush=True)
        self.model = 100

    def forward(self, x: int) -> int:
        return self.inner(x) + (self.model or 0)


add = Add(10)
"""

WAIT = 60.0  # generous: only reached when something is wrong


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return state[state.rfind(b")") + 2 :].split()[0] in (b"Z", b"X")


@pytest.fixture(scope="module")
def ops_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "job_ops.py"
    path.write_text(textwrap.dedent(OPS))
    return path


@pytest.fixture(scope="module")
def ops(ops_file: Path) -> Any:
    return aliquot.load_target(str(ops_file))


@pytest.fixture
def kernel(store_path: Path) -> Iterator[aliquot.Kernel]:
    kernel = make_kernel(store=str(store_path))
    yield kernel
    kernel.close()


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate"


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


# ---------------------------------------------------------------- the Python API


def test_a_job_runs_in_its_own_process_and_returns_the_result(
    ops: Any, kernel: aliquot.Kernel
) -> None:
    job = ops.add.deploy(kind="job", inputs={"x": 2}, kernel=kernel)
    assert job.result(timeout=WAIT) == 12
    assert job() == 12  # calling the handle waits for the result too
    record = job.record()
    assert job.status() == record["status"] == "succeeded"
    assert record["pid"] not in (None, os.getpid())
    assert record["target"] == "job_ops.Add"
    assert record["inputs_shown"] == {"x": 2}
    assert "adding 2 10" in job.logs()
    run = kernel.get_run(record["run"])  # the kernel run that ran it is stored
    assert run.status == "succeeded"
    assert run["output"] == 12


def test_the_submitter_may_exit_and_another_process_reattaches(
    ops_file: Path, store_path: Path, gate: Path
) -> None:
    env = {"ALIQUOT_STORE": str(store_path)}  # both processes use the default store
    submit = python(
        f"""
        import aliquot
        ops = aliquot.load_target({str(ops_file)!r})
        job = ops.gated.deploy(inputs={{"gate": {str(gate)!r}, "value": 21}})
        print(job.id)
        """,
        env,
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    with make_kernel(store=str(store_path)) as kernel:
        # The submitter is gone and the job still waits for its gate.
        assert Operator.from_job(job_id, kernel=kernel).status() in ("pending", "running")
    gate.touch()
    attach = python(
        f"""
        from aliquot import Operator
        job = Operator.from_job({job_id!r})
        print(job.result(timeout=60))
        """,
        env,
    )
    assert attach.returncode == 0, attach.stderr
    assert attach.stdout.strip() == "42"


def test_a_failing_operator_fails_the_job_and_result_names_it(
    ops: Any, kernel: aliquot.Kernel
) -> None:
    job = ops.boom.deploy(inputs={"x": 7}, kernel=kernel)
    with pytest.raises(
        JobFailedError, match=rf"job {job.id} \(job_ops\.boom\).*ValueError: boom 7"
    ):
        job.result(timeout=WAIT)
    assert job.status() == "failed"
    error = job.record()["error"]
    assert error["type"] == "ValueError"
    assert 'raise ValueError(f"boom {x}")' in error["traceback"]
    logs = job.logs()
    assert "about to fail" in logs
    assert "ValueError: boom 7" in logs  # the traceback is in the log as well


def test_cancel_stops_a_running_job_and_its_process(
    ops: Any, kernel: aliquot.Kernel, gate: Path
) -> None:
    job = ops.gated.deploy(inputs={"gate": str(gate)}, kernel=kernel)
    wait_for(lambda: job.status() == "running", "the job to start")
    wait_for(lambda: "waiting for the gate" in job.logs(), "the operator to start")
    record = job.record()
    assert job.cancel(grace=WAIT) is True
    assert job.status() == "cancelled"
    assert gone(record["pid"])  # cancel returns once the process is gone
    # SIGTERM let the job process cancel its kernel run cleanly (not left to look crashed).
    assert kernel.get_run(record["run"]).status == "cancelled"
    with pytest.raises(JobCancelledError, match=f"job {job.id} .*cancelled"):
        job.result(timeout=WAIT)
    assert job.cancel() is False  # nothing left to cancel
    gate.touch()
    assert job.status() == "cancelled"


def test_a_finished_job_is_not_cancelled(ops: Any, kernel: aliquot.Kernel) -> None:
    job = ops.add.deploy(inputs={"x": 1}, kernel=kernel)
    assert job.result(timeout=WAIT) == 11
    assert job.cancel() is False
    assert job.status() == "succeeded"
    assert job.result() == 11


def test_a_job_whose_process_was_killed_is_reported_failed(
    ops: Any, kernel: aliquot.Kernel, gate: Path
) -> None:
    job = ops.gated.deploy(inputs={"gate": str(gate)}, kernel=kernel)
    wait_for(lambda: job.status() == "running", "the job to start")
    pid = job.record()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), "the killed process to disappear")
    assert job.status() == "failed"
    error = job.record()["error"]
    assert error["type"] == "JobProcessDied"
    assert f"pid {pid}" in error["message"]
    with pytest.raises(JobFailedError, match="ended without recording a result"):
        job.result(timeout=WAIT)


def test_a_reused_pid_is_not_mistaken_for_the_job_process(
    ops: Any, kernel: aliquot.Kernel, gate: Path
) -> None:
    job = ops.gated.deploy(inputs={"gate": str(gate)}, kernel=kernel)
    wait_for(lambda: job.status() == "running", "the job to start")
    # The job process writes its record once more (the run id) as its run starts; change
    # the record after that, or that write could put the real pid back.
    wait_for(lambda: bool(job.record().get("run")), "the job's run to start")
    record = job.record()
    try:
        # The pid now belongs to a process that started at another time.
        record["pid"], record["pid_start"] = os.getpid(), "1"
        kernel.store.put(SPACE, int(job.id).to_bytes(8, "big"), orjson.dumps(record))
        kernel.store.commit()
        assert job.status() == "failed"
        assert job.record()["error"]["type"] == "JobProcessDied"
    finally:
        gate.touch()


def test_result_times_out_naming_the_job(ops: Any, kernel: aliquot.Kernel, gate: Path) -> None:
    job = ops.gated.deploy(inputs={"gate": str(gate)}, kernel=kernel)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"job {job.id} .*still (pending|running)"):
            job.result(timeout=0.3)
        assert time.monotonic() - started < WAIT
    finally:
        job.cancel(grace=WAIT)


def test_records_survive_reopening_the_store(ops: Any, store_path: Path) -> None:
    with make_kernel(store=str(store_path)) as kernel:
        job = ops.add.deploy(inputs={"x": 5}, kernel=kernel)
        assert job.result(timeout=WAIT) == 15
        job_id = job.id
    with make_kernel(store=str(store_path)) as kernel:
        again = Operator.from_job(job_id, kernel=kernel)
        assert again.status() == "succeeded"
        assert again.result() == 15
        assert "adding 5 10" in again.logs()


def test_a_class_operator_runs_as_a_job_only_when_callable(
    ops: Any, kernel: aliquot.Kernel
) -> None:
    with pytest.raises(JobError, match="not callable"):
        ops.Counter(start=1).deploy(kind="job", kernel=kernel)
    job = ops.Scaler(3).deploy(kind="job", inputs={"x": 4}, kernel=kernel)
    assert job.result(timeout=WAIT) == 12


def test_a_script_deploying_its_own_operator_runs_it_once(tmp_path: Path) -> None:
    script = tmp_path / "self_deploy.py"
    script.write_text(
        textwrap.dedent(
            """
            import aliquot
            from aliquot import Operator

            class Greet(Operator):
                def forward(self, name: str) -> str:
                    return f"hello {name}"

            if __name__ == "__main__":
                with aliquot.Kernel.open("store") as kernel:
                    job = Greet().deploy(inputs={"name": "job"}, kernel=kernel)
                    print(job.result(timeout=60))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello job"
    with make_kernel(store=str(tmp_path / "store")) as kernel:
        # The job process imported the script without running its __main__ block again.
        assert [key for key, _ in kernel.store.scan(SPACE)] == [(1).to_bytes(8, "big")]


# ---------------------------------------------------------------- refusals


def test_a_memory_store_is_refused() -> None:
    with make_kernel() as kernel, pytest.raises(JobError, match=r"memory://.*another"):
        Operator.from_job(1, kernel=kernel)
    from aliquot import operator

    @operator()
    def local(x: int) -> int:
        return x

    with make_kernel() as kernel, pytest.raises(JobError, match="memory://"):
        local.deploy(inputs={"x": 1}, kernel=kernel)


def test_servings_and_unknown_kinds_are_refused(ops: Any, kernel: aliquot.Kernel) -> None:
    with pytest.raises(JobError, match="servings come with the aliquot-http plugin"):
        ops.add.deploy(kind="serving", kernel=kernel)
    with pytest.raises(JobError, match="unknown deployment kind 'cron'"):
        ops.add.deploy(kind="cron", kernel=kernel)
    assert list(kernel.store.scan(SPACE)) == []  # nothing was submitted


def test_an_unknown_job_is_named(kernel: aliquot.Kernel) -> None:
    with pytest.raises(JobNotFoundError, match="no job 99"):
        Operator.from_job(99, kernel=kernel)
    with pytest.raises(JobNotFoundError, match="operator jobs have numbers"):
        Operator.from_job("latest", kernel=kernel)


def test_job_values_keep_operators_inputs_and_results(ops: Any, kernel: aliquot.Kernel) -> None:
    job = ops.add.deploy(inputs={"x": 3}, kernel=kernel)
    job.result(timeout=WAIT)
    record = job.record()
    expected = {record[field]["digest"] for field in ("operator", "inputs", "result")}
    assert set(job_values(kernel)) == expected


# ---------------------------------------------------------------- the CLI


def jobs(*args: str) -> Any:
    result = run_cli("jobs", *args)
    assert result.exit_code == 0, result
    return result


def test_cli_submit_ls_show_logs_cancel(ops_file: Path, store_path: Path, gate: Path) -> None:
    store = ("--store", str(store_path))
    submitted = orjson.loads(
        jobs("submit", f"{ops_file}:add", "--input", "x=5", *store, "--json").stdout
    )
    job_id = submitted["id"]
    assert submitted["target"] == "job_ops.Add"

    def show() -> Any:
        return orjson.loads(jobs("show", job_id, *store, "--json").stdout)

    wait_for(lambda: show()["status"] == "succeeded", "the submitted job to succeed")
    assert show()["result"]["type"] == "int"
    assert "adding 5 10" in jobs("logs", job_id, *store).stdout
    assert "adding 5 10" in jobs("logs", "--follow", job_id, *store).stdout  # ends: job finished
    assert "status    succeeded" in jobs("show", job_id, *store).stdout

    # A plain function is submitted as an operator.
    plain = orjson.loads(jobs("submit", f"{ops_file}:triple", "-i", "x=5", *store, "--json").stdout)
    with make_kernel(store=str(store_path)) as kernel:
        assert Operator.from_job(plain["id"], kernel=kernel).result(timeout=WAIT) == 15

    waiting = jobs("submit", f"{ops_file}:gated", "-i", f"gate={gate}", *store).stdout
    assert waiting.startswith("job 3 submitted: job_ops.gated")
    cancelled = orjson.loads(jobs("cancel", "3", *store, "--json").stdout)
    assert cancelled["cancelled"] is True
    assert cancelled["job"]["status"] == "cancelled"
    assert "already ended (succeeded)" in jobs("cancel", job_id, *store).stdout

    listed = orjson.loads(jobs("ls", *store, "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [
        ("3", "cancelled"),
        ("2", "succeeded"),
        ("1", "succeeded"),
    ]
    table = jobs("ls", *store).stdout.splitlines()
    assert table[0].split() == ["JOB", "KIND", "STATUS", "CREATED", "DURATION", "RUN", "TARGET"]
    assert table[1].split()[:3] == ["3", "operator", "cancelled"]
    assert all(r["kind"] == "operator" for r in listed)


def test_cli_errors_are_one_line_with_exit_code_2(ops_file: Path, store_path: Path) -> None:
    missing = run_cli("jobs", "show", "99", "--store", str(store_path))
    assert missing.exit_code == 2
    assert "no job 99" in missing.stderr
    memory = run_cli("jobs", "submit", f"{ops_file}:add", "-i", "x=1", "--store", "memory://")
    assert memory.exit_code == 2
    assert "memory://" in memory.stderr
    not_an_operator = run_cli("jobs", "submit", f"{ops_file}:time", "--store", str(store_path))
    assert not_an_operator.exit_code == 2
    assert "not an operator" in not_an_operator.stderr


def test_the_job_process_calls_remote_init_across_the_tree_first(
    ops: Any, kernel: aliquot.Kernel
) -> None:
    op = ops.Loaded()
    assert op(1) == 2  # locally the model is not loaded
    job = op.deploy(kind="job", inputs={"x": 1}, kernel=kernel)
    assert job.result(timeout=WAIT) == 102
    log = job.logs()
    assert log.index("remote init Loaded") < log.index("adding 1 1")
