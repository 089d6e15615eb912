"""The seed's example component, run as written: its lifecycle happens in the documented order.

``MyComponent`` is the seed's class (``/work/shared/seeds/superduper-component.txt``) with
two changes only: ``slack`` is a module-level fake whose client records every call, and
``postinit`` records that it ran and skips its signature check when ``d`` is ``None``
(the seed's ``inspect.signature(None)`` would raise ``TypeError`` for the optional field).
"""

from __future__ import annotations

import inspect
import itertools
import os
import typing as t
from collections.abc import Iterator
from typing import Any

import pytest

import aliquot
from aliquot import Component, trigger
from aliquot.testing import make_kernel

#: Everything the component, its client and ``d`` did, in order.
calls: list[tuple[Any, ...]] = []
#: The kernel under test, for the client to look at the store while it is called.
STATE: dict[str, Any] = {}
TOKEN = "xoxb-test-token"


class FakeClient:
    """Records its calls; ``number`` tells clients apart."""

    numbers = itertools.count(1)

    def __init__(self, token: str) -> None:
        self.token = token
        self.number = next(self.numbers)

    def register(self, identifier: str) -> None:
        kernel = STATE.get("kernel")
        stored = kernel.show("MyComponent") if kernel is not None else None
        calls.append(("register", identifier, self.number, stored))

    def send_message(self, text: str) -> None:
        calls.append(("send_message", text, self.number))

    def teardown(self, identifier: str) -> None:
        calls.append(("teardown", identifier, self.number))


class FakeSlack:
    def connect(self, token: str) -> FakeClient:
        client = FakeClient(token)
        calls.append(("connect", token, client.number))
        return client


slack = FakeSlack()


def notify(a: int, b: str, c: dict[str, Any]) -> None:
    calls.append(("d", a, b, c))


def lacks_c(a: int, b: str) -> None:
    raise AssertionError("never called")


class MyComponent(Component):
    a: int
    b: str
    c: t.Dict  # noqa: UP006 -- as the seed writes it
    d: t.Callable | None = None

    # This is called directly after `MyComponent.__init__`
    def postinit(self) -> None:
        calls.append(("postinit", self.identifier))
        if self.d is not None:
            assert {"a", "b", "c"}.issubset(set(inspect.signature(self.d).parameters.keys()))

    # This is called before any `@trigger` if not already called
    def setup(self) -> None:
        self.client = slack.connect(os.environ["SLACK_TOKEN"])

    # This is called just after `MyComponent` is saved to the `db.databackend`.
    def on_create(self) -> None:
        self.setup()
        self.client.register(self.identifier)

    # This is called when `MyComponent` is removed using `db.remove`
    def cleanup(self) -> None:
        self.client.teardown(self.identifier)

    # Methods with @trigger run as jobs
    @trigger("apply")
    def start(self) -> None:
        self.client.send_message(f"initializing {self.huuid}")

    # An order of execution can be set with `depends_on`
    # The job can depend on optional parameter being specified with `requires`
    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> None:
        assert self.d is not None
        self.d(a=self.a, b=self.b, c=self.c)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SLACK_TOKEN", TOKEN)
    calls.clear()
    STATE.clear()
    yield
    calls.clear()
    STATE.clear()


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    STATE["kernel"] = k
    yield k
    k.close()


def names() -> list[str]:
    return [e[0] for e in calls]


def by_method(jobs: Any) -> dict[str, dict[str, Any]]:
    return {j["method"]: j for j in jobs}


def test_postinit_runs_at_construction() -> None:
    MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify)
    assert calls == [("postinit", "n1")]


def test_postinit_refuses_a_d_that_does_not_take_a_b_c(kernel: aliquot.Kernel) -> None:
    with pytest.raises(AssertionError):
        MyComponent("n1", a=1, b="x", c={}, d=lacks_c)
    assert kernel.show() == []


def test_apply_runs_the_lifecycle_in_the_documented_order(kernel: aliquot.Kernel) -> None:
    component = MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify)
    applied = kernel.apply(component)
    huuid = applied.component.huuid
    assert huuid == component.huuid
    client = component.client.number
    assert calls == [
        ("postinit", "n1"),  # construction
        ("connect", TOKEN, client),  # on_create -> setup
        ("register", "n1", client, ["n1"]),  # on_create, after the save
        ("send_message", f"initializing {huuid}", client),  # trigger `start`
        ("d", 1, "x", {"k": 1}),  # trigger `go`, after `start`
    ]
    jobs = by_method(applied.jobs)
    assert [j["method"] for j in applied.jobs] == ["start", "go"]
    assert jobs["start"]["status"] == jobs["go"]["status"] == "succeeded"
    assert jobs["go"]["depends_on"] == [jobs["start"]["id"]]
    assert jobs["start"]["component"] == huuid


def test_setup_runs_exactly_once_per_instance(kernel: aliquot.Kernel) -> None:
    component = MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify)
    kernel.apply(component)  # on_create and both jobs call setup
    kernel.trigger(component, "apply")  # and again
    component.setup()
    assert names().count("connect") == 1
    assert names().count("send_message") == 2
    assert {e[2] for e in calls if e[0] == "send_message"} == {component.client.number}


def test_with_d_none_go_is_skipped_and_start_still_runs(kernel: aliquot.Kernel) -> None:
    component = MyComponent("n2", a=1, b="x", c={})
    applied = kernel.apply(component)
    jobs = by_method(applied.jobs)
    assert jobs["start"]["status"] == "succeeded"
    assert jobs["go"]["status"] == "skipped"
    assert jobs["go"]["reason"] == "requires 'd', which is None"
    assert names() == ["postinit", "connect", "register", "send_message"]
    assert applied.ok


def test_removing_calls_cleanup_which_tears_down_the_client(kernel: aliquot.Kernel) -> None:
    component = MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify)
    kernel.apply(component)
    calls.clear()
    report = kernel.remove(component)
    assert report["removed"] == [0]
    assert report["cleanup_errors"] == []
    assert calls == [("teardown", "n1", component.client.number)]
    assert kernel.show() == []


def test_applying_it_again_runs_nothing(kernel: aliquot.Kernel) -> None:
    kernel.apply(MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify))
    calls.clear()
    again = kernel.apply(MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify))
    assert again.action == "same"
    assert again.jobs == ()
    assert calls == [("postinit", "n1")]


def test_a_loaded_instance_runs_postinit_and_its_own_setup(kernel: aliquot.Kernel) -> None:
    kernel.apply(MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify))
    calls.clear()
    loaded = kernel.load(MyComponent, "n1")
    assert calls == [("postinit", "n1")]
    jobs = kernel.trigger(loaded, "apply")
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert names() == ["postinit", "connect", "send_message", "d"]  # no on_create on load


def test_removing_by_name_decodes_it_and_the_seed_cleanup_needs_its_client(
    kernel: aliquot.Kernel,
) -> None:
    """The seed's cleanup uses ``self.client`` without calling setup: on a freshly decoded
    object it fails, so nothing is removed unless forced (then the error is reported)."""
    kernel.apply(MyComponent("n1", a=1, b="x", c={"k": 1}, d=notify))
    with pytest.raises(aliquot.AliquotError, match=r"cleanup failed.*nothing was removed"):
        kernel.remove("MyComponent", "n1")
    assert kernel.show("MyComponent") == ["n1"]
    report = kernel.remove("MyComponent", "n1", force=True)
    assert report["removed"] == [0]
    assert len(report["cleanup_errors"]) == 1
    assert "AttributeError" in report["cleanup_errors"][0]
    assert kernel.show() == []
