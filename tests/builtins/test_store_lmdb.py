"""Reliability tests for the ``lmdb`` store (``aliquot_builtins/store_lmdb.py``).

The module docstring of the store is the layout contract these tests hold it
to: one commit point, blobs written tmp -> fsync -> rename -> dir fsync before
their index record is staged, every read checked (a damaged entry is a miss,
quarantined, never wrong bytes and never an exception).

Anything that reads a damaged ``data.mdb`` runs in a subprocess (LMDB may
crash on structural damage); the subprocess side is ``_lmdb_crash_writer.py``.
Tests marked ``xfail(strict=True)`` expose product bugs; their reason says which.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import aliquot_builtins.store_lmdb as store_lmdb
from aliquot import StoreError, StoreForkedError
from aliquot.abc import hashed_key
from aliquot.testing import check_store
from aliquot_builtins.store_lmdb import FORMAT_VERSION, LmdbStore

HELPER = Path(__file__).with_name("_lmdb_crash_writer.py")
PYTHON = sys.executable
SMALL_THRESHOLD = 4096  # blob threshold used where blobs should be cheap


def _load_helper() -> Any:
    spec = importlib.util.spec_from_file_location("_lmdb_crash_writer", HELPER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helper = _load_helper()


# ---------------------------------------------------------------- utilities


def _open(path: Path, threshold: int | None = None) -> LmdbStore:
    if threshold is None:
        return LmdbStore.open(str(path))
    return LmdbStore.open(str(path), blob_threshold=threshold)


@contextlib.contextmanager
def _opened(path: Path, threshold: int | None = None) -> Iterator[LmdbStore]:
    store = _open(path, threshold)
    try:
        yield store
    finally:
        store.close()


def _cmd(*args: object) -> list[str]:
    return [PYTHON, str(HELPER), *(str(a) for a in args)]


def _run_helper(*args: object, timeout: float = 120) -> str:
    """Run a helper mode to completion; return its stdout (it must succeed)."""
    proc = subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"helper {args[0]} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def _blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / digest[:2] / digest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _flip_all(path: Path, marker: bytes, offset: int) -> int:
    """Flip one bit at ``offset`` inside every occurrence of ``marker`` in a file."""
    raw = bytearray(path.read_bytes())
    count = 0
    start = raw.find(marker)
    while start >= 0:
        raw[start + offset] ^= 0x04
        count += 1
        start = raw.find(marker, start + 1)
    path.write_bytes(bytes(raw))
    return count


_probe_ids = itertools.count()


def _probe(
    root: Path, tmp: Path, records: list[tuple[str, bytes]], values: list[str], timeout: float = 60
) -> tuple[int | None, list[str], str]:
    """Read a (possibly damaged) store in a subprocess.

    Returns (returncode, or None if it hung; its complete stdout lines; its stderr).
    """
    expect = tmp / f"expect-{next(_probe_ids)}.json"
    expect.write_text(json.dumps({"records": [[s, k.hex()] for s, k in records], "values": values}))
    proc = subprocess.Popen(
        _cmd("probe", root, expect), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    lines = out.split("\n")[:-1]  # complete lines only
    return code, lines, err


def _probe_results(lines: list[str]) -> dict[tuple[str, str], str]:
    """{("rec", "space/keyhex") or ("val", digest): sha-or-none} from probe lines."""
    results = {}
    for line in lines:
        parts = line.split()
        if parts[0] == "rec":
            results[("rec", f"{parts[1]}/{parts[2]}")] = parts[3]
        elif parts[0] == "val":
            results[("val", parts[1])] = parts[2]
    return results


# ---------------------------------------------------------------- 1. conformance


@pytest.mark.parametrize(
    ("scheme", "threshold"), [("", store_lmdb.BLOB_THRESHOLD), ("lmdb://", SMALL_THRESHOLD)]
)
def test_lmdb_store_passes_the_conformance_kit(tmp_path: Path, scheme: str, threshold: int) -> None:
    """Rule: LmdbStore keeps every Store rule of the kit, including durability across reopen."""
    counter = itertools.count()

    def factory() -> LmdbStore:
        return LmdbStore.open(f"{scheme}{tmp_path / f's{next(counter)}'}", blob_threshold=threshold)

    def reopen(store: Any) -> LmdbStore:
        return LmdbStore.open(store.location, blob_threshold=threshold)

    check_store(factory, reopen=reopen)


# ---------------------------------------------------------------- 2. crash safety

CRASH_KILLS = 200
CRASH_SEED = 20240611
FULL_CHECK_EVERY = 100


def _check_commit(store: LmdbStore, seq: int, root: Path) -> Counter[str]:
    """Compare commit ``seq`` with what the writer must have written; count problems."""
    problems: Counter[str] = Counter()
    records, values = helper.commit_content(CRASH_SEED, seq, SMALL_THRESHOLD)
    for key, payload in records:
        got = store.get(helper.SPACE, key)
        if got is None:
            problems["lost"] += 1
        elif got != payload or not helper.record_ok(got):
            problems["mismatch"] += 1
    for value in values:
        digest = _sha(value)
        got_view = store.get_value(digest)
        if got_view is None:
            problems["lost"] += 1
        else:
            got = bytes(got_view)
            del got_view  # release the memory map
            if got != value or _sha(got) != digest:
                problems["mismatch"] += 1
        if len(value) >= SMALL_THRESHOLD:
            blob = _blob_path(root, digest)
            if not blob.is_file() or blob.stat().st_size != len(value):
                problems["missing_or_short_blob"] += 1
    return problems


def _check_absent(store: LmdbStore, seq: int) -> int:
    """Count the parts of an uncommitted commit that are visible (must be 0: all or nothing)."""
    records, values = helper.commit_content(CRASH_SEED, seq, SMALL_THRESHOLD)
    visible = sum(store.get(helper.SPACE, key) is not None for key, _ in records)
    return visible + sum(store.has_value(_sha(v)) for v in values)


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    """Rule: a commit that returned survives SIGKILL; a killed commit leaves all or nothing;
    every record and value reads back bit-exact; no index record points to a missing or
    short blob; verify() stays ok; gc removes the debris of killed writers and nothing else."""
    root = tmp_path / "crash"
    rng = random.Random(CRASH_SEED)
    acked: set[int] = set()
    totals: Counter[str] = Counter()
    checked_through = 0
    last = 0
    for kill in range(CRASH_KILLS):
        proc = subprocess.Popen(
            _cmd("write", root, CRASH_SEED, SMALL_THRESHOLD),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # raw pipes: what readline() consumed is not hidden from communicate()
        )
        try:
            if rng.random() < 0.15:  # kill during interpreter start-up or store open
                time.sleep(rng.uniform(0.010, 0.150))
                head = b""
            else:  # kill while writing: 10-400 ms after the store is open
                assert proc.stdout is not None
                head = proc.stdout.readline()
                time.sleep(rng.uniform(0.010, 0.400))
            proc.send_signal(signal.SIGKILL)
            rest, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"the writer died by itself:\n{err.decode()}"
        # complete lines only: a line cut by the kill is no acknowledgement
        lines = (head + rest).decode().split("\n")[:-1]
        run_acks = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
        totals["kills"] += 1
        totals["kills_before_open_done"] += not lines
        totals["kills_mid_stream"] += bool(run_acks)
        acked.update(run_acks)
        totals["acked"] += len(run_acks)

        # evidence of where the kills landed: inside a blob write (a tmp file is left), or
        # between a blob's rename and the commit that indexes it (an orphan blob, below)
        totals["kills_during_blob_write"] += root.joinpath("tmp").is_dir() and any(
            root.joinpath("tmp").iterdir()
        )
        with _opened(root, SMALL_THRESHOLD) as store:
            assert not list((root / "tmp").iterdir()), (
                "tmp files of dead writers must be swept at open"
            )
            raw_last = store.get(helper.SPACE, b"last")
            last = int(raw_last) if raw_last is not None else 0
            _, pending_values = helper.commit_content(CRASH_SEED, last + 1, SMALL_THRESHOLD)
            totals["kills_after_blob_rename"] += any(
                len(v) >= SMALL_THRESHOLD and _blob_path(root, _sha(v)).exists()
                for v in pending_values
            )
            lost_acks = sorted(s for s in acked if s > last)
            assert not lost_acks, (
                f"kill {kill}: acknowledged commits {lost_acks[:5]} are lost (last={last})"
            )
            full = kill % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1
            if full:
                to_check = set(range(1, last + 1))
            else:  # what this writer added, plus a sample of older commits
                to_check = set(range(max(1, checked_through - 1), last + 1))
                to_check.update(rng.sample(range(1, last + 1), min(5, last)))
            for seq in sorted(to_check):
                problems = _check_commit(store, seq, root)
                assert not problems, f"kill {kill}: commit {seq} is damaged: {dict(problems)}"
            visible = _check_absent(store, last + 1)
            assert visible == 0, (
                f"kill {kill}: {visible} parts of uncommitted commit {last + 1} are visible"
            )
            checked_through = last
            if full:
                report = store.verify()
                assert report["ok"], f"kill {kill}: verify failed: {report['problems'][:5]}"
                assert report["quarantined"] == 0
    totals["committed"] = last

    with _opened(root, SMALL_THRESHOLD) as store:
        before = store.verify()
        assert before["ok"], before["problems"][:5]
        collected = store.gc()
        assert not collected["skipped"], collected
        totals["orphan_blobs_collected"] = collected["orphan_blobs_removed"]
        assert collected["orphan_blobs_removed"] == before["orphan_blobs"]
        after = store.verify()
        assert after["ok"], after
        assert after["orphan_blobs"] == 0, after
        damaged: Counter[str] = Counter()
        for seq in range(1, last + 1):  # gc must not have touched a committed blob
            damaged.update(_check_commit(store, seq, root))
    totals["lost"] = damaged["lost"]
    totals["mismatches"] = damaged["mismatch"]
    totals["missing_or_short_blobs"] = damaged["missing_or_short_blob"]
    print(f"\ncrash test totals: {dict(totals)}")
    assert totals["lost"] == totals["mismatches"] == totals["missing_or_short_blobs"] == 0
    assert totals["acked"] > 0, totals
    assert max(acked) <= last, totals
    shutil.rmtree(root)  # ~100-200 MB; pytest keeps old tmp dirs around


# ---------------------------------------------------------------- 3. corruption


def _damage(blob: Path, how: str) -> None:
    data = blob.read_bytes()
    if how == "flip":
        blob.write_bytes(data[:100] + bytes([data[100] ^ 0x01]) + data[101:])
    elif how == "truncate":
        blob.write_bytes(data[: len(data) // 2])
    elif how == "extend":
        blob.write_bytes(data + b"\0")
    elif how == "same_size_other_bytes":
        blob.write_bytes(random.Random(1).randbytes(len(data)))
    elif how == "delete":
        blob.unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["flip", "truncate", "extend", "same_size_other_bytes", "delete"])
def test_damaged_blob_file_is_a_miss_reported_quarantined_and_collected(
    store_path: Path, how: str
) -> None:
    """Rule: a damaged or missing blob reads as None (never wrong bytes, never an exception),
    verify reports it, the file moves to quarantine/, gc clears the quarantine, and the
    value can then be stored again."""
    rng = random.Random(3)
    value, healthy = rng.randbytes(20_000), rng.randbytes(30_000)
    with _opened(store_path, SMALL_THRESHOLD) as store:
        digest, _ = store.put_value(value)
        good, _ = store.put_value(healthy)
    _damage(_blob_path(store_path, digest), how)

    with _opened(store_path, SMALL_THRESHOLD) as store:
        report = store.verify()
        assert report["ok"] is False
        assert any(digest in problem for problem in report["problems"]), report["problems"]
        assert store.get_value(digest) is None
        assert store.get_value(digest) is None, "a second read is a miss too"
        assert not store.has_value(digest), "the damaged entry is no longer indexed"
        assert bytes(store.get_value(good) or b"") == healthy, "other values are unaffected"
        assert not _blob_path(store_path, digest).exists()
        quarantined = list((store_path / "quarantine").iterdir())
        if how == "delete":
            assert quarantined == []
        else:
            assert [p.name.split(".")[0] for p in quarantined] == [digest]
        store.commit()
        assert store.stats()["spaces"].get("_quarantine") == 1, (
            "the entry is recorded in _quarantine"
        )
        collected = store.gc()
        assert collected["quarantine_cleared"] == len(quarantined)
        assert list((store_path / "quarantine").iterdir()) == []
        assert store.stats()["spaces"].get("_quarantine", 0) == 0
        assert store.verify()["ok"] is True

    with _opened(store_path, SMALL_THRESHOLD) as store:
        assert store.get_value(digest) is None
        assert not store.has_value(digest)
        assert store.put_value(value)[0] == digest
        store.commit()
        assert bytes(store.get_value(digest) or b"") == value, "the value can be stored again"
        assert store.verify()["ok"] is True


def test_damaged_payloads_in_data_mdb_read_as_misses_never_wrong_bytes(
    store_path: Path, tmp_path: Path
) -> None:
    """Rule: bit flips in record payloads and inline values inside data.mdb (small ones and
    ones on LMDB overflow pages) read as None, never as wrong bytes; untouched entries
    read back exactly; verify reports every damaged entry. Read in a subprocess."""
    rng = random.Random(5)
    records: list[tuple[str, bytes, bytes, bytes]] = []  # space, key, payload, marker
    values: list[tuple[str, bytes, bytes]] = []  # digest, value, marker
    with _opened(store_path) as store:
        for i in range(6):
            marker = b"@@REC-MARKER-%02d@@" % i
            payload = marker + rng.randbytes(9000 if i >= 4 else 200)
            store.put("dmg", b"key-%02d" % i, payload)
            records.append(("dmg", b"key-%02d" % i, payload, marker))
        for i in range(6):
            marker = b"@@VAL-MARKER-%02d@@" % i
            value = marker + rng.randbytes(20000 if i >= 4 else 300)
            values.append((store.put_value(value)[0], value, marker))
    data = store_path / "index" / "data.mdb"
    damaged_recs = {
        key
        for i, (_, key, _, marker) in enumerate(records)
        if i % 2 == 0 and _flip_all(data, marker, 7)
    }
    damaged_vals = {
        d for i, (d, _, marker) in enumerate(values) if i % 2 == 0 and _flip_all(data, marker, 7)
    }
    assert len(damaged_recs) == 3, "every marker must be found in data.mdb"
    assert len(damaged_vals) == 3, "every marker must be found in data.mdb"

    code, lines, err = _probe(
        store_path, tmp_path, [(s, k) for s, k, _, _ in records], [d for d, _, _ in values]
    )
    assert code == 0, f"payload damage must not crash the reader ({code}):\n{err}"
    assert lines[-1] == "done"
    verify = next(line.split() for line in lines if line.startswith("verify"))
    assert verify[1] == "False", f"verify must report the damage: {verify}"
    assert int(verify[2]) >= 6, f"verify must report every damaged entry: {verify}"
    results = _probe_results(lines)
    for space, key, payload, _ in records:
        got = results[("rec", f"{space}/{key.hex()}")]
        assert got == ("none" if key in damaged_recs else _sha(payload)), f"record {key!r}: {got}"
    for digest, _value, _ in values:
        got = results[("val", digest)]
        assert got == ("none" if digest in damaged_vals else digest), f"value {digest}: {got}"


def test_random_damage_to_data_mdb_never_yields_wrong_bytes(
    store_path: Path, tmp_path: Path
) -> None:
    """Rule: whatever bytes of data.mdb are damaged, a reader may refuse, miss or even crash
    (in its own process), but never returns bytes other than the ones stored."""
    rng = random.Random(11)
    expected: dict[tuple[str, str], str] = {}
    records: list[tuple[str, bytes]] = []
    values: list[str] = []
    with _opened(store_path, SMALL_THRESHOLD) as store:
        for space in ("alpha", "beta"):
            for i in range(40):
                # hashed keys are far apart: no flip turns one into another
                key = hashed_key(f"{space}-{i}", prefix=space[:1].encode())
                payload = rng.randbytes(rng.choice([50, 400, 5000]))
                store.put(space, key, payload)
                records.append((space, key))
                expected[("rec", f"{space}/{key.hex()}")] = _sha(payload)
        for _ in range(30):
            value = rng.randbytes(rng.choice([20, 1000, 3000, 9000]))  # 9000: a blob
            digest = store.put_value(value)[0]
            values.append(digest)
            expected[("val", digest)] = digest
    outcomes: Counter[str] = Counter()
    size = (store_path / "index" / "data.mdb").stat().st_size
    for trial in range(20):
        copy = tmp_path / f"trial{trial}"
        shutil.copytree(store_path, copy)
        data = copy / "index" / "data.mdb"
        raw = bytearray(data.read_bytes())
        low = 0 if trial % 5 == 0 else 2 * 4096  # now and then the meta pages too
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(low, size)] ^= 1 << rng.randrange(8)
        data.write_bytes(bytes(raw))
        code, lines, _err = _probe(copy, tmp_path, records, values, timeout=30)
        results = _probe_results(lines)
        wrong = {
            k: v
            for k, v in results.items()
            if v not in ("none", expected[k]) and not v.startswith("error:")
        }
        assert not wrong, f"trial {trial}: wrong bytes returned: {wrong}"
        outcomes["hung" if code is None else "crashed" if code < 0 else "exited"] += 1
        outcomes["misses"] += sum(v == "none" for v in results.values())
        outcomes["open_refused"] += any(line.startswith("open-error") for line in lines)
    print(f"\nrandom data.mdb damage outcomes: {dict(outcomes)}")
    # the main process survived every damaged store and still works
    with _opened(tmp_path / "after") as store:
        store.put("ok", b"k", b"v")
        store.commit()
        assert store.get("ok", b"k") == b"v"


def test_damaged_record_key_in_data_mdb_is_not_served_under_another_key(
    store_path: Path, tmp_path: Path
) -> None:
    """Rule: never a wrong value -- a key whose bytes were damaged must not answer for
    another key (read in a subprocess)."""
    with _opened(store_path) as store:
        for name in (b"aaa", b"bbb", b"ccc"):
            store.put("recs", b"key-" + name + b"-marker", b"payload of record " + name.upper())
    data = store_path / "index" / "data.mdb"
    raw = data.read_bytes()
    assert raw.count(b"key-ccc-marker") >= 1
    data.write_bytes(raw.replace(b"key-ccc-marker", b"key-ccd-marker"))  # last key: order kept
    never_written = b"key-ccd-marker"
    code, lines, err = _probe(store_path, tmp_path, [("recs", never_written)], [])
    assert code == 0, err
    assert _probe_results(lines)[("rec", f"recs/{never_written.hex()}")] == "none", (
        "a key that was never written returned a record"
    )
    verify = next(line.split() for line in lines if line.startswith("verify"))
    assert verify[1] == "False", "verify must notice the damaged key"


# ---------------------------------------------------------------- 4. fork guard


def _in_forked_child(body: Any) -> int:
    """Run ``body()`` (returns an exit code) in a forked child; return the child's exit code."""
    pid = os.fork()
    if pid == 0:  # never return into pytest from the child
        code = 255
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_child_cannot_use_the_parents_handle(store_path: Path) -> None:
    """Rule: every use of a handle in a forked child raises StoreForkedError (reported by
    exit code); closing it there is harmless; the parent keeps working."""
    store = _open(store_path, SMALL_THRESHOLD)
    store.put("fork", b"k", b"parent")
    store.commit()
    store.put("fork", b"staged", b"in the parent")
    operations = [
        lambda: store.get("fork", b"k"),
        lambda: store.put("fork", b"k", b"child"),
        lambda: store.delete("fork", b"k"),
        lambda: list(store.scan("fork")),
        lambda: store.put_value(b"v"),
        lambda: store.get_value("0" * 64),
        lambda: store.has_value("0" * 64),
        lambda: store.next_sequence("n"),
        store.commit,
        store.verify,
        store.gc,
        store.stats,
    ]

    def child() -> int:
        code = 0
        for bit, operation in enumerate(operations):
            try:
                operation()
            except StoreForkedError:
                continue
            except BaseException:
                code |= 1 << min(bit, 6)
            else:
                code |= 1 << min(bit, 6)
        try:
            store.close()  # harmless in the child: must not commit or touch the environment
        except BaseException:
            code |= 128
        return code

    code = _in_forked_child(child)
    assert code == 0, f"child: operations that did not raise StoreForkedError, bits {code:#x}"
    assert store.get("fork", b"k") == b"parent"
    assert store.get("fork", b"staged") == b"in the parent", "the child's close committed nothing"
    store.put("fork", b"after", b"1")
    store.commit()
    assert store.next_sequence("n") == 1
    assert store.verify()["ok"]
    store.close()
    with _opened(store_path) as again:
        assert again.get("fork", b"after") == b"1"
        assert again.get("fork", b"staged") == b"in the parent"


