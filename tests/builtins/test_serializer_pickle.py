"""The ``pickle`` serializer: a signed envelope, verified *before* anything is unpickled.

Envelope: ``b"AQPK1\\0" | key id (8) | HMAC-SHA256 (32) | pickle``. Rules: every
payload starts with the magic; any object round-trips; an unsigned, foreign,
truncated or tampered payload raises :class:`aliquot.UntrustedPayloadError`
with no code run (a canary whose unpickling creates a marker file proves
it); the per-store key lives in ``ALIQUOT_CONFIG_DIR/keys`` with mode 0600,
never inside the store, and a key readable by others is refused.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import pickle
import random
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot import SerializationError, SerializerContext, UntrustedPayloadError
from aliquot.testing import check_serializer, make_kernel
from aliquot_builtins import serializer_pickle
from aliquot_builtins.serializer_pickle import MAGIC, PickleSerializer, verify

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
CTX = SerializerContext("storea", lambda purpose: KEY)
OTHER_CTX = SerializerContext("storeb", lambda purpose: OTHER_KEY)
PICKLE = PickleSerializer()
HEAD = len(MAGIC) + 8 + 32


# --------------------------------------------------------------------------- module-level types


def plant_marker(path: str) -> str:
    """What the canary's unpickling calls: proof that unpickling ran."""
    Path(path).touch()
    return path


