"""The ``numpy`` serializer: raw buffers, never pickle; zero-copy, copy-on-write loads.

Rules: arrays of every non-object dtype, shape and memory order round-trip
bit for bit; numpy scalars come back as the same scalar type (and dispatch
sends them to numpy even when they subclass float/complex/str/bytes);
object arrays are refused (dispatch then uses pickle); pickle is never
used; a large array loaded from an LMDB store *is* the memory map (writeable,
copy-on-write: the store never changes); damaged headers raise
SerializationError.
"""

from __future__ import annotations

import hashlib
import mmap
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import aliquot
from aliquot import SerializationError, SerializerContext
from aliquot.testing import check_serializer, make_kernel
from aliquot_builtins.serializer_json import JsonSerializer
from aliquot_builtins.serializer_numpy import ALIGN, MAGIC, NumpySerializer

CTX = SerializerContext("numpytest", lambda purpose: hashlib.sha256(purpose.encode()).digest())
NUMPY = NumpySerializer()

STRUCTURED = np.dtype(
    [
        ("id", "<i8"),
        ("pos", "<f4", (2, 3)),
        ("name", "<U5"),
        ("inner", [("flag", "?"), ("raw", "S3")]),
    ]
)


def _structured() -> np.ndarray:
    a = np.zeros(4, STRUCTURED)
    a["id"] = [1, 2, 3, 4]
    a["pos"] = np.arange(24, dtype="<f4").reshape(4, 2, 3)
    a["name"] = ["a", "bé", "𝄞", ""]
    a["inner"]["flag"] = [True, False, True, False]
    a["inner"]["raw"] = [b"x", b"yz", b"\x00\x01\x02", b""]
    return a


DTYPES: dict[str, np.ndarray] = {
    "bool": np.array([True, False, True]),
    "int8": np.array([-128, 0, 127], np.int8),
    "uint8": np.array([0, 255], np.uint8),
    "int16": np.array([-32768, 32767], np.int16),
    "uint16": np.array([0, 65535], np.uint16),
    "int32": np.array([-(2**31), 2**31 - 1], np.int32),
    "uint32": np.array([0, 2**32 - 1], np.uint32),
    "int64": np.array([-(2**63), 2**63 - 1], np.int64),
    "uint64": np.array([0, 2**64 - 1], np.uint64),
    "float16": np.array([0.5, -0.0, 65504.0, 6e-8], np.float16),
    "float32": np.array([1.5, -2.25, 3.4e38], np.float32),
    "float64": np.array([np.pi, -0.0, 1e-308, 1.7976931348623157e308]),
    "longdouble": np.array([1.5, 2.5], np.longdouble),
    "complex64": np.array([1 + 2j, -3.5j], np.complex64),
    "complex128": np.array([1 + 2j, np.inf - 1j]),
    "clongdouble": np.array([1 + 2j], np.clongdouble),
    "datetime64-ns": np.array(["2024-02-29T12:00:00.123456789", "1970-01-01"], "M8[ns]"),
    "datetime64-D": np.array(["2024-02-29", "1900-01-01"], "M8[D]"),
    "timedelta64-s": np.array([1, -5, 86400], "m8[s]"),
    "unicode": np.array(["héllo", "𝄞", "", "日本語"]),
    "bytes-S": np.array([b"ab", b"", b"\x00\xff"]),
    "void": np.frombuffer(b"abcdef", "V3"),
    "big-endian-int": np.arange(5, dtype=">i4"),
    "big-endian-float": np.linspace(0, 1, 5, dtype=">f8"),
    "structured-subarray-nested": _structured(),
}

SHAPES: dict[str, np.ndarray] = {
    "0-d": np.array(42.5),
    "0-d-int": np.array(7, np.int16),
    "empty-1d": np.zeros(0),
    "empty-2d": np.zeros((0, 3), np.int32),
    "empty-3d-middle": np.zeros((3, 0, 2), np.complex64),
    "empty-structured": np.zeros(0, STRUCTURED),
    "one": np.array([1]),
    "3-d": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
    "4-d": np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5),
}

_base = np.arange(2 * 6 * 8, dtype=np.float64).reshape(2, 6, 8)
LAYOUTS: dict[str, np.ndarray] = {
    "C": np.ascontiguousarray(_base),
    "F": np.asfortranarray(_base),
    "F-2d": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    "step-slice": _base[:, ::2, 1::3],
    "reversed": _base[::-1, :, ::-1],
    "transposed-mixed": _base.transpose(1, 0, 2),
    "column": _base[0, :, 3],
    "structured-field-view": _structured()["pos"],
    "broadcast": np.broadcast_to(np.arange(3.0), (4, 3)),
}

