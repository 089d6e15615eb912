"""Task graphs (Dioptra's entrypoint YAML): forms, references, validation, running, caching."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import pytest

import aliquot
from aliquot import Ref
from aliquot.testing import make_kernel
from aliquot_builtins.artifacts import ArtifactTask
from aliquot_builtins.taskgraph import (
    ARTIFACT_KIND,
    CODES,
    SHAPE_CODES,
    GraphValidationError,
    TaskGraph,
    ValidationIssue,
)
from aliquot_builtins.tasks import Catalog

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((ROOT / "spec" / "taskgraph.schema.json").read_text())
CALLS: list[str] = []
BARRIER: list[threading.Barrier] = []


# ---------------------------------------------------------------------------
# Tasks the graphs below call
# ---------------------------------------------------------------------------


@aliquot.register
def hello(name: str) -> str:
    CALLS.append("hello")
    return f"Hello, {name}"


@aliquot.register
def shout(message: str) -> str:
    CALLS.append("shout")
    return message.upper() + "!"


@aliquot.register
def echo(value: str) -> str:
    return value


@aliquot.register
def join(a: str, b: str = "-", *, sep: str = "") -> str:
    return f"{a}{sep}{b}"


@aliquot.register
def count(text: str) -> int:
    return len(text)


@aliquot.register
def add(x: int, y: int = 0) -> int:
    return x + y


@aliquot.register
def anything() -> Any:
    return 5


@aliquot.register
def pair() -> tuple[int, int]:
    return 1, 2


@aliquot.register
def nothing() -> None:
    CALLS.append("nothing")


@aliquot.register
def collect(items: list[str], table: dict[str, int]) -> dict[str, Any]:
    return {"items": items, "table": table}


@aliquot.register
def nest(items: list[Any], table: dict[str, Any]) -> dict[str, Any]:
    return {"items": items, "table": table}


@aliquot.register
def spread(a: int, *rest: int, **extra: int) -> dict[str, Any]:
    return {"a": a, "rest": list(rest), "extra": extra}


@aliquot.register(inputs={"scale": "integer"})
def scaled(a: int, **kwargs: Any) -> int:
    return a * int(kwargs["scale"])


@aliquot.register
def positional_only(a: int, /) -> int:
    return a


@aliquot.register
def first() -> str:
    CALLS.append("first")
    return "first"


@aliquot.register
def second() -> str:
    CALLS.append("second")
    return "second"


@aliquot.register
def wait_a() -> str:
    BARRIER[0].wait()
    return "a"


@aliquot.register
def wait_b() -> str:
    BARRIER[0].wait()
    return "b"


@aliquot.register
def settings(n: int, flag: bool, items: list[int]) -> str:
    return f"{n}|{flag}|{items}"


class Stats(NamedTuple):
    mean: float
    size: int


@aliquot.register
def stats(values: list[int]) -> Stats:
    return Stats(sum(values) / len(values), len(values))


class Thing:
    pass


@aliquot.register
def use_thing(thing: Thing) -> int:
    return 1


@aliquot.register(name="one.dup")
def dup_one() -> int:
    return 1


@aliquot.register(name="two.dup")
def dup_two() -> int:
    return 2


TASKS: list[Callable[..., Any]] = [
    hello,
    shout,
    echo,
    join,
    count,
    add,
    anything,
    pair,
    nothing,
    collect,
    nest,
    spread,
    scaled,
    positional_only,
    first,
    second,
    wait_a,
    wait_b,
    settings,
    stats,
    use_thing,
    dup_one,
    dup_two,
]

ISSUE_EXAMPLE = """
parameters:
  name: World
graph:
  hello_step:
    hello: {name: $name}
  shout_step:
    shout: [$hello_step.output]
artifacts:
  message:
    contents: $shout_step.output
    task: {name: StringArtifactTask, args: {type: txt}}
