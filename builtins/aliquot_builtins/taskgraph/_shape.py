"""The document's shape: what ``spec/taskgraph.schema.json`` says, checked in Python.

:func:`parse` turns a loaded document into a :class:`Model` (parameters, steps
and artifacts in a normal form) and reports every shape problem. It never
looks at tasks: whether a task exists or a reference points anywhere is for
:mod:`._semantics`. The patterns below are the schema's, character for
character (``(?![\\s\\S])`` ends a pattern the same way in ECMA-262 and in
Python, where ``$`` would also match before a final newline).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

from aliquot import NOTHING

from ..tasks import BUILTIN, TypeDefinitionError, TypeExpr, TypeTable, infer
from ._issues import ValidationIssue

IDENTIFIER: Final = r"^[A-Za-z_][A-Za-z0-9_]*(?![\s\S])"
TYPE_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(?![\s\S])"
ARTIFACT_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,99}(?![\s\S])"
PLUGIN: Final = r"^([A-Za-z_][A-Za-z0-9_]*)(@([1-9][0-9]*))?(?![\s\S])"
REFERENCE_START: Final = r"^\$[^$]"

TOP_KEYS: Final = ("types", "parameters", "plugins", "modules", "graph", "artifacts")
STEP_KEYS: Final = ("task", "args", "kwargs", "dependencies")
PARAMETER_KEYS: Final = ("type", "default", "description")

_IDENTIFIER = re.compile(IDENTIFIER)
_TYPE_NAME = re.compile(TYPE_NAME)
_ARTIFACT_NAME = re.compile(ARTIFACT_NAME)
_PLUGIN = re.compile(PLUGIN)
_REFERENCE_START = re.compile(REFERENCE_START)

Form = Literal["positional", "keyword", "mixed"]


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and _IDENTIFIER.search(name) is not None


@attrs.frozen
class ParameterDef:
    """A parameter: its type, its default (``NOTHING``: required) and description."""

    name: str
    type: TypeExpr
    default: Any = NOTHING
    description: str | None = None

    @property
    def required(self) -> bool:
        return self.default is NOTHING


@attrs.frozen
class StepDef:
    """A step in normal form, whichever of the three forms it was written in."""

    name: str
    task: str
    form: Form
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    dependencies: tuple[str, ...] = ()
    #: The short form's value was null (``step: {task: }``): one positional None.
    null_value: bool = False


@attrs.frozen
class ArtifactDef:
    name: str
    contents: str
    task: str
    args: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class PluginPin:
    name: str
    snapshot: int | None
    index: int


@attrs.define
class Model:
    """What could be read from a document; names that exist but could not be read are
    in ``broken`` (references to them are not reported again)."""

    types: TypeTable = attrs.field(factory=TypeTable)
    parameters: dict[str, ParameterDef] = attrs.field(factory=dict)
    steps: dict[str, StepDef] = attrs.field(factory=dict)
    artifacts: dict[str, ArtifactDef] = attrs.field(factory=dict)
    plugins: list[PluginPin] | None = None
    modules: list[tuple[int, str]] = attrs.field(factory=list)
    broken_steps: set[str] = attrs.field(factory=set)
    broken_parameters: set[str] = attrs.field(factory=set)
    broken_types: set[str] = attrs.field(factory=set)


def _key(name: object) -> str:
    return name if isinstance(name, str) else repr(name)


def parse(doc: object) -> tuple[Model, list[ValidationIssue]]:
    """The document's model and every shape problem in it."""
    model = Model()
    issues: list[ValidationIssue] = []

    def add(location: str, code: str, message: str, **where: str | None) -> None:
        issues.append(ValidationIssue(location, code, message, **where))

    if not isinstance(doc, Mapping):
        add(
            "document",
            "bad-document",
            f"a task graph is a mapping with a 'graph' key, not {_kind(doc)}",
        )
        return model, issues
    for key in doc:
        if key not in TOP_KEYS:
            add(
                _key(key),
                "bad-document",
                f"unknown top-level key {_key(key)!r} (allowed: {', '.join(TOP_KEYS)})",
            )

    types = doc.get("types")
    if "types" in doc and not isinstance(types, Mapping):
        add(
            "types",
            "bad-document",
            f"'types' must be a mapping of names to types, not {_kind(types)}",
        )
    elif isinstance(types, Mapping):
        for name, structure in types.items():
            where = f"types.{_key(name)}"
            if not isinstance(name, str) or not _TYPE_NAME.search(name) or name in BUILTIN:
                add(
                    where,
                    "bad-type",
                    f"custom type name {_key(name)!r} must be a dotted identifier and not a "
                    f"builtin type ({', '.join(BUILTIN)})",
                )
                if isinstance(name, str):
                    model.broken_types.add(name)
                continue
            try:
                model.types.define(name, structure)
            except TypeDefinitionError as exc:
                add(where, "bad-type", str(exc))
                model.broken_types.add(name)

    params = doc.get("parameters")
    if "parameters" in doc and not isinstance(params, Mapping):
        add(
            "parameters",
            "bad-document",
            f"'parameters' must be a mapping of names to defaults, not {_kind(params)}",
        )
    elif isinstance(params, Mapping):
        for name, value in params.items():
            where = f"parameters.{_key(name)}"
            if not is_identifier(name):
                add(where, "bad-name", f"parameter name {_key(name)!r} is not an identifier")
                continue
            parsed = _parameter(name, value, model.types, where, add)
            if parsed is None:
                model.broken_parameters.add(name)
            else:
                model.parameters[name] = parsed

    plugins = doc.get("plugins")
    if "plugins" in doc and not isinstance(plugins, list):
        add("plugins", "bad-document", f"'plugins' must be a list of names, not {_kind(plugins)}")
    elif isinstance(plugins, list):
        model.plugins = []
        for index, entry in enumerate(plugins):
            match = _PLUGIN.search(entry) if isinstance(entry, str) else None
            if match is None:
                add(
                    f"plugins[{index}]",
                    "bad-plugin",
                    f"{entry!r} is not a task-plugin name, optionally pinned as NAME@SNAPSHOT "
                    "(a positive whole number)",
                )
                continue
            snapshot = int(match.group(3)) if match.group(3) else None
            if any(pin.name == match.group(1) for pin in model.plugins):
                add(
                    f"plugins[{index}]",
                    "duplicate-plugin",
                    f"task plugin {match.group(1)!r} is named more than once",
                )
                continue
            model.plugins.append(PluginPin(match.group(1), snapshot, index))

    modules = doc.get("modules")
    if "modules" in doc and not isinstance(modules, list):
        add(
            "modules",
            "bad-document",
            f"'modules' must be a list of module names or .py paths, not {_kind(modules)}",
        )
    elif isinstance(modules, list):
        for index, entry in enumerate(modules):
            if not isinstance(entry, str) or not entry:
                add(
                    f"modules[{index}]",
                    "bad-module",
                    f"{entry!r} is not a module name or a .py path",
                )
                continue
            model.modules.append((index, entry))

    graph = doc.get("graph")
    if "graph" not in doc:
        add("graph", "bad-document", "the document has no 'graph' (the steps to run)")
    elif not isinstance(graph, Mapping) or not graph:
        add(
            "graph",
            "bad-document",
            f"'graph' must be a mapping of step names to steps with at least one step, "
            f"not {_kind(graph)}",
        )
    else:
        for name, value in graph.items():
            where = f"graph.{_key(name)}"
            if not is_identifier(name):
                add(
                    where,
                    "bad-name",
                    f"step name {_key(name)!r} is not an identifier (letters, digits and '_'; "
                    "no dots)",
                    step=_key(name),
                )
                continue
            step = _step(name, value, where, add)
            if step is None:
                model.broken_steps.add(name)
            else:
                model.steps[name] = step

    artifacts = doc.get("artifacts")
    if "artifacts" in doc and not isinstance(artifacts, Mapping):
        add(
            "artifacts",
            "bad-document",
            f"'artifacts' must be a mapping of artifact names to artifacts, not {_kind(artifacts)}",
        )
    elif isinstance(artifacts, Mapping):
        for name, value in artifacts.items():
            where = f"artifacts.{_key(name)}"
            if not isinstance(name, str) or not _ARTIFACT_NAME.search(name):
                add(
                    where,
                    "bad-name",
                    f"artifact name {_key(name)!r} is not an identifier of at most 100 characters",
                )
                continue
            artifact = _artifact(name, value, where, add)
            if artifact is not None:
                model.artifacts[name] = artifact
    return model, issues


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "an empty mapping" if not value else "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _parameter(
    name: str, value: object, table: TypeTable, where: str, add: Any
) -> ParameterDef | None:
    if not isinstance(value, Mapping):
        return ParameterDef(name, infer(value), value)
    unknown = [k for k in value if k not in PARAMETER_KEYS]
    ok = True
    if unknown:
        add(
            where,
            "bad-parameter",
            f"parameter {name!r} has unknown key(s) {[_key(k) for k in unknown]} (a mapping "
            "declares a parameter: type, default, description; to give a mapping as the "
            "default, write {default: {...}})",
        )
        ok = False
    description = value.get("description")
    if "description" in value and not isinstance(description, str):
        add(where, "bad-parameter", f"the description of parameter {name!r} must be a string")
        ok = False
    typ: TypeExpr | None = None
    if "type" in value:
        try:
            typ = table.normalize(value["type"], where)
        except TypeDefinitionError as exc:
            add(where, "bad-parameter", str(exc))
            ok = False
    if not ok:
        return None
    default = value.get("default", NOTHING)
    if typ is None:
        typ = "any" if default is NOTHING else infer(default)
    return ParameterDef(name, typ, default, description)


