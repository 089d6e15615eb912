"""``Component.encode`` / ``Component.decode``: the JSON document, tags, blobs, nested
components, and identity (``uuid`` / ``hash``).
"""

from __future__ import annotations

import hashlib
import math
import typing as t
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import aliquot
from aliquot import Component, UntrustedPayloadError
from aliquot_builtins.components import ComponentError, Encoded, decode, encode
from aliquot_builtins.components._component import values_equal

HEX20 = "0123456789abcdef"


def notify(**kwargs: Any) -> dict[str, Any]:
    """A module-level function: pickled by reference."""
    return kwargs


def other_function(x: int) -> int:
    return x + 1


class Holder(Component):
    value: t.Any = None


class Notifier(Component):
    a: int
    b: str
    c: dict
    d: t.Callable | None = None


class Tunable(Component):
    x: int = 0
    note: str = ""
    non_breaking = ("note",)


class Child(Component):
    v: int = 0


class Parent(Component):
    first: Child | None = None
    second: Child | None = None
    kids: list = []
    by_name: dict = {}


class Grand(Component):
    parent: Parent | None = None
    label: str = ""


_TOUCHED: list[str] = []


def _touch(path: str) -> None:
    """What unpickling a ``Canary`` runs: proof that a pickle was (not) loaded."""
    Path(path).write_text("unpickled")
    _TOUCHED.append(path)


class Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


@pytest.fixture
def lmdb_kernel(store_path: Path) -> Iterator[aliquot.Kernel]:
    kernel = aliquot.Kernel.open(str(store_path))
    yield kernel
    kernel.close()


@pytest.fixture
def memory_kernel() -> Iterator[aliquot.Kernel]:
    kernel = aliquot.Kernel.open("memory://")
    yield kernel
    kernel.close()


def _field(value: Any) -> Any:
    return Holder("h", value=value).encode().document["fields"]["value"]


def _roundtrip(value: Any) -> Any:
    encoded = Holder("h", value=value).encode()
    # the document survives JSON: decode what orjson reads back
    document = orjson.loads(encoded.json())
    back = Holder.decode(Encoded(document, dict(encoded.blobs)))
    assert isinstance(back, Holder)
    return back.value


# ---------------------------------------------------------------------------
# Plain JSON and tags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (None, None),
        (True, True),
        (False, False),
        ("text", "text"),
        ("", ""),
        ("$not-a-tag", "$not-a-tag"),
        (0, 0),
        (-1, -1),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        (2**64 - 1, 2**64 - 1),
        (1.5, 1.5),
        (-0.0, -0.0),
        ([1, "a", None, [2.5]], [1, "a", None, [2.5]]),
        ({"a": 1, "b": {"c": [1]}}, {"a": 1, "b": {"c": [1]}}),
        ({}, {}),
        ([], []),
    ],
)
def test_plain_json_values_are_stored_as_themselves(value: Any, field: Any) -> None:
    assert _field(value) == field
    back = _roundtrip(value)
    assert type(back) is type(value)
    assert values_equal(back, value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ((1, "a"), {"$tuple": [1, "a"]}),
        ((), {"$tuple": []}),
        (((1,), [2, (3,)]), {"$tuple": [{"$tuple": [1]}, [2, {"$tuple": [3]}]]}),
        ({"$ref": 1, "x": 2}, {"$dict": {"$ref": 1, "x": 2}}),
        ({"$": {"$x": [1]}}, {"$dict": {"$": {"$dict": {"$x": [1]}}}}),
        ({"$tuple": 1}, {"$dict": {"$tuple": 1}}),
        ({1: "a", 2: "b"}, {"$items": [[1, "a"], [2, "b"]]}),
        ({(1, 2): "t", None: 0}, {"$items": [[{"$tuple": [1, 2]}, "t"], [None, 0]]}),
        ({"s": 1, 2: 2}, {"$items": [["s", 1], [2, 2]]}),
        (2**64, {"$int": str(2**64)}),
        (-(2**63) - 1, {"$int": str(-(2**63) - 1)}),
        (10**40, {"$int": "1" + "0" * 40}),
        (math.inf, {"$float": "inf"}),
        (-math.inf, {"$float": "-inf"}),
        (math.nan, {"$float": "nan"}),
        ([math.nan, {"k": (1,)}], [{"$float": "nan"}, {"k": {"$tuple": [1]}}]),
    ],
)
def test_tagged_values_encode_exactly_and_roundtrip(value: Any, field: Any) -> None:
    assert _field(value) == field
    back = _roundtrip(value)
    assert type(back) is type(value)
    assert values_equal(back, value), (back, value)


