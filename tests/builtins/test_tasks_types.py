"""Parameter types of registered tasks: the type language, annotations, checks, coercion."""

from __future__ import annotations

import collections.abc
import fractions
import pathlib
import re
import typing
from typing import Any, Literal, Optional, TypedDict, Union

import pytest

from aliquot_builtins.tasks import (
    TypeDefinitionError,
    TypeTable,
    assignable,
    check,
    coerce_text,
    describe,
    from_annotation,
    infer,
)


class Point(TypedDict):
    x: int
    label: str


class Options(TypedDict, total=False):
    verbose: bool


class Widget:
    pass


# ---------------------------------------------------------------------------
# Annotations -> types
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, "string"),
        (int, "integer"),
        (float, "number"),
        (bool, "boolean"),
        (None, "null"),
        (type(None), "null"),
        (Any, "any"),
        (object, "any"),
        (list[int], {"list": "integer"}),
        (typing.List[str], {"list": "string"}),  # noqa: UP006 (the old spelling is the point)
        (set[str], {"list": "string"}),
        (collections.abc.Sequence[float], {"list": "number"}),
        (list, {"list": "any"}),
        (tuple[int, str], {"tuple": ["integer", "string"]}),
        (tuple[int, ...], {"list": "integer"}),
        (dict[str, float], {"mapping": ["string", "number"]}),
        (typing.Dict[str, int], {"mapping": ["string", "integer"]}),  # noqa: UP006
        (dict, {"mapping": ["string", "any"]}),
        (Optional[int], {"union": ["integer", "null"]}),  # noqa: UP045
        (Union[int, str], {"union": ["integer", "string"]}),  # noqa: UP007
        (int | None, {"union": ["integer", "null"]}),
        (Union[int, Any], "any"),  # noqa: UP007 (any absorbs the union)
        (Literal["a", "b"], "string"),
        (Literal[1, "a"], {"union": ["integer", "string"]}),
        (Literal[True], "boolean"),
        (typing.Annotated[int, "meta"], "integer"),
        (Point, {"mapping": {"x": "integer", "label": "string"}}),
        (
            list[dict[str, tuple[int, bool]]],
            {"list": {"mapping": ["string", {"tuple": ["integer", "boolean"]}]}},
        ),
    ],
    ids=repr,
)
def test_annotation_maps_to_type(annotation: Any, expected: Any) -> None:
    assert from_annotation(annotation, TypeTable()) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int", "integer"),
        ("list[int]", {"list": "integer"}),
        ("Optional[str]", {"union": ["string", "null"]}),
        ("int | None", {"union": ["integer", "null"]}),
        ("tuple[int, ...]", {"list": "integer"}),
        ("dict[str, float]", {"mapping": ["string", "number"]}),
        ("Literal['a', 2]", {"union": ["string", "integer"]}),
        ("not valid python (", "any"),
    ],
)
def test_string_annotations_are_read_without_evaluating(text: str, expected: Any) -> None:
    assert from_annotation(text, TypeTable()) == expected


def test_a_class_becomes_a_named_custom_type_checked_with_isinstance() -> None:
    table = TypeTable()
    name = from_annotation(Widget, table)
    assert name == f"{Widget.__module__}.Widget"
    assert name in table and table.structure(name) == {}
    assert check(Widget(), name, table) is None
    why = check(5, name, table)
    assert why is not None and "5 (int)" in why and name in why


def test_an_unknown_name_in_a_string_annotation_becomes_a_custom_type() -> None:
    table = TypeTable()
    assert from_annotation("SomeModel", table) == "SomeModel"
    assert "SomeModel" in table


def test_empty_tuple_annotation_is_an_empty_tuple_type() -> None:
    table = TypeTable()
    typ = from_annotation(tuple[()], table)
    assert typ == {"tuple": []}
    assert check((1,), typ, table) is not None


def test_optional_typeddict_keys_may_be_left_out() -> None:
    table = TypeTable()
    assert check({}, from_annotation(Options, table), table) is None


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "typ", "ok"),
    [
        ("x", "string", True),
        (1, "string", False),
        (1, "integer", True),
        (True, "integer", False),  # bool is not an integer
        (1.0, "integer", False),
        (1, "number", True),  # an int is a number
        (1.5, "number", True),
        (False, "number", False),
        (True, "boolean", True),
        (0, "boolean", False),
        (None, "null", True),
        (0, "null", False),
        (object(), "any", True),
        ([1, 2], {"list": "integer"}, True),
        ((1, 2), {"list": "integer"}, True),
        ([1, "2"], {"list": "integer"}, False),
        ("12", {"list": "string"}, False),  # a str is not a list of characters
        ([1, "a"], {"tuple": ["integer", "string"]}, True),
        ([1], {"tuple": ["integer", "string"]}, False),
        ({"a": 1.5}, {"mapping": ["string", "number"]}, True),
        ({1: 1.5}, {"mapping": ["string", "number"]}, False),
        ({"a": "x"}, {"mapping": ["string", "number"]}, False),
        ({"x": 1, "label": "a"}, {"mapping": {"x": "integer", "label": "string"}}, True),
        ({"x": 1}, {"mapping": {"x": "integer", "label": "string"}}, False),
        ({"x": 1, "label": "a", "z": 0}, {"mapping": {"x": "integer", "label": "string"}}, False),
        ([1], {"mapping": ["string", "any"]}, False),
        (None, {"union": ["integer", "null"]}, True),
        ("a", {"union": ["integer", "null"]}, False),
        (3, {"is_a": "integer"}, True),
        ("3", {"is_a": "integer"}, False),
    ],
    ids=repr,
)
def test_check(value: Any, typ: Any, ok: bool) -> None:
    why = check(value, typ, TypeTable())
    assert (why is None) is ok, why


