"""The task-plugin API as requests: ``(method, path, body) -> JSON``.

This is the one implementation behind the Python :class:`~._client.Client`,
the CLI, and (in a later plugin) the REST API: the client sends these requests
to a local store in-process, or over HTTP to a server that answers them with
this same code. Paths and bodies are listed in ``spec/tasks.md``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._analysis import analyze
from ._catalog import TaskInfo
from ._errors import TaskPluginError
from ._loading import catalog_for
from ._store import TaskPluginStore

Handler = Callable[..., Any]


def plugin_payload(tps: TaskPluginStore, plugin: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(plugin)
    sid = plugin.get("latest_snapshot")
    if sid is not None:
        snap = tps.snapshot(sid)
        out["latest_snapshot"] = {
            "id": snap["id"],
            "digest": snap["digest"],
            "created": snap["created"],
        }
        out["files"] = [file_payload(f, snap["name"]) for f in snap["files"]]
    else:
        out["files"] = []
    return out


def file_payload(file: Mapping[str, Any], plugin: str) -> dict[str, Any]:
    from ._store import qualified

    out = {k: file[k] for k in ("id", "filename", "digest", "size", "description")}
    out["function_tasks"] = [
        {**t, "qualified_name": qualified(plugin, file["filename"], t["name"])}
        for t in file["function_tasks"]
    ]
    out["artifact_tasks"] = [
        {**t, "qualified_name": qualified(plugin, file["filename"], t["name"])}
        for t in file["artifact_tasks"]
    ]
    return out


def snapshot_payload(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in snapshot.items() if k != "created_ns"}
    out["files"] = [file_payload(f, snapshot["name"]) for f in snapshot["files"]]
    return out


class Service:
    """Answers requests against one kernel's store."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.tps = TaskPluginStore(kernel.store)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        route = self._route
        route("GET", r"/plugins", self.list_plugins)
        route("POST", r"/plugins", self.create_plugin)
        route("POST", r"/plugins/import", self.import_plugin)
        route("GET", r"/plugins/(?P<plugin>[^/]+)", self.get_plugin)
        route("PUT", r"/plugins/(?P<plugin>[^/]+)", self.modify_plugin)
        route("DELETE", r"/plugins/(?P<plugin>[^/]+)", self.remove_plugin)
        route("GET", r"/plugins/(?P<plugin>[^/]+)/snapshots", self.list_snapshots)
        route("GET", r"/plugins/(?P<plugin>[^/]+)/snapshots/(?P<snapshot>\d+)", self.get_snapshot)
        route("GET", r"/plugins/(?P<plugin>[^/]+)/files", self.list_files)
        route("POST", r"/plugins/(?P<plugin>[^/]+)/files", self.create_file)
        route("GET", r"/plugins/(?P<plugin>[^/]+)/files/(?P<file>.+)", self.get_file)
        route("PUT", r"/plugins/(?P<plugin>[^/]+)/files/(?P<file>.+)", self.modify_file)
        route("DELETE", r"/plugins/(?P<plugin>[^/]+)/files/(?P<file>.+)", self.remove_file)
        route("GET", r"/tasks", self.list_tasks)
        route("GET", r"/tasks/(?P<name>[^/]+)", self.get_task)
        route("POST", r"/workflows/signatureAnalysis", self.analyze)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + r"/?"), handler))

    def handle(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        path, _, query = path.partition("?")
        params = {
            _decode_path(k): _decode_path(v)
            for k, _, v in (p.partition("=") for p in query.split("&") if p)
        }
        allowed = []
        for verb, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if verb != method:
                allowed.append(verb)
                continue
            args = {k: _decode_path(v) for k, v in match.groupdict().items()}
            if body is not None and not isinstance(body, Mapping):
                raise TaskPluginError(f"{method} {path}: the body must be a JSON object")
            known = set(inspect.signature(handler).parameters) - set(args) - {"body"}
            unknown = sorted(set(params) - known)
            if unknown:
                raise TaskPluginError(
                    f"{method} {path}: unknown query parameter(s) {unknown}"
                    + (f" (allowed: {', '.join(sorted(known))})" if known else "")
                )
            return handler(**args, **params, body=dict(body or {}))
        if allowed:
            raise TaskPluginError(f"{method} {path}: not allowed (use {', '.join(allowed)})")
        raise TaskPluginError(f"no such API path: {method} {path}")

    # ------------------------------------------------------------ plugins

    def list_plugins(self, body: dict[str, Any], search: str | None = None) -> list[dict[str, Any]]:
        return [
            plugin_payload(self.tps, p)
            for p in self.tps.plugins()
            if not search or search in p["name"]
        ]

    def create_plugin(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"name", "description"}, "POST /plugins")
        plugin = self.tps.create(body.get("name"), body.get("description"))
        return plugin_payload(self.tps, plugin)

    def import_plugin(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"name", "files", "description", "replace"}, "POST /plugins/import")
        files = body.get("files")
        if not isinstance(files, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise TaskPluginError("import: files must map filenames to their text")
        plugin = self.tps.import_files(
            body.get("name"), files, body.get("description"), replace=bool(body.get("replace"))
        )
        return plugin_payload(self.tps, plugin)

    def get_plugin(self, plugin: str, body: dict[str, Any]) -> dict[str, Any]:
        return plugin_payload(self.tps, self.tps.plugin(plugin))

    def modify_plugin(self, plugin: str, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"name", "description"}, f"PUT /plugins/{plugin}")
        found = self.tps.modify(plugin, body.get("name"), body.get("description"))
        return plugin_payload(self.tps, found)

    def remove_plugin(self, plugin: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.tps.remove(plugin)

    def list_snapshots(self, plugin: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [snapshot_payload(s) for s in self.tps.snapshots(plugin)]

    def get_snapshot(self, plugin: str, snapshot: str, body: dict[str, Any]) -> dict[str, Any]:
        found = self.tps.snapshot(snapshot)
        owner = self.tps.plugin(plugin)
        if found["plugin_id"] != owner["id"]:
            raise TaskPluginError(
                f"snapshot {snapshot} belongs to task plugin {found['name']!r}, not "
                f"{owner['name']!r}"
            )
        return snapshot_payload(found)

    # ------------------------------------------------------------ files

    def list_files(self, plugin: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        snap = self.tps.latest(plugin)
        return [file_payload(f, snap["name"]) for f in snap["files"]]

    def create_file(self, plugin: str, body: dict[str, Any]) -> dict[str, Any]:
        _only(
            body,
            {"filename", "contents", "function_tasks", "artifact_tasks", "description"},
            f"POST /plugins/{plugin}/files",
        )
        entry = self.tps.add_file(
            plugin,
            body.get("filename"),
            body.get("contents"),
            body.get("function_tasks"),
            body.get("artifact_tasks"),
            body.get("description"),
        )
        return file_payload(entry, self.tps.plugin(plugin)["name"])

    def get_file(self, plugin: str, file: str, body: dict[str, Any]) -> dict[str, Any]:
        snap = self.tps.latest(plugin)
        found = self.tps.file(snap, file)
        out = file_payload(found, snap["name"])
        out["contents"] = self.tps.contents(found)
        return out

    def modify_file(self, plugin: str, file: str, body: dict[str, Any]) -> dict[str, Any]:
        _only(
            body,
            {"filename", "contents", "function_tasks", "artifact_tasks", "description"},
            f"PUT /plugins/{plugin}/files/{file}",
        )
        snap = self.tps.latest(plugin)
        old = self.tps.file(snap, file)
        entry = self.tps.modify_file(
            plugin,
            old["id"],
            body.get("filename", old["filename"]),
            body.get("contents"),
            body.get("function_tasks"),
            body.get("artifact_tasks"),
            body.get("description"),
        )
        return file_payload(entry, snap["name"])

    def remove_file(self, plugin: str, file: str, body: dict[str, Any]) -> dict[str, Any]:
        snap = self.tps.latest(plugin)
        return file_payload(self.tps.remove_file(plugin, file), snap["name"])

    # ------------------------------------------------------------ tasks

    def list_tasks(
        self, body: dict[str, Any], kind: str | None = None, plugin: str | None = None
    ) -> list[dict[str, Any]]:
        catalog = catalog_for(self.kernel)
        return [
            info.to_json()
            for info in catalog
            if (kind is None or info.kind == kind) and (plugin is None or info.plugin == plugin)
        ]

    def get_task(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        info: TaskInfo = catalog_for(self.kernel).resolve(name)
        return info.to_json()

    def analyze(self, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, {"python_code", "filename"}, "POST /workflows/signatureAnalysis")
        code = body.get("python_code")
        if not isinstance(code, str):
            raise TaskPluginError("signature analysis needs python_code (text)")
        found = analyze(code, str(body.get("filename") or "<code>"))
        return {
            "function_tasks": [
                {
                    "name": f.name,
                    "function": f.function,
                    "line": f.line,
                    "description": f.description,
                    **f.signature.to_json(),
                }
                for f in found.functions.values()
            ],
            "artifact_tasks": [
                {"name": a.name, "line": a.line, "description": a.description}
                for a in found.artifacts.values()
            ],
        }


def _only(body: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise TaskPluginError(
            f"{where}: unknown field(s) {unknown} (allowed: {', '.join(sorted(allowed))})"
        )


def _decode_path(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)
