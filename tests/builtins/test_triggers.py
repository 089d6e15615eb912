"""Component triggers: ``@trigger`` methods run as recorded jobs on the kernel's executors.

``kernel.apply`` runs a component's ``apply`` triggers (children's first),
``kernel.trigger`` a custom event's. Every job is a record in the store space
``trigger_jobs`` that ``kernel.jobs()`` lists with the other job sources.

Trigger methods write what they do to ``LOG`` (a module-level list: under the
``threads`` executor they run in this process). Concurrency is proven with a
``threading.Barrier`` two jobs must pass together -- were they run one after
the other, the barrier would break -- never with timings.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import threading
import typing as t
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import aliquot
from aliquot import Component, trigger
from aliquot.testing import make_kernel
from aliquot_builtins.components import Applied
from aliquot_builtins.triggers import JobsFailed, TriggerDefinitionError, TriggerError

#: What trigger methods and lifecycle methods did, in order.
LOG: list[tuple[Any, ...]] = []
#: Per-test objects trigger methods reach for (barriers, the kernel).
SHARED: dict[str, Any] = {}
#: How long a barrier waits for its partner; only reached when jobs do not overlap.
BARRIER_TIMEOUT = 30.0

FIELDS = {
    "id",
    "kind",
    "target",
    "component",
    "type",
    "identifier",
    "version",
    "event",
    "method",
    "status",
    "reason",
    "created",
    "started",
    "finished",
    "duration",
    "run",
    "depends_on",
    "error",
    "result",
}


def log(*item: Any) -> None:
    LOG.append(item)


def logged(kind: str) -> list[tuple[Any, ...]]:
    return [item for item in LOG if item[0] == kind]


def kinds() -> list[str]:
    return [item[0] for item in LOG]


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    LOG.clear()
    SHARED.clear()
    yield
    LOG.clear()
    SHARED.clear()


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    SHARED["kernel"] = k
    yield k
    k.close()


def by_method(jobs: Any) -> dict[str, dict[str, Any]]:
    return {j["method"]: j for j in jobs}


def trigger_records(kernel: aliquot.Kernel) -> list[dict[str, Any]]:
    """Every record of the space ``trigger_jobs``, oldest first."""
    return [orjson.loads(raw) for _key, raw in kernel.store.scan("trigger_jobs")]


# ---------------------------------------------------------------------------
# Components the tests apply
# ---------------------------------------------------------------------------


def record_d(a: int, b: str, c: dict[str, Any]) -> str:
    log("d", a, b, c)
    return "d done"


class Notifier(Component):
    """The component of the feature's description, with every lifecycle method logged."""

    a: int
    b: str
    c: t.Dict  # noqa: UP006 -- written as users of the seed write it
    d: t.Callable | None = None
    non_breaking = ("b",)

    def postinit(self) -> None:
        log("postinit", self.identifier)

    def setup(self) -> None:
        log("setup", self.identifier)

    def on_create(self) -> None:
        kernel = SHARED.get("kernel")
        stored = kernel.show("Notifier") if kernel is not None else None
        log("on_create", self.identifier, self.version, stored)

    def cleanup(self) -> None:
        log("cleanup", self.identifier)

    @trigger("apply")
    def start(self) -> str:
        log("start", self.identifier)
        return f"started {self.identifier}"

    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> None:
        log("go", self.identifier)
        assert self.d is not None
        self.d(a=self.a, b=self.b, c=self.c)

    @trigger("apply", requires="b")
    def relabel(self) -> None:
        log("relabel", self.b)


class Chain(Component):
    """``last`` depends on ``go``, which requires ``d``."""

    d: t.Any = None

    @trigger("apply")
    def start(self) -> None:
        log("start", self.identifier)

    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> None:
        log("go", self.identifier)

    @trigger("apply", depends_on="go")
    def last(self) -> None:
        log("last", self.identifier)


class Pair(Component):
    """Two independent triggers that must run at the same time to pass their barrier."""

    n: int = 0

    def setup(self) -> None:
        log("setup", self.identifier, threading.get_ident())

    @trigger("apply", "together")
    def left(self) -> int:
        SHARED["barrier"].wait()
        log("left", threading.get_ident())
        return threading.get_ident()

    @trigger("apply", "together")
    def right(self) -> int:
        SHARED["barrier"].wait()
        log("right", threading.get_ident())
        return threading.get_ident()


class Where(Component):
    """Reports where its job ran: (pid, thread ident)."""

    n: int = 0

    @trigger("apply")
    def where(self) -> tuple[int, int]:
        return (os.getpid(), threading.get_ident())


class Fragile(Component):
    """``a`` fails; ``b`` and ``c`` depend on it (``c`` through ``b``); ``ind`` does not."""

    @trigger("apply")
    def a(self) -> None:
        log("a")
        raise ValueError("boom in a")

    @trigger("apply", depends_on="a")
    def b(self) -> None:
        log("b")

    @trigger("apply", depends_on="b")
    def c(self) -> None:
        log("c")

    @trigger("apply")
    def ind(self) -> str:
        log("ind")
        return "independent"


class Verbose(Component):
    size: int = 500

    @trigger("apply")
    def long(self) -> str:
        return "x" * self.size

    @trigger("apply")
    def short(self) -> dict[str, int]:
        return {"k": 1}

    @trigger("apply")
    def nothing(self) -> None:
        return None


