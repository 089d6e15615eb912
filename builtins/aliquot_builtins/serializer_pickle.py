"""The ``pickle`` serializer: any picklable value, in a signed envelope.

Pickle is a *code* format: loading a pickle can run arbitrary code. So every
payload is signed with HMAC-SHA256 under a per-store secret key that lives
outside the store (``~/.config/aliquot/keys/<store id>.pickle.key``, mode
0600; see ``ALIQUOT_CONFIG_DIR``), and ``loads`` verifies the signature --
with :func:`hmac.compare_digest` -- *before* anything is unpickled. An
unsigned, foreign-keyed, truncated or tampered payload is refused with
:class:`~aliquot.UntrustedPayloadError` and no code runs.

Envelope: ``b"AQPK1\\0" | key id (8) | HMAC (32) | pickle (protocol 5)``, the
HMAC covering magic, key id and pickle. The key id is the first 8 bytes of
SHA-256 of the key, so a payload from another store is named as such.

What this does not stop: a malicious *plugin* (it runs in-process and can read
the key). It stops planted or swapped payloads in a copied, shared or
restored store. Pickle is the last resort of dispatch (priority 1000): JSON,
bytes, text and numpy are always tried first.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from aliquot import SerializationError, SerializerContext, UntrustedPayloadError, hookimpl

MAGIC = b"AQPK1\x00"
_HEAD = len(MAGIC) + 8 + 32


def _key(ctx: SerializerContext) -> tuple[bytes, bytes]:
    key = ctx.secret("pickle")
    return key, hashlib.sha256(key).digest()[:8]


class PickleSerializer:
    """Signed pickle (see the module docstring)."""

    name = "pickle"
    version = "1"
    priority = 1000
    types: tuple[type, ...] = ()

    def accepts(self, value: Any) -> bool:
        return True

    def dumps(self, value: Any, ctx: SerializerContext) -> Sequence[bytes]:
        key, key_id = _key(ctx)
        try:
            payload = pickle.dumps(value, protocol=5)
        except Exception as exc:
            raise SerializationError(f"cannot pickle {type(value).__name__}: {exc}") from exc
        mac = hmac.new(key, MAGIC + key_id, hashlib.sha256)
        mac.update(payload)
        return [MAGIC + key_id + mac.digest(), payload]

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        verify(data, ctx)
        return pickle.loads(data[_HEAD:])


def verify(data: memoryview | bytes, ctx: SerializerContext) -> None:
    """Raise :class:`UntrustedPayloadError` unless ``data`` is a payload this store signed."""
    view = memoryview(data)
    if len(view) < _HEAD or bytes(view[: len(MAGIC)]) != MAGIC:
        raise UntrustedPayloadError("refusing to unpickle: the payload is not signed by aliquot")
    key, key_id = _key(ctx)
    if bytes(view[len(MAGIC) : len(MAGIC) + 8]) != key_id:
        raise UntrustedPayloadError(
            "refusing to unpickle: the payload was signed with another key (another store?)"
        )
    mac = hmac.new(key, MAGIC + key_id, hashlib.sha256)
    mac.update(view[_HEAD:])
    if not hmac.compare_digest(mac.digest(), bytes(view[len(MAGIC) + 8 : _HEAD])):
        raise UntrustedPayloadError(
            "refusing to unpickle: the signature does not match (tampered?)"
        )


@hookimpl(trylast=True)
def aliquot_register_serializers(register: Callable[..., None]) -> None:
    register(PickleSerializer())
