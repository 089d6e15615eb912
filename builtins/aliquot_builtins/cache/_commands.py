"""``aliquot explain`` and ``aliquot cache ls|clear``."""

from __future__ import annotations

from typing import Any

import click
import orjson

from aliquot.cli import command_kernel, json_option, store_option

from ._fingerprint import SourceFingerprints
from ._middleware import PATHS, SLOTS, SPACE, decode_entry


@click.command("explain")
@click.argument("run_ref", metavar="RUN")
@click.argument("node", required=False)
@store_option
@json_option
@click.pass_context
def explain(
    ctx: click.Context, run_ref: str, node: str | None, store: str | None, as_json: bool
) -> None:
    """Say per node of RUN why it ran or was served from the cache (and what changed)."""
    kernel = command_kernel(ctx, store)
    try:
        run = kernel.get_run(run_ref)
    finally:
        kernel.close()
    records = list(run.nodes.values())
    if node is not None:
        records = [r for r in records if r.id == node or r.task.endswith("." + node)]
        if not records:
            raise click.UsageError(f"run {run.id} has no node {node!r}")
    rows = []
    for record in records:
        cache = record.info.get("cache") or {}
        rows.append(
            {
                "node": record.id,
                "status": record.status,
                "cache": cache.get("status", "off" if record.status == "computed" else "-"),
                "why": _why(record, cache),
                "reads": record.info.get("reads", []),
            }
        )
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for row in rows:
        click.echo(f"{row['node']}: {row['status']}")
        for line in row["why"]:
            click.echo(f"    {line}")


def _why(record: Any, cache: dict[str, Any]) -> list[str]:
    status = cache.get("status")
    if record.status == "cached":
        return [record.reason or f"served from the cache (run {cache.get('run')})"]
    if status == "miss":
        return ["computed: " + reason for reason in cache.get("why") or ["no earlier result"]]
    if status == "off":
        return ["computed, not cached: " + str(cache.get("why"))]
    if record.status == "computed":
        return ["computed (the cache plugin did not see this node)"]
    return [record.reason or record.status]


@click.group("cache")
def cache_group() -> None:
    """List and clear cache entries."""


@cache_group.command("ls")
@click.option("--stage", "--task", "task", default=None, metavar="NAME", help="Only this task.")
@store_option
@json_option
@click.pass_context
def cache_ls(ctx: click.Context, task: str | None, store: str | None, as_json: bool) -> None:
    """List cache entries: task, where it ran, when, and what it stored."""
    kernel = command_kernel(ctx, store)
    try:
        entries = [_doc(raw) for _, raw in kernel.store.scan(SPACE)]
    finally:
        kernel.close()
    if task is not None:
        entries = [e for e in entries if _matches(e["task"], task)]
    rows = [
        {
            "task": e["task"],
            "node": e.get("node"),
            "run": e.get("run"),
            "outputs": {k: v["size"] for k, v in e["outputs"].items()},
            "reads": sorted(e.get("reads") or {}),
        }
        for e in entries
    ]
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        click.echo("no cache entries")
        return
    for row in rows:
        outputs = ", ".join(f"{k} ({v} B)" for k, v in row["outputs"].items())
        click.echo(f"{row['node']}  {row['task']}  run {row['run']}  {outputs}")


@cache_group.command("clear")
@click.option("--stage", "--task", "task", default=None, metavar="NAME", help="Only this task.")
@store_option
@click.pass_context
def cache_clear(ctx: click.Context, task: str | None, store: str | None) -> None:
    """Delete cache entries (all, or one task's); the next run computes them again.

    The stored values stay until `aliquot store gc --values` removes the ones
    nothing refers to any more.
    """
    kernel = command_kernel(ctx, store, write=True)
    removed = 0
    try:
        for key, raw in list(kernel.store.scan(SPACE)):
            doc = _doc(raw)
            if task is None or _matches(doc["task"], task):
                kernel.store.delete(SPACE, key)
                removed += 1
        for key, raw in list(kernel.store.scan(SLOTS)):
            doc = orjson.loads(raw)
            if task is None or _matches(doc["slot"].partition("|")[0], task):
                kernel.store.delete(SLOTS, key)
        if task is None:
            for space in (PATHS, SourceFingerprints.SPACE):
                for key, _ in list(kernel.store.scan(space)):
                    kernel.store.delete(space, key)
    finally:
        kernel.close()
    click.echo(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}")


def _matches(qualified: str, name: str) -> bool:
    return qualified == name or qualified.rpartition(".")[2] == name


def _doc(raw: bytes) -> dict[str, Any]:
    try:
        return decode_entry(raw)[1]
    except ValueError as exc:  # listed (and clearable) rather than hidden
        return {"task": "?", "node": f"<unreadable entry: {exc}>", "outputs": {}, "reads": {}}