class Observer(Component):
    """Its first job reads the job records while it runs."""

    @trigger("apply")
    def first(self) -> None:
        kernel = SHARED["kernel"]
        statuses = {r["method"]: r["status"] for r in kernel.jobs() if r["identifier"] == "obs"}
        log("seen", statuses)

    @trigger("apply", depends_on="first")
    def second(self) -> None:
        log("second")


class Leaf(Component):
    n: int = 0

    def on_create(self) -> None:
        log("on_create", self.identifier)

    @trigger("apply")
    def grow(self) -> None:
        log("leaf:start", self.identifier)
        log("leaf:end", self.identifier)


class Tree(Component):
    left: Leaf
    right: Leaf | None = None

    def on_create(self) -> None:
        log("on_create", self.identifier)

    @trigger("apply")
    def one(self) -> None:
        log("tree", "one")

    @trigger("apply")
    def two(self) -> None:
        log("tree", "two")


class Middle(Component):
    """No triggers of its own: it only holds a leaf."""

    leaf: Leaf


class Top(Component):
    middle: Middle

    @trigger("apply")
    def top(self) -> None:
        log("top")


class BadChild(Component):
    @trigger("apply")
    def explode(self) -> None:
        raise RuntimeError("child exploded")


class Holder(Component):
    child: BadChild

    @trigger("apply")
    def after_child(self) -> None:
        log("holder ran")


class Tuned(Component):
    """``d`` is non-breaking and ``go`` (which requires it) depends on ``start``."""

    a: int
    d: t.Any = None
    non_breaking = ("d",)

    @trigger("apply")
    def start(self) -> None:
        log("start")

    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> t.Any:
        log("go", self.d)
        return self.d


class Trainer(Component):
    """A custom event ``retrain`` whose methods take different keyword arguments."""

    lr: float | None = 0.1
    data: t.Any = None

    @trigger("apply")
    def build(self) -> None:
        log("build")

    @trigger("retrain")
    def retrain(self, lr: float | None = None, epochs: int = 1) -> str:
        log("retrain", lr, epochs)
        return f"lr={lr} epochs={epochs}"

    @trigger("retrain")
    def report(self) -> str:
        log("report")
        return "reported"

    @trigger("retrain", depends_on="retrain")
    def everything(self, **kwargs: Any) -> list[str]:
        log("everything", sorted(kwargs))
        return sorted(kwargs)

    @trigger("retrain", requires="data")
    def with_data(self) -> None:
        log("with_data")

    @trigger("explode")
    def boom(self) -> None:
        raise KeyError("no such thing")


class Flaky(Component):
    """``first`` fails while ``SHARED["fail"]`` is set; ``then`` depends on it."""

    n: int = 0

    @trigger("apply")
    def first(self) -> None:
        log("first")
        if SHARED.get("fail"):
            raise RuntimeError("not yet")

    @trigger("apply", depends_on="first")
    def then(self) -> None:
        log("then")


class Remote(Component):
    """What ``setup`` makes, and what a job sets on ``self``, under different executors."""

    n: int = 0

    def setup(self) -> None:
        self.made_in = os.getpid()

    def on_create(self) -> None:
        self.setup()

    @trigger("apply")
    def probe(self) -> tuple[int, int]:
        self.touched = os.getpid()
        return (self.made_in, os.getpid())


class Plain(Component):
    """No triggers at all."""

    n: int = 0


class Parented(Component):
    """No triggers itself, but its child has some."""

    child: Leaf


class Counted(Component):
    n: int = 0

    def setup(self) -> None:
        log("setup", self.identifier)


class BaseSetup(Component):
    n: int = 0

    def setup(self) -> None:
        log("base setup")


class DerivedSetup(BaseSetup):
    def setup(self) -> None:
        super().setup()
        log("derived setup")


class Base(Component):
    n: int = 0

    @trigger("apply")
    def base(self) -> None:
        log("base")

    @trigger("apply")
    def dropped(self) -> None:
        log("dropped")


class Derived(Base):
    @trigger("apply", depends_on="base")
    def derived(self) -> None:
        log("derived")

    def dropped(self) -> None:  # a plain method: no longer a trigger
        log("dropped (plain)")


# ---------------------------------------------------------------------------
# Apply runs the apply triggers
# ---------------------------------------------------------------------------


def test_apply_stores_the_component_and_runs_its_triggers_in_dependency_order(
    kernel: aliquot.Kernel,
) -> None:
    applied = kernel.apply(Notifier("n1", a=1, b="x", c={"k": 1}, d=record_d))
    assert isinstance(applied, Applied)
    assert applied.action == "new"
    assert applied.version == 0
    assert applied.ok
    jobs = by_method(applied.jobs)
    assert set(jobs) == {"start", "go", "relabel"}
    assert {j["status"] for j in jobs.values()} == {"succeeded"}
    assert kinds().index("start") < kinds().index("go") < kinds().index("d")
    assert logged("d") == [("d", 1, "x", {"k": 1})]
    assert jobs["go"]["depends_on"] == [jobs["start"]["id"]]
    assert jobs["start"]["depends_on"] == []
    assert applied.run is not None
    assert {j["run"] for j in applied.jobs} == {applied.run}
    assert kernel.show("Notifier") == ["n1"]


