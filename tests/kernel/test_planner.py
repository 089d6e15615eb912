"""Graphs and planning: name binding, targets, pruning, cycles, missing inputs."""

from __future__ import annotations

import pytest

import aliquot
from aliquot import CycleError, Graph, GraphError, MissingInputError, Node, Ref, UnknownTargetError
from aliquot._planner import finalize, plan
from aliquot.testing import make_kernel
from aliquot_builtins.function import make_spec


def spec(fn, outputs):
    return make_spec(fn, outputs=outputs)


@aliquot.task(outputs=["a"])
def make_a(seed: int) -> int:
    return seed + 1


@aliquot.task(outputs=["b"])
def make_b(a: int) -> int:
    return a * 2


@aliquot.task(outputs=["c"])
def make_c(a: int, b: int) -> int:
    return a + b


@aliquot.task(outputs=["unrelated"])
def other(seed: int) -> int:
    return -seed


def test_parameters_bind_to_outputs_by_name_and_to_inputs() -> None:
    graph = aliquot.graph_from_tasks(
        [aliquot.task_spec_of(t) for t in (make_a, make_b, make_c)], {"seed": 1}
    )
    assert graph.nodes["make_b"].bindings == {"a": Ref("make_a", "a")}
    assert graph.nodes["make_c"].bindings == {"a": Ref("make_a", "a"), "b": Ref("make_b", "b")}
    assert graph.nodes["make_a"].bindings == {"seed": 1}
    assert graph.nodes["make_c"].deps == ("make_a", "make_b")
    assert graph.default_targets == ["c"]


def test_targets_prune_the_graph_to_what_they_need() -> None:
    with make_kernel() as kernel:
        run = kernel.run([make_a, make_b, make_c, other], inputs={"seed": 1}, targets=["b"])
    assert run["b"] == 4
    assert run.nodes["make_c"].status == "skipped"
    assert run.nodes["other"].status == "skipped"
    assert "not needed" in run.nodes["other"].reason
    assert {n for n, r in run.nodes.items() if r.status == "computed"} == {"make_a", "make_b"}


def test_default_targets_are_every_leaf_output() -> None:
    with make_kernel() as kernel:
        run = kernel.run([make_a, make_b, make_c, other], inputs={"seed": 1})
    assert set(run.targets) == {"c", "unrelated"}
    assert run["c"] == 6 and run["unrelated"] == -1


def test_a_target_may_name_a_task() -> None:
    with make_kernel() as kernel:
        run = kernel.run([make_a, make_b, make_c], inputs={"seed": 1}, targets=["make_b"])
    assert run["b"] == 4


def test_unknown_target_is_refused_with_suggestions() -> None:
    with make_kernel() as kernel, pytest.raises(UnknownTargetError, match="did you mean 'b'"):
        kernel.run([make_a, make_b], inputs={"seed": 1}, targets=["bb"])


def test_missing_input_names_task_and_parameter_before_anything_runs() -> None:
    ran = []

    @aliquot.task(outputs=["first"])
    def first() -> int:
        ran.append("first")
        return 1

    @aliquot.task(outputs=["second"])
    def second(first: int, scale: float) -> float:
        return first * scale

    with make_kernel() as kernel:
        with pytest.raises(MissingInputError, match="task 'second' parameter 'scale'"):
            kernel.run([first, second])
        assert ran == []
        assert kernel.runs() == []  # nothing was recorded either


def test_a_missing_input_of_a_pruned_task_does_not_matter() -> None:
    @aliquot.task(outputs=["needs_more"])
    def needs_more(unknown: int) -> int:
        return unknown

    with make_kernel() as kernel:
        run = kernel.run([make_a, needs_more], inputs={"seed": 1}, targets=["a"])
    assert run["a"] == 2


def test_cycle_is_refused_naming_the_cycle() -> None:
    @aliquot.task(outputs=["x"])
    def fx(z: int) -> int:
        return z

    @aliquot.task(outputs=["y"])
    def fy(x: int) -> int:
        return x

    @aliquot.task(outputs=["z"])
    def fz(y: int) -> int:
        return y

    with make_kernel() as kernel, pytest.raises(CycleError) as info:
        kernel.run([fx, fy, fz], targets=["z"])
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"fx", "fy", "fz"}
    assert (
        "fx -> fy -> fz -> fx" in str(info.value)
        or "fy -> fz -> fx -> fy" in str(info.value)
        or ("fz -> fx -> fy -> fz" in str(info.value))
    )


def test_self_cycle() -> None:
    @aliquot.task(outputs=["loop"])
    def loop(loop: int) -> int:
        return loop

    with make_kernel() as kernel, pytest.raises(CycleError, match="loop -> loop"):
        kernel.run([loop])


def test_two_tasks_producing_one_output_are_refused() -> None:
    @aliquot.task(outputs=["a"])
    def also_a() -> int:
        return 0

    with make_kernel() as kernel, pytest.raises(GraphError, match="produced by both"):
        kernel.run([make_a, also_a], inputs={"seed": 1})


