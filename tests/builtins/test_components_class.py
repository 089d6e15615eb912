"""``Component`` subclasses: fields, identifiers, class-definition checks, ``@trigger`` checks,
``setup`` run once.
"""

from __future__ import annotations

import pickle
import threading
import time
import typing as t
from typing import Any, ClassVar

import attrs
import pytest

import aliquot
from aliquot import Component, trigger
from aliquot_builtins.components import (
    ComponentDefinitionError,
    ComponentError,
    ComponentInUseError,
    ComponentNotFoundError,
)
from aliquot_builtins.components._component import RESERVED
from aliquot_builtins.triggers import JobsFailed, TriggerDefinitionError, TriggerError


class Notifier(Component):
    """The example of the issue."""

    a: int
    b: str
    c: dict
    d: t.Callable | None = None

    @trigger("apply")
    def start(self) -> None:
        pass

    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> None:
        assert self.d is not None
        self.d(a=self.a, b=self.b, c=self.c)


class Defaults(Component):
    x: int
    items: list = []
    table: dict = {"k": [1]}
    tags: set = {"a"}
    label: str = "none"


class Extended(Defaults):
    y: int = 7
    z: str


# ---------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------


def test_identifier_is_positional_and_other_fields_keyword_only() -> None:
    n = Notifier("n1", a=1, b="x", c={"k": 1})
    assert (n.identifier, n.a, n.b, n.c, n.d) == ("n1", 1, "x", {"k": 1}, None)
    assert Notifier.fields == ("a", "b", "c", "d")
    assert [f.name for f in attrs.fields(Notifier)] == ["identifier", "a", "b", "c", "d"]
    assert all(f.kw_only for f in attrs.fields(Notifier) if f.name != "identifier")
    with pytest.raises(TypeError, match="positional"):
        Notifier("n1", 1, "x", {})  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'b'"):
        Notifier("n1", a=1, c={})  # type: ignore[call-arg]


def test_subclass_fields_follow_the_base_fields_and_may_be_required_after_defaults() -> None:
    assert Extended.fields == ("x", "items", "table", "tags", "label", "y", "z")
    e = Extended("e", x=1, z="zed")
    assert (e.y, e.z, e.label) == (7, "zed", "none")
    assert isinstance(e, Defaults)
    with pytest.raises(TypeError, match="'z'"):
        Extended("e", x=1)  # type: ignore[call-arg]


def test_mutable_defaults_are_per_instance_copies() -> None:
    one, two = Defaults("one", x=1), Defaults("two", x=2)
    one.items.append(1)
    one.table["k"].append(2)
    one.tags.add("b")
    assert two.items == [] and two.table == {"k": [1]} and two.tags == {"a"}
    assert Defaults("three", x=3).table == {"k": [1]}  # the declared default is intact
    assert one.items is not two.items and one.table is not two.table


def test_classvar_mutable_default_stays_a_class_attribute() -> None:
    class WithRegistry(Component):
        registry: ClassVar[dict[str, int]] = {"a": 1}
        x: int = 0

    assert WithRegistry.fields == ("x",)
    assert WithRegistry.registry == {"a": 1}


def test_equality_compares_type_identifier_and_fields() -> None:
    base = Notifier("n1", a=1, b="x", c={"k": [1, 2]})
    assert base == Notifier("n1", a=1, b="x", c={"k": [1, 2]})
    assert base != Notifier("n2", a=1, b="x", c={"k": [1, 2]})
    assert base != Notifier("n1", a=1, b="x", c={"k": [1, 3]})
    assert base != Notifier("n1", a=True, b="x", c={"k": [1, 2]})  # True is not 1 here
    assert base != Defaults("n1", x=1)
    with pytest.raises(TypeError, match="unhashable"):
        hash(base)


# ---------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ident",
    ["a", "A.b-c_9", "_private", "9lives", "x" * 100],
)
def test_valid_identifiers(ident: str) -> None:
    assert Defaults(ident, x=1).identifier == ident


@pytest.mark.parametrize(
    "ident",
    ["", "a b", "x" * 101, ".hidden", "-dash", "a/b", "a:b", "é", "a\0b", 5, None],
)
def test_invalid_identifiers_are_refused(ident: Any) -> None:
    with pytest.raises(ComponentError, match=r"Defaults: invalid identifier") as info:
        Defaults(ident, x=1)
    assert repr(ident) in str(info.value)


def test_identifier_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ComponentError, match="invalid identifier"):
        Defaults("a\n", x=1)


# ---------------------------------------------------------------------------
# Class-definition checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_reserved_field_names_are_refused_at_class_definition(name: str) -> None:
    with pytest.raises(ComponentDefinitionError, match=f"may not be called '{name}'"):
        type(f"Bad_{name}", (Component,), {"__annotations__": {name: int}})


