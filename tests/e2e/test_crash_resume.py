"""``kill -9`` in the middle of ``aliquot run``, then run again.

The experiment: 4 records x 3 stages that each take about 0.3 s, then a quick
aggregate. A node that took at least 0.25 s is committed (its values and cache
entry) before its progress line is printed, so once stderr says a node finished,
its result survives SIGKILL. After the kill:

(a) the store still says the run is ``running`` to a read-only reader; the next
    kernel that opens it for writing marks the run ``crashed``;
(b) a re-run serves every node reported finished from the cache (``cached``, or
    ``skipped`` because a node that needs it is cached) and computes the rest;
(c) every output of the resumed run is the same as in an uninterrupted run in a
    fresh store: same digest for json and numpy values, the same value and the
    same pickle bytes under the signature for pickled ones (a pickle's envelope
    is signed with a per-store key, so its digest differs across stores);
(d) the store verifies, read-only right after the kill and with ``aliquot store verify``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aliquot
from aliquot import ArtifactRef

EXPERIMENT = """
import time

import attrs
import numpy as np

from aliquot import Experiment, Record, aggregate, stage

PAUSE = 0.3


@attrs.frozen
class Params:
    name: str
    n: int


@stage(outputs=["numbers"], cachers=["json"])
def generate(record: Record):
    time.sleep(PAUSE)
    return [i * i for i in range(record.params.n)]


@stage(inputs=["numbers"], outputs=["array"], cachers=["numpy"])
def transform(record: Record, numbers):
    time.sleep(PAUSE)
    return np.asarray(numbers, dtype=np.float64) / 3.0


@stage(inputs=["array"], outputs=["summary", "blob"], cachers=["json", "pickle"])
def summarize(record: Record, array):
    time.sleep(PAUSE)
    summary = {"name": record.name, "sum": float(array.sum()), "size": int(array.size)}
    return summary, {"values": tuple(array.tolist()), "raw": bytes(range(record.params.n))}


@aggregate(inputs=["summary"], outputs=["report"], cachers=["json"])
def collect(record: Record, records, summary):
    return sorted((s["name"], s["sum"]) for s in summary.values())


experiment = Experiment(
    "crash",
    stages=[generate, transform, summarize, collect],
    params=[Params(f"r{i}", 5 + i) for i in range(4)],
)
"""

RECORDS = [f"r{i}" for i in range(4)]
NODES = {
    *(f"{r}/{s}" for r in RECORDS for s in ("generate", "transform", "summarize")),
    "aggregate/collect",
}
#: A progress line on stderr: ``  [3/13] computed  r2/generate (302.5ms)``.
PROGRESS = re.compile(r"^\s*\[(\d+)/(\d+)\]\s+(\w+)\s+(\S+) \(")
PICKLE_HEADER = 6 + 8 + 32  # magic, key id, HMAC (serializer_pickle's envelope)


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIQUOT_")}
    env.update(
        ALIQUOT_CONFIG_DIR=str(config),
        ALIQUOT_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _command(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "aliquot.cli", "run", "exp.py", "--store", str(store), *args]


def _run_json(project: Path, store: Path, config: Path) -> dict[str, Any]:
    out = subprocess.run(
        _command(store, "--json", "-q"),
        cwd=project,
        env=_env(config),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    assert doc["status"] == "succeeded"
    return doc


def _project(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "exp.py").write_text(EXPERIMENT.lstrip())
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One config dir (pickle keys, per store id) for every store of this module."""
    return tmp_path_factory.mktemp("crash-config")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, config: Path) -> tuple[Path, dict]:
    """An uninterrupted run in a store of its own: ``(store, run JSON)``."""
    project = _project(tmp_path_factory.mktemp("crash-reference"))
    store = project / "store"
    doc = _run_json(project, store, config)
    assert {n["id"] for n in doc["nodes"]} == NODES
    assert all(n["status"] == "computed" for n in doc["nodes"])
    return store, doc


