"""Declaring stages and aggregates: every argument and every declaration error, with the
seed's examples. Signature errors are raised when the stage is declared."""

from __future__ import annotations

from typing import Any

import pytest

import aliquot
from aliquot import (
    CachersMismatchError,
    EmptyCachersError,
    InputSignatureError,
    Lazy,
    OutputSignatureError,
    Record,
    TaskDefinitionError,
    aggregate,
    stage,
    task_spec_of,
)


def spec(obj: Any) -> aliquot.TaskSpec:
    found = task_spec_of(obj)
    assert found is not None
    return found


# ---------------------------------------------------------------- the seed's examples


def test_seed_stage_example_declares_inputs_outputs_and_cachers() -> None:
    @stage(inputs=["data", "model"], outputs=["results"], cachers=["json"])
    def test_model(record: Record, data: Any, model: Any) -> dict[str, float]:
        return {"accuracy": 1.0}

    s = spec(test_model)
    assert s.kind == "stage"
    assert s.short_name == "test_model"
    assert s.output_names == ("results",)
    assert [o.serializer for o in s.outputs] == ["json"]
    assert s.extra["stage"].inputs == ("data", "model")


def test_seed_aggregate_example_with_positional_arguments() -> None:
    @aggregate(["results"], ["final_results"], ["json"])
    def compile_results(
        record: Record, records: list[Record], results: dict[Record, float]
    ) -> dict[str, float]:
        return {r.params.name: v for r, v in results.items()}

    s = spec(compile_results)
    assert s.kind == "aggregate"
    assert s.extra["stage"].inputs == ("results",)
    assert s.output_names == ("final_results",)


def test_stage_positional_arguments_follow_the_seed_order() -> None:
    @stage(["a"], ["b", "c"], ["json", "pickle"], True)
    def step(record: Record, a: int = 0) -> tuple[int, int]:
        return a, a

    info = spec(step).extra["stage"]
    assert info.inputs == ("a",)
    assert info.suppress_missing_inputs is True
    assert [o.serializer for o in spec(step).outputs] == ["json", "pickle"]


def test_bare_decorators() -> None:
    @stage
    def side_effect(record: Record) -> None:
        return None

    @aggregate
    def summary(record: Record, records: list[Record]) -> None:
        return None

    assert spec(side_effect).output_names == ()
    assert spec(summary).kind == "aggregate"


def test_the_decorated_stage_keeps_its_name_and_the_original_function() -> None:
    def load(record: Record) -> int:
        """Docs."""
        return 1

    wrapped = stage(outputs=["x"])(load)
    assert wrapped.__name__ == "load"
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is load  # type: ignore[attr-defined]
    assert spec(wrapped).fn is load


# ---------------------------------------------------------------- InputSignatureError


def test_an_input_that_is_not_a_parameter_is_an_input_signature_error() -> None:
    with pytest.raises(InputSignatureError, match=r"\['model'\] are not parameters of train"):

        @stage(inputs=["data", "model"], outputs=["m"])
        def train(record: Record, data: Any) -> Any:
            return data


def test_an_aggregate_input_that_is_not_a_parameter_is_an_input_signature_error() -> None:
    with pytest.raises(InputSignatureError, match="not parameters"):

        @aggregate(inputs=["results"], outputs=["x"])
        def combine(record: Record, records: list[Record]) -> Any:
            return 1


def test_a_suppressed_input_without_a_default_is_an_input_signature_error() -> None:
    with pytest.raises(InputSignatureError, match=r"\['model'\] have no default"):

        @stage(inputs=["data", "model"], outputs=["out"], suppress_missing_inputs=True)
        def evaluate(record: Record, model: Any, data: Any = None) -> Any:
            return data


def test_a_stage_without_a_record_parameter_is_refused() -> None:
    with pytest.raises(InputSignatureError, match="record comes first"):

        @stage(outputs=["x"])
        def nothing() -> int:
            return 1

    with pytest.raises(InputSignatureError, match="then the list of records"):

        @aggregate(outputs=["x"])
        def only_record(record: Record) -> int:
            return 1


def test_inputs_can_arrive_through_kwargs() -> None:
    @stage(inputs=["a", "b"], outputs=["c"])
    def flexible(record: Record, **inputs: Any) -> Any:
        return inputs

    r = flexible(Record(None), a=1, b=2)
    assert r.state["c"] == {"a": 1, "b": 2}


def test_aggregates_take_no_suppress_missing_inputs() -> None:
    from aliquot_builtins.stages._spec import build_spec

    with pytest.raises(TaskDefinitionError, match="no suppress_missing_inputs"):
        build_spec(
            lambda record, records, x=1: x,
            kind="aggregate",
            inputs=["x"],
            outputs=[],
            cachers=None,
            suppress_missing_inputs=True,
            name=None,
            version=None,
            options=aliquot.TaskOptions(),
            track_reads=True,
        )


# ---------------------------------------------------------------- outputs and cachers


def test_cachers_of_the_wrong_length_are_a_cachers_mismatch_error() -> None:
    with pytest.raises(CachersMismatchError, match=r"1 cacher\(s\) for 2 output\(s\)"):

        @stage(outputs=["mean", "count"], cachers=["json"])
        def stats(record: Record) -> tuple[float, int]:
            return 1.0, 1


