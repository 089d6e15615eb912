"""The ``bytes`` and ``text`` serializers: raw bytes, and ``str`` as UTF-8 (surrogatepass).

Rules: bytes and bytearray keep their type; empty values round-trip; lone
surrogates survive; both serializers have priority 5, so dispatch gives
top-level bytes/str to them rather than to JSON (10); subclasses are
refused (pickle takes them); damaged payloads raise SerializationError.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot import SerializationError, SerializerContext
from aliquot.testing import check_serializer, make_kernel
from aliquot_builtins.serializer_bytes import BytesSerializer, TextSerializer

CTX = SerializerContext("bytestest", lambda purpose: hashlib.sha256(purpose.encode()).digest())
BYTES = BytesSerializer()
TEXT = TextSerializer()


class MyBytes(bytes):
    pass


class MyByteArray(bytearray):
    pass


class MyStr(str):
    pass


def encode(serializer: Any, value: Any) -> bytes:
    out = serializer.dumps(value, CTX)
    parts = [out] if isinstance(out, (bytes, bytearray, memoryview)) else list(out)
    return b"".join(bytes(memoryview(p)) for p in parts)


def roundtrip(serializer: Any, value: Any) -> Any:
    return serializer.loads(memoryview(encode(serializer, value)), CTX)


BYTE_SAMPLES = [
    b"",
    b"\x00",
    b"plain ascii",
    bytes(range(256)),
    b"b" * 10_000,
    bytearray(),
    bytearray(b"\x00\xff"),
    bytearray(range(256)) * 3,
]
TEXT_SAMPLES = [
    "",
    "a",
    "héllo wörld ✓",
    "𝄞 emoji 🎉 日本語",
    "\x00nul\x00",
    "\ud800",  # lone high surrogate
    "\udfff",  # lone low surrogate
    "\ud83d\ude00",  # a surrogate *pair* written as two code points
    "mixed \udc80 and é",
    "x" * 100_000,
]


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    try:
        yield k
    finally:
        k.close()


# --------------------------------------------------------------------------- conformance


def test_bytes_conformance_kit_passes() -> None:
    """check_serializer passes for ``bytes`` (bytes and bytearray, empty and binary)."""
    check_serializer(BYTES, BYTE_SAMPLES)


def test_text_conformance_kit_passes() -> None:
    """check_serializer passes for ``text`` (unicode, NUL, lone surrogates, long strings)."""
    check_serializer(TEXT, TEXT_SAMPLES)


def test_declared_names_types_and_priority() -> None:
    """bytes takes (bytes, bytearray), text takes (str); both priority 5 (before JSON's 10)."""
    assert (BYTES.name, BYTES.types, BYTES.priority) == ("bytes", (bytes, bytearray), 5)
    assert (TEXT.name, TEXT.types, TEXT.priority) == ("text", (str,), 5)


# --------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("value", BYTE_SAMPLES, ids=lambda v: f"{type(v).__name__}-{len(v)}")
def test_bytes_and_bytearray_keep_their_type(value: bytes | bytearray) -> None:
    """bytes comes back as bytes, bytearray as bytearray, with the same content."""
    loaded = roundtrip(BYTES, value)
    assert type(loaded) is type(value)
    assert loaded == value


def test_bytes_payload_is_a_type_code_then_the_raw_bytes() -> None:
    """Payload: b"b" or b"a", then the value unchanged (no escaping, no copy into JSON)."""
    assert encode(BYTES, b"\x00\xff") == b"b\x00\xff"
    assert encode(BYTES, bytearray(b"xy")) == b"axy"
    assert encode(BYTES, b"") == b"b"


def test_loaded_bytearray_is_independent_of_the_stored_buffer() -> None:
    """Mutating a loaded bytearray does not touch the buffer it came from."""
    source = bytearray(b"axyz")
    loaded = BYTES.loads(memoryview(source), CTX)
    loaded[0] = ord("Q")
    assert source == bytearray(b"axyz")


@pytest.mark.parametrize(
    "value",
    [MyBytes(b"x"), MyByteArray(b"x"), memoryview(b"x")],
    ids=["bytes-sub", "bytearray-sub", "memoryview"],
)
def test_bytes_refuses_other_types(value: Any) -> None:
    """Subclasses (and other buffers) are refused: their type would be lost."""
    with pytest.raises(SerializationError):
        BYTES.dumps(value, CTX)


@pytest.mark.parametrize(
    "payload", [b"", b"x", b"\x00abc", b"B"], ids=["empty", "x", "nul", "upper-B"]
)
def test_bytes_damaged_payload_raises_serialization_error(payload: bytes) -> None:
    """Empty payload or unknown type code -> SerializationError."""
    with pytest.raises(SerializationError, match="bytes payload"):
        BYTES.loads(memoryview(payload), CTX)


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("value", TEXT_SAMPLES, ids=lambda v: repr(v[:12]))
def test_text_roundtrips_exactly(value: str) -> None:
    """str comes back as str, code point for code point (surrogates included)."""
    loaded = roundtrip(TEXT, value)
    assert type(loaded) is str
    assert loaded == value


def test_text_is_stored_as_utf8_with_surrogatepass() -> None:
    """The payload is plain UTF-8; lone surrogates use their surrogatepass encoding."""
    assert encode(TEXT, "é✓") == "é✓".encode()
    assert encode(TEXT, "\ud800") == b"\xed\xa0\x80"
    assert encode(TEXT, "") == b""


def test_text_refuses_str_subclass() -> None:
    """A str subclass is refused (its type would be lost)."""
    with pytest.raises(SerializationError, match="MyStr"):
        TEXT.dumps(MyStr("x"), CTX)


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\xc3", b"ok\x80", b"\xf8\x88\x80\x80\x80"],
    ids=["ff", "truncated-2byte", "stray-continuation", "5-byte"],
)
def test_text_invalid_utf8_raises_serialization_error(payload: bytes) -> None:
    """Bytes that are not UTF-8 (even with surrogatepass) -> SerializationError."""
    with pytest.raises(SerializationError, match="damaged text payload"):
        TEXT.loads(memoryview(payload), CTX)


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"raw", "bytes"),
        (bytearray(b"raw"), "bytes"),
        (b"", "bytes"),
        ("text", "text"),
        ("", "text"),
        ("\ud800", "text"),
    ],
    ids=["bytes", "bytearray", "empty-bytes", "str", "empty-str", "surrogate"],
)
def test_dispatch_gives_top_level_bytes_and_str_to_these_not_json(
    kernel: aliquot.Kernel, value: Any, expected: str
) -> None:
    """Priority 5 beats JSON's 10: candidates start with bytes/text and save uses them."""
    names = [s.name for s in kernel.serializers.candidates(value)]
    assert names[0] == expected
    assert names.index(expected) < names.index("json")
    ref = kernel.values.save(value)
    assert ref.serializer == expected
    loaded = kernel.values.load(ref)
    assert type(loaded) is type(value)
    assert loaded == value


