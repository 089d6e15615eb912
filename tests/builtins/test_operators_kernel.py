"""Operators under a kernel: the ``operator`` task type plans an operator as a node."""

from __future__ import annotations

from pathlib import Path

import pytest

import aliquot
from aliquot import Operator, operator
from aliquot.testing import HookRecorder, make_kernel, run_cli


class Double(Operator):
    def forward(self, x: int) -> int:
        return 2 * x


class Pipeline(Operator):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.double = Double()

    def forward(self, x: int) -> int:
        return self.double(x) + self.k


@operator()
def square(x: float = 4) -> float:
    return x * x


def test_an_operator_runs_as_a_node_with_inputs_bound_by_name() -> None:
    with make_kernel() as kernel:
        run = kernel.run(Pipeline(3), inputs={"x": 2})
        assert run.status == "succeeded"
        assert run["output"] == 7
        (node,) = run.nodes.values()
        assert node.task.endswith("Pipeline")


def test_a_decorated_function_binds_its_own_parameters_and_defaults() -> None:
    with make_kernel() as kernel:
        assert kernel.run(square)["output"] == 16
        assert kernel.run(square, inputs={"x": 3})["output"] == 9


def test_operator_nodes_are_not_cached() -> None:
    with make_kernel() as kernel:
        first = kernel.run(Pipeline(1), inputs={"x": 2})
        second = kernel.run(Pipeline(5), inputs={"x": 2})
        assert (first["output"], second["output"]) == (5, 9)  # state changed, result changed
        assert [n.status for n in second.nodes.values()] == ["computed"]


def test_an_unknown_input_is_an_error_naming_it() -> None:
    with make_kernel() as kernel, pytest.raises(aliquot.GraphError, match="nope"):
        kernel.run(Pipeline(1), inputs={"x": 2, "nope": 1})


def test_blocking_the_plugin_names_it() -> None:
    with (
        make_kernel(block=["operators"]) as kernel,
        pytest.raises(aliquot.PluginNotActiveError, match="'operators' plugin"),
    ):
        kernel.run(Pipeline(1), inputs={"x": 2})


def test_the_cli_runs_an_operator_object(tmp_path: Path) -> None:
    (tmp_path / "ops_demo.py").write_text(
        "from aliquot import Operator\n\n"
        "class Add(Operator):\n"
        "    def __init__(self, k):\n"
        "        super().__init__()\n"
        "        self.k = k\n\n"
        "    def forward(self, x: int) -> int:\n"
        "        return x + self.k\n\n"
        "add = Add(10)\n"
    )
    result = run_cli(
        "run", f"{tmp_path / 'ops_demo.py'}:add", "-i", "x=2", "-q", "--store", "memory://"
    )
    assert result.exit_code == 0, result.output
    assert "output = 12" in result.output


class Add(Operator):
    def forward(self, a: int, b: int) -> int:
        return a + b


class Flow(Operator):
    def __init__(self) -> None:
        super().__init__()
        self.double = Double()
        self.add = Add()

    def forward(self, x: int) -> int:
        y = self.double(x)
        z = self.double(y)
        return self.add(z, b=y)


CALLS: list[int] = []


@operator(cache=True)
def costly(x: int) -> int:
    CALLS.append(x)
    return x * 1000 + 7


class UsesCostly(Operator):
    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self.offset = offset
        self.costly = costly

    def forward(self, x: int) -> int:
        return self.costly(x) + self.costly(x + 1) + self.offset


def test_the_run_records_every_call_with_its_data_flow() -> None:
    with make_kernel() as kernel:
        op = Flow()
        run = kernel.run(op, inputs={"x": 300})
        assert run["output"] == 1800
        graph = run.graph()
        assert [c["id"] for c in graph.calls] == ["(root)", "double", "double#2", "add"]
        assert [c["parent"] for c in graph.calls] == [None, "(root)", "(root)", "(root)"]
        assert {(e.source, e.target, e.argument) for e in graph.edges} == {
            ("double", "double#2", "0"),
            ("double#2", "add", "0"),
            ("double", "add", "b"),
        }
        assert op.get_dag().to_json() == graph.to_json()
        assert "add  computed  [0 <- double#2, b <- double]" in str(graph)


def test_the_call_graph_is_stored_with_the_run(tmp_path: Path) -> None:
    with aliquot.Kernel.open(str(tmp_path / "s")) as kernel:
        run_id = kernel.run(Flow(), inputs={"x": 300}).id
    with aliquot.Kernel.open(str(tmp_path / "s")) as kernel:
        graph = kernel.get_run(run_id).graph()
        assert len(graph.edges) == 3
    shown = run_cli("show", run_id, "--graph", "--store", str(tmp_path / "s"))
    assert shown.exit_code == 0, shown.output
    assert "double#2  computed  [0 <- double]" in shown.stdout


def test_get_dag_before_any_run_says_what_to_do() -> None:
    with pytest.raises(LookupError, match="has not run under a kernel"):
        Flow().get_dag()


def test_a_failing_call_is_recorded_as_failed() -> None:
    class Boom(Operator):
        def forward(self, x: int) -> int:
            raise ValueError("no")

    class Outer(Operator):
        def __init__(self) -> None:
            super().__init__()
            self.boom = Boom()

        def forward(self, x: int) -> int:
            return self.boom(x)

    with make_kernel() as kernel:
        run = kernel.run(Outer(), inputs={"x": 1})
        assert run.status == "failed"
        (record,) = run.nodes.values()
        assert "ValueError: no" in (record.reason or "")
        assert "boom" in (record.error.traceback if record.error else "")


