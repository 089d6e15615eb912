"""Filling the registries from the registration hooks (shared by the kernel and the CLI).

The CLI fills them too -- into registries it then throws away -- so that a
plugin whose registration fails shows up as broken in ``aliquot plugins`` and
``--help`` exactly as it would stop ``aliquot run``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._errors import RegistrationError
from ._plugins import PluginManager
from ._registry import Registry

if TYPE_CHECKING:
    import click

    from ._kernel import Kernel
    from ._runs import Run
    from .abc import ExecutorFactory, Middleware, Serializer, StoreFactory, TaskType

_NAME: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
#: kind -> (hook, label, attributes a registered object needs)
KINDS: Final = {
    "serializers": (
        "aliquot_register_serializers",
        "serializer",
        ("name", "version", "dumps", "loads"),
    ),
    "stores": ("aliquot_register_stores", "store", ("name", "open")),
    "executors": ("aliquot_register_executors", "executor", ("name",)),
    "task_types": ("aliquot_register_task_types", "task type", ("name", "bind", "unpack")),
    "middleware": ("aliquot_register_middleware", "middleware", ("name", "order")),
    "commands": ("aliquot_register_commands", "command", ("name",)),
    "run_options": ("aliquot_register_run_options", "run option", ("name", "opts")),
}
#: Kinds registered as ``register(name, callable)``.
NAMED_KINDS: Final = ("value_roots", "run_views", "kernel_methods", "job_sources")
#: Commands the CLI defines itself; a plugin may not register these names.
CORE_COMMANDS: Final = frozenset({"run", "runs", "show", "get", "plugins", "store"})


class Registries:
    """Every registry a kernel has, filled from one plugin manager."""

    def __init__(self, hint: Callable[[str], str] | None = None) -> None:
        self.serializers: Registry[Serializer] = Registry("serializer", hint=hint)
        self.stores: Registry[StoreFactory] = Registry("store", hint=hint)
        self.executors: Registry[ExecutorFactory] = Registry("executor", hint=hint)
        self.task_types: Registry[TaskType] = Registry("task type", hint=hint)
        self.middleware: Registry[Middleware] = Registry("middleware", hint=hint)
        self.commands: Registry[click.Command] = Registry("command", hint=hint)
        self.run_options: Registry[click.Option] = Registry("run option", hint=hint)
        self.run_views: Registry[Callable[[Run], Any]] = Registry("run view", hint=hint)
        self.value_roots: Registry[Callable[[Kernel], Iterable[str]]] = Registry(
            "value root", hint=hint
        )
        self.kernel_methods: Registry[Callable[..., Any]] = Registry("kernel method", hint=hint)
        self.job_sources: Registry[Callable[[Kernel, int | None], list[dict[str, Any]]]] = Registry(
            "job source", hint=hint
        )

    def fill(self, manager: PluginManager) -> None:
        """Call every registration hook; failures become load errors of their plugins."""
        for kind, (hook, label, needs) in KINDS.items():
            registry: Registry[Any] = getattr(self, kind)
            manager.call_registration(hook, _registrar(registry, kind, label, needs))
        manager.call_registration("aliquot_register_value_roots", self._named(self.value_roots))
        manager.call_registration("aliquot_register_run_views", self._named(self.run_views))
        manager.call_registration(
            "aliquot_register_kernel_methods", self._named(self.kernel_methods)
        )
        manager.call_registration("aliquot_register_job_sources", self._named(self.job_sources))
        self._note_replacements(manager)

    @staticmethod
    def _named(registry: Registry[Any]) -> Callable[[str], Callable[..., None]]:
        """A registrar for kinds registered as ``register(name, callable)``."""

        def make_register(plugin: str) -> Callable[..., None]:
            def register(name: str, obj: Callable[..., Any], *, replace: bool = False) -> None:
                if not isinstance(name, str) or not _NAME.match(name):
                    raise RegistrationError(
                        f"plugin {plugin!r} registered a {registry.kind} with an invalid name "
                        f"{name!r}"
                    )
                if not callable(obj):
                    raise RegistrationError(
                        f"plugin {plugin!r} registered {registry.kind} {name!r}, "
                        "which is not callable"
                    )
                registry.add(name, obj, plugin, replace=replace)

            return register

        return make_register

    def _note_replacements(self, manager: PluginManager) -> None:
        """Record every ``replace=True`` override on the replacing plugin's info."""
        for kind in (*KINDS, *NAMED_KINDS):
            registry: Registry[Any] = getattr(self, kind)
            for entry in registry.entries():
                info = manager.infos.get(entry.plugin)
                if entry.replaced is None or info is None:
                    continue
                note = (registry.kind, entry.name, entry.replaced)
                if note not in info.replaces:
                    manager.infos[entry.plugin] = attrs.evolve(
                        info, replaces=(*info.replaces, note)
                    )


def _registrar(
    registry: Registry[Any], kind: str, label: str, needs: tuple[str, ...]
) -> Callable[[str], Callable[..., None]]:
    def make_register(plugin: str) -> Callable[..., None]:
        def register(obj: Any, *, replace: bool = False) -> None:
            missing = [attr for attr in needs if not hasattr(obj, attr)]
            if missing:
                raise RegistrationError(
                    f"plugin {plugin!r} registered {obj!r} as a {label}, but it has no "
                    f"{', '.join(missing)} (see aliquot.abc)"
                )
            name = obj.name
            if kind == "run_options":
                import click

                if not isinstance(obj, click.Option):
                    raise RegistrationError(
                        f"plugin {plugin!r} registered {obj!r} as a run option; it must be a "
                        "click.Option"
                    )
            if kind == "commands":
                import click

                if not isinstance(obj, click.Command):
                    raise RegistrationError(
                        f"plugin {plugin!r} registered {obj!r} as a command; it must be a "
                        "click.Command"
                    )
                if name in CORE_COMMANDS:
                    raise RegistrationError(
                        f"plugin {plugin!r} registered command {name!r}, which is a core command"
                    )
            elif kind != "run_options" and (not isinstance(name, str) or not _NAME.match(name)):
                raise RegistrationError(
                    f"plugin {plugin!r} registered a {label} with an invalid name {name!r}"
                )
            registry.add(name, obj, plugin, replace=replace)

        return register

    return make_register
