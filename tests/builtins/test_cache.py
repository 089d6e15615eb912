"""The cache plugin with plain function tasks: keys, hits, misses, and what is never cached.

(The mutation corpus -- edits to code, constants and parameters between runs in
fresh processes -- is in ``test_cache_mutations.py``.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot.testing import make_kernel

COUNTS: dict[str, int] = {}


def bump(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@aliquot.task(outputs=["data"])
def load(n: int) -> list[int]:
    bump("load")
    return list(range(n))


@aliquot.task(outputs=["parity"])
def parity(data: list[int]) -> int:
    bump("parity")
    return len(data) % 2


@aliquot.task(outputs=["label"])
def label(parity: int) -> str:
    bump("label")
    return "even" if parity == 0 else "odd"


PIPELINE = [load, parity, label]


@pytest.fixture(autouse=True)
def _reset() -> None:
    COUNTS.clear()


@pytest.fixture
def kernel() -> Iterator[aliquot.Kernel]:
    with make_kernel() as k:
        yield k


def test_a_second_run_is_served_from_the_cache(kernel: aliquot.Kernel) -> None:
    first = kernel.run(PIPELINE, inputs={"n": 4})
    assert first.counts() == {"computed": 3}
    second = kernel.run(PIPELINE, inputs={"n": 4})
    assert second.counts() == {"cached": 1, "skipped": 2}
    assert second["label"] == "even"
    assert COUNTS == {"load": 1, "parity": 1, "label": 1}
    hit = second.nodes["label"].info["cache"]
    assert hit["status"] == "hit" and hit["run"] == first.id


def test_early_cutoff_keeps_downstream_hits(kernel: aliquot.Kernel) -> None:
    kernel.run(PIPELINE, inputs={"n": 4})
    # n=6 changes data, but parity is the same bytes again: label is not recomputed.
    run = kernel.run(PIPELINE, inputs={"n": 6})
    assert {k: r.status for k, r in run.nodes.items()} == {
        "load": "computed",
        "parity": "computed",
        "label": "cached",
    }
    assert "upstream unchanged" in run.nodes["label"].reason
    assert COUNTS == {"load": 2, "parity": 2, "label": 1}


def test_a_changed_input_is_a_miss_with_the_reason(kernel: aliquot.Kernel) -> None:
    kernel.run(PIPELINE, inputs={"n": 4})
    run = kernel.run(PIPELINE, inputs={"n": 5})
    why = run.nodes["load"].info["cache"]["why"]
    assert why[0].startswith("input n changed (value:")
    assert run.nodes["label"].status == "computed"


def test_errors_are_never_cached(kernel: aliquot.Kernel) -> None:
    state = {"fail": True}

    @aliquot.task(outputs=["x"])
    def flaky() -> int:
        bump("flaky")
        if state["fail"]:
            raise RuntimeError("not yet")
        return 1

    assert kernel.run(flaky).status == "failed"
    assert kernel.run(flaky).status == "failed"
    state["fail"] = False
    assert kernel.run(flaky)["x"] == 1
    assert COUNTS["flaky"] == 3
    assert kernel.run(flaky).nodes["flaky"].status == "cached"


def test_an_input_without_a_canonical_form_turns_caching_off_and_says_why(
    kernel: aliquot.Kernel,
) -> None:
    @aliquot.task(outputs=["y"])
    def uses_lock(lock: Any) -> int:
        bump("uses_lock")
        return 1

    lock = threading.Lock()
    run = kernel.run(uses_lock, inputs={"lock": lock})
    assert run.nodes["uses_lock"].info["cache"]["status"] == "off"
    assert "_thread.lock has no canonical form" in run.nodes["uses_lock"].info["cache"]["why"]
    kernel.run(uses_lock, inputs={"lock": lock})
    assert COUNTS["uses_lock"] == 2  # never a key from part of the inputs


def test_cache_false_opts_a_task_out(kernel: aliquot.Kernel) -> None:
    @aliquot.task(outputs=["now"], cache=False)
    def now() -> int:
        bump("now")
        return COUNTS["now"]

    assert kernel.run(now)["now"] == 1
    run = kernel.run(now)
    assert run["now"] == 2
    assert run.nodes["now"].info["cache"] == {
        "status": "off",
        "why": "caching is off for this task (cache=False)",
    }


def test_cache_true_needs_the_cache_plugin() -> None:
    @aliquot.task(outputs=["x"], cache=True)
    def must() -> int:
        return 1

    with make_kernel() as k:
        assert k.run(must)["x"] == 1
    with make_kernel(block=["cache"]) as k:
        with pytest.raises(aliquot.PluginNotActiveError, match="sets cache but no loaded"):
            k.run(must)


def test_overwrite_options(kernel: aliquot.Kernel) -> None:
    kernel.run(PIPELINE, inputs={"n": 4})
    run = kernel.run(PIPELINE, inputs={"n": 4}, options={"overwrite": True})
    assert run.counts() == {"computed": 3}
    run = kernel.run(PIPELINE, inputs={"n": 4}, options={"overwrite_stage": "parity"})
    assert {k: r.status for k, r in run.nodes.items()} == {
        "load": "cached",
        "parity": "computed",
        "label": "computed",
    }
    # the recomputed results replace the entries: the next run hits them
    assert kernel.run(PIPELINE, inputs={"n": 4}).counts() == {"cached": 1, "skipped": 2}


def test_a_value_gone_from_the_store_is_a_miss(kernel: aliquot.Kernel) -> None:
    first = kernel.run(PIPELINE, inputs={"n": 4})
    digest = first.nodes["label"].outputs["label"].digest
    kernel.store.gc(
        live_values={r.digest for n in first.nodes.values() for r in n.outputs.values()} - {digest}
    )
    kernel.store.commit()
    run = kernel.run(PIPELINE, inputs={"n": 4})
    assert run.nodes["label"].status == "computed"
    assert run.nodes["label"].info["cache"]["why"] == ["the stored value of output 'label' is gone"]
    assert run["label"] == "even"


def test_entries_compare_their_full_key_material(kernel: aliquot.Kernel) -> None:
    import orjson

    from aliquot_builtins.cache._middleware import SPACE, Material, decode_entry, encode_entry

    kernel.run(PIPELINE, inputs={"n": 4})
    # Forge a collision: give every entry other key material under the same key.
    for key, raw in list(kernel.store.scan(SPACE)):
        blob, doc = decode_entry(raw)
        material = orjson.loads(blob)
        material["task"] = "someone.else"
        kernel.store.put(SPACE, key, encode_entry(Material(material), doc))
    run = kernel.run(PIPELINE, inputs={"n": 4})
    assert run.counts() == {"computed": 3}
    assert "other key material" in run.nodes["load"].info["cache"]["why"][0]


def test_gc_keeps_values_cache_entries_point_to(tmp_path: Path) -> None:
    with aliquot.Kernel.open(tmp_path / "s") as k:
        k.run(PIPELINE, inputs={"n": 4})
        live = k.live_values()
        from aliquot_builtins.cache import _live

        assert set(_live(k)) <= live
        assert set(_live(k))


def test_a_mutated_module_global_does_not_invalidate(kernel: aliquot.Kernel) -> None:
    # COUNTS is a module-level dict the tasks mutate; it is fingerprinted once per
    # process (see CodeFingerprints._constant_fp), so keys stay stable -- also for a
    # new kernel on the same store.
    kernel.run(PIPELINE, inputs={"n": 4})
    assert kernel.run(PIPELINE, inputs={"n": 4}).counts() == {"cached": 1, "skipped": 2}


def test_a_new_kernel_in_the_same_process_hits(tmp_path: Path) -> None:
    with aliquot.Kernel.open(tmp_path / "s") as k:
        k.run(PIPELINE, inputs={"n": 4})
    with aliquot.Kernel.open(tmp_path / "s") as k:
        assert k.run(PIPELINE, inputs={"n": 4}).counts() == {"cached": 1, "skipped": 2}


class Model:
    def score(self) -> int:
        return 1


def test_class_and_function_values_are_keyed_by_their_code() -> None:
    from aliquot_builtins.cache._fingerprint import CodeFingerprints

    fps = CodeFingerprints()
    a = fps.value_fp(Model)
    assert a == CodeFingerprints().value_fp(Model)
    assert fps.value_fp(load) != fps.value_fp(parity)
    assert fps.value_fp(len) == CodeFingerprints().value_fp(len)  # library: by name
    with pytest.raises(aliquot.Unfingerprintable):
        fps.value_fp(threading.Lock())


def test_parallel_runs_cache_like_serial_ones() -> None:
    with make_kernel() as k:
        inputs = {"n": 7}
        k.run(PIPELINE, inputs=inputs, executor="threads:4")
        assert k.run(PIPELINE, inputs=inputs, executor="threads:4").counts() == {
            "cached": 1,
            "skipped": 2,
        }


def test_explain_lists_every_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aliquot.testing import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.py").write_text(
        "import aliquot\n@aliquot.task(outputs=['x'])\ndef one(n: int = 1) -> int:\n    return n\n"
    )
    assert run_cli("run", "p.py", "-q").exit_code == 0
    assert run_cli("run", "p.py", "-q", "-i", "n=2").exit_code == 0
    out = run_cli("explain", "latest").stdout
    assert out.splitlines()[0] == "one: computed"
    assert "computed: input n is now given (its default applied before)" in out
    assert run_cli("run", "p.py", "-q", "-i", "n=3").exit_code == 0
    assert "computed: input n changed (value:" in run_cli("explain", "latest").stdout
    assert run_cli("run", "p.py", "-q", "-i", "n=3").exit_code == 0
    lines = run_cli("explain", "latest", "one").stdout.splitlines()
    assert lines[0] == "one: cached"
    assert lines[1].strip().startswith("cached (from run ")


@aliquot.task(outputs=["blob"])
def make_blob(n: int) -> bytes:
    bump("make_blob")
    return bytes(range(256)) * n


@aliquot.task(outputs=["size"])
def blob_size(blob: bytes) -> int:
    bump("blob_size")
    return len(blob)


def test_a_damaged_value_is_never_a_hit(tmp_path: Path) -> None:
    # Seed bug: an interrupted cacher write left a file whose existence counted as a hit,
    # and loading it then failed (or returned garbage). Here a damaged value is caught by
    # its checksum: the consumer fails clearly, the value is quarantined, the next run
    # recomputes it -- never a wrong value.
    location = tmp_path / "store"
    options = {"blob_threshold": 1024}
    with aliquot.Kernel.open(location, store_options=options) as k:
        first = k.run([make_blob, blob_size], inputs={"n": 64}, targets=["size"])
        digest = first.nodes["make_blob"].outputs["blob"].digest
    blob = next(p for p in (location / "blobs").rglob(digest))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with aliquot.Kernel.open(location, store_options=options) as k:
        damaged = k.run(
            [make_blob, blob_size],
            inputs={"n": 64},
            targets=["size"],
            options={"overwrite_stage": "blob_size"},
        )
        assert damaged.status == "failed"
        assert "failed its checksum" in damaged.nodes["blob_size"].reason
        healed = k.run(
            [make_blob, blob_size],
            inputs={"n": 64},
            targets=["size"],
            options={"overwrite_stage": "blob_size"},
        )
        assert healed.status == "succeeded", healed.nodes
        assert healed.nodes["make_blob"].status == "computed"
        assert healed["size"] == 64 * 256
        assert k.values.load(healed.nodes["make_blob"].outputs["blob"]) == bytes(range(256)) * 64


def test_an_unreadable_entry_is_a_miss_not_a_crash(kernel: aliquot.Kernel) -> None:
    from aliquot_builtins.cache._middleware import SPACE

    kernel.run(PIPELINE, inputs={"n": 4})
    for key, _ in list(kernel.store.scan(SPACE)):
        kernel.store.put(SPACE, key, b"\x01garbage")
    run = kernel.run(PIPELINE, inputs={"n": 4})
    assert run.counts() == {"computed": 3}
    assert run.nodes["load"].info["cache"]["status"] == "miss"


def _load_module(path: Path, name: str) -> Any:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SOURCE = """
import aliquot