def test_nan_roundtrips_as_nan() -> None:
    back = _roundtrip(math.nan)
    assert isinstance(back, float) and math.isnan(back)
    assert _roundtrip(-math.inf) == -math.inf


def test_dict_with_non_string_keys_keeps_key_types() -> None:
    back = _roundtrip({True: "bool", 2: "int", "1": "str", (1,): "tuple", None: "none"})
    assert back == {True: "bool", 2: "int", "1": "str", (1,): "tuple", None: "none"}
    assert [type(k) for k in back] == [bool, int, str, tuple, type(None)]


@pytest.mark.parametrize(
    "value",
    [
        np.arange(10, dtype=np.int64),
        np.array([[1.5, np.nan], [np.inf, -0.0]], dtype=np.float32),
        np.zeros((0, 3)),
        np.float32(2.5),
        np.int64(3),
        b"raw\x00bytes",
        {1, 2, 3},
        frozenset({"a"}),
        1 + 2j,
        notify,
        Holder,
        len,
    ],
    ids=lambda v: type(v).__name__,
)
def test_other_values_become_blobs_and_roundtrip(value: Any) -> None:
    field = _field(value)
    assert list(field) == ["$blob"]
    ref = field["$blob"]
    assert set(ref) == {"digest", "size", "serializer", "serializer_version", "type", "content"}
    assert ref["type"] == f"{type(value).__module__}.{type(value).__qualname__}"
    back = _roundtrip(value)
    assert type(back) is type(value)
    assert values_equal(back, value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape


def test_blob_digest_is_sha256_of_the_stored_bytes() -> None:
    encoded = Holder("h", value=np.arange(100)).encode()
    (ref,) = [encoded.document["fields"]["value"]["$blob"]]
    data = encoded.blobs[ref["digest"]]
    assert hashlib.sha256(data).hexdigest() == ref["digest"]
    assert ref["size"] == len(data)
    assert ref["serializer"] == "numpy"
    assert ref["content"] == ref["digest"]  # numpy bytes do not depend on the store


def test_functions_are_signed_pickles_whose_content_is_store_independent() -> None:
    ref = _field(notify)["$blob"]
    assert ref["serializer"] == "pickle"
    assert ref["type"] == "builtins.function"
    # the stored bytes are signed with this store's key: another digest than the content
    assert ref["digest"] != ref["content"]


def test_functions_roundtrip_and_still_work() -> None:
    n = Notifier("n1", a=1, b="x", c={"k": 1}, d=notify)
    back = Notifier.decode(n.encode())
    assert back == n
    assert back.d is notify
    assert back.d(a=back.a) == {"a": 1}


@pytest.mark.parametrize("value", ["\ud800", {"\udc00": 1}], ids=["str", "key"])
def test_strings_json_cannot_carry_still_roundtrip(value: Any) -> None:
    # "plain JSON where JSON can carry them exactly; everything else is tagged"
    assert _roundtrip(value) == value


def test_unpicklable_value_is_a_component_error_naming_the_field() -> None:
    with pytest.raises(ComponentError, match=r"Holder\('h'\)\.value: cannot encode a function"):
        Holder("h", value=lambda: 1).encode()


def test_encode_refuses_non_components() -> None:
    with pytest.raises(ComponentError, match="encode\\(\\) takes a Component, not dict"):
        encode({"a": 1})  # type: ignore[arg-type]


def test_document_shape_and_valid_json() -> None:
    n = Notifier("n1", a=1, b="x", c={"k": 1}, d=notify)
    encoded = n.encode()
    doc = encoded.document
    assert list(doc) == [
        "format",
        "type",
        "class",
        "identifier",
        "uuid",
        "hash",
        "fields",
        "builds",
    ]
    assert doc["format"] == "aliquot.component/1"
    assert doc["type"] == "Notifier"
    assert doc["class"] == f"{Notifier.__module__}:Notifier"
    assert doc["identifier"] == "n1"
    assert len(doc["uuid"]) == 20 and set(doc["uuid"]) <= set(HEX20)
    assert len(doc["hash"]) == 64 and set(doc["hash"]) <= set(HEX20)
    assert doc["fields"]["a"] == 1 and doc["fields"]["c"] == {"k": 1}
    assert doc["builds"] == {}
    assert orjson.loads(encoded.json()) == doc
    assert encoded.huuid == f"Notifier:n1:{doc['uuid']}" == n.huuid
    assert n.uuid == doc["uuid"]
    assert set(encoded.blobs) == {doc["fields"]["d"]["$blob"]["digest"]}


def test_decode_accepts_a_document_and_blobs_pair() -> None:
    n = Notifier("n1", a=1, b="x", c={}, d=notify)
    encoded = n.encode()
    assert decode((encoded.document, encoded.blobs)) == n
    assert Component.decode(encoded) == n  # the class is imported from the document


# ---------------------------------------------------------------------------
# Arrays: content identity, not str()
# ---------------------------------------------------------------------------


def _twin_arrays() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(5000, dtype=np.float64)
    b = a.copy()
    b[2500] = -1.0
    return a, b


def test_arrays_with_equal_str_get_different_digests_and_uuids() -> None:
    a, b = _twin_arrays()
    assert str(a) == str(b)  # the Superduper hash input: identical
    ha, hb = Holder("h", value=a), Holder("h", value=b)
    ra, rb = _field(a)["$blob"], _field(b)["$blob"]
    assert ra["digest"] != rb["digest"]
    assert ra["content"] != rb["content"]
    assert ha.uuid != hb.uuid
    assert ha.encode().document["hash"] != hb.encode().document["hash"]
    back = Holder.decode(hb.encode()).value
    assert back[2500] == -1.0 and np.array_equal(back, b)


def test_equal_arrays_get_the_same_digest_and_uuid() -> None:
    a = np.linspace(0, 1, 777)
    b = np.linspace(0, 1, 777)
    assert a is not b
    assert _field(a)["$blob"]["digest"] == _field(b)["$blob"]["digest"]
    assert Holder("h", value=a).uuid == Holder("h", value=b).uuid


def test_array_dtype_is_part_of_identity() -> None:
    ints, floats = np.arange(4, dtype=np.int64), np.arange(4, dtype=np.float64)
    assert Holder("h", value=ints).uuid != Holder("h", value=floats).uuid


# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------


def test_uuid_depends_on_type_identifier_and_fields() -> None:
    base = Notifier("n1", a=1, b="x", c={"k": 1})
    assert base.uuid == Notifier("n1", a=1, b="x", c={"k": 1}).uuid
    assert base.uuid != Notifier("n2", a=1, b="x", c={"k": 1}).uuid
    assert base.uuid != Notifier("n1", a=2, b="x", c={"k": 1}).uuid
    assert base.uuid != Notifier("n1", a=1, b="x", c={"k": 2}).uuid
    assert base.uuid != Notifier("n1", a=1, b="x", c={"k": 1}, d=notify).uuid
    assert (
        Notifier("n1", a=1, b="x", c={}, d=notify).uuid
        != Notifier("n1", a=1, b="x", c={}, d=other_function).uuid
    )
    assert Holder("same", value=1).uuid != Child("same", v=1).uuid


def test_uuid_ignores_string_key_order() -> None:
    one = Holder("h", value={"a": 1, "b": 2})
    two = Holder("h", value={"b": 2, "a": 1})
    assert one == two
    assert one.uuid == two.uuid
    assert one.encode().document["hash"] == two.encode().document["hash"]


def test_equal_dicts_with_non_string_keys_have_one_uuid() -> None:
    one = Holder("h", value={1: "a", 2: "b"})
    two = Holder("h", value={2: "b", 1: "a"})
    assert one == two
    assert one.uuid == two.uuid


def test_int_float_and_bool_values_have_different_identities() -> None:
    uuids = {Holder("h", value=v).uuid for v in (1, 1.0, True, "1", (1,), [1])}
    assert len(uuids) == 6


def test_non_breaking_fields_change_hash_not_uuid() -> None:
    one, two = Tunable("t", x=1, note="a"), Tunable("t", x=1, note="b")
    d1, d2 = one.encode().document, two.encode().document
    assert d1["uuid"] == d2["uuid"]
    assert d1["hash"] != d2["hash"]
    three = Tunable("t", x=2, note="a")
    assert three.uuid != one.uuid


def test_uuid_is_the_same_in_every_store(
    memory_kernel: aliquot.Kernel, lmdb_kernel: aliquot.Kernel
) -> None:
    n = Notifier("n1", a=1, b="x", c={"k": [1, 2]}, d=notify)
    in_memory = n.encode(memory_kernel).document
    on_disk = n.encode(lmdb_kernel).document
    by_default = n.encode().document
    assert in_memory["uuid"] == on_disk["uuid"] == by_default["uuid"] == n.uuid
    assert in_memory["hash"] == on_disk["hash"] == by_default["hash"]
    mem_ref, disk_ref = in_memory["fields"]["d"]["$blob"], on_disk["fields"]["d"]["$blob"]
    assert mem_ref["content"] == disk_ref["content"]
    assert mem_ref["digest"] != disk_ref["digest"]  # signed with each store's own key
    applied_mem = memory_kernel.apply(n, jobs=False)
    applied_disk = lmdb_kernel.apply(
        Notifier("n1", a=1, b="x", c={"k": [1, 2]}, d=notify), jobs=False
    )
    assert applied_mem.component.uuid == applied_disk.component.uuid == n.uuid
    assert lmdb_kernel.load(Notifier, "n1").uuid == n.uuid


def test_class_path_is_part_of_hash_not_uuid() -> None:
    from aliquot_builtins.components._encoding import identity_of

    doc = Holder("h", value=1).encode().document
    moved = {**doc, "class": "elsewhere:Holder"}
    assert identity_of(moved, ()).uuid == doc["uuid"]
    assert identity_of(moved, ()).hash != doc["hash"]
    assert identity_of(doc, ()).hash == doc["hash"]


# ---------------------------------------------------------------------------
# Nested components
# ---------------------------------------------------------------------------


def test_child_shared_by_two_fields_is_built_once() -> None:
    child = Child("c1", v=5)
    p = Parent("p", first=child, second=child)
    doc = p.encode().document
    ref = {"$component": child.huuid}
    assert doc["fields"]["first"] == ref and doc["fields"]["second"] == ref
    assert list(doc["builds"]) == [child.huuid]
    nested = doc["builds"][child.huuid]
    assert "builds" not in nested
    assert nested["fields"] == {"v": 5}
    back = Parent.decode(p.encode())
    assert back == p
    assert back.first is back.second


def test_equal_children_in_two_objects_are_one_build() -> None:
    p = Parent("p", first=Child("c1", v=1), second=Child("c1", v=1), kids=[Child("c1", v=1)])
    doc = p.encode().document
    assert len(doc["builds"]) == 1


def test_lists_dicts_and_tuples_of_components() -> None:
    kids = [Child("k1", v=1), Child("k2", v=2)]
    p = Parent("p", kids=kids, by_name={"x": (Child("k3", v=3),)})
    doc = p.encode().document
    assert doc["fields"]["kids"] == [{"$component": k.huuid} for k in kids]
    assert doc["fields"]["by_name"] == {"x": {"$tuple": [{"$component": Child("k3", v=3).huuid}]}}
    assert sorted(doc["builds"]) == sorted([*(k.huuid for k in kids), Child("k3", v=3).huuid])
    back = Parent.decode(p.encode())
    assert back == p
    assert [type(k) for k in back.kids] == [Child, Child]
    assert isinstance(back.by_name["x"], tuple)


def test_grandchildren_are_flat_in_builds() -> None:
    g = Grand("g", parent=Parent("p", first=Child("c", v=1)), label="x")
    doc = g.encode().document
    assert sorted(doc["builds"]) == sorted([g.parent.huuid, Child("c", v=1).huuid])
    assert all("builds" not in b for b in doc["builds"].values())
    assert Grand.decode(g.encode()) == g


def test_a_child_change_changes_the_parent_uuid() -> None:
    one = Parent("p", first=Child("c", v=1))
    two = Parent("p", first=Child("c", v=2))
    assert one.uuid != two.uuid


def test_two_different_children_with_one_name_are_refused() -> None:
    p = Parent("p", first=Child("c", v=1), second=Child("c", v=2))
    with pytest.raises(ComponentError, match=r"two different Child:c components in one tree"):
        p.encode()


def test_a_component_containing_itself_is_refused() -> None:
    h = Holder("h")
    h.value = [h]
    with pytest.raises(ComponentError, match=r"Holder\('h'\) contains itself"):
        h.encode()
    a, b = Holder("a"), Holder("b")
    b.value = a
    a.value = {"k": b}
    with pytest.raises(ComponentError, match="contains itself"):
        a.encode()


def test_children_of_components_in_order() -> None:
    a, b = Child("a"), Child("b")
    p = Parent("p", first=b, kids=[a], by_name={"z": b})
    assert list(p.children()) == [b, a, b]


# ---------------------------------------------------------------------------
# Decoding errors and trust
# ---------------------------------------------------------------------------


def test_decode_refuses_a_wrong_format() -> None:
    encoded = Holder("h", value=1).encode()
    bad = {**encoded.document, "format": "aliquot.component/2"}
    with pytest.raises(
        ComponentError,
        match=r"not an encoded component: format is 'aliquot.component/2', "
        r"expected 'aliquot.component/1'",
    ):
        Holder.decode(Encoded(bad, {}))
    no_format = {k: v for k, v in encoded.document.items() if k != "format"}
    with pytest.raises(ComponentError, match="format is None"):
        Holder.decode(Encoded(no_format, {}))


@pytest.mark.parametrize("key", ["type", "class", "identifier", "uuid", "hash"])
def test_decode_refuses_missing_keys(key: str) -> None:
    doc = {k: v for k, v in Holder("h", value=1).encode().document.items() if k != key}
    with pytest.raises(ComponentError, match=f"'{key}' is missing or not a string"):
        Holder.decode(Encoded(doc, {}))


def test_decode_refuses_non_documents() -> None:
    with pytest.raises(ComponentError, match="takes an Encoded"):
        decode("not encoded")  # type: ignore[arg-type]
    with pytest.raises(ComponentError, match="takes an Encoded"):
        decode((1, 2, 3))  # type: ignore[arg-type]


def test_decode_refuses_a_document_that_is_not_an_object() -> None:
    with pytest.raises(ComponentError, match="is a JSON object"):
        decode(([1], {}))


def test_decode_refuses_an_unknown_tag() -> None:
    doc = Holder("h", value=1).encode().document
    doc["fields"]["value"] = {"$set": [1]}
    with pytest.raises(ComponentError, match=r"Holder:h.value: unknown tag '\$set'"):
        Holder.decode(Encoded(doc, {}))


def test_decode_refuses_a_field_the_class_does_not_declare() -> None:
    doc = Holder("h", value=1).encode().document
    doc["fields"]["gone"] = 1
    with pytest.raises(ComponentError, match="stored with field 'gone', which class"):
        Holder.decode(Encoded(doc, {}))


def test_decode_refuses_another_type() -> None:
    with pytest.raises(ComponentError, match="is stored as a Holder, not a Child"):
        Child.decode(Holder("h", value=1).encode())


def test_decode_with_the_base_class_builds_the_stored_type() -> None:
    back = Component.decode(Holder("h", value=1).encode())
    assert type(back) is Holder
    assert back == Holder("h", value=1)


def test_decode_of_an_unimportable_class_names_it() -> None:
    doc = Holder("h", value=1).encode().document
    doc["class"] = "no_such_module_xyz:Holder"
    doc["type"] = "Gone"
    with pytest.raises(ComponentError, match="cannot import component class no_such_module_xyz"):
        decode(Encoded(doc, {}))


def test_decode_refuses_a_missing_build() -> None:
    encoded = Parent("p", first=Child("c")).encode()
    encoded.document["builds"] = {}
    with pytest.raises(ComponentError, match=r"references Child:c:\w{20}, not in builds"):
        Parent.decode(encoded)


def test_decode_refuses_missing_or_tampered_blob_bytes() -> None:
    encoded = Holder("h", value=np.arange(8)).encode()
    (digest,) = encoded.blobs
    with pytest.raises(ComponentError, match="is missing or failed its checksum"):
        Holder.decode(Encoded(encoded.document, {}))
    tampered = bytearray(encoded.blobs[digest])
    tampered[-1] ^= 0xFF
    with pytest.raises(ComponentError, match="does not match its digest"):
        Holder.decode(Encoded(encoded.document, {digest: bytes(tampered)}))


def test_a_pickle_signed_by_another_store_is_refused_unrun(
    tmp_path: Path, lmdb_kernel: aliquot.Kernel, memory_kernel: aliquot.Kernel
) -> None:
    marker = tmp_path / "ran"
    encoded = Holder("h", value=Canary(str(marker))).encode(memory_kernel)
    assert encoded.document["fields"]["value"]["$blob"]["serializer"] == "pickle"
    assert not marker.exists()
    with pytest.raises((UntrustedPayloadError, ComponentError), match=r"(?i)sign|key|trust"):
        Holder.decode(encoded, lmdb_kernel)
    assert not marker.exists()
    assert _TOUCHED == []
    # the store that signed it loads it (and so runs the pickle)
    Holder.decode(encoded, memory_kernel)
    assert marker.read_text() == "unpickled"
    _TOUCHED.clear()


# ---------------------------------------------------------------------------
# Dict keys that look like tags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"$blob": 1},
        {"$blob": {"digest": "0" * 64, "content": "1" * 64}},
        {"$component": "Child:c:" + "a" * 20},
        {"outer": {"$component": "Child:c:" + "a" * 20}},
    ],
    ids=["blob-int", "blob-lookalike", "component", "nested-component"],
)
def test_dicts_whose_keys_look_like_tags_are_data(
    value: dict[str, Any], memory_kernel: aliquot.Kernel
) -> None:
    h = Holder("h", value=value)
    back = Holder.decode(h.encode())
    assert back == h
    applied = memory_kernel.apply(h, jobs=False)
    assert applied.action == "new"
    assert applied.components == (applied.component,)  # no phantom child
    assert memory_kernel.load(Holder, "h").value == value
