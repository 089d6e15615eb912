"""Finding task-plugin packages by module name, in any process with an open store.

``aliquot_tp_<plugin>_<digest>`` names pin a snapshot; this meta-path finder
materialises such a package from the stores of the kernels opened in this
process (see :mod:`._loading`), so a stored value whose class lives in a task
plugin loads in a new process. Kept apart so that loading the plugin costs
nothing until a store actually holds task plugins.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Final

from aliquot.abc import Store

PREFIX: Final = "aliquot_tp_"
_LOCK = threading.Lock()
#: Stores of open kernels (weak: a closed kernel drops out).
_STORES: weakref.WeakSet[Any] = weakref.WeakSet()
_INSTALLED = False


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PREFIX) or "." in fullname:
            return None
        digest = fullname.rpartition("_")[2]
        if len(digest) != 16:
            return None
        from ._loading import materialize, package_name
        from ._store import TaskPluginStore

        for store in list(_STORES):
            try:
                tps = TaskPluginStore(store)
                snapshot = tps.snapshot_by_digest(digest)
            except Exception:
                continue
            if snapshot is None or package_name(snapshot) != fullname:
                continue
            folder = materialize(tps, snapshot)
            return importlib.machinery.PathFinder.find_spec(fullname, [str(folder.parent)])
        return None


def watch_store(store: Store) -> None:
    """Let the finder materialise packages from ``store`` (cheap: no I/O)."""
    global _INSTALLED
    _STORES.add(store)
    if not _INSTALLED:
        with _LOCK:
            if not _INSTALLED:
                sys.meta_path.append(_Finder())
                _INSTALLED = True
