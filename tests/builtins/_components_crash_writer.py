"""Subprocess side of ``test_components_crash.py`` (run with the venv's python).

``python _components_crash_writer.py MODE STORE ARGS...``. The leading
underscore keeps pytest from collecting this file. The component classes live
in this module under the name ``_components_crash_writer`` (the script imports
itself by that name), so the parent process, which imports this file under the
same name, can load what the writer stored.

Modes:

``crash STORE N POINT``
    Applies version ``N`` of the tree (:func:`make`) and dies with
    ``os._exit`` at ``POINT``:

    - ``staged``: every write of the apply is staged (blob files renamed into
      place, records staged), ``commit`` is entered and the process dies
      before anything reaches LMDB. Prints ``staged <pending writes>``.
    - ``in-commit``: inside the LMDB write transaction of the apply, after
      every staged write was put, before the transaction commits. Prints
      ``in-commit <writes>``.
    - ``after-commit``: right after the commit returned. Prints ``committed``.

``loop STORE START``
    Applies versions ``START``, ``START+1``, ... forever, printing ``ack <n>``
    after each apply returned. The parent SIGKILLs it.
``race STORE WORKER COUNT``
    After ``go`` on stdin, applies ``Part("r", v=WORKER * 1000 + i)`` for
    ``i < COUNT`` (each a breaking change) and prints the versions it got as
    JSON. Two of these run at once: every apply must get a version of its own.
"""

from __future__ import annotations

import os
import sys
import time
import typing as t
from pathlib import Path
from typing import Any

import numpy as np

from aliquot import Component

#: Small enough that the arrays below are blob files, not inline values.
BLOB_THRESHOLD = 4096
#: A writer that was never killed stops by itself (the parent died?).
LIFETIME = 30.0


def scale(x: float, by: float = 2.0) -> float:
    """A module-level function: a signed pickle blob, the same bytes in every version."""
    return x * by


class Part(Component):
    v: int = 0
    data: bytes = b""


class Widget(Component):
    a: int = 0
    arr: t.Any = None
    fn: t.Callable | None = None
    part: Part | None = None


def make(n: int) -> Widget:
    """Version ``n`` of the tree: every field changes with ``n`` (a breaking change)."""
    rng = np.random.default_rng(n)
    return Widget(
        "w",
        a=n,
        arr=rng.normal(size=1024),  # 8 KiB: a blob file
        fn=scale,
        part=Part("p", v=n, data=bytes(rng.integers(0, 256, size=64, dtype=np.uint8))),
    )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _kernel(path: str) -> Any:
    import aliquot

    return aliquot.Kernel.open(path, store_options={"blob_threshold": BLOB_THRESHOLD})


def mode_crash(path: str, n: str, point: str) -> None:
    kernel = _kernel(path)
    store = kernel.store
    real_commit = store.commit
    real_write = store._write

    if point == "staged":

        def commit() -> None:
            _say(f"staged {store.pending}")
            os._exit(17)

        store.commit = commit
    elif point == "in-commit":

        def write(work: Any) -> Any:
            if not getattr(work, "__qualname__", "").endswith("_commit_staged.<locals>.work"):
                return real_write(work)
            batch = len(store._committing)

            def work_then_die(txn: Any) -> Any:
                work(txn)  # every put of the apply is in the transaction...
                _say(f"in-commit {batch}")
                os._exit(17)  # ...which never commits

            return real_write(work_then_die)

        store._write = write
    elif point == "after-commit":

        def commit() -> None:
            real_commit()
            _say("committed")
            os._exit(17)

        store.commit = commit
    else:
        raise SystemExit(f"unknown crash point {point!r}")
    kernel.apply(make(int(n)), jobs=False)
    _say("not reached")
    os._exit(3)


def mode_loop(path: str, start: str) -> None:
    kernel = _kernel(path)
    deadline = time.monotonic() + LIFETIME
    n = int(start)
    while time.monotonic() < deadline:
        applied = kernel.apply(make(n), jobs=False)
        _say(f"ack {n} {applied.version}")
        n += 1
    kernel.close()


def mode_race(path: str, worker: str, count: str) -> None:
    import json

    kernel = _kernel(path)
    sys.stdin.readline()  # "go"
    got = []
    for i in range(int(count)):
        applied = kernel.apply(Part("r", v=int(worker) * 1000 + i), jobs=False)
        got.append([applied.action, applied.version])
    kernel.close()
    _say(json.dumps(got))


MODES = {"crash": mode_crash, "loop": mode_loop, "race": mode_race}

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import _components_crash_writer as this  # the classes under their importable name

    this.MODES[sys.argv[1]](*sys.argv[2:])
