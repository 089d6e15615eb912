"""A process killed in the middle of ``kernel.apply`` leaves the old version or the new one.

The writer (``_components_crash_writer.py``) applies a breaking version of a
tree (a ``Widget`` holding a ``Part``, a numpy blob file, a pickled function
and bytes) to an LMDB store and dies with ``os._exit`` at a chosen point, or
is SIGKILLed while it applies version after version. After each death the
store is reopened here and checked: the versions that should be there are
whole and load equal to what was applied, and no index entry is half there
(a record without its uuid index, a blob reference to a missing value or
record, a user entry for a missing record).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import aliquot

HELPER = Path(__file__).with_name("_components_crash_writer.py")
PYTHON = sys.executable


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The writer module, importable as ``_components_crash_writer`` (its classes' module)."""
    spec = importlib.util.spec_from_file_location("_components_crash_writer", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_components_crash_writer", module)
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    env = dict(os.environ)  # keeps this test's ALIQUOT_CONFIG_DIR: the same pickle key
    env.update(ALIQUOT_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(HELPER), *(str(a) for a in args)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def opened(store_path: Path) -> Iterator[Any]:
    """``opened()`` -> a kernel on the store (closed at the end of the test)."""
    kernels: list[aliquot.Kernel] = []

    def open_kernel() -> aliquot.Kernel:
        kernel = aliquot.Kernel.open(str(store_path))
        kernels.append(kernel)
        return kernel

    yield open_kernel
    for kernel in kernels:
        kernel.close()


def _apply_v0(store_path: Path, writer: Any) -> set[str]:
    """Version 0, applied here; returns its blob digests."""
    with aliquot.Kernel.open(
        str(store_path), store_options={"blob_threshold": writer.BLOB_THRESHOLD}
    ) as kernel:
        applied = kernel.apply(writer.make(0), jobs=False)
        assert [(c.type, c.action, c.version) for c in applied.components] == [
            ("Part", "new", 0),
            ("Widget", "new", 0),
        ]
        return _digests(kernel, writer.make(0))


def _digests(kernel: aliquot.Kernel, widget: Any) -> set[str]:
    from aliquot_builtins.components._encoding import encode_tree

    _tree, blobs = encode_tree(widget, kernel)
    return set(blobs)


def _check_consistent(kernel: aliquot.Kernel) -> dict[bytes, Any]:
    """No half component: every index entry matches a whole record and vice versa."""
    store = kernel.store
    records = {key: orjson.loads(raw) for key, raw in store.scan("components")}
    uuids = dict(store.scan("component_uuids"))
    refs = [key for key, _ in store.scan("component_blobs")]
    users = [key for key, _ in store.scan("component_users")]
    for key, record in records.items():
        doc = record["document"]
        assert uuids.get(doc["uuid"].encode()) == key, f"record {key!r} has no uuid index"
        for digest in record["blobs"]:
            assert bytes.fromhex(digest) + key in refs, f"{key!r}: no ref for blob {digest}"
            assert store.has_value(digest), f"{key!r}: blob {digest} is missing"
        for child_hex in record["_children"]:
            child = bytes.fromhex(child_hex)
            assert child in records, f"{key!r} uses missing {child!r}"
            type_name, identifier, _v = child.split(b"\0", 2)
            assert type_name + b"\0" + identifier + b"\0" + key in users
    for uuid, key in uuids.items():
        assert key in records, f"uuid {uuid!r} points at missing record {key!r}"
    for ref in refs:
        assert ref[32:] in records, f"blob ref for a missing record {ref[32:]!r}"
        assert ref[:32].hex() in records[ref[32:]]["blobs"]
    for user in users:
        type_name, identifier, parent = user.split(b"\0", 2)
        assert parent in records, f"user entry for a missing record {parent!r}"
        child_prefix = type_name + b"\0" + identifier + b"\0"
        assert any(c.startswith(child_prefix.hex()) for c in records[parent]["_children"])
    report = store.verify()
    assert report["ok"], report["problems"]
    return records


def _assert_versions(kernel: aliquot.Kernel, writer: Any, count: int) -> None:
    assert kernel.show("Widget", "w") == list(range(count))
    assert kernel.show("Part", "p") == list(range(count))
    for version in range(count):
        loaded = kernel.load(writer.Widget, "w", version=version)
        assert loaded == writer.make(version), version
        assert loaded.version == version
        assert loaded.part.version == version
        assert loaded.fn(3.0) == 6.0
        assert isinstance(loaded.arr, np.ndarray) and loaded.arr.shape == (1024,)
    latest = kernel.load("Widget", "w")
    assert latest == writer.make(count - 1)


@pytest.mark.parametrize("point", ["staged", "in-commit"])
def test_killed_before_the_commit_leaves_the_old_version(
    store_path: Path, writer: Any, opened: Any, point: str
) -> None:
    v0_digests = _apply_v0(store_path, writer)
    out = _run("crash", store_path, 1, point)
    assert out.returncode == 17, out.stderr
    word, count = out.stdout.split()
    assert word == point
    # the apply had staged its records, indexes and blobs when it died
    assert int(count) >= 8, out.stdout
    kernel = opened()
    records = _check_consistent(kernel)
    assert len(records) == 2
    _assert_versions(kernel, writer, 1)
    v1_only = _digests(kernel, writer.make(1)) - v0_digests
    assert len(v1_only) == 2  # the new array and the new part's bytes
    assert not any(kernel.store.has_value(d) for d in v1_only)
    assert v1_only.isdisjoint(kernel.live_values())
    # the store is usable: the same apply now goes through
    applied = kernel.apply(writer.make(1), jobs=False)
    assert [(c.action, c.version) for c in applied.components] == [
        ("breaking", 1),
        ("breaking", 1),
    ]
    _check_consistent(kernel)
    _assert_versions(kernel, writer, 2)


def test_killed_after_the_commit_keeps_the_new_version(
    store_path: Path, writer: Any, opened: Any
) -> None:
    _apply_v0(store_path, writer)
    out = _run("crash", store_path, 1, "after-commit")
    assert out.returncode == 17, out.stderr
    assert out.stdout.split() == ["committed"]
    kernel = opened()
    records = _check_consistent(kernel)
    assert len(records) == 4
    _assert_versions(kernel, writer, 2)
    assert kernel.apply(writer.make(1), jobs=False).action == "same"


def test_sigkill_while_applying_leaves_whole_versions(
    store_path: Path, writer: Any, opened: Any
) -> None:
    _apply_v0(store_path, writer)
    acked = 0
    for _round in range(3):
        with aliquot.Kernel.open(str(store_path)) as kernel:
            start = kernel.show("Widget", "w")[-1] + 1
        proc = subprocess.Popen(
            [PYTHON, str(HELPER), "loop", str(store_path), str(start)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for _ in range(2):  # two acknowledged applies, then kill during the next
                line = proc.stdout.readline()
                assert line.startswith("ack "), (line, proc.stderr.read() if proc.stderr else "")
                n, version = map(int, line.split()[1:])
                assert n == version
                acked = max(acked, version)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kernel = opened()
        _check_consistent(kernel)
        versions = kernel.show("Widget", "w")
        assert versions[-1] in (acked, acked + 1)  # the killed apply: all or nothing
        _assert_versions(kernel, writer, versions[-1] + 1)
        kernel.close()
    assert acked >= 6


def test_two_processes_applying_at_once_never_share_a_version(
    store_path: Path, writer: Any, opened: Any
) -> None:
    count = 15
    with aliquot.Kernel.open(str(store_path)) as kernel:  # create the store first
        kernel.apply(writer.Part("r", v=-1), jobs=False)
    procs = [
        subprocess.Popen(
            [PYTHON, str(HELPER), "race", str(store_path), str(worker), str(count)],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in (1, 2)
    ]
    outs = [proc.communicate("go\n", timeout=60) for proc in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _err in outs]
    actions = {action for result in results for action, _v in result}
    assert actions == {"breaking"}
    versions = sorted(v for result in results for _a, v in result)
    assert versions == list(range(1, 2 * count + 1))  # one each: no lost update
    kernel = opened()
    assert kernel.show("Part", "r") == list(range(2 * count + 1))
    stored = {kernel.load(writer.Part, "r", version=v).v for v in range(1, 2 * count + 1)}
    assert stored == {w * 1000 + i for w in (1, 2) for i in range(count)}
    _check_consistent(kernel)
