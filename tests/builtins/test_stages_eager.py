"""Stages called on records outside any run execute at once (notebooks, tests)."""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from typing import Any

import attrs
import pytest

from aliquot import (
    ExecutingWithSkippedInputError,
    MissingStageInputError,
    OutputSignatureError,
    Record,
    SkippedOutput,
    TaskDefinitionError,
    aggregate,
    stage,
)


@attrs.frozen
class Params:
    name: str
    n: int = 4
    seed: int = 0


@stage(outputs=["data"], cachers=["json"])
def load(record: Record) -> list[int]:
    return list(range(record.params.n))


@stage(inputs=["data"], outputs=["mean", "count"], cachers=["json", "json"])
def stats(record: Record, data: list[int]) -> tuple[float, int]:
    return sum(data) / len(data), len(data)


@aggregate(inputs=["mean"], outputs=["best"], cachers=["json"])
def best(record: Record, records: list[Record], mean: dict[Record, float]) -> str:
    return str(max(mean, key=mean.__getitem__).params.name)


def test_stages_chain_on_a_record_and_fill_its_state() -> None:
    record = stats(load(Record(Params("a", 4))))
    assert record.state["data"] == [0, 1, 2, 3]
    assert record.state["mean"] == 1.5
    assert record.state["count"] == 4
    assert record.output == (1.5, 4)  # the last stage's return value, as in the seed
    assert record.stages == ["load", "stats"]
    assert record.name == "a"


def test_an_aggregate_gets_dicts_keyed_by_record() -> None:
    a = stats(load(Record(Params("a", 4))))
    b = stats(load(Record(Params("b", 10))))
    result = best(Record(None), [a, b])
    assert result.state["best"] == "b"
    assert result.is_aggregate
    assert result.input_records == [a, b]
    assert result.name == "aggregate"