@pytest.mark.parametrize("executor", ["inline", "threads:2"])
def test_cached_calls_are_served_from_the_store(executor: str) -> None:
    CALLS.clear()
    with make_kernel() as kernel:
        first = kernel.run(UsesCostly(), inputs={"x": 4}, executor=executor)
        assert first["output"] == 4007 + 5007
        assert CALLS == [4, 5]
        second = kernel.run(UsesCostly(offset=1), inputs={"x": 4}, executor=executor)
        assert second["output"] == 4007 + 5007 + 1
        assert CALLS == [4, 5]  # the costly calls were not made again
        statuses = {c["id"]: c["status"] for c in second.graph().calls}
        assert statuses == {"(root)": "computed", "costly": "cached", "costly#2": "cached"}
        kernel.run(UsesCostly(), inputs={"x": 9}, executor=executor)
        assert CALLS == [4, 5, 9, 10]  # other arguments miss


def test_a_cached_operator_is_keyed_by_its_state() -> None:
    class Scale(Operator):
        cache = True

        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        def forward(self, x: int) -> int:
            return x * self.k

    class Twice(Operator):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.scale = Scale(k)

        def forward(self, x: int) -> int:
            return self.scale(x)

    with make_kernel() as kernel:
        assert kernel.run(Twice(2), inputs={"x": 5})["output"] == 10
        assert kernel.run(Twice(3), inputs={"x": 5})["output"] == 15
        again = kernel.run(Twice(2), inputs={"x": 5})
        assert again["output"] == 10
        assert again.graph().call("scale")["status"] == "cached"


def test_an_unfingerprintable_argument_is_not_cached_and_says_why() -> None:
    class Odd:
        pass

    @operator(cache=True)
    def takes_object(o: object) -> int:
        return 1

    class UsesObject(Operator):
        def __init__(self) -> None:
            super().__init__()
            self.t = takes_object

        def forward(self, x: int) -> int:
            return self.t(Odd())

    with make_kernel() as kernel:
        run = kernel.run(UsesObject(), inputs={"x": 1})
        assert run["output"] == 1
        assert run.graph().call("t")["cache"].startswith("not cached:")


@pytest.mark.parametrize("executor", ["inline", "threads:2"])
def test_every_nested_call_fires_the_node_hooks_as_a_step(executor: str) -> None:
    recorder = HookRecorder()
    with make_kernel(recorder=recorder) as kernel:
        kernel.run(Flow(), inputs={"x": 3}, executor=executor)
    started = [c.kwargs["node"] for c in recorder.getcalls("node_started")]
    finished = recorder.getcalls("node_finished")
    assert [n.id for n in started] == ["Flow", "Flow/double", "Flow/double#2", "Flow/add"]
    assert [n.labels.get("within") for n in started] == [None, "Flow", "Flow", "Flow"]
    assert {c.kwargs["node"].id: c.kwargs["outcome"].status for c in finished} == {
        "Flow": "computed",
        "Flow/double": "computed",
        "Flow/double#2": "computed",
        "Flow/add": "computed",
    }


def test_a_cached_or_failed_step_reports_its_status_to_the_hooks() -> None:
    class Boom(Operator):
        def forward(self, x: int) -> int:
            raise ValueError("no")

    class Both(Operator):
        def __init__(self) -> None:
            super().__init__()
            self.costly = costly
            self.boom = Boom()

        def forward(self, x: int) -> int:
            self.costly(x)
            return self.boom(x)

    recorder = HookRecorder()
    with make_kernel(recorder=recorder) as kernel:
        kernel.run(UsesCostly(), inputs={"x": 40})
        recorder.calls.clear()
        kernel.run(Both(), inputs={"x": 40})
    statuses = {
        c.kwargs["node"].id: c.kwargs["outcome"].status for c in recorder.getcalls("node_finished")
    }
    assert statuses == {"Both/costly": "cached", "Both/boom": "failed", "Both": "failed"}


def test_the_cli_shows_steps_under_their_node(tmp_path: Path) -> None:
    (tmp_path / "flow_demo.py").write_text(
        "from aliquot import Operator\n\n"
        "class Double(Operator):\n"
        "    def forward(self, x):\n"
        "        return 2 * x\n\n"
        "class Twice(Operator):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.double = Double()\n\n"
        "    def forward(self, x):\n"
        "        return self.double(self.double(x))\n\n"
        "twice = Twice()\n"
    )
    result = run_cli(
        "run", f"{tmp_path / 'flow_demo.py'}:twice", "-i", "x=2", "--store", "memory://"
    )
    assert result.exit_code == 0, result.output
    assert "computed  Twice/double " in result.stderr
    assert "computed  Twice/double#2 " in result.stderr
    assert "[1/1] computed  Twice" in result.stderr
    assert "1 computed" in result.stderr  # steps are not counted as nodes


def test_the_cli_prints_at_most_twenty_steps_per_node(tmp_path: Path) -> None:
    (tmp_path / "many_demo.py").write_text(
        "from aliquot import Operator\n\n"
        "class One(Operator):\n"
        "    def forward(self, x):\n"
        "        return x\n\n"
        "class Many(Operator):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.one = One()\n\n"
        "    def forward(self, n):\n"
        "        return sum(self.one(i) for i in range(n))\n\n"
        "many = Many()\n"
    )
    result = run_cli(
        "run", f"{tmp_path / 'many_demo.py'}:many", "-i", "n=50", "--store", "memory://"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.count("computed  Many/one") == 20
    assert "... and 30 more step(s)" in result.stderr
