"""The ``json`` serializer: the format contract of its module docstring.

Rules checked here: values come back as the *same types*, recursively; plain
JSON takes the ``J`` fast path and anything tagged the ``T`` path; ``dumps``
is deterministic (sets canonical); subclasses of builtin types are refused so
pickle takes them; classes named in tags are only looked up among modules
already imported, and must be of the tagged kind; damaged payloads raise
:class:`aliquot.SerializationError`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import math
import os
import pathlib
import random
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import attrs
import orjson
import pytest

import aliquot
from aliquot import SerializationError, SerializerContext
from aliquot.testing import check_serializer, make_kernel
from aliquot_builtins.serializer_json import JsonSerializer

CTX = SerializerContext("jsontest", lambda purpose: hashlib.sha256(purpose.encode()).digest())
JSON = JsonSerializer()


# --------------------------------------------------------------------------- module-level types
# (tags name classes by module:qualname, so they must live at module level)


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Mode(enum.StrEnum):
    FAST = "fast"
    SLOW = "slow"


@attrs.define
class Point:
    x: int
    y: Any = 0
    _secret: str = "s"  # init alias "secret"
    label: str = attrs.field(init=False, default="pt")


@attrs.frozen
class Stamp:
    items: tuple[Any, ...]
    when: dt.date


@dataclasses.dataclass
class Item:
    name: str
    tags: frozenset[str]
    size: float = 0.0
    derived: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.derived = self.name.upper()


@dataclasses.dataclass(frozen=True)
class Key:
    a: int
    b: str


class Pair(NamedTuple):
    left: Any
    right: Any = None


Legacy = collections.namedtuple("Legacy", "a b")


# Subclasses of builtin types: JSON must refuse them (pickle keeps their type).
class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MyTuple(tuple):  # type: ignore[type-arg]
    pass


class MySet(set):  # type: ignore[type-arg]
    pass


class MyBytes(bytes):
    pass


TRIPWIRE_CALLS: list[tuple[Any, ...]] = []


class Tripwire:
    """A class whose construction is recorded: a refused tag must never build it."""

    _fields = ("a",)  # looks a little like a namedtuple

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        TRIPWIRE_CALLS.append((args, kwargs))


# --------------------------------------------------------------------------- helpers


def roundtrip(value: Any) -> tuple[bytes, Any]:
    data = b"".join(bytes(memoryview(p)) for p in _parts(JSON.dumps(value, CTX)))
    return data, JSON.loads(memoryview(data), CTX)


def _parts(out: Any) -> list[Any]:
    return [out] if isinstance(out, (bytes, bytearray, memoryview)) else list(out)


def assert_identical(a: Any, b: Any, path: str = "value") -> None:
    """Equal and of exactly the same types, recursively (sets, fields, tz offsets too)."""
    assert type(a) is type(b), f"{path}: {type(a).__qualname__} came back as {type(b).__qualname__}"
    if isinstance(a, float):
        if math.isnan(a):
            assert math.isnan(b), f"{path}: nan came back as {b!r}"
        else:
            assert a == b, f"{path}: {a!r} -> {b!r}"
            assert math.copysign(1, a) == math.copysign(1, b), f"{path}: {a!r} -> {b!r}"
        return
    if isinstance(a, complex):
        assert_identical(a.real, b.real, path + ".real")
        assert_identical(a.imag, b.imag, path + ".imag")
        return
    if isinstance(a, decimal.Decimal):
        assert str(a) == str(b), f"{path}: {a!r} came back as {b!r}"
        return
    if isinstance(a, (dt.datetime, dt.time)):
        assert a == b, f"{path}: {a!r} came back as {b!r}"
        assert a.isoformat() == b.isoformat(), f"{path}: {a!r} came back as {b!r}"
        assert a.utcoffset() == b.utcoffset(), (
            f"{path}: tz offset {a.utcoffset()} -> {b.utcoffset()}"
        )
        return
    if isinstance(a, enum.Enum):
        assert a is b, f"{path}: {a!r} came back as {b!r}"
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} came back as {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{i}]")
        return
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)[:5]} came back as {list(b)[:5]}"
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert_identical(ka, kb, f"{path}.key({ka!r})")
            assert_identical(va, vb, f"{path}[{ka!r}]")
        return
    if isinstance(a, (set, frozenset)):
        assert a == b, f"{path}: {a!r} came back as {b!r}"
        by_key = {x: x for x in b}
        for x in a:
            assert_identical(x, by_key[x], f"{path}{{{x!r}}}")
        return
    if attrs.has(type(a)):
        for f in attrs.fields(type(a)):
            assert_identical(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
        return
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_identical(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
        return
    assert a == b, f"{path}: {a!r} came back as {b!r}"


UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NST = dt.timezone(dt.timedelta(hours=-3, minutes=-30))

# One sample per tagged kind of the docstring table (kind -> value).
TAGGED: dict[str, Any] = {
    "tuple": (1, "a", None),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "dict-nonstr-keys": {1: "a", 2.5: "b", None: "c", (1, 2): "d", frozenset({3}): "e"},
    "dict-user-$t-key": ({"$t": "tuple", "v": [1, 2]},),
    "float-nan": math.nan,
    "float-inf": math.inf,
    "float-minus-inf": -math.inf,
    "int-big": 2**64,
    "int-big-negative": -(2**63) - 1,
    "bytes": b"\x00\xffbytes",
    "bytearray": bytearray(b"\x01\x02"),
    "datetime": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "datetime-utc": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    "datetime-offset": dt.datetime(1999, 12, 31, 23, 0, tzinfo=NST),
    "date": dt.date(2024, 2, 29),
    "time": dt.time(12, 30, 15, 999),
    "time-tz": dt.time(8, 0, tzinfo=IST),
    "timedelta": dt.timedelta(days=-3, seconds=5, microseconds=7),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("1.10"),
    "complex": complex(1.5, -2.0),
    "path": pathlib.Path("/tmp/some/file.txt"),
    "pure-posix-path": pathlib.PurePosixPath("rel/path"),
    "pure-windows-path": pathlib.PureWindowsPath(r"C:\Users\x\file.txt"),
    "enum": Color.PAIR,
    "int-enum": Level.HIGH,
    "flag": Perm.R | Perm.W,
    "str-enum": Mode.FAST,
    "attrs": Point(3, (4, 5), secret="hidden"),
    "attrs-frozen": Stamp((1, {2}), dt.date(2020, 1, 1)),
    "dataclass": Item("box", frozenset({"x", "y"}), 2.5),
    "dataclass-frozen": Key(1, "b"),
    "namedtuple": Pair((1, 2), {"k": (3,)}),
    "collections-namedtuple": Legacy(1, b"2"),
}

PLAIN: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "int64-min": -(2**63),
    "uint64-max": 2**64 - 1,
    "float": 1.5,
    "minus-zero": -0.0,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "empty-str": "",
    "unicode": "héllo wörld ✓ 𝄞 日本語 \x00 \u2028",
    "empty-list": [],
    "empty-dict": {},
    "nested": {"a": [1, 2.5, "x", None, True, {"b": [], "c": {}}], "d": {"e": {"f": [[[]]]}}},
    "user-$t-key": {"$t": "tuple", "v": [1, 2]},
}

MIXES: dict[str, Any] = {
    "empty-tuple": (),
    "empty-set": set(),
    "empty-frozenset": frozenset(),
    "empty-bytes": b"",
    "tuple-in-dict-in-list": [{"k": (1, (2, 3), [4, (5,)])}],
    "set-of-tuples": {(1, 2), (3, "4"), ()},
    "set-of-mixed": {1, "a", None, (2, 3), frozenset({4}), 2.5, Key(1, "x"), Color.RED},
    "frozenset-of-frozensets": frozenset({frozenset({1}), frozenset({"a", 2})}),
    "dict-with-$t-and-tagged-values": {"$t": "set", "v": (1, 2), "w": {3}},
    "list-with-$t-dict-and-tuple": [{"$t": "x"}, (1,)],
    "enum-keys": {Color.RED: (1, {2}), Level.LOW: "low"},
    "big-ints-nested": [2**100, -(10**40), {"n": (2**64, 2**64 - 1)}],
    "floats-nested": (math.nan, -0.0, [math.inf, -math.inf], {"x": 1e-300}),
    "complex-special": complex(-0.0, math.inf),
    "decimal-variants": (
        decimal.Decimal("-0"),
        decimal.Decimal("1E+3"),
        decimal.Decimal("-Infinity"),
    ),
    "datetime-microseconds-tz": [dt.datetime(2001, 1, 1, 0, 0, 0, 1, tzinfo=IST)],
    "attrs-in-dataclass-in-namedtuple": Pair(Item("n", frozenset()), Point(1, Point(2))),
    "dict-int-and-str-keys": {1: "int", "1": "str", 0.5: "float", False: "bool"},
    "unicode-keys": {"ключ": "значение", "𝄞": ("🎵",)},
    "deep-mix": [(i, {"i": {i}}, [i, (i,)]) for i in range(20)],
}


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 3 == 0 else ({"k": value} if i % 3 == 1 else (value, i))
    return value


MIXES["nested-60-levels"] = _deep(60)


# --------------------------------------------------------------------------- conformance


def test_conformance_kit_passes_with_rich_samples() -> None:
    """check_serializer: every tagged kind, plain values and nested mixes round-trip."""
    check_serializer(JSON, [*TAGGED.values(), *PLAIN.values(), *MIXES.values()])


@pytest.mark.parametrize(
    "value", [*TAGGED.values(), *PLAIN.values(), *MIXES.values()],
    ids=[*TAGGED, *PLAIN, *MIXES],
)  # fmt: skip
def test_roundtrip_preserves_exact_types_recursively(value: Any) -> None:
    """Every value comes back equal with the same types at every level (and same tz offsets)."""
    _, loaded = roundtrip(value)
    assert_identical(value, loaded)


def test_dict_with_int_and_bool_keys_keeps_key_types() -> None:
    """Non-string keys keep their exact type (1 stays int, True stays bool, 1.5 float)."""
    value = {1: "a", 1.5: "b", False: "c", None: "d"}
    _, loaded = roundtrip(value)
    assert [type(k) for k in loaded] == [int, float, bool, type(None)]


def test_minus_zero_keeps_its_sign_on_both_paths() -> None:
    """-0.0 is preserved on the J path and inside tagged values."""
    for value in (-0.0, [-0.0], (-0.0,), {"z": -0.0}):
        _, loaded = roundtrip(value)
        assert_identical(value, loaded)


def test_special_values_that_are_not_equal_to_themselves() -> None:
    """nan (float, complex, Decimal) round-trip as nan of the same type."""
    _, loaded = roundtrip((math.nan, complex(math.nan, 1), decimal.Decimal("NaN")))
    assert math.isnan(loaded[0])
    assert type(loaded[1]) is complex
    assert math.isnan(loaded[1].real)
    assert loaded[1].imag == 1
    assert type(loaded[2]) is decimal.Decimal
    assert loaded[2].is_nan()


def test_aware_datetime_keeps_offset_not_only_instant() -> None:
    """An aware datetime keeps its offset (equality alone would hide a shift to UTC)."""
    value = dt.datetime(2024, 6, 1, 12, 0, tzinfo=NST)
    _, loaded = roundtrip({"when": [value]})
    got = loaded["when"][0]
    assert got.utcoffset() == dt.timedelta(hours=-3, minutes=-30)
    assert got.hour == 12


def test_attrs_private_attribute_and_init_false_field() -> None:
    """attrs: private attributes travel under their init alias; init=False fields get defaults."""
    value = Point(1, 2, secret="hidden")
    data, loaded = roundtrip(value)
    node = orjson.loads(data[1:])
    assert node["$t"] == "attrs"
    assert node["c"] == f"{__name__}:Point"
    assert set(node["v"]) == {"x", "y", "secret"}
    assert loaded == value
    assert loaded._secret == "hidden"
    assert loaded.label == "pt"


def test_dataclass_init_false_field_recomputed() -> None:
    """dataclass: only init fields are stored; __post_init__ recomputes the others."""
    data, loaded = roundtrip(Item("abc", frozenset({"t"})))
    node = orjson.loads(data[1:])
    assert set(node["v"]) == {"name", "tags", "size"}
    assert loaded.derived == "ABC"


def test_namedtuple_tag_names_its_class() -> None:
    """A NamedTuple is tagged ``namedtuple`` with ``module:qualname``, not as a plain tuple."""
    data, loaded = roundtrip(Pair(1, 2))
    node = orjson.loads(data[1:])
    assert node == {"$t": "namedtuple", "c": f"{__name__}:Pair", "v": [1, 2]}
    assert type(loaded) is Pair


# --------------------------------------------------------------------------- J / T paths


@pytest.mark.parametrize("value", list(PLAIN.values()), ids=list(PLAIN))
def test_plain_values_use_the_J_fast_path(value: Any) -> None:
    """Plain JSON (str-keyed dicts, lists, str, 64-bit ints, finite floats, bools, None) -> b"J"."""
    data, _ = roundtrip(value)
    assert data[:1] == b"J"
    assert orjson.loads(data[1:]) == value


@pytest.mark.parametrize("value", list(TAGGED.values()), ids=list(TAGGED))
def test_tagged_values_use_the_T_path(value: Any) -> None:
    """Anything needing a type tag -> b"T" and the JSON carries a ``{"$t": ...}`` object."""
    data, _ = roundtrip(value)
    assert data[:1] == b"T"
    assert b'"$t"' in data


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ((1,), "tuple"),
        ({1}, "set"),
        (frozenset({1}), "frozenset"),
        ({1: 2}, "dict"),
        (math.nan, "float"),
        (2**64, "int"),
        (b"x", "bytes"),
        (bytearray(b"x"), "bytearray"),
        (dt.datetime(2020, 1, 1), "datetime"),
        (dt.date(2020, 1, 1), "date"),
        (dt.time(1, 2), "time"),
        (dt.timedelta(1), "timedelta"),
        (uuid.UUID(int=1), "uuid"),
        (decimal.Decimal("1"), "decimal"),
        (1j, "complex"),
        (pathlib.PurePosixPath("a"), "path"),
        (Color.RED, "enum"),
        (Point(1), "attrs"),
        (Key(1, "b"), "dataclass"),
        (Pair(1), "namedtuple"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_tag_kind_names_match_the_docstring_table(value: Any, kind: str) -> None:
    """The top-level tag of each kind is the name in the module docstring's table."""
    data, _ = roundtrip(value)
    assert orjson.loads(data[1:])["$t"] == kind