"""


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    BARRIER[:] = [threading.Barrier(2, timeout=20)]
    yield
    CALLS.clear()


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    yield k
    k.close()


def catalog() -> Catalog:
    found = Catalog()
    found.add_builtins()
    for task in TASKS:
        found.add_object(task)
    return found


def graph_of(text: str, **kwargs: Any) -> TaskGraph:
    return TaskGraph.from_yaml(textwrap.dedent(text), tasks=TASKS, **kwargs)


def issues_of(text: str, **kwargs: Any) -> list[ValidationIssue]:
    return graph_of(text, **kwargs).validate(catalog())


def run_values(kernel: aliquot.Kernel, text: str, **kwargs: Any) -> aliquot.Run:
    run = kernel.run(graph_of(text), **kwargs)
    assert run.status == "succeeded", [r.error for r in run.failed_nodes]
    return run


# ---------------------------------------------------------------------------
# The issue's example, end to end
# ---------------------------------------------------------------------------


def test_the_issue_example_runs_and_stores_its_artifact(kernel: aliquot.Kernel) -> None:
    run = kernel.run(TaskGraph.from_yaml(ISSUE_EXAMPLE, tasks=[hello, shout]))
    assert run.status == "succeeded"
    assert run["message"] == "HELLO, WORLD!"
    stored = run.nodes["artifact:message"].outputs["message"]
    assert stored.serializer.startswith("artifact:")
    assert "StringArtifactTask" in stored.serializer
    assert list(run.targets) == ["message"]


def test_parameter_values_from_python_inputs(kernel: aliquot.Kernel) -> None:
    run = kernel.run(
        TaskGraph.from_yaml(ISSUE_EXAMPLE, tasks=[hello, shout]), inputs={"name": "Ada"}
    )
    assert run["message"] == "HELLO, ADA!"
    assert run.inputs == {"name": "Ada"}
    meta = run.meta["taskgraph"]
    assert meta["parameters"] == {"name": "Ada"}
    assert meta["digest"] == TaskGraph.from_yaml(ISSUE_EXAMPLE).digest
    assert meta["snapshots"] == {}


def test_a_second_run_computes_nothing(kernel: aliquot.Kernel) -> None:
    document = TaskGraph.from_yaml(ISSUE_EXAMPLE, tasks=[hello, shout])
    first_run = kernel.run(document)
    assert first_run.counts() == {"computed": 3}
    assert CALLS == ["hello", "shout"]
    second_run = kernel.run(document)
    assert "computed" not in second_run.counts()
    assert second_run.counts().get("cached", 0) >= 1
    assert CALLS == ["hello", "shout"]
    assert second_run["message"] == "HELLO, WORLD!"
    changed = kernel.run(document, inputs={"name": "Bo"})
    assert changed.counts() == {"computed": 3}


# ---------------------------------------------------------------------------
# Step forms, references and argument passing
# ---------------------------------------------------------------------------


def test_the_three_forms(kernel: aliquot.Kernel) -> None:
    run = run_values(
        kernel,
        """
        graph:
          positional: {join: [x, y]}
          scalar: {echo: only}
          keyword: {join: {a: p, b: q, sep: "+"}}
          mixed: {task: join, args: [m], kwargs: {sep: "/"}}
        """,
    )
    assert run["positional.output"] == "xy"
    assert run["scalar.output"] == "only"
    assert run["keyword.output"] == "p+q"
    assert run["mixed.output"] == "m/-"


def test_references_to_parameters_and_outputs(kernel: aliquot.Kernel) -> None:
    run = run_values(
        kernel,
        """
        parameters:
          word: hey
        graph:
          length: {count: [$word]}
          bare: {add: [$length]}
          dotted: {add: {x: $length.output, y: 10}}
        """,
    )
    assert run["bare.output"] == 3
    assert run["dotted.output"] == 13


def test_references_inside_nested_lists_and_dicts(kernel: aliquot.Kernel) -> None:
    run = run_values(
        kernel,
        """
        parameters:
          word: hey
        graph:
          length: {count: [$word]}
          both:
            nest:
              items: [$word, literal, [$word]]
              table: {n: $length.output, deep: [2, $length]}
        """,
    )
    assert run["both.output"] == {
        "items": ["hey", "literal", ["hey"]],
        "table": {"n": 3, "deep": [2, 3]},
    }


def test_dollar_escapes(kernel: aliquot.Kernel) -> None:
    run = run_values(
        kernel,
        """
        graph:
          escaped: {echo: $$name}
          alone: {echo: $}
          triple: {echo: $$$x}
          nested: {collect: {items: [$$a, $], table: {}}}
        """,
    )
    assert run["escaped.output"] == "$name"
    assert run["alone.output"] == "$"
    assert run["triple.output"] == "$$x"
    assert run["nested.output"]["items"] == ["$a", "$"]


def test_varargs_and_kwargs(kernel: aliquot.Kernel) -> None:
    run = run_values(
        kernel,
        """
        graph:
          positional: {spread: [1, 2, 3]}
          keyword: {spread: {a: 1, z: 5}}
          mixed: {task: spread, args: [1, 2], kwargs: {y: 3}}
          extra: {scaled: {a: 4, scale: 3}}
        """,
    )
    assert run["positional.output"] == {"a": 1, "rest": [2, 3], "extra": {}}
    assert run["keyword.output"] == {"a": 1, "rest": [], "extra": {"z": 5}}
    assert run["mixed.output"] == {"a": 1, "rest": [2], "extra": {"y": 3}}
    assert run["extra.output"] == 12


def test_graph_nodes_bind_varargs_to_a_list_and_kwargs_to_a_dict() -> None:
    graph = graph_of(
        """
        graph:
          one: {add: [1]}
          s: {task: spread, args: [$one, 2], kwargs: {z: $one.output}}
          e: {scaled: {a: 1, scale: 2}}
        """
    ).to_graph(catalog())
    assert graph.nodes["s"].bindings == {
        "a": Ref("one", "output"),
        "rest": [2],
        "extra": {"z": Ref("one", "output")},
    }
    assert graph.nodes["e"].bindings == {"a": 1, "kwargs": {"scale": 2}}
    assert graph.nodes["s"].deps == ("one",)


def test_multiple_outputs_are_named(kernel: aliquot.Kernel) -> None:
    run = run_values(
        kernel,
        """
        graph:
          s: {stats: [[1, 2, 3]]}
          size: {add: [$s.size]}
        """,
        targets=["size.output", "s.mean"],
    )
    assert run["size.output"] == 3
    assert run["s.mean"] == 2.0


def test_explicit_dependencies_order_steps(kernel: aliquot.Kernel) -> None:
    run_values(
        kernel,
        """
        graph:
          later: {second: [], dependencies: earlier}
          earlier: {first: []}
        """,
    )
    assert CALLS == ["first", "second"]


def test_without_dependencies_document_order_decides(kernel: aliquot.Kernel) -> None:
    """The control for the test above: its order comes from `dependencies`."""
    run_values(
        kernel,
        """
        graph:
          later: {second: []}
          earlier: {first: []}
        """,
    )
    assert CALLS == ["second", "first"]


def test_dependencies_become_node_after() -> None:
    graph = graph_of(
        """
        graph:
          a: {first: []}
          b: {first: []}
          c: {second: [], dependencies: [a, b]}
        """
    ).to_graph(catalog())
    assert graph.nodes["c"].after == ("a", "b")
    assert graph.nodes["c"].deps == ("a", "b")


def test_independent_steps_run_concurrently() -> None:
    # Each step waits at a two-party barrier: the run succeeds only if both run at once.
    with make_kernel(executor="threads:2") as k:
        run = k.run(
            graph_of(
                """
                graph:
                  a: {wait_a: []}
                  b: {wait_b: []}
                """
            )
        )
    assert run.status == "succeeded", [r.reason for r in run.failed_nodes]
    assert run["a.output"] == "a"
    assert run["b.output"] == "b"


def test_graph_structure() -> None:
    graph = TaskGraph.from_yaml(ISSUE_EXAMPLE, tasks=[hello, shout]).to_graph(catalog())
    assert list(graph.nodes) == ["hello_step", "shout_step", "artifact:message"]
    step = graph.nodes["hello_step"]
    assert step.task.kind == "task"
    assert step.labels == {"step": "hello_step"}
    assert step.bindings == {"name": "World"}
    assert graph.nodes["shout_step"].bindings == {"message": Ref("hello_step", "output")}
    artifact = graph.nodes["artifact:message"]
    assert artifact.task.kind == ARTIFACT_KIND
    assert artifact.bindings == {"value": Ref("shout_step", "output")}
    assert artifact.task.outputs[0].name == "message"
    assert artifact.task.outputs[0].serializer is not None
    assert graph.names["message"] == Ref("artifact:message", "message")
    assert graph.names["hello_step.output"] == Ref("hello_step", "output")
    assert graph.default_targets == ["message"]
    assert graph.meta["taskgraph"]["parameters"] == {"name": "World"}


def test_default_targets_are_artifacts_and_unconsumed_steps() -> None:
    graph = graph_of(
        """
        graph:
          a: {add: [1]}
          b: {add: [$a]}
          c: {pair: []}
          d: {nothing: []}
        """
    ).to_graph(catalog())
    assert graph.default_targets == ["b.output", "c.output_0", "c.output_1", "d"]


def test_a_step_with_no_outputs_runs(kernel: aliquot.Kernel) -> None:
    run_values(kernel, "graph:\n  d: {nothing: []}\n")
    assert CALLS == ["nothing"]


def test_any_fits_statically_and_is_checked_when_it_runs(kernel: aliquot.Kernel) -> None:
    document = graph_of(
        """
        graph:
          a: {anything: []}
          b: {echo: [$a]}
        """
    )
    assert document.validate(catalog()) == []
    run = kernel.run(document)
    assert run.status == "failed"
    assert run.nodes["a"].status == "computed"
    error = run.nodes["b"].error
    assert error is not None
    assert "expects string" in error.message


def test_nothing_runs_when_anything_is_invalid(kernel: aliquot.Kernel) -> None:
    document = graph_of(
        """
        graph:
          ok: {first: []}
          bad: {nosuch: []}
        """
    )
    with pytest.raises(GraphValidationError):
        kernel.run(document)
    assert CALLS == []
    assert kernel.runs() == []


# ---------------------------------------------------------------------------
# Parameters: types, -P coercion, values at run time
# ---------------------------------------------------------------------------

TYPED = """
parameters:
  n: {type: integer, description: how many}
  flag: {type: boolean, default: false}
  items: {type: {list: integer}, default: []}