@pytest.mark.parametrize(
    ("value", "typ", "message"),
    [
        (True, "integer", "True (bool) is not an integer"),
        ([1, "x"], {"list": "integer"}, "item 1: 'x' (str) is not an integer"),
        (
            {"a": [1, {"b": "x"}]},
            {"mapping": {"a": {"tuple": ["integer", {"mapping": {"b": "integer"}}]}}},
            "key 'a': item 1: key 'b': 'x' (str) is not an integer",
        ),
        ({1: 2}, {"mapping": ["string", "integer"]}, "key 1: 1 (int) is not a string"),
        ([1, 2, 3], {"tuple": ["integer", "integer"]}, "[1, 2, 3] has 3 items, not 2"),
        ({"x": 1}, {"mapping": {"x": "integer", "y": "integer"}}, "missing key(s) ['y']"),
        ("a", {"union": ["integer", "null"]}, "'a' (str) is not one of integer, null"),
        (1, "nosuchtype", "type 'nosuchtype' is not defined"),
    ],
)
def test_check_messages_say_where_and_why(value: Any, typ: Any, message: str) -> None:
    why = check(value, typ, TypeTable())
    assert why is not None and message in why, why


def test_long_values_are_shortened_in_messages() -> None:
    why = check("x" * 500, "integer", TypeTable())
    assert why is not None and len(why) < 120 and "..." in why


def test_named_custom_types() -> None:
    table = TypeTable(
        {
            "labels": {"list": "string"},
            "score": {"is_a": "number"},
            "config": {"mapping": {"name": "string", "score": "score"}},
            "opaque": {},
        }
    )
    assert check(["a"], "labels", table) is None
    assert check([1], "labels", table) == "item 0: 1 (int) is not a string"
    assert check(0.5, "score", table) is None
    assert check("high", "score", table) is not None
    assert check({"name": "a", "score": 1}, "config", table) is None
    assert check({"name": "a", "score": "x"}, "config", table) is not None
    assert check(object(), "opaque", table) is None  # a simple type names, it does not check


def test_a_dotted_custom_type_naming_an_imported_class_is_checked_with_isinstance() -> None:
    table = TypeTable({"fractions.Fraction": {}})
    assert check(fractions.Fraction(1, 3), "fractions.Fraction", table) is None
    assert check(0.3, "fractions.Fraction", table) is not None


def test_a_recursive_custom_type_does_not_overflow_the_stack() -> None:
    table = TypeTable({"tree": {"list": "tree"}})
    assert check([[], [[]]], "tree", table) is None
    loop: list[Any] = []
    loop.append(loop)
    why = check(loop, "tree", table)
    assert why is not None and "nests too deeply" in why


# ---------------------------------------------------------------------------
# Type tables and expressions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "structure", "message"),
    [
        ("integer", {}, "clashes with a builtin"),
        ("", {}, "clashes with a builtin"),
        ("has space", {}, "not a dotted identifier"),
        ("t", {"list": "a", "tuple": ["b"]}, "is not a type"),
        ("t", {"set": "integer"}, "unknown type structure 'set'"),
        ("t", {"union": []}, "takes a list of types"),
        ("t", {"tuple": "integer"}, "takes a list of types"),
        ("t", {"mapping": ["string"]}, "takes [key type, value type]"),
        ("t", {"mapping": "string"}, "takes [key type, value type]"),
        ("t", 5, "is not a type"),
        ("t", {"list": ""}, "empty type name"),
    ],
)
def test_bad_type_definitions_are_refused(name: str, structure: Any, message: str) -> None:
    with pytest.raises(TypeDefinitionError, match=re.escape(message)):
        TypeTable({name: structure})


def test_a_type_defined_twice_must_agree() -> None:
    table = TypeTable({"ids": {"list": "integer"}})
    table.define("ids", {"list": "integer"})  # the same again is fine
    with pytest.raises(TypeDefinitionError, match="defined twice, differently"):
        table.define("ids", {"list": "string"})


def test_undefined_names_are_listed() -> None:
    table = TypeTable({"known": {}})
    expr = {"mapping": {"a": "known", "b": {"list": "unknown"}, "c": "integer"}}
    assert table.undefined(expr) == ["unknown"]