def test_user_dollar_t_key_is_data_not_a_tag() -> None:
    """A user dict with a "$t" key is never read as a tag, at top level (J) or nested (T)."""
    fake_tag = {"$t": "set", "v": [1, 2]}
    data, loaded = roundtrip(fake_tag)
    assert data[:1] == b"J"
    assert type(loaded) is dict
    assert loaded == fake_tag
    data, loaded = roundtrip([fake_tag, (1,)])
    assert data[:1] == b"T"
    assert type(loaded[0]) is dict
    assert loaded[0] == fake_tag


def test_int_range_boundaries() -> None:
    """Ints in orjson's 64-bit range stay plain; one beyond either end is tagged as a string."""
    assert roundtrip(2**64 - 1)[0][:1] == b"J"
    assert roundtrip(-(2**63))[0][:1] == b"J"
    for big in (2**64, -(2**63) - 1, 10**1000 + 1):
        data, loaded = roundtrip(big)
        assert data[:1] == b"T"
        assert loaded == big
        assert type(loaded) is int


# --------------------------------------------------------------------------- determinism


def test_dumps_is_deterministic() -> None:
    """Same value -> same bytes, for every sample."""
    for value in [*TAGGED.values(), *PLAIN.values(), *MIXES.values()]:
        assert JSON.dumps(value, CTX) == JSON.dumps(value, CTX)


