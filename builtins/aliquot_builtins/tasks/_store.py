"""Task plugins in the store: named sets of ``.py`` files, one immutable snapshot per change.

Spaces (all JSON values):

- ``tp_plugins``: plugin id (8 bytes, big-endian) -> ``{id, name, description,
  created, modified, latest_snapshot, deleted}``;
- ``tp_names``: name -> plugin id, for plugins not removed;
- ``tp_snapshots``: snapshot id -> ``{id, plugin_id, name, description, created,
  digest, parent, files: [...]}``; each file ``{id, filename, digest, size,
  description, function_tasks, artifact_tasks}``, its contents a stored value;
- ``tp_digests``: the first 16 hex digits of a snapshot digest -> snapshot id
  (how code of a snapshot is found again by its module name).

Every change -- a plugin's name or description, a file added, changed or
removed -- writes a new snapshot; snapshots are never changed or deleted, so a
run that pinned one can always load it (removing a plugin only frees its name).
Filenames are checked (identifier segments joined by ``/``, ending ``.py``; no
``..``, no absolute paths), contents must parse, and sizes are capped.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from aliquot.abc import Store

from ._analysis import analyze, explicit_artifact, explicit_function
from ._errors import TaskPluginError

SP_PLUGINS: Final = "tp_plugins"
SP_NAMES: Final = "tp_names"
SP_SNAPSHOTS: Final = "tp_snapshots"
SP_DIGESTS: Final = "tp_digests"

#: Caps that keep one plugin from filling the store by mistake (or on purpose).
MAX_FILE_BYTES: Final = 1 << 20
MAX_FILES: Final = 512
MAX_TOTAL_BYTES: Final = 16 << 20
#: Longest plugin name or filename part (materialised paths must fit the filesystem).
MAX_NAME: Final = 100

_FILENAME: Final = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*/)*[A-Za-z_][A-Za-z0-9_]*\.py$")
_ID: Final = struct.Struct(">Q")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_plugin_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise TaskPluginError(
            f"task plugin name {name!r} is not a valid Python identifier "
            "(letters, digits and underscores, not starting with a digit)"
        )
    if name == "builtin":
        raise TaskPluginError("task plugin name 'builtin' is reserved for the builtin tasks")
    if len(name) > MAX_NAME:
        raise TaskPluginError(f"task plugin name {name[:20]!r}... is over {MAX_NAME} characters")
    return name


def check_filename(filename: Any) -> str:
    """A safe, importable relative path, or :class:`TaskPluginError` saying why not."""
    if not isinstance(filename, str) or not filename:
        raise TaskPluginError(f"filename {filename!r} is empty or not a string")
    if filename.startswith(("/", "\\")) or (len(filename) > 1 and filename[1] == ":"):
        raise TaskPluginError(f"filename {filename!r} is absolute; give a path inside the plugin")
    parts = filename.replace("\\", "/").split("/")
    if ".." in parts or "." in parts:
        raise TaskPluginError(f"filename {filename!r} leaves the plugin ('..' or '.' in the path)")
    if "\\" in filename:
        raise TaskPluginError(f"filename {filename!r} uses '\\'; separate directories with '/'")
    if len(filename) > 4 * MAX_NAME or any(len(p) > MAX_NAME for p in parts):
        raise TaskPluginError(
            f"filename {filename[:40]!r}... is too long ({MAX_NAME} characters per part)"
        )
    if "__pycache__" in parts:
        raise TaskPluginError(f"filename {filename!r} is inside __pycache__")
    if not filename.endswith(".py"):
        raise TaskPluginError(f"filename {filename!r} is not a .py file")
    if not _FILENAME.match(filename) or any(
        keyword.iskeyword(p.removesuffix(".py")) for p in parts
    ):
        raise TaskPluginError(
            f"filename {filename!r} is not importable: every part must be a Python identifier "
            "(e.g. 'tasks.py', 'sub/models.py')"
        )
    return filename


def module_path(filename: str) -> str:
    """``tasks.py`` -> ``tasks``; ``sub/m.py`` -> ``sub.m``; ``__init__.py`` -> ``""``."""
    parts = filename.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def qualified(plugin: str, filename: str, name: str) -> str:
    path = module_path(filename)
    return f"{plugin}.{path}.{name}" if path else f"{plugin}.{name}"


def _decode(data: bytes | memoryview | None) -> dict[str, Any] | None:
    if data is None:
        return None
    value = orjson.loads(bytes(data))
    return value if isinstance(value, dict) else None


class TaskPluginStore:
    """Task plugins and their snapshots in one aliquot store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------ reading

    def plugins(self, include_removed: bool = False) -> list[dict[str, Any]]:
        out = []
        for _key, raw in self.store.scan(SP_PLUGINS):
            plugin = orjson.loads(bytes(raw))
            if include_removed or not plugin.get("deleted"):
                out.append(plugin)
        return out

    def plugin(self, ref: int | str) -> dict[str, Any]:
        """A plugin by id or by name (an id as text works too)."""
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        if isinstance(ref, int) and not isinstance(ref, bool):
            found = _decode(self.store.get(SP_PLUGINS, _ID.pack(ref)))
            if found is None:
                raise TaskPluginError(f"no task plugin has id {ref}")
            return found
        if isinstance(ref, str):
            raw = self.store.get(SP_NAMES, ref.encode())
            if raw is None:
                names = sorted(p["name"] for p in self.plugins())
                raise TaskPluginError(
                    f"no task plugin is named {ref!r}"
                    + (f" (task plugins: {', '.join(names)})" if names else " (there are none)")
                )
            return self.plugin(_ID.unpack(bytes(raw))[0])
        raise TaskPluginError(f"a task plugin is named by its id or name, not {ref!r}")

    def snapshot(self, snapshot_id: int | str) -> dict[str, Any]:
        try:
            number = int(snapshot_id)
        except (TypeError, ValueError):
            raise TaskPluginError(f"snapshot id {snapshot_id!r} is not a number") from None
        found = _decode(self.store.get(SP_SNAPSHOTS, _ID.pack(number)))
        if found is None:
            raise TaskPluginError(f"no task plugin snapshot has id {number}")
        return found

    def snapshots(self, ref: int | str) -> list[dict[str, Any]]:
        plugin = self.plugin(ref)
        out = []
        sid: int | None = plugin["latest_snapshot"]
        while sid is not None:
            snap = self.snapshot(sid)
            out.append(snap)
            sid = snap.get("parent")
        return out[::-1]

    def live(self, ref: int | str) -> dict[str, Any]:
        """A plugin that may be changed (not removed)."""
        plugin = self.plugin(ref)
        if plugin.get("deleted"):
            raise TaskPluginError(
                f"task plugin {plugin['name']!r} (id {plugin['id']}) was removed; its snapshots "
                "can be read but it cannot be changed"
            )
        return plugin

    def latest(self, ref: int | str) -> dict[str, Any]:
        return self.snapshot(self.plugin(ref)["latest_snapshot"])

    def snapshot_by_digest(self, prefix: str) -> dict[str, Any] | None:
        raw = self.store.get(SP_DIGESTS, prefix[:16].encode())
        return None if raw is None else self.snapshot(_ID.unpack(bytes(raw))[0])

    def contents(self, file: Mapping[str, Any]) -> str:
        data = self.store.get_value(file["digest"])
        if data is None:
            raise TaskPluginError(
                f"the contents of {file['filename']!r} are missing from the store or damaged "
                "(see `aliquot store verify`)"
            )
        return bytes(data).decode("utf-8")

    def file(self, snapshot: Mapping[str, Any], file_ref: int | str) -> dict[str, Any]:
        for file in snapshot["files"]:
            if (
                file["id"] == file_ref
                or file["filename"] == file_ref
                or str(file["id"]) == str(file_ref)
            ):
                return dict(file)
        names = ", ".join(f"{f['id']}:{f['filename']}" for f in snapshot["files"]) or "none"
        raise TaskPluginError(
            f"task plugin {snapshot['name']!r} has no file {file_ref!r} (files: {names})"
        )

    def live_values(self) -> Iterator[str]:
        """Digests of every file of every snapshot (they stay loadable)."""
        for _key, raw in self.store.scan(SP_SNAPSHOTS):
            for file in orjson.loads(bytes(raw))["files"]:
                yield file["digest"]

    # ------------------------------------------------------------ writing

    def create(self, name: Any, description: str | None = None) -> dict[str, Any]:
        return self._create(name, description, [])

    def _create(
        self, name: Any, description: str | None, files: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        name = check_plugin_name(name)
        _check_description(description)
        if self.store.get(SP_NAMES, name.encode()) is not None:
            raise TaskPluginError(f"a task plugin named {name!r} exists already")
        pid = self.store.next_sequence("tp_plugin")
        now = _now()
        plugin = {
            "id": pid,
            "name": name,
            "description": description,
            "created": now,
            "modified": now,
            "latest_snapshot": None,
            "deleted": False,
        }
        self._snapshot(plugin, files, description=description)
        self.store.put(SP_NAMES, name.encode(), _ID.pack(pid))
        self.store.commit()
        return self.plugin(pid)

    def modify(
        self, ref: int | str, name: Any = None, description: str | None = None
    ) -> dict[str, Any]:
        plugin = self.live(ref)
        latest = self.snapshot(plugin["latest_snapshot"])
        new_name = plugin["name"] if name is None else check_plugin_name(name)
        _check_description(description)
        if new_name != plugin["name"]:
            if self.store.get(SP_NAMES, new_name.encode()) is not None:
                raise TaskPluginError(f"a task plugin named {new_name!r} exists already")
            self.store.delete(SP_NAMES, plugin["name"].encode())
            self.store.put(SP_NAMES, new_name.encode(), _ID.pack(plugin["id"]))
            plugin["name"] = new_name
        if description is not None:
            plugin["description"] = description
        self._snapshot(plugin, latest["files"], description=plugin["description"])
        self.store.commit()
        return self.plugin(plugin["id"])

    def remove(self, ref: int | str) -> dict[str, Any]:
        plugin = self.live(ref)
        plugin["deleted"] = True
        plugin["modified"] = _now()
        self.store.delete(SP_NAMES, plugin["name"].encode())
        self.store.put(SP_PLUGINS, _ID.pack(plugin["id"]), orjson.dumps(plugin))
        self.store.commit()
        return plugin

    def add_file(
        self,
        ref: int | str,
        filename: Any,
        contents: Any,
        function_tasks: Sequence[Mapping[str, Any]] | None = None,
        artifact_tasks: Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        plugin = self.live(ref)
        files = list(self.snapshot(plugin["latest_snapshot"])["files"])
        filename = check_filename(filename)
        if any(f["filename"] == filename for f in files):
            raise TaskPluginError(
                f"task plugin {plugin['name']!r} has a file {filename!r} already; modify it "
                "(files.modify_by_id / add-file --replace)"
            )
        entry = self._file_entry(
            plugin["name"], None, filename, contents, function_tasks, artifact_tasks, description
        )
        files.append(entry)
        self._snapshot(plugin, files, description=plugin["description"])
        self.store.commit()
        return entry

    def modify_file(
        self,
        ref: int | str,
        file_ref: int | str,
        filename: Any,
        contents: Any,
        function_tasks: Sequence[Mapping[str, Any]] | None = None,
        artifact_tasks: Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        plugin = self.live(ref)
        snap = self.snapshot(plugin["latest_snapshot"])
        old = self.file(snap, file_ref)
        filename = check_filename(filename)
        if filename != old["filename"] and any(f["filename"] == filename for f in snap["files"]):
            raise TaskPluginError(f"task plugin {plugin['name']!r} has a file {filename!r} already")
        entry = self._file_entry(
            plugin["name"],
            old["id"],
            filename,
            contents,
            function_tasks,
            artifact_tasks,
            description,
        )
        files = [entry if f["id"] == old["id"] else f for f in snap["files"]]
        self._snapshot(plugin, files, description=plugin["description"])
        self.store.commit()
        return entry

    def remove_file(self, ref: int | str, file_ref: int | str) -> dict[str, Any]:
        plugin = self.live(ref)
        snap = self.snapshot(plugin["latest_snapshot"])
        old = self.file(snap, file_ref)
        files = [f for f in snap["files"] if f["id"] != old["id"]]
        self._snapshot(plugin, files, description=plugin["description"])
        self.store.commit()
        return old

    def import_files(
        self,
        name: Any,
        files: Mapping[str, str],
        description: str | None = None,
        *,
        replace: bool = False,
    ) -> dict[str, Any]:
        """A whole plugin at once: one snapshot holding exactly ``files`` (every task
        derived from the code). With ``replace``, an existing plugin of that name gets
        the new file set as its next snapshot."""
        name = check_plugin_name(name)
        if not files:
            raise TaskPluginError(f"task plugin {name!r}: nothing to import (no .py files)")
        exists = self.store.get(SP_NAMES, name.encode()) is not None
        if exists and not replace:
            raise TaskPluginError(
                f"a task plugin named {name!r} exists already; import with --replace to give "
                "it these files as a new snapshot"
            )
        entries = [
            self._file_entry(name, None, check_filename(fn), text, None, None, None)
            for fn, text in sorted(files.items())
        ]
        if exists:
            plugin = self.plugin(name)
            old_ids = {f["filename"]: f["id"] for f in self.latest(name)["files"]}
            for entry in entries:
                if entry["filename"] in old_ids:
                    entry["id"] = old_ids[entry["filename"]]
            if description is not None:
                plugin["description"] = description
            self._snapshot(plugin, entries, description=plugin["description"])
            self.store.commit()
            return self.plugin(plugin["id"])
        return self._create(name, description, entries)

    # ------------------------------------------------------------ internals

    def _file_entry(
        self,
        plugin: str,
        file_id: int | None,
        filename: str,
        contents: Any,
        function_tasks: Sequence[Mapping[str, Any]] | None,
        artifact_tasks: Sequence[Mapping[str, Any]] | None,
        description: str | None,
    ) -> dict[str, Any]:
        if isinstance(contents, bytes):
            try:
                contents = contents.decode("utf-8")
            except UnicodeDecodeError:
                raise TaskPluginError(f"{filename}: contents are not UTF-8 text") from None
        if not isinstance(contents, str):
            raise TaskPluginError(
                f"{filename}: contents must be text, not {type(contents).__name__}"
            )
        try:
            data = contents.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TaskPluginError(
                f"{filename}: contents are not valid text ({exc.reason})"
            ) from None
        if len(data) > MAX_FILE_BYTES:
            raise TaskPluginError(
                f"{filename}: {len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit per file"
            )
        _check_description(description)
        path = module_path(filename)
        analysis = analyze(
            contents,
            f"{plugin}/{filename}",
            f"{plugin}.{path}" if path else plugin,
            package=filename.endswith("__init__.py"),
        )
        where = f"{plugin}/{filename}"
        if function_tasks is None:
            functions = list(analysis.functions.values())
        else:
            if isinstance(function_tasks, (str, Mapping)):
                raise TaskPluginError(f"{where}: function_tasks must be a list of mappings")
            functions = [explicit_function(analysis, e, where) for e in function_tasks]
        if artifact_tasks is None:
            artifacts = list(analysis.artifacts.values())
        else:
            if isinstance(artifact_tasks, (str, Mapping)):
                raise TaskPluginError(f"{where}: artifact_tasks must be a list of mappings")
            artifacts = [explicit_artifact(analysis, e, where) for e in artifact_tasks]
        names = [f.name for f in functions] + [a.name for a in artifacts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TaskPluginError(f"{where}: task name(s) {dupes} registered twice")
        digest, size = self.store.put_value(data)
        return {
            "id": file_id if file_id is not None else self.store.next_sequence("tp_file"),
            "filename": filename,
            "digest": digest,
            "size": size,
            "description": description,
            "function_tasks": [
                {
                    "name": f.name,
                    "function": f.function,
                    "line": f.line,
                    "description": f.description,
                    "decorated": f.decorated,
                    **f.signature.to_json(),
                }
                for f in functions
            ],
            "artifact_tasks": [
                {"name": a.name, "line": a.line, "description": a.description} for a in artifacts
            ],
            "imports": list(analysis.imports),
        }

    def _snapshot(
        self, plugin: dict[str, Any], files: Sequence[Mapping[str, Any]], *, description: str | None
    ) -> dict[str, Any]:
        files = sorted(files, key=lambda f: f["filename"])
        _check_layout(plugin["name"], files)
        total = sum(int(f["size"]) for f in files)
        if len(files) > MAX_FILES or total > MAX_TOTAL_BYTES:
            raise TaskPluginError(
                f"task plugin {plugin['name']!r}: {len(files)} files, {total} bytes is over the "
                f"limits ({MAX_FILES} files, {MAX_TOTAL_BYTES} bytes)"
            )
        qualified_names: dict[str, str] = {}
        for f in files:
            for task in [*f["function_tasks"], *f["artifact_tasks"]]:
                q = qualified(plugin["name"], f["filename"], task["name"])
                if q in qualified_names:
                    raise TaskPluginError(
                        f"task plugin {plugin['name']!r}: task {q!r} is defined in both "
                        f"{qualified_names[q]} and {f['filename']}"
                    )
                qualified_names[q] = f["filename"]
        content = {
            "name": plugin["name"],
            "files": [
                {k: f[k] for k in ("filename", "digest", "function_tasks", "artifact_tasks")}
                for f in files
            ],
        }
        digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
        sid = self.store.next_sequence("tp_snapshot")
        snap = {
            "id": sid,
            "plugin_id": plugin["id"],
            "name": plugin["name"],
            "description": description,
            "created": _now(),
            "created_ns": time.time_ns(),
            "digest": digest,
            "parent": plugin.get("latest_snapshot"),
            "files": list(files),
        }
        self.store.put(SP_SNAPSHOTS, _ID.pack(sid), orjson.dumps(snap))
        if self.store.get(SP_DIGESTS, digest[:16].encode()) is None:
            self.store.put(SP_DIGESTS, digest[:16].encode(), _ID.pack(sid))
        plugin["latest_snapshot"] = sid
        plugin["modified"] = snap["created"]
        self.store.put(SP_PLUGINS, _ID.pack(plugin["id"]), orjson.dumps(plugin))
        return snap


def _check_description(description: Any) -> None:
    if description is not None and not isinstance(description, str):
        raise TaskPluginError(f"description must be text, not {type(description).__name__}")


def _check_layout(plugin: str, files: Sequence[Mapping[str, Any]]) -> None:
    """No name may be both a module (``a.py``) and a package (``a/...``)."""
    modules = {f["filename"].removesuffix(".py") for f in files}
    for f in files:
        parts = f["filename"].split("/")[:-1]
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in modules:
                raise TaskPluginError(
                    f"task plugin {plugin!r}: {prefix}.py and the directory {prefix}/ would "
                    "both be the module " + prefix.replace("/", ".")
                )