def test_a_job_record_has_every_field(kernel: aliquot.Kernel) -> None:
    applied = kernel.apply(Notifier("n1", a=1, b="x", c={"k": 1}, d=record_d))
    huuid = applied.component.huuid
    assert huuid.startswith("Notifier:n1:")
    assert [j["id"] for j in applied.jobs] == ["t1", "t2", "t3"]
    for job in applied.jobs:
        assert set(job) >= FIELDS
        assert job["kind"] == "trigger"
        assert job["target"] == f"Notifier:n1.{job['method']}"
        assert job["component"] == huuid
        assert (job["type"], job["identifier"], job["version"]) == ("Notifier", "n1", 0)
        assert job["event"] == "apply"
        assert job["reason"] == ""
        assert job["error"] is None
        created, started, finished = (
            dt.datetime.fromisoformat(job[k]) for k in ("created", "started", "finished")
        )
        assert created <= started <= finished
        assert isinstance(job["duration"], float)
        assert job["duration"] >= 0
    jobs = by_method(applied.jobs)
    assert jobs["start"]["result"] == repr("started n1")
    assert jobs["go"]["result"] is None  # it returned None


def test_results_are_reprs_of_at_most_200_characters(kernel: aliquot.Kernel) -> None:
    jobs = by_method(kernel.apply(Verbose("v")).jobs)
    assert jobs["short"]["result"] == "{'k': 1}"
    long = jobs["long"]["result"]
    assert len(long) == 200
    assert long.startswith("'xxxx")
    assert long.endswith("...")
    assert jobs["nothing"]["result"] is None


def test_job_records_live_in_the_trigger_jobs_space(kernel: aliquot.Kernel) -> None:
    applied = kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d))
    assert trigger_records(kernel) == list(applied.jobs)
    assert kernel.jobs() == list(reversed(applied.jobs))


def test_job_ids_continue_and_kernel_jobs_lists_newest_first(kernel: aliquot.Kernel) -> None:
    first = kernel.apply(Chain("c1", d=1))
    second = kernel.apply(Chain("c2", d=1))
    assert [j["id"] for j in first.jobs] == ["t1", "t2", "t3"]
    assert [j["id"] for j in second.jobs] == ["t4", "t5", "t6"]
    assert first.run != second.run
    listed = kernel.jobs()
    assert [j["id"] for j in listed] == ["t6", "t5", "t4", "t3", "t2", "t1"]
    assert [j["id"] for j in kernel.jobs(limit=2)] == ["t6", "t5"]
    assert {j["kind"] for j in listed} == {"trigger"}


def test_a_job_is_pending_until_it_runs_and_running_while_it_runs(
    kernel: aliquot.Kernel,
) -> None:
    applied = kernel.apply(Observer("obs"))
    assert logged("seen") == [("seen", {"first": "running", "second": "pending"})]
    assert {j["status"] for j in applied.jobs} == {"succeeded"}


# ---------------------------------------------------------------------------
# Executors and concurrency
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", [None, "threads", "threads:4"])
def test_independent_triggers_run_concurrently(
    kernel: aliquot.Kernel, executor: str | None
) -> None:
    SHARED["barrier"] = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    applied = kernel.apply(Pair("p"), executor=executor)
    assert {j["method"]: j["status"] for j in applied.jobs} == {
        "left": "succeeded",
        "right": "succeeded",
    }
    assert kinds().count("left") == 1
    assert kinds().count("right") == 1
    # Both passed the barrier together; setup ran once although both jobs called it.
    assert len(logged("setup")) == 1


def test_custom_event_jobs_run_concurrently_too(kernel: aliquot.Kernel) -> None:
    SHARED["barrier"] = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    kernel.apply(Pair("p"), jobs=False)
    jobs = kernel.trigger(kernel.load(Pair, "p"), "together")
    assert {j["status"] for j in jobs} == {"succeeded"}
    assert {j["event"] for j in jobs} == {"together"}


@pytest.mark.parametrize(
    ("kernel_default", "executor", "expect"),
    [
        ("inline", None, "other thread"),  # an inline kernel runs trigger jobs on threads
        ("inline", "inline", "this thread"),
        ("inline", "threads:2", "other thread"),
        ("threads", None, "other thread"),
        ("inline", "processes:1", "other process"),
        ("processes:1", None, "other process"),
    ],
)
def test_jobs_run_on_the_executor_chosen(
    kernel_default: str, executor: str | None, expect: str
) -> None:
    with make_kernel(executor=kernel_default) as kernel:
        applied = kernel.apply(Where("w"), executor=executor)
    (job,) = applied.jobs
    assert job["status"] == "succeeded", job["error"]
    pid, thread = ast.literal_eval(job["result"])  # a repr of two ints
    where = (
        "other process"
        if pid != os.getpid()
        else ("this thread" if thread == threading.get_ident() else "other thread")
    )
    assert where == expect


@pytest.mark.parametrize(("executor", "elsewhere"), [("threads", False), ("processes:1", True)])
def test_under_processes_a_job_runs_setup_on_its_copy_and_changes_stay_there(
    kernel: aliquot.Kernel, executor: str, elsewhere: bool
) -> None:
    component = Remote("r")
    applied = kernel.apply(component, executor=executor)
    (job,) = applied.jobs
    assert job["status"] == "succeeded", job["error"]
    made_in, ran_in = ast.literal_eval(job["result"])  # a repr of two ints
    assert (ran_in != os.getpid()) is elsewhere
    assert made_in == ran_in  # setup ran where the job ran (on_create's stayed here)
    assert component.made_in == os.getpid()
    assert hasattr(component, "touched") is not elsewhere


def test_inline_runs_jobs_one_after_the_other_in_order(kernel: aliquot.Kernel) -> None:
    kernel.apply(Chain("c", d=1), executor="inline")
    assert kinds() == ["start", "go", "last"]


# ---------------------------------------------------------------------------
# Skipped and failed jobs
# ---------------------------------------------------------------------------


def test_a_trigger_whose_required_field_is_none_is_skipped_with_its_dependants(
    kernel: aliquot.Kernel,
) -> None:
    applied = kernel.apply(Chain("c", d=None))
    jobs = by_method(applied.jobs)
    assert jobs["start"]["status"] == "succeeded"
    assert jobs["go"]["status"] == "skipped"
    assert "'d'" in jobs["go"]["reason"]
    assert "None" in jobs["go"]["reason"]
    assert jobs["last"]["status"] == "skipped"
    assert "'go'" in jobs["last"]["reason"]
    for name in ("go", "last"):
        assert jobs[name]["started"] is None
        assert jobs[name]["duration"] is None
        assert jobs[name]["run"] is None
        assert jobs[name]["finished"] == jobs[name]["created"]
    assert kinds() == ["start"]
    assert applied.ok


def test_when_every_trigger_is_skipped_nothing_runs(kernel: aliquot.Kernel) -> None:
    class OnlyGo(Component):
        d: t.Any = None

        @trigger("apply", requires="d")
        def go(self) -> None:
            log("go")

    applied = kernel.apply(OnlyGo("o"))
    assert [(j["method"], j["status"]) for j in applied.jobs] == [("go", "skipped")]
    assert applied.run is None
    assert LOG == []


def test_a_failing_job_raises_jobs_failed_naming_the_first_failure(
    kernel: aliquot.Kernel,
) -> None:
    with pytest.raises(JobsFailed, match=r"3 of 4 apply job\(s\) failed.*ValueError: boom in a"):
        kernel.apply(Fragile("f"))
    assert aliquot.JobsFailed is JobsFailed


def test_failed_jobs_are_recorded_with_their_errors_and_causes(kernel: aliquot.Kernel) -> None:
    with pytest.raises(JobsFailed) as info:
        kernel.apply(Fragile("f"))
    exc = info.value
    jobs = by_method(exc.jobs)
    assert set(jobs) == {"a", "b", "c", "ind"}
    failed = jobs["a"]
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"] == "boom in a"
    assert 'raise ValueError("boom in a")' in failed["error"]["traceback"]
    assert failed["reason"] == ""
    for name in ("b", "c"):
        assert jobs[name]["status"] == "failed"
        assert jobs[name]["reason"] == f"depends on job {failed['id']} (Fragile:f.a), which failed"
        assert jobs[name]["error"] is None
        assert jobs[name]["started"] is None
    assert jobs["ind"]["status"] == "succeeded"
    assert jobs["ind"]["result"] == "'independent'"
    assert sorted(kinds()) == ["a", "ind"]  # b and c never ran
    assert f"see `aliquot jobs show {failed['id']}`" in str(exc)
    # The stored records say the same.
    assert {r["id"]: r["status"] for r in trigger_records(kernel)} == {
        j["id"]: j["status"] for j in exc.jobs
    }


def test_after_a_failure_the_component_stays_stored_and_the_result_is_there(
    kernel: aliquot.Kernel,
) -> None:
    with pytest.raises(JobsFailed) as info:
        kernel.apply(Fragile("f"))
    result = info.value.result
    assert isinstance(result, Applied)
    assert result.action == "new"
    assert result.component.identifier == "f"
    assert list(result.jobs) == info.value.jobs
    assert not result.ok
    assert kernel.show("Fragile") == ["f"]
    assert kernel.load(Fragile, "f").version == 0


def test_after_a_failure_the_result_names_the_run(kernel: aliquot.Kernel) -> None:
    with pytest.raises(JobsFailed) as info:
        kernel.apply(Fragile("f"))
    runs = {j["run"] for j in info.value.jobs}
    assert len(runs) == 1
    assert info.value.result.run == runs.pop()


def test_a_failing_child_fails_the_jobs_of_its_parent(kernel: aliquot.Kernel) -> None:
    with pytest.raises(JobsFailed) as info:
        kernel.apply(Holder("h", child=BadChild("bc")))
    jobs = {j["target"]: j for j in info.value.jobs}
    child = jobs["BadChild:bc.explode"]
    assert child["status"] == "failed"
    assert child["error"]["message"] == "child exploded"
    parent = jobs["Holder:h.after_child"]
    assert parent["status"] == "failed"
    assert parent["reason"] == f"depends on job {child['id']} (BadChild:bc.explode), which failed"
    assert "holder ran" not in [i[0] for i in LOG]
    assert kernel.show() == ["BadChild", "Holder"]


