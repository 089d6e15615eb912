"""Every hook aliquot calls, in one module.

Hooks come in two shapes only (the rules are in ``spec/hooks.md``):

1. **Registration** -- ``aliquot_register_<kinds>(register)``: called once
   while a kernel is built. A plugin calls ``register(...)`` zero or more
   times. The kernel records which plugin registered what and refuses a
   duplicate name loudly, naming both plugins, unless one registration passes
   ``replace=True`` (an explicit override, recorded in the run manifest).
2. **Events** -- ``aliquot_<phase>_<event>(...)``: notifications. The return
   value is ignored. An implementation that raises is reported (a warning
   naming the plugin and the hook) and disabled for the rest of the run; it
   never changes a result.

All hooks are synchronous and keyword-called; an ``async def``
implementation, or a hook wrapper, is refused when the plugin is loaded
(around-behaviour is middleware, see :class:`aliquot.abc.Middleware`).
Implementations may accept any subset of a hook's arguments, so new arguments
can be added without breaking plugins. Builtins mark their registration
hooks ``trylast``.

A plugin is a module (or object) with functions decorated by
:data:`aliquot.hookimpl`, published under the entry-point group
``aliquot.plugins``::

    [project.entry-points."aliquot.plugins"]
    myplugin = "my_package.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._graph import Node
    from ._kernel import Kernel
    from ._outcome import Outcome
    from ._planner import Plan
    from ._runs import Run

#: The project name pluggy uses to match specs and implementations.
PROJECT = "aliquot"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate plugin functions with this (re-exported as ``aliquot.hookimpl``).
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "PROJECT",
    "aliquot_kernel_closing",
    "aliquot_kernel_started",
    "aliquot_node_finished",
    "aliquot_node_started",
    "aliquot_register_commands",
    "aliquot_register_executors",
    "aliquot_register_job_sources",
    "aliquot_register_kernel_methods",
    "aliquot_register_middleware",
    "aliquot_register_run_options",
    "aliquot_register_run_views",
    "aliquot_register_serializers",
    "aliquot_register_stores",
    "aliquot_register_task_types",
    "aliquot_register_value_roots",
    "aliquot_run_finished",
    "aliquot_run_planned",
    "aliquot_run_started",
    "hookimpl",
    "hookspec",
]


# ---------------------------------------------------------------------------
# Registration hooks: called once per kernel, while it is built
# ---------------------------------------------------------------------------


@hookspec
def aliquot_register_serializers(register: Callable[..., None]) -> None:
    """Register serializers: objects that turn values into bytes and back.

    Called once by the kernel while it is built (``Kernel.open``,
    ``aliquot.testing.make_kernel``), after every plugin is loaded, in pluggy's
    call order (later-registered plugins first; builtins are ``trylast``).

    :param register: ``register(serializer, *, replace=False)``. ``serializer``
        follows :class:`aliquot.abc.Serializer`; its ``name`` must be unique
        (``replace=True`` overrides an existing registration on purpose).
    :returns: nothing; return values are ignored.

    Implemented by: ``aliquot_builtins.serializer_json`` (``json``),
    ``serializer_bytes`` (``bytes``, ``text``), ``serializer_pickle``
    (``pickle``, signed), ``serializer_numpy`` (``numpy``), ``artifacts``
    (``artifact``, a family: ``artifact:<task>`` per artifact task); all ``trylast``.
    """


@hookspec
def aliquot_register_stores(register: Callable[..., None]) -> None:
    """Register store implementations, keyed by the URL scheme they serve.

    Called once by the kernel while it is built, before the store is opened.
    ``Kernel.open("memory://")`` opens the store named ``memory``; a plain path
    opens the store named ``lmdb``; ``scheme://rest`` opens ``scheme``.

    :param register: ``register(factory, *, replace=False)``. ``factory``
        follows :class:`aliquot.abc.StoreFactory`: a ``name`` (the scheme) and
        ``open(location, **options) -> Store``.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.store_lmdb`` (``lmdb``, the default)
    and ``aliquot_builtins.store_memory`` (``memory``); both ``trylast``.
    """


@hookspec
def aliquot_register_executors(register: Callable[..., None]) -> None:
    """Register executors: what runs bound task calls.

    Called once by the kernel while it is built. Executors are chosen by name
    per run (``--executor NAME[:N]``, ``kernel.run(..., executor="threads:4")``)
    or per task (the ``executor`` task option).

    :param register: ``register(factory, *, replace=False)``. ``factory``
        follows :class:`aliquot.abc.ExecutorFactory`: a ``name`` and
        ``factory(workers=None, **options) -> Executor``.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.executor_inline`` (``inline``, the
    default), ``executor_threads`` (``threads``), ``executor_processes``
    (``processes``); all ``trylast``.
    """


@hookspec
def aliquot_register_task_types(register: Callable[..., None]) -> None:
    """Register task types: kinds of tasks and how to bind and unpack their calls.

    Called once by the kernel while it is built. A node whose task kind has no
    registered task type cannot run: the kernel says which plugin provides the
    kind and whether it is blocked.

    :param register: ``register(task_type, *, replace=False)``. ``task_type``
        follows :class:`aliquot.abc.TaskType`; its ``name`` is the kind
        (``function``, ``stage``...).
    :returns: nothing.

    Implemented by: ``aliquot_builtins.function`` (``function``),
    ``aliquot_builtins.stages`` (``stage``, which also plans experiments),
    ``aliquot_builtins.aggregate`` (``aggregate``), ``aliquot_builtins.tasks``
    (``task``: registered, typed function tasks), ``aliquot_builtins.taskgraph``
    (``graph_artifact``, which also plans task-graph documents),
    ``aliquot_builtins.operators`` (``operator``, which plans operators) and
    ``aliquot_builtins.triggers`` (``trigger``, which plans batches of trigger jobs); all
    ``trylast``.
    """


@hookspec
def aliquot_register_middleware(register: Callable[..., None]) -> None:
    """Register middleware: async behaviour composed around every node.

    Called once by the kernel while it is built. Every run composes all
    registered middleware around each node, ordered by their ``order`` (lower
    is outside), ties broken by name.

    :param register: ``register(middleware, *, replace=False)``;
        ``middleware`` follows :class:`aliquot.abc.Middleware`.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.cache`` (``cache``, order 10), ``trylast``.
    """


@hookspec
def aliquot_register_commands(register: Callable[..., None]) -> None:
    """Register ``aliquot`` subcommands (click commands or groups).

    Called by the CLI when it needs the full command list (``aliquot --help``)
    or a command it does not define itself. Loading is tolerant here: a
    broken plugin does not break ``--help``.

    :param register: ``register(command, *, replace=False)``; ``command`` is a
        :class:`click.Command`, registered under ``command.name``. It may not
        shadow a core command (``run``, ``runs``, ``show``, ``get``, ``plugins``, ``store``).
        A command opens the store with ``aliquot.cli.command_kernel(ctx, store)``
        (the invocation's ``-p`` options; read-only unless ``write=True``) and may reuse
        ``aliquot.cli.store_option``, ``json_option``, ``echo_json`` and ``echo_table``.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.cache`` (``explain``, ``cache``),
    ``aliquot_builtins.tasks`` (``task-plugins``, ``tasks``),
    ``aliquot_builtins.taskgraph`` (``graphs``), ``aliquot_builtins.operators``
    (``jobs``) and ``aliquot_builtins.components`` (``apply``, ``components``).
    """


@hookspec
def aliquot_register_run_options(register: Callable[..., None]) -> None:
    """Register command-line options for ``aliquot run``.

    Called by the CLI when it builds the ``run`` command (for running and for
    its ``--help``). The value of each option reaches the run as
    ``options[option.name]`` -- in ``TaskType.plan`` (``request.options``) and
    in plan participants (``plan.options``) -- exactly as
    ``kernel.run(..., options={...})`` passes it from Python. An option whose
    value is its default (``None``, ``False``, an empty tuple) is left out.

    :param register: ``register(option, *, replace=False)``; ``option`` is a
        :class:`click.Option` (its ``name`` is the key); it may not reuse a
        name of ``run``'s own options.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.stages`` (``--params``, ``--names``,
    ``--indices``, ``--global-indices``), ``aliquot_builtins.cache``
    (``--overwrite``, ``--overwrite-stage``) and ``aliquot_builtins.taskgraph``
    (``-P``/``--graph-param``).
    """


@hookspec
def aliquot_register_run_views(register: Callable[..., None]) -> None:
    """Register views of runs: objects reached as attributes of a run (``run.records``).

    Called once by the kernel while it is built. ``run.NAME`` (for a name the
    :class:`aliquot.Run` does not define itself) calls ``factory(run)``; the
    factory must work for runs loaded from the store too.

    :param register: ``register(name, factory, *, replace=False)``;
        ``factory(run) -> object``.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.stages`` (``records``) and
    ``aliquot_builtins.operators`` (``graph``: the call graphs of operator nodes).
    """


@hookspec
def aliquot_register_value_roots(register: Callable[..., None]) -> None:
    """Register providers of *live* stored values, for ``aliquot store gc --values``.

    Called once by the kernel while it is built. Garbage collection of values
    deletes only values that no provider lists, so a plugin that keeps
    references to stored values (a cache, a component registry) must register
    a provider; the kernel lists the values of stored runs itself.

    :param register: ``register(name, provider, *, replace=False)``;
        ``provider(kernel) -> Iterable[str]`` yields value digests to keep.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.cache`` (the values its entries point
    to), ``aliquot_builtins.tasks`` (the files of every task-plugin snapshot)
    ``aliquot_builtins.operators`` (the operators, inputs and results of jobs) and
    ``aliquot_builtins.components`` (the blobs stored components reference).
    """


@hookspec
def aliquot_register_kernel_methods(register: Callable[..., None]) -> None:
    """Register methods of the kernel: ``kernel.NAME(...)`` for names it does not define.

    Called once by the kernel while it is built. ``kernel.NAME(*args, **kw)``
    calls ``method(kernel, *args, **kw)``, so a plugin adds verbs to the kernel
    (``kernel.apply(component)``) without the kernel knowing what they mean.
    A name the :class:`aliquot.Kernel` defines itself (``run``, ``close``...)
    cannot be registered.

    :param register: ``register(name, method, *, replace=False)``;
        ``method(kernel, *args, **kwargs) -> object``.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.components`` (``apply``, ``load``,
    ``remove``, ``show``) and ``aliquot_builtins.triggers`` (``trigger``).
    """


@hookspec
def aliquot_register_job_sources(register: Callable[..., None]) -> None:
    """Register sources of *job records*, listed together by ``aliquot jobs ls|show``.

    Called once by the kernel while it is built. A job is work a plugin runs
    and records in the store (an operator job, a component's trigger). Each
    source lists its records as dicts with at least ``id`` (unique across
    sources: prefix it with the source name when ids could collide),
    ``kind``, ``status``, ``created``, ``started``, ``finished`` and
    ``target``, newest first.

    :param register: ``register(name, source, *, replace=False)``;
        ``source(kernel, limit) -> list[dict]``. A source may also have an
        attribute ``find(kernel, job_id) -> dict | None`` for ``jobs show``.
    :returns: nothing.

    Implemented by: ``aliquot_builtins.operators`` (operator jobs) and
    ``aliquot_builtins.triggers`` (trigger jobs of components).
    """


# ---------------------------------------------------------------------------
# Event hooks: notifications; an observer that raises is disabled for the run
# ---------------------------------------------------------------------------


@hookspec
def aliquot_kernel_started(kernel: Kernel) -> None:
    """The kernel is ready: plugins loaded, registries filled, store open.

    Called once by ``Kernel.open`` / ``make_kernel`` just before it returns.

    :param kernel: the :class:`aliquot.Kernel`.

    Implemented by: ``aliquot_builtins.tasks`` (lets the store's task-plugin code be
    imported by module name in this process).
    """


@hookspec
def aliquot_kernel_closing(kernel: Kernel) -> None:
    """The kernel is about to commit and close its store.

    Called once by ``Kernel.close`` (also on leaving ``open_kernel``). The
    store is still usable.

    :param kernel: the :class:`aliquot.Kernel`.

    Implemented by: no builtin.
    """


@hookspec
def aliquot_run_planned(run: Run, plan: Plan) -> None:
    """A run is planned: every node has a decision (run, load or skip).

    Called by the scheduler once per run, after plan participants and before
    ``aliquot_run_started``. Progress reporters read the totals here.

    :param run: the :class:`aliquot.Run` (status ``running``).
    :param plan: the final :class:`aliquot.Plan`.

    Implemented by: the CLI's progress reporter (not an entry-point plugin).
    """


@hookspec
def aliquot_run_started(run: Run) -> None:
    """A run starts executing (its record is staged in the store).

    Called by the scheduler once per run, inside the trio run loop.

    :param run: the :class:`aliquot.Run`.

    Implemented by: the CLI's progress reporter.
    """


@hookspec
def aliquot_node_started(run: Run, node: Node) -> None:
    """A node is about to enter its middleware chain.

    Called by the scheduler once per executed node (not for skipped nodes),
    from the trio thread; keep it cheap, it is on the hot path. Also called for
    *steps* -- work a plugin runs inside a node and announces with
    ``Run.notify_step_started`` (the operators plugin's nested calls) -- whose
    ``node.labels["within"]`` names the enclosing node.

    :param run: the :class:`aliquot.Run`.
    :param node: the :class:`aliquot.Node`.

    Implemented by: the CLI's progress reporter and ``aliquot_builtins.triggers``
    (marks a trigger job's record running).
    """


@hookspec
def aliquot_node_finished(run: Run, node: Node, outcome: Outcome, duration: float) -> None:
    """A node ended (computed, cached, failed or cancelled).

    Called by the scheduler once per executed node, after its outcome is
    recorded on the run; also for nodes cancelled before they started, and for
    steps (``node.labels["within"]`` set; see ``aliquot_node_started``).

    :param run: the :class:`aliquot.Run`.
    :param node: the :class:`aliquot.Node`.
    :param outcome: the node's :class:`aliquot.Outcome`.
    :param duration: seconds spent in the middleware chain (0 if it never started).

    Implemented by: the CLI's progress reporter.
    """


@hookspec
def aliquot_run_finished(run: Run) -> None:
    """A run ended with status succeeded, failed or cancelled; its record is committed.

    Called by the scheduler once per run, also when the run was cancelled.

    :param run: the :class:`aliquot.Run`.

    Implemented by: the CLI's progress reporter.
    """


def all_hook_names() -> list[str]:
    """Names of every hook specification in this module."""
    return [name for name in __all__ if name.startswith("aliquot_")]


def spec_signature(name: str) -> str:
    """``name(arg, ...)`` as written in ``spec/hooks.md``."""
    import inspect

    fn: Any = globals()[name]
    return f"{name}({', '.join(inspect.signature(fn).parameters)})"
