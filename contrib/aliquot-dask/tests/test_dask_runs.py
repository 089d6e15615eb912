"""Runs on the ``dask`` executor: same stored values as the other executors, caching,
worker deaths, cancellation, the CLI, scripts, shared inputs and ``Operator.map``."""

from __future__ import annotations

import pytest

pytest.importorskip("aliquot_dask")

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

import aliquot
from aliquot import Operator
from aliquot.testing import run_cli

# pytest imports this file under a name the workers cannot import: send its
# functions by value, as a script's __main__ functions are sent.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "experiment.py"


@pytest.fixture(scope="module")
def experiment(scripts: Path, cluster: Any) -> Any:
    """examples/experiment.py (4 stages + an aggregate over 8 parameter sets), copied
    where the shared cluster's workers can import it and loaded as `aliquot run` does."""
    copy = scripts / "dask_polyfit.py"
    shutil.copy(EXAMPLE, copy)
    return aliquot.load_target(f"{copy}:experiment")


def digests(run: aliquot.Run) -> dict[str, dict[str, str]]:
    return {
        nid: {name: ref.digest for name, ref in record.outputs.items()}
        for nid, record in run.nodes.items()
    }


# ---------------------------------------------------------------- same values everywhere


def test_an_experiment_stores_the_same_bytes_on_inline_processes_and_dask(
    tmp_path: Path, dask_kernel: Callable[..., aliquot.Kernel], experiment: Any, address: str
) -> None:
    runs = {}
    for name, options in [
        ("inline", None),
        ("processes:2", None),
        ("dask", {"address": address}),
    ]:
        kernel = dask_kernel(tmp_path / name.replace(":", "-"))
        runs[name] = kernel.run(experiment, executor=name, executor_options=options)
        assert runs[name].status == "succeeded", name
    inline, processes, dask = (digests(runs[n]) for n in ("inline", "processes:2", "dask"))
    assert len(inline) == 8 * 4 + 1  # every stage of every set, and the aggregate
    assert all(outputs for outputs in inline.values())
    assert inline == processes == dask
    assert runs["dask"]["best"] == runs["inline"]["best"]
    # Sets that share data reuse it within the run (a cache hit: nothing executed);
    # every node that was computed says which worker computed it.
    computed = [r for r in runs["dask"].nodes.values() if r.status == "computed"]
    assert len(computed) >= 8 * 3 + 1
    assert {r.info["executor"]["executor"] for r in computed} == {"dask"}
    assert {r.info["executor"]["worker"] for r in computed} <= set(runs_workers(address))
    assert all("executor" not in r.info for r in runs["inline"].nodes.values())


def runs_workers(address: str) -> list[str]:
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        return list(client.scheduler_info()["workers"])


# ---------------------------------------------------------------- caching


@pytest.mark.parametrize("first", ["inline", "dask"])
def test_a_second_run_on_dask_computes_nothing(
    first: str,
    tmp_path: Path,
    dask_kernel: Callable[..., aliquot.Kernel],
    experiment: Any,
    address: str,
) -> None:
    kernel = dask_kernel(tmp_path / "store")
    options = {"address": address}
    before = kernel.run(
        experiment, executor=first, executor_options=options if first == "dask" else None
    )
    assert before.status == "succeeded"
    again = kernel.run(experiment, executor="dask", executor_options=options)
    assert again.status == "succeeded"
    assert "computed" not in again.counts()
    assert again.counts() == {"cached": 1, "skipped": 32}
    assert again["best"] == before["best"]


# ---------------------------------------------------------------- worker deaths


