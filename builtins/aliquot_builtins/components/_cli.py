"""``aliquot apply`` and ``aliquot components ls|show|remove|export``.

An export directory holds ``component.json`` (the encoded component, nested
components in ``builds``) and ``blobs/<sha256>``. Values whose bytes depend on
a store's secret (signed pickles) are signed again with a fresh key written to
``export.key``: applying such a directory runs code from it, so ``aliquot
apply DIR`` refuses it unless ``--trust`` is given.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import types
from pathlib import Path
from typing import Any

import click
import orjson

from aliquot import SerializerContext
from aliquot.cli import command_kernel, echo_json, echo_table, json_option, store_option

from ._component import Component, ComponentError
from ._encoding import Encoded, _Encoder, check_document, class_path, decode, import_class
from ._store import _source_file, describe, find, list_all, load, remove

KEY_FILE = "export.key"
#: class path -> the file that defined it, where it was exported (a hint for scripts)
SOURCES = "sources.json"


def _name(text: str) -> tuple[str, str]:
    type_name, sep, identifier = text.partition(":")
    if not sep or not type_name or not identifier:
        raise ComponentError(f"{text!r} is not a component name: write Type:identifier")
    return type_name, identifier


def _read_export(path: Path, trust: bool) -> tuple[dict[str, Any], dict[str, bytes], Any]:
    """(document, blobs, serializer context or None) of an export dir or component.json."""
    folder = path if path.is_dir() else path.parent
    doc_path = folder / "component.json" if path.is_dir() else path
    if not doc_path.is_file():
        raise ComponentError(f"{path}: no component.json there")
    try:
        doc = orjson.loads(doc_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ComponentError(f"{doc_path}: not valid JSON: {exc}") from exc
    check_document(doc)
    blobs: dict[str, bytes] = {}
    blob_dir = folder / "blobs"
    if blob_dir.is_dir():
        for entry in blob_dir.iterdir():
            data = entry.read_bytes()
            if hashlib.sha256(data).hexdigest() != entry.name:
                raise ComponentError(f"{entry}: its bytes do not match its name (damaged?)")
            blobs[entry.name] = data
    _import_classes(doc, folder / SOURCES)
    ctx = None
    key_path = folder / KEY_FILE
    if key_path.is_file():
        if not trust:
            raise ComponentError(
                f"{folder} holds signed pickled values (see {KEY_FILE}); loading them runs "
                "code from that directory. Pass --trust if you trust where it came from"
            )
        key = key_path.read_bytes()
        ctx = SerializerContext("export", lambda purpose: key)
    return doc, blobs, ctx


def _import_classes(doc: dict[str, Any], sources_path: Path) -> None:
    """Make the document's classes importable: a script's class is loaded from its file."""
    from aliquot import load_target

    hints: dict[str, str] = {}
    if sources_path.is_file():
        hints = orjson.loads(sources_path.read_bytes())
    for item in [doc, *(doc.get("builds") or {}).values()]:
        try:
            import_class(item["class"], item["type"])
        except ComponentError:
            source = hints.get(item["class"])
            if not source or not Path(source).is_file():
                raise
            load_target(source)


@click.command("apply")
@click.argument("target")
@click.option("--no-jobs", is_flag=True, help="Store it without running its triggers.")
@click.option("--executor", "-e", default=None, help="Executor for the trigger jobs (NAME[:N]).")
@click.option("--trust", is_flag=True, help="Load pickled values of an export directory.")
@store_option
@json_option
@click.pass_context
def apply_command(
    ctx: click.Context,
    target: str,
    no_jobs: bool,
    executor: str | None,
    trust: bool,
    store: str | None,
    as_json: bool,
) -> None:
    """Store a component and run its `apply` triggers.

    TARGET is `file.py:object`, `module:object`, a `component.json`, or a
    directory written by `aliquot components export`.
    """
    from aliquot import load_target

    from ..triggers import JobsFailed

    path = Path(target)
    kernel = command_kernel(ctx, store, write=True)
    try:
        if path.is_dir() or (path.suffix == ".json" and path.is_file()):
            doc, blobs, sctx = _read_export(path, trust)
            component = decode(Encoded(doc, blobs), kernel, ctx=sctx)
        else:
            component = load_target(target)
            if isinstance(component, type) or not isinstance(component, Component):
                raise ComponentError(
                    f"{target} is a {type(component).__name__}, not a component instance"
                )
        try:
            applied = kernel.apply(component, jobs=not no_jobs, executor=executor)
        except JobsFailed as exc:
            _report(exc.result, as_json)
            click.echo(f"aliquot: error: {exc}", err=True)
            ctx.exit(1)
    finally:
        kernel.close()
    _report(applied, as_json)


def _report(applied: Any, as_json: bool) -> None:
    if applied is None:
        return
    if as_json:
        echo_json(applied.to_json())
        return
    for c in applied.components:
        extra = f" (changed: {', '.join(c.changed)})" if c.changed else ""
        click.echo(f"{c.action:8}  {c.type}:{c.identifier} v{c.version}{extra}")
    for job in applied.jobs:
        why = job.get("reason") or ""
        if job.get("error"):
            why = f"{job['error']['type']}: {job['error']['message']}"
        click.echo(
            f"job {job['id']:6} {job['status']:9} {job['target']}" + (f"  {why}" if why else "")
        )


@click.group("components")
def components_group() -> None:
    """Stored components: list, show, remove, export."""


@components_group.command("ls")
@store_option
@json_option
@click.pass_context
def components_ls(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """List stored components (type, identifier, versions)."""
    kernel = command_kernel(ctx, store)
    try:
        rows = list_all(kernel)
    finally:
        kernel.close()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no components yet")
        return
    table = [("COMPONENT", "LATEST", "VERSIONS", "UUID", "UPDATED")]
    for r in rows:
        table.append(
            (
                f"{r['type']}:{r['identifier']}",
                f"v{r['latest']}",
                ",".join(map(str, r["versions"])),
                r["uuid"],
                r["updated"][:19],
            )
        )
    echo_table(table)


@components_group.command("show")
@click.argument("name", metavar="TYPE:IDENTIFIER")
@click.option("--version", "-v", "version", type=int, default=None, help="Default: the latest.")
@store_option
@json_option
@click.pass_context
def components_show(
    ctx: click.Context, name: str, version: int | None, store: str | None, as_json: bool
) -> None:
    """Show a stored component: identity, fields (blobs by reference), children, users."""
    type_name, identifier = _name(name)
    kernel = command_kernel(ctx, store)
    try:
        info = describe(kernel, find(kernel, type_name, identifier, version=version))
    finally:
        kernel.close()
    if as_json:
        echo_json(info)
        return
    click.echo(f"component {info['type']}:{info['identifier']} v{info['version']}")
    click.echo(f"uuid      {info['uuid']}")
    click.echo(f"class     {info['class']}")
    click.echo(f"created   {info['created']}   updated {info['updated']}")
    click.echo("fields")
    for field, value in info["fields"].items():
        click.echo(f"  {field}: {_shown(value)}")
    if info["children"]:
        click.echo(f"uses      {', '.join(info['children'])}")
    if info["users"]:
        click.echo(f"used by   {', '.join(info['users'])}")


def _shown(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1 and "$blob" in value:
        ref = value["$blob"]
        return f"<{ref['type']}: {ref['size']} B, {ref['serializer']}, {ref['digest'][:12]}>"
    if isinstance(value, dict) and len(value) == 1 and "$component" in value:
        return f"<component {value['$component']}>"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 100 else text[:97] + "..."


@components_group.command("remove")
@click.argument("name", metavar="TYPE:IDENTIFIER")
@click.option("--version", "-v", "version", type=int, default=None, help="Default: every version.")
@click.option("--force", is_flag=True, help="Remove it although others use it or cleanup fails.")
@store_option
@json_option
@click.pass_context
def components_remove(
    ctx: click.Context,
    name: str,
    version: int | None,
    force: bool,
    store: str | None,
    as_json: bool,
) -> None:
    """Remove a component: run its cleanup, delete its records and unused blobs."""
    type_name, identifier = _name(name)
    kernel = command_kernel(ctx, store, write=True)
    try:
        report = remove(kernel, type_name, identifier, version=version, force=force)
    finally:
        kernel.close()
    if as_json:
        echo_json(report)
        return
    versions = ", ".join(f"v{v}" for v in sorted(report["removed"]))
    click.echo(f"removed {type_name}:{identifier} ({versions})")
    for error in report["cleanup_errors"]:
        click.echo(f"warning: {error}", err=True)
    click.echo(f"blobs deleted: {report['blobs_deleted']}")
    if report.get("note"):
        click.echo(f"note: {report['note']}", err=True)


@components_group.command("export")
@click.argument("name", metavar="TYPE:IDENTIFIER")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--version", "-v", "version", type=int, default=None, help="Default: the latest.")
@store_option
@json_option
@click.pass_context
def components_export(
    ctx: click.Context,
    name: str,
    directory: Path,
    version: int | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Write a component to DIRECTORY (component.json + blobs/), for `aliquot apply DIR`."""
    type_name, identifier = _name(name)
    kernel = command_kernel(ctx, store)
    try:
        component = load(kernel, type_name, identifier, version=version)
        summary = export(kernel, component, directory)
    finally:
        kernel.close()
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"exported {type_name}:{identifier} v{component.version} to {directory} "
        f"({summary['blobs']} blobs)"
    )
    if summary["signed"]:
        click.echo("it holds pickled values: apply it with `aliquot apply DIR --trust`", err=True)