def _set_in_order(items: list[Any]) -> set[Any]:
    s: set[Any] = set()
    for x in items:
        s.add(x)
    return s


def test_equal_sets_with_different_insertion_order_give_equal_bytes() -> None:
    """Sets are written in a canonical order: iteration order does not leak into the bytes."""
    items = [1, 9, 17, 25, 33, "a", (1, 2), None, 2.5, frozenset({8, 16})]
    forward = _set_in_order(items)
    backward = _set_in_order(items[::-1])
    assert forward == backward
    assert list(forward) != list(backward), "precondition: iteration orders differ"
    assert JSON.dumps(forward, CTX) == JSON.dumps(backward, CTX)
    assert JSON.dumps(frozenset(forward), CTX) == JSON.dumps(frozenset(backward), CTX)
    # ...also nested, and inside a dict.
    assert JSON.dumps({"s": [forward]}, CTX) == JSON.dumps({"s": [backward]}, CTX)


def test_string_sets_give_the_same_bytes_under_different_hash_seeds() -> None:
    """Set bytes do not depend on PYTHONHASHSEED (a cache key must be stable across processes)."""
    script = (
        "import hashlib\n"
        "from aliquot import SerializerContext\n"
        "from aliquot_builtins.serializer_json import JsonSerializer\n"
        "ctx = SerializerContext('x', lambda p: b'k' * 32)\n"
        "v = {'alpha', 'beta', 'gamma', 'delta', ('t', 'u'), frozenset({'p', 'q', 'r'})}\n"
        "print(b''.join(JsonSerializer().dumps({'s': v}, ctx)).hex())\n"
    )
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(result.stdout.strip())
    assert len(outputs) == 1