def test_after_fixing_the_cause_trigger_apply_runs_the_jobs_again(
    kernel: aliquot.Kernel,
) -> None:
    SHARED["fail"] = True
    component = Flaky("f")
    with pytest.raises(JobsFailed):
        kernel.apply(component)
    assert kinds() == ["first"]
    SHARED["fail"] = False
    jobs = kernel.trigger(component, "apply")
    assert [(j["method"], j["status"]) for j in jobs] == [
        ("first", "succeeded"),
        ("then", "succeeded"),
    ]
    assert kinds() == ["first", "first", "then"]
    assert jobs[1]["depends_on"] == [jobs[0]["id"]]
    statuses = [r["status"] for r in kernel.jobs()]
    assert statuses == ["succeeded", "succeeded", "failed", "failed"]


def test_an_unknown_executor_leaves_no_job_pending(kernel: aliquot.Kernel) -> None:
    with pytest.raises(aliquot.AliquotError, match="bogus"):
        kernel.apply(Where("w"), executor="bogus")
    assert LOG == []
    assert [r for r in kernel.jobs() if r["status"] in ("pending", "running")] == []


# ---------------------------------------------------------------------------
# Nested components
# ---------------------------------------------------------------------------


def test_children_jobs_finish_before_any_job_of_the_parent(kernel: aliquot.Kernel) -> None:
    applied = kernel.apply(Tree("t", left=Leaf("l1"), right=Leaf("l2", n=1)))
    assert [c.identifier for c in applied.components] == ["l1", "l2", "t"]
    jobs = {j["target"]: j for j in applied.jobs}
    leaf_ids = {jobs["Leaf:l1.grow"]["id"], jobs["Leaf:l2.grow"]["id"]}
    for name in ("one", "two"):
        assert set(jobs[f"Tree:t.{name}"]["depends_on"]) == leaf_ids
    assert jobs["Leaf:l1.grow"]["depends_on"] == []
    # What ran, in order: both leaves ended before the first tree job began.
    first_tree = kinds().index("tree")
    assert kinds()[:first_tree].count("leaf:end") == 2
    assert kinds().count("tree") == 2
    assert {j["status"] for j in applied.jobs} == {"succeeded"}
    assert {j["run"] for j in applied.jobs} == {applied.run}  # one run for the batch


def test_a_grandchild_finishes_before_the_parent_even_through_a_child_without_jobs(
    kernel: aliquot.Kernel,
) -> None:
    applied = kernel.apply(Top("top", middle=Middle("m", leaf=Leaf("g"))))
    jobs = {j["target"]: j for j in applied.jobs}
    assert set(jobs) == {"Leaf:g.grow", "Top:top.top"}
    assert jobs["Leaf:g.grow"]["id"] in jobs["Top:top.top"]["depends_on"]


def test_on_create_runs_for_children_before_parents_and_before_any_trigger(
    kernel: aliquot.Kernel,
) -> None:
    kernel.apply(Tree("t", left=Leaf("l1"), right=Leaf("l2")))
    creates = [i for i, item in enumerate(LOG) if item[0] == "on_create"]
    assert [LOG[i][1] for i in creates] == ["l1", "l2", "t"]
    assert max(creates) < kinds().index("leaf:start")


def test_trigger_runs_only_the_component_s_own_triggers_not_its_children_s(
    kernel: aliquot.Kernel,
) -> None:
    tree = Tree("t", left=Leaf("l1"))
    kernel.apply(tree)
    LOG.clear()
    jobs = kernel.trigger(tree, "apply")
    assert {j["target"] for j in jobs} == {"Tree:t.one", "Tree:t.two"}
    assert all(j["depends_on"] == [] for j in jobs)
    assert "leaf:start" not in kinds()


def test_a_stored_child_applied_again_runs_no_jobs(kernel: aliquot.Kernel) -> None:
    kernel.apply(Leaf("l1"))
    LOG.clear()
    applied = kernel.apply(Tree("t", left=Leaf("l1")))
    assert [c.action for c in applied.components] == ["same", "new"]
    assert {j["target"] for j in applied.jobs} == {"Tree:t.one", "Tree:t.two"}
    assert "leaf:start" not in kinds()


# ---------------------------------------------------------------------------
# Update, same and breaking applies
# ---------------------------------------------------------------------------


def test_an_update_reruns_only_the_triggers_that_require_a_changed_field(
    kernel: aliquot.Kernel,
) -> None:
    first = kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d))
    LOG.clear()
    before = len(kernel.jobs())
    update = kernel.apply(Notifier("n1", a=1, b="y", c={}, d=record_d))
    assert update.action == "update"
    assert update.component.changed == ("b",)
    assert update.version == first.version == 0
    assert update.component.uuid == first.component.uuid
    assert [(j["method"], j["status"]) for j in update.jobs] == [("relabel", "succeeded")]
    assert update.jobs[0]["version"] == 0
    assert [i for i in LOG if i[0] != "postinit"] == [("setup", "n1"), ("relabel", "y")]
    assert len(kernel.jobs()) == before + 1


def test_a_same_apply_runs_nothing_and_records_nothing(kernel: aliquot.Kernel) -> None:
    kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d))
    records = trigger_records(kernel)
    LOG.clear()
    same = kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d))
    assert same.action == "same"
    assert same.jobs == ()
    assert same.run is None
    assert trigger_records(kernel) == records
    assert kinds() == ["postinit"]  # constructed; nothing else


