"""The ``memory`` store: everything in dictionaries, gone when the process ends.

For tests and embedding: ``Kernel.open("memory://")``. Each open is a new,
empty store. Writes are visible at once; ``commit`` only resets the pending
count (there is nothing to make durable). Values are still checked against
their digest on every read, so the store passes the same conformance kit as
the LMDB store.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from aliquot import StoreError, hookimpl
from aliquot.abc import Buffer, check_digest, check_key, check_space


class MemoryStore:
    """Dictionaries behind the :class:`aliquot.abc.Store` protocol."""

    name: ClassVar[str] = "memory"

    def __init__(self, location: str = "memory://", *, readonly: bool = False) -> None:
        self.location = location
        self.readonly = readonly
        self.store_id = uuid.uuid4().hex
        self._spaces: dict[str, dict[bytes, bytes]] = {}
        self._values: dict[str, bytes] = {}
        self._sequences: dict[str, int] = {}
        self._pending = 0
        self._lock = threading.Lock()
        self._secrets: dict[str, bytes] = {}
        self._quarantine: dict[str, bytes] = {}
        self._closed = False

    @classmethod
    def open(cls, location: str, **options: Any) -> MemoryStore:
        unknown = sorted(set(options) - {"readonly"})
        if unknown:
            raise StoreError(f"unknown memory store option(s) {unknown} (known: readonly)")
        return cls(location, **options)

    def secret(self, purpose: str) -> bytes:
        """Per-store keys live only as long as the store."""
        with self._lock:
            return self._secrets.setdefault(purpose, os.urandom(32))

    def _check(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        if self.readonly:
            raise StoreError("the store is open read-only")

    # ------------------------------------------------------------- key/value

    def get(self, space: str, key: bytes) -> bytes | None:
        check_space(space)
        return self._spaces.get(space, {}).get(key)

    def put(self, space: str, key: bytes, value: bytes) -> None:
        self._check()
        check_space(space)
        check_key(key)
        with self._lock:
            self._spaces.setdefault(space, {})[key] = bytes(value)
            self._pending += 1

    def delete(self, space: str, key: bytes) -> None:
        self._check()
        check_space(space)
        check_key(key)
        with self._lock:
            self._spaces.get(space, {}).pop(key, None)
            self._pending += 1

    def scan(
        self, space: str, prefix: bytes = b"", *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        check_space(space)
        with self._lock:
            items = sorted(
                (k, v) for k, v in self._spaces.get(space, {}).items() if k.startswith(prefix)
            )
        if reverse:
            items.reverse()
        return iter(items)

    # ------------------------------------------------------------- values

    def put_value(self, data: Buffer | Sequence[Buffer]) -> tuple[str, int]:
        self._check()
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        blob = b"".join(parts)
        digest = hashlib.sha256(blob).hexdigest()
        with self._lock:
            if digest not in self._values:
                self._values[digest] = blob
                self._pending += 1
        return digest, len(blob)

    def get_value(self, digest: str) -> bytes | None:
        check_digest(digest)
        blob = self._values.get(digest)
        if blob is None:
            return None
        if hashlib.sha256(blob).hexdigest() != digest:
            with self._lock:
                self._values.pop(digest, None)
                self._quarantine[digest] = blob
            return None
        return blob

    def has_value(self, digest: str) -> bool:
        check_digest(digest)
        return digest in self._values

    def next_sequence(self, name: str) -> int:
        self._check()
        with self._lock:
            value = self._sequences.get(name, 0) + 1
            self._sequences[name] = value
            return value

    # ------------------------------------------------------------- durability

    def commit(self) -> None:
        self._check()
        with self._lock:
            self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    # ------------------------------------------------------------- maintenance

    def verify(self) -> dict[str, Any]:
        problems = [
            f"value {d} does not match its digest"
            for d, blob in self._values.items()
            if hashlib.sha256(blob).hexdigest() != d
        ]
        return {
            "ok": not problems,
            "problems": problems,
            "values": len(self._values),
            "quarantined": len(self._quarantine),
        }

    def gc(
        self, live_values: set[str] | None = None, *, candidates: set[str] | None = None
    ) -> dict[str, Any]:
        removed = 0
        freed = 0
        if candidates is not None:
            with self._lock:
                for digest in candidates - (live_values or set()):
                    data = self._values.pop(digest, None)
                    if data is not None:
                        freed += len(data)
                        removed += 1
            return {"values_removed": removed, "bytes_freed": freed, "skipped": []}
        with self._lock:
            quarantined = len(self._quarantine)
            self._quarantine.clear()
            if live_values is not None:
                for digest in [d for d in self._values if d not in live_values]:
                    freed += len(self._values.pop(digest))
                    removed += 1
        return {"values_removed": removed, "bytes_freed": freed, "quarantine_cleared": quarantined}

    def stats(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "store_id": self.store_id,
            "spaces": {name: len(entries) for name, entries in sorted(self._spaces.items())},
            "values": len(self._values),
            "value_bytes": sum(len(v) for v in self._values.values()),
            "quarantined": len(self._quarantine),
        }

    def close(self) -> None:
        self._closed = True


@hookimpl(trylast=True)
def aliquot_register_stores(register: Callable[..., None]) -> None:
    register(MemoryStore)
