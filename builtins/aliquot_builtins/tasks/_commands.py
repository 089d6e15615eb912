"""``aliquot task-plugins ...`` and ``aliquot tasks ...``: the client's operations, from a shell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aliquot.cli import command_kernel, echo_json, json_option, store_option

from ._errors import TaskPluginError

if TYPE_CHECKING:
    from ._service import Service


def _service(ctx: click.Context, store: str | None, write: bool = False) -> tuple[Any, Service]:
    from ._service import Service  # imported when a command runs, not when it is listed

    kernel = command_kernel(ctx, store, write=write)
    return kernel, Service(kernel)


def _describe_plugin(plugin: dict[str, Any]) -> None:
    snap = plugin.get("latest_snapshot") or {}
    click.echo(
        f"{plugin['name']} (id {plugin['id']}, snapshot {snap.get('id')}, "
        f"digest {str(snap.get('digest', ''))[:12]})"
    )
    if plugin.get("description"):
        click.echo(f"  {plugin['description']}")
    for file in plugin.get("files", []):
        click.echo(f"  {file['filename']} (file {file['id']}, {file['size']} bytes)")
        for task in file["function_tasks"]:
            ins = ", ".join(_param(i) for i in task["inputs"])
            outs = ", ".join(o["name"] for o in task["outputs"]) or "-"
            click.echo(f"    function {task['qualified_name']}({ins}) -> {outs}")
        for task in file["artifact_tasks"]:
            click.echo(f"    artifact {task['qualified_name']}")


def _param(info: dict[str, Any]) -> str:
    from ._types import describe

    prefix = {"var_positional": "*", "var_keyword": "**"}.get(info["kind"], "")
    optional = "" if info["required"] or prefix else "?"
    return f"{prefix}{info['name']}{optional}: {describe(info['type'])}"


@click.group("task-plugins")
def task_plugins() -> None:
    """Task plugins: named, versioned sets of .py files kept in the store."""


@task_plugins.command("create")
@click.argument("name")
@click.option("--description", "-d", default=None, help="What the plugin is for.")
@store_option
@json_option
@click.pass_context
def create(
    ctx: click.Context, name: str, description: str | None, store: str | None, as_json: bool
) -> None:
    """Create an empty task plugin NAME (a Python identifier)."""
    kernel, service = _service(ctx, store, write=True)
    try:
        plugin = service.handle("POST", "/plugins", {"name": name, "description": description})
    finally:
        kernel.close()
    echo_json(plugin) if as_json else _describe_plugin(plugin)


@task_plugins.command("add-file")
@click.argument("plugin")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--as", "filename", default=None, help="Filename in the plugin (default: FILE's name)."
)
@click.option("--replace", is_flag=True, help="Replace a file of that name (a new snapshot).")
@click.option("--description", "-d", default=None)
@store_option
@json_option
@click.pass_context
def add_file(
    ctx: click.Context,
    plugin: str,
    file: Path,
    filename: str | None,
    replace: bool,
    description: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Add FILE to PLUGIN, registering the tasks found in its code (read, not run)."""
    from ._store import MAX_FILE_BYTES

    name = filename or file.name
    if file.stat().st_size > MAX_FILE_BYTES:
        raise TaskPluginError(f"{file}: over the {MAX_FILE_BYTES}-byte limit per file")
    try:
        contents = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise TaskPluginError(f"{file}: not UTF-8 text") from None
    body = {"filename": name, "contents": contents, "description": description}
    kernel, service = _service(ctx, store, write=True)
    try:
        existing = {f["filename"] for f in service.handle("GET", f"/plugins/{plugin}/files")}
        if name in existing:
            if not replace:
                raise TaskPluginError(
                    f"task plugin {plugin!r} has a file {name!r} already (--replace to change it)"
                )
            entry = service.handle("PUT", f"/plugins/{plugin}/files/{name}", body)
        else:
            entry = service.handle("POST", f"/plugins/{plugin}/files", body)
    finally:
        kernel.close()
    if as_json:
        echo_json(entry)
        return
    tasks = [t["qualified_name"] for t in entry["function_tasks"] + entry["artifact_tasks"]]
    click.echo(f"{plugin}/{entry['filename']}: {len(tasks)} task(s) {', '.join(tasks)}".rstrip())


@task_plugins.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Plugin name (default: the folder or archive name).")
@click.option("--description", "-d", default=None)
@click.option(
    "--replace", is_flag=True, help="Give an existing plugin these files (a new snapshot)."
)
@store_option
@json_option
@click.pass_context
def import_(
    ctx: click.Context,
    path: Path,
    name: str | None,
    description: str | None,
    replace: bool,
    store: str | None,
    as_json: bool,
) -> None:
    """Import a whole task plugin from a directory or a .tar.gz/.zip archive."""
    from ._sources import read_source

    source = read_source(path, name)
    kernel, service = _service(ctx, store, write=True)
    try:
        plugin = service.handle(
            "POST",
            "/plugins/import",
            {
                "name": source.name,
                "files": source.files,
                "description": description,
                "replace": replace,
            },
        )
    finally:
        kernel.close()
    if as_json:
        echo_json({**plugin, "skipped": source.skipped})
        return
    _describe_plugin(plugin)
    for skipped in source.skipped:
        click.echo(f"  skipped {skipped} (not a .py file)")


