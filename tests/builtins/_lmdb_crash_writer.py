"""Subprocess side of ``test_store_lmdb.py`` (run with the venv's python).

``python _lmdb_crash_writer.py MODE ARGS...``. The leading underscore keeps
pytest from collecting this file; the tests also import it (by path) for
:func:`commit_content`, so the writer and the checker derive the same bytes.

Modes:

``write STORE SEED THRESHOLD``
    The crash writer. Opens the store, resumes after the last committed
    sequence number (``crash/last``) and loops forever: stage the records and
    values of commit ``seq`` (see :func:`commit_content`), ``commit()``, then
    print ``ack <seq>`` and flush. A printed line is an *acknowledged* commit.
    The parent SIGKILLs it at a random moment.
``probe STORE EXPECT_JSON``
    Reads a (possibly damaged) store and prints, per expected entry, the
    SHA-256 of what it got (or ``none``); the parent compares. Runs in a
    subprocess because LMDB may crash on a structurally damaged ``data.mdb``.
``counter STORE N``
    After ``go`` on stdin, calls ``next_sequence("counter")`` N times; prints
    the values as JSON.
``puts STORE WORKER COMMITS PER_COMMIT THRESHOLD``
    After ``go`` on stdin, puts distinct keys (and a few values) and commits
    after every PER_COMMIT puts; prints its store_id and value digests as JSON.
``reader STORE``
    Opens the store, holds a read transaction, prints ``reading``, sleeps
    (the parent SIGKILLs it: a stale reader slot).
``touch STORE``
    Opens and closes the store (reader_check runs at open), prints ``ok``.
``orphan STORE THRESHOLD SIZE``
    Stages a record and a large value (its blob file renamed into place),
    prints the digest, then dies with ``os._exit`` before any commit.
``bigcommit STORE N SIZE``
    Commits N records of SIZE bytes in one commit, closes, prints ``done``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable

SPACE = "crash"
#: A writer that was never killed stops by itself (the parent died?).
WRITER_LIFETIME = 30.0


def record_key(seq: int, j: int) -> bytes:
    return b"r/%08d/%02d" % (seq, j)


def make_record(body: bytes) -> bytes:
    """A record payload that embeds its own SHA-256: ``<hex sha> <body>``."""
    return hashlib.sha256(body).hexdigest().encode() + b" " + body


def record_ok(payload: bytes) -> bool:
    digest, sep, body = payload.partition(b" ")
    return sep == b" " and hashlib.sha256(body).hexdigest().encode() == digest


def commit_content(
    seed: int, seq: int, threshold: int
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """The records and values of commit ``seq`` -- a pure function of its arguments.

    A commit lost to a kill is redone with the same bytes by the next writer,
    so the checker can recompute what any committed sequence must hold.
    """
    rng = random.Random(f"{seed}:{seq}")
    records = [
        (record_key(seq, j), make_record(rng.randbytes(rng.randint(0, 1500))))
        for j in range(rng.randint(2, 6))
    ]
    values = []
    for i in range(rng.randint(1, 3)):
        prefix = b"V%08d/%d|" % (seq, i)  # unique per value: no accidental dedupe
        if rng.random() < 0.35:
            size = rng.randint(threshold, 4 * threshold)  # a blob file
        else:
            size = rng.randint(len(prefix), threshold - 1)  # inline in LMDB
        values.append(prefix + rng.randbytes(size - len(prefix)))
    return records, values


def _open(path: str, threshold: int | None = None):  # type: ignore[no-untyped-def]
    from aliquot_builtins.store_lmdb import LmdbStore

    if threshold is None:
        return LmdbStore.open(path)
    return LmdbStore.open(path, blob_threshold=threshold)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def mode_write(path: str, seed: str, threshold: str) -> None:
    thr = int(threshold)
    store = _open(path, thr)
    last = store.get(SPACE, b"last")
    seq = int(last) if last is not None else 0
    _say(f"start {seq}")
    deadline = time.monotonic() + WRITER_LIFETIME
    while time.monotonic() < deadline:
        seq += 1
        records, values = commit_content(int(seed), seq, thr)
        for key, payload in records:
            store.put(SPACE, key, payload)
        for i, value in enumerate(values):
            if i % 2:  # also exercise the sequence-of-buffers path
                cut = len(value) // 3
                store.put_value([value[:cut], memoryview(value)[cut:]])
            else:
                store.put_value(value)
        store.put(SPACE, b"last", b"%d" % seq)
        store.commit()
        _say(f"ack {seq}")
    store.close()


def _sha(data: object) -> str:
    return "none" if data is None else hashlib.sha256(bytes(data)).hexdigest()  # type: ignore[call-overload]


def mode_probe(path: str, expect_file: str) -> None:
    with open(expect_file) as fh:
        expect = json.load(fh)
    try:
        store = _open(path)
    except Exception as exc:  # a refusal is fine; a wrong value is not
        _say(f"open-error {type(exc).__name__}")
        return
    try:
        report = store.verify()
        _say(f"verify {report['ok']} {len(report['problems'])}")
    except Exception as exc:
        _say(f"verify-error {type(exc).__name__}")
    for space, key_hex in expect["records"]:
        try:
            got = store.get(space, bytes.fromhex(key_hex))
        except Exception as exc:
            _say(f"rec {space} {key_hex} error:{type(exc).__name__}")
            continue
        _say(f"rec {space} {key_hex} {_sha(got)}")
    for digest in expect["values"]:
        try:
            got = store.get_value(digest)
        except Exception as exc:
            _say(f"val {digest} error:{type(exc).__name__}")
            continue
        _say(f"val {digest} {_sha(got)}")
    try:
        store.close()
    except Exception as exc:
        _say(f"close-error {type(exc).__name__}")
    _say("done")


def mode_counter(path: str, n: str) -> None:
    store = _open(path)
    sys.stdin.readline()  # "go"
    values = [store.next_sequence("counter") for _ in range(int(n))]
    store.close()
    _say(json.dumps(values))


def puts_value(worker: int, commit: int, j: int) -> bytes:
    return (
        b"w%d c%d j%d " % (worker, commit, j)
        + hashlib.sha256(b"%d/%d/%d" % (worker, commit, j)).digest()
    )


def mode_puts(path: str, worker: str, commits: str, per_commit: str, threshold: str) -> None:
    w, thr = int(worker), int(threshold)
    store = _open(path, thr)
    sys.stdin.readline()  # "go"
    digests = []
    for c in range(int(commits)):
        for j in range(int(per_commit)):
            store.put("conc", b"w%d/%04d/%02d" % (w, c, j), puts_value(w, c, j))
        if c % 5 == 0:  # now and then a value, alternately inline and a blob
            size = thr * 2 if c % 10 == 0 else 100
            rng = random.Random(f"{w}:{c}")
            digests.append(store.put_value(rng.randbytes(size))[0])
        store.commit()
    store_id = store.store_id
    store.close()
    _say(json.dumps({"store_id": store_id, "digests": digests}))


def mode_reader(path: str) -> None:
    store = _open(path)
    txn = store._env.begin()  # a read transaction that will never end
    txn.get(b"_meta")
    _say(f"reading {os.getpid()}")
    time.sleep(120)


def mode_touch(path: str) -> None:
    store = _open(path)
    store.close()
    _say("ok")


def mode_orphan(path: str, threshold: str, size: str) -> None:
    store = _open(path, int(threshold))
    store.put("orphan", b"k", b"staged, never committed")
    value = random.Random(7).randbytes(int(size))
    digest, _ = store.put_value(value)
    _say(digest)
    os._exit(0)  # a crash: no commit, no close


def mode_bigcommit(path: str, n: str, size: str) -> None:
    store = _open(path)
    for i in range(int(n)):
        store.put("big", b"%06d" % i, bytes([i % 251]) * int(size))
    store.commit()
    store.close()
    _say("done")


MODES: dict[str, Callable[..., None]] = {
    "write": mode_write,
    "probe": mode_probe,
    "counter": mode_counter,
    "puts": mode_puts,
    "reader": mode_reader,
    "touch": mode_touch,
    "orphan": mode_orphan,
    "bigcommit": mode_bigcommit,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