@aliquot.task(outputs=["pid"])
def slow_pid(marker: str) -> int:
    """Note this process's pid in ``marker``, then take a while."""
    with open(marker, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(2.0)
    return os.getpid()


def test_a_call_on_a_killed_worker_runs_again_on_another(
    tmp_path: Path,
    dask_kernel: Callable[..., aliquot.Kernel],
    address: str,
    client: Any,
) -> None:
    marker = tmp_path / "pids"
    marker.touch()
    worker_pids = set(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_the_first_worker_to_start_it() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = marker.read_text().split()
            if lines:
                killed.append(int(lines[0]))
                os.kill(killed[0], signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_first_worker_to_start_it)
    killer.start()
    run = dask_kernel().run(
        [slow_pid],
        inputs={"marker": str(marker)},
        executor="dask",
        executor_options={"address": address},
    )
    killer.join()
    assert killed, "no worker started the call"
    assert killed[0] in worker_pids
    assert run.status == "succeeded", run.nodes["slow_pid"].reason
    started = [int(p) for p in marker.read_text().split()]
    assert len(started) == 2
    assert started[1] != killed[0]
    assert run["pid"] == started[1]


@aliquot.task(outputs=["died"])
def die() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@aliquot.task(outputs=["survivor"])
def survivor() -> int:
    return 7


def test_with_no_failures_allowed_a_killed_worker_fails_only_its_node(
    dask_kernel: Callable[..., aliquot.Kernel],
) -> None:
    run = dask_kernel().run(
        [die, survivor], executor="dask:2", executor_options={"allowed_failures": 0}
    )
    assert run.status == "failed"
    assert run.nodes["die"].status == "failed"
    assert "KilledWorker" in run.nodes["die"].reason
    assert run.nodes["survivor"].status == "computed"
    assert run["survivor"] == 7


# ---------------------------------------------------------------- cancellation


def nap(i: int) -> int:
    time.sleep(5.0)
    return i


def test_a_deadline_leaves_nothing_running_on_the_scheduler(
    dask_kernel: Callable[..., aliquot.Kernel], address: str, client: Any, cluster: Any
) -> None:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    graph = Graph()
    spec = make_spec(nap, outputs=["out"])
    for i in range(3):
        graph.add(Node(f"nap{i}", spec, {"i": i}))
        graph.name(f"out{i}", Ref(f"nap{i}", "out"))
        graph.default_targets.append(f"out{i}")
    start = time.monotonic()
    run = dask_kernel().run(
        graph, executor="dask", executor_options={"address": address}, deadline=1.0
    )
    assert run.status == "cancelled"
    assert time.monotonic() - start < 4.0  # the run did not wait for its 5 s calls
    # The calls would still be running now (5 s each); the scheduler must hold none.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if not any(client.processing().values()) and not cluster.scheduler.tasks:
            break
        time.sleep(0.05)
    assert not any(client.processing().values())
    assert not cluster.scheduler.tasks
    assert time.monotonic() - start < 5.0
    # Dask cannot interrupt a running thread: let those calls end before the next test.
    _wait_until_idle(client)


def _wait_until_idle(client: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = client.run(lambda dask_worker: len(dask_worker.state.executing))
        if not any(busy.values()):
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- the command line


def test_aliquot_run_with_a_dask_address_records_where_each_node_ran(
    tmp_path: Path, scripts: Path, address: str
) -> None:
    script = scripts / "dask_cli_tasks.py"
    script.write_text(
        textwrap.dedent(
            """
            import aliquot

            @aliquot.task(outputs=["base"])
            def base() -> int:
                return 20

            @aliquot.task(outputs=["answer"])
            def answer(base: int) -> int:
                return 2 * base + 2
            """
        )
    )
    store = str(tmp_path / "store")
    listed = run_cli("plugins", autoload=True)
    assert listed.exit_code == 0, listed
    assert any(line.split()[:2] == ["dask", "loaded"] for line in listed.stdout.splitlines())

    ran = run_cli(
        "run",
        str(script),
        "--executor",
        "dask",
        "--dask-address",
        address,
        "--store",
        store,
        "-q",
        autoload=True,
    )
    assert ran.exit_code == 0, ran
    shown = run_cli("show", "latest", "--json", "--store", store, autoload=True)
    assert shown.exit_code == 0, shown
    doc = json.loads(shown.stdout)
    workers = set(runs_workers(address))
    nodes = {node["id"]: node for node in doc["nodes"]}
    assert set(nodes) == {"base", "answer"}
    for node in nodes.values():
        assert node["status"] == "computed"
        assert node["info"]["executor"]["executor"] == "dask"
        assert node["info"]["executor"]["worker"] in workers
    table = run_cli("show", "latest", "--store", store, autoload=True)
    assert f"on {nodes['answer']['info']['executor']['worker']}" in table.stdout


# ---------------------------------------------------------------- scripts


def test_tasks_defined_in_a_scripts_main_run_on_the_workers(tmp_path: Path, address: str) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import aliquot

            @aliquot.task(outputs=["where"])
            def where() -> str:
                from distributed import get_worker

                return get_worker().address

            if __name__ == "__main__":
                with aliquot.Kernel.open("memory://") as kernel:
                    run = kernel.run(
                        [where], executor="dask", executor_options={"address": sys.argv[1]}
                    )
                    print(run.status, run["where"] == run.nodes["where"].info["executor"]["worker"])
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script), address],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "succeeded True"


def test_a_script_the_workers_cannot_import_still_runs(
    tmp_path: Path, dask_kernel: Callable[..., aliquot.Kernel], start_cluster: Any
) -> None:
    # The cluster starts first, as a remote one would: its workers know nothing of the
    # script's directory, which loading the script puts on this process's sys.path.
    remote = start_cluster(1)
    script = tmp_path / "dask_unshared_tasks.py"
    script.write_text(
        "import aliquot\n@aliquot.task(outputs=['x'])\ndef x() -> int:\n    return 41\n"
    )
    module = aliquot.load_target(str(script))
    run = dask_kernel().run(
        [module.x],
        executor="dask",
        executor_options={"address": remote.scheduler_address},
        deadline=6.0,
    )
    assert run.status == "succeeded", run.nodes["x"].reason
    assert run["x"] == 41


# ---------------------------------------------------------------- large inputs


def copies_here(blob: bytes, i: int) -> tuple[str, int, bool]:
    """Which worker ran this, how many values of the blob's size it holds, and whether the
    call got one of them rather than a private copy."""
    from distributed import get_worker

    worker = get_worker()
    held = [v for v in worker.data.values() if isinstance(v, bytes) and len(v) == len(blob)]
    return worker.address, len(held), any(v is blob for v in held)


def make_blob(size: int) -> bytes:
    return os.urandom(size)


BLOB = 20 * 1024 * 1024


def test_an_input_used_by_ten_nodes_reaches_each_worker_once(
    dask_kernel: Callable[..., aliquot.Kernel], address: str
) -> None:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    blob = os.urandom(BLOB)
    spec = make_spec(copies_here, outputs=["seen"])
    graph = Graph()
    for i in range(10):
        graph.add(Node(f"use{i}", spec, {"blob": blob, "i": i}))
        graph.name(f"seen{i}", Ref(f"use{i}", "seen"))
        graph.default_targets.append(f"seen{i}")
    run = dask_kernel().run(graph, executor="dask", executor_options={"address": address})
    assert run.status == "succeeded"
    seen = [tuple(run[f"seen{i}"]) for i in range(10)]
    assert all(count == 1 for _, count, _ in seen), seen  # one copy per worker, ever
    assert all(shared for _, _, shared in seen), seen  # and the calls used it


def test_a_large_value_made_by_one_node_reaches_each_worker_once(
    dask_kernel: Callable[..., aliquot.Kernel], address: str
) -> None:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    graph = Graph()
    graph.add(Node("make", make_spec(make_blob, outputs=["blob"]), {"size": BLOB}))
    spec = make_spec(copies_here, outputs=["seen"])
    for i in range(10):
        graph.add(Node(f"use{i}", spec, {"blob": Ref("make", "blob"), "i": i}))
        graph.name(f"seen{i}", Ref(f"use{i}", "seen"))
        graph.default_targets.append(f"seen{i}")
    run = dask_kernel().run(graph, executor="dask", executor_options={"address": address})
    assert run.status == "succeeded"
    seen = [tuple(run[f"seen{i}"]) for i in range(10)]
    assert all(count == 1 for _, count, _ in seen), seen


# ---------------------------------------------------------------- Operator.map


class Triple(Operator):
    def forward(self, x: int) -> tuple[int, str]:
        from distributed import get_worker

        return 3 * x, get_worker().address


def test_operator_map_runs_on_dask(dask_kernel: Callable[..., aliquot.Kernel]) -> None:
    results = Triple().map(range(6), executor="dask:2", kernel=dask_kernel())
    assert [value for value, _ in results] == [0, 3, 6, 9, 12, 15]
    assert all(where.startswith("tcp://127.0.0.1:") for _, where in results)


def test_operator_map_on_dask_needs_a_kernel_with_the_plugin() -> None:
    from aliquot import UnknownNameError
    from aliquot.testing import make_kernel

    with make_kernel() as plain, pytest.raises(UnknownNameError, match="dask"):
        Triple().map([1], executor="dask", kernel=plain)