SCALARS: dict[str, Any] = {
    "float64": np.float64(1.25),
    "float32": np.float32(-2.5),
    "float16": np.float16(0.5),
    "longdouble": np.longdouble(3.5),
    "int8": np.int8(-5),
    "uint64": np.uint64(2**64 - 1),
    "int64": np.int64(-(2**63)),
    "bool": np.bool_(True),
    "complex128": np.complex128(1 - 2j),
    "complex64": np.complex64(3j),
    "datetime64": np.datetime64("2024-01-02T03:04:05"),
    "timedelta64": np.timedelta64(90, "m"),
    "str_": np.str_("héllo"),
    "bytes_": np.bytes_(b"ab\x00c"),
    "void-structured": np.zeros((), [("a", "<i4"), ("b", "<f8")])[()],
}

ALL_ARRAYS = {**DTYPES, **SHAPES, **LAYOUTS}


def encode(value: Any) -> bytes:
    return b"".join(bytes(memoryview(p).cast("B")) for p in NUMPY.dumps(value, CTX))


def roundtrip(value: Any) -> Any:
    return NUMPY.loads(memoryview(encode(value)), CTX)


def assert_same_array(a: Any, b: Any) -> None:
    """Same type, dtype, shape and bit-for-bit contents (nan, NaT and -0.0 included)."""
    assert type(a) is type(b), f"{type(a).__name__} came back as {type(b).__name__}"
    assert a.dtype == b.dtype, f"dtype {a.dtype} came back as {b.dtype}"
    assert np.shape(a) == np.shape(b), f"shape {np.shape(a)} came back as {np.shape(b)}"
    if a.dtype in _PADDED_FLOATS:  # x87 80-bit values: 6 padding bytes carry no data
        assert np.array_equal(a, b, equal_nan=True), "contents changed"
        return
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), "contents changed"


_PADDED_FLOATS = {np.dtype(np.longdouble), np.dtype(np.clongdouble)}


def base_chain(array: np.ndarray) -> list[Any]:
    """The objects an array's memory comes from: array, its bases, memoryviews, the owner."""
    chain: list[Any] = []
    obj: Any = array
    while obj is not None:
        chain.append(obj)
        if isinstance(obj, np.ndarray):
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            break
    return chain


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def lmdb_kernel(tmp_path: Path) -> Iterator[aliquot.Kernel]:
    k = make_kernel(store=str(tmp_path / "store"))
    try:
        yield k
    finally:
        k.close()


# --------------------------------------------------------------------------- conformance


def test_conformance_kit_passes_for_arrays_and_scalars() -> None:
    """check_serializer: dtypes, shapes, layouts and scalars (samples without nan/NaT)."""
    samples = [v for k, v in ALL_ARRAYS.items() if k not in {"datetime64-ns"}] + list(
        SCALARS.values()
    )
    check_serializer(NUMPY, samples)


@pytest.mark.parametrize("value", list(ALL_ARRAYS.values()), ids=list(ALL_ARRAYS))
def test_arrays_roundtrip_bit_for_bit(value: np.ndarray) -> None:
    """Every dtype (incl. float16, complex, datetime64, structured with sub-arrays, 'U'), every
    shape (0-d, empty, 3-d) and every layout comes back as an ndarray with the same bits."""
    assert_same_array(value, roundtrip(value))


def test_special_float_and_time_values_survive() -> None:
    """nan, inf, -0.0 and NaT keep their exact bits (equality would hide them)."""
    value = np.array([np.nan, -np.inf, -0.0, np.inf], np.float16)
    assert_same_array(value, roundtrip(value))
    times = np.array(["NaT", "2020-01-01"], "M8[us]")
    loaded = roundtrip(times)
    assert np.isnat(loaded[0])
    assert loaded[1] == times[1]


def test_fortran_order_is_kept_when_loaded_from_a_writeable_buffer() -> None:
    """A Fortran-ordered array is stored in F order and loads F-contiguous (no transpose copy)."""
    value = LAYOUTS["F"]
    parts = NUMPY.dumps(value, CTX)
    header = _header(encode(value))
    assert header["order"] == "F"
    assert header["shape"] == list(value.shape)
    assert np.shares_memory(np.asarray(parts[1]), value), "dumps must not copy a contiguous array"
    loaded = NUMPY.loads(memoryview(bytearray(encode(value))), CTX)
    assert loaded.flags.f_contiguous
    assert np.array_equal(loaded, value)