def test_a_breaking_apply_makes_a_new_version_and_runs_every_trigger(
    kernel: aliquot.Kernel,
) -> None:
    kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d))
    LOG.clear()
    breaking = kernel.apply(Notifier("n1", a=2, b="x", c={}, d=record_d))
    assert breaking.action == "breaking"
    assert breaking.version == 1
    assert {j["method"] for j in breaking.jobs} == {"start", "go", "relabel"}
    assert {j["version"] for j in breaking.jobs} == {1}
    assert [i[:3] for i in logged("on_create")] == [("on_create", "n1", 1)]
    assert kernel.show("Notifier", "n1") == [0, 1]


def test_an_update_reruns_a_dependant_without_its_dependency(kernel: aliquot.Kernel) -> None:
    kernel.apply(Tuned("tu", a=1, d=1))
    LOG.clear()
    update = kernel.apply(Tuned("tu", a=1, d=2))
    assert update.action == "update"
    assert [(j["method"], j["status"]) for j in update.jobs] == [("go", "succeeded")]
    assert update.jobs[0]["result"] == "2"
    assert LOG == [("go", 2)]


def test_an_update_that_sets_a_required_field_to_none_records_a_skip(
    kernel: aliquot.Kernel,
) -> None:
    kernel.apply(Tuned("tu", a=1, d=1))
    LOG.clear()
    update = kernel.apply(Tuned("tu", a=1, d=None))
    assert update.action == "update"
    assert update.component.changed == ("d",)
    assert [(j["method"], j["status"]) for j in update.jobs] == [("go", "skipped")]
    assert "'d'" in update.jobs[0]["reason"]
    assert update.run is None
    assert LOG == []


# ---------------------------------------------------------------------------
# Lifecycle methods
# ---------------------------------------------------------------------------


def test_lifecycle_order_on_apply(kernel: aliquot.Kernel) -> None:
    component = Notifier("n1", a=1, b="x", c={}, d=record_d)
    assert LOG == [("postinit", "n1")]  # at construction
    kernel.apply(component)
    order = kinds()
    assert order[:3] == ["postinit", "on_create", "setup"]
    # on_create ran after the component was saved, and knew its version.
    assert logged("on_create") == [("on_create", "n1", 0, ["n1"])]
    assert set(order[3:]) == {"start", "go", "d", "relabel"}
    assert order.count("setup") == 1


def test_setup_runs_once_per_instance_even_when_called_again(kernel: aliquot.Kernel) -> None:
    component = Counted("c")
    component.setup()
    component.setup()
    assert logged("setup") == [("setup", "c")]
    other = Counted("c2")
    other.setup()
    assert logged("setup") == [("setup", "c"), ("setup", "c2")]


def test_setup_runs_again_for_a_loaded_instance(kernel: aliquot.Kernel) -> None:
    kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d))
    loaded = kernel.load(Notifier, "n1")
    LOG.clear()
    kernel.trigger(loaded, "apply")
    assert logged("setup") == [("setup", "n1")]
    kernel.trigger(loaded, "apply")
    assert logged("setup") == [("setup", "n1")]


def test_postinit_runs_after_load(kernel: aliquot.Kernel) -> None:
    kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d), jobs=False)
    LOG.clear()
    loaded = kernel.load(Notifier, "n1")
    assert LOG == [("postinit", "n1")]
    assert loaded.d is not None


def test_on_create_runs_for_new_and_breaking_versions_only(kernel: aliquot.Kernel) -> None:
    kernel.apply(Notifier("n1", a=1, b="x", c={}), jobs=False)
    kernel.apply(Notifier("n1", a=1, b="y", c={}), jobs=False)  # update
    kernel.apply(Notifier("n1", a=1, b="y", c={}), jobs=False)  # same
    kernel.apply(Notifier("n1", a=5, b="y", c={}), jobs=False)  # breaking
    assert [i[2] for i in logged("on_create")] == [0, 1]


def test_remove_calls_cleanup(kernel: aliquot.Kernel) -> None:
    component = Notifier("n1", a=1, b="x", c={}, d=record_d)
    kernel.apply(component)
    LOG.clear()
    report = kernel.remove(component)
    assert report["removed"] == [0]
    assert LOG == [("cleanup", "n1")]
    assert kernel.show() == []


def test_a_setup_that_calls_super_setup_runs_both_once() -> None:
    component = DerivedSetup("d")
    done = threading.Event()

    def call() -> None:
        component.setup()
        component.setup()
        done.set()

    threading.Thread(target=call, daemon=True).start()
    assert done.wait(5.0), "setup() never returned (deadlock)"
    assert LOG == [("base setup",), ("derived setup",)]


# ---------------------------------------------------------------------------
# kernel.trigger: custom events
# ---------------------------------------------------------------------------


def test_trigger_runs_a_custom_event_with_keyword_arguments(kernel: aliquot.Kernel) -> None:
    trainer = Trainer("tr", data=[1, 2])
    kernel.apply(trainer)
    LOG.clear()
    jobs = kernel.trigger(trainer, "retrain", lr=0.5, epochs=3, extra="e")
    by = by_method(jobs)
    assert set(by) == {"retrain", "report", "everything", "with_data"}
    assert {j["event"] for j in jobs} == {"retrain"}
    assert {j["status"] for j in jobs} == {"succeeded"}
    assert by["retrain"]["result"] == repr("lr=0.5 epochs=3")
    assert by["report"]["result"] == repr("reported")  # takes none: got none
    assert by["everything"]["result"] == repr(["epochs", "extra", "lr"])  # **kwargs: all
    assert by["everything"]["depends_on"] == [by["retrain"]["id"]]
    assert "build" not in kinds()  # only the event's triggers
    assert kinds().index("retrain") < kinds().index("everything")
    assert kernel.jobs()[: len(jobs)] == list(reversed(jobs))


