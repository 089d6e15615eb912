"""Experiments from the command line: every flag the stages issue names, and the seed's
defects as regressions (non-cascading overwrite, --dry writing to the cache)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot.testing import run_cli

DEMO = """
import attrs
from aliquot import stage, aggregate, Record, Experiment

@attrs.frozen
class Params:
    name: str
    n: int = 10
    seed: int = 0

@stage(outputs=["data"], cachers=["json"])
def load(record: Record):
    return list(range(record.params.n))

@stage(inputs=["data"], outputs=["mean", "count"], cachers=["json", "json"])
def stats(record: Record, data):
    return sum(data) / len(data), len(data)

@aggregate(inputs=["mean"], outputs=["best"], cachers=["json"])
def best(record: Record, records: list[Record], mean: dict[Record, float]):
    return max(mean, key=mean.get).params.name

experiment = Experiment("demo", stages=[load, stats, best],
                        params=[Params("small", 10), Params("big", 1000)])
"""

SWEEP = """
from demo import Params
SIZES = {sizes}

def get_params():
    return [Params("s" + str(i), n) for i, n in enumerate(SIZES)]
"""

PROCEDURAL = """
from demo import Params, load, stats, best, Record

def get_params():
    return [Params("a", 4), Params("b", 8), Params("c", 2)]

def run(param_sets, manager):
    records = [stats(load(Record(manager, p))) for p in param_sets]
    best(Record(None), records)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIQUOT_STORE", str(tmp_path / "store"))
    (tmp_path / "demo.py").write_text(DEMO)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "sweep.py").write_text(SWEEP.format(sizes=[3, 5, 7, 9]))
    (tmp_path / "params" / "other.py").write_text(SWEEP.format(sizes=[4, 5, 7, 9]))
    (tmp_path / "proc.py").write_text(PROCEDURAL)
    return tmp_path