def _dependencies(value: object, where: str, add: Any, step: str) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(dict.fromkeys(value))
    add(
        f"{where}.dependencies",
        "bad-step",
        f"'dependencies' must be a step name or a list of step names, not {_kind(value)}",
        step=step,
        argument="dependencies",
    )
    return None


def _string_keys(value: Mapping[Any, Any]) -> bool:
    return all(isinstance(k, str) for k in value)


def _step(name: str, value: object, where: str, add: Any) -> StepDef | None:
    if not isinstance(value, Mapping):
        add(
            where,
            "bad-step",
            f"step {name!r} must be a mapping such as {{task_name: [args]}}, "
            f"{{task_name: {{kwargs}}}} or {{task: task_name, args: [...], kwargs: {{...}}}}, "
            f"not {_kind(value)}",
            step=name,
        )
        return None
    deps: tuple[str, ...] | None = ()
    if "dependencies" in value:
        deps = _dependencies(value["dependencies"], where, add, name)
    if "task" in value:
        ok = deps is not None
        unknown = [k for k in value if k not in STEP_KEYS]
        if unknown:
            add(
                where,
                "bad-step",
                f"step {name!r} names its task with 'task', so it may only have the keys "
                f"{', '.join(STEP_KEYS)}; unknown: {[_key(k) for k in unknown]}",
                step=name,
            )
            ok = False
        task = value["task"]
        if not isinstance(task, str):
            add(
                f"{where}.task",
                "bad-step",
                f"'task' must be a task name, not {_kind(task)}",
                step=name,
            )
            ok = False
        args = value.get("args", [])
        if not isinstance(args, list):
            add(
                f"{where}.args",
                "bad-step",
                f"'args' must be a list of positional values, not {_kind(args)}",
                step=name,
            )
            ok = False
        kwargs = value.get("kwargs", {})
        if not isinstance(kwargs, Mapping) or not _string_keys(kwargs):
            add(
                f"{where}.kwargs",
                "bad-step",
                f"'kwargs' must be a mapping of keyword names to values, not {_kind(kwargs)}",
                step=name,
            )
            ok = False
        if not ok or deps is None:
            return None
        return StepDef(name, task, "mixed", tuple(args), dict(kwargs), deps)
    keys = [k for k in value if k != "dependencies"]
    if len(keys) != 1:
        if keys:
            what = f"names {len(keys)} tasks ({', '.join(_key(k) for k in keys)})"
        else:
            what = "names no task"
        add(
            where,
            "bad-step",
            f"step {name!r} {what}: a step is {{task_name: arguments}} plus, optionally, "
            "'dependencies' (use the 'task:' form for args and kwargs together)",
            step=name,
        )
        return None
    task = keys[0]
    if not isinstance(task, str):
        add(where, "bad-step", f"task name {task!r} is not a string", step=name)
        return None
    arguments = value[task]
    if deps is None:
        return None
    if isinstance(arguments, list):
        return StepDef(name, task, "positional", tuple(arguments), {}, deps)
    if isinstance(arguments, Mapping):
        if not _string_keys(arguments):
            add(
                f"{where}.{task}",
                "bad-step",
                f"keyword names of step {name!r} must be strings",
                step=name,
            )
            return None
        return StepDef(name, task, "keyword", (), dict(arguments), deps)
    return StepDef(name, task, "positional", (arguments,), {}, deps, arguments is None)


