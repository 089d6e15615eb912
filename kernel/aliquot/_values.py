"""Values: choosing a serializer for a Python object, storing it, loading it back.

Dispatch order (the contract in ``spec/store.md``): serializers that list the
value's *exact type*, then those that list a type in its MRO (nearest first),
then predicate serializers (``accepts(value)``). Within a tier, lower
``priority`` first -- JSON is 10, pickle is 1000, so JSON always comes before
pickle. When a serializer refuses a value (``dumps`` raises), the next one is
tried; naming a serializer explicitly disables the fallback.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._errors import (
    AliquotError,
    SerializationError,
    UnknownNameError,
    ValueUnavailableError,
)

if TYPE_CHECKING:
    from .abc import Buffer, Serializer, Store

#: Values larger than this are written by a worker thread (they become blob files).
LARGE_VALUE: Final = 1 << 20


@attrs.frozen
class ArtifactRef:
    """A stored value: content digest, size, how it was serialized, and its Python type."""

    digest: str
    size: int
    serializer: str
    serializer_version: str
    type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "size": self.size,
            "serializer": self.serializer,
            "serializer_version": self.serializer_version,
            "type": self.type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactRef:
        return cls(
            str(data["digest"]),
            int(data["size"]),
            str(data["serializer"]),
            str(data["serializer_version"]),
            str(data["type"]),
        )


@attrs.frozen
class SerializerContext:
    """What a serializer may know about where its bytes go.

    ``secret(purpose)`` returns a per-store secret key (32 bytes) that never
    lives inside the store itself; the pickle serializer signs with it.
    """

    store_id: str
    secret: Callable[[str], bytes]


def type_name(value: object) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _byte_view(part: Buffer) -> memoryview:
    view = memoryview(part)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def as_buffers(data: Buffer | Sequence[Buffer]) -> list[memoryview]:
    """Normalise what ``dumps`` returned into a list of flat byte memoryviews."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return [_byte_view(data)]
    return [_byte_view(part) for part in data]


def digest_of(buffers: Sequence[memoryview]) -> str:
    h = hashlib.sha256()
    for b in buffers:
        h.update(b)
    return h.hexdigest()


class Serializers:
    """The registered serializers and the dispatch rule."""

    def __init__(self, serializers: Mapping[str, Serializer]) -> None:
        self._by_name = dict(serializers)
        self._special: dict[str, Serializer] = {}
        self._exact: dict[type, list[Serializer]] = {}
        for s in self._by_name.values():
            for t in getattr(s, "types", ()):
                self._exact.setdefault(t, []).append(s)
        for group in self._exact.values():
            group.sort(key=_priority)
        # (serializer, its accepts predicate), for serializers that define one.
        self._predicates: list[tuple[Serializer, Callable[[object], bool]]] = sorted(
            (
                (s, accepts)
                for s in self._by_name.values()
                if callable(accepts := getattr(s, "accepts", None))
            ),
            key=lambda pair: _priority(pair[0]),
        )
        self._per_type: dict[
            type, tuple[list[Serializer], list[tuple[Serializer, Callable[[object], bool]]]]
        ] = {}

    def __contains__(self, name: str) -> bool:
        if name in self._by_name or name in self._special:
            return True
        try:
            self.get(name)
        except AliquotError:
            return False
        return True

    def names(self) -> list[str]:
        """Names of the registered serializers (not of their specializations)."""
        return list(self._by_name)

    def get(self, name: str) -> Serializer:
        """The serializer called ``name``.

        ``family:argument`` names a *specialization*: the registered serializer
        ``family`` builds it with ``specialize(argument)`` (an artifact task with
        its arguments, say). The result is kept, so each name is built once.
        """
        found = self._by_name.get(name) or self._special.get(name)
        if found is not None:
            return found
        family, sep, argument = name.partition(":")
        base = self._by_name.get(family) if sep else None
        specialize = getattr(base, "specialize", None)
        if base is None or not callable(specialize):
            raise UnknownNameError(
                "serializer", name, list(self._by_name), "a plugin registers serializers"
            )
        made = specialize(argument)
        if getattr(made, "name", None) != name:
            raise SerializationError(
                f"serializer {family!r} specialized {argument!r} into a serializer named "
                f"{getattr(made, 'name', None)!r}, not {name!r}"
            )
        self._special[name] = made
        chosen: Serializer = made
        return chosen

    def candidates(self, value: object) -> list[Serializer]:
        """Serializers that may take ``value``, in the order they are tried."""
        kind = type(value)
        tiers = self._per_type.get(kind)
        if tiers is None:
            typed: list[Serializer] = []
            for base in kind.__mro__:
                for s in self._exact.get(base, ()):
                    if s not in typed:
                        typed.append(s)
            tiers = (typed, [pair for pair in self._predicates if pair[0] not in typed])
            self._per_type[kind] = tiers
        typed, predicates = tiers
        if not predicates:
            return typed
        return typed + [s for s, accepts in predicates if accepts(value)]

    def dumps(
        self, value: object, ctx: SerializerContext, serializer: str | Serializer | None = None
    ) -> tuple[Serializer, list[memoryview]]:
        """Serialize with the named serializer, or the first candidate that accepts it."""
        if serializer is not None:
            chosen = self.get(serializer) if isinstance(serializer, str) else serializer
            try:
                return chosen, as_buffers(chosen.dumps(value, ctx))
            except SerializationError:
                raise
            except Exception as exc:
                raise SerializationError(
                    f"serializer {chosen.name!r} cannot encode a value of type "
                    f"{type_name(value)}: {exc}"
                ) from exc
        refusals = []
        for candidate in self.candidates(value):
            try:
                return candidate, as_buffers(candidate.dumps(value, ctx))
            except Exception as exc:
                refusals.append(f"{candidate.name}: {exc}")
        tried = "; ".join(refusals) if refusals else "no serializer takes this type"
        raise SerializationError(
            f"no serializer could encode a value of type {type_name(value)} ({tried}). "
            "Register a serializer for it, or name one explicitly."
        )