def test_dict_of_100000_entries_roundtrips() -> None:
    """A 100,000-entry dict takes the J path and comes back equal (no timing asserted)."""
    value = {f"key{i}": (i if i % 2 else i / 3) for i in range(100_000)}
    data, loaded = roundtrip(value)
    assert data[:1] == b"J"
    assert loaded == value
    assert list(loaded) == list(value)
    tagged = {i: (i,) for i in range(100_000)}
    data, loaded = roundtrip(tagged)
    assert data[:1] == b"T"
    assert loaded == tagged


# --------------------------------------------------------------------------- refusals & dispatch


SUBCLASSES: dict[str, Any] = {
    "str": MyStr("s"),
    "int": MyInt(3),
    "float": MyFloat(1.5),
    "dict": MyDict(a=1),
    "list": MyList([1, 2]),
    "tuple": MyTuple((1, 2)),
    "set": MySet({1}),
    "bytes": MyBytes(b"b"),
    "OrderedDict": collections.OrderedDict(a=1),
    "defaultdict": collections.defaultdict(list, a=[1]),
    "Counter": collections.Counter("abca"),
    "nested-in-list": [1, MyStr("x")],
    "nested-in-dict-value": {"k": MyInt(1)},
    "nested-in-tuple": (MyList(),),
}


