"""Values: storing and loading a 100 MB numpy array and 100,000-entry dicts.

    /work/venv/bin/python tests/bench/bench_values.py [--quick] [--json] [--profile] [--dir DIR]

* numpy: a float64 array of exactly 100,000,000 bytes (MB = 10^6 bytes
  throughout). Store = ``kernel.values.save(array)`` + ``kernel.store.commit()``
  on an LMDB kernel in a temporary directory (``--dir``, default the system
  temporary directory; the report names the path and its filesystem). Every
  sample stores a *different* array (one element changed, untimed), so the
  content-addressed store never deduplicates. Load = ``kernel.values.load(ref)``:
  "cold" is the first load of that value in this process (the file is still
  in the OS page cache, having just been written), "warm" loads the same
  value again; "page cache dropped" (information) evicts the blob file with
  ``posix_fadvise(DONTNEED)`` first. Baseline: ``np.save`` + fsync and
  ``np.load`` of the same array in the same directory. The memory store is
  shown for information.
* dicts of 100,000 small entries, three shapes. Store = ``kernel.values.save``
  (serialize + ``store.put_value``), on the memory store and on the LMDB
  store separately (the LMDB commit is shown apart, for information); load =
  ``kernel.values.load`` (``get_value`` + deserialize). Baseline: orjson.dumps /
  orjson.loads alone on the same dict, measured round-robin with aliquot.

Targets (from the issue): array store >= 1,000 MB/s, load >= 2,000 MB/s;
dict store <= 25 ms, load <= 75 ms.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Report,
    Row,
    Stats,
    filesystem_of,
    parse_args,
    profile,
    progress,
    reps,
    time_once,
)

ARRAY_BYTES = 100_000_000
MB = 1e6
TARGET_STORE_MBS = 1000.0
TARGET_LOAD_MBS = 2000.0
TARGET_DICT_STORE_MS = 25.0
TARGET_DICT_LOAD_MS = 75.0
N_ENTRIES = 100_000


def make_kernel(store: str) -> Any:
    from aliquot.testing import make_kernel as _make_kernel

    return _make_kernel(store=store)


def drop_page_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


# --------------------------------------------------------------------------- numpy


def bench_array(report: Report, root: str, repeat: int) -> Callable[[], None]:
    import numpy as np

    progress(f"[values] numpy: {ARRAY_BYTES / MB:.0f} MB float64 array, {repeat} samples...")
    array = np.random.default_rng(0).random(ARRAY_BYTES // 8)
    assert array.nbytes == ARRAY_BYTES
    kernel = make_kernel(os.path.join(root, "lmdb-array"))
    mem = make_kernel("memory://")
    save_s, commit_s, both_s = [], [], []
    refs = []
    npsave_s, npload_s = [], []
    baseline = Path(root) / "baseline.npy"
    for i in range(repeat + 1):  # sample 0 is a warm-up
        array[0] = i + 0.5  # a new value each time: no deduplication
        gc.collect()
        t0 = time.perf_counter()
        ref = kernel.values.save(array)
        t1 = time.perf_counter()
        kernel.store.commit()
        t2 = time.perf_counter()
        refs.append((ref, i + 0.5))

        def np_save() -> None:
            with open(baseline, "wb") as fh:
                np.save(fh, array)
                fh.flush()
                os.fsync(fh.fileno())

        np_t, _ = time_once(np_save)
        np_l, loaded = time_once(lambda: np.load(baseline))
        assert loaded[0] == i + 0.5
        del loaded
        if i:
            save_s.append(t1 - t0)
            commit_s.append(t2 - t1)
            both_s.append(t2 - t0)
            npsave_s.append(np_t)
            npload_s.append(np_l)

    def load(ref: Any) -> Any:
        return kernel.values.load(ref)

    cold_s = []
    for ref, first in refs[1:]:  # each value is loaded for the first time here
        elapsed, loaded = time_once(lambda ref=ref: load(ref))
        if loaded.shape != array.shape or loaded[0] != first or loaded[-1] != array[-1]:
            raise SystemExit("loaded array differs from the stored one")
        del loaded
        cold_s.append(elapsed)
    last_ref, last_first = refs[-1]
    check = load(last_ref)
    array[0] = last_first
    if not np.array_equal(check, array):
        raise SystemExit("loaded array differs from the stored one")
    del check
    warm = Stats([time_once(lambda: load(last_ref))[0] for _ in range(repeat)])

    dropped: list[float] = []
    blob = kernel.store.root / "blobs" / last_ref.digest[:2] / last_ref.digest
    for _ in range(repeat):
        if not blob.exists() or not drop_page_cache(blob):
            break
        dropped.append(time_once(lambda: load(last_ref))[0])

    mem_save = Stats([time_once(lambda: mem.values.save(array))[0] for _ in range(min(repeat, 3))])
    mem_ref = mem.values.save(array)
    mem_load = Stats(
        [time_once(lambda: mem.values.load(mem_ref))[0] for _ in range(min(repeat, 3))]
    )
    kernel.close()
    mem.close()

    sec = (
        f"numpy float64 array, {ARRAY_BYTES / MB:.0f} MB, LMDB store in {root} "
        f"[{filesystem_of(root)}]"
    )

    def mbs(stats: Stats) -> float:
        return ARRAY_BYTES / MB / stats.median

    st_both, st_save, st_commit = Stats(both_s), Stats(save_s), Stats(commit_s)
    st_cold, st_np_save, st_np_load = Stats(cold_s), Stats(npsave_s), Stats(npload_s)
    report.add(
        Row(
            sec,
            "store: values.save + store.commit",
            mbs(st_both),
            "MB/s",
            st_both,
            peer=mbs(st_np_save),
            peer_label="np.save + fsync, same dir",
            peer_stats=st_np_save,
            target=f">= {TARGET_STORE_MBS:,.0f} MB/s",
            ok=mbs(st_both) >= TARGET_STORE_MBS,
            note=f"median {st_both.median * 1e3:.0f} ms = save {st_save.median * 1e3:.0f} ms"
            f" + commit {st_commit.median * 1e3:.1f} ms",
        )
    )
    report.add(
        Row(sec, "store: values.save only (blob written + fsynced)", mbs(st_save), "MB/s", st_save)
    )
    report.add(
        Row(
            sec,
            "load cold (first load of the value in this process)",
            mbs(st_cold),
            "MB/s",
            st_cold,
            peer=mbs(st_np_load),
            peer_label="np.load (reads into memory)",
            peer_stats=st_np_load,
            target=f">= {TARGET_LOAD_MBS:,.0f} MB/s",
            ok=mbs(st_cold) >= TARGET_LOAD_MBS,
            note=f"median {st_cold.median * 1e3:.1f} ms; the blob is still in the OS page "
            "cache (it was just written)",
        )
    )
    report.add(
        Row(
            sec,
            "load warm (same value again)",
            mbs(warm),
            "MB/s",
            warm,
            peer=mbs(st_np_load),
            peer_label="np.load",
            peer_stats=st_np_load,
            target=f">= {TARGET_LOAD_MBS:,.0f} MB/s",
            ok=mbs(warm) >= TARGET_LOAD_MBS,
            note=f"median {warm.median * 1e3:.1f} ms",
        )
    )
    if dropped:
        st_drop = Stats(dropped)
        report.add(
            Row(
                sec,
                "load, page cache dropped (posix_fadvise DONTNEED)",
                mbs(st_drop),
                "MB/s",
                st_drop,
                note="information: the virtual disk may cache below the OS",
            )
        )
    report.add(Row(sec, "memory store: values.save", mbs(mem_save), "MB/s", mem_save))
    report.add(Row(sec, "memory store: values.load", mbs(mem_load), "MB/s", mem_load))

    def prof_save() -> None:
        k = make_kernel(os.path.join(root, "lmdb-array-profile"))
        array[0] = -1.0
        ref = k.values.save(array)
        k.store.commit()
        k.values.load(ref)
        k.close()

    return prof_save


# --------------------------------------------------------------------------- dicts


def dict_shapes() -> dict[str, tuple[dict[str, Any], Callable[[dict[str, Any], int], None]]]:
    """label -> (dict, mutate(d, i)); mutate makes each stored sample a new value.

    The label's first word is the shape's short name used in row labels.
    """
    records = {f"key-{i}": {"id": i, "name": f"n{i}", "ok": True} for i in range(N_ENTRIES)}
    floats = {f"key-{i}": i * 0.5 for i in range(N_ENTRIES)}
    lists = {f"key-{i}": [i, i + 1, f"s{i}"] for i in range(N_ENTRIES)}

    def m_records(d: dict[str, Any], i: int) -> None:
        d["key-0"] = {"id": -i, "name": "n0", "ok": True}

    def m_floats(d: dict[str, Any], i: int) -> None:
        d["key-0"] = -i - 0.25

    def m_lists(d: dict[str, Any], i: int) -> None:
        d["key-0"] = [-i, 1, "s0"]

    return {
        'records {"key-i": {"id": i, "name": "n<i>", "ok": True}}': (records, m_records),
        'floats {"key-i": i * 0.5}': (floats, m_floats),
        'lists {"key-i": [i, i + 1, "s<i>"]}': (lists, m_lists),
    }


def bench_dicts(
    report: Report, root: str, repeat: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    import orjson

    mem = make_kernel("memory://")
    lmdb = make_kernel(os.path.join(root, "lmdb-dicts"))
    profiles: list[Callable[[], Any]] = []
    for shape, (value, mutate) in dict_shapes().items():
        short = shape.split()[0]
        progress(f"[values] dict {shape}: {repeat} samples...")
        names = [
            "orjson.dumps",
            "orjson.loads",
            "mem save",
            "mem load",
            "lmdb save",
            "lmdb commit",
            "lmdb load",
            "orjson.loads gc off",
            "mem load gc off",
        ]
        samples: dict[str, list[float]] = {k: [] for k in names}
        sizes = set()
        for i in range(repeat + 1):  # sample 0 is a warm-up
            mutate(value, i)
            t_dumps, blob = time_once(lambda value=value: orjson.dumps(value))
            t_mem_save, mem_ref = time_once(lambda value=value: mem.values.save(value))
            t_lmdb_save, lmdb_ref = time_once(lambda value=value: lmdb.values.save(value))
            t_commit, _ = time_once(lmdb.store.commit)
            t_loads, back = time_once(lambda blob=blob: orjson.loads(blob))
            del back
            t_mem_load, mem_back = time_once(lambda ref=mem_ref: mem.values.load(ref))
            ok = mem_back == value
            del mem_back
            t_lmdb_load, lmdb_back = time_once(lambda ref=lmdb_ref: lmdb.values.load(ref))
            ok = ok and lmdb_back == value
            del lmdb_back
            if not ok:
                raise SystemExit(f"a loaded dict differs from the stored one ({shape})")
            t_loads_off, back = time_once(lambda blob=blob: orjson.loads(blob), gc_off=True)
            del back
            t_mem_off, back = time_once(lambda ref=mem_ref: mem.values.load(ref), gc_off=True)
            del back
            sizes.add((len(blob), mem_ref.size, mem_ref.serializer))
            if i:
                for name, t in zip(
                    names,
                    (
                        t_dumps,
                        t_loads,
                        t_mem_save,
                        t_mem_load,
                        t_lmdb_save,
                        t_commit,
                        t_lmdb_load,
                        t_loads_off,
                        t_mem_off,
                    ),
                    strict=True,
                ):
                    samples[name].append(t)
        st = {k: Stats(v) for k, v in samples.items()}
        ms = {k: s.median * 1e3 for k, s in st.items()}
        json_bytes, stored_bytes, serializer = sorted(sizes)[-1]
        sec = (
            f"dict of {N_ENTRIES:,} entries {shape} -- orjson {json_bytes / MB:.1f} MB, "
            f"stored {stored_bytes / MB:.1f} MB via {serializer!r}"
        )
        for store in ("mem", "lmdb"):
            label = f"{short}: " + ("memory store" if store == "mem" else "LMDB store")
            report.add(
                Row(
                    sec,
                    f"{label}: store (values.save)",
                    ms[f"{store} save"],
                    "ms",
                    st[f"{store} save"],
                    1e3,
                    peer=ms["orjson.dumps"],
                    peer_label="orjson.dumps alone",
                    peer_stats=st["orjson.dumps"],
                    target=f"<= {TARGET_DICT_STORE_MS:g} ms",
                    ok=ms[f"{store} save"] <= TARGET_DICT_STORE_MS,
                )
            )
            report.add(
                Row(
                    sec,
                    f"{label}: load (values.load)",
                    ms[f"{store} load"],
                    "ms",
                    st[f"{store} load"],
                    1e3,
                    peer=ms["orjson.loads"],
                    peer_label="orjson.loads alone",
                    peer_stats=st["orjson.loads"],
                    target=f"<= {TARGET_DICT_LOAD_MS:g} ms",
                    ok=ms[f"{store} load"] <= TARGET_DICT_LOAD_MS,
                )
            )
        report.add(
            Row(
                sec,
                f"{short}: LMDB store: commit after the save (information)",
                ms["lmdb commit"],
                "ms",
                st["lmdb commit"],
                1e3,
            )
        )
        report.add(
            Row(
                sec,
                f"{short}: memory store: load, gc off in the timed region (information)",
                ms["mem load gc off"],
                "ms",
                st["mem load gc off"],
                1e3,
                peer=ms["orjson.loads gc off"],
                peer_label="orjson.loads alone, gc off",
                peer_stats=st["orjson.loads gc off"],
            )
        )

        def prof(value: dict[str, Any] = value) -> None:
            ref = mem.values.save(value)
            mem.values.load(ref)
            ref = lmdb.values.save(value)
            lmdb.values.load(ref)

        profiles.append(prof)

    def profile_all() -> None:
        for fn in profiles:
            fn()

    def close() -> None:
        mem.close()
        lmdb.close()

    return profile_all, close


# --------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        configure=lambda p: p.add_argument(
            "--dir",
            default=None,
            help="where to make the LMDB stores (default: the system tmp dir)",
        ),
    )
    report = Report("bench_values: storing and loading values", args.quick)
    root = tempfile.mkdtemp(prefix="aliquot-bench-values-", dir=args.dir)
    try:
        array_prof = bench_array(report, root, reps(args, full=7, quick=2))
        dict_prof, close = bench_dicts(report, root, reps(args, full=15, quick=3))
        if args.profile:
            profile("numpy: save + commit + load (LMDB)", array_prof)
            profile("dicts: save + load, memory and LMDB, every shape", dict_prof)
        close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.note(
        "MB = 10^6 bytes; a gc.collect() runs before every sample (untimed), the "
        "collector stays enabled while timing; store directories are deleted at exit"
    )
    return report.finish(args)


if __name__ == "__main__":
    sys.exit(main())
