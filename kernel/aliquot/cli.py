"""The ``aliquot`` command line.

Plugins are loaded when a command needs them, never at import, and loading
is tolerant for everything that only *describes* (``--help``, ``--version``,
``plugins``): a broken plugin shows up with its error instead of breaking the
tool. Commands that *run* refuse to start while a plugin is broken.

Exit codes: 0 success; 1 a run failed or was cancelled by its deadline;
2 a user error (one line on stderr; ``--traceback`` shows the traceback);
130 interrupted with Ctrl-C; 3 an internal error.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ._version import __version__

if TYPE_CHECKING:
    from ._kernel import Kernel

CORE = ("run", "runs", "show", "get", "plugins", "store")


class CliState:
    """What the root group parsed; plugin commands get it as ``ctx.obj``."""

    def __init__(self, plugin_args: Sequence[str], traceback: bool) -> None:
        self.block = [a[3:] for a in plugin_args if a.startswith("no:")]
        self.load = [a for a in plugin_args if not a.startswith("no:")]
        self.traceback = traceback
        self._manager: Any = None
        self._commands: dict[str, click.Command] = {}
        self._run_options: list[click.Option] = []

    def open_kernel(
        self, store: str | None = None, *, plugins: Sequence[object] = (), readonly: bool = False
    ) -> Kernel:
        """Open a kernel on ``store`` with the ``-p`` options of this invocation."""
        from ._kernel import Kernel

        return Kernel.open(
            store or default_store(),
            plugins=plugins,
            load=self.load,
            block=self.block,
            readonly=readonly,
        )

    def plugin_manager(self) -> Any:
        """Plugins loaded tolerantly (errors recorded, not raised); cached per invocation.

        The registration hooks are called too (into registries kept only for their
        commands), so a plugin whose registration fails is reported here exactly as
        it would stop ``aliquot run``.
        """
        if self._manager is None:
            from ._plugins import PluginManager
            from ._registries import Registries

            manager = PluginManager()
            manager.load(block=self.block, load=self.load)
            registries = Registries()
            registries.fill(manager)
            self._manager = manager
            self._commands = dict(registries.commands.items())
            self._run_options = [option for _, option in registries.run_options.items()]
        return self._manager

    def plugin_run_options(self) -> list[click.Option]:
        """Options plugins add to ``aliquot run`` (loading plugins tolerantly if needed)."""
        self.plugin_manager()
        return list(self._run_options)

    def plugin_commands(self) -> dict[str, click.Command]:
        """Commands registered by plugins (loading plugins tolerantly if needed)."""
        self.plugin_manager()
        return dict(self._commands)


def default_store() -> str:
    return os.environ.get("ALIQUOT_STORE") or ".aliquot"


def _state(ctx: click.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        # `--help` is answered before the root callback runs: read -p from argv.
        obj = CliState(_argv_plugin_args(sys.argv[1:]), "--traceback" in sys.argv)
        ctx.find_root().obj = obj
    return obj


def _argv_plugin_args(args: Sequence[str]) -> list[str]:
    out = []
    for i, arg in enumerate(args):
        if arg == "-p" and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith("-p") and len(arg) > 2:
            out.append(arg[2:])
    return out


def _with_plugin_options(command: click.Command, state: CliState) -> click.Command:
    """``run`` with the options plugins registered appended (same callback)."""
    import copy

    try:
        extra = state.plugin_run_options()
    except Exception:  # --help must survive anything a plugin does
        return command
    taken = {p.name for p in command.params} | {o for p in command.params for o in p.opts}
    added = [o for o in extra if o.name not in taken and not set(o.opts) & taken]
    if not added:
        return command
    extended = copy.copy(command)
    extended.params = [*command.params, *added]
    return extended


class AliquotGroup(click.Group):
    """The root group: core commands, plus commands plugins register (loaded lazily)."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        return _state(ctx).plugin_commands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        try:
            names += sorted(self._plugin_commands(ctx))
        except Exception as exc:
            ctx.meta["aliquot.plugin_error"] = str(exc)
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None and cmd_name == "run":
            return _with_plugin_options(command, _state(ctx))
        if command is not None:
            return command
        try:
            return self._plugin_commands(ctx).get(cmd_name)
        except Exception:
            return None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        try:
            manager = _state(ctx).plugin_manager()
        except Exception:
            return
        broken = [e.name for e in manager.errors]
        if broken:
            formatter.write_paragraph()
            formatter.write_text(
                f"Note: plugin(s) {', '.join(broken)} failed to load; see `aliquot plugins`. "
                "Commands that run refuse to start until they are fixed or blocked (-p no:NAME)."
            )