graph:
  s: {settings: {n: $n, flag: $flag, items: $items}}
"""


def test_graph_params_are_coerced_by_type(kernel: aliquot.Kernel) -> None:
    run = kernel.run(graph_of(TYPED), options={"graph_params": ("n=3", "flag=yes", "items=[1, 2]")})
    assert run["s.output"] == "3|True|[1, 2]"
    run = kernel.run(graph_of(TYPED), options={"graph_params": ("n=-4", "flag=0")})
    assert run["s.output"] == "-4|False|[]"


def test_bad_graph_params_are_all_reported(kernel: aliquot.Kernel) -> None:
    with pytest.raises(GraphValidationError) as info:
        kernel.run(
            graph_of(TYPED),
            options={"graph_params": ("n=abc", "flag=maybe", 'items=[1, "x"]', "m=1", "novalue")},
        )
    found = {(i.code, i.location) for i in info.value.issues}
    assert found == {
        ("type-mismatch", "parameters.n"),
        ("type-mismatch", "parameters.flag"),
        ("type-mismatch", "parameters.items"),
        ("unknown-parameter", "parameters"),
        ("bad-option", "parameters"),
    }
    unknown = next(i for i in info.value.issues if i.code == "unknown-parameter")
    assert unknown.argument == "m"
    assert "n, flag, items" in unknown.message


def test_a_parameter_given_twice_is_refused(kernel: aliquot.Kernel) -> None:
    with pytest.raises(GraphValidationError) as info:
        kernel.run(graph_of(TYPED), inputs={"n": 1}, options={"graph_params": ("n=2",)})
    assert [(i.code, i.location) for i in info.value.issues] == [
        ("duplicate-parameter", "parameters.n")
    ]


def test_python_inputs_are_checked_not_coerced(kernel: aliquot.Kernel) -> None:
    with pytest.raises(GraphValidationError) as info:
        kernel.run(graph_of(TYPED), inputs={"n": "3"})
    (issue,) = info.value.issues
    assert (issue.code, issue.location) == ("type-mismatch", "parameters.n")
    assert kernel.run(graph_of(TYPED), inputs={"n": 3})["s.output"] == "3|False|[]"


def test_a_required_parameter_needs_a_value() -> None:
    document = graph_of(TYPED)
    assert document.validate(catalog()) == []  # fine until it runs
    with pytest.raises(GraphValidationError) as info:
        document.to_graph(catalog(), {})
    (issue,) = info.value.issues
    assert (issue.code, issue.location) == ("missing-parameter", "parameters.n")
    assert "-P n=VALUE" in issue.message


def test_parameter_types_are_inferred_from_defaults() -> None:
    document = graph_of(
        """
        parameters:
          word: hi
          number: 2
        graph:
          a: {add: [$word]}
          b: {echo: [$number]}
          c: {add: [$number]}
        """
    )
    found = [(i.code, i.location) for i in document.validate(catalog())]
    assert found == [("type-mismatch", "graph.a.x"), ("type-mismatch", "graph.b.value")]


def test_a_mapping_default_is_written_with_default() -> None:
    document = graph_of(
        """
        parameters:
          table: {default: {a: 1}}
        graph:
          c: {collect: {items: [], table: $table}}
        """
    )
    assert document.validate(catalog()) == []
    assert document.to_graph(catalog()).nodes["c"].bindings["table"] == {"a": 1}


# ---------------------------------------------------------------------------
# Validation: every code, with its location
# ---------------------------------------------------------------------------

CASES: list[tuple[str, str, str, str | None, str | None]] = [
    # (document, code, location, step, argument)
    ("graph: {s: {nosuch: []}}", "unknown-task", "graph.s", "s", None),
    ("graph: {s: {dup: []}}", "ambiguous-task", "graph.s", "s", None),
    ("graph: {s: {StringArtifactTask: []}}", "unknown-task", "graph.s", "s", None),
    ("graph: {s: {echo: [$ghost]}}", "unknown-reference", "graph.s.value", "s", "value"),
    ("graph: {s: {echo: [$1abc]}}", "bad-reference", "graph.s.value", "s", "value"),
    (
        "graph: {a: {echo: [x]}, s: {echo: [$a.nope]}}",
        "unknown-output",
        "graph.s.value",
        "s",
        "value",
    ),
    ("graph: {a: {nothing: []}, s: {echo: [$a]}}", "unknown-output", "graph.s.value", "s", "value"),
    ("graph: {a: {pair: []}, s: {add: [$a]}}", "ambiguous-output", "graph.s.x", "s", "x"),
    (
        "parameters: {p: 1}\ngraph: {s: {echo: [$p.x]}}",
        "unknown-reference",
        "graph.s.value",
        "s",
        "value",
    ),
    ("graph: {s: {echo: [3]}}", "type-mismatch", "graph.s.value", "s", "value"),
    (
        "graph: {a: {count: [x]}, s: {echo: {value: $a.output}}}",
        "type-mismatch",
        "graph.s.value",
        "s",
        "value",
    ),
    (
        "graph: {a: {count: [x]}, s: {collect: {items: [$a], table: {}}}}",
        "type-mismatch",
        "graph.s.items",
        "s",
        "items",
    ),
    ("graph: {a: {echo: [$b]}, b: {echo: [$a]}}", "cycle", "graph.a", "a", None),
    ("graph: {a: {echo: [$a]}}", "cycle", "graph.a", "a", None),
    ("graph: {a: {first: [], dependencies: a}}", "cycle", "graph.a", "a", None),
    ("parameters: {s: 1}\ngraph: {s: {first: []}}", "name-collision", "graph.s", "s", None),
    ("graph: {s: {join: {b: x}}}", "missing-input", "graph.s.a", "s", "a"),
    ("graph: {s: {scaled: {a: 1}}}", "missing-input", "graph.s.scale", "s", "scale"),
    ("graph: {s: {echo: [a, b]}}", "too-many-positional", "graph.s.args[1]", "s", "args[1]"),
    (
        "graph: {s: {task: scaled, args: [1, 2], kwargs: {scale: 1}}}",
        "too-many-positional",
        "graph.s.args[1]",
        "s",
        "args[1]",
    ),
    ("graph: {s: {join: {a: x, bb: y}}}", "unknown-keyword", "graph.s.bb", "s", "bb"),
    (
        "graph: {s: {task: echo, args: [x], kwargs: {value: y}}}",
        "duplicate-input",
        "graph.s.value",
        "s",
        "value",
    ),
    (
        "graph: {s: {task: positional_only, args: [1], kwargs: {a: 1}}}",
        "positional-only",
        "graph.s.a",
        "s",
        "a",
    ),
    (
        "graph: {s: {first: [], dependencies: [nope]}}",
        "unknown-dependency",
        "graph.s.dependencies",
        "s",
        "dependencies",
    ),
    (
        "parameters: {p: {type: mytype}}\ngraph: {s: {first: []}}",
        "undefined-type",
        "parameters.p",
        None,
        None,
    ),
    (
        "types: {pair_t: {list: nowhere}}\ngraph: {s: {first: []}}",
        "undefined-type",
        "types.pair_t",
        None,
        None,
    ),
    (
        "parameters: {p: {type: integer, default: x}}\ngraph: {s: {first: []}}",
        "type-mismatch",
        "parameters.p",
        None,
        None,
    ),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: $s, task: {name: StringArtifactTask, "
        "args: {type: 1}}}}",
        "artifact-args",
        "artifacts.m.task.args.type",
        None,
        "type",
    ),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: $s, task: {name: StringArtifactTask, "
        "args: {typo: txt}}}}",
        "artifact-args",
        "artifacts.m.task.args.typo",
        None,
        "typo",
    ),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: $s, task: {name: Nope}}}",
        "unknown-task",
        "artifacts.m.task.name",
        None,
        None,
    ),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: $t.output, task: {name: "
        "StringArtifactTask}}}",
        "unknown-reference",
        "artifacts.m.contents",
        None,
        None,
    ),
    ("plugins: [a, a@2]\ngraph: {s: {first: []}}", "duplicate-plugin", "plugins[1]", None, None),
    # shapes
    ("[1, 2]", "bad-document", "document", None, None),
    ("graph: {s: {first: []}}\nextra: 1", "bad-document", "extra", None, None),
    ("parameters: {}", "bad-document", "graph", None, None),
    ("graph: {}", "bad-document", "graph", None, None),
    ("graph: {a.b: {first: []}}", "bad-name", "graph.a.b", "a.b", None),
    ("parameters: {1x: 1}\ngraph: {s: {first: []}}", "bad-name", "parameters.1x", None, None),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {bad-name: {contents: $s, task: {name: X}}}",
        "bad-name",
        "artifacts.bad-name",
        None,
        None,
    ),
    ("graph: {s: {first: [], second: []}}", "bad-step", "graph.s", "s", None),
    ("graph: {s: {dependencies: [a]}}", "bad-step", "graph.s", "s", None),
    ("graph: {s: [first]}", "bad-step", "graph.s", "s", None),
    ("graph: {s: {task: echo, args: [x], other: 1}}", "bad-step", "graph.s", "s", None),
    ("graph: {s: {task: echo, args: x}}", "bad-step", "graph.s.args", "s", None),
    ("graph: {s: {task: [echo]}}", "bad-step", "graph.s.task", "s", None),
    (
        "graph: {s: {first: [], dependencies: {a: 1}}}",
        "bad-step",
        "graph.s.dependencies",
        "s",
        "dependencies",
    ),
    ("types: {string: {}}\ngraph: {s: {first: []}}", "bad-type", "types.string", None, None),
    ("types: {t: {set: integer}}\ngraph: {s: {first: []}}", "bad-type", "types.t", None, None),
    (
        "parameters: {p: {type: integer, dflt: 1}}\ngraph: {s: {first: []}}",
        "bad-parameter",
        "parameters.p",
        None,
        None,
    ),
    (
        "parameters: {p: {type: {list: []}}}\ngraph: {s: {first: []}}",
        "bad-parameter",
        "parameters.p",
        None,
        None,
    ),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: literal, task: {name: X}}}",
        "bad-artifact",
        "artifacts.m.contents",
        None,
        None,
    ),
    (
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: $s}}",
        "bad-artifact",
        "artifacts.m.task",
        None,
        None,
    ),
    ("plugins: [a@0]\ngraph: {s: {first: []}}", "bad-plugin", "plugins[0]", None, None),
    ("modules: [3]\ngraph: {s: {first: []}}", "bad-module", "modules[0]", None, None),
    (
        "modules: [no_such_module_for_taskgraph_tests]\ngraph: {s: {first: []}}",
        "module-error",
        "modules[0]",
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "code", "location", "step", "argument"),
    CASES,
    ids=[f"{c[1]}:{c[2]}" for c in CASES],
)
def test_each_issue_is_reported_where_it_is(
    text: str, code: str, location: str, step: str | None, argument: str | None
) -> None:
    issues = issues_of(text)
    assert len(issues) == 1, [str(i) for i in issues]
    (issue,) = issues
    assert (issue.code, issue.location, issue.step, issue.argument) == (
        code,
        location,
        step,
        argument,
    ), str(issue)
    assert issue.code in CODES
    assert issue.message
    assert str(issue) == f"{location}: {issue.message} [{code}]"


def test_every_code_is_tested_or_named_in_the_spec() -> None:
    tested = {c[1] for c in CASES} | {
        "yaml-syntax",
        "duplicate-key",
        "missing-parameter",
        "unknown-parameter",
        "duplicate-parameter",
        "bad-option",
        "type-conflict",
        "artifact-task",
        "unknown-plugin",
    }
    assert tested == set(CODES)
    spec = (ROOT / "spec" / "taskgraph.md").read_text()
    missing = [code for code in sorted(CODES) if f"`{code}`" not in spec]
    assert not missing, f"spec/taskgraph.md does not list {missing}"


def test_many_issues_are_reported_at_once() -> None:
    issues = issues_of(
        """
        parameters:
          p: 1
        graph:
          p: {first: []}
          a: {nosuch: [$p]}
          b: {echo: [$ghost, 2]}
          c: {echo: {valu: x}}
          d: {echo: [$e]}
          e: {echo: [$d]}
          f: {join: {b: x}}
        artifacts:
          m: {contents: $b.output, task: {name: StringArtifactTask, args: {type: "no way"}}}
        """
    )
    assert {(i.code, i.location) for i in issues} == {
        ("name-collision", "graph.p"),
        ("unknown-task", "graph.a"),
        ("unknown-reference", "graph.b.value"),
        ("too-many-positional", "graph.b.args[1]"),
        ("unknown-keyword", "graph.c.valu"),
        ("missing-input", "graph.c.value"),
        ("cycle", "graph.d"),
        ("missing-input", "graph.f.a"),
        ("artifact-args", "artifacts.m.task.args.type"),
    }
    error = GraphValidationError(issues, "doc.yaml")
    lines = str(error).splitlines()
    assert lines[0] == "task graph doc.yaml has 9 problems:"
    assert len(lines) == 10


def test_a_reference_to_a_broken_step_is_not_reported_twice() -> None:
    issues = issues_of(
        """
        graph:
          a: {nosuch: []}
          b: {echo: [$a.output]}
          c: {dependencies: x}
          d: {echo: [$c]}
        """
    )
    assert [(i.code, i.location) for i in issues] == [
        ("bad-step", "graph.c"),
        ("unknown-task", "graph.a"),
    ]


def test_messages_suggest_fixes() -> None:
    issues = issues_of(
        """
        graph:
          a: {hello: {nme: x}}
          b: {shout: [$a.outptu]}
          c: {echo: [$a.output, 2]}
        """
    )
    text = "\n".join(i.message for i in issues)
    assert "did you mean 'name'?" in text
    assert "did you mean '$a.output'?" in text
    assert "takes at most 1 positional value(s) (value)" in text


def test_a_null_short_form_value_is_one_null_argument() -> None:
    (issue,) = issues_of("graph: {s: {first: }}")
    assert issue.code == "too-many-positional"
    assert "write 'first: []' for none" in issue.message


def test_type_conflict_between_document_and_task() -> None:
    thing = f"{Thing.__module__}.Thing"
    (issue,) = issues_of(
        f"""
        types:
          {thing}: {{list: integer}}
        graph:
          s: {{use_thing: [[1]]}}
        """
    )
    assert (issue.code, issue.location) == ("type-conflict", "graph.s")


def test_an_artifact_task_that_cannot_be_found_by_name() -> None:
    class Local(ArtifactTask):
        @staticmethod
        def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
            raise NotImplementedError

        @staticmethod
        def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Any:
            raise NotImplementedError

        @staticmethod
        def validation() -> dict[str, Any] | None:
            return None

    document = TaskGraph.from_yaml(
        "graph: {s: {echo: [x]}}\nartifacts: {m: {contents: $s, task: {name: Local}}}",
        tasks=[echo, Local],
    )
    (issue,) = document.validate(Catalog())
    assert (issue.code, issue.location) == ("artifact-task", "artifacts.m.task.name")


def test_custom_types(kernel: aliquot.Kernel) -> None:
    document = graph_of(
        """
        types:
          names: {list: string}
        parameters:
          who: {type: names, default: [a, b]}
          bad: {type: names, default: [1]}
        graph:
          s: {collect: {items: $who, table: {}}}
        """
    )
    assert [(i.code, i.location) for i in document.validate(catalog())] == [
        ("type-mismatch", "parameters.bad")
    ]


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------


def test_duplicate_yaml_keys_are_an_error() -> None:
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.from_yaml("graph:\n  a: {first: []}\n  a: {second: []}\n")
    (issue,) = info.value.issues
    assert issue.code == "duplicate-key"
    assert issue.location == "line 3, column 3"
    assert "'a'" in issue.message


def test_yaml_merge_keys_still_work() -> None:
    document = TaskGraph.from_yaml(
        "base: &b {value: x}\ngraph:\n  a: {echo: {<<: *b}}\n", tasks=[echo]
    )
    assert document.document["graph"]["a"] == {"echo": {"value": "x"}}


def test_yaml_syntax_errors_and_unsafe_tags() -> None:
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.from_yaml("graph: [unclosed\n", source="doc.yaml")
    (issue,) = info.value.issues
    assert (issue.code, issue.location) == ("yaml-syntax", "line 2, column 1")
    assert str(info.value) == (
        "task graph doc.yaml has 1 problem:\n"
        "  line 2, column 1: YAML: expected ',' or ']', but got '<stream end>' [yaml-syntax]"
    )
    with pytest.raises(GraphValidationError) as info:
        TaskGraph.from_yaml("graph: !!python/object/apply:os.system [echo hi]\n")
    assert info.value.issues[0].code == "yaml-syntax"
    assert "python/object/apply" in info.value.issues[0].message


def test_top_level_must_be_a_mapping() -> None:
    (issue,) = TaskGraph.from_yaml("- a\n- b\n").shape_issues()
    assert (issue.code, issue.location) == ("bad-document", "document")


# ---------------------------------------------------------------------------
# Loading documents: files, modules, plans
# ---------------------------------------------------------------------------


GREET = """
import aliquot

