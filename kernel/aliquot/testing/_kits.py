"""Conformance kits: the rules every store, serializer and executor must keep.

Each kit runs its checks in order and raises ``AssertionError`` naming the
first rule broken. The helper functions executors run are defined at module
level, so process executors can pickle them by reference.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import StoreError
from .._tasks import Call
from .._values import SerializerContext, as_buffers

# ---------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------


def check_store(
    factory: Callable[[], Any],
    *,
    reopen: Callable[[Any], Any] | None = None,
    large: int = 3 << 20,
) -> None:
    """Check a :class:`aliquot.abc.Store` implementation.

    Args:
        factory: returns a new, empty, open store each time it is called.
        reopen: given a (closed) store, opens the same location again; pass it
            for durable stores so persistence across close/open is checked.
        large: size of the "large value" written (big enough to take a blob
            path, if the store has one).

    Raises:
        AssertionError: a rule is broken; the message says which.
    """
    store = factory()
    try:
        _store_keys(store)
        _store_scan(store)
        _store_validation(store)
        _store_values(store, large)
        _store_sequences(store)
        _store_threads(store)
        _store_maintenance(store)
    finally:
        store.close()
    store.close()  # close is idempotent
    if reopen is not None:
        _store_durability(factory, reopen)


def _store_keys(store: Any) -> None:
    assert isinstance(store.store_id, str) and store.store_id, "store_id must be a non-empty str"
    assert isinstance(store.location, str), "location must be a str"
    assert store.get("kit", b"missing") is None, "get of a missing key must return None"
    store.put("kit", b"a", b"1")
    assert store.get("kit", b"a") == b"1", "a staged put must be visible to get at once"
    assert store.pending >= 1, "pending must count staged writes"
    store.commit()
    assert store.pending == 0, "commit must leave nothing pending"
    assert store.get("kit", b"a") == b"1", "a committed put must stay visible"
    store.put("kit", b"a", b"2")
    assert store.get("kit", b"a") == b"2", "a later put must replace the value"
    store.put("kit", b"empty", b"")
    assert store.get("kit", b"empty") == b"", "an empty value must round-trip (not read as missing)"
    binary = bytes(range(256))
    store.put("kit", b"\x00\xff", binary)
    assert store.get("kit", b"\x00\xff") == binary, "binary keys and values must round-trip"
    store.delete("kit", b"a")
    assert store.get("kit", b"a") is None, "a deleted key must read as missing"
    store.delete("kit", b"never-there")  # deleting a missing key is not an error
    store.commit()
    assert store.get("kit", b"a") is None, "a committed delete must stay deleted"
    assert store.get("kit_other", b"\x00\xff") is None, "spaces must be independent"


def _store_scan(store: Any) -> None:
    for i in range(20):
        store.put("scan", b"p/%02d" % i, b"%d" % i)
    store.put("scan", b"q/00", b"other prefix")
    store.commit()
    store.put("scan", b"p/20", b"staged")
    store.delete("scan", b"p/03")
    keys = [k for k, _ in store.scan("scan", b"p/")]
    expected = [b"p/%02d" % i for i in range(21) if i != 3]
    assert keys == expected, f"scan must return matching keys in order, with staged changes: {keys}"
    assert [k for k, _ in store.scan("scan", b"p/", reverse=True)] == expected[::-1], (
        "scan(reverse=True) must return keys in descending order"
    )
    values = dict(store.scan("scan", b"p/"))
    assert values[b"p/20"] == b"staged" and values[b"p/07"] == b"7", "scan must return the values"
    assert len(list(store.scan("scan"))) == 21, "scan without a prefix must return every key"
    assert list(store.scan("empty_space")) == [], "scan of an unused space must be empty"
    store.commit()


def _store_validation(store: Any) -> None:
    for bad_space in ("", "Upper", "has space", "x" * 41, "../etc"):
        try:
            store.put(bad_space, b"k", b"v")
        except StoreError:
            pass
        else:
            raise AssertionError(f"space {bad_space!r} must be refused with StoreError")
    for bad_key in (b"", b"k" * 401):
        try:
            store.put("kit", bad_key, b"v")
        except StoreError:
            pass
        else:
            raise AssertionError(f"a key of {len(bad_key)} bytes must be refused with StoreError")
    try:
        store.put("kit", "text", b"v")
    except StoreError:
        pass
    else:
        raise AssertionError("a str key must be refused with StoreError")
    for bad_digest in ("", "xyz", "A" * 64, "0" * 63):
        try:
            store.get_value(bad_digest)
        except StoreError:
            pass
        else:
            raise AssertionError(f"digest {bad_digest!r} must be refused with StoreError")


def _store_values(store: Any, large: int) -> None:
    payload = b"hello, value"
    digest, size = store.put_value(payload)
    assert digest == hashlib.sha256(payload).hexdigest(), "put_value must return the SHA-256 hex"
    assert size == len(payload), "put_value must return the size"
    assert store.has_value(digest), "has_value must see a staged value"
    assert bytes(store.get_value(digest)) == payload, "get_value must return the bytes"
    again = store.put_value(payload)
    assert again == (digest, size), "the same bytes must give the same digest (stored once)"
    parts = [b"hello, ", memoryview(b"value")]
    assert store.put_value(parts)[0] == hashlib.sha256(b"hello, value").hexdigest(), (
        "a sequence of buffers must be stored concatenated"
    )
    empty = store.put_value(b"")
    assert empty == (hashlib.sha256(b"").hexdigest(), 0), "an empty value must be storable"
    assert bytes(store.get_value(empty[0])) == b"", "an empty value must round-trip"
    store.commit()
    assert bytes(store.get_value(digest)) == payload, "a committed value must round-trip"
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert store.get_value(missing) is None, "get_value of an unknown digest must return None"
    assert not store.has_value(missing), "has_value of an unknown digest must be False"
    rng = random.Random(0)
    big = rng.randbytes(large)
    big_digest, big_size = store.put_value(as_buffers([big[: large // 2], big[large // 2 :]]))
    assert big_size == large and big_digest == hashlib.sha256(big).hexdigest(), (
        "a large value must be stored whole"
    )
    store.commit()
    loaded = store.get_value(big_digest)
    assert loaded is not None and bytes(loaded) == big, "a large value must round-trip"
    del loaded


def _store_sequences(store: Any) -> None:
    first = [store.next_sequence("kit") for _ in range(3)]
    assert first == [1, 2, 3], f"next_sequence must count 1, 2, 3 per name (got {first})"
    assert store.next_sequence("kit_other") == 1, "sequences must be independent per name"


def _store_threads(store: Any) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                store.put("threads", b"%d/%03d" % (n, i), b"x")
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    committer = threading.Thread(target=lambda: [store.commit() for _ in range(5)])
    committer.start()
    for t in threads:
        t.join()
    committer.join()
    store.commit()
    assert not errors, f"concurrent puts raised: {errors[0]!r}"
    count = sum(1 for _ in store.scan("threads"))
    assert count == 800, f"concurrent puts and commits must lose nothing (found {count} of 800)"


def _store_maintenance(store: Any) -> None:
    report = store.verify()
    assert isinstance(report, dict) and report.get("ok") is True, (
        f"a healthy store must verify: {report}"
    )
    stats = store.stats()
    assert isinstance(stats, dict), "stats must return a dict"
    keep, _ = store.put_value(b"keep me")
    drop, _ = store.put_value(b"drop me")
    store.commit()
    result = store.gc(live_values={keep})
    assert isinstance(result, dict), "gc must return a dict"
    assert store.get_value(keep) is not None, "gc must keep live values"
    if not result.get("skipped"):
        assert store.get_value(drop) is None, "gc(live_values=...) must delete the other values"
    assert store.gc() is not None, "gc() without live values must work"
    assert store.get_value(keep) is not None, "gc() without live values must not delete values"
    one, _ = store.put_value(b"candidate one")
    two, _ = store.put_value(b"candidate two")
    other, _ = store.put_value(b"not a candidate")
    store.commit()
    result = store.gc(live_values={two}, candidates={one, two})
    assert isinstance(result, dict), "gc(candidates=...) must return a dict"
    assert store.get_value(two) is not None, "gc(candidates=...) must keep live candidates"
    assert store.get_value(other) is not None, "gc(candidates=...) must touch only candidates"
    assert store.get_value(keep) is not None, "gc(candidates=...) must touch only candidates"
    if not result.get("skipped"):
        assert store.get_value(one) is None, "gc(candidates=...) must delete dead candidates"
        assert result.get("values_removed") == 1, f"gc(candidates=...) reported {result}"


def _store_durability(factory: Callable[[], Any], reopen: Callable[[Any], Any]) -> None:
    store = factory()
    store.put("durable", b"committed", b"1")
    digest, _ = store.put_value(b"durable value")
    store.commit()
    store.put("durable", b"staged", b"2")
    store_id = store.store_id
    store.close()  # close commits what is staged
    again = reopen(store)
    try:
        assert again.store_id == store_id, "a reopened store must keep its store_id"
        assert again.get("durable", b"committed") == b"1", "committed data must survive a reopen"
        assert again.get("durable", b"staged") == b"2", "close must commit staged writes"
        assert bytes(again.get_value(digest)) == b"durable value", "values must survive a reopen"
        assert again.next_sequence("durable") == 1 and again.next_sequence("durable") == 2
    finally:
        again.close()
    third = reopen(store)
    try:
        assert third.next_sequence("durable") == 3, "sequences must be durable"
    finally:
        third.close()


# ---------------------------------------------------------------------------
# Serializer
# ---------------------------------------------------------------------------


def _same(a: Any, b: Any, path: str = "value") -> None:
    """Equal *and* of the same types, recursively."""
    assert type(a) is type(b), f"{path}: type {type(a).__name__} came back as {type(b).__name__}"
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{path}: nan came back as {b!r}"
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} came back as {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
        return
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)[:5]} came back as {list(b)[:5]}"
        for key in a:
            _same(a[key], b[key], f"{path}[{key!r}]")
        return
    equal = a == b
    if hasattr(equal, "all"):  # numpy arrays compare elementwise
        equal = bool(equal.all()) and getattr(a, "shape", None) == getattr(b, "shape", None)
        assert getattr(a, "dtype", None) == getattr(b, "dtype", None), f"{path}: dtype changed"
    assert equal, f"{path}: {a!r} came back as {b!r}"


def check_serializer(
    serializer: Any,
    samples: Iterable[Any],
    *,
    ctx: SerializerContext | None = None,
    garbage: Iterable[bytes] = (b"", b"\x00", b"garbage \xff\xfe", b"{", bytes(range(256)) * 4),
) -> None:
    """Check a :class:`aliquot.abc.Serializer` on ``samples`` (values it should take).

    Every sample must round-trip to an equal value of the same type
    (recursively), ``dumps`` must be deterministic, and ``loads`` on damaged
    or foreign bytes must raise an ``Exception`` (or return a value) -- never
    crash, hang or raise ``BaseException``.

    Raises:
        AssertionError: a rule is broken; the message says which.
    """
    ctx = ctx or SerializerContext("kit", lambda purpose: hashlib.sha256(purpose.encode()).digest())
    assert isinstance(serializer.name, str) and serializer.name, "name must be a non-empty str"
    assert isinstance(serializer.version, str) and serializer.version, "version must be a str"
    assert isinstance(getattr(serializer, "types", ()), tuple), "types must be a tuple"
    assert isinstance(getattr(serializer, "priority", 100), int), "priority must be an int"
    count = 0
    for sample in samples:
        count += 1
        accepts = getattr(serializer, "accepts", None)
        taken = (
            type(sample) in serializer.types
            or any(isinstance(sample, t) for t in serializer.types)
            or (accepts is not None and accepts(sample))
        )
        assert taken, (
            f"{serializer.name} must take its sample {type(sample).__name__} (types/accepts)"
        )
        first = b"".join(as_buffers(serializer.dumps(sample, ctx)))
        second = b"".join(as_buffers(serializer.dumps(sample, ctx)))
        assert first == second, f"dumps must be deterministic for {type(sample).__name__}"
        loaded = serializer.loads(memoryview(first), ctx)
        _same(sample, loaded)
        loaded_from_bytes = serializer.loads(memoryview(bytearray(first)), ctx)
        _same(sample, loaded_from_bytes)
    assert count, "check_serializer needs at least one sample"
    for blob in garbage:
        _loads_safely(serializer, blob, ctx)
    # Truncations and bit flips of a real payload.
    rng = random.Random(1)
    for sample in list(samples)[:5] if isinstance(samples, list) else []:
        payload = b"".join(as_buffers(serializer.dumps(sample, ctx)))
        for _ in range(10):
            cut = payload[: rng.randrange(len(payload) + 1)]
            _loads_safely(serializer, cut, ctx)
            if payload:
                flipped = bytearray(payload)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                _loads_safely(serializer, bytes(flipped), ctx)


def _loads_safely(serializer: Any, blob: bytes, ctx: SerializerContext) -> None:
    start = time.monotonic()
    try:
        serializer.loads(memoryview(blob), ctx)
    except Exception:
        pass
    except BaseException as exc:
        raise AssertionError(
            f"loads on damaged input raised {type(exc).__name__}, which is not an Exception"
        ) from exc
    assert time.monotonic() - start < 5, "loads on damaged input must not hang"


# ---------------------------------------------------------------------------
# Executor
# ---------------------------------------------------------------------------


def kit_add(a: int, b: int = 0) -> int:
    return a + b


def kit_fail(message: str) -> None:
    raise ValueError(message)


def kit_interval(seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def kit_pid() -> int:
    return os.getpid()


async def kit_async_add(a: int, b: int) -> int:
    import trio

    await trio.sleep(0)
    return a + b


def kit_identity(value: Any) -> Any:
    return value


async def kit_async_interval(seconds: float) -> tuple[float, float]:
    import trio

    start = time.monotonic()
    await trio.sleep(seconds)
    return start, time.monotonic()


def _value(result: Any) -> Any:
    """A call's value, whether the executor returned it bare or as :class:`aliquot.Executed`."""
    from .._tasks import Executed

    return result.value if type(result) is Executed else result


