"""Running a task plugin's code: materialise a snapshot, import it, find its tasks.

A snapshot's files are written (once per process) into a private directory
(mode 0700) under a per-process root, as the package
``aliquot_tp_<plugin>_<first 16 hex digits of the snapshot digest>``. Two
snapshots of one plugin are two packages, so they never collide, and a module
name pins its code. The root is put on ``sys.path`` (worker processes started
afterwards inherit it), and a meta-path finder materialises a package on
demand from any open store -- so a value whose class lives in a task plugin
loads in a new process too.

An exception raised while the code is imported becomes
:class:`TaskPluginImportError` naming the plugin, the file and the line.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from aliquot import TaskOptions, TaskSpec, task_spec_of

from ._catalog import Catalog, TaskInfo
from ._errors import TaskPluginError, TaskPluginImportError
from ._finder import PREFIX
from ._register import Signature, make_task_spec
from ._store import TaskPluginStore, module_path, qualified

_LOCK = threading.RLock()
_ROOT: Path | None = None


def package_name(snapshot: Mapping[str, Any]) -> str:
    return f"{PREFIX}{snapshot['name']}_{snapshot['digest'][:16]}"


def _root() -> Path:
    global _ROOT
    with _LOCK:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="aliquot-taskplugins-"))
            os.chmod(_ROOT, 0o700)
            atexit.register(shutil.rmtree, _ROOT, True)
            sys.path.append(str(_ROOT))
            importlib.invalidate_caches()
        return _ROOT


def materialize(tps: TaskPluginStore, snapshot: Mapping[str, Any]) -> Path:
    """The directory holding the snapshot's package (written on first use)."""
    name = package_name(snapshot)
    with _LOCK:
        target = _root() / name
        if target.exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_root()))
        try:
            for file in snapshot["files"]:
                text = tps.contents(file)
                path = staging.joinpath(*file["filename"].split("/"))
                if not path.resolve().is_relative_to(staging.resolve()):
                    raise TaskPluginError(
                        f"refusing to write {file['filename']!r} outside the plugin"
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "x", encoding="utf-8") as out:
                    out.write(text)
            for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
                init = folder / "__init__.py"
                if not init.exists():
                    init.write_text("", encoding="utf-8")
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        importlib.invalidate_caches()
        return target


def import_file(tps: TaskPluginStore, snapshot: Mapping[str, Any], filename: str) -> ModuleType:
    """Import one file of a snapshot (materialising it first)."""
    folder = materialize(tps, snapshot)
    package = package_name(snapshot)
    path = module_path(filename)
    name = f"{package}.{path}" if path else package
    try:
        return importlib.import_module(name)
    except TaskPluginImportError:
        raise
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, SystemExit):
            raise
        raise TaskPluginImportError(_import_failure(snapshot, folder, filename, exc)) from exc


def _import_failure(
    snapshot: Mapping[str, Any], folder: Path, filename: str, exc: BaseException
) -> str:
    where = f"{snapshot['name']}/{filename}"
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename:
        rel = _relative(folder, exc.filename)
        if rel is not None:
            where, line = f"{snapshot['name']}/{rel}", exc.lineno
    else:
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            rel = _relative(folder, frame.filename)
            if rel is not None:
                where, line = f"{snapshot['name']}/{rel}", frame.lineno
                break
    at = f"{where}:{line}" if line else where
    return (
        f"task plugin {snapshot['name']!r} (snapshot {snapshot['id']}): importing {filename} "
        f"failed at {at}: {type(exc).__name__}: {exc}"
    )


def _relative(folder: Path, filename: str) -> str | None:
    try:
        return Path(filename).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def load_function(
    tps: TaskPluginStore,
    snapshot: Mapping[str, Any],
    file: Mapping[str, Any],
    task: Mapping[str, Any],
) -> TaskSpec:
    module = import_file(tps, snapshot, file["filename"])
    fn = getattr(module, task["function"], None)
    name = qualified(snapshot["name"], file["filename"], task["name"])
    if not callable(fn):
        raise TaskPluginError(
            f"task {name!r}: {file['filename']} defines no function {task['function']!r} "
            "when imported"
        )
    decorated = task_spec_of(fn)
    options = decorated.options if decorated is not None else TaskOptions()
    # Types named after the plugin's own classes (hello_world.tasks.Box) become the live
    # module's names, so values are checked against the imported classes.
    prefix, live = f"{snapshot['name']}.", f"{package_name(snapshot)}."
    signature = Signature.from_json(task).renamed(
        lambda n: live + n[len(prefix) :] if n.startswith(prefix) else n
    )
    return make_task_spec(
        fn,
        signature,
        name=name,
        options=options,
        # The code the task can reach pins it: it replaces the source fingerprint.
        version=code_version(snapshot, file, task),
        description=task.get("description"),
        origin=_origin(snapshot),
    )


