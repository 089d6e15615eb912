"""Finding, loading and calling plugins.

The loading order is part of the contract (``spec/plugins.md``):

1. read blocks -- ``-p no:NAME`` and ``ALIQUOT_DISABLE_PLUGINS=a,b`` -- and
   block *before* anything is imported;
2. load the builtins (entry points of the ``aliquot`` distribution);
3. load ``-p NAME`` plugins (entry-point name or dotted module) and plugin
   objects passed in code;
4. autoload every other entry point, unless ``ALIQUOT_DISABLE_PLUGIN_AUTOLOAD=1``;
5. load ``ALIQUOT_PLUGINS=a,b``;
6. check pending hooks: an implementation of a hook that does not exist (a
   misspelt name) is an error of that plugin.

Every plugin is loaded on its own: one that fails is recorded with its
distribution and cause and the others still load. ``Kernel.open`` then refuses
to run (a silently missing cacher would silently change results), while
``aliquot --help`` and ``aliquot plugins`` show the failure.

There is no global plugin manager: each :class:`PluginManager` (one per
kernel, one per CLI invocation) owns its own pluggy manager.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import pluggy

from . import hookspecs
from ._errors import PluginLoadError, PluginUnavailable

if TYPE_CHECKING:
    from importlib_metadata import EntryPoint

    from ._graph import Node
    from ._kernel import Kernel
    from ._outcome import Outcome
    from ._planner import Plan
    from ._runs import Run

GROUP: Final = "aliquot.plugins"
KERNEL_DISTRIBUTION: Final = "aliquot"

Status = Literal["loaded", "blocked", "error", "unavailable"]


class PluginWarning(UserWarning):
    """An observer hook raised; it was disabled for the rest of the run."""


@attrs.frozen
class PluginInfo:
    """What ``aliquot plugins`` shows and every run manifest stores, per plugin."""

    name: str
    status: Status
    builtin: bool = False
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    entry_point: str | None = None
    hooks: tuple[str, ...] = ()
    error: str | None = None
    source: str = "entry point"
    #: (kind, name, plugin) of every registration this plugin replaced with replace=True.
    replaces: tuple[tuple[str, str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "builtin": self.builtin,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "entry_point": self.entry_point,
            "hooks": list(self.hooks),
            "error": self.error,
            "source": self.source,
            "replaces": [{"kind": k, "name": n, "plugin": p} for k, n, p in self.replaces],
        }


def _split_env(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


DistInfo = tuple[str | None, str | None]


def _entry_points() -> tuple[list[EntryPoint], dict[str, list[EntryPoint]], dict[int, DistInfo]]:
    """Entry points of the group, names declared by several distributions, and the
    (distribution name, version) of each entry point, keyed by ``id(entry point)``.

    Each distribution's metadata is parsed once (``dist.name`` parses the
    METADATA file on every access, and ``--help`` must stay fast).
    """
    import importlib_metadata

    seen: dict[str, EntryPoint] = {}
    clashes: dict[str, list[EntryPoint]] = {}
    parsed: dict[int, DistInfo] = {}
    info: dict[int, DistInfo] = {}
    for ep in importlib_metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        if dist is None:
            info[id(ep)] = (None, None)
        else:
            if id(dist) not in parsed:
                try:
                    meta = dist.metadata
                    parsed[id(dist)] = (meta["Name"], meta["Version"])
                except Exception:  # broken metadata must not break loading of the others
                    parsed[id(dist)] = (None, None)
            info[id(ep)] = parsed[id(dist)]
        first = seen.setdefault(ep.name, ep)
        if first is not ep and info[id(first)][0] != info[id(ep)][0]:
            clashes.setdefault(ep.name, [first]).append(ep)
    return list(seen.values()), clashes, info


class PluginManager:
    """Loads plugins into a private pluggy manager and keeps a record of each."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.errors: list[PluginLoadError] = []
        self._plugin_objects: dict[str, object] = {}
        self._dist_info: dict[int, DistInfo] = {}
        #: Callbacks ``(hook_name, kwargs)`` told about every registration call.
        self.monitors: list[Monitor] = []

    # ------------------------------------------------------------------ loading

    def load(
        self,
        *,
        block: Sequence[str] = (),
        load: Sequence[str] = (),
        objects: Sequence[object] = (),
        autoload: bool | None = None,
        builtins: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Load plugins in the documented order. Failures are recorded, not raised."""
        env = os.environ if env is None else env
        blocked = [*block, *_split_env(env.get("ALIQUOT_DISABLE_PLUGINS"))]
        for name in blocked:
            self._pm.set_blocked(name)
        if autoload is None:
            autoload = not _env_flag(env.get("ALIQUOT_DISABLE_PLUGIN_AUTOLOAD"))

        eps, clashes, self._dist_info = _entry_points()
        for name, declared in clashes.items():
            dists = ", ".join(f"{self._dist_of(e)[0]} ({e.value})" for e in declared)
            self.errors.append(
                PluginLoadError(
                    name,
                    f"the entry point name {name!r} is declared by several distributions: {dists}",
                )
            )
            self._pm.set_blocked(name)
            self.infos[name] = self._ep_info(
                declared[0],
                "error",
                builtin=False,
                error=(f"the entry point name is declared by several distributions: {dists}"),
            )
        eps = [ep for ep in eps if ep.name not in clashes]
        by_name = {ep.name: ep for ep in eps}
        by_module = {ep.value: ep for ep in eps if ":" not in ep.value}
        builtin_eps = [ep for ep in eps if self._dist_of(ep)[0] == KERNEL_DISTRIBUTION]
        other_eps = [ep for ep in eps if self._dist_of(ep)[0] != KERNEL_DISTRIBUTION]

        # 2. builtins
        for ep in builtin_eps:
            if builtins:
                self._load_entry_point(ep, builtin=True)
            else:
                self.infos[ep.name] = self._ep_info(ep, "blocked", builtin=True)
        # 3. -p NAME and plugin objects
        for name in load:
            self._load_named(name, by_name, by_module, source="-p")
        for obj in objects:
            self._register_object(obj, source="object")
        # 4. autoload
        for ep in other_eps:
            if ep.name in self.infos:
                continue
            if autoload:
                self._load_entry_point(ep, builtin=False)
            elif self._pm.is_blocked(ep.name):
                self.infos[ep.name] = self._ep_info(ep, "blocked", builtin=False)
        # 5. ALIQUOT_PLUGINS
        for name in _split_env(env.get("ALIQUOT_PLUGINS")):
            self._load_named(name, by_name, by_module, source="ALIQUOT_PLUGINS")
        # 6. pending hooks
        self._check_pending()
        for name in blocked:
            if name not in self.infos:
                self.infos[name] = PluginInfo(name, "blocked", source="blocked")

    def _dist_of(self, ep: EntryPoint) -> DistInfo:
        return self._dist_info.get(id(ep), (None, None))

    def _ep_info(self, ep: EntryPoint, status: Status, *, builtin: bool, **kw: Any) -> PluginInfo:
        dist, version = self._dist_of(ep)
        return PluginInfo(
            ep.name,
            status,
            builtin=builtin,
            distribution=dist,
            version=version,
            module=ep.value.partition(":")[0],
            entry_point=ep.value,
            **kw,
        )

    def _load_entry_point(self, ep: EntryPoint, *, builtin: bool, source: str = "") -> None:
        source = source or ("builtin" if builtin else "entry point")
        if self._pm.is_blocked(ep.name):
            self.infos[ep.name] = self._ep_info(ep, "blocked", builtin=builtin, source=source)
            return
        dist, version = self._dist_of(ep)
        try:
            plugin = ep.load()
        except PluginUnavailable as exc:
            self.infos[ep.name] = self._ep_info(
                ep, "unavailable", builtin=builtin, error=str(exc), source=source
            )
            return
        except (Exception, SystemExit) as exc:
            # SystemExit: a plugin calling sys.exit() at import must not end the process.
            self._fail(
                PluginLoadError(
                    ep.name, exc, entry_point=ep.value, distribution=dist, version=version
                ),
                self._ep_info(ep, "error", builtin=builtin, source=source),
                exc,
            )
            return
        self._register(plugin, ep.name, self._ep_info(ep, "loaded", builtin=builtin, source=source))

    def _load_named(
        self,
        name: str,
        by_name: Mapping[str, EntryPoint],
        by_module: Mapping[str, EntryPoint],
        *,
        source: str,
    ) -> None:
        if name in self.infos:
            return
        # A dotted module that is an installed plugin's entry point is that plugin
        # (loaded once, under its entry-point name).
        ep = by_name.get(name) or by_module.get(name)
        if ep is not None:
            if ep.name in self.infos:
                return
            builtin = self._dist_of(ep)[0] == KERNEL_DISTRIBUTION
            self._load_entry_point(ep, builtin=builtin, source=source)
            return
        info = PluginInfo(name, "loaded", module=name, source=source)
        if self._pm.is_blocked(name):
            self.infos[name] = attrs.evolve(info, status="blocked")
            return
        try:
            module = importlib.import_module(name)
        except PluginUnavailable as exc:
            self.infos[name] = attrs.evolve(info, status="unavailable", error=str(exc))
            return
        except (Exception, SystemExit) as exc:
            missing_itself = isinstance(exc, ModuleNotFoundError) and exc.name == name
            hint = " (no entry point and no module of that name)" if missing_itself else ""
            self._fail(
                PluginLoadError(name, f"{type(exc).__name__}: {exc}{hint}"),
                attrs.evolve(info, status="error"),
                exc,
            )
            return
        self._register(module, name, info)

    def _register_object(self, obj: object, *, source: str) -> None:
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{id(obj):x}"
        if self._pm.is_blocked(name):
            self.infos[name] = PluginInfo(name, "blocked", source=source)
            return
        module = getattr(obj, "__module__", None) if not inspect.ismodule(obj) else obj.__name__
        self._register(obj, name, PluginInfo(name, "loaded", module=module, source=source))

    def _register(self, plugin: object, name: str, info: PluginInfo) -> None:
        def failure(cause: BaseException | str) -> PluginLoadError:
            return PluginLoadError(
                name,
                cause,
                entry_point=info.entry_point,
                distribution=info.distribution,
                version=info.version,
                stage="registration",
            )

        existing = self._pm.get_name(plugin) if self._pm.is_registered(plugin) else None
        if existing is not None:
            # The same module reached twice (e.g. `-p pkg.plugin` and its entry point).
            self.infos[name] = attrs.evolve(
                info, status="loaded", source=f"{info.source} (same plugin as {existing!r})"
            )
            return
        try:
            self._pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self._fail(failure(exc), attrs.evolve(info, status="error"), exc)
            return
        problem = self._shape_problem(plugin)
        if problem:
            self._pm.unregister(plugin)
            self._fail(failure(problem), attrs.evolve(info, status="error"), None)
            return
        hooks = tuple(sorted(hc.name for hc in self._pm.get_hookcallers(plugin) or ()))
        self.infos[name] = attrs.evolve(info, hooks=hooks)
        self._plugin_objects[name] = plugin

    def _shape_problem(self, plugin: object) -> str | None:
        for caller in self._pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if impl.hookwrapper or impl.wrapper:
                    return (
                        f"hook {caller.name!r} is implemented as a wrapper; aliquot hooks do not "
                        "take wrappers (use middleware for around-behaviour)"
                    )
                if inspect.iscoroutinefunction(impl.function) or inspect.isasyncgenfunction(
                    impl.function
                ):
                    return (
                        f"hook {caller.name!r} is implemented with async def; aliquot hooks are "
                        "synchronous (do async work in the objects you register)"
                    )
        return None

    def _check_pending(self) -> None:
        known = hookspecs.all_hook_names()
        for name, plugin in list(self._plugin_objects.items()):
            unknown = []
            for caller in self._pm.get_hookcallers(plugin) or ():
                if caller.spec is None and not all(
                    i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin
                ):
                    close = difflib.get_close_matches(caller.name, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    unknown.append(f"{caller.name!r}{hint}")
            if unknown:
                info = self.infos[name]
                self._pm.unregister(plugin)
                del self._plugin_objects[name]
                self._fail(
                    PluginLoadError(
                        name,
                        f"unknown hook {', '.join(unknown)}",
                        entry_point=info.entry_point,
                        distribution=info.distribution,
                        version=info.version,
                        stage="hook check",
                    ),
                    attrs.evolve(info, status="error"),
                    None,
                )
        # Everything left must now pass pluggy's own check.
        self._pm.check_pending()

    def _fail(self, error: PluginLoadError, info: PluginInfo, cause: BaseException | None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self.errors.append(error)
        self.infos[info.name] = attrs.evolve(info, error=error.cause_text)

    # ------------------------------------------------------------------ queries

    def raise_errors(self) -> None:
        """Raise the first load error (mentioning the others), if any."""
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) > 1:
            others = ", ".join(repr(e.name) for e in self.errors[1:])
            first.args = (f"{first.args[0]} (also failed: {others}; see `aliquot plugins`)",)
        raise first

    def loaded(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.status == "loaded"]

    def manifest(self) -> list[dict[str, Any]]:
        """Every loaded plugin: name, distribution, version, module, hooks (for runs)."""
        return [i.to_json() for i in self.infos.values() if i.status == "loaded"]

    def why_missing(self, plugin_hint: str | None = None) -> str:
        """A hint listing plugins that are not active, for 'unknown name' errors."""
        inactive = [i for i in self.infos.values() if i.status != "loaded"]
        if plugin_hint:
            inactive = [i for i in inactive if i.name == plugin_hint] or inactive
        if not inactive:
            return ""
        parts = [f"{i.name} ({i.status}{': ' + i.error if i.error else ''})" for i in inactive]
        return "plugins not active: " + ", ".join(parts)

    # ------------------------------------------------------------------ calling

    def call_registration(
        self, hook: str, make_register: Callable[[str], Callable[..., Any]]
    ) -> None:
        """Call a registration hook implementation by implementation.

        Each implementation gets a ``register`` bound to its own plugin name,
        so every registered object is attributed. An implementation that
        raises is a load error of its plugin (recorded; the kernel then refuses
        to run).
        """
        caller = getattr(self._pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            register = make_register(impl.plugin_name)
            kwargs = {"register": register}
            for monitor in self.monitors:
                monitor(hook, {"register": register, "plugin": impl.plugin_name})
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except (Exception, SystemExit) as exc:
                info = self.infos.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "loaded")
                self._fail(
                    PluginLoadError(
                        impl.plugin_name,
                        exc,
                        entry_point=info.entry_point,
                        distribution=info.distribution,
                        version=info.version,
                        stage=hook,
                    ),
                    attrs.evolve(info, status="error"),
                    exc,
                )

    def events(self) -> Events:
        """A dispatcher for event hooks (one per run: disabled observers stay disabled)."""
        return Events(self._pm)

    @property
    def pluggy(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for tools; kernel code uses the typed facade)."""
        return self._pm


_EVENTS: Final = (
    "aliquot_kernel_started",
    "aliquot_kernel_closing",
    "aliquot_run_planned",
    "aliquot_run_started",
    "aliquot_node_started",
    "aliquot_node_finished",
    "aliquot_run_finished",
)

Monitor = Callable[[str, Mapping[str, Any]], None]


class Events:
    """The typed facade over event hooks.

    One method per hook, so every call site is checked by the type checker.
    Implementations are called one by one: one that raises is reported (a
    :class:`PluginWarning` and a line in the run's warnings) and disabled for
    this dispatcher's lifetime, and the others still run. Monitors (the test
    kit's hook recorder) see every call.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._impls: dict[str, list[tuple[str, Callable[..., Any], tuple[str, ...]]]] = {}
        for name in _EVENTS:
            caller = getattr(pm.hook, name)
            self._impls[name] = [
                (i.plugin_name, i.function, tuple(i.argnames))
                for i in reversed(caller.get_hookimpls())
            ]
        self.monitors: list[Monitor] = []
        self.reports: list[str] = []

    def active(self, name: str) -> bool:
        """Whether calling ``name`` would do anything (lets hot paths skip building kwargs)."""
        return bool(self._impls[name] or self.monitors)

    def _emit(self, name: str, kwargs: dict[str, Any]) -> None:
        for monitor in self.monitors:
            monitor(name, kwargs)
        impls = self._impls[name]
        if not impls:
            return
        for entry in list(impls):
            plugin, function, argnames = entry
            try:
                function(*[kwargs[a] for a in argnames])
            except Exception as exc:
                impls.remove(entry)
                message = (
                    f"plugin {plugin!r} raised in {name}: {type(exc).__name__}: {exc}; "
                    "it is disabled for the rest of this run"
                )
                self.reports.append(message)
                warnings.warn(message, PluginWarning, stacklevel=2)

    def kernel_started(self, *, kernel: Kernel) -> None:
        self._emit("aliquot_kernel_started", {"kernel": kernel})

    def kernel_closing(self, *, kernel: Kernel) -> None:
        self._emit("aliquot_kernel_closing", {"kernel": kernel})

    def run_planned(self, *, run: Run, plan: Plan) -> None:
        self._emit("aliquot_run_planned", {"run": run, "plan": plan})

    def run_started(self, *, run: Run) -> None:
        self._emit("aliquot_run_started", {"run": run})

    def node_started(self, *, run: Run, node: Node) -> None:
        self._emit("aliquot_node_started", {"run": run, "node": node})

    def node_finished(self, *, run: Run, node: Node, outcome: Outcome, duration: float) -> None:
        self._emit(
            "aliquot_node_finished",
            {"run": run, "node": node, "outcome": outcome, "duration": duration},
        )

    def run_finished(self, *, run: Run) -> None:
        self._emit("aliquot_run_finished", {"run": run})


def plugin_names(infos: Iterable[PluginInfo]) -> list[str]:
    return [i.name for i in infos]
