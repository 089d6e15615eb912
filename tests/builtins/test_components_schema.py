"""``spec/component.schema.json``: every encoded document validates; broken ones do not."""

from __future__ import annotations

import copy
import json
import math
import typing as t
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest

import aliquot
from aliquot import Component
from aliquot_builtins.components import ComponentError, Encoded

SCHEMA_PATH = Path(__file__).parents[2] / "spec" / "component.schema.json"


def act(**kwargs: Any) -> dict[str, Any]:
    return kwargs


class Leaf(Component):
    v: int = 0
    arr: t.Any = None


class Branch(Component):
    leaf: Leaf | None = None
    leaves: list = []
    table: dict = {}


class Everything(Component):
    none: t.Any = None
    flag: bool = True
    text: str = "é ☃"
    small: int = -5
    big: int = 2**80
    ratio: float = 0.25
    special: list = [math.nan, math.inf, -math.inf]
    pair: tuple = (1, ("a", None))
    escaped: dict = {"$k": {"$j": 1}, "plain": 2}
    keyed: dict = {1: "one", (2, 3): [4]}
    array: t.Any = None
    fn: t.Callable | None = act
    raw: bytes = b"\x00\x01"
    branch: Branch | None = None


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def kernel(store_path: Path) -> Iterator[aliquot.Kernel]:
    kernel = aliquot.Kernel.open(str(store_path))
    yield kernel
    kernel.close()


def _samples() -> list[Component]:
    leaf = Leaf("l1", v=1, arr=np.arange(6).reshape(2, 3))
    return [
        Leaf("bare"),
        leaf,
        Branch("b1", leaf=leaf, leaves=[leaf, Leaf("l2", v=2)], table={"x": Leaf("l3")}),
        Everything("all", array=np.eye(3), branch=Branch("b2", leaf=Leaf("l4"))),
        Everything("x" * 100, fn=None, special=[], keyed={}),
    ]


def _errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(doc)]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("index", range(5))
def test_encoded_documents_validate(validator: jsonschema.protocols.Validator, index: int) -> None:
    component = _samples()[index]
    encoded = component.encode()
    doc = orjson.loads(encoded.json())
    assert _errors(validator, doc) == []
    assert type(component).decode(Encoded(doc, encoded.blobs)) == component


def test_the_big_sample_uses_every_tag(validator: jsonschema.protocols.Validator) -> None:
    text = _samples()[3].encode().json().decode()
    for tag in ("$blob", "$component", "$tuple", "$dict", "$items", "$int", "$float"):
        assert f'"{tag}"' in text, tag


def test_stored_records_validate(
    validator: jsonschema.protocols.Validator, kernel: aliquot.Kernel
) -> None:
    top = _samples()[3]
    applied = kernel.apply(top, jobs=False)
    assert [c.action for c in applied.components] == ["new"] * len(applied.components)
    assert len(applied.components) == 3  # Leaf l4, Branch b2, Everything
    for key, raw in kernel.store.scan("components"):
        record = orjson.loads(raw)
        assert "builds" not in record["document"], key
        assert _errors(validator, record["document"]) == [], key


def _valid() -> dict[str, Any]:
    return _samples()[2].encode().document


@pytest.mark.parametrize("key", ["format", "type", "class", "identifier", "uuid", "hash", "fields"])
def test_missing_required_key_is_rejected(
    validator: jsonschema.protocols.Validator, key: str
) -> None:
    doc = _valid()
    del doc[key]
    assert _errors(validator, doc) == [f"'{key}' is a required property"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("uuid", "0" * 19),
        ("uuid", "0" * 21),
        ("uuid", "A" * 20),
        ("uuid", "g" * 20),
        ("hash", "0" * 63),
        ("format", "aliquot.component/2"),
        ("identifier", ""),
        ("identifier", "a b"),
        ("identifier", "x" * 101),
        ("class", "no-colon"),
        ("type", "Has Space"),
        ("fields", []),
    ],
)
def test_bad_top_level_values_are_rejected(
    validator: jsonschema.protocols.Validator, key: str, value: Any
) -> None:
    doc = _valid()
    doc[key] = value
    assert _errors(validator, doc), (key, value)


def test_unknown_top_level_key_is_rejected(validator: jsonschema.protocols.Validator) -> None:
    doc = _valid()
    doc["extra"] = 1
    assert any("Additional properties" in m for m in _errors(validator, doc))


@pytest.mark.parametrize(
    "value",
    [
        {"$set": [1]},
        {"$tuple": 1},
        {"$tuple": [1], "more": 2},
        {"$int": "12a"},
        {"$int": 12},
        {"$float": "NaN"},
        {"$float": 1.0},
        {"$items": [[1]]},
        {"$items": [[1, 2, 3]]},
        {"$dict": [1]},
        {"$component": "Leaf:l1"},
        {"$component": "Leaf:l1:" + "0" * 19},
        {"$blob": {"digest": "0" * 64}},
        {
            "$blob": {
                "digest": "x",
                "size": 1,
                "serializer": "numpy",
                "serializer_version": "1",
                "type": "t",
                "content": "0" * 64,
            }
        },
        {
            "$blob": {
                "digest": "0" * 64,
                "size": -1,
                "serializer": "numpy",
                "serializer_version": "1",
                "type": "t",
                "content": "0" * 64,
            }
        },
        {"plain": {"$oops": 1}},
        [{"$bad": 1}],
    ],
)
def test_bad_field_values_are_rejected(
    validator: jsonschema.protocols.Validator, value: Any
) -> None:
    doc = _valid()
    doc["fields"]["leaf"] = value
    assert _errors(validator, doc), value


def test_bad_field_names_are_rejected(validator: jsonschema.protocols.Validator) -> None:
    doc = _valid()
    doc["fields"]["_private"] = 1
    assert _errors(validator, doc)


def test_nested_build_rules(validator: jsonschema.protocols.Validator) -> None:
    doc = _valid()
    huuid = next(iter(doc["builds"]))
    nested_builds = copy.deepcopy(doc)
    nested_builds["builds"][huuid]["builds"] = {}
    assert _errors(validator, nested_builds)
    bad_key = copy.deepcopy(doc)
    bad_key["builds"]["Leaf:l1"] = bad_key["builds"].pop(huuid)
    assert _errors(validator, bad_key)
    missing = copy.deepcopy(doc)
    del missing["builds"][huuid]["uuid"]
    assert _errors(validator, missing) == ["'uuid' is a required property"]


def test_dict_with_an_empty_key_validates(validator: jsonschema.protocols.Validator) -> None:
    encoded = Leaf("l", arr={"": 1, "a": {"": 2}}).encode()
    assert encoded.document["fields"]["arr"] == {"": 1, "a": {"": 2}}
    assert _errors(validator, encoded.document) == []


def test_decode_refuses_wrong_format_even_if_otherwise_valid(
    validator: jsonschema.protocols.Validator,
) -> None:
    doc = _valid()
    doc["format"] = "superduper/0"
    assert _errors(validator, doc)
    with pytest.raises(ComponentError, match="format is 'superduper/0'"):
        Branch.decode(Encoded(doc, {}))