@pytest.mark.parametrize("value", list(SUBCLASSES.values()), ids=list(SUBCLASSES))
def test_subclasses_of_builtins_are_refused_by_json(value: Any) -> None:
    """Non-enum subclasses of builtin types are refused (JSON would silently lose their type)."""
    with pytest.raises(SerializationError):
        JSON.dumps(value, CTX)


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    try:
        yield k
    finally:
        k.close()


@pytest.mark.parametrize("value", list(SUBCLASSES.values()), ids=list(SUBCLASSES))
def test_subclasses_of_builtins_fall_to_pickle_in_dispatch(
    kernel: aliquot.Kernel, value: Any
) -> None:
    """Dispatch stores builtin subclasses with pickle, and they come back with their type."""
    ref = kernel.values.save(value)
    assert ref.serializer == "pickle"
    loaded = kernel.values.load(ref)
    assert type(loaded) is type(value)
    assert loaded == value


@pytest.mark.parametrize(
    "value",
    [Level.HIGH, Mode.SLOW, Pair(1, 2), Legacy(1, 2)],
    ids=["IntEnum", "StrEnum", "NamedTuple", "namedtuple"],
)
def test_enum_and_namedtuple_subclasses_stay_with_json(kernel: aliquot.Kernel, value: Any) -> None:
    """Enums and namedtuples (subclasses of int/str/tuple) are the exception: JSON takes them."""
    ref = kernel.values.save(value)
    assert ref.serializer == "json"
    assert_identical(value, kernel.values.load(ref))


