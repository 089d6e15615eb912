"""The kernel: plugins, registries and a store, and the way into a run."""

from __future__ import annotations

import gc
import inspect
import os
import re
import signal
import sys
import threading
import types
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final

from ._errors import (
    AliquotError,
    PluginNotActiveError,
    RegistrationError,
    RunInterrupted,
    TargetLoadError,
    UnknownNameError,
)
from ._graph import Graph, graph_from_tasks
from ._planner import Plan, finalize, plan
from ._plugins import Events, Monitor, PluginInfo, PluginManager
from ._registries import Registries
from ._runs import Run, RunLog, new_run_id
from ._tasks import TaskSpec, task_spec_of
from ._values import SerializerContext, Serializers, Values, store_secret

if TYPE_CHECKING:
    from .abc import (
        Executor,
        Store,
        TaskType,
    )

DEFAULT_STORE: Final = ".aliquot"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")


def store_scheme(location: str) -> str:
    match = _SCHEME.match(location)
    return match.group(1) if match else "lmdb"


class Kernel:
    """A loaded set of plugins, an open store, and the way into runs.

    Open one with :meth:`Kernel.open` (sync code) or :func:`open_kernel`
    (async code); close it with :meth:`close` or a ``with`` block. A kernel
    owns its plugin manager: nothing is global, and two kernels in one process
    are independent.
    """

    def __init__(
        self,
        plugins: PluginManager,
        location: str,
        *,
        executor: str = "inline",
        store_options: Mapping[str, Any] | None = None,
        monitors: Sequence[Monitor] = (),
        readonly: bool = False,
    ) -> None:
        self._plugins = plugins
        self.readonly = readonly
        self.location = location
        self.default_executor = executor
        #: Callbacks ``(hook_name, kwargs)`` that see every hook call (the test kit's recorder).
        self.monitors: list[Monitor] = list(monitors)
        plugins.monitors = self.monitors
        registries = Registries(hint=self._hint)
        registries.fill(plugins)
        plugins.raise_errors()
        self.registries = registries
        self.serializer_registry = registries.serializers
        self.stores = registries.stores
        self.executors = registries.executors
        self.task_types = registries.task_types
        self.middleware = registries.middleware
        self.commands = registries.commands
        self.value_roots = registries.value_roots
        self.run_options = registries.run_options
        self.run_views = registries.run_views
        self.kernel_methods = registries.kernel_methods
        self.job_sources = registries.job_sources
        for name in self.kernel_methods.names():
            if name.startswith("_") or hasattr(type(self), name) or name in self.__dict__:
                entry = self.kernel_methods.entry(name)
                raise RegistrationError(
                    f"plugin {entry.plugin!r} registered kernel method {name!r}, which the "
                    "kernel defines itself (or is private)"
                )
        self.executors.get(parse_executor(executor)[0])  # a bad default fails here, not at run

        scheme = store_scheme(location)
        factory = self.stores.get(scheme)
        opts = dict(store_options or {})
        if readonly:
            opts["readonly"] = True
        self.store: Store = factory.open(location, **opts)
        self._finalizer = weakref.finalize(self, _close_quietly, self.store)
        secret = getattr(self.store, "secret", None)
        store_id = self.store.store_id
        self.serializers = Serializers(dict(self.serializer_registry.items()))
        self.values = Values(
            self.store,
            self.serializers,
            SerializerContext(
                store_id,
                secret if callable(secret) else (lambda purpose: store_secret(store_id, purpose)),
            ),
        )
        self.runlog = RunLog(self.store)
        if not readonly and self.runlog.mark_crashed():
            self.store.commit()
        self._closed = False
        self._events().kernel_started(kernel=self)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] = DEFAULT_STORE,
        *,
        plugins: Sequence[object] = (),
        load: Sequence[str] = (),
        block: Sequence[str] = (),
        autoload: bool | None = None,
        builtins: bool = True,
        executor: str = "inline",
        store_options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        monitors: Sequence[Monitor] = (),
        readonly: bool = False,
    ) -> Kernel:
        """Load plugins and open the store at ``location``.

        Args:
            location: a directory for the embedded LMDB store (created if
                missing), ``memory://`` for an in-memory store, or
                ``scheme://...`` for a store a plugin registers.
            plugins: plugin objects (modules or instances) to register.
            load: plugins to load by entry-point name or dotted module (``-p NAME``).
            block: plugins to block before import (``-p no:NAME``).
            autoload: load third-party entry points (default: unless
                ``ALIQUOT_DISABLE_PLUGIN_AUTOLOAD=1``).
            builtins: load the builtin plugins (blocking all of them is for tests).
            executor: the default executor for runs (``NAME`` or ``NAME:N``).
            monitors: callbacks ``(hook_name, kwargs)`` that see every hook call.
            readonly: open the store read-only: nothing is written (for planning,
                inspecting and ``--dry-run``); running is refused.

        Raises:
            PluginLoadError: a plugin failed to load; nothing runs with a
                plugin silently missing. Block it with ``block=[name]``.
        """
        if getattr(sys, "_aliquot_worker_bootstrap", False):
            raise AliquotError(
                "a kernel was opened while a worker process imported your script: code that "
                'opens a kernel or runs must sit under `if __name__ == "__main__":` (worker '
                "processes import the script to find its tasks, as multiprocessing does)"
            )
        manager = PluginManager()
        manager.load(
            block=block, load=load, objects=plugins, autoload=autoload, builtins=builtins, env=env
        )
        manager.raise_errors()
        return cls(
            manager,
            os.fspath(location),
            executor=executor,
            store_options=store_options,
            monitors=monitors,
            readonly=readonly,
        )

    def _hint(self, name: str) -> str:
        return self._plugins.why_missing()

    def _events(self) -> Events:
        events = self._plugins.events()
        events.monitors = self.monitors
        return events

    # ------------------------------------------------------------------ properties

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin the kernel knows of, with its status (loaded, blocked...)."""
        return list(self._plugins.infos.values())

    def manifest(self) -> list[dict[str, Any]]:
        """Loaded plugins as stored in every run: name, distribution, version, hooks."""
        return self._plugins.manifest()

    def task_type_for(self, spec: TaskSpec) -> TaskType:
        """The task type that owns ``spec`` (a clear error if its plugin is not active)."""
        task_type = self.task_types._entries.get(spec.kind)
        if task_type is not None:
            return task_type.obj
        hint = self._plugins.why_missing(spec.kind)
        raise PluginNotActiveError(
            f"task {spec.short_name!r} is a {spec.kind!r} task, but no loaded plugin provides "
            f"task type {spec.kind!r}"
            + (f" ({hint})" if hint else "")
            + f". Unblock its plugin (remove `-p no:{spec.kind}` / ALIQUOT_DISABLE_PLUGINS) "
            "or install it."
        )

    # ------------------------------------------------------------------ graphs and plans

    def graph(
        self,
        target: object,
        *,
        inputs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Graph:
        """Turn a runnable target into a :class:`~aliquot.Graph`.

        A target is a graph, a task, a list of tasks, a module (its tasks, or
        what a plugin finds in it), or any object a task type's ``plan``
        recognises (an experiment, an operator, a task-graph document).
        """
        from .abc import PlanRequest

        inputs = dict(inputs or {})
        if isinstance(target, Graph):
            if inputs:
                raise AliquotError("inputs cannot be given with a ready-made Graph")
            return target
        request = PlanRequest(inputs, options or {}, self)
        for name, task_type in self.task_types.items():
            planner = getattr(task_type, "plan", None)
            if planner is None:
                continue
            graph = planner(target, request)
            if graph is not None:
                if not isinstance(graph, Graph):
                    raise AliquotError(
                        f"task type {name!r} returned {type(graph).__name__} from plan(), "
                        "not a Graph"
                    )
                return graph
        self._check_plugin_of(target)
        spec = task_spec_of(target)
        if spec is not None:
            return graph_from_tasks([spec], inputs, source=spec.name)
        if isinstance(target, (list, tuple)):
            specs = []
            for item in target:
                item_spec = task_spec_of(item)
                if item_spec is None:
                    raise TargetLoadError(
                        f"{item!r} in the task list is not a task (decorate it with @aliquot.task)"
                    )
                specs.append(item_spec)
            return graph_from_tasks(specs, inputs, source="task list")
        if isinstance(target, types.ModuleType):
            for value in list(vars(target).values()):
                if not isinstance(value, type):
                    self._check_plugin_of(value)
            specs = tasks_in_module(target)
            if not specs:
                raise TargetLoadError(
                    f"module {target.__name__!r} defines no tasks and nothing a plugin can run"
                )
            return graph_from_tasks(specs, inputs, source=target.__name__)
        raise TargetLoadError(
            f"do not know how to run {target!r} ({type(target).__name__}): it is not a task, a "
            "list of tasks, a module, or an object a loaded plugin recognises"
        )

    def _check_plugin_of(self, target: object) -> None:
        """Objects that name the plugin running them (``__aliquot_plugin__``) but that no
        loaded task type planned: say which plugin is missing, not "unknown object"."""
        plugin = getattr(type(target), "__aliquot_plugin__", None)
        if not isinstance(plugin, str):
            return
        hint = self._plugins.why_missing(plugin)
        raise PluginNotActiveError(
            f"{type(target).__name__} objects are run by the {plugin!r} plugin, which is not "
            "loaded" + (f" ({hint})" if hint else "") + f". Unblock it (remove `-p no:{plugin}` / "
            "ALIQUOT_DISABLE_PLUGINS) or install it."
        )

    def plan(
        self,
        target: object,
        *,
        inputs: Mapping[str, Any] | None = None,
        targets: Sequence[str] | None = None,
        executor: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Plan:
        """Plan a run without executing it (``--dry-run``): decisions for every node."""
        graph = self.graph(target, inputs=inputs, options=options)
        return self._plan(graph, targets, executor, options)

    def _plan(
        self,
        graph: Graph,
        targets: Sequence[str] | None,
        executor: str | None,
        options: Mapping[str, Any] | None = None,
    ) -> Plan:
        result = plan(graph, targets, options)
        handled: set[str] = set()
        for _name, registered in self.middleware.items():
            handled.update(getattr(registered, "handles", ()) or ())
        kinds: set[str] = set()
        executors = {executor or self.default_executor}
        nodes = graph.nodes
        for nid in result.order:
            spec = nodes[nid].task
            kinds.add(spec.kind)
            task_options = spec.options
            if task_options.executor:
                executors.add(task_options.executor)
            if (
                task_options.retries
                or task_options.timeout is not None
                or task_options.cache is True
            ):
                missing = _options_needing_middleware(spec) - handled
                if missing:
                    why = self._plugins.why_missing()
                    raise PluginNotActiveError(
                        f"task {spec.short_name!r} sets {', '.join(sorted(missing))} but no "
                        "loaded middleware handles it" + (f" ({why})" if why else "")
                    )
        for nid in result.order:  # one error per missing kind, naming a task of that kind
            spec = nodes[nid].task
            if spec.kind in kinds:
                self.task_type_for(spec)
                kinds.discard(spec.kind)
        for name in executors:
            parse_executor(name)
        self._check_serializer_hints(result)
        for _name, mw in self.middleware.items():
            participant = getattr(mw, "plan", None)
            if participant is not None:
                participant(result, self)
        return finalize(result)

    def _check_serializer_hints(self, result: Plan) -> None:
        """Every serializer a planned task names must be registered (an error now, not a
        warning after the task ran)."""
        known = self.serializers
        seen: set[int] = set()
        nodes = result.graph.nodes
        for nid in result.order:
            spec = nodes[nid].task
            if id(spec) in seen:
                continue
            seen.add(id(spec))
            for output in spec.outputs:
                hint = output.serializer
                if hint is None or hint in known:
                    continue
                if ":" in hint and hint.partition(":")[0] in known:
                    known.get(hint)  # the family's own error says what is wrong
                raise UnknownNameError(
                    "serializer",
                    hint,
                    known.names(),
                    f"task {spec.short_name!r} stores output {output.name!r} with it; "
                    "plugins register serializers (aliquot_register_serializers)",
                )

    # ------------------------------------------------------------------ running

    def run(
        self,
        target: object,
        *,
        inputs: Mapping[str, Any] | None = None,
        targets: Sequence[str] | None = None,
        executor: str | None = None,
        executor_options: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        fail_fast: bool = False,
        persist: str = "targets",
        options: Mapping[str, Any] | None = None,
    ) -> Run:
        """Run ``target`` to completion and return the :class:`~aliquot.Run`.

        Synchronous: it runs trio inside. A failed run is returned with
        ``status == "failed"`` (the task's traceback is on its node record);
        a ``deadline`` (seconds) that passes returns it ``cancelled``. Ctrl-C
        cancels cleanly -- finished nodes stay stored, the run is stored as
        *cancelled* -- and raises :class:`~aliquot.RunInterrupted`. A second
        Ctrl-C interrupts at once.

        Raises:
            GraphError: the target cannot be planned (before anything runs).
        """
        import trio

        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            raise AliquotError("Kernel.run() was called inside trio; use `await kernel.arun(...)`")

        box: dict[str, Any] = {}
        interrupted = threading.Event()

        async def main() -> None:
            with trio.CancelScope() as scope:
                box["scope"] = scope
                box["token"] = trio.lowlevel.current_trio_token()
                await self._arun(
                    target,
                    box,
                    inputs=inputs,
                    targets=targets,
                    executor=executor,
                    executor_options=executor_options,
                    deadline=deadline,
                    fail_fast=fail_fast,
                    persist=persist,
                    options=options,
                )

        def on_sigint(signum: int, frame: Any) -> None:
            if interrupted.is_set() or "token" not in box:
                raise KeyboardInterrupt
            interrupted.set()
            box["token"].run_sync_soon(box["scope"].cancel)

        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            trio.run(main)
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        result: Run = box["run"]
        if interrupted.is_set() and result.status == "cancelled":
            raise RunInterrupted(result)
        return result

    async def arun(
        self,
        target: object,
        *,
        inputs: Mapping[str, Any] | None = None,
        targets: Sequence[str] | None = None,
        executor: str | None = None,
        executor_options: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        fail_fast: bool = False,
        persist: str = "targets",
        options: Mapping[str, Any] | None = None,
    ) -> Run:
        """The same as :meth:`run`, from async code running under trio.

        If the surrounding cancel scope is cancelled, the run is stored as
        *cancelled* and the cancellation propagates as usual.
        """
        box: dict[str, Any] = {}
        await self._arun(
            target,
            box,
            inputs=inputs,
            targets=targets,
            executor=executor,
            executor_options=executor_options,
            deadline=deadline,
            fail_fast=fail_fast,
            persist=persist,
            options=options,
        )
        result: Run = box["run"]
        return result

    async def _arun(
        self,
        target: object,
        box: dict[str, Any],
        *,
        inputs: Mapping[str, Any] | None,
        targets: Sequence[str] | None,
        executor: str | None,
        executor_options: Mapping[str, Any] | None,
        deadline: float | None,
        fail_fast: bool,
        persist: str,
        options: Mapping[str, Any] | None,
    ) -> None:
        self._check_open()
        if self.readonly:
            raise AliquotError("this kernel's store is open read-only; open it normally to run")
        if persist not in ("targets", "none"):
            raise AliquotError(f"persist must be 'targets' or 'none', not {persist!r}")
        if deadline is not None and deadline <= 0:
            raise AliquotError(f"deadline must be > 0 seconds, got {deadline}")
        # Building and planning allocate a lot and run (almost) no user code: the collector
        # waits until they are done (see _collector_paused).
        with _collector_paused():
            graph = self.graph(target, inputs=inputs, options=options)
        with _frozen_heap(len(graph)) as freeze:
            with _collector_paused():
                result = self._plan(graph, targets, executor, options)
                run_executor = executor or self.default_executor
                executors, node_executor = self._make_executors(
                    result, run_executor, executor_options, options
                )
                run = Run(
                    new_run_id(),
                    seq=self.store.next_sequence("runs"),
                    target=_describe(target, graph),
                    targets=result.targets,
                    inputs=graph.inputs,
                    executor=run_executor,
                    options={"fail_fast": fail_fast, "deadline": deadline, **dict(options or {})},
                    plugins=self.manifest(),
                    kernel=self,
                    meta=_checked_meta(graph),
                )
                run.warnings.extend(graph.warnings)
                box["run"] = run
                from ._scheduler import Scheduler  # imports trio: only when something runs

                scheduler = Scheduler(
                    self,
                    result,
                    run,
                    self._events(),
                    executors,
                    node_executor,
                    [mw for _, mw in self.middleware.items()],
                    fail_fast=fail_fast,
                    persist=persist,
                )
            freeze()  # the plan, the scheduler's tables and the run's records
            await scheduler.execute(deadline)

    def _make_executors(
        self,
        result: Plan,
        default: str,
        options: Mapping[str, Any] | None,
        run_options: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Executor], dict[str, str]]:
        specs: dict[str, str] = {}
        node_executor: dict[str, str] = {}
        for nid in result.order:
            spec = result.graph.nodes[nid].task.options.executor or default
            specs.setdefault(spec, spec)
            node_executor[nid] = spec
        if not specs:
            specs[default] = default
        executors: dict[str, Executor] = {}
        for spec in specs:
            name, workers = parse_executor(spec)
            factory = self.executors.get(name)
            extra = dict(options or {}) if spec == default else {}
            # An executor may take options from the run's options (its plugin's run
            # options, e.g. `--dask-address`); explicit executor_options win.
            from_run = getattr(factory, "from_run_options", None)
            if callable(from_run) and run_options:
                extra = {**dict(from_run(run_options)), **extra}
            try:
                executors[spec] = factory(workers=workers, **extra)
            except TypeError as exc:
                raise AliquotError(f"executor {name!r} does not take these options: {exc}") from exc
        return executors, node_executor

    # ------------------------------------------------------------------ stored runs

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Headers of stored runs, newest first (what ``aliquot runs`` lists)."""
        out = []
        for run_id in self.runlog.ids():
            header = self.runlog.header(run_id)
            if header is not None:
                out.append(header)
            if limit is not None and len(out) >= limit:
                break
        return out

    def get_run(self, ref: str) -> Run:
        """A stored run by id, unique id prefix, ``latest`` or ``-N``."""
        run_id = self.runlog.resolve(ref)
        header = self.runlog.header(run_id)
        assert header is not None
        return Run.from_json(
            header, self.runlog.node_records(run_id), kernel=self, meta=self.runlog.meta(run_id)
        )

    def jobs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Job records of every job source (``aliquot_register_job_sources``), newest first."""
        found: list[dict[str, Any]] = []
        for _name, source in self.job_sources.items():
            found.extend(source(self, limit))
        found.sort(key=lambda r: str(r.get("created") or ""), reverse=True)
        return found if limit is None else found[:limit]

    def __getattr__(self, name: str) -> Any:
        """Methods plugins register (``kernel.apply``): see ``aliquot_register_kernel_methods``."""
        methods = self.__dict__.get("kernel_methods")
        if name.startswith("_") or methods is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name not in methods:
            known = ", ".join(methods.names()) or "none"
            raise AttributeError(
                f"a kernel has no attribute {name!r} (methods plugins provide: {known})"
            )
        return types.MethodType(methods.get(name), self)  # name and docstring show in help()

    def live_values(self) -> set[str]:
        """Digests of every value something still refers to (for ``store gc --values``)."""
        live: set[str] = set()
        for run_id in self.runlog.ids():
            for record in self.runlog.node_records(run_id):
                live.update(ref.digest for ref in record.outputs.values())
        for _name, provider in self.value_roots.items():
            live.update(provider(self))
        return live

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Commit staged writes and close the store. Idempotent."""
        if self._closed:
            return
        self._events().kernel_closing(kernel=self)
        self._closed = True
        self._finalizer.detach()
        self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise AliquotError("this kernel is closed; open a new one with Kernel.open()")

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Kernel {self.location!r} plugins={len(self._plugins.loaded())}>"


#: Graphs at least this large run with the objects that exist when they start frozen.
FREEZE_THRESHOLD: Final = 2_000


@contextmanager
def _frozen_heap(size: int) -> Iterator[Callable[[], None]]:
    """Keep the collector from rescanning a large run's long-lived objects.

    A run of 100,000 nodes holds its graph, plan and records for its whole
    duration; every full collection would walk them again, making planning and
    execution time grow faster than the graph. ``gc.freeze()`` moves the objects
    that exist at that moment out of the collector's sight until the run ends
    (``gc.unfreeze()`` then puts them back, and whatever became garbage is
    collected as usual). The context freezes once on entry -- the graph -- and
    again each time the yielded function is called. Nothing is done for small
    graphs, nor when someone else froze objects already: unfreezing theirs would
    undo their choice.
    """
    if size < FREEZE_THRESHOLD or gc.get_freeze_count():
        yield lambda: None
        return
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the kernel builds large structures.

    Graph building and planning allocate several objects per node and free
    almost none; collections in between only rescan them. Reference counting
    still frees everything it can; cycles made meanwhile are collected once
    the collector is back on. The previous state is restored (a host that
    disabled the collector keeps it disabled).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_executor(spec: str) -> tuple[str, int | None]:
    """``"threads:4"`` -> ``("threads", 4)``; ``"inline"`` -> ``("inline", None)``."""
    name, _, count = spec.partition(":")
    name = name.strip()
    if not name:
        raise AliquotError(f"invalid executor {spec!r}: expected NAME or NAME:N")
    if not count:
        return name, None
    try:
        workers = int(count)
    except ValueError:
        raise AliquotError(f"invalid executor {spec!r}: N must be a whole number") from None
    if workers < 1 or workers > 4096:
        raise AliquotError(f"invalid executor {spec!r}: N must be between 1 and 4096")
    return name, workers


def _close_quietly(store: Store) -> None:
    try:
        store.close()
    except Exception:  # interpreter shutdown: nothing useful to report to
        pass


def _options_needing_middleware(spec: TaskSpec) -> set[str]:
    needed = set()
    if spec.options.retries:
        needed.add("retries")
    if spec.options.timeout is not None:
        needed.add("timeout")
    if spec.options.cache is True:
        needed.add("cache")
    return needed


def tasks_in_module(module: types.ModuleType) -> list[TaskSpec]:
    """Tasks defined in ``module`` (not imported into it), in definition order."""
    specs = []
    for value in vars(module).values():
        spec = task_spec_of(value)
        if spec is None:
            continue
        if inspect.isfunction(value) and value.__module__ != module.__name__:
            continue
        specs.append(spec)
    return specs


def _checked_meta(graph: Graph) -> dict[str, Any]:
    import orjson

    try:
        orjson.dumps(graph.meta)
    except TypeError as exc:
        raise AliquotError(
            f"graph.meta must be JSON data (it is stored with the run): {exc}"
        ) from exc
    return graph.meta


def _describe(target: object, graph: Graph) -> str:
    if graph.source:
        return graph.source
    return getattr(target, "__name__", None) or type(target).__name__


@asynccontextmanager
async def open_kernel(
    location: str | os.PathLike[str] = DEFAULT_STORE, **kwargs: Any
) -> AsyncIterator[Kernel]:
    """``async with aliquot.open_kernel(path) as k: run = await k.arun(...)``.

    Takes the same arguments as :meth:`Kernel.open`; the store is committed
    and closed (from a worker thread) when the block ends.
    """
    import trio

    kernel = Kernel.open(location, **kwargs)
    try:
        yield kernel
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(kernel.close)


__all__ = ["Kernel", "open_kernel", "UnknownNameError"]