@aliquot.register
def greet(name: str) -> str:
    return "hi " + name
"""


def test_load_a_file_with_a_relative_module(
    tmp_path: Path, kernel: aliquot.Kernel, sys_path: Callable[[Path], None]
) -> None:
    sys_path(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "greeting_tasks.py").write_text(GREET)
    path = tmp_path / "doc.yaml"
    path.write_text("modules: [lib/greeting_tasks.py]\ngraph: {g: {greet: [Ada]}}\n")
    run = kernel.run(path)
    assert run["g.output"] == "hi Ada"
    assert run.target == str(path)
    assert TaskGraph.load(path).check(kernel) == []


def test_a_module_by_import_name(tmp_path: Path, sys_path: Callable[[Path], None]) -> None:
    (tmp_path / "taskgraph_greet_mod.py").write_text(GREET)
    sys_path(tmp_path)
    document = TaskGraph.from_dict(
        {"modules": ["taskgraph_greet_mod"], "graph": {"g": {"greet": ["Bo"]}}}
    )
    with make_kernel() as k:
        assert k.run(document)["g.output"] == "hi Bo"


def test_a_broken_module_is_an_issue(tmp_path: Path, sys_path: Callable[[Path], None]) -> None:
    sys_path(tmp_path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    document = TaskGraph.from_dict(
        {"modules": ["broken.py"], "graph": {"g": {"greet": ["Bo"]}}}, base_dir=tmp_path
    )
    issues = document.validate(Catalog())
    assert [(i.code, i.location) for i in issues] == [
        ("module-error", "modules[0]"),
        ("unknown-task", "graph.g"),
    ]
    assert "boom" in issues[0].message


def test_other_paths_are_not_planned(tmp_path: Path, kernel: aliquot.Kernel) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("graph: {}\n")
    with pytest.raises(aliquot.TargetLoadError):
        kernel.run(path)


def test_the_plugin_can_be_blocked() -> None:
    with make_kernel(block=["taskgraph"]) as k, pytest.raises(aliquot.PluginNotActiveError) as info:
        k.run(TaskGraph.from_yaml(ISSUE_EXAMPLE))
    assert "taskgraph" in str(info.value)


def test_the_facade_exports_task_graph() -> None:
    assert aliquot.TaskGraph is TaskGraph


def test_the_document_is_copied() -> None:
    doc: dict[str, Any] = {"graph": {"a": {"echo": ["x"]}}}
    document = TaskGraph.from_dict(doc, tasks=[echo])
    doc["graph"]["a"] = {"nosuch": []}
    assert document.validate(catalog()) == []


# ---------------------------------------------------------------------------
# The JSON Schema agrees with the shape checks
# ---------------------------------------------------------------------------

VALID_SHAPES: list[Any] = [
    {"graph": {"a": {"t": []}}},
    {"graph": {"a": {"t": "scalar"}}},
    {"graph": {"a": {"t": None}}},
    {"graph": {"a": {"t": {"k": 1}, "dependencies": "b"}, "b": {"u": [1, [2, {"x": "$a"}]]}}},
    {"graph": {"a": {"task": "t"}}},
    {"graph": {"a": {"task": "t", "args": [1], "kwargs": {"k": 2}, "dependencies": ["b"]}}},
    {"graph": {"a": {"$weird": []}}},
    {"graph": {"_a1": {"t": []}}, "parameters": {"p": 1, "q": [1], "r": None}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {}, "q": {"type": "integer", "default": 3}}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {"type": {"list": "x"}, "description": "d"}}},
    {
        "graph": {"a": {"t": []}},
        "types": {
            "simple": {},
            "also_simple": None,
            "numpy.ndarray": {},
            "l": {"list": "integer"},
            "t": {"tuple": []},
            "u": {"union": ["string", {"mapping": ["string", "number"]}]},
            "m": {"mapping": {"a": "string", "b": {"is_a": "l"}}},
            "e": {"mapping": {}},
            "named": "integer",
        },
    },
    {"graph": {"a": {"t": []}}, "plugins": [], "modules": []},
    {"graph": {"a": {"t": []}}, "plugins": ["hello", "w@12", "a@1", "a"], "modules": ["m", "x.py"]},
    {"graph": {"a": {"t": []}}, "artifacts": {}},
    {
        "graph": {"a": {"t": []}},
        "artifacts": {
            "m": {"contents": "$a.output", "task": {"name": "S"}},
            "n": {"contents": "$a", "task": {"name": "S", "args": {"type": "txt"}}},
            "o": {"contents": "$not valid ref", "task": {"name": "", "args": {}}},
        },
    },
    {"graph": {"a": {"": []}}},
    {"graph": {"a": {"nosuch": [], "dependencies": []}}, "parameters": {"a": 1}},
]

INVALID_SHAPES: list[Any] = [
    [],
    "text",
    None,
    {},
    {"graph": {}},
    {"graph": None},
    {"graph": []},
    {"graph": {"a": {"t": []}}, "extra": 1},
    {"graph": {"a.b": {"t": []}}},
    {"graph": {"1a": {"t": []}}},
    {"graph": {"a\n": {"t": []}}},
    {"graph": {"a": []}},
    {"graph": {"a": "t"}},
    {"graph": {"a": {}}},
    {"graph": {"a": {"dependencies": ["b"]}}},
    {"graph": {"a": {"t": [], "u": []}}},
    {"graph": {"a": {"t": [], "u": [], "dependencies": []}}},
    {"graph": {"a": {"t": [], "dependencies": 3}}},
    {"graph": {"a": {"t": [], "dependencies": [1]}}},
    {"graph": {"a": {"task": 1}}},
    {"graph": {"a": {"task": "t", "args": {}}}},
    {"graph": {"a": {"task": "t", "kwargs": []}}},
    {"graph": {"a": {"task": "t", "extra": 1}}},
    {"graph": {"a": {"task": "t", "dependencies": {}}}},
    {"graph": {"a": {"t": []}}, "parameters": []},
    {"graph": {"a": {"t": []}}, "parameters": {"a-b": 1}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {"other": 1}}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {"description": 3}}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {"type": 3}}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {"type": ""}}},
    {"graph": {"a": {"t": []}}, "parameters": {"p": {"type": {"list": "a", "tuple": []}}}},
    {"graph": {"a": {"t": []}}, "types": []},
    {"graph": {"a": {"t": []}}, "types": {"integer": {}}},
    {"graph": {"a": {"t": []}}, "types": {"a-b": {}}},
    {"graph": {"a": {"t": []}}, "types": {"x": {"union": []}}},
    {"graph": {"a": {"t": []}}, "types": {"x": {"mapping": ["a"]}}},
    {"graph": {"a": {"t": []}}, "types": {"x": {"tuple": "a"}}},
    {"graph": {"a": {"t": []}}, "types": {"x": {"set": "a"}}},
    {"graph": {"a": {"t": []}}, "types": {"x": 3}},
    {"graph": {"a": {"t": []}}, "types": {"x": {"list": {}}}},
    {"graph": {"a": {"t": []}}, "plugins": "a"},
    {"graph": {"a": {"t": []}}, "plugins": ["a@0"]},
    {"graph": {"a": {"t": []}}, "plugins": ["a@b"]},
    {"graph": {"a": {"t": []}}, "plugins": ["a.b"]},
    {"graph": {"a": {"t": []}}, "plugins": [1]},
    {"graph": {"a": {"t": []}}, "modules": "m"},
    {"graph": {"a": {"t": []}}, "modules": [""]},
    {"graph": {"a": {"t": []}}, "modules": [None]},
    {"graph": {"a": {"t": []}}, "artifacts": []},
    {"graph": {"a": {"t": []}}, "artifacts": {"a-b": {"contents": "$a", "task": {"name": "S"}}}},
    {
        "graph": {"a": {"t": []}},
        "artifacts": {"x" * 101: {"contents": "$a", "task": {"name": "S"}}},
    },
    {"graph": {"a": {"t": []}}, "artifacts": {"m": []}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": "$a"}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"task": {"name": "S"}}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": "a", "task": {"name": "S"}}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": "$$a", "task": {"name": "S"}}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": "$", "task": {"name": "S"}}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": 1, "task": {"name": "S"}}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": "$a", "task": "S"}}},
    {"graph": {"a": {"t": []}}, "artifacts": {"m": {"contents": "$a", "task": {}}}},
    {
        "graph": {"a": {"t": []}},
        "artifacts": {"m": {"contents": "$a", "task": {"name": "S", "args": []}}},
    },
    {
        "graph": {"a": {"t": []}},
        "artifacts": {"m": {"contents": "$a", "task": {"name": "S", "other": 1}}},
    },
    {
        "graph": {"a": {"t": []}},
        "artifacts": {"m": {"contents": "$a", "task": {"name": "S"}, "x": 1}},
    },
]


def _schema_valid(doc: Any) -> bool:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return bool(validator.is_valid(doc))


def _shape_invalid(doc: Any) -> bool:
    issues = TaskGraph.from_dict(doc).shape_issues()
    return any(i.code in SHAPE_CODES for i in issues)


@pytest.mark.parametrize("doc", VALID_SHAPES, ids=range(len(VALID_SHAPES)))
def test_schema_accepts_what_the_validator_accepts(doc: Any) -> None:
    assert not _shape_invalid(doc), [str(i) for i in TaskGraph.from_dict(doc).shape_issues()]
    assert _schema_valid(doc)


@pytest.mark.parametrize("doc", INVALID_SHAPES, ids=range(len(INVALID_SHAPES)))
def test_schema_refuses_what_the_validator_refuses(doc: Any) -> None:
    assert _shape_invalid(doc)
    assert not _schema_valid(doc)


def test_the_corpus_covers_every_shape_code() -> None:
    seen = {
        issue.code for doc in INVALID_SHAPES for issue in TaskGraph.from_dict(doc).shape_issues()
    }
    assert seen >= SHAPE_CODES


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_issue_example_is_schema_valid() -> None:
    document = TaskGraph.from_yaml(ISSUE_EXAMPLE)
    assert _schema_valid(document.document)
    assert document.shape_issues() == []
