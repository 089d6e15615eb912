"""``aliquot graphs validate FILE``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click
import orjson

from aliquot.cli import command_kernel, default_store, json_option, store_option

if TYPE_CHECKING:
    from ._issues import ValidationIssue


@click.group("graphs")
def graphs_group() -> None:
    """Check task-graph documents (Dioptra-style entrypoint YAML)."""


@graphs_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@store_option
@json_option
@click.pass_context
def validate(ctx: click.Context, file: str, store: str | None, as_json: bool) -> None:
    """Check FILE against the tasks it can name; print every problem (exit 1 if any).

    Task plugins are read from the store (opened read-only); tasks in the
    document's `modules` are imported.
    """
    from ._document import TaskGraph
    from ._issues import GraphValidationError

    steps = artifacts = 0
    try:
        document = TaskGraph.load(file)
    except GraphValidationError as exc:
        issues: list[ValidationIssue] = exc.issues
    else:
        location = store or default_store()
        if "://" not in location and not os.path.exists(location):
            location = "memory://"  # no store yet: nothing to read, and nothing to create
        kernel = command_kernel(ctx, location)
        try:
            issues = document.check(kernel)
        finally:
            kernel.close()
        steps, artifacts = len(document.step_names), len(document.artifact_names)
    if as_json:
        doc = {
            "ok": not issues,
            "file": file,
            "steps": steps,
            "artifacts": artifacts,
            "issues": [issue.to_json() for issue in issues],
        }
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    elif issues:
        for issue in issues:
            click.echo(f"{file}: {issue}")
        count = len(issues)
        click.echo(f"{count} problem{'s' if count != 1 else ''}", err=True)
    else:
        click.echo(
            f"ok: {steps} step{'s' if steps != 1 else ''}, {artifacts} artifact"
            f"{'s' if artifacts != 1 else ''}"
        )
    if issues:
        ctx.exit(1)