class Canary:
    """Unpickling this object creates ``marker`` (it reduces to ``plant_marker(marker)``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (plant_marker, (self.marker,))


class Opaque:
    """An arbitrary object no other serializer takes."""

    def __init__(self, name: str, payload: Any) -> None:
        self.name, self.payload = name, payload

    def __eq__(self, other: object) -> bool:
        return type(other) is Opaque and (self.name, self.payload) == (other.name, other.payload)


class Custom:
    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def __eq__(self, other: object) -> bool:
        return type(other) is Custom and (self.a, self.b) == (other.a, other.b)

    def __hash__(self) -> int:
        return hash(self.a)


class Slotted:
    __slots__ = ("x", "y")

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return type(other) is Slotted and (self.x, self.y) == (other.x, other.y)


def module_function(x: int) -> int:
    return x


def encode(value: Any, ctx: SerializerContext = CTX) -> bytes:
    return b"".join(bytes(memoryview(p)) for p in PICKLE.dumps(value, ctx))


@pytest.fixture
def spy_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call of pickle.loads / Unpickler during the test is recorded (and refused)."""
    calls: list[Any] = []

    def refuse_loads(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("pickle.loads was reached")

    monkeypatch.setattr(serializer_pickle.pickle, "loads", refuse_loads)
    monkeypatch.setattr(serializer_pickle.pickle, "Unpickler", refuse_loads)
    return calls


# --------------------------------------------------------------------------- conformance & format


SAMPLES: list[Any] = [
    None,
    0,
    "str",
    b"bytes",
    [1, (2, 3), {4}],
    {"nested": {"deep": [Custom(1, (2,))]}},
    Custom("a", [1, 2]),
    Slotted(1, {"k": b"v"}),
    collections.OrderedDict(b=1, a=2),
    collections.Counter("mississippi"),
    collections.deque([1, 2, 3]),
    module_function,
    frozenset({Custom(1, 2)}),
    ValueError,  # a class by reference
    range(3, 30, 7),
    complex(1, 2),
]


def test_conformance_kit_passes_with_arbitrary_objects() -> None:
    """check_serializer passes for pickle with builtin, custom, slotted and callable values."""
    check_serializer(PICKLE, SAMPLES, ctx=CTX)


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_every_payload_starts_with_magic_and_key_id(value: Any) -> None:
    """Payload = magic | sha256(key)[:8] | HMAC over magic+key id+pickle | pickle protocol 5."""
    data = encode(value)
    key_id = hashlib.sha256(KEY).digest()[:8]
    assert data[: len(MAGIC)] == MAGIC == b"AQPK1\x00"
    assert data[len(MAGIC) : len(MAGIC) + 8] == key_id
    body = data[HEAD:]
    expected = hmac.new(KEY, MAGIC + key_id + body, hashlib.sha256).digest()
    assert data[len(MAGIC) + 8 : HEAD] == expected
    assert body[:2] == b"\x80\x05"  # PROTO 5
    assert pickle.loads(body) == value or value is ValueError or callable(value)


def test_pickle_takes_everything_as_last_resort() -> None:
    """types=() and accepts() is always True; priority 1000 puts it after every other serializer."""
    assert PICKLE.types == ()
    assert PICKLE.priority == 1000
    assert PICKLE.accepts(object())
    assert PICKLE.accepts(None)


def test_unpicklable_value_is_refused_with_serialization_error() -> None:
    """A value pickle cannot carry (a lambda) -> SerializationError naming the type."""
    with pytest.raises(SerializationError, match="function"):
        PICKLE.dumps(lambda: 1, CTX)


# --------------------------------------------------------------------------- tampering


def test_canary_fires_when_unpickled_legitimately(tmp_path: Path) -> None:
    """Positive control: a correctly signed canary payload does create its marker when loaded."""
    marker = tmp_path / "fired"
    PICKLE.loads(memoryview(encode(Canary(marker))), CTX)
    assert marker.exists()


def _variants(payload: bytes, seed: int) -> Iterator[tuple[str, bytes]]:
    """Every way of damaging a signed payload the test tries (all differ from ``payload``)."""
    regions = [
        ("magic", 0, len(MAGIC)),
        ("key-id", len(MAGIC), len(MAGIC) + 8),
        ("mac", len(MAGIC) + 8, HEAD),
        ("pickle", HEAD, len(payload)),
    ]
    for region, start, end in regions:
        for pos in range(start, end):
            for bit in range(8):
                flipped = bytearray(payload)
                flipped[pos] ^= 1 << bit
                yield f"{region}[{pos}] bit {bit}", bytes(flipped)
            replaced = bytearray(payload)
            replaced[pos] = 0 if payload[pos] else 0xFF
            yield f"{region}[{pos}] replaced", bytes(replaced)
    rng = random.Random(seed)
    for i in range(3000):
        damaged = bytearray(payload)
        for pos in rng.sample(range(len(payload)), rng.randint(1, 6)):
            damaged[pos] ^= rng.randint(1, 255)
        yield f"random #{i}", bytes(damaged)
    for cut in range(len(payload)):
        yield f"truncated to {cut}", payload[:cut]
    yield "extra byte", payload + b"\x00"
    yield "extra STOP", payload + b"."
    yield "doubled", payload + payload
    yield "empty", b""


def test_tampered_envelopes_are_refused_before_unpickling(
    tmp_path: Path, spy_unpickling: list[Any]
) -> None:
    """Bit flips in magic / key id / MAC / pickle, random damage (deterministic seed),
    truncations and extensions: all raise UntrustedPayloadError, pickle.loads is never reached
    and the canary's marker never appears."""
    marker = tmp_path / "pwned"
    payload = encode(Canary(marker))
    count = 0
    for label, damaged in _variants(payload, seed=20240611):
        assert damaged != payload, label
        for view in (memoryview(damaged), memoryview(bytearray(damaged))):
            with pytest.raises(UntrustedPayloadError, match="refusing to unpickle"):
                PICKLE.loads(view, CTX)
        count += 1
    assert count > 3000
    assert spy_unpickling == []
    assert not marker.exists()
    # Control: the spy does see an unpickling attempt, for the intact payload.
    with pytest.raises(AssertionError, match=r"pickle\.loads was reached"):
        PICKLE.loads(memoryview(payload), CTX)
    assert len(spy_unpickling) == 1


def test_unsigned_and_foreign_payloads_are_refused_before_unpickling(
    tmp_path: Path, spy_unpickling: list[Any]
) -> None:
    """A raw pickle, the magic alone, a zero MAC, another key's signature (with its own or our
    key id), a spliced pickle under a valid header, an empty payload: UntrustedPayloadError, and
    no code runs."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Canary(marker), protocol=5)
    legit = encode({"harmless": 1})
    key_id = hashlib.sha256(KEY).digest()[:8]
    other_signed = encode(Canary(marker), OTHER_CTX)
    forged_mac = hmac.new(OTHER_KEY, MAGIC + key_id + evil, hashlib.sha256).digest()
    cases = {
        "raw pickle": evil,
        "raw pickle protocol 0": pickle.dumps(Canary(marker), protocol=0),
        "magic + raw pickle": MAGIC + evil,
        "zero key id and mac": MAGIC + b"\0" * 40 + evil,
        "our key id, zero mac": MAGIC + key_id + b"\0" * 32 + evil,
        "other store's key": other_signed,
        "other key, our key id": MAGIC + key_id + forged_mac + evil,
        "spliced pickle under a valid header": legit[:HEAD] + evil,
        "header only": legit[:HEAD],
        "empty": b"",
        "old magic version": b"AQPK0\x00" + legit[len(MAGIC) :],
    }
    for label, data in cases.items():
        with pytest.raises(UntrustedPayloadError) as info:
            PICKLE.loads(memoryview(data), CTX)
        assert "refusing to unpickle" in str(info.value), label
    with pytest.raises(UntrustedPayloadError, match="another key"):
        verify(other_signed, CTX)
    with pytest.raises(UntrustedPayloadError, match="signature does not match"):
        verify(MAGIC + key_id + forged_mac + evil, CTX)
    assert spy_unpickling == []
    assert not marker.exists()


def test_untrusted_payload_error_is_a_serialization_error() -> None:
    """Callers catching SerializationError also catch refused pickles."""
    assert issubclass(UntrustedPayloadError, SerializationError)


# --------------------------------------------------------------------------- stores and keys


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[aliquot.Kernel, aliquot.Kernel]]:
    """Two LMDB kernels, different store ids, the same ALIQUOT_CONFIG_DIR."""
    a = make_kernel(store=str(tmp_path / "a"))
    b = make_kernel(store=str(tmp_path / "b"))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _config_dir() -> Path:
    return Path(os.environ["ALIQUOT_CONFIG_DIR"])


def test_roundtrip_through_lmdb_store_small_and_large(
    two_stores: tuple[aliquot.Kernel, aliquot.Kernel],
) -> None:
    """Pickled values round-trip through a store, inline and as a memory-mapped blob."""
    kernel, _ = two_stores
    small = Opaque("small", [1, 2])
    large = Opaque("large", os.urandom(2 << 20))
    refs = [kernel.values.save(v) for v in (small, large)]
    kernel.store.commit()
    assert [r.serializer for r in refs] == ["pickle", "pickle"]
    assert kernel.values.load(refs[0]) == small
    assert kernel.values.load(refs[1]) == large


def test_value_copied_from_another_store_is_refused(
    tmp_path: Path, two_stores: tuple[aliquot.Kernel, aliquot.Kernel]
) -> None:
    """Bytes of a pickle value copied from store A into store B do not verify in B (B's key)."""
    a, b = two_stores
    assert a.store.store_id != b.store.store_id
    marker = tmp_path / "pwned"
    ref = a.values.save(Canary(marker))
    a.store.commit()
    assert ref.serializer == "pickle"
    data = bytes(a.store.get_value(ref.digest))
    assert b.store.put_value(data)[0] == ref.digest  # same bytes, same digest
    b.store.commit()
    with pytest.raises(UntrustedPayloadError, match="another key"):
        b.values.load(ref)
    assert not marker.exists()
    # ...whereas store A itself still loads it (and so the canary fires there).
    a.values.load(ref)
    assert marker.exists()


def test_value_copied_between_memory_stores_is_refused() -> None:
    """Memory stores have their own secrets too: a pickle from one does not load in another."""
    with make_kernel() as a, make_kernel() as b:
        ref = a.values.save(Custom(1, 2))
        b.store.put_value(bytes(a.store.get_value(ref.digest)))
        with pytest.raises(UntrustedPayloadError):
            b.values.load(ref)
        assert a.values.load(ref) == Custom(1, 2)


def test_key_file_is_0600_in_config_dir_and_not_in_the_store(
    tmp_path: Path, two_stores: tuple[aliquot.Kernel, aliquot.Kernel]
) -> None:
    """The key is created at ALIQUOT_CONFIG_DIR/keys/<store id>.pickle.key, mode 0600, 32 bytes;
    nothing inside the store directory holds it."""
    a, b = two_stores
    a.values.save(Custom(1, 2))
    b.values.save(Custom(1, 2))
    a.store.commit()
    keys = _config_dir() / "keys"
    key_a = keys / f"{a.store.store_id}.pickle.key"
    key_b = keys / f"{b.store.store_id}.pickle.key"
    for path in (key_a, key_b):
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_bytes()) == 32
    assert key_a.read_bytes() != key_b.read_bytes()
    assert stat.S_IMODE(keys.stat().st_mode) & 0o077 == 0
    secret = key_a.read_bytes()
    store_dir = tmp_path / "a"
    for path in store_dir.rglob("*"):
        assert not path.name.endswith(".key"), path
        if path.is_file():
            assert secret not in path.read_bytes(), f"the key leaked into {path}"
    assert not str(keys.resolve()).startswith(str(store_dir.resolve()))


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A key file with mode 0644 is refused on save and on load, with a message saying chmod 600."""
    location = str(tmp_path / "s")
    with make_kernel(store=location) as kernel:
        ref = kernel.values.save(Custom("x", 1))
        store_id = kernel.store.store_id
    key = _config_dir() / "keys" / f"{store_id}.pickle.key"
    key.chmod(0o644)
    with make_kernel(store=location) as kernel:
        with pytest.raises(SerializationError, match="chmod 600") as info:
            kernel.values.load(ref)
        assert not isinstance(info.value, UntrustedPayloadError)
        with pytest.raises(SerializationError, match="chmod 600"):
            kernel.values.save(Custom("y", 2))
    key.chmod(0o600)
    with make_kernel(store=location) as kernel:
        assert kernel.values.load(ref) == Custom("x", 1)


def test_replaced_key_makes_old_payloads_untrusted(tmp_path: Path) -> None:
    """If the key changes (lost, rotated), old pickles are refused rather than trusted."""
    location = str(tmp_path / "s")
    with make_kernel(store=location) as kernel:
        ref = kernel.values.save(Custom("x", 1))
        store_id = kernel.store.store_id
    key = _config_dir() / "keys" / f"{store_id}.pickle.key"
    key.unlink()
    with make_kernel(store=location) as kernel, pytest.raises(UntrustedPayloadError):
        kernel.values.load(ref)