def test_empty_cachers_are_an_empty_cachers_error() -> None:
    with pytest.raises(EmptyCachersError, match="cachers=None"):

        @stage(outputs=["x"], cachers=[])
        def one(record: Record) -> int:
            return 1

    # The seed raises it for a stage without outputs too.
    with pytest.raises(EmptyCachersError):

        @stage(outputs=[], cachers=[])
        def none(record: Record) -> None:
            return None


def test_a_lazy_output_without_a_cacher_is_an_output_signature_error() -> None:
    with pytest.raises(OutputSignatureError, match="Lazy output 'model' has no cacher"):

        @stage(outputs=[Lazy("model")], cachers=[None])
        def train(record: Record) -> Any:
            return object()


def test_a_lazy_output_with_automatic_cachers_is_fine() -> None:
    @stage(outputs=[Lazy("model"), "score"])
    def train(record: Record) -> Any:
        return [1], 0.5

    outputs = spec(train).outputs
    assert [(o.name, o.lazy, o.serializer) for o in outputs] == [
        ("model", True, None),
        ("score", False, None),
    ]


def test_lazy_resolve_false_is_refused_with_the_reason() -> None:
    with pytest.raises(TaskDefinitionError, match="no cacher path"):

        @stage(outputs=[Lazy("model", resolve=False)], cachers=["pickle"])
        def train(record: Record) -> Any:
            return 1


def test_cacher_names_aliases_and_serializer_objects() -> None:
    class Custom:
        name = "custom"
        version = "1"
        types = (dict,)
        priority = 10

        def dumps(self, value: Any, ctx: Any) -> bytes:
            return b""

        def loads(self, data: memoryview, ctx: Any) -> Any:
            return {}

    @stage(outputs=["a", "b", "c", "d", "e"], cachers=["npy", "pkl", "json", Custom(), Custom])
    def many(record: Record) -> tuple[int, ...]:
        return 1, 2, 3, 4, 5

    assert [o.serializer for o in spec(many).outputs] == [
        "numpy",
        "pickle",
        "json",
        "custom",
        "custom",
    ]


def test_a_cacher_that_is_not_a_serializer_is_refused_by_name() -> None:
    with pytest.raises(TaskDefinitionError, match=r"cachers\[0\] \(for output 'x'\) is 42"):

        @stage(outputs=["x"], cachers=[42])
        def one(record: Record) -> int:
            return 1


def test_a_none_cacher_makes_the_stage_uncached() -> None:
    @stage(outputs=["x", "y"], cachers=["json", None])
    def half(record: Record) -> tuple[int, int]:
        return 1, 2

    s = spec(half)
    assert s.options.cache is False
    assert "output 'y' has no cacher" in s.extra["stage"].uncached


def test_cachers_none_means_any_serializer_and_cached() -> None:
    @stage(outputs=["x"])
    def auto(record: Record) -> int:
        return 1

    assert spec(auto).options.cache is None
    assert spec(auto).outputs[0].serializer is None


def test_a_stage_without_outputs_is_never_cached() -> None:
    @stage(inputs=["x"])
    def report(record: Record, x: int) -> None:
        return None

    assert spec(report).options.cache is False
    with pytest.raises(TaskDefinitionError, match="cache=True, but it has no outputs"):

        @stage(cache=True)
        def forced(record: Record) -> None:
            return None


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ("data", "outputs must be a list"),
        (["data", "data"], "output names repeat"),
        (["not valid"], "not a valid identifier"),
        (["class"], "not a valid identifier"),
        ([3], "is not a name"),
    ],
)
def test_bad_outputs(outputs: Any, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        stage(outputs=outputs)(lambda record: 1)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [("data", "inputs must be a list"), (["a", "a"], "inputs repeat"), ([1], "not a name")],
)
def test_bad_inputs(inputs: Any, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        stage(inputs=inputs)(lambda record, a=1: 1)


def test_cachers_must_be_a_list() -> None:
    with pytest.raises(TaskDefinitionError, match="cachers must be a list"):
        stage(outputs=["x"], cachers="json")(lambda record: 1)


def test_stage_options_reach_the_spec() -> None:
    @stage(outputs=["x"], retries=2, timeout=5.0, executor="threads", version="7", name="p.q")
    def opts(record: Record) -> int:
        return 1

    s = spec(opts)
    assert (s.options.retries, s.options.timeout, s.options.executor) == (2, 5.0, "threads")
    assert s.version == "7"
    assert s.name == "p.q"
    assert s.short_name == "q"


def test_track_reads_false_keys_on_the_whole_record() -> None:
    @stage(outputs=["x"], track_reads=False)
    def opaque(record: Record) -> int:
        return 1

    assert spec(opaque).extra["cache_by_reads"] == ()
    assert spec(stage(outputs=["x"])(lambda record: 1)).extra["cache_by_reads"] == ("record",)
    assert spec(aggregate(outputs=["x"])(lambda record, records: 1)).extra["cache_by_reads"] == (
        "record",
        "records",
    )


def test_stage_decorator_needs_a_function() -> None:
    with pytest.raises(TaskDefinitionError, match="needs a function"):
        stage(outputs=["x"])(int)