def test_an_aggregate_leaves_out_a_record_without_the_input_and_warns() -> None:
    a = stats(load(Record(Params("a", 4))))
    bare = Record(Params("bare"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = best(Record(None), [a, bare])
    assert result.state["best"] == "a"
    assert any("record 'bare' has no 'mean'" in str(w.message) for w in caught)


def test_an_aggregate_outside_an_experiment_needs_its_records() -> None:
    with pytest.raises(TaskDefinitionError, match="needs the records"):
        best(Record(None))


def test_a_missing_input_names_the_stage_the_record_and_the_input() -> None:
    with pytest.raises(MissingStageInputError, match=r"stage 'stats' needs input 'data'.*'lonely'"):
        stats(Record(Params("lonely")))


def test_suppressed_missing_inputs_use_the_default() -> None:
    @stage(inputs=["data", "extra"], outputs=["total"], suppress_missing_inputs=True)
    def total(record: Record, data: list[int] | None = None, extra: int = 100) -> int:
        return sum(data or []) + extra

    assert total(load(Record(Params("a", 3)))).state["total"] == 103
    assert total(Record(Params("empty"))).state["total"] == 100


def test_call_keywords_override_state() -> None:
    record = load(Record(Params("a", 4)))
    assert stats(record, data=[10, 20]).state["mean"] == 15
    # positional arguments after the record bind by parameter order
    assert stats(load(Record(Params("b", 4))), [2, 4]).state["mean"] == 3


def test_too_many_positional_arguments() -> None:
    with pytest.raises(TypeError, match="takes 1 argument"):
        stats(Record(Params("a")), [1], [2])


def test_a_stage_called_on_something_else_says_so() -> None:
    with pytest.raises(TaskDefinitionError, match="call it on a Record"):
        load(Params("a"))  # type: ignore[arg-type]


def test_a_wrong_number_of_returned_values_is_an_output_signature_error() -> None:
    @stage(outputs=["a", "b"])
    def three(record: Record) -> tuple[int, int, int]:
        return 1, 2, 3

    with pytest.raises(OutputSignatureError, match=r"declares 2 outputs \['a', 'b'\].*3 values"):
        three(Record(None))

    @stage(outputs=["a", "b"])
    def single(record: Record) -> int:
        return 1

    with pytest.raises(OutputSignatureError, match="a single int"):
        single(Record(None))


def test_a_single_output_takes_the_whole_return_value_even_a_tuple() -> None:
    # The seed raises here ("returning a tuple of length 2 with one output"); a
    # tuple is a perfectly good value.
    @stage(outputs=["pair"])
    def pair(record: Record) -> tuple[int, int]:
        return 1, 2

    assert pair(Record(None)).state["pair"] == (1, 2)


def test_a_skipped_output_input_is_refused_for_stages_and_aggregates() -> None:
    record = Record(Params("s"))
    record.state["data"] = SkippedOutput(record, "load", "data", "not needed")
    with pytest.raises(ExecutingWithSkippedInputError, match="input 'data', which was never"):
        stats(record)

    other = Record(Params("t"))
    other.state["mean"] = SkippedOutput(other, "stats", "mean")
    ok = stats(load(Record(Params("u"))))
    with pytest.raises(ExecutingWithSkippedInputError, match="aggregate 'best'"):
        best(Record(None), [ok, other])


def test_make_copy_deep_copies_state_and_records_lineage() -> None:
    base = load(Record(Params("base", 3)))
    copy = base.make_copy(Params("copy", 9))
    assert copy.name == "copy"
    assert copy.params.n == 9
    assert copy.input_records == [base]
    assert copy.state["data"] == [0, 1, 2]
    copy.state["data"].append(99)
    assert base.state["data"] == [0, 1, 2]  # a deep copy, as in the seed
    same = base.make_copy()
    assert same.name == "base" and same.params is base.params


def test_record_accepts_the_seed_manager_argument() -> None:
    record = Record(None, Params("m"))
    assert record.name == "m"
    with pytest.raises(TypeError, match="one parameter set"):
        Record(1, 2, 3)
    with pytest.raises(TypeError, match="make_copy"):
        Record(Record(None))


def test_record_names() -> None:
    assert Record({"name": "from-dict"}).name == "from-dict"
    assert Record(Params("p")).name == "p"
    assert Record(None).name == "aggregate"
    assert Record(object()).name == "record"
    assert Record(None, name="explicit").name == "explicit"


def test_state_errors_name_the_record_and_what_it_has() -> None:
    record = load(Record(Params("a")))
    with pytest.raises(KeyError, match=r"record 'a' has no 'nope' in its state.*'data'"):
        record.state["nope"]
    with pytest.raises(TypeError, match="state keys are output names"):
        record.state[1] = 2  # type: ignore[index]
    del record.state["data"]
    assert "data" not in record.state and len(record.state) == 0


@dataclasses.dataclass(frozen=True)
class Sub:
    rate: float


@dataclasses.dataclass(frozen=True)
class Net:
    name: str
    encoder: Sub
    decoder: Sub


@dataclasses.dataclass(frozen=True)
class OtherNet:
    name: str
    encoder: Sub
    decoder: Sub


def test_record_hashes_do_not_collide_when_values_swap_or_classes_differ() -> None:
    # Seed bug (reproduced in reference/curifactory.md): the parameter hash sums
    # per-field digests keyed by field name, so swapped sub-fields collide, and
    # the class name is not hashed.
    a = Record(Net("x", Sub(0.1), Sub(0.5)))
    swapped = Record(Net("x", Sub(0.5), Sub(0.1)))
    other_class = Record(OtherNet("x", Sub(0.1), Sub(0.5)))
    assert a.hash is not None
    assert len({a.hash, swapped.hash, other_class.hash}) == 3
    # ... it covers the parameter values (a `name` field too), not the record's name,
    # and it covers lineage.
    assert Record(Net("x", Sub(0.1), Sub(0.5)), name="renamed").hash == a.hash
    assert Record(Net("y", Sub(0.1), Sub(0.5))).hash != a.hash
    assert a.make_copy().hash != a.hash
    assert a.get_hash() == a.hash


def test_record_hash_is_none_for_parameters_without_a_canonical_form() -> None:
    assert Record(object()).hash is None


def test_records_pickle_with_their_parameters_and_lineage() -> None:
    base = Record(Params("base"))
    copy = base.make_copy(Params("child"))
    back = pickle.loads(pickle.dumps(copy))
    assert back.name == "child"
    assert back.params == Params("child")
    assert back.input_records[0].name == "base"


def test_repr() -> None:
    assert repr(Record(Params("a"))) == "<record 'a'>"
    agg = best(Record(None), [stats(load(Record(Params("z"))))])
    assert repr(agg) == "<aggregate record 'aggregate'>"
    skipped = SkippedOutput(Record(Params("q")), "load", "data", "why")
    assert repr(skipped) == "<SkippedOutput q.data (stage 'load' skipped: why)>"


def test_stage_state_inside_a_body_is_the_declared_inputs() -> None:
    seen: dict[str, Any] = {}

    @stage(inputs=["data"], outputs=["n"])
    def peek(record: Record, data: list[int]) -> int:
        seen["state"] = dict(record.state)
        return len(data)

    peek(load(Record(Params("a", 2))))
    assert seen["state"]["data"] == [0, 1]  # eager: the record's own state