@pytest.mark.parametrize(
    "value",
    [{"a": (1, 2)}, [{1, 2}], Point(1, 2), Item("x", frozenset()), 2**70, math.nan, (1,)],
    ids=["dict-tuple", "list-set", "attrs", "dataclass", "bigint", "nan", "tuple"],
)
def test_dispatch_stores_json_values_with_json_not_pickle(
    kernel: aliquot.Kernel, value: Any
) -> None:
    """JSON (priority 10) wins over pickle (1000) for everything it can carry."""
    ref = kernel.values.save(value)
    assert ref.serializer == "json"
    assert_identical(value, kernel.values.load(ref))


def test_lone_surrogate_inside_a_container_is_refused_and_pickled(kernel: aliquot.Kernel) -> None:
    """JSON cannot carry a lone surrogate: it refuses, and dispatch falls back to pickle."""
    with pytest.raises(Exception):  # noqa: B017 - orjson's own error is a refusal
        JSON.dumps(["\ud800"], CTX)
    ref = kernel.values.save(["\ud800"])
    assert ref.serializer == "pickle"
    assert kernel.values.load(ref) == ["\ud800"]


def test_list_with_both_infinities_is_tagged_json(kernel: aliquot.Kernel) -> None:
    """[inf, -inf] is carried by JSON (tagged floats), like [inf] or [nan] are."""
    data, loaded = roundtrip([math.inf, -math.inf])
    assert data[:1] == b"T"
    assert loaded == [math.inf, -math.inf]
    assert kernel.values.save({"range": [-math.inf, math.inf]}).serializer == "json"


def test_value_json_cannot_carry_is_refused_with_its_type_name() -> None:
    """An arbitrary object -> SerializationError naming its type."""

    class Opaque:
        pass

    with pytest.raises(SerializationError, match="Opaque"):
        JSON.dumps({"k": [Opaque()]}, CTX)


def test_self_referencing_list_is_refused_not_a_crash() -> None:
    """A cyclic list is refused with SerializationError (no RecursionError or hang)."""
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    with pytest.raises(SerializationError):
        JSON.dumps(cyclic, CTX)


# --------------------------------------------------------------------------- class resolution


def _tagged(node: Any) -> memoryview:
    return memoryview(b"T" + orjson.dumps(node))


@pytest.fixture
def unimported_module(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, pathlib.Path]]:
    """An importable module (on sys.path) that is not imported; importing it creates a marker."""
    name = f"aq_never_imported_{uuid.uuid4().hex[:12]}"
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib, enum, dataclasses\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "class Thing(enum.Enum):\n    A = 1\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", ["enum", "attrs", "dataclass", "namedtuple"])
def test_class_in_a_module_not_imported_is_not_imported(
    unimported_module: tuple[str, pathlib.Path], kind: str
) -> None:
    """A tag naming a class of a module not in sys.modules -> SerializationError saying to
    import it; the module is NOT imported (stored data never chooses code to run)."""
    name, marker = unimported_module
    with pytest.raises(SerializationError, match="import") as info:
        JSON.loads(
            _tagged({"$t": kind, "c": f"{name}:Thing", "v": 1 if kind == "enum" else {}}), CTX
        )
    assert name in str(info.value)
    assert name not in sys.modules
    assert not marker.exists()


