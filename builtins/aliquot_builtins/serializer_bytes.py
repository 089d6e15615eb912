"""The ``bytes`` and ``text`` serializers: raw bytes, and ``str`` as UTF-8.

``bytes`` takes ``bytes`` and ``bytearray`` (a one-byte type code keeps them
apart); ``text`` takes ``str``. Both come before JSON for their types: raw
bytes are smaller and need no escaping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aliquot import SerializationError, SerializerContext, hookimpl


class BytesSerializer:
    """``bytes`` / ``bytearray`` stored as they are."""

    name = "bytes"
    version = "1"
    priority = 5
    types: tuple[type, ...] = (bytes, bytearray)

    def dumps(self, value: Any, ctx: SerializerContext) -> Sequence[bytes | bytearray]:
        if type(value) is bytes:
            return [b"b", value]
        if type(value) is bytearray:
            return [b"a", value]
        raise SerializationError(
            f"bytes serializer takes bytes or bytearray, not {type(value).__name__}"
        )

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        if not data:
            raise SerializationError("empty bytes payload")
        code = data[0]
        if code == ord("b"):
            return data[1:].tobytes()
        if code == ord("a"):
            return bytearray(data[1:])
        raise SerializationError(f"unknown bytes payload code {bytes([code])!r}")


class TextSerializer:
    """``str`` stored as UTF-8 (surrogates kept with ``surrogatepass``)."""

    name = "text"
    version = "1"
    priority = 5
    types: tuple[type, ...] = (str,)

    def dumps(self, value: Any, ctx: SerializerContext) -> bytes:
        if type(value) is not str:
            raise SerializationError(f"text serializer takes str, not {type(value).__name__}")
        return value.encode("utf-8", "surrogatepass")

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        try:
            return bytes(data).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise SerializationError(f"damaged text payload: {exc}") from exc


@hookimpl(trylast=True)
def aliquot_register_serializers(register: Callable[..., None]) -> None:
    register(BytesSerializer())
    register(TextSerializer())
