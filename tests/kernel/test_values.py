"""Values: serializer dispatch, storing and loading, artifact references, per-store keys.

Dispatch rule (``aliquot._values``): serializers listing the value's exact
type, then those listing a type of its MRO (nearest first), then predicate
serializers (``accepts``); lower ``priority`` first within a tier; when
``dumps`` raises, the next candidate is tried; naming a serializer disables
the fallback.
"""

from __future__ import annotations

import array
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import aliquot
from aliquot import (
    ArtifactRef,
    SerializationError,
    SerializerContext,
    Serializers,
    UnknownNameError,
    ValueUnavailableError,
)
from aliquot._values import as_buffers, config_dir, digest_of, store_secret, type_name
from aliquot.testing import make_kernel

CTX = SerializerContext("valuestest", lambda purpose: b"k" * 32)


# --------------------------------------------------------------------------- fake serializers


class Base:
    pass


class Child(Base):
    pass


class GrandChild(Child):
    pass


class Typed:
    """A serializer taking values by type; records every dumps call."""

    version = "1"

    def __init__(
        self,
        name: str,
        types: tuple[type, ...] = (),
        priority: int | None = 100,
        refuse: BaseException | None = None,
    ) -> None:
        self.name = name
        self.types = types
        if priority is not None:
            self.priority = priority
        self.refuse = refuse
        self.calls: list[Any] = []

    def dumps(self, value: Any, ctx: SerializerContext) -> bytes:
        self.calls.append(value)
        if self.refuse is not None:
            raise self.refuse
        return f"{self.name}:{value!r}".encode()

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        return bytes(data).decode()

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Predicate(Typed):
    """A serializer taking values by predicate."""

    def __init__(
        self, name: str, accepts: Callable[[Any], bool] = lambda v: True, **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self._accepts = accepts

    def accepts(self, value: Any) -> bool:
        return self._accepts(value)


class NoPriority(Typed):
    """No ``priority`` attribute at all: dispatch uses 100."""

    def __init__(self, name: str, types: tuple[type, ...]) -> None:
        super().__init__(name, types, priority=None)


def registry(*serializers: Typed) -> Serializers:
    return Serializers({s.name: s for s in serializers})


def names(serializers: Serializers, value: Any) -> list[str]:
    return [s.name for s in serializers.candidates(value)]


# --------------------------------------------------------------------------- dispatch order


def test_exact_type_comes_before_mro_whatever_the_priority() -> None:
    """Serializers of the exact type form the first tier, before any listing a base class."""
    reg = registry(Typed("base", (Base,), priority=1), Typed("child", (Child,), priority=999))
    assert names(reg, Child()) == ["child", "base"]


def test_mro_nearest_base_first() -> None:
    """In the MRO tier, serializers listing a nearer base come before farther ones."""
    reg = registry(
        Typed("object", (object,), priority=0),
        Typed("base", (Base,), priority=1),
        Typed("child", (Child,), priority=50),
    )
    assert names(reg, GrandChild()) == ["child", "base", "object"]


def test_predicates_come_after_every_typed_serializer() -> None:
    """Predicate serializers are tried after all type matches, even with a lower priority."""
    reg = registry(Predicate("pred", priority=0), Typed("base", (Base,), priority=999))
    assert names(reg, GrandChild()) == ["base", "pred"]
    assert names(reg, 42) == ["pred"]


def test_priority_orders_within_a_tier_not_registration_order() -> None:
    """Within a tier, lower priority first; registration order does not matter."""
    for order in ([30, 10, 20], [10, 20, 30], [20, 30, 10]):
        reg = registry(*[Typed(f"p{p}", (int,), priority=p) for p in order])
        assert names(reg, 5) == ["p10", "p20", "p30"]
        preds = registry(*[Predicate(f"q{p}", priority=p) for p in order])
        assert names(preds, 5) == ["q10", "q20", "q30"]


def test_missing_priority_counts_as_100() -> None:
    """A serializer without ``priority`` sorts as 100."""
    reg = registry(
        Typed("p150", (int,), priority=150),
        NoPriority("none", (int,)),
        Typed("p50", (int,), priority=50),
    )
    assert names(reg, 1) == ["p50", "none", "p150"]


def test_typed_serializer_with_a_predicate_appears_once_in_its_type_tier() -> None:
    """A serializer that lists the type *and* has accepts() is a candidate once, as a typed one."""
    both = Predicate("both", accepts=lambda v: True, types=(int,), priority=500)
    reg = registry(both, Predicate("pred", priority=1))
    assert names(reg, 1) == ["both", "pred"]
    assert names(reg, "s") == ["pred", "both"]  # str: `both` only qualifies by predicate


def test_predicates_are_asked_per_value_not_cached_per_type() -> None:
    """Candidates are cached per type, but accepts() is still asked for each value."""
    reg = registry(
        Predicate("even", accepts=lambda v: v % 2 == 0), Typed("int", (int,), priority=900)
    )
    assert names(reg, 2) == ["int", "even"]
    assert names(reg, 3) == ["int"]
    assert names(reg, 4) == ["int", "even"]


def test_builtin_dispatch_order_in_a_kernel() -> None:
    """The builtins: bytes/text (5) < json (10) < numpy (20) < pickle (1000)."""
    with make_kernel() as kernel:
        assert [s.name for s in kernel.serializers.candidates(b"x")] == ["bytes", "json", "pickle"]
        assert [s.name for s in kernel.serializers.candidates("x")] == ["text", "json", "pickle"]
        assert [s.name for s in kernel.serializers.candidates({"a": 1})] == ["json", "pickle"]
        assert [s.name for s in kernel.serializers.candidates(object())] == ["pickle"]
        priorities = {
            s.name: s.priority
            for s in (kernel.serializers.get(n) for n in kernel.serializers.names())
        }
        assert priorities["json"] < priorities["pickle"]


# ------------------------------------------------------------------ fallback & explicit names


def test_fallback_to_the_next_candidate_when_dumps_raises() -> None:
    """A refusal (any exception) moves on to the next candidate; the first that succeeds wins."""
    first = Typed("first", (int,), priority=1, refuse=ValueError("no"))
    second = Typed("second", (int,), priority=2, refuse=SerializationError("nope"))
    third = Predicate("third", priority=1)
    reg = registry(first, second, third)
    chosen, buffers = reg.dumps(7, CTX)
    assert chosen is third
    assert b"".join(buffers) == b"third:7"
    assert first.calls == [7]
    assert second.calls == [7]
    assert third.calls == [7]


def test_all_candidates_refusing_raises_serialization_error_with_every_reason() -> None:
    """If every candidate refuses: SerializationError naming the type and each refusal."""
    reg = registry(
        Typed("a", (Child,), refuse=ValueError("too big")), Predicate("b", refuse=TypeError("odd"))
    )
    with pytest.raises(SerializationError) as info:
        reg.dumps(Child(), CTX)
    message = str(info.value)
    assert "test_values.Child" in message
    assert "a: too big" in message
    assert "b: odd" in message


def test_value_no_serializer_takes_raises_serialization_error_naming_the_type() -> None:
    """No candidate at all -> SerializationError naming the type (and how to fix it)."""
    reg = registry(Typed("ints", (int,)))
    with pytest.raises(SerializationError, match=r"GrandChild.*no serializer takes this type"):
        reg.dumps(GrandChild(), CTX)


def test_unpicklable_value_in_a_kernel_raises_serialization_error_naming_the_type() -> None:
    """With the builtins, a value even pickle refuses (a lock) -> SerializationError naming it."""
    with make_kernel() as kernel, pytest.raises(SerializationError, match=r"_thread\.lock"):
        kernel.values.save(threading.Lock())


def test_explicit_serializer_disables_fallback() -> None:
    """Naming a serializer uses it alone: its refusal is raised, no other candidate is tried."""
    picky = Typed("picky", (int,), priority=1, refuse=SerializationError("picky refuses"))
    other = Typed("other", (int,), priority=2)
    reg = registry(picky, other)
    with pytest.raises(SerializationError, match="picky refuses"):
        reg.dumps(3, CTX, "picky")
    assert other.calls == []


def test_explicit_serializer_error_is_wrapped_with_type_and_serializer_names() -> None:
    """A non-SerializationError from a named serializer becomes SerializationError naming both."""
    reg = registry(Typed("broken", (), refuse=ZeroDivisionError("boom")), Predicate("fine"))
    with pytest.raises(
        SerializationError, match=r"'broken' cannot encode a value of type .*GrandChild: boom"
    ) as info:
        reg.dumps(GrandChild(), CTX, "broken")
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_explicit_serializer_may_be_outside_the_candidates() -> None:
    """Naming a serializer works even if dispatch would never pick it for that type."""
    reg = registry(Typed("strs", (str,)), Typed("ints", (int,)))
    chosen, buffers = reg.dumps(5, CTX, "strs")
    assert chosen.name == "strs"
    assert b"".join(buffers) == b"strs:5"
    instance = Typed("unregistered")
    assert reg.dumps(5, CTX, instance)[0] is instance


def test_explicit_builtin_serializer_refusal_names_the_type() -> None:
    """In a kernel, save(value, "json") of something JSON cannot carry raises, naming the type."""
    with make_kernel() as kernel:
        with pytest.raises(SerializationError, match="Child"):
            kernel.values.save(Child(), "json")
        with pytest.raises(SerializationError, match="set"):
            kernel.values.save({1, 2}, "text")
        assert kernel.values.save({1, 2}, "pickle").serializer == "pickle"


def test_unknown_serializer_name_raises_unknown_name_error_listing_known_names() -> None:
    """An unknown name -> UnknownNameError (a KeyError too) that lists the registered names."""
    reg = registry(Typed("alpha"), Typed("beta"))
    with pytest.raises(UnknownNameError) as info:
        reg.dumps(1, CTX, "gamma")
    err = info.value
    assert isinstance(err, KeyError)
    assert err.kind == "serializer"
    assert err.name == "gamma"
    assert sorted(err.known) == ["alpha", "beta"]
    assert "'gamma'" in str(err)
    assert "alpha, beta" in str(err)
    with pytest.raises(UnknownNameError):
        reg.get("gamma")
    assert "alpha" in reg
    assert "gamma" not in reg
    assert reg.names() == ["alpha", "beta"]


def test_unknown_serializer_name_in_a_kernel_lists_the_builtins() -> None:
    with make_kernel() as kernel, pytest.raises(UnknownNameError, match=r"json.*pickle"):
        kernel.values.save(1, "yaml")


# --------------------------------------------------------------------------- buffers and digests


def test_buffers_from_dumps_are_flattened_and_digested_as_concatenated_bytes() -> None:
    """dumps may return one buffer or several of any format; they are hashed as their bytes."""
    ints = array.array("i", [1, 2, 3])
    views = as_buffers([b"ab", bytearray(b"cd"), memoryview(ints)])
    assert all(v.format == "B" and v.ndim == 1 for v in views)
    assert digest_of(views) == hashlib.sha256(b"abcd" + ints.tobytes()).hexdigest()
    assert len(as_buffers(b"single")) == 1


def test_type_name_is_qualname_for_builtins_and_module_dotted_otherwise() -> None:
    assert type_name({}) == "dict"
    assert type_name(None) == "NoneType"
    assert type_name(Child()) == f"{Child.__module__}.Child"


# --------------------------------------------------------------------------- Values with a kernel


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    k = make_kernel()
    try:
        yield k
    finally:
        k.close()


@pytest.mark.parametrize(
    ("value", "serializer", "type_"),
    [
        ({"a": [1, 2]}, "json", "dict"),
        ((1, {2}), "json", "tuple"),
        ("text", "text", "str"),
        (b"raw", "bytes", "bytes"),
        (GrandChild, "pickle", "type"),
    ],
)
def test_save_and_load_roundtrip_with_artifact_ref_fields(
    kernel: aliquot.Kernel, value: Any, serializer: str, type_: str
) -> None:
    """save() returns an ArtifactRef: digest = sha256 of the stored bytes, their size, the
    serializer's name and version, the value's type name; load(ref) gives the value back."""
    ref = kernel.values.save(value)
    stored = bytes(kernel.store.get_value(ref.digest))
    assert isinstance(ref, ArtifactRef)
    assert ref.digest == hashlib.sha256(stored).hexdigest()
    assert ref.size == len(stored)
    assert ref.serializer == serializer
    assert ref.serializer_version == str(kernel.serializers.get(serializer).version)
    assert ref.type == type_
    loaded = kernel.values.load(ref)
    assert type(loaded) is type(value)
    assert loaded == value


def test_encode_matches_save_without_storing(kernel: aliquot.Kernel) -> None:
    """encode() gives the serializer, buffers, digest and size that save() would store."""
    value = {"k": (1, 2.5, None)}
    chosen, buffers, digest, size = kernel.values.encode(value)
    assert chosen.name == "json"
    assert digest == hashlib.sha256(b"".join(buffers)).hexdigest()
    assert size == sum(b.nbytes for b in buffers)
    assert not kernel.store.has_value(digest)
    ref = kernel.values.save(value)
    assert (ref.digest, ref.size, ref.serializer) == (digest, size, "json")


def test_encode_with_explicit_serializer(kernel: aliquot.Kernel) -> None:
    chosen, buffers, _, _ = kernel.values.encode({"k": 1}, "pickle")
    assert chosen.name == "pickle"
    assert bytes(buffers[0]).startswith(b"AQPK1\x00")


@pytest.mark.parametrize("size", [100, 2 << 20], ids=["small", "large-thread"])
def test_asave_matches_save(kernel: aliquot.Kernel, size: int) -> None:
    """asave() (large values written from a worker thread) gives the same ref as save()."""
    value = os.urandom(size)
    ref = trio.run(kernel.values.asave, value)
    assert ref == kernel.values.save(value)
    assert kernel.values.load(ref) == value


def test_artifact_ref_json_roundtrip() -> None:
    """to_json()/from_json() round-trip every field (types coerced)."""
    ref = ArtifactRef("ab" * 32, 12, "json", "1", "dict")
    data = ref.to_json()
    assert data == {
        "digest": "ab" * 32,
        "size": 12,
        "serializer": "json",
        "serializer_version": "1",
        "type": "dict",
    }
    assert ArtifactRef.from_json(data) == ref
    assert ArtifactRef.from_json({**data, "size": "12", "serializer_version": 1}) == ref


def test_identical_values_give_identical_digests(kernel: aliquot.Kernel) -> None:
    """Content addressing: equal values (built separately, sets in any order) share one digest;
    different values get different digests."""
    a = kernel.values.save({"x": [1, 2, (3, 4)], "s": {"p", "q", "r"}})
    b = kernel.values.save({"x": [1, 2, (3, 4)], "s": {"r", "q", "p"}})
    c = kernel.values.save({"x": [1, 2, (3, 5)], "s": {"p", "q", "r"}})
    assert a == b
    assert a.digest != c.digest
    with make_kernel() as other:  # another store: same bytes, same digest (json carries no key)
        assert other.values.save({"x": [1, 2, (3, 4)], "s": {"q", "r", "p"}}).digest == a.digest


def test_load_of_a_missing_value_raises_value_unavailable_error(kernel: aliquot.Kernel) -> None:
    """A ref whose digest the store does not have -> ValueUnavailableError naming the type."""
    ref = ArtifactRef(hashlib.sha256(b"never stored").hexdigest(), 12, "json", "1", "my.Type")
    with pytest.raises(ValueUnavailableError, match=r"my\.Type") as info:
        kernel.values.load(ref)
    assert isinstance(info.value, KeyError)
    assert "store verify" in str(info.value)


def test_load_of_a_damaged_value_raises_value_unavailable_error(tmp_path: Path) -> None:
    """A blob failing its checksum is a miss (quarantined): ValueUnavailableError, not garbage."""
    with make_kernel(store=str(tmp_path / "s")) as kernel:
        ref = kernel.values.save(os.urandom(2 << 20))
        kernel.store.commit()
        blob = tmp_path / "s" / "blobs" / ref.digest[:2] / ref.digest
        data = bytearray(blob.read_bytes())
        data[100] ^= 1
        blob.write_bytes(bytes(data))
        with pytest.raises(ValueUnavailableError):
            kernel.values.load(ref)


def test_load_with_an_unregistered_serializer_raises_unknown_name_error(
    kernel: aliquot.Kernel,
) -> None:
    """A ref naming a serializer that is not registered (plugin blocked?) -> UnknownNameError."""
    ref = kernel.values.save({"a": 1})
    with pytest.raises(UnknownNameError, match="msgpack"):
        kernel.values.load(ArtifactRef(ref.digest, ref.size, "msgpack", "1", "dict"))


# --------------------------------------------------------------------------- per-store keys


def test_store_secret_creates_a_private_32_byte_key_once() -> None:
    """store_secret writes a 32-byte key, mode 0600, under config_dir()/keys, and reuses it."""
    key = store_secret("abc-123", "pickle")
    path = config_dir() / "keys" / "abc-123.pickle.key"
    assert config_dir() == Path(os.environ["ALIQUOT_CONFIG_DIR"])
    assert len(key) == 32
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store_secret("abc-123", "pickle") == key
    assert store_secret("abc-123", "other") != key
    assert store_secret("def-456", "pickle") != key
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temporary key files must be removed"


@pytest.mark.parametrize("store_id", ["", "../evil", "a/b", "a.b", "x y"])
def test_store_secret_refuses_ids_that_are_not_alphanumeric(store_id: str) -> None:
    """A store id that could escape the keys directory is refused."""
    with pytest.raises(SerializationError, match="invalid store id"):
        store_secret(store_id, "pickle")


def test_store_secret_refuses_a_key_readable_by_others() -> None:
    """A key file with group/other permissions -> SerializationError telling to chmod 600."""
    store_secret("s1", "pickle")
    path = config_dir() / "keys" / "s1.pickle.key"
    path.chmod(0o644)
    with pytest.raises(SerializationError, match=r"chmod 600"):
        store_secret("s1", "pickle")
    path.chmod(0o640)
    with pytest.raises(SerializationError, match="mode 640"):
        store_secret("s1", "pickle")


def test_store_secret_refuses_a_damaged_key() -> None:
    """A key file that is not 32 bytes -> SerializationError (never a short key)."""
    store_secret("s2", "pickle")
    path = config_dir() / "keys" / "s2.pickle.key"
    path.write_bytes(b"short")
    with pytest.raises(SerializationError, match="damaged"):
        store_secret("s2", "pickle")