def test_class_resolves_once_its_module_is_imported(
    unimported_module: tuple[str, pathlib.Path],
) -> None:
    """The same payload loads after the user imports the module themselves."""
    name, _ = unimported_module
    payload = _tagged({"$t": "enum", "c": f"{name}:Thing", "v": 1})
    with pytest.raises(SerializationError):
        JSON.loads(payload, CTX)
    module = __import__(name)
    assert JSON.loads(payload, CTX) is module.Thing.A


def test_submodule_of_an_imported_package_is_not_imported() -> None:
    """A dotted module name is looked up whole in sys.modules (an imported parent is not enough)."""
    name = "email.mime.audio"
    had = name in sys.modules
    if had:
        pytest.skip(f"{name} already imported in this process")
    with pytest.raises(SerializationError, match="import"):
        JSON.loads(_tagged({"$t": "dataclass", "c": f"{name}:MIMEAudio", "v": {}}), CTX)
    assert name not in sys.modules


def test_class_lookup_does_not_run_module_getattr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving a tag's class never calls a module-level __getattr__ (which may import code)."""
    calls: list[str] = []
    lazy = types.ModuleType("aq_lazy_module")

    def module_getattr(attr: str) -> Any:
        calls.append(attr)  # a real lazy module would import a submodule here
        raise AttributeError(attr)

    lazy.__getattr__ = module_getattr  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "aq_lazy_module", lazy)
    with pytest.raises(SerializationError):
        JSON.loads(
            _tagged({"$t": "dataclass", "c": "aq_lazy_module:submodule.Thing", "v": {}}), CTX
        )
    assert calls == []


@pytest.mark.parametrize(
    ("kind", "cls", "value"),
    [
        ("enum", f"{__name__}:Key", 1),
        ("enum", f"{__name__}:Tripwire", 1),
        ("attrs", f"{__name__}:Key", {"a": 1, "b": "x"}),
        ("attrs", f"{__name__}:Tripwire", {}),
        ("dataclass", f"{__name__}:Point", {"x": 1}),
        ("dataclass", f"{__name__}:Tripwire", {}),
        ("dataclass", "builtins:dict", {}),
        ("namedtuple", "builtins:tuple", [1]),
        ("namedtuple", f"{__name__}:Tripwire", [1]),
        ("namedtuple", f"{__name__}:MyTuple", [1]),
        ("enum", "os:system", "echo pwned"),
        ("dataclass", "subprocess:Popen", {"args": ["true"]}),
        ("namedtuple", "subprocess:Popen", [["true"]]),
    ],
)
def test_tag_naming_a_class_of_the_wrong_kind_is_refused(kind: str, cls: str, value: Any) -> None:
    """A tag whose class is not of its kind (or not a class at all) is refused, never called."""
    TRIPWIRE_CALLS.clear()
    with pytest.raises(SerializationError):
        JSON.loads(_tagged({"$t": kind, "c": cls, "v": value}), CTX)
    assert TRIPWIRE_CALLS == []


def test_class_that_no_longer_exists_is_refused() -> None:
    """A tag naming a missing attribute of an imported module -> SerializationError."""
    with pytest.raises(SerializationError, match="no longer exists"):
        JSON.loads(_tagged({"$t": "enum", "c": f"{__name__}:Gone.Away", "v": 1}), CTX)


@pytest.mark.parametrize(
    "node",
    [{"$t": "pickle", "v": "gASV"}, [1, {"$t": "future-kind", "v": 2}], {"$t": 5, "v": 1}],
    ids=["pickle", "nested", "number"],
)
def test_unknown_tags_raise_serialization_error(node: Any) -> None:
    """An unknown tag (even nested) -> SerializationError naming it, not a silent dict."""
    with pytest.raises(SerializationError, match="unknown JSON type tag"):
        JSON.loads(_tagged(node), CTX)


# --------------------------------------------------------------------------- damaged payloads