def check_executor(
    factory: Callable[[], Any], *, cancel_within: float = 3.0, interrupts_sync_calls: bool = True
) -> None:
    """Check a :class:`aliquot.abc.Executor` implementation.

    ``factory()`` returns a new executor (not entered). The kit runs calls
    through it under trio: results, exceptions (type and message), keyword
    arguments, ``async def`` functions, 500 small calls, values of 1 MB, the
    capacity limit (no more calls overlap than ``capacity``), and
    cancellation (a cancelled ``submit`` returns within ``cancel_within``
    seconds and the executor closes cleanly). An executor that runs
    synchronous calls in the trio thread cannot interrupt them: pass
    ``interrupts_sync_calls=False`` and the cancellation check uses an
    ``async def`` call instead.

    Raises:
        AssertionError: a rule is broken; the message says which.
    """
    import trio

    async def main() -> None:
        executor = factory()
        assert isinstance(getattr(type(executor), "name", None), str), "name must be a str"
        assert isinstance(executor.capacity, int) and executor.capacity >= 1, (
            "capacity must be >= 1"
        )
        async with executor:
            assert _value(await executor.submit(Call(kit_add, (2,), {"b": 3}))) == 5, (
                "submit must return the call's result (args and kwargs passed)"
            )
            try:
                _value(await executor.submit(Call(kit_fail, ("boom",))))
            except ValueError as exc:
                assert "boom" in str(exc), "the task's exception must keep its message"
            else:
                raise AssertionError("a failing call must raise its exception from submit")
            assert _value(await executor.submit(Call(kit_async_add, (1, 2)))) == 3, (
                "async def functions must be awaited"
            )
            big = os.urandom(1 << 20)
            echoed = _value(await executor.submit(Call(kit_identity, (big,))))
            assert echoed == big, "1 MB values must pass"

            results: dict[int, int] = {}

            async def one(i: int) -> None:
                results[i] = _value(await executor.submit(Call(kit_add, (i, 1))))

            async with trio.open_nursery() as nursery:
                for i in range(500):
                    nursery.start_soon(one, i)
            assert results == {i: i + 1 for i in range(500)}, "500 concurrent calls must all return"

            intervals: list[tuple[float, float]] = []

            async def timed() -> None:
                intervals.append(_value(await executor.submit(Call(kit_interval, (0.05,)))))

            async with trio.open_nursery() as nursery:
                for _ in range(min(executor.capacity, 8) + 4):
                    nursery.start_soon(timed)
            peak = _max_overlap(intervals)
            assert peak <= executor.capacity, (
                f"{peak} calls overlapped but capacity is {executor.capacity}"
            )

            start = time.monotonic()
            sleeper = kit_interval if interrupts_sync_calls else kit_async_interval
            with trio.move_on_after(0.3):
                _value(await executor.submit(Call(sleeper, (30.0,))))
                raise AssertionError("a 30 s call finished inside a 0.3 s cancel scope")
            assert time.monotonic() - start < cancel_within, (
                f"a cancelled submit must return within {cancel_within}s"
            )
            assert _value(await executor.submit(Call(kit_add, (1, 1)))) == 2, (
                "the executor must keep working after a cancelled call"
            )
        closed_at = time.monotonic()
        assert closed_at - start < cancel_within + 10, "closing the executor must not hang"

    trio.run(main)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    events.sort(key=lambda ev: (ev[0], ev[1]))
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak
