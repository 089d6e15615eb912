"""The ``memory`` store: the conformance kit plus what is particular to it."""

from __future__ import annotations

import hashlib

import pytest

from aliquot import StoreError
from aliquot.testing import check_store
from aliquot_builtins.store_memory import MemoryStore


def test_memory_store_passes_the_conformance_kit() -> None:
    """Rule: MemoryStore keeps every Store rule the kit checks (no reopen: not durable)."""
    check_store(lambda: MemoryStore.open("memory://"))


def test_each_open_is_a_new_empty_and_independent_store() -> None:
    """Rule: every ``open("memory://")`` is empty, has its own id, and shares nothing."""
    first = MemoryStore.open("memory://")
    first.put("runs", b"k", b"first")
    digest, _ = first.put_value(b"a value")
    assert first.next_sequence("n") == 1
    first.commit()

    second = MemoryStore.open("memory://")
    assert second.store_id != first.store_id
    assert second.get("runs", b"k") is None
    assert list(second.scan("runs")) == []
    assert not second.has_value(digest)
    assert second.get_value(digest) is None
    assert second.next_sequence("n") == 1, "sequences are per store"
    assert second.pending == 0

    second.put("runs", b"k", b"second")
    assert first.get("runs", b"k") == b"first", "a write to one store must not reach another"
    first.close()
    assert second.get("runs", b"k") == b"second", "closing one store must not affect another"
    second.close()


def test_value_whose_bytes_were_altered_reads_as_none() -> None:
    """Rule: a value that no longer matches its digest is a miss (None), reported by
    verify, quarantined, cleared by gc -- and can be stored again afterwards."""
    store = MemoryStore.open("memory://")
    good, _ = store.put_value(b"kept intact")
    digest, _ = store.put_value(b"original bytes")
    assert digest == hashlib.sha256(b"original bytes").hexdigest()
    store._values[digest] = b"0riginal bytes"  # damage behind the store's back

    report = store.verify()
    assert report["ok"] is False
    assert any(digest in problem for problem in report["problems"])

    assert store.get_value(digest) is None, "altered bytes must never be returned"
    assert store.get_value(digest) is None
    assert not store.has_value(digest), "a quarantined value is no longer indexed"
    assert store.get_value(good) == b"kept intact"
    assert store.verify()["ok"] is True

    result = store.gc()
    assert result["quarantine_cleared"] == 1
    assert store.put_value(b"original bytes") == (digest, 14)
    assert store.get_value(digest) == b"original bytes", "the value can be stored again"


def test_options_are_refused_and_a_closed_store_refuses_writes() -> None:
    """Rule: unknown options and writes after close raise StoreError."""
    with pytest.raises(StoreError):
        MemoryStore.open("memory://", blob_threshold=1)
    store = MemoryStore.open("memory://")
    store.close()
    with pytest.raises(StoreError):
        store.put("runs", b"k", b"v")
    with pytest.raises(StoreError):
        store.put_value(b"v")
    with pytest.raises(StoreError):
        store.commit()


def test_gc_keeps_a_user_space_named_quarantine() -> None:
    """Rule: gc removes only debris; a user's data in any valid space survives it."""
    store = MemoryStore.open("memory://")
    store.put("quarantine", b"mine", b"user data")
    store.commit()
    store.gc()
    assert store.get("quarantine", b"mine") == b"user data"