def _priority(s: Serializer) -> int:
    return int(getattr(s, "priority", 100))


class Values:
    """Store and load Python values through serializers and a store."""

    def __init__(self, store: Store, serializers: Serializers, ctx: SerializerContext) -> None:
        self.store = store
        self.serializers = serializers
        self.ctx = ctx

    def encode(
        self, value: object, serializer: str | Serializer | None = None
    ) -> tuple[Serializer, list[memoryview], str, int]:
        """Serialize without storing: (serializer, buffers, digest, size)."""
        chosen, buffers = self.serializers.dumps(value, self.ctx, serializer)
        return chosen, buffers, digest_of(buffers), sum(b.nbytes for b in buffers)

    def save(self, value: object, serializer: str | Serializer | None = None) -> ArtifactRef:
        """Serialize and store ``value`` (staged; durable after the store's next commit)."""
        chosen, buffers = self.serializers.dumps(value, self.ctx, serializer)
        info = self.store.put_value(buffers)
        return ArtifactRef(info[0], info[1], chosen.name, str(chosen.version), type_name(value))

    async def asave(self, value: object, serializer: str | Serializer | None = None) -> ArtifactRef:
        """Like :meth:`save`, writing large values from a worker thread."""
        chosen, buffers = self.serializers.dumps(value, self.ctx, serializer)
        size = sum(b.nbytes for b in buffers)
        if size >= LARGE_VALUE:
            import trio

            info = await trio.to_thread.run_sync(self.store.put_value, buffers)
        else:
            info = self.store.put_value(buffers)
        return ArtifactRef(info[0], info[1], chosen.name, str(chosen.version), type_name(value))

    def load(self, ref: ArtifactRef) -> Any:
        """Load a stored value.

        Raises:
            ValueUnavailableError: the value is missing or failed its checksum.
            UnknownNameError: its serializer is not registered (plugin blocked?).
        """
        serializer = self.serializers.get(ref.serializer)
        data = self.store.get_value(ref.digest)
        if data is None:
            raise ValueUnavailableError(
                f"value {ref.digest[:16]}… ({ref.type}) is missing from the store or failed "
                "its checksum (see `aliquot store verify`)"
            )
        return serializer.loads(memoryview(data), self.ctx)


def config_dir() -> Path:
    """Where per-user aliquot files live (``ALIQUOT_CONFIG_DIR`` or XDG config)."""
    explicit = os.environ.get("ALIQUOT_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "aliquot"


def store_secret(store_id: str, purpose: str) -> bytes:
    """A 32-byte key for ``store_id`` kept *outside* the store, created with mode 0600.

    Keeping the key out of the store means a copied-in or planted store cannot
    bring its own key: its signed payloads do not verify here.
    """
    if not store_id.replace("-", "").isalnum():
        raise SerializationError(f"invalid store id {store_id!r}")
    keys = config_dir() / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = keys / f"{store_id}.{purpose}.key"
    if not path.exists():
        # Write a complete key under a private name, then link it into place:
        # two processes racing both end up reading the one that won.
        tmp = keys / f".{store_id}.{purpose}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SerializationError(
            f"key file {path} is readable by other users (mode {mode:o}); run `chmod 600` on it"
        )
    key = path.read_bytes()
    if len(key) != 32:
        raise SerializationError(f"key file {path} is damaged (expected 32 bytes)")
    return key
