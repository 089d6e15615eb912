"""``aliquot jobs submit|ls|show|logs|cancel``: background jobs from the command line."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from aliquot.cli import (
    CliState,
    command_kernel,
    echo_json,
    echo_table,
    json_option,
    parse_input,
    store_option,
)

from ._jobs import FINISHED, JobError, deploy, from_job, seconds_of


def _duration(record: dict[str, Any]) -> str:
    started = seconds_of(record.get("started"))
    if started is None:
        return "-"
    end = seconds_of(record.get("finished")) or time.time()
    return f"{end - started:.1f}s"


@click.group("jobs")
def jobs_group() -> None:
    """Run operators as background jobs: submit, list, inspect, read logs, cancel.

    A job runs in a process of its own against the store, so the command that
    submitted it may exit; its record and log stay in the store.
    """


@jobs_group.command("submit")
@click.argument("target")
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input; VALUE is parsed as JSON when it parses, else taken as a string.",
)
@store_option
@json_option
@click.pass_context
def jobs_submit(
    ctx: click.Context, target: str, inputs: tuple[str, ...], store: str | None, as_json: bool
) -> None:
    """Run the operator TARGET (`file.py:op`, `module:op`) as a background job."""
    from aliquot import load_target

    from ._operator import Operator, operator

    values = dict(parse_input(text) for text in inputs)
    obj = load_target(target)
    if not isinstance(obj, Operator):
        if isinstance(obj, type) or not callable(obj):
            raise JobError(
                f"{target} is a {type(obj).__name__}, not an operator: a job runs an Operator "
                "(or a function, run as @operator)"
            )
        obj = operator(obj)
    state = ctx.find_root().obj
    plugin_args: list[str] = []
    if isinstance(state, CliState):
        plugin_args = [*state.load, *(f"no:{name}" for name in state.block)]
    kernel = command_kernel(ctx, store, write=True)
    try:
        job = deploy(obj, inputs=values, kernel=kernel, plugin_args=plugin_args)
        record = job.record()
    finally:
        kernel.close()
    if as_json:
        echo_json(record)
        return
    click.echo(f"job {record['id']} submitted: {record['target']} (pid {record['pid']})")
    click.echo(f"follow it with `aliquot jobs logs {record['id']} -f`", err=True)


@jobs_group.command("ls")
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="How many jobs.")
@store_option
@json_option
@click.pass_context
def jobs_ls(ctx: click.Context, limit: int, store: str | None, as_json: bool) -> None:
    """List jobs of every kind (operator jobs, component triggers), newest first.

    An operator job whose process died shows as failed.
    """
    kernel = command_kernel(ctx, store, write=True)
    try:
        records = kernel.jobs(limit=limit)
    finally:
        kernel.close()
    if as_json:
        echo_json(records)
        return
    if not records:
        click.echo("no jobs yet")
        return
    rows = [("JOB", "KIND", "STATUS", "CREATED", "DURATION", "RUN", "TARGET")]
    for r in records:
        rows.append(
            (
                r["id"],
                r.get("kind") or "-",
                r["status"],
                (r.get("created") or "")[:19],
                _duration(r),
                r.get("run") or "-",
                r["target"],
            )
        )
    echo_table(rows)


def _other_job(kernel: Any, job_id: str) -> dict[str, Any] | None:
    """A job record of another source (a trigger job), or None."""
    for _name, source in kernel.job_sources.items():
        finder = getattr(source, "find", None)
        if callable(finder):
            record = finder(kernel, job_id)
            if record is not None:
                found: dict[str, Any] = record
                return found
    return None


def _show_other(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(record)
        return
    click.echo(f"job       {record['id']}")
    click.echo(f"kind      {record.get('kind', '-')}")
    click.echo(f"status    {record['status']}")
    click.echo(f"target    {record['target']}")
    for key in ("component", "event", "version"):
        if record.get(key) is not None:
            click.echo(f"{key:<9} {record[key]}")
    if record.get("depends_on"):
        click.echo(f"after     {', '.join(record['depends_on'])}")
    click.echo(f"created   {record['created']}")
    click.echo(f"started   {record.get('started') or '-'}   duration {_duration(record)}")
    click.echo(f"finished  {record.get('finished') or '-'}")
    click.echo(f"run       {record.get('run') or '-'}")
    if record.get("reason"):
        click.echo(f"reason    {record['reason']}")
    if record.get("result"):
        click.echo(f"result    {record['result']}")
    error = record.get("error")
    if error:
        click.echo(f"error     {error['type']}: {error['message']}")
        if error.get("traceback"):
            click.echo(f"\n{error['traceback'].rstrip()}")


@jobs_group.command("show")
@click.argument("job_id", metavar="ID")
@store_option
@json_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str, store: str | None, as_json: bool) -> None:
    """Show a job: status, times, process, run, result or error (with its traceback).

    Operator jobs have numeric ids; trigger jobs of components are `t<number>`.
    """
    kernel = command_kernel(ctx, store, write=True)
    try:
        other = None if job_id.strip().isdigit() else _other_job(kernel, job_id)
        if other is not None:
            _show_other(other, as_json)
            return
        if re.fullmatch(r"t[0-9]+", job_id.strip()):
            raise JobError(f"no job {job_id.strip()} in the store (see `aliquot jobs ls`)")
        record = from_job(job_id, kernel=kernel).record()
    finally:
        kernel.close()
    if as_json:
        echo_json(record)
        return
    click.echo(f"job       {record['id']}")
    click.echo(f"status    {record['status']}")
    click.echo(f"target    {record['target']}")
    if record.get("inputs_shown"):
        click.echo(f"inputs    {record['inputs_shown']}")
    click.echo(f"created   {record['created']}")
    click.echo(f"started   {record.get('started') or '-'}   duration {_duration(record)}")
    click.echo(f"finished  {record.get('finished') or '-'}")
    click.echo(f"process   pid {record.get('pid') or '-'} on {record['hostname']}")
    click.echo(f"run       {record.get('run') or '-'}")
    click.echo(f"log       {record['log']}")
    if record.get("result"):
        result = record["result"]
        click.echo(f"result    {result['type']} ({result['size']} B, {result['serializer']})")
    error = record.get("error")
    if error:
        click.echo(f"error     {error['type']}: {error['message']}")
        if error.get("traceback"):
            click.echo(f"\n{error['traceback'].rstrip()}")


@jobs_group.command("logs")
@click.argument("job_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job finishes.")
@store_option
@click.pass_context
def jobs_logs(ctx: click.Context, job_id: str, follow: bool, store: str | None) -> None:
    """Print what the job's process wrote to stdout and stderr."""
    kernel = command_kernel(ctx, store, write=follow)
    try:
        job = from_job(job_id, kernel=kernel)
        if not follow:
            click.echo(job.logs(), nl=False)
            return
        shown = 0
        while True:
            done = job.status() in FINISHED
            text = job.logs()
            click.echo(text[shown:], nl=False)
            shown = len(text)
            if done:
                return
            time.sleep(0.2)
    finally:
        kernel.close()


@jobs_group.command("cancel")
@click.argument("job_id", metavar="ID")
@click.option(
    "--grace",
    type=float,
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait after SIGTERM before SIGKILL.",
)
@store_option
@json_option
@click.pass_context
def jobs_cancel(
    ctx: click.Context, job_id: str, grace: float, store: str | None, as_json: bool
) -> None:
    """Cancel a job: SIGTERM its process group (SIGKILL after --grace); record it cancelled."""
    kernel = command_kernel(ctx, store, write=True)
    try:
        job = from_job(job_id, kernel=kernel)
        cancelled = job.cancel(grace=grace)
        record = job.record()
    finally:
        kernel.close()
    if as_json:
        echo_json({"cancelled": cancelled, "job": record})
        return
    if cancelled:
        click.echo(f"job {record['id']} cancelled")
    else:
        click.echo(f"job {record['id']} already ended ({record['status']}); nothing to cancel")