def test_input_shadowing_an_output_is_refused() -> None:
    with make_kernel() as kernel, pytest.raises(GraphError, match="also the output of task"):
        kernel.run([make_a, make_b], inputs={"seed": 1, "a": 5})


def test_unused_input_is_refused_with_a_suggestion() -> None:
    with make_kernel() as kernel, pytest.raises(GraphError, match="did you mean 'seed'"):
        kernel.run([make_a], inputs={"sed": 1})


def test_same_task_twice_is_refused() -> None:
    with make_kernel() as kernel, pytest.raises(GraphError, match="listed twice"):
        kernel.run([make_a, make_a], inputs={"seed": 1})


def test_non_task_in_list_is_refused() -> None:
    with make_kernel() as kernel, pytest.raises(aliquot.TargetLoadError, match="not a task"):
        kernel.run([make_a, print], inputs={"seed": 1})


def test_explicit_graph_with_nested_refs() -> None:
    """Refs inside lists and dicts are edges too (Dioptra-style wiring)."""

    def total(values, extra):
        return sum(values) + extra["k"]

    def const(v):
        return v

    graph = Graph()
    c_spec = spec(const, ["out"])
    for i in range(3):
        graph.add(Node(f"c{i}", c_spec, {"v": i}))
    graph.add(
        Node(
            "sum",
            spec(total, ["total"]),
            {"values": [Ref(f"c{i}", "out") for i in range(3)], "extra": {"k": Ref("c2", "out")}},
        )
    )
    graph.name("total", Ref("sum", "total"))
    graph.default_targets.append("total")
    assert graph.nodes["sum"].deps == ("c0", "c1", "c2")
    with make_kernel() as kernel:
        run = kernel.run(graph)
    assert run["total"] == 0 + 1 + 2 + 2


def test_refs_to_unknown_nodes_or_outputs_are_refused() -> None:
    def ident(v):
        return v

    s = spec(ident, ["out"])
    graph = Graph()
    graph.add(Node("a", s, {"v": 1}))
    graph.add(Node("b", s, {"v": Ref("a", "nope")}))
    graph.default_targets.append("b")
    with pytest.raises(GraphError, match="refers to output 'nope'"):
        plan(graph)
    graph2 = Graph()
    graph2.add(Node("b", s, {"v": Ref("ghost", "out")}))
    graph2.default_targets.append("b")
    with pytest.raises(GraphError, match="does not exist"):
        plan(graph2)


def test_duplicate_node_ids_and_names_are_refused() -> None:
    def ident(v):
        return v

    graph = Graph()
    graph.add(Node("a", spec(ident, ["out"]), {"v": 1}))
    with pytest.raises(GraphError, match="share the id"):
        graph.add(Node("a", spec(ident, ["out"]), {"v": 2}))
    graph.name("x", Ref("a", "out"))
    with pytest.raises(GraphError, match="produced by both"):
        graph.name("x", Ref("b", "out"))


def test_plan_participants_can_load_a_node_and_skip_its_inputs() -> None:
    """A node decided 'load' needs no inputs: what only it needed is skipped."""
    graph = aliquot.graph_from_tasks(
        [aliquot.task_spec_of(t) for t in (make_a, make_b, make_c)], {"seed": 1}
    )
    result = plan(graph, ["b"])
    assert result.order == ["make_a", "make_b"]
    result.decide("make_b", "load", "cached")
    finalize(result)
    assert result.order == ["make_b"]
    assert result.decisions["make_a"].action == "skip"
    assert "loaded from the cache" in result.decisions["make_a"].reason
    assert result.decisions["make_c"].reason == "not needed for the requested targets"
    with pytest.raises(GraphError, match="final"):
        result.decide("make_a", "run")


def test_plan_decide_validates_its_arguments() -> None:
    graph = aliquot.graph_from_tasks([aliquot.task_spec_of(make_a)], {"seed": 1})
    result = plan(graph)
    with pytest.raises(GraphError, match="unknown plan action"):
        result.decide("make_a", "explode")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="no node"):
        result.decide("ghost", "run")


def test_planning_is_iterative_for_deep_chains() -> None:
    """A 20,000-node chain plans without recursion errors."""

    def step(prev):
        return prev

    s = spec(step, ["out"])
    graph = Graph()
    graph.add(Node("n0", s, {"prev": 0}))
    for i in range(1, 20_000):
        graph.add(Node(f"n{i}", s, {"prev": Ref(f"n{i - 1}", "out")}))
    graph.default_targets.append("n19999")
    result = plan(graph)
    assert len(result.order) == 20_000 and result.order[0] == "n0"


def test_kernel_plan_gives_decisions_without_running() -> None:
    with make_kernel() as kernel:
        result = kernel.plan([make_a, make_b, other], inputs={"seed": 1}, targets=["b"])
        assert result.counts() == {"run": 2, "load": 0, "skip": 1}
        assert kernel.runs() == []
