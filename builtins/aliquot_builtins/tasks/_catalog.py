"""The tasks a task graph can name, and how a name finds one.

A :class:`Catalog` holds :class:`TaskInfo` entries: function tasks and artifact
tasks from task plugins in the store (their latest snapshots, or the snapshots
a document pins), from Python modules, and the builtin artifact tasks. The
metadata is enough to validate a graph; the code is imported only when a task
is loaded to run.

Names: a task's qualified name is ``plugin.file.function`` (a task plugin),
``module.function`` (a Python module) or ``builtin.ClassName`` (builtin
artifact tasks). Any dotted suffix of it -- down to the bare function name --
finds it when exactly one task has that suffix; when several do, the error
lists them. Builtin artifact tasks give way to a task plugin's class of the
same short name (write ``builtin.StringArtifactTask`` to get the builtin).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs

from aliquot import TaskSpec, task_spec_of

from ._errors import AmbiguousTaskError, UnknownTaskError
from ._register import KIND, Signature, signature_of

TaskKind = Literal["function", "artifact"]


@attrs.frozen(eq=False)
class TaskInfo:
    """What a graph needs to know about one task, before any of its code runs.

    Attributes:
        name: qualified name.
        kind: ``function`` or ``artifact``.
        signature: inputs, outputs and types (function tasks).
        origin: where it comes from, for messages (``task plugin hello_world
            (snapshot 3)``, ``module demo``, ``builtin``).
        plugin, snapshot: the task plugin and snapshot id, for tasks stored as
            task plugins (None otherwise).
    """

    name: str
    kind: TaskKind
    loader: Callable[[], Any] = attrs.field(repr=False)
    signature: Signature | None = None
    origin: str = ""
    description: str | None = None
    plugin: str | None = None
    snapshot: int | None = None
    builtin: bool = False

    @property
    def short_name(self) -> str:
        return self.name.rpartition(".")[2]

    def load(self) -> Any:
        """The task: a :class:`~aliquot.TaskSpec` (function) or a class (artifact).

        Importing a task plugin's code happens here, and its errors name the
        file and line.
        """
        return self.loader()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "origin": self.origin,
            "description": self.description,
        }
        if self.plugin is not None:
            out["plugin"] = self.plugin
            out["snapshot"] = self.snapshot
        if self.signature is not None:
            out.update(self.signature.to_json())
        return out


def info_from_spec(spec: TaskSpec) -> TaskInfo:
    return TaskInfo(
        name=spec.name,
        kind="function",
        loader=lambda: spec,
        signature=signature_of(spec),
        origin=str(spec.extra.get("origin") or ""),
        description=spec.extra.get("description"),
    )


def info_from_artifact_class(cls: type, name: str | None = None, **fields: Any) -> TaskInfo:
    return TaskInfo(
        name=name or f"{cls.__module__}.{cls.__qualname__}",
        kind="artifact",
        loader=lambda: cls,
        origin=fields.pop("origin", f"module {cls.__module__}"),
        description=fields.pop("description", (cls.__doc__ or "").strip() or None),
        **fields,
    )


class Catalog:
    """Tasks by name (see the module docstring)."""

    def __init__(self, infos: Iterable[TaskInfo] = ()) -> None:
        self._by_name: dict[str, TaskInfo] = {}
        #: Task-plugin snapshots the catalog's tasks come from: name -> snapshot summary.
        self.snapshots: dict[str, dict[str, Any]] = {}
        for info in infos:
            self.add(info)

    def add(self, info: TaskInfo) -> None:
        old = self._by_name.get(info.name)
        if old is not None and old is not info:
            raise AmbiguousTaskError(info.name, [f"{old.name} ({old.origin})", info.origin])
        self._by_name[info.name] = info

    def add_spec(self, spec: TaskSpec) -> None:
        self.add(info_from_spec(spec))

    def add_object(self, obj: Any) -> None:
        """A registered function, or an artifact task class."""
        spec = task_spec_of(obj)
        if spec is not None and spec.kind == KIND:
            self.add_spec(spec)
        elif isinstance(obj, type) and _is_artifact_task(obj):
            self.add(info_from_artifact_class(obj))
        else:
            raise UnknownTaskError(
                f"{obj!r} is neither a registered task (@aliquot.register) nor an artifact task"
            )

    def add_module(self, module: Any) -> None:
        """Every registered task and artifact task class defined in ``module``."""
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) != module.__name__:
                continue
            spec = task_spec_of(value)
            if spec is not None and spec.kind == KIND:
                self.add_spec(spec)
            elif isinstance(value, type) and _is_artifact_task(value):
                self.add(info_from_artifact_class(value))

    def add_builtins(self) -> None:
        """The builtin artifact tasks, as ``builtin.<ClassName>``."""
        from ..artifacts import BUILTIN_ARTIFACT_TASKS

        for cls_name, cls in BUILTIN_ARTIFACT_TASKS.items():
            if f"builtin.{cls_name}" not in self._by_name:
                self.add(
                    info_from_artifact_class(
                        cls, f"builtin.{cls_name}", origin="builtin", builtin=True
                    )
                )

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def all(self, kind: TaskKind | None = None) -> list[TaskInfo]:
        return [i for i in self._by_name.values() if kind is None or i.kind == kind]

    def candidates(self, name: str, kind: TaskKind | None = None) -> list[TaskInfo]:
        exact = self._by_name.get(name)
        if exact is not None and (kind is None or exact.kind == kind):
            return [exact]
        suffix = "." + name
        found = [
            i
            for i in self._by_name.values()
            if (kind is None or i.kind == kind) and i.name.endswith(suffix)
        ]
        if len(found) > 1 and any(not i.builtin for i in found):
            found = [i for i in found if not i.builtin]
        return found

    def resolve(self, name: str, kind: TaskKind | None = None) -> TaskInfo:
        """The one task ``name`` means; :class:`UnknownTaskError` or :class:`AmbiguousTaskError`."""
        found = self.candidates(name, kind)
        if len(found) == 1:
            return found[0]
        if found:
            raise AmbiguousTaskError(name, sorted(f"{i.name} ({i.origin})" for i in found))
        what = {"function": "function task", "artifact": "artifact task", None: "task"}[kind]
        known = [i.name for i in self.all(kind)]
        short = sorted({n.rpartition(".")[2] for n in known})
        close = difflib.get_close_matches(name.rpartition(".")[2], short, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        if not known:
            hint = " (no tasks are registered: add a task plugin, or name Python modules)"
        raise UnknownTaskError(f"no {what} is named {name!r}{hint}")


def _is_artifact_task(cls: type) -> bool:
    from ..artifacts import ArtifactTask

    return issubclass(cls, ArtifactTask) and cls is not ArtifactTask