@click.group(cls=AliquotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="aliquot", message="%(prog)s %(version)s")
@click.option(
    "-p",
    "plugin_args",
    multiple=True,
    metavar="NAME",
    help="Load plugin NAME (entry point or module); `-p no:NAME` blocks it before import.",
)
@click.option("--traceback", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, plugin_args: tuple[str, ...], traceback: bool) -> None:
    """aliquot: pipelines of tasks over parameter sets, cached, stored safely.

    Plugins come from the entry-point group `aliquot.plugins`. Block one with
    `-p no:NAME` or ALIQUOT_DISABLE_PLUGINS=a,b; turn off third-party autoload
    with ALIQUOT_DISABLE_PLUGIN_AUTOLOAD=1; load more with `-p NAME` or
    ALIQUOT_PLUGINS=a,b. The store defaults to ./.aliquot (ALIQUOT_STORE).
    """
    parsed = CliState(plugin_args, traceback)
    if isinstance(ctx.obj, CliState) and (ctx.obj.load, ctx.obj.block) == (
        parsed.load,
        parsed.block,
    ):
        ctx.obj.traceback = traceback  # keep what main() set up (and any plugins it loaded)
    else:
        ctx.obj = parsed


store_option = click.option(
    "--store",
    metavar="PATH",
    default=None,
    help="Store location (default: $ALIQUOT_STORE or ./.aliquot; `memory://` for none).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def echo_json(doc: Any) -> None:
    """Print ``doc`` as indented JSON (what ``--json`` prints, for plugin commands too)."""
    import orjson

    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def parse_input(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as ``aliquot run --input`` reads it: VALUE as JSON when it parses,
    else as text (for plugin commands that take inputs the same way)."""
    import orjson

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", param_hint="--input")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return key, value


@cli.command()
@click.argument("target")
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A run input; VALUE is parsed as JSON when it parses, else taken as a string.",
)
@click.option(
    "--target", "-t", "targets", multiple=True, metavar="NAME", help="Compute only what NAME needs."
)
@click.option(
    "--executor",
    "-e",
    default=None,
    metavar="NAME[:N]",
    help="inline (default), threads, processes...",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 4096),
    default=None,
    metavar="N",
    help="Run independent nodes in N worker processes (same as --executor processes:N).",
)
@click.option(
    "--deadline",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Cancel the run after this long.",
)
@click.option("--fail-fast", is_flag=True, help="Cancel everything else when a node fails.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would run, load from the cache or be skipped, and why; write nothing.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@store_option
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    /,
    target: str,
    inputs: tuple[str, ...],
    targets: tuple[str, ...],
    executor: str | None,
    parallel: int | None,
    deadline: float | None,
    fail_fast: bool,
    dry_run: bool,
    quiet: bool,
    store: str | None,
    as_json: bool,
    **plugin_options: Any,
) -> None:
    """Run TARGET: `file.py`, `file.py:object`, `module` or `module:object`.

    A bare file or module runs every task defined in it; an object names a
    task, a list of tasks, or anything a plugin knows how to run.
    """
    from ._errors import RunInterrupted
    from ._loader import load_target
    from ._progress import ProgressReporter

    state = _state(ctx)
    values = dict(parse_input(text) for text in inputs)
    options = {k: v for k, v in plugin_options.items() if v not in (None, False, ())}
    if parallel is not None:
        if executor is not None:
            raise click.UsageError("give --parallel or --executor, not both")
        executor = f"processes:{parallel}"
    if dry_run:
        _dry_run(state, store, target, values, list(targets) or None, executor, options, as_json)
        return
    observers: list[object] = [] if quiet else [ProgressReporter()]
    kernel = state.open_kernel(store, plugins=observers)
    try:
        obj = load_target(target)
        result = kernel.run(
            obj,
            inputs=values,
            targets=list(targets) or None,
            executor=executor,
            deadline=deadline,
            fail_fast=fail_fast,
            options=options,
        )
        if as_json:
            import orjson

            click.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
        else:
            _print_outputs(result)  # values served from the cache load from the open store
    except RunInterrupted as exc:
        click.echo(f"aliquot: interrupted; run {exc.run.id} is stored as cancelled", err=True)
        ctx.exit(130)
    finally:
        kernel.close()
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.status != "succeeded":
        for record in result.failed_nodes[:5]:
            click.echo(f"node {record.id} failed: {record.reason}", err=True)
        click.echo(f"see `aliquot show {result.id}` for the traceback", err=True)
        ctx.exit(1)


def _dry_run(
    state: CliState,
    store: str | None,
    target: str,
    inputs: dict[str, Any],
    targets: list[str] | None,
    executor: str | None,
    options: dict[str, Any],
    as_json: bool,
) -> None:
    """Plan and print what would run, load or skip, and why; write nothing at all."""
    from ._loader import load_target

    location = store or default_store()
    exists = location.startswith("memory://") or os.path.exists(
        os.path.join(location, "index", "data.mdb")
    )
    # An existing store is opened read-only; a missing one is not created.
    kernel = state.open_kernel(location if exists else "memory://", readonly=exists)
    try:
        plan = kernel.plan(
            load_target(target), inputs=inputs, targets=targets, executor=executor, options=options
        )
    finally:
        kernel.close()
    rows = [
        {"node": nid, "action": d.action, "reason": d.reason} for nid, d in plan.decisions.items()
    ]
    if as_json:
        import orjson

        doc = {"counts": plan.counts(), "nodes": rows, "targets": list(plan.targets)}
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    table = [("NODE", "WOULD", "WHY")]
    table += [(r["node"], r["action"], r["reason"]) for r in rows]
    echo_table(table)
    counts = plan.counts()
    click.echo(
        f"\n{counts['run']} to run, {counts['load']} from the cache, {counts['skip']} skipped "
        "(dry run: nothing was run or written)"
    )


def _print_outputs(result: Any) -> None:
    for name in result.targets:
        try:
            value = result[name]
        except KeyError:
            continue
        text = repr(value)
        if len(text) > 200:
            text = text[:197] + "..."
        click.echo(f"{name} = {text}")


@cli.command()
@store_option
@json_option
@click.option(
    "--limit", "-n", type=int, default=50, show_default=True, help="How many runs to list."
)
@click.pass_context
def runs(ctx: click.Context, store: str | None, as_json: bool, limit: int) -> None:
    """List stored runs, newest first."""
    kernel = _state(ctx).open_kernel(store)
    try:
        headers = kernel.runs(limit=limit)
    finally:
        kernel.close()
    if as_json:
        import orjson

        click.echo(orjson.dumps(headers, option=orjson.OPT_INDENT_2).decode())
        return
    if not headers:
        click.echo("no runs yet")
        return
    rows = [("RUN", "STATUS", "NODES", "DURATION", "STARTED", "TARGET")]
    for h in headers:
        counts = h.get("counts") or {}
        nodes = ", ".join(f"{v} {k}" for k, v in counts.items())
        duration = f"{h['duration']:.2f}s" if h.get("duration") is not None else "-"
        rows.append(
            (
                h["id"],
                h["status"],
                nodes,
                duration,
                (h.get("started") or "")[:19],
                h.get("target", ""),
            )
        )
    echo_table(rows)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--graph", is_flag=True, help="Print the run's call graph (the `graph` view).")
@store_option
@json_option
@click.pass_context
def show(ctx: click.Context, run_ref: str, graph: bool, store: str | None, as_json: bool) -> None:
    """Show a run: its nodes, outcomes, outputs and errors.

    RUN is a run id, a unique prefix of one, `latest`, or `latest~N` (the Nth
    run before the latest). `--graph` prints the graph a plugin recorded for it
    (its `graph` view: the operator calls and their data flow).
    """
    kernel = _state(ctx).open_kernel(store)
    try:
        result = kernel.get_run(run_ref)
        if graph:
            if "graph" not in kernel.run_views:
                raise click.UsageError(
                    "no loaded plugin records run graphs (the `graph` view; the operators "
                    "plugin provides it)"
                )
            view = result.graph
            if as_json and hasattr(view, "all"):
                import orjson

                graphs = {k: g.to_json() for k, g in view.all().items()}
                click.echo(orjson.dumps(graphs, option=orjson.OPT_INDENT_2).decode())
            else:
                click.echo(str(view))
            return
    finally:
        kernel.close()
    if as_json:
        import orjson

        click.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    doc = result.to_json()
    click.echo(f"run       {doc['id']}")
    click.echo(f"status    {doc['status']}")
    click.echo(f"target    {doc['target']}")
    if doc["inputs"]:
        click.echo(f"inputs    {doc['inputs']}")
    click.echo(f"executor  {doc['executor']}")
    click.echo(f"started   {doc['started']}   duration {doc['duration']}s")
    versions = [f"{p['name']} {p.get('version') or ''}".strip() for p in doc["plugins"]]
    click.echo(f"plugins   {', '.join(versions)}")
    for warning in doc["warnings"]:
        click.echo(f"warning   {warning}")
    if doc["error"]:
        click.echo(f"error     {doc['error']['type']}: {doc['error']['message']}")
    click.echo("")
    rows = [("NODE", "STATUS", "DURATION", "DETAIL")]
    for node in doc["nodes"]:
        detail = node["reason"] or ", ".join(
            f"{k}: {v['type']} ({v['size']} B, {v['serializer']})"
            for k, v in node["outputs"].items()
        )
        placed = (node.get("info") or {}).get("executor") or {}
        if placed.get("worker"):
            detail = f"{detail} on {placed['worker']}".strip()
        rows.append((node["id"], node["status"], f"{node['duration']:.4f}s", detail))
    echo_table(rows)
    for node in doc["nodes"]:
        if node["error"]:
            click.echo(f"\n--- {node['id']} failed ---\n{node['error']['traceback'].rstrip()}")


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("name")
@click.option("--record", "-r", default=None, metavar="R", help="The output of record R.")
@click.option(
    "--output", "-o", "path", default=None, metavar="FILE", help="Write the value to FILE."
)
@store_option
@json_option
@click.pass_context
def get(
    ctx: click.Context,
    run_ref: str,
    name: str,
    record: str | None,
    path: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Print (or write to a file) a value a run stored.

    NAME is a target of the run (`mean`, `small.mean`) or the name of an output
    of one of its nodes; with --record, the output of that record's node.
    With -o, bytes and text are written as they are, numpy arrays as .npy, and
    anything JSON can carry as JSON.
    """
    from ._errors import AliquotError

    kernel = command_kernel(ctx, store)
    try:
        result = kernel.get_run(run_ref)
        ref = _find_output(result, name, record)
        value = kernel.values.load(ref)
    finally:
        kernel.close()
    if path is not None:
        _write_value(value, path)
        click.echo(f"wrote {ref.type} ({ref.size} bytes stored) to {path}", err=True)
        return
    if as_json:
        import orjson

        try:
            click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
        except TypeError as exc:
            raise AliquotError(f"{name} ({ref.type}) cannot be printed as JSON: {exc}") from exc
        return
    click.echo(repr(value))


def _store_exists(store: str | None) -> bool:
    location = store or default_store()
    return not location.startswith("memory://") and os.path.exists(
        os.path.join(location, "index", "data.mdb")
    )


def command_kernel(ctx: click.Context, store: str | None, *, write: bool = False) -> Kernel:
    """The kernel a command (a plugin's too) works with: the root's ``-p`` options, the
    ``--store`` given or the default one. Commands that only read open an existing
    store read-only (``write=False``): reading never changes it."""
    return _state(ctx).open_kernel(store, readonly=not write and _store_exists(store))


def _find_output(result: Any, name: str, record: str | None) -> Any:
    from ._errors import AliquotError

    candidates = []
    if record is None and name in result.targets:
        target = result.targets[name]
        node = result.nodes.get(target.node)
        if node is not None and target.output in node.outputs:
            return node.outputs[target.output]
    for node in result.nodes.values():
        if record is not None and node.labels.get("record") != record:
            continue
        if name in node.outputs:
            candidates.append(node)
    if len(candidates) == 1:
        return candidates[0].outputs[name]
    where = f" of record {record!r}" if record else ""
    if not candidates:
        raise AliquotError(
            f"run {result.id} stored no output {name!r}{where} (see `aliquot show {result.id}`)"
        )
    records = sorted({n.labels.get("record", n.id) for n in candidates})
    raise AliquotError(
        f"{len(candidates)} nodes of run {result.id} stored an output {name!r}; "
        f"choose one with --record ({', '.join(records)})"
    )


def _write_value(value: Any, path: str) -> None:
    from ._errors import AliquotError

    if isinstance(value, (bytes, bytearray)):
        with open(path, "wb") as fh:
            fh.write(value)
        return
    if isinstance(value, str):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(value)
        return
    if type(value).__module__ == "numpy":
        import numpy as np

        with open(path, "wb") as fh:
            np.save(fh, value, allow_pickle=False)
        return
    import orjson

    try:
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except TypeError as exc:
        raise AliquotError(
            f"a {type(value).__name__} has no file form here; load it in Python with "
            "kernel.get_run(...)[name]"
        ) from exc
    with open(path, "wb") as fh:
        fh.write(data)


@cli.command()
@json_option
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins: name, distribution, version, builtin or not, status, hooks."""
    manager = _state(ctx).plugin_manager()
    infos = sorted(manager.infos.values(), key=lambda i: (not i.builtin, i.name))
    if as_json:
        import orjson

        click.echo(orjson.dumps([i.to_json() for i in infos], option=orjson.OPT_INDENT_2).decode())
        return
    rows = [("NAME", "STATUS", "DISTRIBUTION", "VERSION", "BUILTIN", "HOOKS")]
    for i in infos:
        hooks = ", ".join(h.removeprefix("aliquot_") for h in i.hooks)
        rows.append(
            (
                i.name,
                i.status,
                i.distribution or "-",
                i.version or "-",
                "yes" if i.builtin else "no",
                hooks,
            )
        )
    echo_table(rows)
    for i in infos:
        if i.error:
            click.echo(f"\n{i.name}: {i.status}: {i.error}")


@cli.group()
def store() -> None:
    """Check, clean and measure the store."""


@store.command("verify")
@store_option
@json_option
@click.pass_context
def store_verify(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """Check the store's structure and every checksum (exit 1 if anything is wrong)."""
    kernel = _state(ctx).open_kernel(store)
    try:
        report = kernel.store.verify()
    finally:
        kernel.close()
    _print_report(report, as_json)
    if not report.get("ok"):
        ctx.exit(1)


@store.command("gc")
@store_option
@json_option
@click.option(
    "--values", "values", is_flag=True, help="Also delete values nothing refers to any more."
)
@click.pass_context
def store_gc(ctx: click.Context, store: str | None, as_json: bool, values: bool) -> None:
    """Remove debris: temp files of dead processes, orphan blobs, quarantined entries."""
    kernel = _state(ctx).open_kernel(store)
    try:
        live = kernel.live_values() if values else None
        report = kernel.store.gc(live)
    finally:
        kernel.close()
    _print_report(report, as_json)


@store.command("stats")
@store_option
@json_option
@click.pass_context
def store_stats(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """Sizes and counts."""
    kernel = _state(ctx).open_kernel(store)
    try:
        report = kernel.store.stats()
    finally:
        kernel.close()
    _print_report(report, as_json)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    import orjson

    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    for key, value in report.items():
        if isinstance(value, list):
            click.echo(f"{key}: {len(value)}")
            for item in value[:50]:
                click.echo(f"  - {item}")
        elif isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


def echo_table(rows: Sequence[Sequence[Any]]) -> None:
    """Print rows (the first is the header) as left-aligned columns (for plugin commands too)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``aliquot`` script: maps errors to exit codes."""
    from ._errors import AliquotError, RunInterrupted

    args = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in args
    state = CliState(_argv_plugin_args(args), show_tb)
    try:
        code = cli.main(args=args, prog_name="aliquot", standalone_mode=False, obj=state)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = 130
    except RunInterrupted as exc:
        click.echo(f"aliquot: interrupted; run {exc.run.id} is stored as cancelled", err=True)
        code = 130
    except KeyboardInterrupt:
        click.echo("aliquot: interrupted", err=True)
        code = 130
    except AliquotError as exc:
        if show_tb:
            traceback.print_exc()
        click.echo(f"aliquot: error: {exc}", err=True)
        code = 2 if exc.user_error else 3
    except Exception as exc:
        traceback.print_exc() if show_tb else None
        click.echo(
            f"aliquot: internal error: {type(exc).__name__}: {exc} (re-run with --traceback)",
            err=True,
        )
        code = 3
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
