"""Fixtures for the ``dask`` executor's tests: one real cluster shared by the session.

Starting a ``LocalCluster`` with worker processes costs a second or two on a
small machine, so the tests share one (``cluster``: two worker processes with
one thread each, every server on 127.0.0.1) and reach it the way a user
reaches a remote scheduler, ``executor_options={"address": ...}``. Tests that
are about the cluster the executor starts itself (``DaskExecutor(2)``) start
their own.

The cluster's workers are spawned with ``scripts`` on their ``sys.path``, as
workers deployed with a project's code would be: experiment files the tests
write there are importable on both sides. Functions defined in the test
modules travel by value instead (each module registers itself with
``cloudpickle.register_pickle_by_value``): pytest imports them under names
derived from their paths, which no worker can import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot.testing import make_kernel

# aliquot_dask and distributed are imported inside the fixtures: without
# the contrib package this file still imports, and every test module skips itself.


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ALIQUOT_* variable leaks in, and per-store keys go to a temporary config dir
    (the same isolation the root test suite gives its tests)."""
    for name in list(os.environ):
        if name.startswith("ALIQUOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ALIQUOT_CONFIG_DIR", str(tmp_path_factory.mktemp("aliquot-config")))


@pytest.fixture(scope="session")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory on the shared cluster's workers' ``sys.path`` (see the module docstring)."""
    return tmp_path_factory.mktemp("scripts")


def _loopback_cluster(workers: int = 2, **options: Any) -> Any:
    """A ``LocalCluster`` of worker processes (one thread each) bound to 127.0.0.1.

    Its scheduler's HTTP server takes a free port, not Dask's default 8787, so
    it never collides with another cluster on the machine (a collision is a
    ``UserWarning``, an error under this suite's warning filter).
    """
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=40,  # logging.ERROR: expected worker deaths stay out of the output
        **options,
    )


@pytest.fixture(scope="session")
def cluster(scripts: Path) -> Iterator[Any]:
    """The session's cluster: 2 worker processes x 1 thread, on loopback."""
    sys.path.insert(0, str(scripts))
    try:
        with _loopback_cluster(2) as local:
            yield local
    finally:
        sys.path.remove(str(scripts))


@pytest.fixture
def start_cluster() -> Iterator[Callable[..., Any]]:
    """``start_cluster(workers=1, **options)``: a cluster of the test's own, like the
    shared one, closed after the test (for tests that kill or break workers)."""
    started: list[Any] = []

    def start(workers: int = 1, **options: Any) -> Any:
        started.append(_loopback_cluster(workers, **options))
        return started[-1]

    yield start
    for local in started:
        local.close()


@pytest.fixture(scope="session")
def client(cluster: Any) -> Iterator[Any]:
    """A client of the shared cluster, for looking at what the scheduler and workers hold."""
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as connected:
        yield connected


@pytest.fixture
def address(cluster: Any, client: Any) -> str:
    """The shared cluster's scheduler address, once both of its workers are up
    (a test before this one may have killed one; its nanny restarts it)."""
    client.wait_for_workers(2, timeout=30)
    return str(cluster.scheduler_address)


KernelFactory = Callable[..., aliquot.Kernel]


@pytest.fixture
def dask_kernel() -> Iterator[KernelFactory]:
    """``dask_kernel(store="memory://")``: a test kernel with the ``dask`` plugin loaded
    (third-party autoload stays off, as in every test kernel); closed after the test."""
    import aliquot_dask

    opened: list[aliquot.Kernel] = []

    def make(store: str | Path = "memory://") -> aliquot.Kernel:
        kernel = make_kernel([aliquot_dask], store=str(store))
        opened.append(kernel)
        return kernel

    yield make
    for kernel in opened:
        kernel.close()