def _artifact(name: str, value: object, where: str, add: Any) -> ArtifactDef | None:
    if not isinstance(value, Mapping):
        add(
            where,
            "bad-artifact",
            f"artifact {name!r} must be a mapping {{contents: $step.output, task: {{name: "
            f"ArtifactTask, args: {{...}}}}}}, not {_kind(value)}",
        )
        return None
    ok = True
    unknown = [k for k in value if k not in ("contents", "task")]
    if unknown:
        add(
            where,
            "bad-artifact",
            f"artifact {name!r} has unknown key(s) {[_key(k) for k in unknown]} "
            "(allowed: contents, task)",
        )
        ok = False
    contents = value.get("contents")
    if not isinstance(contents, str) or not _REFERENCE_START.search(contents):
        add(
            f"{where}.contents",
            "bad-artifact",
            f"the contents of artifact {name!r} must be a reference such as $step.output, "
            f"not {_kind(contents) if 'contents' in value else 'missing'}",
        )
        ok = False
    task = value.get("task")
    task_name: object = None
    args: object = {}
    if not isinstance(task, Mapping):
        add(
            f"{where}.task",
            "bad-artifact",
            f"the task of artifact {name!r} must be a mapping {{name: ArtifactTask, args: "
            f"{{...}}}}, not {_kind(task) if 'task' in value else 'missing'}",
        )
        ok = False
    else:
        bad = [k for k in task if k not in ("name", "args")]
        if bad:
            add(
                f"{where}.task",
                "bad-artifact",
                f"the task of artifact {name!r} has unknown key(s) {[_key(k) for k in bad]} "
                "(allowed: name, args)",
            )
            ok = False
        task_name = task.get("name")
        if not isinstance(task_name, str):
            add(
                f"{where}.task.name",
                "bad-artifact",
                f"the task of artifact {name!r} needs a 'name' (an artifact task), "
                f"not {_kind(task_name) if 'name' in task else 'missing'}",
            )
            ok = False
        args = task.get("args", {})
        if not isinstance(args, Mapping) or not _string_keys(args):
            add(
                f"{where}.task.args",
                "bad-artifact",
                f"the args of artifact {name!r} must be a mapping of names to values, "
                f"not {_kind(args)}",
            )
            ok = False
    if not ok:
        return None
    assert isinstance(contents, str)
    assert isinstance(task_name, str)
    assert isinstance(args, Mapping)
    return ArtifactDef(name, contents, task_name, dict(args))