def test_forked_child_can_open_its_own_handle(store_path: Path) -> None:
    """Rule: a forked child can open the store afresh (the remedy StoreForkedError names)
    and its commits reach the parent."""
    store = _open(store_path)
    store.put("fork", b"k", b"parent")
    store.commit()

    def child() -> int:
        try:
            own = LmdbStore.open(str(store_path))
        except StoreError:
            return 1
        except BaseException:
            return 2
        ok = own.get("fork", b"k") == b"parent"
        own.put("fork", b"from-child", b"child")
        own.close()
        return 0 if ok else 3

    try:
        assert _in_forked_child(child) == 0
        assert store.get("fork", b"from-child") == b"child"
    finally:
        store.close()


# ---------------------------------------------------------------- 5. map growth


def _big_payload(i: int) -> bytes:
    return bytes(helper.make_record(random.Random(i).randbytes(4000)))


def test_commit_larger_than_the_initial_map_grows_it(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a single commit of many MB into a 1 MiB map grows the map and commits whole."""
    monkeypatch.setattr(store_lmdb, "INITIAL_MAP_SIZE", 1 << 20)
    n = 2000  # ~8 MB of records
    with _opened(store_path) as store:
        assert store.stats()["map_size"] == 1 << 20
        for i in range(n):
            store.put("big", b"%06d" % i, _big_payload(i))
        store.commit()
        assert store.pending == 0
        stats = store.stats()
        assert stats["map_size"] >= stats["index_bytes"] >= n * 4000, "the map grew to hold it all"
        assert store.stats()["spaces"]["big"] == n
    with _opened(store_path) as store:  # reopened with the tiny initial size again
        items = list(store.scan("big"))
        assert [k for k, _ in items] == [b"%06d" % i for i in range(n)]
        assert all(v == _big_payload(i) for i, (_, v) in enumerate(items))
        assert store.verify()["ok"]


def test_failed_commit_leaves_nothing_partial(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a commit that fails part-way (here after growing the map) commits nothing and
    keeps the writes staged; retrying commits them all."""
    monkeypatch.setattr(store_lmdb, "INITIAL_MAP_SIZE", 1 << 20)
    store = _open(store_path)
    observer = _open(store_path)  # another handle: sees only what is committed
    try:
        n = 2000
        for i in range(n):
            store.put("big", b"%06d" % i, _big_payload(i))
        bad = (b"s:big", b"k" * 600)  # LMDB refuses this key: the commit fails at its end
        store._stage(*bad, store_lmdb._record(*bad, b"x"))
        with pytest.raises(StoreError):
            store.commit()
        assert observer.get("big", b"000000") is None
        assert list(observer.scan("big")) == [], "nothing of a failed commit may be visible"
        assert store.pending == n + 1, "a failed commit keeps its writes staged"
        assert store.get("big", b"001999") == _big_payload(1999)
        del store._staged[bad]
        store.commit()
        assert sum(1 for _ in observer.scan("big")) == n
    finally:
        observer.close()
        store.close()


def test_handle_adopts_a_map_grown_by_another_process(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: after another process grew the map past this handle's size, reads and writes
    through this handle keep working (MapResized is adopted, not raised)."""
    monkeypatch.setattr(store_lmdb, "INITIAL_MAP_SIZE", 1 << 20)
    with _opened(store_path) as store:
        store.put("x", b"k", b"v")
        store.commit()
        assert _run_helper("bigcommit", store_path, 2000, 4000).strip() == "done"
        assert store.get("big", b"001999") == bytes([1999 % 251]) * 4000
        assert sum(1 for _ in store.scan("big")) == 2000
        store.put("x", b"k2", b"v2")
        store.commit()
        assert store.next_sequence("after") == 1
        assert store.get("x", b"k2") == b"v2"


# ---------------------------------------------------------------- 6. stale readers


def _reader_slots(store: LmdbStore) -> list[int]:
    """The pid of every reader slot in use, from LMDB's reader table."""
    lines = store._env.readers().strip().splitlines()[1:]  # header: pid thread txnid
    return [int(line.split()[0]) for line in lines if line.strip()]


def _stale_reader(store_path: Path) -> int:
    """A process that opened the store, began a read, and was SIGKILLed: its pid."""
    reader = subprocess.Popen(_cmd("reader", store_path), stdout=subprocess.PIPE, text=True)
    try:
        line = reader.stdout.readline() if reader.stdout else ""
        assert line.startswith("reading"), f"reader did not start: {line!r}"
        pid = int(line.split()[1])
    finally:
        reader.kill()
        reader.communicate()
    return pid


def test_stale_reader_of_a_killed_process_is_cleared_at_open(store_path: Path) -> None:
    """Rule: opening the store runs reader_check, freeing the reader slot of a killed process
    (a holder keeps the environment open, so LMDB does not simply reset its lock file)."""
    with _opened(store_path) as holder:
        holder.put("r", b"k", b"v")
        holder.commit()
        pid = _stale_reader(store_path)
        assert pid in _reader_slots(holder), "the killed reader's slot is stale"
        assert _run_helper("touch", store_path).strip() == "ok"
        assert pid not in _reader_slots(holder), "open must clear stale readers"
        holder.put("r", b"k2", b"v2")
        holder.commit()
        assert holder.get("r", b"k") == b"v"


def test_stats_readers_counts_live_readers(store_path: Path) -> None:
    """Rule: stats()["readers"] counts the live processes holding reader slots."""
    with _opened(store_path) as holder:
        _stale_reader(store_path)
        _run_helper("touch", store_path)
        assert holder.stats()["readers"] == len(set(_reader_slots(holder))) == 1


# ---------------------------------------------------------------- 7. concurrency


def _start_all(*commands: list[str]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            c, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]


def _go_and_collect(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[Any]:
    results = []
    try:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


@pytest.mark.slow
def test_next_sequence_from_four_processes_is_exact(store_path: Path) -> None:
    """Rule: next_sequence is an atomic read-modify-write across processes: 4 x 200 calls
    hand out 1..800 exactly once each, in order per process, and the next call gives 801."""
    _open(store_path).close()
    results = _go_and_collect(_start_all(*[_cmd("counter", store_path, 200) for _ in range(4)]))
    assert sorted(itertools.chain.from_iterable(results)) == list(range(1, 801))
    assert all(r == sorted(r) and len(r) == 200 for r in results)
    with _opened(store_path) as store:
        assert store.next_sequence("counter") == 801


def test_concurrent_writer_processes_lose_nothing(store_path: Path) -> None:
    """Rule: 4 processes putting distinct keys and values and committing concurrently (and
    creating the store concurrently) lose nothing."""
    workers, commits, per_commit = 4, 40, 10
    procs = _start_all(
        *[_cmd("puts", store_path, w, commits, per_commit, SMALL_THRESHOLD) for w in range(workers)]
    )
    reports = _go_and_collect(procs)
    with _opened(store_path) as store:
        assert {r["store_id"] for r in reports} == {store.store_id}, "one store was created"
        stored = dict(store.scan("conc"))
        assert len(stored) == workers * commits * per_commit
        for w, c, j in itertools.product(range(workers), range(commits), range(per_commit)):
            assert stored[b"w%d/%04d/%02d" % (w, c, j)] == helper.puts_value(w, c, j)
        for digest in itertools.chain.from_iterable(r["digests"] for r in reports):
            got = store.get_value(digest)
            assert got is not None
            assert _sha(bytes(got)) == digest
        assert store.verify()["ok"]


# ---------------------------------------------------------------- 8. keys


@pytest.fixture(scope="module")
def key_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LmdbStore]:
    with _opened(tmp_path_factory.mktemp("keys") / "store") as store:
        yield store


_HYPOTHESIS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)  # surrogates too


@settings(_HYPOTHESIS, max_examples=300)
@given(text=any_text, prefix=st.binary(max_size=400 - 32), value=st.binary(max_size=64))
def test_hashed_user_strings_are_always_valid_keys(
    key_store: LmdbStore, text: str, prefix: bytes, value: bytes
) -> None:
    """Rule: hashed_key turns any user string (any prefix up to 368 bytes) into a 1..400-byte
    key that the store accepts, commits and reads back."""
    key = hashed_key(text, prefix)
    assert 1 <= len(key) <= 400
    key_store.put("keys", key, value)
    assert key_store.get("keys", key) == value
    key_store.commit()
    assert key_store.get("keys", key) == value
    assert (key, value) in list(key_store.scan("keys", key))


@settings(_HYPOTHESIS, max_examples=60)
@given(key=st.one_of(st.just(b""), st.binary(min_size=401, max_size=2048)))
def test_raw_keys_out_of_range_are_refused_with_store_error(
    key_store: LmdbStore, key: bytes
) -> None:
    """Rule: an empty key or one over 400 bytes is refused with StoreError (not an LMDB
    BadValsizeError) by put, get and delete, and stages nothing."""
    pending = key_store.pending
    with pytest.raises(StoreError):
        key_store.put("keys", key, b"v")
    with pytest.raises(StoreError):
        key_store.get("keys", key)
    with pytest.raises(StoreError):
        key_store.delete("keys", key)
    assert key_store.pending == pending


@settings(_HYPOTHESIS, max_examples=60)
@given(key=st.binary(min_size=1, max_size=400))
def test_raw_keys_of_1_to_400_bytes_round_trip(key_store: LmdbStore, key: bytes) -> None:
    """Rule: any byte string of 1..400 bytes is a valid key."""
    key_store.put("raw", key, key[::-1])
    key_store.commit()
    assert key_store.get("raw", key) == key[::-1]


def test_key_length_boundaries_and_long_scan_prefix(key_store: LmdbStore) -> None:
    """Rule: 400 bytes is accepted, 401 refused; a longer scan prefix matches nothing."""
    key_store.put("edge", b"k" * 400, b"v")
    key_store.commit()
    assert key_store.get("edge", b"k" * 400) == b"v"
    with pytest.raises(StoreError):
        key_store.put("edge", b"k" * 401, b"v")
    assert list(key_store.scan("edge", b"k" * 600)) == []


# ---------------------------------------------------------------- 9. format and foreign data


def _set_meta(store_path: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(store_path / "index"), max_dbs=8)
    try:
        meta = env.open_db(b"_meta")
        with env.begin(write=True) as txn:
            txn.put(key, value, db=meta)
    finally:
        env.close()


def test_newer_format_is_refused_with_a_hint_to_upgrade(store_path: Path) -> None:
    """Rule: a store written by a newer format is refused with StoreError saying to upgrade,
    and the refused open leaves nothing behind (the store opens again once fixed)."""
    _open(store_path).close()
    _set_meta(store_path, b"format", str(FORMAT_VERSION + 1).encode())
    with pytest.raises(StoreError, match=r"(?i)upgrade"):
        _open(store_path)
    _set_meta(store_path, b"format", str(FORMAT_VERSION).encode())
    with _opened(store_path) as store:
        assert store.gc()["skipped"] == [], "a refused open must not keep a lock on the store"


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """Rule: a store path that is a regular file (or lies under one) is a StoreError."""
    target = tmp_path / "a-file"
    target.write_text("not a store")
    with pytest.raises(StoreError):
        _open(target)
    with pytest.raises(StoreError):
        _open(target / "below")
    assert target.read_text() == "not a store"


def test_two_handles_in_one_process_share_data(store_path: Path) -> None:
    """Rule: two handles to one path in one process work together: commits of one are seen
    by the other, staging is per handle, closing one leaves the other working."""
    first = _open(store_path, SMALL_THRESHOLD)
    second = _open(store_path, SMALL_THRESHOLD)
    try:
        assert first.store_id == second.store_id
        first.put("shared", b"a", b"1")
        assert second.get("shared", b"a") is None, "staged writes belong to their handle"
        first.commit()
        assert second.get("shared", b"a") == b"1"
        digest, _ = second.put_value(b"x" * 10_000)
        second.commit()
        assert bytes(first.get_value(digest) or b"") == b"x" * 10_000
        first.close()
        second.put("shared", b"b", b"2")
        second.commit()
        assert second.get("shared", b"a") == b"1"
        assert second.next_sequence("s") == 1
    finally:
        first.close()
        second.close()
    with _opened(store_path) as again:
        assert again.get("shared", b"b") == b"2"


def _dead_pid() -> int:
    for pid in itertools.chain([999_999], range(4_000_000, 4_100_000)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free pid found")


def test_tmp_files_of_dead_processes_are_swept_at_open(store_path: Path) -> None:
    """Rule: open removes tmp/<pid>-* files whose process is gone and keeps live ones."""
    _open(store_path).close()
    dead = store_path / "tmp" / f"{_dead_pid()}-x"
    alive = store_path / "tmp" / f"{os.getppid()}-y"
    dead.write_bytes(b"partial blob")
    alive.write_bytes(b"being written")
    with _opened(store_path):
        assert not dead.exists()
        assert alive.exists()


def test_unknown_option_is_refused(store_path: Path) -> None:
    """Rule: an unknown store option is a StoreError naming it."""
    with pytest.raises(StoreError, match="compression"):
        LmdbStore.open(str(store_path), compression=True)


def test_unreadable_format_is_a_store_error(store_path: Path) -> None:
    """Rule: a damaged format marker is refused with StoreError."""
    _open(store_path).close()
    _set_meta(store_path, b"format", b"one")
    with pytest.raises(StoreError):
        _open(store_path)


def test_index_that_is_not_lmdb_is_a_store_error(store_path: Path) -> None:
    """Rule: a data.mdb that is not an LMDB file is refused with StoreError."""
    (store_path / "index").mkdir(parents=True)
    (store_path / "index" / "data.mdb").write_bytes(b"not an lmdb file " * 1000)
    with pytest.raises(StoreError):
        _open(store_path)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_failed_open_does_not_leak_the_lock_file(store_path: Path) -> None:
    """Rule: a refused open releases everything it acquired."""
    (store_path / "index").mkdir(parents=True)
    (store_path / "index" / "data.mdb").write_bytes(b"not an lmdb file " * 1000)
    before = _open_fds()
    with contextlib.suppress(Exception):
        _open(store_path)
    assert _open_fds() == before


def test_foreign_lmdb_environment_is_refused_untouched(store_path: Path) -> None:
    """Rule: an index/ holding someone else's LMDB database is refused with StoreError and
    left unmodified."""
    (store_path / "index").mkdir(parents=True)
    env = lmdb.open(str(store_path / "index"))
    with env.begin(write=True) as txn:
        txn.put(b"their-key", b"their-value")
    env.close()
    with contextlib.suppress(StoreError):
        _open(store_path).close()
    env = lmdb.open(str(store_path / "index"), readonly=True)
    try:
        with env.begin() as txn:
            keys = [bytes(k) for k, _ in txn.cursor()]
    finally:
        env.close()
    assert keys == [b"their-key"], f"the foreign database was modified: {keys}"


# ---------------------------------------------------------------- 10. blob protocol


def test_blob_renamed_but_never_committed_is_invisible_and_collected(store_path: Path) -> None:
    """Rule: a crash after a blob is renamed into place but before the commit leaves the
    value absent (not indexed), verify ok with one orphan, and gc removes the orphan file."""
    _open(store_path).close()
    digest = _run_helper("orphan", store_path, SMALL_THRESHOLD, 50_000).strip()
    blob = _blob_path(store_path, digest)
    assert blob.is_file(), "the blob was renamed into place"
    assert blob.stat().st_size == 50_000
    with _opened(store_path, SMALL_THRESHOLD) as store:
        assert not store.has_value(digest)
        assert store.get_value(digest) is None
        assert store.get("orphan", b"k") is None, "nothing of the uncommitted batch is visible"
        report = store.verify()
        assert report["ok"], report
        assert report["orphan_blobs"] == 1, report
        collected = store.gc()
        assert collected["orphan_blobs_removed"] == 1, collected
        assert not blob.exists()
        assert store.verify()["orphan_blobs"] == 0
        assert list((store_path / "tmp").iterdir()) == []


def test_blob_is_complete_and_synced_before_its_index_record_is_staged(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: put_value writes tmp/, fsyncs the file, renames it into blobs/ab/, fsyncs that
    directory (and blobs/ when ab/ is new) -- all before the index record is staged, which
    then finds the complete file in place."""
    store = _open(store_path, SMALL_THRESHOLD)
    value = random.Random(9).randbytes(100_000)
    digest = _sha(value)
    final = os.path.realpath(_blob_path(store_path, digest))
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_fsync_dir, real_stage = (
        os.fsync,
        os.replace,
        store_lmdb._fsync_dir,
        store._stage,
    )

    def fsync(fd: int) -> None:
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.path.realpath(src)))
        events.append(("replaced-to", os.path.realpath(dst)))
        real_replace(src, dst)

    def fsync_dir(path: Path) -> None:
        real_fsync_dir(path)
        events.append(("fsync_dir", os.path.realpath(path)))

    def stage(dbname: bytes, key: bytes, raw: bytes | None) -> None:
        if dbname == store_lmdb.VALUES and raw is not None and raw[3:4] == b"x":
            with open(final, "rb") as fh:
                assert _sha(fh.read()) == key.hex() == digest, "staged before the file was complete"
            events.append(("stage", key.hex()))
        real_stage(dbname, key, raw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(store_lmdb, "_fsync_dir", fsync_dir)
    monkeypatch.setattr(store, "_stage", stage)
    try:
        assert store.put_value([value[:1000], memoryview(value)[1000:]]) == (digest, len(value))
    finally:
        monkeypatch.undo()
    tmp = next(path for kind, path in events if kind == "replace")
    assert Path(tmp).parent == Path(os.path.realpath(store_path / "tmp"))
    order = [
        events.index(("fsync", tmp)),
        events.index(("replace", tmp)),
        events.index(("replaced-to", final)),
        events.index(("fsync_dir", str(Path(final).parent))),
        events.index(("stage", digest)),
    ]
    assert order == sorted(order), events
    # No blob write depends on creating a directory: all 256 exist from the store's creation.
    assert ("fsync_dir", str(Path(final).parent.parent)) not in events
    assert sorted(p.name for p in (store_path / "blobs").iterdir()) == [
        f"{i:02x}" for i in range(256)
    ]
    store.commit()
    assert bytes(store.get_value(digest) or b"") == value
    store.close()


def test_gc_that_was_skipped_keeps_protecting_this_handles_blobs(store_path: Path) -> None:
    """Rule: while a handle is open, no gc (of another handle or process) removes the blob
    files it has written and staged."""
    first = _open(store_path, SMALL_THRESHOLD)
    second = _open(store_path, SMALL_THRESHOLD)
    try:
        assert first.gc()["skipped"], "second is open: first's gc must skip orphan collection"
        value = random.Random(2).randbytes(50_000)
        digest, _ = first.put_value(value)  # renamed into blobs/, index staged
        assert second.gc()["skipped"], "first is still open: second's gc must skip too"
        first.commit()
        got = first.get_value(digest)
        assert got is not None, "a committed value was lost"
        assert bytes(got) == value
    finally:
        first.close()
        second.close()


def test_gc_does_not_delete_a_blob_being_stored_by_another_thread(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a store is thread-safe: gc in one thread never destroys a value another thread
    is storing."""
    store = _open(store_path, SMALL_THRESHOLD)
    value = random.Random(4).randbytes(50_000)
    renamed, release = threading.Event(), threading.Event()
    real_fsync_dir = store_lmdb._fsync_dir

    def fsync_dir(path: Path) -> None:
        real_fsync_dir(path)
        if Path(path).parent.name == "blobs":  # blobs/ab/ after the rename: pause here
            renamed.set()
            release.wait(30)

    monkeypatch.setattr(store_lmdb, "_fsync_dir", fsync_dir)
    result: list[tuple[str, int]] = []
    thread = threading.Thread(target=lambda: result.append(store.put_value(value)))
    thread.start()
    try:
        assert renamed.wait(30)
        store.gc()
    finally:
        release.set()
        thread.join(30)
    try:
        store.commit()
        got = store.get_value(result[0][0])
        assert got is not None, "gc destroyed a value being stored"
        assert bytes(got) == value
    finally:
        store.close()


def test_put_value_repairs_a_damaged_copy(store_path: Path) -> None:
    """Rule: after put_value(b) and commit, get_value(sha256(b)) returns b."""
    value = random.Random(6).randbytes(20_000)
    with _opened(store_path, SMALL_THRESHOLD) as store:
        digest, _ = store.put_value(value)
    _damage(_blob_path(store_path, digest), "flip")
    with _opened(store_path, SMALL_THRESHOLD) as store:
        store.put_value(value)
        store.commit()
        got = store.get_value(digest)
        assert got is not None
        assert bytes(got) == value


def test_a_commit_waits_for_a_batch_another_thread_is_writing(tmp_path: Path) -> None:
    """commit() with nothing staged must not return while another thread's batch is
    still being written: after it returns, every earlier put is durable."""
    with _opened(tmp_path / "store") as store:
        writing = threading.Event()
        release = threading.Event()
        real_write = store._write

        def slow_write(work: Any) -> Any:
            writing.set()
            assert release.wait(10)
            return real_write(work)

        store.put("meta", b"k", b"v")
        store._write = slow_write  # type: ignore[method-assign]
        first = threading.Thread(target=store.commit)
        first.start()
        assert writing.wait(10)  # the batch with b"k" is taken and being written
        store._write = real_write  # type: ignore[method-assign]
        returned = threading.Event()
        second = threading.Thread(target=lambda: (store.commit(), returned.set()))
        second.start()
        time.sleep(0.2)
        assert not returned.is_set(), "commit() returned before the in-flight batch was written"
        release.set()
        first.join(10)
        second.join(10)
        assert returned.is_set()
    with _opened(tmp_path / "store") as reopened:
        assert reopened.get("meta", b"k") == b"v"