def run_json(*args: str) -> dict[str, Any]:
    result = run_cli("run", *args, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {n["id"]: n["status"] for n in doc["nodes"]}


def test_run_then_run_again_computes_nothing_and_says_so(project: Path) -> None:
    first = run_cli("run", "demo.py")
    assert first.exit_code == 0, first.stderr
    assert "best = 'big'" in first.stdout
    assert "5 computed" in first.stderr
    again = run_cli("run", "demo.py")
    assert again.exit_code == 0
    assert "nothing to compute: 1 node(s) served from the cache" in again.stderr
    assert "best = 'big'" in again.stdout


def test_help_lists_the_stage_and_cache_options() -> None:
    result = run_cli("run", "--help")
    for flag in (
        "--params",
        "--names",
        "--indices",
        "--global-indices",
        "--overwrite",
        "--overwrite-stage",
        "--dry-run",
        "--parallel",
        "--target",
    ):
        assert flag in result.stdout


def test_target_pulls_only_what_it_needs(project: Path) -> None:
    doc = run_json("demo.py", "--target", "small.mean")
    assert statuses(doc) == {
        "small/load": "computed",
        "big/load": "skipped",
        "small/stats": "computed",
        "big/stats": "skipped",
        "aggregate/best": "skipped",
    }
    assert doc["targets"] == ["small.mean"]


def test_params_names_and_indices(project: Path) -> None:
    doc = run_json("demo.py", "--params", "params/sweep.py", "--indices", "1-3")
    assert [r["name"] for r in doc["meta"]["stages"]["records"]] == ["s1", "s2", "aggregate"]
    doc = run_json("demo.py", "--params", "params/sweep.py", "--names", "s0,s3")
    assert [r["name"] for r in doc["meta"]["stages"]["records"]][:2] == ["s0", "s3"]
    doc = run_json(
        "demo.py", "--params", "params/sweep.py", "--params", "params/other.py", "--indices", "0"
    )
    records = doc["meta"]["stages"]["records"]
    assert [(r["name"], r["params"]["n"]) for r in records[:2]] == [("s0", 3), ("s0~2", 4)]
    doc = run_json(
        "demo.py",
        "--params",
        "params/sweep.py",
        "--params",
        "params/other.py",
        "--global-indices",
        "3-5",
    )
    records = doc["meta"]["stages"]["records"]
    assert [(r["name"], r["params"]["n"]) for r in records[:2]] == [("s3", 9), ("s0", 4)]


def test_bad_selection_is_one_clear_line(project: Path) -> None:
    result = run_cli("run", "demo.py", "--names", "huge")
    assert result.exit_code != 0
    assert "no parameter set is named 'huge' (names: big, small)" in result.stderr
    assert "Traceback" not in result.stderr


def test_procedural_module_with_get_params(project: Path) -> None:
    doc = run_json("proc.py")
    assert doc["target"] == "experiment proc"
    assert statuses(doc)["aggregate/best"] == "computed"
    assert doc["outputs"]["best"]["ref"] is not None
    assert run_cli("get", "latest", "best").stdout.strip() == "'b'"


def test_a_module_with_two_experiments(project: Path) -> None:
    (project / "two.py").write_text(
        DEMO + "\nother = Experiment('other', stages=[load], params=[Params('x', 1)])\n"
    )
    result = run_cli("run", "two.py")
    assert result.exit_code != 0
    assert "defines 2 experiments (experiment, other); choose one: TARGET:experiment" in (
        result.stderr
    )
    doc = run_json("two.py:other")
    assert list(statuses(doc)) == ["x/load"]


def test_a_module_with_stages_and_no_experiment(project: Path) -> None:
    (project / "bare.py").write_text(DEMO.split("experiment = ")[0])
    result = run_cli("run", "bare.py")
    assert result.exit_code != 0
    assert "defines stages but no experiment to run them" in result.stderr


# ---------------------------------------------------------------- overwrite


def test_overwrite_recomputes_everything(project: Path) -> None:
    run_json("demo.py")
    doc = run_json("demo.py", "--overwrite")
    assert set(statuses(doc).values()) == {"computed"}


def test_overwrite_stage_cascades_downstream(project: Path) -> None:
    # Seed bug (curifactory#86): --overwrite-stage A re-ran only A; its dependents
    # found their stale outputs and loaded them.
    run_json("demo.py")
    doc = run_json("demo.py", "--overwrite-stage", "load")
    assert statuses(doc) == {
        "small/load": "computed",
        "big/load": "computed",
        "small/stats": "computed",
        "big/stats": "computed",
        "aggregate/best": "computed",
    }
    forced = {n["id"]: n["info"]["cache"]["why"] for n in doc["nodes"]}
    assert forced["small/load"] == ["overwrite requested (--overwrite-stage load)"]
    assert forced["small/stats"] == ["upstream 'small/load' is overwritten"]
    doc = run_json("demo.py", "--overwrite-stage", "stats", "--names", "small")
    assert statuses(doc) == {
        "small/load": "cached",
        "small/stats": "computed",
        "aggregate/best": "computed",
    }


# ---------------------------------------------------------------- dry run


def _tree_digest(path: Path) -> str:
    """Every file of the store but LMDB's reader table (lock.mdb: who has it open)."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "lock.mdb"):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def test_dry_run_prints_the_plan_and_writes_nothing(project: Path) -> None:
    # Seed bug: --dry still wrote reportables into the cache.
    run_json("demo.py", "--target", "small.mean")
    before = _tree_digest(project / "store")
    result = run_cli("run", "demo.py", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert _tree_digest(project / "store") == before
    lines = result.stdout.splitlines()
    table = {line.split()[0]: line.split()[1] for line in lines[1:] if line.strip()[:1].isalpha()}
    assert table["small/load"] == "skip"
    assert table["small/stats"] == "load"
    assert table["big/load"] == "run"
    assert table["aggregate/best"] == "run"
    assert "(dry run: nothing was run or written)" in result.stdout
    # and on a store that does not exist yet, none is created
    fresh = run_cli("run", "demo.py", "--dry-run", "--store", str(project / "nothing"))
    assert fresh.exit_code == 0, fresh.stderr
    assert not (project / "nothing").exists()


# ---------------------------------------------------------------- executors


def test_parallel_processes_give_results_identical_to_a_serial_run(project: Path) -> None:
    serial = run_json("demo.py", "--params", "params/sweep.py", "--store", "serial")
    parallel = run_json(
        "demo.py", "--params", "params/sweep.py", "--store", "par", "--parallel", "2"
    )
    assert parallel["executor"] == "processes:2"

    def digests(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
        return {n["id"]: {k: v["digest"] for k, v in n["outputs"].items()} for n in doc["nodes"]}

    assert digests(serial) == digests(parallel)
    assert set(statuses(parallel).values()) == {"computed"}


def test_threads_executor(project: Path) -> None:
    doc = run_json("demo.py", "--executor", "threads:4")
    assert doc["status"] == "succeeded"


# ---------------------------------------------------------------- explain, cache, get


def test_explain_names_the_parameter_that_changed(project: Path) -> None:
    run_json("demo.py", "--params", "params/sweep.py")
    doc = run_json("demo.py", "--params", "params/other.py")  # s0: n 3 -> 4; the rest equal
    assert statuses(doc)["s0/load"] == "computed"
    assert statuses(doc)["s1/load"] == "skipped"
    result = run_cli("explain", doc["id"], "s0/load")
    assert result.exit_code == 0, result.stderr
    assert "computed: parameter record.params.n changed" in result.stdout
    result = run_cli("explain", doc["id"], "stats", "--json")
    rows = json.loads(result.stdout)
    assert {r["node"] for r in rows} == {"s0/stats", "s1/stats", "s2/stats", "s3/stats"}
    s0 = next(r for r in rows if r["node"] == "s0/stats")
    assert s0["cache"] == "miss"
    assert any("input data changed" in line for line in s0["why"])
    assert run_cli("explain", doc["id"], "nope").exit_code != 0


def test_cache_ls_and_clear_by_stage(project: Path) -> None:
    run_json("demo.py")
    listing = json.loads(run_cli("cache", "ls", "--json").stdout)
    assert sorted(r["node"] for r in listing) == [
        "aggregate/best",
        "big/load",
        "big/stats",
        "small/load",
        "small/stats",
    ]
    small_load = next(r for r in listing if r["node"] == "small/load")
    assert small_load["reads"] == ["record.params.__class__", "record.params.n"]
    only = json.loads(run_cli("cache", "ls", "--stage", "stats", "--json").stdout)
    assert sorted(r["node"] for r in only) == ["big/stats", "small/stats"]
    cleared = run_cli("cache", "clear", "--stage", "load")
    assert cleared.stdout.strip() == "removed 2 cache entries"
    doc = run_json("demo.py", "--target", "small.data")
    assert statuses(doc)["small/load"] == "computed"
    assert run_cli("cache", "clear").stdout.strip() == "removed 4 cache entries"
    assert run_cli("cache", "ls").stdout.strip() == "no cache entries"


def test_get_a_record_value(project: Path, tmp_path: Path) -> None:
    run_json("demo.py")
    result = run_cli("get", "latest", "mean", "--record", "small")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "4.5"
    out = tmp_path / "data.json"
    result = run_cli("get", "latest", "data", "--record", "big", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text()) == list(range(1000))
    ambiguous = run_cli("get", "latest", "mean")
    assert ambiguous.exit_code != 0
    assert "choose one with --record (big, small)" in ambiguous.stderr


# ---------------------------------------------------------------- plugins blocked


def test_blocking_stages_names_the_plugin(project: Path) -> None:
    result = run_cli("-p", "no:stages", "run", "demo.py")
    assert result.exit_code != 0
    assert "run by the 'stages' plugin, which is not loaded" in result.stderr
    assert "-p no:stages" in result.stderr


def test_blocking_the_cache_makes_every_stage_compute(project: Path) -> None:
    run_json("demo.py")
    result = run_cli("-p", "no:cache", "run", "demo.py", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert set(statuses(json.loads(result.stdout)).values()) == {"computed"}
    # the cache's options are gone with it
    assert run_cli("-p", "no:cache", "run", "demo.py", "--overwrite").exit_code != 0


def test_python_api_matches_the_cli(project: Path) -> None:
    run_json("demo.py")
    module = aliquot.load_target(str(project / "demo.py"))
    with aliquot.Kernel.open(project / "store") as kernel:
        run = kernel.run(module.experiment)
        assert run.counts() == {"cached": 1, "skipped": 4}
        assert run.records["small"].state["mean"] == 4.5
        assert run["best"] == "big"


def test_dry_run_json(project: Path) -> None:
    result = run_cli("run", "demo.py", "--dry-run", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0
    actions = {n["node"]: (n["action"], n["reason"]) for n in doc["nodes"]}
    assert actions["aggregate/best"] == ("run", "upstream 'small/stats' runs first (may still hit)")
    assert actions["small/load"] == ("run", "no earlier result for this node")


def test_params_file_and_sweep_sizes_are_used(project: Path) -> None:
    doc = run_json("demo.py", "--params", "params/sweep.py", "--target", "s3.count")
    assert aliquot.Kernel.open(project / "store").get_run(doc["id"])["s3.count"] == 9
