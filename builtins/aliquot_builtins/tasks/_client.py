"""``aliquot.Client``: task plugins and tasks from Python, shaped like Dioptra's client.

::

    client = aliquot.Client(".aliquot")
    plugin = client.plugins.create(name="hello_world", description="...")
    client.plugins.files.create(plugin_id=plugin["id"], filename="hello.py", contents=src)

Every method sends one request ``(method, path, body)`` and returns its JSON
answer (dicts and lists). The transport is chosen by the location: a store
path or ``memory://`` answers in-process (:class:`~._service.Service` over a
kernel opened on first use); ``http://`` / ``https://`` is the REST API, which
the ``aliquot-http`` plugin serves with the same service -- so code written
against one works against the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from aliquot import AliquotError

from ._errors import TaskPluginError


class LocalTransport:
    """Requests answered in-process against a store."""

    def __init__(self, location: str, **open_options: Any) -> None:
        self.location = location
        self._options = open_options
        self._kernel: Any = None
        self._service: Any = None

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        if self._service is None:
            import aliquot

            from ._service import Service

            self._kernel = aliquot.Kernel.open(self.location, **self._options)
            self._service = Service(self._kernel)
        return self._service.handle(method, path, body)

    @property
    def kernel(self) -> Any:
        if self._kernel is None:
            self.request("GET", "/plugins")
        return self._kernel

    def close(self) -> None:
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = self._service = None


def _transport(location: str, **options: Any) -> Any:
    if location.startswith(("http://", "https://")):
        try:
            from aliquot_http import HttpTransport  # type: ignore[import-not-found]
        except ImportError:
            raise AliquotError(
                f"Client({location!r}): talking to a server needs the aliquot-http plugin "
                "(pip install aliquot-http); a store path works without it"
            ) from None
        return HttpTransport(location, **options)
    return LocalTransport(location, **options)


def _seg(value: Any) -> str:
    return quote(str(value), safe="")


class Client:
    """Task plugins, their files and snapshots, and tasks (see the module docstring)."""

    def __init__(self, location: str | os.PathLike[str] = ".aliquot", **options: Any) -> None:
        self.location = os.fspath(location)
        self.transport = _transport(self.location, **options)
        self.plugins = PluginsCollection(self)
        self.tasks = TasksCollection(self)
        self.workflows = WorkflowsCollection(self)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.transport.request(method, path, body)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<aliquot.Client {self.location!r}>"


class _Collection:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._client.request(method, path, body)


class PluginsCollection(_Collection):
    """``client.plugins``: task plugins (``.files`` and ``.snapshots`` below)."""

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.files = PluginFilesCollection(client)
        self.snapshots = PluginSnapshotsCollection(client)

    def get(self, search: str | None = None) -> list[dict[str, Any]]:
        path = "/plugins" + (f"?search={_seg(search)}" if search else "")
        result: list[dict[str, Any]] = self._request("GET", path)
        return result

    def get_by_id(self, plugin_id: int | str) -> dict[str, Any]:
        """A plugin by id (a name works too)."""
        result: dict[str, Any] = self._request("GET", f"/plugins/{_seg(plugin_id)}")
        return result

    def create(self, name: str, description: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", "/plugins", {"name": name, "description": description}
        )
        return result

    def modify_by_id(
        self, plugin_id: int | str, name: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        result: dict[str, Any] = self._request("PUT", f"/plugins/{_seg(plugin_id)}", body)
        return result

    def delete_by_id(self, plugin_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("DELETE", f"/plugins/{_seg(plugin_id)}")
        return result

    def import_files(
        self,
        name: str,
        files: Mapping[str, str],
        description: str | None = None,
        *,
        replace: bool = False,
    ) -> dict[str, Any]:
        """A whole plugin from ``{filename: text}`` in one snapshot."""
        result: dict[str, Any] = self._request(
            "POST",
            "/plugins/import",
            {"name": name, "files": dict(files), "description": description, "replace": replace},
        )
        return result

    def import_path(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        description: str | None = None,
        *,
        replace: bool = False,
    ) -> dict[str, Any]:
        """A whole plugin from a directory or an archive read on this side (checked
        member by member: see :mod:`._sources`). The folder or archive names it
        unless ``name`` is given."""
        from ._sources import read_source

        source = read_source(path, name)
        if source.name is None:
            raise TaskPluginError(f"{path}: give the plugin a name")
        result = self.import_files(source.name, source.files, description, replace=replace)
        result["skipped"] = source.skipped
        return result


class PluginFilesCollection(_Collection):
    """``client.plugins.files``: the files of a plugin (each change is a snapshot)."""

    def get(self, plugin_id: int | str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/plugins/{_seg(plugin_id)}/files")
        return result

    def get_by_id(self, plugin_id: int | str, plugin_file_id: int | str) -> dict[str, Any]:
        """A file with its ``contents`` (by id, or by filename)."""
        result: dict[str, Any] = self._request(
            "GET", f"/plugins/{_seg(plugin_id)}/files/{_seg(plugin_file_id)}"
        )
        return result

    def create(
        self,
        plugin_id: int | str,
        filename: str,
        contents: str,
        function_tasks: Sequence[Mapping[str, Any]] | None = None,
        artifact_tasks: Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Add a file. Without ``function_tasks``/``artifact_tasks`` its tasks are
        found in the code (read, not run); given, each is checked against it."""
        body: dict[str, Any] = {"filename": filename, "contents": contents}
        if function_tasks is not None:
            body["function_tasks"] = list(function_tasks)
        if artifact_tasks is not None:
            body["artifact_tasks"] = list(artifact_tasks)
        if description is not None:
            body["description"] = description
        result: dict[str, Any] = self._request("POST", f"/plugins/{_seg(plugin_id)}/files", body)
        return result

    def modify_by_id(
        self,
        plugin_id: int | str,
        plugin_file_id: int | str,
        filename: str | None = None,
        contents: str | None = None,
        function_tasks: Sequence[Mapping[str, Any]] | None = None,
        artifact_tasks: Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": contents}
        if contents is None:
            current = self.get_by_id(plugin_id, plugin_file_id)
            body["contents"] = current["contents"]
        if filename is not None:
            body["filename"] = filename
        if function_tasks is not None:
            body["function_tasks"] = list(function_tasks)
        if artifact_tasks is not None:
            body["artifact_tasks"] = list(artifact_tasks)
        if description is not None:
            body["description"] = description
        result: dict[str, Any] = self._request(
            "PUT", f"/plugins/{_seg(plugin_id)}/files/{_seg(plugin_file_id)}", body
        )
        return result

    def delete_by_id(self, plugin_id: int | str, plugin_file_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "DELETE", f"/plugins/{_seg(plugin_id)}/files/{_seg(plugin_file_id)}"
        )
        return result


class PluginSnapshotsCollection(_Collection):
    """``client.plugins.snapshots``: the immutable history of a plugin."""

    def get(self, plugin_id: int | str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/plugins/{_seg(plugin_id)}/snapshots")
        return result

    def get_by_id(self, plugin_id: int | str, snapshot_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/plugins/{_seg(plugin_id)}/snapshots/{_seg(snapshot_id)}"
        )
        return result


class TasksCollection(_Collection):
    """``client.tasks``: every task a graph can name (task plugins and builtins)."""

    def get(self, kind: str | None = None, plugin: str | None = None) -> list[dict[str, Any]]:
        query = "&".join(
            f"{k}={_seg(v)}" for k, v in (("kind", kind), ("plugin", plugin)) if v is not None
        )
        result: list[dict[str, Any]] = self._request(
            "GET", "/tasks" + (f"?{query}" if query else "")
        )
        return result

    def get_by_name(self, name: str) -> dict[str, Any]:
        """A task by qualified or unambiguous short name."""
        result: dict[str, Any] = self._request("GET", f"/tasks/{_seg(name)}")
        return result


class WorkflowsCollection(_Collection):
    """``client.workflows``: helpers that change nothing."""

    def analyze_plugin_task_signatures(
        self, python_code: str, filename: str | None = None
    ) -> dict[str, Any]:
        """The tasks a file would register, read from its source without running it."""
        result: dict[str, Any] = self._request(
            "POST",
            "/workflows/signatureAnalysis",
            {"python_code": python_code, "filename": filename},
        )
        return result