def test_reserved_names_cover_the_component_api() -> None:
    assert {
        "version",
        "uuid",
        "huuid",
        "setup",
        "postinit",
        "on_create",
        "cleanup",
        "encode",
        "decode",
        "triggers",
        "fields",
        "non_breaking",
    } <= RESERVED


def test_underscore_field_names_are_refused() -> None:
    with pytest.raises(ComponentDefinitionError, match="may not be called '_cache'"):

        class Bad(Component):
            _cache: dict


def test_redeclaring_identifier_is_refused() -> None:
    with pytest.raises(ComponentDefinitionError, match="'identifier' is the first field"):

        class Bad(Component):
            identifier: str
            x: int


def test_decorating_with_attrs_is_refused() -> None:
    with pytest.raises(ComponentDefinitionError, match="do not decorate a Component"):

        @attrs.define
        class Bad(Component):
            x: int = 0


def test_non_breaking_naming_an_unknown_field_is_refused() -> None:
    with pytest.raises(
        ComponentDefinitionError, match=r"non_breaking names 'nope', which is not a field"
    ):

        class Bad(Component):
            x: int = 0
            non_breaking = ("nope",)


def test_non_breaking_accepts_a_single_name_and_inherits() -> None:
    class Base(Component):
        x: int = 0
        note: str = ""
        non_breaking = "note"

    class Sub(Base):
        more: int = 0

    assert Base.non_breaking == ("note",)
    assert Sub.non_breaking == ("note",)
    assert Component.non_breaking == ()


def test_non_breaking_may_be_annotated_as_classvar() -> None:
    class Annotated(Component):
        x: int = 0
        note: str = ""
        non_breaking: ClassVar = ("note",)

    assert Annotated.non_breaking == ("note",)
    assert Annotated.fields == ("x", "note")


# ---------------------------------------------------------------------------
# @trigger declarations
# ---------------------------------------------------------------------------


def test_triggers_are_collected_with_their_declarations() -> None:
    assert sorted(Notifier.triggers) == ["go", "start"]
    go = Notifier.triggers["go"]
    assert (go.events, go.depends_on, go.requires) == (("apply",), ("start",), ("d",))
    assert Notifier.triggers["start"].depends_on == ()


def test_trigger_without_event_is_refused() -> None:
    with pytest.raises(TriggerDefinitionError, match="needs at least one event name"):
        trigger()
    with pytest.raises(TriggerDefinitionError, match="needs at least one event name"):

        class Bad(Component):
            @trigger  # type: ignore[arg-type]
            def run(self) -> None:
                pass


@pytest.mark.parametrize("event", ["Apply", "1st", "", "with space"])
def test_trigger_with_invalid_event_is_refused(event: str) -> None:
    with pytest.raises(TriggerDefinitionError, match="invalid event"):
        trigger(event)


def test_depends_on_unknown_name_is_refused() -> None:
    with pytest.raises(
        TriggerDefinitionError,
        match=r"Bad.go: depends_on names 'configure', which is not a trigger method of \S*Bad "
        r"\(its triggers: go\)",
    ):

        class Bad(Component):
            @trigger("apply", depends_on="configure")
            def go(self) -> None:
                pass


def test_depends_on_a_plain_method_is_refused() -> None:
    with pytest.raises(TriggerDefinitionError, match="'helper', which is not a trigger method"):

        class Bad(Component):
            def helper(self) -> None:
                pass

            @trigger("apply", depends_on="helper")
            def go(self) -> None:
                pass


def test_dependency_on_another_event_is_refused() -> None:
    with pytest.raises(
        TriggerDefinitionError,
        match=r"depends_on 'start', which does not run on event 'retrain' \(it runs on apply\)",
    ):

        class Bad(Component):
            @trigger("apply")
            def start(self) -> None:
                pass

            @trigger("apply", "retrain", depends_on="start")
            def go(self) -> None:
                pass


def test_requires_naming_a_non_field_is_refused() -> None:
    with pytest.raises(
        TriggerDefinitionError,
        match=r"requires names 'model', which is not a field of \S*Bad \(fields: x\)",
    ):

        class Bad(Component):
            x: int = 0

            @trigger("apply", requires="model")
            def go(self) -> None:
                pass


def test_self_dependency_is_refused() -> None:
    with pytest.raises(TriggerDefinitionError, match=r"Bad\.go: a trigger cannot depend on itself"):

        class Bad(Component):
            @trigger("apply", depends_on="go")
            def go(self) -> None:
                pass


def test_two_trigger_cycle_is_named() -> None:
    with pytest.raises(TriggerDefinitionError, match=r"in a cycle: a -> b -> a$"):

        class Bad(Component):
            @trigger("apply", depends_on="b")
            def a(self) -> None:
                pass

            @trigger("apply", depends_on="a")
            def b(self) -> None:
                pass