@pytest.fixture
def use_config(config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process reads the stores with the subprocesses' keys."""
    monkeypatch.setenv("ALIQUOT_CONFIG_DIR", str(config))
    monkeypatch.setenv("ALIQUOT_DISABLE_PLUGIN_AUTOLOAD", "1")
    return config


def _run_and_kill(project: Path, store: Path, config: Path, kill_after: int) -> dict[str, str]:
    """Run until ``kill_after`` nodes reported finished, SIGKILL it; node id -> status
    for every node whose progress line reached stderr before it died."""
    proc = subprocess.Popen(
        _command(store),
        cwd=project,
        env=_env(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    finished: dict[str, str] = {}
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = PROGRESS.match(line)
            if match:
                finished[match.group(4)] = match.group(3)
                if len(finished) == kill_after:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        # Lines written before it died are still in the pipe.
        for line in proc.stderr:
            lines.append(line)
            match = PROGRESS.match(line)
            if match:
                finished[match.group(4)] = match.group(3)
        # Reaped: a zombie still has its /proc entry and would look alive.
        returncode = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    text = "".join(lines)
    assert returncode == -signal.SIGKILL, text
    assert kill_after <= len(finished) < len(NODES), text
    assert set(finished.values()) == {"computed"}, text
    return finished


def _load_all(store: Path, doc: dict[str, Any]) -> dict[tuple[str, str], tuple[ArtifactRef, Any]]:
    """Every output of every node of a run: (node, output) -> (ref, loaded value)."""
    kernel = aliquot.Kernel.open(store, readonly=True)
    try:
        out = {}
        for node in doc["nodes"]:
            for name, raw in node["outputs"].items():
                ref = ArtifactRef.from_json(raw)
                out[node["id"], name] = (ref, kernel.values.load(ref))
                if ref.serializer == "pickle":
                    data = kernel.store.get_value(ref.digest)
                    assert data is not None
                    out[node["id"], name + "#pickle-bytes"] = (ref, bytes(data)[PICKLE_HEADER:])
        return out
    finally:
        kernel.close()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return type(a) is type(b) and a == b


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("kill_after", [1, 6, 11], ids=lambda n: f"killed-after-{n}-nodes")
def test_kill_9_then_resume(
    tmp_path: Path,
    config: Path,
    use_config: Path,
    reference: tuple[Path, dict[str, Any]],
    kill_after: int,
) -> None:
    project = _project(tmp_path / "project")
    store = tmp_path / "store"
    finished = _run_and_kill(project, store, config, kill_after)

    # (a) + (d): a read-only reader sees a sound store and a run still "running" ...
    with aliquot.Kernel.open(store, readonly=True) as kernel:
        assert kernel.store.verify()["ok"] is True
        run = kernel.get_run("latest")
        assert run.status == "running"
        killed = run.id
    # ... and the next kernel that may write marks it crashed.
    with aliquot.Kernel.open(store) as kernel:
        run = kernel.get_run(killed)
        assert run.status == "crashed"
        assert "the process running this run died before it finished" in run.warnings
        statuses = {nid: rec.status for nid, rec in run.nodes.items()}
        # Node records are written in chunks (all 13 nodes share one), flushed about once
        # a second: a run killed early may have none yet, and a finished node may still
        # read as cancelled -- but no node reads as finished that did not finish.
        assert set(statuses) in (set(), NODES), statuses
        assert set(statuses.values()) <= {"computed", "cancelled"}, statuses
        assert {nid for nid, s in statuses.items() if s == "computed"} <= set(finished)
    verify = subprocess.run(
        [sys.executable, "-m", "aliquot.cli", "store", "verify", "--json", "--store", str(store)],
        env=_env(config),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is True and report["problems"] == []

    # (b) the re-run computes exactly what had not finished.
    resumed = _run_json(project, store, config)
    status = {n["id"]: n["status"] for n in resumed["nodes"]}
    assert set(status) == NODES
    for nid in NODES:
        if nid in finished:
            assert status[nid] in ("cached", "skipped"), (nid, status)
        else:
            assert status[nid] == "computed", (nid, status)
    assert resumed["counts"].get("computed") == len(NODES) - len(finished)

    # (c) the same outputs as an uninterrupted run in a fresh store.
    ref_store, ref_doc = reference
    got = _load_all(store, resumed)
    want = _load_all(ref_store, ref_doc)
    assert set(got) == set(want)
    assert len(want) == 4 * 4 + 1 + 4  # outputs of the 13 nodes, plus 4 pickles' bytes
    for key, (ref, value) in want.items():
        other_ref, other_value = got[key]
        assert (other_ref.serializer, other_ref.type) == (ref.serializer, ref.type), key
        if ref.serializer != "pickle":
            assert (other_ref.digest, other_ref.size) == (ref.digest, ref.size), key
        assert _same(other_value, value), key