def code_version(
    snapshot: Mapping[str, Any], file: Mapping[str, Any], task: Mapping[str, Any]
) -> str:
    """A digest of what a task's result can depend on in its plugin: its registration,
    its file, the plugin files that file imports (transitively), and the ``__init__.py``
    of every package on their way. Other files of the snapshot may change freely."""
    by_module = {}
    for f in snapshot["files"]:
        path = module_path(f["filename"])
        by_module[f"{snapshot['name']}.{path}" if path else snapshot["name"]] = f
    if any("imports" not in f for f in snapshot["files"]):
        reached = {f["filename"]: f for f in snapshot["files"]}  # no import data: all of it
    else:
        reached = {}
        stack = [dict(file)]
        while stack:
            current = stack.pop()
            if current["filename"] in reached:
                continue
            reached[current["filename"]] = current
            parts = current["filename"].split("/")[:-1]
            packages = [".".join([snapshot["name"], *parts[:i]]) for i in range(len(parts) + 1)]
            for name in [*packages, *current.get("imports", ())]:
                found = by_module.get(name)
                if found is not None and found["filename"] not in reached:
                    stack.append(found)
    material = {
        "task": {k: v for k, v in task.items() if k not in ("line", "description")},
        "file": file["filename"],
        "code": sorted((f["filename"], f["digest"]) for f in reached.values()),
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"taskplugin:{snapshot['name']}:{digest}"


def load_artifact(
    tps: TaskPluginStore,
    snapshot: Mapping[str, Any],
    file: Mapping[str, Any],
    task: Mapping[str, Any],
) -> type:
    module = import_file(tps, snapshot, file["filename"])
    cls = getattr(module, task["name"], None)
    if not isinstance(cls, type):
        raise TaskPluginError(
            f"artifact task {qualified(snapshot['name'], file['filename'], task['name'])!r}: "
            f"{file['filename']} defines no class {task['name']!r} when imported"
        )
    return cls


def _origin(snapshot: Mapping[str, Any]) -> str:
    return f"task plugin {snapshot['name']} (snapshot {snapshot['id']})"


def snapshot_infos(tps: TaskPluginStore, snapshot: Mapping[str, Any]) -> list[TaskInfo]:
    """Catalog entries for every task of a snapshot (nothing is imported)."""
    infos = []
    for file in snapshot["files"]:
        for task in file["function_tasks"]:
            infos.append(
                TaskInfo(
                    name=qualified(snapshot["name"], file["filename"], task["name"]),
                    kind="function",
                    loader=_Loader(load_function, tps, snapshot, file, task),
                    signature=Signature.from_json(task),
                    origin=_origin(snapshot),
                    description=task.get("description"),
                    plugin=snapshot["name"],
                    snapshot=snapshot["id"],
                )
            )
        for task in file["artifact_tasks"]:
            infos.append(
                TaskInfo(
                    name=qualified(snapshot["name"], file["filename"], task["name"]),
                    kind="artifact",
                    loader=_Loader(load_artifact, tps, snapshot, file, task),
                    origin=_origin(snapshot),
                    description=task.get("description"),
                    plugin=snapshot["name"],
                    snapshot=snapshot["id"],
                )
            )
    return infos


class _Loader:
    """Loads a task once (the catalog may be asked many times)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._fn = fn
        self._args = args
        self._done: Any = None

    def __call__(self) -> Any:
        if self._done is None:
            self._done = self._fn(*self._args)
        return self._done


def catalog_for(kernel: Any, plugins: Sequence[str] | Mapping[str, Any] | None = None) -> Catalog:
    """The tasks a graph run by ``kernel`` can name.

    The builtin artifact tasks, plus task plugins in the store: all of them at
    their latest snapshots, or only those ``plugins`` names (``"name"`` or
    ``"name@SNAPSHOT_ID"``; a mapping name -> snapshot id or None).
    """
    tps = TaskPluginStore(kernel.store)
    catalog = Catalog()
    catalog.add_builtins()
    wanted: dict[str, int | None]
    if plugins is None:
        wanted = {p["name"]: None for p in tps.plugins()}
    elif isinstance(plugins, Mapping):
        wanted = {str(k): (None if v is None else int(v)) for k, v in plugins.items()}
    else:
        wanted = {}
        for item in plugins:
            plugin_name, _, number = str(item).partition("@")
            if number and not number.isdigit():
                raise TaskPluginError(f"{item!r}: expected NAME or NAME@SNAPSHOT_ID")
            wanted[plugin_name] = int(number) if number else None
    for name, sid in wanted.items():
        if sid is None:
            snapshot = tps.latest(name)
        else:
            snapshot = tps.snapshot(sid)
            if snapshot["name"] != name and tps.plugin(snapshot["plugin_id"])["name"] != name:
                raise TaskPluginError(
                    f"snapshot {sid} belongs to task plugin {snapshot['name']!r}, not {name!r}"
                )
        catalog.snapshots[name] = {
            "id": snapshot["id"],
            "digest": snapshot["digest"],
            "plugin_id": snapshot["plugin_id"],
        }
        for info in snapshot_infos(tps, snapshot):
            catalog.add(info)
    return catalog