def test_three_trigger_cycle_is_named() -> None:
    with pytest.raises(TriggerDefinitionError, match=r"in a cycle: a -> c -> b -> a$"):

        class Bad(Component):
            @trigger("apply", depends_on="c")
            def a(self) -> None:
                pass

            @trigger("apply", depends_on="a")
            def b(self) -> None:
                pass

            @trigger("apply", depends_on="b")
            def c(self) -> None:
                pass


def test_bad_names_in_depends_on_or_requires_are_refused() -> None:
    def go(self: Any) -> None:
        pass

    with pytest.raises(TriggerDefinitionError, match="depends_on must be method or field names"):
        trigger("apply", depends_on=["not a name"])(go)
    with pytest.raises(TriggerDefinitionError, match="requires must be method or field names"):
        trigger("apply", requires=[3])(go)  # type: ignore[list-item]


def test_overriding_a_trigger_with_a_plain_method_drops_it() -> None:
    class Base(Component):
        @trigger("apply")
        def go(self) -> None:
            pass

        @trigger("apply")
        def other(self) -> None:
            pass

    class Sub(Base):
        def go(self) -> None:
            pass

    assert sorted(Base.triggers) == ["go", "other"]
    assert sorted(Sub.triggers) == ["other"]


def test_errors_are_aliquot_errors() -> None:
    for error in (
        ComponentError,
        ComponentDefinitionError,
        ComponentInUseError,
        ComponentNotFoundError,
        TriggerDefinitionError,
        TriggerError,
        JobsFailed,
    ):
        assert issubclass(error, aliquot.AliquotError), error
    assert issubclass(ComponentDefinitionError, ComponentError)
    assert issubclass(ComponentInUseError, ComponentError)
    assert issubclass(ComponentNotFoundError, ComponentError)
    assert issubclass(JobsFailed, TriggerError)


# ---------------------------------------------------------------------------
# Lifecycle: postinit, setup once
# ---------------------------------------------------------------------------


class Counted(Component):
    x: int = 0

    def postinit(self) -> None:
        self.__dict__.setdefault("log", []).append(("postinit", self.x))

    def setup(self) -> None:
        log = self.__dict__.setdefault("log", [])
        log.append(("setup", threading.get_ident()))
        time.sleep(0.02)  # widen the window for a second caller


def test_postinit_runs_after_construction_with_fields_set() -> None:
    c = Counted("c", x=5)
    assert c.__dict__["log"] == [("postinit", 5)]


def test_setup_runs_once_when_called_twice() -> None:
    c = Counted("c")
    c.setup()
    c.setup()
    assert [entry[0] for entry in c.__dict__["log"]] == ["postinit", "setup"]


def test_setup_runs_once_when_called_concurrently() -> None:
    c = Counted("c")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            c.setup()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert [entry[0] for entry in c.__dict__["log"]] == ["postinit", "setup"]


def test_setup_is_once_per_instance() -> None:
    one, two = Counted("one"), Counted("two")
    one.setup()
    two.setup()
    two.setup()
    assert [e[0] for e in one.__dict__["log"]] == ["postinit", "setup"]
    assert [e[0] for e in two.__dict__["log"]] == ["postinit", "setup"]


def test_setup_that_fails_runs_again_on_the_next_call() -> None:
    class Flaky(Component):
        def setup(self) -> None:
            calls = self.__dict__.setdefault("calls", [])
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("first time fails")

    f = Flaky("f")
    with pytest.raises(RuntimeError, match="first time fails"):
        f.setup()
    f.setup()
    f.setup()
    assert f.__dict__["calls"] == [1, 1]


def test_subclass_setup_may_call_super_setup() -> None:
    log: list[str] = []

    class Parent(Component):
        def setup(self) -> None:
            log.append("parent")

    class Child(Parent):
        def setup(self) -> None:
            super().setup()
            log.append("child")

    c = Child("c")
    worker = threading.Thread(target=c.setup, daemon=True)  # a deadlock must not hang the suite
    worker.start()
    worker.join(2)
    assert not worker.is_alive(), "setup() deadlocked"
    assert log == ["parent", "child"]


def test_a_pickled_copy_runs_setup_again_and_keeps_fields() -> None:
    c = Counted("c", x=3)
    c.setup()
    c.__dict__["client"] = object()  # what setup made stays behind
    copy = pickle.loads(pickle.dumps(c))
    assert copy == c and copy.x == 3
    assert "client" not in copy.__dict__
    copy.setup()
    assert [e[0] for e in copy.__dict__.get("log", [])] == ["setup"]


def test_setup_without_override_is_a_no_op() -> None:
    d = Defaults("d", x=1)
    d.setup()
    d.setup()
    assert d.x == 1


def test_repr_names_fields_and_version() -> None:
    n = Notifier("n1", a=1, b="x", c={})
    assert repr(n) == "Notifier('n1', a=1, b='x', c={}, d=None)"
    assert n.version is None