@pytest.mark.parametrize(
    ("typ", "text"),
    [
        ("integer", "integer"),
        ({"list": "string"}, "list[string]"),
        ({"mapping": ["string", "number"]}, "mapping[string, number]"),
        ({"mapping": {"a": "integer"}}, "mapping{a: integer}"),
        ({"union": ["string", "null"]}, "union[string, null]"),
        ({"tuple": ["integer", "boolean"]}, "tuple[integer, boolean]"),
        ({"is_a": "number"}, "is_a[number]"),
    ],
)
def test_describe(typ: Any, text: str) -> None:
    assert describe(typ) == text


# ---------------------------------------------------------------------------
# assignable
# ---------------------------------------------------------------------------

PURE = f"{pathlib.PurePath.__module__}.PurePath"
POSIX = f"{pathlib.PurePosixPath.__module__}.PurePosixPath"
TABLE = TypeTable({"score": {"is_a": "number"}, "labels": {"list": "string"}, PURE: {}, POSIX: {}})


@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [
        ("integer", "integer", True),
        ("integer", "number", True),
        ("number", "integer", False),
        ("boolean", "integer", False),
        ("string", "any", True),
        ("any", "integer", True),  # checked when the value arrives
        ({"union": ["integer", "null"]}, "integer", False),
        ({"union": ["integer", "number"]}, "number", True),
        ("integer", {"union": ["string", "number"]}, True),
        ({"list": "integer"}, {"list": "number"}, True),
        ({"list": "number"}, {"list": "integer"}, False),
        ({"tuple": ["integer", "integer"]}, {"list": "number"}, True),
        ({"list": "integer"}, {"tuple": ["integer"]}, False),
        ({"tuple": ["integer"]}, {"tuple": ["integer", "integer"]}, False),
        ({"mapping": ["string", "integer"]}, {"mapping": ["string", "number"]}, True),
        ({"mapping": {"a": "integer"}}, {"mapping": ["string", "number"]}, True),
        ({"mapping": ["string", "integer"]}, {"mapping": {"a": "integer"}}, False),
        ({"mapping": {"a": "integer"}}, {"mapping": {"a": "number"}}, True),
        ({"mapping": {"a": "integer"}}, {"mapping": {"b": "integer"}}, False),
        ("score", "number", True),  # a refinement fits its base
        ("number", "score", False),  # but not the other way round
        ("labels", {"list": "string"}, True),  # a named structure is its structure
        ({"list": "string"}, "labels", True),
        ("labels", {"list": "integer"}, False),
        (POSIX, PURE, True),  # classes: subclasses fit
        (PURE, POSIX, False),
    ],
    ids=repr,
)
def test_assignable(src: Any, dst: Any, ok: bool) -> None:
    assert assignable(src, dst, TABLE) is ok


# ---------------------------------------------------------------------------
# coerce_text (command-line values) and infer (defaults written in documents)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "typ", "value"),
    [
        ("hello", "string", "hello"),
        ("5", "string", "5"),
        ("5", "integer", 5),
        ("-5", "integer", -5),
        ("5", "number", 5),
        ("5.5", "number", 5.5),
        ("1e3", "number", 1000.0),
        ("true", "boolean", True),
        ("Yes", "boolean", True),
        ("0", "boolean", False),
        ("off", "boolean", False),
        ("null", "null", None),
        ("", "null", None),
        ("[1, 2]", {"list": "integer"}, [1, 2]),
        ('{"a": 1.5}', {"mapping": ["string", "number"]}, {"a": 1.5}),
        ("5", {"union": ["integer", "string"]}, 5),
        ("hello", {"union": ["integer", "string"]}, "hello"),
        ("hello", "any", "hello"),
    ],
)
def test_coerce_text(text: str, typ: Any, value: Any) -> None:
    result = coerce_text(text, typ, TypeTable())
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    ("text", "typ", "message"),
    [
        ("x", "integer", "'x' is not an integer"),
        ("5.5", "integer", "is not an integer"),
        ("abc", "number", "is not a number"),
        ("nan", "number", "not a finite number"),
        ("inf", "number", "not a finite number"),
        ("maybe", "boolean", "is not a boolean"),
        ("0", "null", "is not null"),
        ('[1, "a"]', {"list": "integer"}, "item 1: 'a' (str) is not an integer"),
        ("hello", {"list": "string"}, "is not a list"),
    ],
)
def test_coerce_text_refuses_with_the_reason(text: str, typ: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        coerce_text(text, typ, TypeTable())


@pytest.mark.parametrize(
    ("value", "typ"),
    [
        ("World", "string"),
        (3, "integer"),
        (True, "boolean"),
        (0.5, "number"),
        ([1], {"list": "any"}),
        ({"a": 1}, {"mapping": ["string", "any"]}),
        (None, "any"),
    ],
)
def test_infer(value: Any, typ: Any) -> None:
    assert infer(value) == typ