def export(kernel: Any, component: Component, directory: Path) -> dict[str, Any]:
    """Encode ``component`` into ``directory`` (which must not hold an export already)."""
    if (directory / "component.json").exists():
        raise ComponentError(f"{directory} already holds a component.json; choose another")
    key = secrets.token_bytes(32)
    used: list[str] = []

    def secret(purpose: str) -> bytes:
        used.append(purpose)
        return key

    shim = types.SimpleNamespace(
        values=types.SimpleNamespace(
            serializers=kernel.serializers, ctx=SerializerContext("export", secret)
        )
    )
    encoder = _Encoder(shim)
    doc = encoder.component(component)
    doc["builds"] = encoder.builds
    (directory / "blobs").mkdir(parents=True, exist_ok=True)
    for digest, data in encoder.blobs.items():
        (directory / "blobs" / digest).write_bytes(data)
    if used:
        fd = os.open(directory / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    sources = {
        class_path(type(obj)): path
        for obj in [component, *encoder.objects.values()]
        if (path := _source_file(type(obj))) is not None
    }
    (directory / SOURCES).write_bytes(orjson.dumps(sources, option=orjson.OPT_INDENT_2) + b"\n")
    (directory / "component.json").write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    )
    return {
        "directory": str(directory),
        "huuid": f"{doc['type']}:{doc['identifier']}:{doc['uuid']}",
        "blobs": len(encoder.blobs),
        "signed": bool(used),
    }
