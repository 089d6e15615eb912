"""The dask executor: 10,000 no-op tasks + one aggregate vs client.map on the same cluster.

    /work/venv/bin/python tests/bench/bench_dask.py [--quick] [--json] [--profile]

Needs the contrib package (``pip install -e 'contrib/aliquot-dask[test]'``).

One cluster serves every contender: a ``distributed.LocalCluster`` of 2 worker
processes x 1 thread, every server on 127.0.0.1, started in a child process
before the first sample (so its scheduler does not share this process's GIL
with the code being measured, as a remote scheduler would not) and reached by
address, as ``--dask-address`` reaches one.

Fan-in (headline). The graph of bench_executors.py: nodes ``n0..n9999`` call
``noop(i)``, node ``agg`` calls ``agg(values)`` with the list of all 10,000
refs; ``kernel.run(graph, executor="dask", executor_options={"address": A})``
on a fresh ``memory://`` kernel (opened untimed), wall time / 10,000. Planning,
connecting the client, the aggregate and closing are inside it.

Peer, same cluster, same rounds: the same work submitted directly --
``Client(A)``; ``futures = client.map(noop, range(n), pure=False)``;
``client.submit(agg, futures).result()``; close (connecting and closing are
timed, as the executor's are). Target (from the issue): **aliquot <= 1.5x**.
Context (information): ``client.map`` + ``client.gather`` (every value comes
back to the client, as every node's value comes back to the kernel), and
``dask.bag.from_sequence(range(n)).map(noop).sum()`` computed on the cluster
(Dask batches the items into ~100 partitions: a handful of tasks, not 10,000).

Shared input. A 100 MB ``bytes`` value (``--quick``: 20 MB) bound to 10 nodes
(``size(blob, i)``), run on the same cluster, 3 rounds (``--quick``: 1).
Counted, not inferred: the scheduler is polled during the run
(``client.nbytes`` + ``client.who_has``: every key of that size and the
workers holding it), the workers' count of values fetched from a peer, and
the bytes received on the loopback interface during the run (every hop
counts once: client -> scheduler -> worker -> worker), divided by the value's
size. Target: **each worker receives the value at most once** -- one key of
that size, on at most one copy per worker, and at most workers + 1 copies'
worth of bytes over loopback (the scatter's relay through the scheduler is
the +1, as with Dask's own ``client.scatter``). Peers for context:
``client.map`` with the value as each call's argument (no scatter), and
``client.scatter`` + ``client.map`` (Dask's idiom).

Contenders run round-robin, round 0 a discarded warm-up; every sample checks
its result. ``--profile`` prints cProfile of one aliquot run (the main trio
thread and the executor's feeder and waiter threads, summed; not the client's
event-loop thread), sorted by cumulative and by own time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

# Worker processes unpickle the functions below by value (they live in __main__):
# keep the module level light.


def noop(i: int) -> int:
    return i


def agg(values: list[int]) -> int:
    return sum(values)


def size(blob: bytes, i: int) -> int:
    return len(blob) + i


CLUSTER = """
import sys
from distributed import LocalCluster

if __name__ == "__main__":
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=40,
    ) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin
"""


def build_graph(n: int) -> Any:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    noop_spec = make_spec(noop, outputs=["out"])
    agg_spec = make_spec(agg, outputs=["total"])
    graph = Graph(source=f"fan-in of {n}")
    for i in range(n):
        graph.add(Node(f"n{i}", noop_spec, {"i": i}))
    graph.add(Node("agg", agg_spec, {"values": [Ref(f"n{i}", "out") for i in range(n)]}))
    graph.name("total", Ref("agg", "total"))
    graph.default_targets.append("total")
    return graph


def shared_graph(blob: bytes, uses: int) -> Any:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    spec = make_spec(size, outputs=["size"])
    graph = Graph(source=f"{uses} uses of one value")
    for i in range(uses):
        graph.add(Node(f"use{i}", spec, {"blob": blob, "i": i}))
        graph.name(f"size{i}", Ref(f"use{i}", "size"))
        graph.default_targets.append(f"size{i}")
    return graph


def loopback_bytes() -> int:
    """Bytes received on the loopback interface so far (every hop between the client,
    the scheduler and the workers crosses it once)."""
    with open("/proc/net/dev") as fh:
        for line in fh:
            name, _, counters = line.partition(":")
            if name.strip() == "lo":
                return int(counters.split()[0])
    raise RuntimeError("no loopback interface in /proc/net/dev")


def peer_transfers(client: Any) -> dict[str, int]:
    """How many values each worker has fetched from another worker so far."""
    return client.run(lambda dask_worker: dask_worker.state.transfer_incoming_count_total)


class ReplicaWatch:
    """Polls the scheduler while a run goes on: every key of at least ``nbytes`` bytes
    and the workers that held it."""

    def __init__(self, client: Any, nbytes: int) -> None:
        self.client = client
        self.nbytes = nbytes
        self.keys: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            sizes = self.client.nbytes(summary=False)
            big = {k for k, v in sizes.items() if v >= self.nbytes}
            if big:
                for key, workers in self.client.who_has().items():
                    if key in big:
                        self.keys.setdefault(str(key), set()).update(workers)
            self._stop.wait(0.01)


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import MICRO, Report, Row, Stats, parse_args, progress, reps, time_once

    args = parse_args(__doc__.splitlines()[0])
    try:
        import aliquot_dask
    except ImportError:
        raise SystemExit(
            "bench_dask.py needs the contrib package: pip install -e contrib/aliquot-dask"
        ) from None
    import dask
    import dask.bag as db
    import distributed
    from distributed import Client

    from aliquot.testing import make_kernel

    n = 1_000 if args.quick else 10_000
    blob_size = (20 if args.quick else 100) * 1_000_000
    uses = 10
    repeat = reps(args, full=5, quick=2)
    report = Report(
        f"bench_dask: {n:,} no-op tasks + 1 aggregate on a 2-worker cluster", args.quick
    )
    unit = f"{MICRO}s/task"
    per_task = 1e6 / n
    expected = n * (n - 1) // 2
    graph = build_graph(n)

    progress("[dask] starting the cluster (2 worker processes x 1 thread, 127.0.0.1)...")
    cluster = subprocess.Popen(
        [sys.executable, "-c", CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert cluster.stdout is not None
        address = cluster.stdout.readline().strip()
        if not address.startswith("tcp://127.0.0.1:"):
            raise SystemExit(f"the cluster did not start (got {address!r})")
        watcher = Client(address, set_as_default=False)
        watcher.wait_for_workers(2, timeout=60)
        workers = len(watcher.scheduler_info()["workers"])

        def aliquot_run(g: Any, check: Any) -> tuple[float, Any]:
            kernel = make_kernel([aliquot_dask])
            try:
                elapsed, run = time_once(
                    lambda: kernel.run(g, executor="dask", executor_options={"address": address})
                )
                if run.status != "succeeded":
                    raise SystemExit(f"the dask run did not succeed: {run.status}")
                check(run)
            finally:
                kernel.close()
            return elapsed, run

        def check_total(run: Any) -> None:
            if run["total"] != expected:
                raise SystemExit(f"aliquot returned {run['total']}, not {expected}")

        def map_submit() -> float:
            def work() -> int:
                with Client(address, set_as_default=False) as client:
                    futures = client.map(noop, range(n), pure=False)
                    return int(client.submit(agg, futures).result())

            elapsed, total = time_once(work)
            if total != expected:
                raise SystemExit("client.map + submit(agg) returned a wrong total")
            return elapsed

        def map_gather() -> float:
            def work() -> int:
                with Client(address, set_as_default=False) as client:
                    futures = client.map(noop, range(n), pure=False)
                    return sum(client.gather(futures))

            elapsed, total = time_once(work)
            if total != expected:
                raise SystemExit("client.map + gather returned a wrong total")
            return elapsed

        def bag() -> float:
            def work() -> int:
                with Client(address, set_as_default=False) as client:
                    return int(client.compute(db.from_sequence(range(n)).map(noop).sum()).result())

            elapsed, total = time_once(work)
            if total != expected:
                raise SystemExit("dask.bag returned a wrong total")
            return elapsed

        cases = {
            "aliquot": lambda: aliquot_run(graph, check_total)[0],
            "map+submit": map_submit,
            "map+gather": map_gather,
            "bag": bag,
        }
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for rnd in range(repeat + 1):  # round 0 is a warm-up, discarded
            progress(f"[dask] fan-in round {rnd}/{repeat}{' (warm-up)' if rnd == 0 else ''}...")
            for name, case in cases.items():
                elapsed = case()
                if rnd:
                    samples[name].append(elapsed)
        st = {k: Stats(v) for k, v in samples.items()}
        med = {k: s.median for k, s in st.items()}

        sec = f"{n:,} no-op tasks + agg(values=[{n:,} refs]); wall time / {n:,}"
        ours = med["aliquot"] * per_task
        peer = med["map+submit"] * per_task
        report.add(
            Row(
                sec,
                "aliquot kernel.run, executor dask (address)",
                ours,
                unit,
                st["aliquot"],
                per_task,
                peer=peer,
                peer_label="client.map + client.submit(agg, futures)",
                peer_stats=st["map+submit"],
                target="ratio <= 1.5x",
                ok=ours <= 1.5 * peer,
            )
        )
        report.add(
            Row(
                sec,
                "aliquot vs client.map + client.gather (values back at the client)",
                ours,
                unit,
                st["aliquot"],
                per_task,
                peer=med["map+gather"] * per_task,
                peer_label="client.map + client.gather",
                peer_stats=st["map+gather"],
            )
        )
        report.add(
            Row(
                sec,
                "dask.bag from_sequence(range(n)).map(noop).sum() (partitions, for context)",
                med["bag"] * per_task,
                unit,
                st["bag"],
                per_task,
            )
        )

        # ---------------------------------------------------------------- shared input
        progress(f"[dask] {blob_size // 1_000_000} MB value used by {uses} nodes...")
        blob = os.urandom(blob_size)
        shared = shared_graph(blob, uses)
        expected_sizes = {f"size{i}": blob_size + i for i in range(uses)}

        def check_sizes(run: Any) -> None:
            got = {name: run[name] for name in expected_sizes}
            if got != expected_sizes:
                raise SystemExit(f"the shared-input run returned {got}")

        def shared_case(work: Any) -> dict[str, Any]:
            fetched = peer_transfers(watcher)
            before = loopback_bytes()
            with ReplicaWatch(watcher, blob_size) as watch:
                elapsed = work()
            moved = loopback_bytes() - before
            after = peer_transfers(watcher)
            return {
                "seconds": elapsed,
                # the scheduler's view: each large key and the workers that held it
                "keys": {k: sorted(v) for k, v in watch.keys.items()},
                "peer_fetches": sum(after[w] - fetched.get(w, 0) for w in after),
                "loopback_copies": moved / blob_size,
            }

        def aliquot_shared() -> float:
            return aliquot_run(shared, check_sizes)[0]

        def map_each() -> float:
            def work() -> list[int]:
                with Client(address, set_as_default=False) as client:
                    return list(client.gather(client.map(size, [blob] * uses, range(uses))))

            with dask.config.set({"distributed.admin.large-graph-warning-threshold": "10GB"}):
                elapsed, sizes = time_once(work)
            if sizes != [blob_size + i for i in range(uses)]:
                raise SystemExit("client.map with the value in each call returned wrong sizes")
            return elapsed

        def map_scatter() -> float:
            def work() -> list[int]:
                with Client(address, set_as_default=False) as client:
                    (shared_future,) = client.scatter([blob], hash=False)
                    futures = client.map(size, [shared_future] * uses, range(uses))
                    return list(client.gather(futures))

            elapsed, sizes = time_once(work)
            if sizes != [blob_size + i for i in range(uses)]:
                raise SystemExit("client.scatter + client.map returned wrong sizes")
            return elapsed

        shared_rounds = reps(args, full=3, quick=1)
        shared_results: dict[str, list[dict[str, Any]]] = {"aliquot": [], "each": [], "scatter": []}
        for rnd in range(shared_rounds):
            progress(f"[dask] shared-input round {rnd + 1}/{shared_rounds}...")
            shared_results["aliquot"].append(shared_case(aliquot_shared))
            shared_results["each"].append(shared_case(map_each))
            shared_results["scatter"].append(shared_case(map_scatter))

        def transfers(results: list[dict[str, Any]]) -> list[int]:
            """Per round: copies of large values the scheduler saw on workers."""
            return [sum(len(w) for w in r["keys"].values()) for r in results]

        def most_copies(results: list[dict[str, Any]]) -> float:
            return max(r["loopback_copies"] for r in results)

        ours = shared_results["aliquot"]
        ok = all(len(r["keys"]) == 1 for r in ours) and max(transfers(ours)) <= workers
        # Scattering routes the value through the scheduler once; then each worker gets it
        # once (from the scheduler or from a peer): workers + 1 copies cross loopback.
        ok = ok and most_copies(ours) <= workers + 1.5
        sec2 = (
            f"one {blob_size // 1_000_000} MB bytes value bound to {uses} nodes, {workers} workers"
        )
        report.add(
            Row(
                sec2,
                "aliquot: copies on workers, counted by the scheduler (most in a round)",
                max(transfers(ours)),
                "copies",
                peer=max(transfers(shared_results["scatter"])),
                peer_label="client.scatter + client.map",
                target=f"1 key, <= 1 copy per worker, <= {workers + 1.5:g} copies moved",
                ok=ok,
                note=(
                    f"keys of that size per round: {[len(r['keys']) for r in ours]}; "
                    f"worker-to-worker fetches per round: {[r['peer_fetches'] for r in ours]}"
                ),
            )
        )
        report.add(
            Row(
                sec2,
                "aliquot: bytes over loopback during the run / value size (most in a round)",
                most_copies(ours),
                "copies",
                peer=most_copies(shared_results["scatter"]),
                peer_label="client.scatter + client.map",
                note=(
                    "every hop counts once: client -> scheduler -> one worker -> the other; "
                    "a machine-wide counter (other traffic on this machine adds to it)"
                ),
            )
        )
        report.add(
            Row(
                sec2,
                "client.map with the value as each call's argument (no scatter), loopback",
                most_copies(shared_results["each"]),
                "copies",
                note=(
                    "for context: what sharing avoids; the scheduler saw "
                    f"{transfers(shared_results['each'])} copies as keys"
                ),
            )
        )
        shared_sec = Stats([r["seconds"] for r in ours])
        report.add(
            Row(
                sec2,
                f"aliquot run wall time ({uses} nodes)",
                shared_sec.median,
                "s",
                shared_sec,
                peer=Stats([r["seconds"] for r in shared_results["scatter"]]).median,
                peer_label="client.scatter + client.map",
                peer_stats=Stats([r["seconds"] for r in shared_results["scatter"]]),
            )
        )
        report.extra["shared_input"] = shared_results

        report.note(
            f"cluster: distributed {distributed.__version__}, LocalCluster in a child process, "
            "2 worker processes x 1 thread, 127.0.0.1; every contender connects its own "
            "Client per sample (timed), as the executor does per run"
        )
        report.note(
            "aliquot: a fresh memory:// kernel per sample (opened and closed untimed); "
            "per-task figures divide the whole wall time by the number of no-op tasks"
        )
        report.note(
            "noop/agg/size live in __main__: Dask and the executor send them by value (cloudpickle)"
        )

        if args.profile:
            progress("[dask] profiling one aliquot run (all threads)...")
            profile_all_threads(
                f"kernel.run, dask, {n:,} tasks (main, feeder and waiter threads)",
                lambda: aliquot_run(graph, check_total),
            )
        watcher.close()
    finally:
        if cluster.stdin is not None:
            cluster.stdin.close()
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cluster.kill()
    return report.finish(args)


def profile_all_threads(label: str, fn: Any) -> None:
    """cProfile ``fn`` in this thread and in every thread started while it runs (the
    executor's feeder and waiter), summed into one table on stderr. The client's event
    loop thread, started before, is not profiled."""
    import cProfile
    import io
    import pstats

    profilers: list[cProfile.Profile] = []

    def start_in_thread(*_: Any) -> None:
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()  # replaces this hook for the rest of the thread

    main_profiler = cProfile.Profile()
    threading.setprofile(start_in_thread)
    main_profiler.enable()
    try:
        fn()
    finally:
        main_profiler.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    combined = pstats.Stats(main_profiler)
    for profiler in profilers:
        try:
            combined.add(profiler)
        except TypeError:  # a thread that recorded nothing
            pass
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        combined.stream = out  # type: ignore[attr-defined]
        combined.sort_stats(key).print_stats(30)
        text = out.getvalue()
        for prefix in (str(Path(__file__).resolve().parents[2]) + os.sep, sys.prefix + os.sep):
            text = text.replace(prefix, "")
        print(f"\n---- cProfile: {label} (top 30 by {key}) ----\n{text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
