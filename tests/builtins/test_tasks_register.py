"""``@aliquot.register``: metadata from the signature, registration overrides, checks at run.

Also the static analysis of task-plugin source, which must derive the same
metadata from text as ``@register`` does from the live function.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any, NamedTuple

import pytest

import aliquot
from aliquot import TaskDefinitionError, pyplugs, register
from aliquot.testing import make_kernel
from aliquot_builtins.tasks import (
    ParameterTypeError,
    Signature,
    TaskPluginError,
    check_inputs,
    signature_of,
)
from aliquot_builtins.tasks._analysis import analyze


class Scores(NamedTuple):
    loss: float
    acc: float


def sig(fn: Any) -> dict[str, Any]:
    spec = aliquot.task_spec_of(fn)
    assert spec is not None
    return signature_of(spec).to_json()


def inputs_of(fn: Any) -> list[tuple[str, Any, bool, str]]:
    return [(i["name"], i["type"], i["required"], i["kind"]) for i in sig(fn)["inputs"]]


def outputs_of(fn: Any) -> list[tuple[str, Any]]:
    return [(o["name"], o["type"]) for o in sig(fn)["outputs"]]


def run_one(fn: Any, inputs: dict[str, Any]) -> Any:
    spec = aliquot.task_spec_of(fn)
    assert spec is not None
    with make_kernel() as kernel:
        return kernel.run(aliquot.graph_from_tasks([spec], inputs))


# ---------------------------------------------------------------------------
# Spellings
# ---------------------------------------------------------------------------


def test_pyplugs_register_is_register() -> None:
    assert pyplugs.register is register
    assert aliquot.pyplugs.register is aliquot.register


def test_dioptra_spelling_registers_a_plain_function() -> None:
    @pyplugs.register
    def hello(name: str) -> str:
        return f"Hello, {name}"

    assert hello("you") == "Hello, you"  # still a plain function
    spec = aliquot.task_spec_of(hello)
    assert spec is not None and spec.kind == "task" and spec.short_name == "hello"
    assert spec.name.startswith("tests.builtins.test_tasks_register.") and spec.name.endswith(
        ".hello"
    )
    assert inputs_of(hello) == [("name", "string", True, "positional_or_keyword")]
    assert outputs_of(hello) == [("output", "string")]


def test_register_with_keywords_keeps_task_options() -> None:
    @register(outputs=["n"], retries=2, description="Counts.")
    def count(items: list[str]) -> int:
        return len(items)

    spec = aliquot.task_spec_of(count)
    assert spec is not None
    assert spec.options.retries == 2 and spec.extra["description"] == "Counts."
    assert spec.output_names == ("n",)


def test_register_refuses_what_is_not_a_function() -> None:
    with pytest.raises(TaskDefinitionError, match="@register got 5"):
        register(5)
    with pytest.raises(TaskDefinitionError, match="needs a function"):
        register(int)


# ---------------------------------------------------------------------------
# Inputs and outputs from the signature
# ---------------------------------------------------------------------------


def test_every_parameter_kind_is_recorded() -> None:
    @register
    def f(a: int, /, b: float = 1.0, *args: int, c: bool, d: str = "x", **kw: float) -> None:
        pass

    assert inputs_of(f) == [
        ("a", "integer", True, "positional"),
        ("b", "number", False, "positional_or_keyword"),
        ("args", "integer", False, "var_positional"),
        ("c", "boolean", True, "keyword"),
        ("d", "string", False, "keyword"),
        ("kw", "number", False, "var_keyword"),
    ]
    assert outputs_of(f) == []  # -> None: no outputs


@pytest.mark.parametrize(
    ("returns", "outputs"),
    [
        ("", [("output", "any")]),
        ("-> int", [("output", "integer")]),
        ("-> None", []),
        ("-> tuple[int, str]", [("output_0", "integer"), ("output_1", "string")]),
        ("-> tuple[int, ...]", [("output", {"list": "integer"})]),
        ("-> list[int]", [("output", {"list": "integer"})]),
        ("-> Scores", [("loss", "number"), ("acc", "number")]),
        ("-> 'Scores'", [("loss", "number"), ("acc", "number")]),
    ],
)
def test_outputs_come_from_the_return_annotation(
    returns: str, outputs: list[tuple[str, Any]]
) -> None:
    namespace: dict[str, Any] = {"Scores": Scores}
    exec(f"def f(x){returns}:\n    pass", namespace)
    fn = register(namespace["f"])
    assert outputs_of(fn) == outputs


def test_output_names_can_be_given() -> None:
    @register(outputs=["loss", "acc"])
    def train(x: int) -> tuple[float, float]:
        return 0.1, 0.9

    assert outputs_of(train) == [("loss", "number"), ("acc", "number")]

    @register(outputs=["pair"])
    def pair() -> tuple[int, int]:
        return 1, 2

    # One name for a tuple annotation: one output holding the whole tuple.
    assert outputs_of(pair) == [("pair", {"tuple": ["integer", "integer"]})]

    @register(outputs={"message": "string"})
    def greet(name):  # type: ignore[no-untyped-def]
        return name

    assert outputs_of(greet) == [("message", "string")]


def test_unannotated_parameters_are_any() -> None:
    @register
    def f(x, y=2):  # type: ignore[no-untyped-def]
        return x

    assert inputs_of(f) == [
        ("x", "any", True, "positional_or_keyword"),
        ("y", "any", False, "positional_or_keyword"),
    ]


def test_unresolvable_string_annotations_still_register() -> None:
    @register
    def f(x: NotDefinedAnywhere) -> AlsoNotDefined:  # type: ignore[name-defined]  # noqa: F821
        return x

    assert inputs_of(f) == [("x", "NotDefinedAnywhere", True, "positional_or_keyword")]
    assert outputs_of(f) == [("output", "AlsoNotDefined")]


# ---------------------------------------------------------------------------
# Registration overrides
# ---------------------------------------------------------------------------


def test_registration_overrides_types_required_and_descriptions() -> None:
    @register(
        inputs={
            "x": {"type": {"list": "integer"}, "description": "the data"},
            "y": {"required": True},
            "z": "number",
        }
    )
    def f(x, y: int = 1, z=0):  # type: ignore[no-untyped-def]
        return x

    spec = aliquot.task_spec_of(f)
    assert spec is not None
    assert [i.to_json() for i in signature_of(spec).inputs] == [
        {
            "name": "x",
            "type": {"list": "integer"},
            "required": True,
            "kind": "positional_or_keyword",
            "description": "the data",
        },
        {"name": "y", "type": "integer", "required": True, "kind": "positional_or_keyword"},
        {"name": "z", "type": "number", "required": False, "kind": "positional_or_keyword"},
    ]


def test_dioptra_style_full_input_list() -> None:
    @register(
        inputs=[
            {"name": "greeting", "parameterType": "string", "required": True},
            {"name": "name", "parameter_type": "string"},
        ],
        outputs=[{"name": "message", "parameterType": "string"}],
    )
    def hello(greeting, name="World"):  # type: ignore[no-untyped-def]
        return f"{greeting}, {name}"

    assert inputs_of(hello) == [
        ("greeting", "string", True, "positional_or_keyword"),
        ("name", "string", False, "positional_or_keyword"),
    ]
    assert outputs_of(hello) == [("message", "string")]
    run = run_one(hello, {"greeting": "Hi"})
    assert run.status == "succeeded" and run["message"] == "Hi, World"


def test_names_a_function_takes_through_kwargs_can_be_registered() -> None:
    @register(inputs={"extra": "integer"})
    def f(x: int, **kwargs: Any) -> int:
        return x

    assert inputs_of(f)[-1] == ("extra", "integer", True, "extra")
    assert Signature.from_json(sig(f)).takes_kwargs


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # an input the function does not take, and no **kwargs
        ("@register(inputs={'y': 'integer'})\ndef f(x): pass", "'y' is not a parameter"),
        (
            "@register(inputs=[{'name': 'x'}, {'name': 'y'}])\ndef f(x): pass",
            "'y' is not a parameter",
        ),
        # a full input list that leaves out a required parameter
        (
            "@register(inputs=[{'name': 'y'}])\ndef f(x, y=1): pass",
            "leave out required parameter(s) ['x']",
        ),
        # required=False for a parameter with no default
        (
            "@register(inputs={'x': {'required': False}})\ndef f(x): pass",
            "registered as not required, but the function gives it no default",
        ),
        # output names that disagree with a tuple annotation
        (
            "@register(outputs=['a', 'b', 'c'])\ndef f() -> tuple[int, int]: pass",
            "3 output name(s) ['a', 'b', 'c'] for a function whose return annotation gives 2",
        ),
        (
            "@register(outputs=['a', 'b', 'c'])\ndef f() -> Scores: pass",
            "return annotation gives 2 values",
        ),
        ("@register(outputs='a')\ndef f(): pass", "not the string 'a'"),
        ("@register(outputs=['a', 'a'])\ndef f(): pass", "'a' is given twice"),
        ("@register(outputs=['not valid'])\ndef f(): pass", "is not a valid identifier"),
        ("@register(outputs=['class'])\ndef f(): pass", "is not a valid identifier"),
        ("@register(outputs=[5])\ndef f(): pass", "is a name or a mapping"),
        ("@register(outputs=5)\ndef f(): pass", "must be a list or a mapping"),
        ("@register(inputs=[{'name': 'x'}, {'name': 'x'}])\ndef f(x): pass", "given twice"),
        ("@register(inputs={'x': {'nope': 1}})\ndef f(x): pass", "unknown key(s) ['nope']"),
        (
            "@register(inputs={'x': {'type': 'integer', 'parameterType': 'string'}})\n"
            "def f(x): pass",
            "give one of",
        ),
        (
            "@register(inputs={'x': {'type': {'set': 'integer'}}})\ndef f(x): pass",
            "unknown type structure",
        ),
        ("@register(inputs={'x': {'required': 'yes'}})\ndef f(x): pass", "must be true or false"),
    ],
)
def test_registrations_that_disagree_with_the_code_are_refused_when_registered(
    source: str, message: str
) -> None:
    namespace: dict[str, Any] = {"register": register, "Scores": Scores}
    with pytest.raises(TaskDefinitionError, match=re.escape(message)):
        exec(source, namespace)
    assert "f" not in namespace  # refused at the decorator, not later


def test_an_undefined_type_name_is_refused_when_registered() -> None:
    with pytest.raises(TaskDefinitionError, match="integr"):

        @register(inputs={"x": "integr"})
        def f(x):  # type: ignore[no-untyped-def]
            return x


def test_registration_can_type_var_positional() -> None:
    @register(inputs={"args": "integer"})
    def f(*args):  # type: ignore[no-untyped-def]
        return sum(args)

    assert inputs_of(f) == [("args", "integer", False, "var_positional")]


# ---------------------------------------------------------------------------
# Values are checked before a task runs, outputs after
# ---------------------------------------------------------------------------


def test_a_value_of_the_wrong_type_fails_the_node_before_the_task_runs() -> None:
    calls: list[object] = []

    @register
    def hello(name: str) -> str:
        calls.append(name)
        return name

    run = run_one(hello, {"name": 5})
    node = run.nodes["hello"]
    assert run.status == "failed" and node.status == "failed" and calls == []
    assert "ParameterTypeError" in node.reason
    assert node.error is not None
    spec = aliquot.task_spec_of(hello)
    assert spec is not None
    assert node.error.message == (
        f"task {spec.name!r}: parameter 'name' expects string, but 5 (int) is not a string"
    )


def test_input_type_errors_name_the_nested_item() -> None:
    @register
    def nested(xs: list[int], choice: int | None = None) -> int:
        return 0

    run = run_one(nested, {"xs": [1, "2"]})
    assert run.status == "failed"
    assert (
        "parameter 'xs' expects list[integer], but item 1: '2' (str) is not an integer"
        in run.nodes["nested"].reason
    )
    run = run_one(nested, {"xs": [], "choice": "a"})
    assert run.status == "failed"
    assert (
        "parameter 'choice' expects union[integer, null], but 'a' (str) is not one of "
        "integer, null" in run.nodes["nested"].reason
    )
    assert run_one(nested, {"xs": [1], "choice": None}).status == "succeeded"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"x": 1, "args": (1, "a")}, "parameter 'args[1]' expects integer, but 'a' (str)"),
        ({"x": 1, "kw": {"scale": 1, "a": 1}}, "parameter \"kw['a']\" expects string, but 1"),
        ({"x": 1, "kw": {"scale": "big"}}, "parameter 'scale' expects number, but 'big'"),
        ({"x": 1}, "required input 'scale' (number) has no value"),
        ({"x": 1, "args": (2, 3), "kw": {"scale": 2.5, "b": "s"}}, None),
    ],
)
def test_extra_positional_and_keyword_values_are_checked_one_by_one(
    values: dict[str, Any], message: str | None
) -> None:
    @register(inputs={"scale": "number"})
    def f(x: int, *args: int, **kw: str) -> int:
        return x

    spec = aliquot.task_spec_of(f)
    assert spec is not None
    if message is None:
        check_inputs(spec, signature_of(spec), values)
        return
    with pytest.raises(ParameterTypeError, match=re.escape(message)):
        check_inputs(spec, signature_of(spec), values)


def test_bool_is_not_an_integer_but_int_is_a_number() -> None:
    @register
    def scale(factor: float, times: int) -> float:
        return factor * times

    ok = run_one(scale, {"factor": 2, "times": 3})
    assert ok.status == "succeeded" and ok["output"] == 6
    bad = run_one(scale, {"factor": 2.0, "times": True})
    assert bad.status == "failed"
    assert "parameter 'times' expects integer, but True (bool)" in bad.nodes["scale"].reason


def test_an_output_of_the_wrong_type_fails_the_node() -> None:
    @register
    def count(x: int) -> int:
        return "many"  # type: ignore[return-value]

    run = run_one(count, {"x": 1})
    assert run.status == "failed"
    assert "output 'output' should be integer, but 'many' (str)" in run.nodes["count"].reason


def test_positional_only_and_keyword_only_parameters_are_bound_correctly() -> None:
    @register
    def place(a: int, /, b: int, *, c: int = 3) -> int:
        return a * 100 + b * 10 + c

    run = run_one(place, {"a": 1, "b": 2})
    assert run.status == "succeeded" and run["output"] == 123
    run = run_one(place, {"a": 1, "b": 2, "c": 9})
    assert run["output"] == 129


# ---------------------------------------------------------------------------
# Several outputs
# ---------------------------------------------------------------------------


def test_several_outputs_map_in_order() -> None:
    @register
    def split() -> tuple[int, str]:
        return 1, "one"

    @register
    def scores() -> Scores:
        return Scores(0.25, 0.75)

    run = run_one(split, {})
    assert run.status == "succeeded" and (run["output_0"], run["output_1"]) == (1, "one")
    run = run_one(scores, {})
    assert run.status == "succeeded" and (run["loss"], run["acc"]) == (0.25, 0.75)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2, 3), "declares 2 outputs ['output_0', 'output_1'] but returned 3 values"),
        ((1,), "but returned 1 values"),
        ("ab", "a str or bytes return is never unpacked"),
        (7, "returned a single int"),
    ],
)
def test_a_return_value_that_does_not_fit_the_outputs_fails_the_node(
    value: object, message: str
) -> None:
    @register
    def two() -> tuple[Any, Any]:
        return value  # type: ignore[return-value]

    run = run_one(two, {})
    assert run.status == "failed"
    assert message in run.nodes["two"].reason


# ---------------------------------------------------------------------------
# Static analysis of source agrees with @register on the live function
# ---------------------------------------------------------------------------

AGREEING = textwrap.dedent(
    """
    from __future__ import annotations

    import typing
    from typing import Any, Literal, NamedTuple, Optional

    import aliquot
    from aliquot import pyplugs
    from aliquot import register as reg


    class Pair(NamedTuple):
        left: int
        right: str


    @pyplugs.register
    def kinds(a: int, /, b: float = 1.0, *args: int, c: bool, d: str = "x", **kw: float) -> None:
        pass


    @reg(outputs=["loss", "acc"])
    def train(data: list[dict[str, float]], seed: Optional[int] = None) -> tuple[float, float]:
        return 0.0, 1.0


    @aliquot.register
    def pair(mode: Literal["a", "b"], extra: "tuple[int, ...]", anything: Any) -> Pair:
        return Pair(1, "x")


    @register_not_imported_so_not_a_task
    def ignored(x: int) -> int:
        return x


    @pyplugs.register(inputs={"x": {"type": "number", "required": True}})
    def typed(x, y: int | None = 2, *, z: typing.Mapping[str, bool]):
        return x
    """
)


def test_static_analysis_derives_what_register_derives() -> None:
    found = analyze(AGREEING, "agreeing.py")
    assert list(found.functions) == ["kinds", "train", "pair", "typed"]
    namespace: dict[str, Any] = {"register_not_imported_so_not_a_task": lambda f: f}
    exec(compile(AGREEING, "agreeing.py", "exec"), namespace)
    for name, static in found.functions.items():
        spec = aliquot.task_spec_of(namespace[name])
        assert spec is not None, name
        live = signature_of(spec).to_json()
        assert static.signature.to_json() == live, name


def test_static_analysis_refuses_registrations_it_cannot_check() -> None:
    with pytest.raises(TaskPluginError, match=r"x\.py:3: register\(outputs=\.\.\.\) must be"):
        analyze(
            "from aliquot import register\nN = ['a']\n@register(outputs=N)\ndef f(): pass", "x.py"
        )
    with pytest.raises(TaskPluginError, match=r"x\.py:2: register\(\) takes keyword arguments"):
        analyze("from aliquot import register\n@register('a')\ndef f(): pass", "x.py")
    with pytest.raises(TaskPluginError, match="must be a plain identifier"):
        analyze("from aliquot import register\n@register(name='a.b')\ndef f(): pass", "x.py")
    with pytest.raises(TaskPluginError, match=r"x\.py:3: task 'f': registered input 'y'"):
        analyze(
            "from aliquot import register\n@register(inputs={'y': 'integer'})\ndef f(x): pass",
            "x.py",
        )