def test_bytes_inside_containers_go_to_json(kernel: aliquot.Kernel) -> None:
    """Only *top-level* bytes/str take these serializers; containers go to JSON."""
    ref = kernel.values.save({"blob": b"\x00", "name": "x"})
    assert ref.serializer == "json"


@pytest.mark.parametrize(
    "value",
    [MyBytes(b"x"), MyByteArray(b"y"), MyStr("z")],
    ids=["bytes-sub", "bytearray-sub", "str-sub"],
)
def test_dispatch_sends_subclasses_to_pickle(kernel: aliquot.Kernel, value: Any) -> None:
    """bytes/text and JSON refuse subclasses; pickle stores them with their type."""
    ref = kernel.values.save(value)
    assert ref.serializer == "pickle"
    loaded = kernel.values.load(ref)
    assert type(loaded) is type(value)
    assert loaded == value


def test_large_values_roundtrip_through_lmdb_blobs(tmp_path: Path) -> None:
    """Large bytes/text (blob files, memory-mapped on load) round-trip with their types."""
    kernel = make_kernel(store=str(tmp_path / "store"))
    try:
        big_bytes = os.urandom(3 << 20)
        big_text = "é\ud800" * (1 << 20)
        refs = [kernel.values.save(v) for v in (big_bytes, bytearray(big_bytes), big_text)]
        kernel.store.commit()
        assert [r.serializer for r in refs] == ["bytes", "bytes", "text"]
        loaded = [kernel.values.load(r) for r in refs]
        assert type(loaded[0]) is bytes
        assert loaded[0] == big_bytes
        assert type(loaded[1]) is bytearray
        assert loaded[1] == big_bytes
        assert type(loaded[2]) is str
        assert loaded[2] == big_text
    finally:
        kernel.close()