@task_plugins.command("list")
@store_option
@json_option
@click.pass_context
def list_(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """List task plugins."""
    kernel, service = _service(ctx, store)
    try:
        plugins = service.handle("GET", "/plugins")
    finally:
        kernel.close()
    if as_json:
        echo_json(plugins)
        return
    if not plugins:
        click.echo("no task plugins")
    for plugin in plugins:
        files = plugin["files"]
        count = sum(len(f["function_tasks"]) + len(f["artifact_tasks"]) for f in files)
        snap = plugin["latest_snapshot"] or {}
        click.echo(
            f"{plugin['name']}  id {plugin['id']}  snapshot {snap.get('id')}  "
            f"{len(files)} file(s)  {count} task(s)"
        )


@task_plugins.command("show")
@click.argument("plugin")
@click.option("--snapshot", "snapshot", default=None, help="A snapshot id (default: the latest).")
@click.option("--history", is_flag=True, help="List every snapshot.")
@store_option
@json_option
@click.pass_context
def show(
    ctx: click.Context,
    plugin: str,
    snapshot: str | None,
    history: bool,
    store: str | None,
    as_json: bool,
) -> None:
    """Show a task plugin: its files and tasks (or one snapshot, or its history)."""
    kernel, service = _service(ctx, store)
    try:
        if history:
            result: Any = service.handle("GET", f"/plugins/{plugin}/snapshots")
        elif snapshot is not None:
            result = service.handle("GET", f"/plugins/{plugin}/snapshots/{snapshot}")
        else:
            result = service.handle("GET", f"/plugins/{plugin}")
    finally:
        kernel.close()
    if as_json:
        echo_json(result)
    elif history:
        for snap in result:
            click.echo(
                f"snapshot {snap['id']}  {snap['created']}  {snap['digest'][:12]}  "
                f"{len(snap['files'])} file(s)"
            )
    elif snapshot is not None:
        _describe_plugin(
            {
                "name": result["name"],
                "id": result["plugin_id"],
                "latest_snapshot": result,
                "files": result["files"],
                "description": result.get("description"),
            }
        )
    else:
        _describe_plugin(result)


@task_plugins.command("remove")
@click.argument("plugin")
@store_option
@json_option
@click.pass_context
def remove(ctx: click.Context, plugin: str, store: str | None, as_json: bool) -> None:
    """Remove a task plugin (its name is freed; its snapshots stay, for the runs that used them)."""
    kernel, service = _service(ctx, store, write=True)
    try:
        result = service.handle("DELETE", f"/plugins/{plugin}")
    finally:
        kernel.close()
    echo_json(result) if as_json else click.echo(f"removed task plugin {result['name']}")


@task_plugins.command("remove-file")
@click.argument("plugin")
@click.argument("filename")
@store_option
@json_option
@click.pass_context
def remove_file(
    ctx: click.Context, plugin: str, filename: str, store: str | None, as_json: bool
) -> None:
    """Remove one file (by name or id) from a task plugin (a new snapshot)."""
    kernel, service = _service(ctx, store, write=True)
    try:
        result = service.handle("DELETE", f"/plugins/{plugin}/files/{filename}")
    finally:
        kernel.close()
    echo_json(result) if as_json else click.echo(f"removed {plugin}/{result['filename']}")


@click.group("tasks")
def tasks() -> None:
    """Tasks a task graph can name: from task plugins, and the builtin artifact tasks."""


@tasks.command("list")
@click.option("--kind", type=click.Choice(["function", "artifact"]), default=None)
@click.option("--plugin", default=None, help="Only the tasks of this task plugin.")
@store_option
@json_option
@click.pass_context
def tasks_list(
    ctx: click.Context, kind: str | None, plugin: str | None, store: str | None, as_json: bool
) -> None:
    """List tasks."""
    kernel, service = _service(ctx, store)
    try:
        query = "&".join(f"{k}={v}" for k, v in (("kind", kind), ("plugin", plugin)) if v)
        found = service.handle("GET", "/tasks" + (f"?{query}" if query else ""))
    finally:
        kernel.close()
    if as_json:
        echo_json(found)
        return
    for info in found:
        click.echo(f"{info['kind']:<8}  {info['name']}  ({info['origin']})")


@tasks.command("show")
@click.argument("name")
@store_option
@json_option
@click.pass_context
def tasks_show(ctx: click.Context, name: str, store: str | None, as_json: bool) -> None:
    """Show one task (qualified or unambiguous short NAME): inputs, outputs, types."""
    kernel, service = _service(ctx, store)
    try:
        info = service.handle("GET", f"/tasks/{name}")
    finally:
        kernel.close()
    if as_json:
        echo_json(info)
        return
    from ._types import describe

    click.echo(f"{info['kind']} task {info['name']}  ({info['origin']})")
    if info.get("description"):
        click.echo(f"  {info['description'].splitlines()[0]}")
    for item in info.get("inputs", []):
        click.echo(f"  input  {_param(item)}")
    for item in info.get("outputs", []):
        click.echo(f"  output {item['name']}: {describe(item['type'])}")
    for name_, structure in (info.get("types") or {}).items():
        click.echo(f"  type   {name_} = {describe(structure) if structure else '(simple)'}")