def test_non_contiguous_arrays_are_stored_compactly_in_c_order() -> None:
    """A strided view is stored as its C-ordered elements only (not the whole base buffer)."""
    value = LAYOUTS["step-slice"]
    data = encode(value)
    header = _header(data)
    assert header["order"] == "C"
    assert len(data) == _data_offset(data) + value.size * value.itemsize
    assert np.array_equal(roundtrip(value), value)


def test_payload_layout_magic_header_and_64_byte_alignment() -> None:
    """Payload: magic | u32 header length | JSON header | zero padding to 64 | raw data."""
    value = np.arange(10, dtype="<i2")
    data = encode(value)
    assert data[: len(MAGIC)] == MAGIC == b"AQNP1\x00"
    assert _data_offset(data) % ALIGN == 0
    assert _header(data) == {"dtype": "<i2", "shape": [10], "order": "C", "scalar": False}
    assert data[_data_offset(data) :] == value.tobytes()


def _header(data: bytes) -> dict[str, Any]:
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return orjson.loads(data[start : start + size])  # type: ignore[no-any-return]


def _data_offset(data: bytes) -> int:
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    offset = len(MAGIC) + 4 + size
    return offset + (-offset % ALIGN)


# --------------------------------------------------------------------------- scalars & dispatch


@pytest.mark.parametrize("value", list(SCALARS.values()), ids=list(SCALARS))
def test_scalars_roundtrip_as_the_same_scalar_type(value: Any) -> None:
    """A numpy scalar comes back as a scalar of the same type (not a 0-d array)."""
    loaded = roundtrip(value)
    assert type(loaded) is type(value)
    assert_same_array(value, loaded)


@pytest.mark.parametrize("value", list(SCALARS.values()), ids=list(SCALARS))
def test_dispatch_stores_numpy_scalars_with_numpy(kernel: aliquot.Kernel, value: Any) -> None:
    """Dispatch picks numpy for every scalar -- also np.float64 / np.complex128 / np.str_ /
    np.bytes_, which subclass float / complex / str / bytes (json, text and bytes refuse them)."""
    ref = kernel.values.save(value)
    assert ref.serializer == "numpy"
    assert_same_array(value, kernel.values.load(ref))


def test_float64_is_a_float_but_json_refuses_it(kernel: aliquot.Kernel) -> None:
    """np.float64 subclasses float, so json is a typed candidate; json refuses it, and the value
    is stored by numpy, never by json or pickle."""
    value = np.float64(0.1)
    assert isinstance(value, float)
    names = [s.name for s in kernel.serializers.candidates(value)]
    assert "numpy" in names
    assert names.index("numpy") < names.index("pickle")
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(value, CTX)
    ref = kernel.values.save(value)
    assert ref.serializer == "numpy"
    assert ref.type == "numpy.float64"
    assert type(kernel.values.load(ref)) is np.float64


def test_dispatch_stores_arrays_with_numpy(kernel: aliquot.Kernel) -> None:
    """A plain ndarray goes to numpy (predicate tier, priority 20, before pickle)."""
    ref = kernel.values.save(np.arange(5))
    assert ref.serializer == "numpy"
    assert ref.type == "numpy.ndarray"


@pytest.mark.parametrize(
    "value",
    [
        np.array([1, "two", None], dtype=object),
        np.zeros(2, [("a", "<i4"), ("o", "O")]),
        np.array(None),
    ],
    ids=["object-1d", "structured-with-object-field", "object-0d"],
)
def test_object_arrays_are_refused_by_numpy_and_pickled_by_dispatch(
    kernel: aliquot.Kernel, value: np.ndarray
) -> None:
    """Object arrays would need pickle: numpy refuses them; dispatch then uses pickle."""
    with pytest.raises(SerializationError, match="object"):
        NUMPY.dumps(value, CTX)
    ref = kernel.values.save(value)
    assert ref.serializer == "pickle"
    loaded = kernel.values.load(ref)
    assert loaded.dtype == value.dtype
    assert loaded.shape == value.shape
    assert [repr(x) for x in loaded.ravel()] == [repr(x) for x in value.ravel()]


@pytest.mark.parametrize(
    "value",
    [np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]), np.zeros(2, [("a", "<i4")]).view(np.recarray)],
    ids=["masked", "recarray"],
)
def test_ndarray_subclasses_are_not_taken_by_numpy(kernel: aliquot.Kernel, value: Any) -> None:
    """numpy takes exact ndarrays only; subclasses (masked, recarray) keep their type via pickle."""
    assert not NUMPY.accepts(value)
    ref = kernel.values.save(value)
    assert ref.serializer == "pickle"
    assert type(kernel.values.load(ref)) is type(value)


