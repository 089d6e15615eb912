"""The ``numpy`` serializer: arrays as raw buffers, never pickle; loads are zero-copy.

Payload: ``b"AQNP1\\0"`` | header length (u32, little endian) | JSON header
``{"dtype": descr, "shape": [...], "order": "C" | "F", "scalar": bool}`` |
padding to a 64-byte boundary | the array's bytes. Loading wraps the stored
buffer with :func:`numpy.frombuffer`: when the store hands out a memory map
(large values in the LMDB store), the array *is* the map -- copy-on-write,
so writing to it never touches the store. Object arrays are refused (they
would need pickle); numpy scalars round-trip as scalars.

The plugin is *unavailable* (not an error) where numpy is not installed.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from aliquot import PluginUnavailable, SerializationError, SerializerContext, hookimpl

if importlib.util.find_spec("numpy") is None:
    raise PluginUnavailable("needs numpy (pip install numpy)")

MAGIC = b"AQNP1\x00"
_LEN = struct.Struct("<I")
ALIGN = 64


class NumpySerializer:
    """numpy arrays and scalars (see the module docstring)."""

    name = "numpy"
    version = "1"
    priority = 20
    types: tuple[type, ...] = ()

    def accepts(self, value: Any) -> bool:
        kind = type(value)
        if kind.__module__ != "numpy":
            return False
        import numpy as np

        return kind is np.ndarray or isinstance(value, np.generic)

    def dumps(self, value: Any, ctx: SerializerContext) -> Sequence[Any]:
        import numpy as np

        scalar = isinstance(value, np.generic)
        array = np.asarray(value) if scalar else value
        if type(array) is not np.ndarray:
            raise SerializationError(f"numpy serializer takes ndarray, not {type(array).__name__}")
        if array.dtype.hasobject:
            raise SerializationError("object arrays need pickle; the numpy serializer refuses them")
        if array.flags.c_contiguous:
            order, flat = "C", array
        elif array.flags.f_contiguous:
            order, flat = "F", array.T
        else:
            order, flat = "C", np.ascontiguousarray(array)
        descr = np.lib.format.dtype_to_descr(array.dtype)
        if _dtype_from_json(orjson.loads(orjson.dumps(descr))) != array.dtype:
            # e.g. fields with titles: refuse rather than store what cannot be loaded
            raise SerializationError(f"the dtype {array.dtype} does not survive a JSON header")
        header = orjson.dumps(
            {
                "dtype": descr,
                "shape": list(array.shape),
                "order": order,
                "scalar": scalar,
            }
        )
        head = MAGIC + _LEN.pack(len(header)) + header
        head += b"\0" * (-len(head) % ALIGN)
        raw = flat.reshape(-1).view(np.uint8) if flat.size else np.empty(0, np.uint8)
        return [head, raw]

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        import numpy as np

        if len(data) < len(MAGIC) + 4 or bytes(data[: len(MAGIC)]) != MAGIC:
            raise SerializationError("not a numpy payload")
        (size,) = _LEN.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = orjson.loads(data[start : start + size])
            dtype = _dtype_from_json(header["dtype"])
            shape = tuple(int(n) for n in header["shape"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise SerializationError(f"damaged numpy header: {exc}") from exc
        if dtype.hasobject:
            raise SerializationError("refusing a numpy payload with an object dtype")
        if any(n < 0 for n in shape):
            raise SerializationError(f"damaged numpy header: negative dimension in {shape}")
        offset = start + size
        offset += -offset % ALIGN
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        if len(data) - offset != nbytes:
            raise SerializationError(
                f"numpy payload has {len(data) - offset} data bytes, expected {nbytes}"
            )
        if data.readonly and count:
            # A read-only source (bytes): copy the raw bytes, not the array, so the
            # layout (F order) and the padding of structured dtypes are kept exactly.
            data = memoryview(bytearray(data))
        try:
            if count == 0:
                array = np.zeros(shape, dtype)
            elif header.get("order") == "F":
                array = np.frombuffer(data, dtype, count, offset).reshape(shape[::-1]).T
            else:
                array = np.frombuffer(data, dtype, count, offset).reshape(shape)
        except ValueError as exc:
            raise SerializationError(f"damaged numpy payload: {exc}") from exc
        if header.get("scalar"):
            return array[()]
        return array


def _dtype_from_json(descr: Any) -> Any:
    """The dtype of a JSON-decoded ``dtype_to_descr`` value (JSON turned its tuples into lists)."""
    import numpy as np

    def fields(items: list[Any]) -> list[tuple[Any, ...]]:
        out = []
        for item in items:
            name, sub, *shape = item
            if isinstance(name, list):
                name = tuple(name)  # (title, name)
            sub = fields(sub) if isinstance(sub, list) else sub
            out.append((name, sub, *(tuple(s) for s in shape)))
        return out

    return np.lib.format.descr_to_dtype(fields(descr) if isinstance(descr, list) else descr)


@hookimpl(trylast=True)
def aliquot_register_serializers(register: Callable[..., None]) -> None:
    register(NumpySerializer())