def test_trigger_accepts_type_and_identifier_and_skips_what_requires_none(
    kernel: aliquot.Kernel,
) -> None:
    kernel.apply(Trainer("tr"))  # data=None
    jobs = by_method(kernel.trigger("Trainer:tr", "retrain"))
    assert jobs["with_data"]["status"] == "skipped"
    assert "'data'" in jobs["with_data"]["reason"]
    assert jobs["retrain"]["status"] == "succeeded"
    assert jobs["retrain"]["result"] == repr("lr=None epochs=1")


def test_trigger_on_a_loaded_component_and_on_another_executor(kernel: aliquot.Kernel) -> None:
    kernel.apply(Pair("p"), jobs=False)
    loaded = kernel.load(Pair, "p")
    SHARED["barrier"] = threading.Barrier(1)  # one party: no waiting in the inline run
    jobs = kernel.trigger(loaded, "together", executor="inline")
    assert {ast.literal_eval(j["result"]) for j in jobs} == {threading.get_ident()}


def test_trigger_keyword_arguments_reach_jobs_in_other_processes(kernel: aliquot.Kernel) -> None:
    trainer = Trainer("tr", data=[1])
    kernel.apply(trainer, jobs=False)
    jobs = by_method(kernel.trigger(trainer, "retrain", executor="processes:1", lr=0.25))
    assert {j["status"] for j in jobs.values()} == {"succeeded"}
    assert jobs["retrain"]["result"] == repr("lr=0.25 epochs=1")
    assert jobs["everything"]["result"] == repr(["lr"])
    assert LOG == []  # they ran elsewhere


def test_trigger_raises_jobs_failed_when_a_job_fails(kernel: aliquot.Kernel) -> None:
    trainer = Trainer("tr")
    kernel.apply(trainer)
    with pytest.raises(JobsFailed, match="KeyError") as info:
        kernel.trigger(trainer, "explode")
    (job,) = info.value.jobs
    assert job["status"] == "failed"
    assert job["event"] == "explode"
    assert job["error"]["type"] == "KeyError"
    assert kernel.jobs()[0]["status"] == "failed"


def test_trigger_refuses_an_unknown_event_naming_the_known_ones(kernel: aliquot.Kernel) -> None:
    trainer = Trainer("tr")
    kernel.apply(trainer)
    with pytest.raises(TriggerError, match="no trigger for event 'nope'") as info:
        kernel.trigger(trainer, "nope")
    assert "apply, explode, retrain" in str(info.value)


def test_trigger_refuses_a_component_that_is_not_stored(kernel: aliquot.Kernel) -> None:
    before = trigger_records(kernel)
    with pytest.raises(aliquot.AliquotError, match=r"Trainer:new.*apply\(\) it first"):
        kernel.trigger(Trainer("new"), "retrain")
    assert trigger_records(kernel) == before
    assert LOG == []


def test_trigger_refuses_a_removed_component(kernel: aliquot.Kernel) -> None:
    trainer = Trainer("tr")
    kernel.apply(trainer)
    kernel.remove(trainer)
    with pytest.raises(aliquot.AliquotError, match="apply"):
        kernel.trigger(trainer, "retrain")


def test_trigger_refuses_a_stale_object(kernel: aliquot.Kernel) -> None:
    old = Trainer("tr", lr=0.1)
    kernel.apply(old)
    kernel.apply(Trainer("tr", lr=0.2))  # breaking: version 1
    LOG.clear()
    with pytest.raises(aliquot.AliquotError, match=r"version 0.*latest is version 1"):
        kernel.trigger(old, "retrain")
    assert LOG == []
    assert kernel.trigger(kernel.load(Trainer, "tr"), "retrain")[0]["version"] == 1


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("Trainer", "'Type:identifier'"),
        ("Trainer:missing", "no stored component Trainer:missing"),
        (42, "takes a component"),
    ],
)
def test_trigger_refuses_what_is_not_a_stored_component(
    kernel: aliquot.Kernel, target: Any, error: str
) -> None:
    kernel.apply(Trainer("tr"))
    with pytest.raises(aliquot.AliquotError, match=re.escape(error)):
        kernel.trigger(target, "retrain")


# ---------------------------------------------------------------------------
# The triggers plugin blocked
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Notifier("n1", a=1, b="x", c={}, d=record_d),
        lambda: Parented("p", child=Leaf("l")),  # only the child has triggers
    ],
    ids=["own-triggers", "child-triggers"],
)
def test_with_triggers_blocked_apply_refuses_before_writing_anything(make: Any) -> None:
    with make_kernel(block=["triggers"]) as kernel:
        component = make()
        with pytest.raises(aliquot.PluginNotActiveError, match="'triggers'"):
            kernel.apply(component)
        assert kernel.show() == []
        assert list(kernel.store.scan("components")) == []
        assert list(kernel.store.scan("component_blobs")) == []
        assert component.version is None
        assert "on_create" not in kinds()


def test_with_triggers_blocked_apply_without_jobs_stores_it() -> None:
    with make_kernel(block=["triggers"]) as kernel:
        applied = kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d), jobs=False)
        assert applied.action == "new"
        assert applied.jobs == ()
        assert kernel.show("Notifier") == ["n1"]
        assert kernel.jobs() == []
        assert "start" not in kinds()
        assert kernel.apply(Plain("p")).action == "new"  # no triggers: nothing to refuse
        with pytest.raises(AttributeError, match="trigger"):
            kernel.trigger  # noqa: B018 -- the triggers plugin provides it


def test_jobs_cannot_start_inside_trio(kernel: aliquot.Kernel) -> None:
    import trio

    stored = Trainer("stored")
    kernel.apply(stored, jobs=False)

    async def main() -> None:
        with pytest.raises(TriggerError, match="inside trio"):
            kernel.apply(Trainer("tr"))
        with pytest.raises(TriggerError, match="inside trio"):
            kernel.trigger(stored, "retrain")
        kernel.apply(Trainer("quiet"), jobs=False)  # storing alone is fine

    trio.run(main)
    assert kernel.show("Trainer") == ["quiet", "stored"]
    assert trigger_records(kernel) == []
    assert LOG == []


def test_apply_without_jobs_records_nothing(kernel: aliquot.Kernel) -> None:
    applied = kernel.apply(Notifier("n1", a=1, b="x", c={}, d=record_d), jobs=False)
    assert applied.jobs == ()
    assert applied.run is None
    assert trigger_records(kernel) == []
    assert {"start", "go", "setup"}.isdisjoint(kinds())
    assert kinds() == ["postinit", "on_create"]


# ---------------------------------------------------------------------------
# @trigger declarations are checked when the class is defined
# ---------------------------------------------------------------------------


def test_triggers_are_inherited_and_overriding_with_a_plain_method_drops_one(
    kernel: aliquot.Kernel,
) -> None:
    assert set(Derived.triggers) == {"base", "derived"}
    applied = kernel.apply(Derived("d"))
    jobs = by_method(applied.jobs)
    assert set(jobs) == {"base", "derived"}
    assert jobs["derived"]["depends_on"] == [jobs["base"]["id"]]
    assert "dropped" not in kinds()
    assert "dropped (plain)" not in kinds()


def _define(body: str) -> None:
    namespace: dict[str, Any] = {"Component": Component, "trigger": trigger, "t": t}
    exec(body, namespace)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "@trigger\ndef f(self): pass",
            "needs at least one event name",
        ),
        (
            "@trigger()\ndef f(self): pass",
            "needs at least one event name",
        ),
        (
            "@trigger('Apply!')\ndef f(self): pass",
            "invalid event",
        ),
        (
            "class C(Component):\n    @trigger('apply', depends_on='nope')\n    def f(self): pass",
            "depends_on names 'nope'",
        ),
        (
            "class C(Component):\n    @trigger('apply', depends_on='f')\n    def f(self): pass",
            "cannot depend on itself",
        ),
        (
            "class C(Component):\n"
            "    x: int = 0\n"
            "    @trigger('apply', requires='y')\n"
            "    def f(self): pass",
            "requires names 'y', which is not a field",
        ),
        (
            "class C(Component):\n"
            "    @trigger('retrain')\n"
            "    def g(self): pass\n"
            "    @trigger('apply', depends_on='g')\n"
            "    def f(self): pass",
            "does not run on event 'apply'",
        ),
        (
            "class C(Component):\n"
            "    @trigger('apply', depends_on='g')\n"
            "    def f(self): pass\n"
            "    @trigger('apply', depends_on='f')\n"
            "    def g(self): pass",
            "cycle",
        ),
    ],
)
def test_bad_trigger_declarations_fail_when_the_class_is_defined(body: str, error: str) -> None:
    with pytest.raises(TriggerDefinitionError, match=re.escape(error)):
        _define(body)


# ---------------------------------------------------------------------------
# kernel.jobs lists trigger jobs with operator jobs
# ---------------------------------------------------------------------------

OPS = """
from aliquot import operator


@operator()
def add_one(x: int) -> int:
    return x + 1
"""


def test_kernel_jobs_lists_operator_and_trigger_jobs_newest_first(
    tmp_path: Path, sys_path: Callable[[Path], None]
) -> None:
    script = tmp_path / "trigger_ops.py"
    script.write_text(OPS)
    ops = aliquot.load_target(str(script))
    with make_kernel(store=str(tmp_path / "store")) as kernel:
        SHARED["kernel"] = kernel
        before = kernel.apply(Chain("c1", d=None))  # t1 (start), t2 and t3 skipped
        job = ops.add_one.deploy(kind="job", inputs={"x": 1}, kernel=kernel)
        assert job.result(timeout=60) == 2
        after = kernel.apply(Leaf("l"))  # t4
        listed = kernel.jobs()
        assert [(r["kind"], str(r["id"])) for r in listed] == [
            ("trigger", after.jobs[0]["id"]),
            ("operator", str(job.id)),
            *[("trigger", j["id"]) for j in reversed(before.jobs)],
        ]
        assert [str(r["id"]) for r in kernel.jobs(limit=2)] == ["t4", str(job.id)]