def test_numpy_never_uses_pickle(monkeypatch: pytest.MonkeyPatch, kernel: aliquot.Kernel) -> None:
    """With every pickle entry point patched to raise, all arrays and scalars still dump and load
    (directly and through dispatch)."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle was used")

    for name in ("dumps", "loads", "dump", "load", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    for value in [*ALL_ARRAYS.values(), *SCALARS.values()]:
        data = encode(value)
        NUMPY.loads(memoryview(data), CTX)
        NUMPY.loads(memoryview(bytearray(data)), CTX)
        ref = kernel.values.save(value)
        assert ref.serializer == "numpy"
        kernel.values.load(ref)


# --------------------------------------------------------------------------- zero-copy


def test_large_array_loads_zero_copy_from_the_store_memory_map(lmdb_kernel: aliquot.Kernel) -> None:
    """An 8 MB array saved in an LMDB store loads as a view of an mmap (no bytes copy), writeable
    (copy-on-write), and writing to it never changes the stored value."""
    value = np.arange(1 << 20, dtype=np.float64)  # 8 MB
    ref = lmdb_kernel.values.save(value)
    lmdb_kernel.store.commit()
    assert ref.serializer == "numpy"
    assert ref.size > 8 << 20
    loaded = lmdb_kernel.values.load(ref)
    chain = base_chain(loaded)
    assert isinstance(chain[-1], mmap.mmap), (
        f"base chain ends in {type(chain[-1]).__name__}: {chain}"
    )
    assert not any(isinstance(x, (bytes, bytearray)) for x in chain)
    assert not loaded.flags.owndata
    assert loaded.flags.aligned
    assert loaded.flags.writeable
    assert np.array_equal(loaded, value)

    loaded[:] = -1.0
    loaded[123] = 42.0
    again = lmdb_kernel.values.load(ref)
    assert np.array_equal(again, value), "writing to a loaded array changed the store"
    blob = Path(lmdb_kernel.store.location) / "blobs" / ref.digest[:2] / ref.digest
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == ref.digest


def test_large_fortran_array_loads_zero_copy_in_f_order(lmdb_kernel: aliquot.Kernel) -> None:
    """A large F-ordered array also loads straight from the map, still F-contiguous."""
    value = np.asfortranarray(np.arange(512 * 1024, dtype=np.float32).reshape(512, 1024))
    ref = lmdb_kernel.values.save(value)
    lmdb_kernel.store.commit()
    loaded = lmdb_kernel.values.load(ref)
    assert isinstance(base_chain(loaded)[-1], mmap.mmap)
    assert loaded.flags.f_contiguous
    assert np.array_equal(loaded, value)


def test_small_values_from_read_only_bytes_load_as_writeable_copies(kernel: aliquot.Kernel) -> None:
    """From a read-only source (bytes) the loaded array is an ordinary writeable array."""
    value = np.arange(6, dtype=np.int32).reshape(2, 3)
    ref = kernel.values.save(value)
    loaded = kernel.values.load(ref)
    assert loaded.flags.writeable
    loaded[0, 0] = 99
    assert np.array_equal(kernel.values.load(ref), value)


def test_reloaded_fortran_array_resaves_to_the_same_digest(kernel: aliquot.Kernel) -> None:
    """save(load(ref)) of an F-ordered array gives the same digest (layout survives the copy)."""
    ref = kernel.values.save(LAYOUTS["F-2d"])
    loaded = kernel.values.load(ref)
    assert loaded.flags.f_contiguous
    assert kernel.values.save(loaded).digest == ref.digest


def test_reloaded_padded_structured_array_resaves_to_the_same_digest(
    kernel: aliquot.Kernel,
) -> None:
    """save(load(ref)) of a padded structured array gives the same digest, bit for bit."""
    value = np.zeros(4, np.dtype([("a", "u1"), ("b", "<i4")], align=True))
    value["a"], value["b"] = 1, 2
    ref = kernel.values.save(value)
    for _ in range(5):
        junk = np.full(value.nbytes, 0xAB, np.uint8)  # dirty numpy's small-buffer cache
        del junk
        loaded = kernel.values.load(ref)
        assert loaded.view(np.uint8).tobytes() == value.view(np.uint8).tobytes()
        assert kernel.values.save(loaded).digest == ref.digest


def test_structured_dtype_with_titles_roundtrips() -> None:
    """Field titles are part of the dtype: such arrays load back (or are refused at dumps)."""
    dtype = np.dtype({"names": ["a", "b"], "formats": ["<i4", "<f8"], "titles": ["Alpha", "Beta"]})
    value = np.zeros(3, dtype)
    try:
        data = encode(value)
    except SerializationError:
        return  # refusing at dumps time is acceptable too
    assert_same_array(value, NUMPY.loads(memoryview(data), CTX))


# --------------------------------------------------------------------------- damaged payloads


def _craft(header: Any, data: bytes = b"", *, raw_header: bytes | None = None) -> memoryview:
    h = raw_header if raw_header is not None else orjson.dumps(header)
    head = MAGIC + struct.pack("<I", len(h)) + h
    head += b"\0" * (-len(head) % ALIGN)
    return memoryview(head + data)


GOOD = {"dtype": "<i4", "shape": [2], "order": "C", "scalar": False}
DAMAGED: dict[str, memoryview] = {
    "empty": memoryview(b""),
    "short": memoryview(MAGIC[:3]),
    "magic-only": memoryview(MAGIC),
    "wrong-magic": memoryview(b"AQNP2\x00" + encode(np.arange(2, dtype="<i4"))[6:]),
    "pickle-magic": memoryview(b"\x80\x05" + b"\0" * 100),
    "header-not-json": _craft(None, b"\0" * 8, raw_header=b"{not json"),
    "header-length-beyond-end": memoryview(MAGIC + struct.pack("<I", 1 << 30) + b'{"dtype":'),
    "header-is-a-list": _craft([1, 2], b"\0" * 8),
    "header-is-a-string": _craft("dtype", b"\0" * 8),
    "missing-dtype": _craft({"shape": [2]}, b"\0" * 8),
    "missing-shape": _craft({"dtype": "<i4"}, b"\0" * 8),
    "bogus-dtype": _craft({**GOOD, "dtype": "not-a-dtype"}, b"\0" * 8),
    "dtype-number": _craft({**GOOD, "dtype": 5}, b"\0" * 8),
    "shape-string": _craft({**GOOD, "shape": "ab"}, b"\0" * 8),
    "shape-null": _craft({**GOOD, "shape": None}, b"\0" * 8),
    "too-few-data-bytes": _craft(GOOD, b"\0" * 7),
    "too-many-data-bytes": _craft(GOOD, b"\0" * 9),
    "shape-too-large": _craft({**GOOD, "shape": [1 << 40]}, b"\0" * 8),
    "negative-count": _craft({**GOOD, "shape": [-2]}, b"\0" * 8),
}


@pytest.mark.parametrize("payload", list(DAMAGED.values()), ids=list(DAMAGED))
def test_damaged_payload_raises_serialization_error(payload: memoryview) -> None:
    """Bad magic, broken or incomplete header, wrong data length -> SerializationError."""
    with pytest.raises(SerializationError):
        NUMPY.loads(payload, CTX)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_craft({**GOOD, "shape": [0, -5]}), id="negative-dim-zero-count"),
        pytest.param(_craft({**GOOD, "shape": [-2, -1]}, b"\0" * 8), id="two-negative-dims"),
        pytest.param(_craft({**GOOD, "dtype": "|O", "shape": [1]}, b"\0" * 8), id="object-dtype"),
        pytest.param(
            _craft({**GOOD, "dtype": [["a", "|O"]], "shape": [1]}, b"\0" * 8), id="object-field"
        ),
        pytest.param(_craft({**GOOD, "dtype": "|O", "shape": [0]}), id="empty-object-array"),
    ],
)
def test_crafted_header_with_invalid_shape_or_object_dtype_raises_serialization_error(
    payload: memoryview,
) -> None:
    """Negative dimensions or an object dtype in a header -> SerializationError."""
    with pytest.raises(SerializationError):
        NUMPY.loads(payload, CTX)


def test_crafted_object_dtype_never_builds_objects_from_raw_bytes() -> None:
    """Safety today: an object dtype in a header never turns raw bytes into object pointers."""
    payload = _craft({**GOOD, "dtype": "|O", "shape": [1]}, b"\x41" * 8)
    with pytest.raises(Exception, match=r"OBJECT|object"):
        NUMPY.loads(payload, CTX)


def test_truncated_real_payloads_raise_serialization_error() -> None:
    """Every strict prefix of a real payload (header or data cut) -> SerializationError."""
    data = encode(_structured())
    for cut in range(len(data)):
        with pytest.raises(SerializationError):
            NUMPY.loads(memoryview(data[:cut]), CTX)