@aliquot.task(outputs=["y"])
def f(x: int) -> int:
    return x + {delta}
"""


def test_source_fingerprints_are_kept_for_new_processes_and_never_outlive_an_edit(
    tmp_path: Path,
) -> None:
    import os
    import sys
    import time

    from aliquot_builtins.cache._fingerprint import SourceFingerprints

    path = tmp_path / "srcmod_cache_test.py"
    name = "srcmod_cache_test"

    def write(delta: int, age: float) -> None:
        path.write_text(SOURCE.format(delta=delta))
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))

    def persisted(kernel: aliquot.Kernel) -> int:
        return sum(1 for _ in kernel.store.scan(SourceFingerprints.SPACE))

    try:
        write(1, age=100)
        module = _load_module(path, name)
        with aliquot.Kernel.open(tmp_path / "s") as k:
            assert k.run(module.f, inputs={"x": 1})["y"] == 2
            assert persisted(k) == 1  # kept for the next process
        write(7, age=50)  # an edit: another size and time
        module = _load_module(path, name)  # new code objects, as in a new process
        with aliquot.Kernel.open(tmp_path / "s") as k:
            run = k.run(module.f, inputs={"x": 1})
            assert run["y"] == 8
            assert run.nodes["f"].info["cache"]["why"] == ["the code of f changed"]
            assert persisted(k) == 2
        write(8, age=0)  # just edited: not kept (a same-size edit could follow)
        module = _load_module(path, name)
        with aliquot.Kernel.open(tmp_path / "s") as k:
            assert k.run(module.f, inputs={"x": 1})["y"] == 9
            assert persisted(k) == 2
    finally:
        sys.modules.pop(name, None)


def test_a_serializer_nobody_registered_is_refused_when_planning(kernel: aliquot.Kernel) -> None:
    @aliquot.task(outputs=["x"], serializers=["nope"])
    def odd() -> int:
        bump("odd")
        return 1

    with pytest.raises(aliquot.UnknownNameError, match="task 'odd' stores output 'x' with it"):
        kernel.run(odd)
    assert "odd" not in COUNTS  # refused before anything ran


def test_materials_with_many_read_sets_are_scanned(
    kernel: aliquot.Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attrs

    from aliquot_builtins.cache import _middleware

    monkeypatch.setattr(_middleware, "MAX_PATH_SETS", 1)

    @attrs.frozen
    class P:
        name: str
        n: int
        seed: int = 0

    @aliquot.stage(outputs=["v"])
    def branchy(record: aliquot.Record) -> int:
        bump("branchy")
        p = record.params
        return p.n + (p.seed if p.n > 5 else 0)  # reads seed only for large n

    exp = aliquot.Experiment("b", stages=[branchy], params=[P("small", 1), P("large", 9)])
    assert kernel.run(exp).counts() == {"computed": 2}  # two read sets: past the index limit
    again = kernel.run(exp)
    assert again.counts() == {"cached": 2}
    assert COUNTS["branchy"] == 2


def test_cache_clear_removes_the_indexes_and_source_fingerprints_too(tmp_path: Path) -> None:
    from aliquot.testing import run_cli
    from aliquot_builtins.cache._fingerprint import SourceFingerprints
    from aliquot_builtins.cache._middleware import PATHS, SLOTS, SPACE

    location = tmp_path / "s"
    with aliquot.Kernel.open(location) as k:
        k.run(PIPELINE, inputs={"n": 4})
        k.store.put(SourceFingerprints.SPACE, b"k" * 32, b"fp")
    result = run_cli("cache", "clear", "--store", str(location))
    assert result.stdout.strip() == "removed 3 cache entries"
    with aliquot.Kernel.open(location) as k:
        for space in (SPACE, SLOTS, PATHS, SourceFingerprints.SPACE):
            assert list(k.store.scan(space)) == [], space


@aliquot.task(outputs=["first"])
def first_size(blob: bytes) -> int:
    return len(blob)


@aliquot.task(outputs=["second"])
def second_size(blob: bytes, first: int) -> int:
    return len(blob) + first


def test_a_large_constant_is_fingerprinted_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big bytes value bound to several nodes is hashed once per run, and still keys them."""
    from aliquot_builtins.cache import _fingerprint

    hashed: list[int] = []
    real = _fingerprint.fingerprint

    def counting(value: Any) -> str:
        if isinstance(value, bytes) and len(value) >= _fingerprint.LARGE_IMMUTABLE:
            hashed.append(len(value))
        return real(value)

    monkeypatch.setattr(_fingerprint, "fingerprint", counting)
    blob = b"x" * (2 << 20)
    with aliquot.Kernel.open(str(tmp_path / "store")) as kernel:
        run = kernel.run([first_size, second_size], inputs={"blob": blob})
        assert run["second"] == 2 * len(blob)
        assert hashed == [len(blob)]
        hashed.clear()
        again = kernel.run([first_size, second_size], inputs={"blob": blob})
        assert again.counts() == {"cached": 1, "skipped": 1}  # `first` is not needed
        assert hashed == [len(blob)]
        other = b"y" * (2 << 20)  # same size, other content: a new key, computed again
        changed = kernel.run([first_size, second_size], inputs={"blob": other})
        assert changed.counts().get("computed") == 2
