"""Regression tests: one per Superduper defect (reference §1), which aliquot must not repeat.

Each test's docstring names the Superduper defect it guards against.
"""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aliquot
from aliquot import Component, trigger
from aliquot_builtins.components import ComponentInUseError
from aliquot_builtins.triggers import JobsFailed, TriggerDefinitionError

#: What trigger methods and lifecycle methods did, in order.
LOG: list[str] = []
_LOG_LOCK = threading.Lock()


def _log(entry: str) -> None:
    with _LOG_LOCK:
        LOG.append(entry)


def deliver(**kwargs: Any) -> None:
    _log(f"deliver {sorted(kwargs.items())}")


class Notifier(Component):
    """The custom-component example of Superduper's docs, with the dependency it meant."""

    a: int
    b: str
    c: t.Dict  # noqa: UP006 -- spelled as in Superduper's docs
    d: t.Callable | None = None

    @trigger("apply")
    def start(self) -> None:
        _log(f"start {self.identifier}")

    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> None:
        assert self.d is not None
        self.d(a=self.a, b=self.b, c=self.c)
        _log(f"go {self.identifier}")


class Steps(Component):
    """``step_a`` requires ``child``; ``step_b`` depends on ``step_a`` (the probe of §1.3)."""

    child: t.Any = None
    cfg: dict = {}

    @trigger("apply", requires="child")
    def step_a(self) -> None:
        _log("step_a")

    @trigger("apply", depends_on="step_a")
    def step_b(self) -> None:
        _log("step_b")


class Failing(Component):
    x: int = 0

    @trigger("apply")
    def first(self) -> None:
        _log("first")
        raise ValueError(f"first failed for x={self.x}")

    @trigger("apply", depends_on="first")
    def second(self) -> None:
        _log("second")

    @trigger("apply")
    def independent(self) -> None:
        _log("independent")


class Lifecycle(Component):
    x: int = 0

    def on_create(self) -> None:
        kernel = _KERNEL[0]
        stored = kernel.load(Lifecycle, self.identifier)  # saved before on_create runs
        _log(f"on_create {self.identifier} v{self.version} stored_x={stored.x}")

    def cleanup(self) -> None:
        _log(f"cleanup {self.identifier} v{self.version}")


class Vector(Component):
    data: t.Any = None


class Model(Component):
    weights: t.Any = None


class Listener(Component):
    model: Model | None = None


_KERNEL: list[aliquot.Kernel] = []


@pytest.fixture
def kernel(store_path: Path) -> Iterator[aliquot.Kernel]:
    kernel = aliquot.Kernel.open(str(store_path))
    _KERNEL[:] = [kernel]
    LOG.clear()
    yield kernel
    _KERNEL.clear()
    LOG.clear()
    kernel.close()


def _by_method(jobs: t.Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {j["method"]: j for j in jobs}


def test_a_depends_on_keyword_is_accepted() -> None:
    """Superduper: ``@trigger(..., depends_on=...)`` (the documented keyword) raised
    ``TypeError`` because the code's keyword was ``depends``."""
    assert Notifier.triggers["go"].depends_on == ("start",)
    assert Notifier.triggers["go"].requires == ("d",)
    with pytest.raises(TypeError, match="depends"):
        trigger("apply", depends=("start",))  # type: ignore[call-arg]


def test_a_docs_example_dependency_on_a_missing_trigger_fails_at_definition() -> None:
    """Superduper docs: the example depended on a trigger ``configure`` that did not exist,
    and nothing noticed; here it is an error when the class is defined."""
    with pytest.raises(TriggerDefinitionError, match="depends_on names 'configure'"):

        class Docs(Component):
            @trigger("apply", depends_on="configure", requires="d")
            def go(self) -> None:
                pass

            d: t.Any = None


def test_b_a_dependant_trigger_is_not_dropped(kernel: aliquot.Kernel) -> None:
    """Superduper: ``create_jobs`` silently dropped ``step_b(depends='step_a')`` -- only
    ``[step_a, set_status]`` were created (§1.3 probe)."""
    applied = kernel.apply(Notifier("n1", a=1, b="x", c={"k": 1}, d=deliver))
    jobs = _by_method(applied.jobs)
    assert sorted(jobs) == ["go", "start"]
    assert jobs["start"]["status"] == jobs["go"]["status"] == "succeeded"
    assert jobs["go"]["depends_on"] == [jobs["start"]["id"]]
    assert LOG == ["start n1", "deliver [('a', 1), ('b', 'x'), ('c', {'k': 1})]", "go n1"]
    stored = {j["id"]: j for j in kernel.jobs()}
    assert {stored[j["id"]]["status"] for j in applied.jobs} == {"succeeded"}

    steps = kernel.apply(Steps("s", child=1))
    assert [j["method"] for j in steps.jobs] == ["step_a", "step_b"]
    assert {j["status"] for j in steps.jobs} == {"succeeded"}
    assert LOG[-2:] == ["step_a", "step_b"]


def test_c_remove_calls_cleanup(kernel: aliquot.Kernel) -> None:
    """Superduper: ``cleanup()`` was documented as called on remove, but the framework
    never called it (``Delete.execute`` re-implemented the drops inline)."""
    kernel.apply(Lifecycle("l", x=1))
    kernel.apply(Lifecycle("l", x=2))
    LOG.clear()
    kernel.remove("Lifecycle", "l")
    assert LOG == ["cleanup l v1", "cleanup l v0"]


def test_d_different_arrays_get_different_blob_ids(kernel: aliquot.Kernel) -> None:
    """Superduper: two different 5000-element numpy arrays got one blob id, because the
    hash used the truncated ``str(array)``."""
    a = np.arange(5000, dtype=np.float64)
    b = a.copy()
    b[2500] = 1e9
    assert str(a) == str(b)
    kernel.apply(Vector("a", data=a))
    kernel.apply(Vector("b", data=b))
    ref_a = kernel.show("Vector", "a", 0)["fields"]["data"]["$blob"]
    ref_b = kernel.show("Vector", "b", 0)["fields"]["data"]["$blob"]
    assert ref_a["digest"] != ref_b["digest"]
    assert kernel.store.has_value(ref_a["digest"]) and kernel.store.has_value(ref_b["digest"])
    assert kernel.load(Vector, "b").data[2500] == 1e9
    assert kernel.load(Vector, "a").data[2500] == 2500.0
    # and a change to the array is a new version, not "same"
    changed = a.copy()
    changed[0] = -1
    assert kernel.apply(Vector("a", data=changed)).action == "breaking"


def test_e_on_create_is_called_after_saving(kernel: aliquot.Kernel) -> None:
    """Superduper: ``on_create`` ("called just after saved") was removed, so a component
    relying on it silently never ran it."""
    kernel.apply(Lifecycle("l", x=1))
    assert LOG == ["on_create l v0 stored_x=1"]
    kernel.apply(Lifecycle("l", x=1))  # same: nothing saved, not called
    assert LOG == ["on_create l v0 stored_x=1"]
    kernel.apply(Lifecycle("l", x=5))
    assert LOG == ["on_create l v0 stored_x=1", "on_create l v1 stored_x=5"]


def test_f_changing_a_field_bumps_the_version_by_default(kernel: aliquot.Kernel) -> None:
    """Superduper: with the default ``breaks=()`` the uuid depended only on class and
    identifier, so no change ever made a new version."""
    assert Notifier.non_breaking == ()
    one = kernel.apply(Notifier("n", a=1, b="x", c={}))
    two = kernel.apply(Notifier("n", a=2, b="x", c={}))
    assert one.component.uuid != two.component.uuid
    assert (two.action, two.version, two.component.changed) == ("breaking", 1, ("a",))
    three = kernel.apply(Notifier("n", a=2, b="x", c={"k": 1}))
    assert (three.action, three.version) == ("breaking", 2)
    assert kernel.show("Notifier", "n") == [0, 1, 2]


def test_g_a_used_component_cannot_be_deleted_silently(kernel: aliquot.Kernel) -> None:
    """Superduper #445: a component used by another could be deleted (the versioning
    system was "broken")."""
    kernel.apply(Listener("listen", model=Model("m", weights=np.ones(3))))
    with pytest.raises(ComponentInUseError, match=r"Model:m is used by Listener:listen v0"):
        kernel.remove("Model", "m")
    assert kernel.load(Listener, "listen").model.identifier == "m"
    assert kernel.show("Model", "m") == [0]


def test_h_removing_one_component_keeps_anothers_shared_artifacts(
    kernel: aliquot.Kernel,
) -> None:
    """Superduper #2441: deleting a component deleted another component's artifacts."""
    weights = np.random.default_rng(7).normal(size=256)
    kernel.apply(Model("m1", weights=weights))
    kernel.apply(Model("m2", weights=weights.copy()))
    digest = kernel.show("Model", "m1", 0)["fields"]["weights"]["$blob"]["digest"]
    assert kernel.show("Model", "m2", 0)["fields"]["weights"]["$blob"]["digest"] == digest
    kernel.remove("Model", "m1")
    assert kernel.store.has_value(digest)
    assert np.array_equal(kernel.load(Model, "m2").weights, weights)
    kernel.remove("Model", "m2")
    assert not kernel.store.has_value(digest)


def test_i_a_failed_job_is_recorded_failed_not_running(kernel: aliquot.Kernel) -> None:
    """Superduper #1714: failed jobs stayed "running" forever; errors did not propagate."""
    with pytest.raises(JobsFailed, match=r"first failed for x=3") as info:
        kernel.apply(Failing("f", x=3))
    jobs = _by_method(info.value.jobs)
    assert jobs["first"]["status"] == "failed"
    assert jobs["first"]["error"]["type"] == "ValueError"
    assert "first failed for x=3" in jobs["first"]["error"]["message"]
    assert jobs["second"]["status"] == "failed"
    assert jobs["second"]["reason"].startswith(f"depends on job {jobs['first']['id']} ")
    assert jobs["independent"]["status"] == "succeeded"
    assert "second" not in LOG and "first" in LOG and "independent" in LOG
    stored = {j["method"]: j for j in kernel.jobs()}
    assert {m: j["status"] for m, j in stored.items()} == {
        "first": "failed",
        "second": "failed",
        "independent": "succeeded",
    }
    assert all(j["finished"] is not None for j in stored.values())
    # the component itself was saved; the result says what happened
    result = info.value.result
    assert result is not None and not result.ok
    assert result.component.action == "new"
    assert kernel.load(Failing, "f").x == 3


def test_j_a_dependant_of_a_skipped_trigger_is_skipped(kernel: aliquot.Kernel) -> None:
    """Superduper: when a ``depends`` target was filtered out by ``requires``, the
    dependency was ignored and the dependant still ran."""
    applied = kernel.apply(Steps("s", child=None))
    jobs = _by_method(applied.jobs)
    assert jobs["step_a"]["status"] == "skipped"
    assert jobs["step_a"]["reason"] == "requires 'child', which is None"
    assert jobs["step_b"]["status"] == "skipped"
    assert jobs["step_b"]["reason"] == "depends on 'step_a', which was skipped"
    assert LOG == []
    assert applied.ok
    notifier = kernel.apply(Notifier("n", a=1, b="x", c={}, d=None))
    assert {j["method"]: j["status"] for j in notifier.jobs} == {
        "start": "succeeded",
        "go": "skipped",
    }
    assert LOG == ["start n"]


def test_k_an_update_reruns_only_triggers_requiring_a_changed_field(
    kernel: aliquot.Kernel,
) -> None:
    """Superduper §1.3: on an update only triggers whose ``requires`` intersect the diff
    re-run (kept on purpose); a ``cfg`` change re-ran nothing of the component."""

    class Tuned(Component):
        child: t.Any = None
        cfg: dict = {}
        non_breaking = ("child", "cfg")

        @trigger("apply", requires="child")
        def step_a(self) -> None:
            _log("step_a")

        @trigger("apply", depends_on="step_a")
        def step_b(self) -> None:
            _log("step_b")

    kernel.apply(Tuned("t", child=1, cfg={"lr": 1}))
    LOG.clear()
    cfg_change = kernel.apply(Tuned("t", child=1, cfg={"lr": 2}))
    assert (cfg_change.action, cfg_change.jobs) == ("update", ())
    assert LOG == []
    child_change = kernel.apply(Tuned("t", child=2, cfg={"lr": 2}))
    assert child_change.action == "update"
    assert [j["method"] for j in child_change.jobs] == ["step_a"]
    assert LOG == ["step_a"]