@pytest.mark.parametrize(
    "payload",
    [b"", b"J", b"T", b"X{}", b"\x00[]", b"J{", b'T{"$t":', b"J\xff\xfe", b"T" + b"[" * 2000],
    ids=[
        "empty",
        "J-only",
        "T-only",
        "bad-flag",
        "nul-flag",
        "J-broken",
        "T-broken",
        "J-not-utf8",
        "T-too-deep",
    ],
)
def test_damaged_payloads_raise_serialization_error(payload: bytes) -> None:
    """Empty, unknown flag, invalid JSON -> SerializationError with a clear message."""
    with pytest.raises(SerializationError, match=r"JSON|payload"):
        JSON.loads(memoryview(payload), CTX)


@pytest.mark.parametrize(
    "value", [{"a": [1, 2, {"b": "c"}]}, (1, {2}, {"k": b"x"}, Point(1))], ids=["J", "T"]
)
def test_every_truncation_raises_serialization_error(value: Any) -> None:
    """Every strict prefix of a container payload is refused with SerializationError."""
    data, _ = roundtrip(value)
    for cut in range(len(data)):
        with pytest.raises(SerializationError):
            JSON.loads(memoryview(data[:cut]), CTX)


def test_random_bit_flips_raise_only_exceptions() -> None:
    """Bit flips in a tagged payload decode to something or raise an Exception (never crash)."""
    data, _ = roundtrip(MIXES["set-of-mixed"])
    rng = random.Random(7)
    kinds: set[str] = set()
    for _ in range(1000):
        flipped = bytearray(data)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        try:
            JSON.loads(memoryview(bytes(flipped)), CTX)
        except Exception as exc:  # BaseException (RecursionError is an Exception) would escape
            kinds.add(type(exc).__name__)
    assert "SerializationError" in kinds


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'T{"$t":"tuple"}', id="missing-v"),
        pytest.param(b'T{"$t":["x"]}', id="unhashable-tag"),
        pytest.param(b'T{"$t":"int","v":"abc"}', id="bad-int"),
        pytest.param(b'T{"$t":"bytes","v":"a"}', id="bad-base64"),
        pytest.param(b'T{"$t":"datetime","v":"nope"}', id="bad-isoformat"),
        pytest.param(b'T{"$t":"complex","v":[1]}', id="complex-arity"),
        pytest.param(b'T{"$t":"timedelta","v":[1]}', id="timedelta-arity"),
        pytest.param(b'T{"$t":"dict","v":5}', id="dict-not-pairs"),
        pytest.param(b'T{"$t":"dict","v":[[[1],2]]}', id="unhashable-key"),
        pytest.param(b'T{"$t":"enum","c":5,"v":1}', id="class-not-str"),
        pytest.param(b'T{"$t":"set","v":[[1]]}', id="unhashable-set-item"),
        pytest.param(b"T" + b"[" * 1020 + b"]" * 1020, id="deep-nesting"),
    ],
)
def test_structurally_damaged_tagged_payload_raises_serialization_error(payload: bytes) -> None:
    """Valid JSON carrying a malformed tag -> SerializationError (not a bare KeyError & co)."""
    with pytest.raises(SerializationError):
        JSON.loads(memoryview(payload), CTX)


def test_structurally_damaged_tagged_payloads_raise_exceptions_today() -> None:
    """Whatever their type, errors from malformed tags are ordinary Exceptions with a message."""
    for payload in (b'T{"$t":"tuple"}', b'T{"$t":"int","v":"abc"}', b'T{"$t":"complex","v":[1]}'):
        with pytest.raises(Exception) as info:
            JSON.loads(memoryview(payload), CTX)
        assert str(info.value)


def test_too_deep_payloads_are_refused_whatever_the_recursion_limit() -> None:
    """The depth check is explicit: a library raising the recursion limit changes nothing."""
    import sys

    payload = b"T" + b"[" * 1020 + b"]" * 1020
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        with pytest.raises(SerializationError, match="nested deeper than 255 levels"):
            JSON.loads(memoryview(payload), CTX)
    finally:
        sys.setrecursionlimit(limit)
    shallow = b"T" + b"[" * 200 + b"]" * 200
    value = JSON.loads(memoryview(shallow), CTX)
    for _ in range(199):
        value = value[0]
    assert value == []
