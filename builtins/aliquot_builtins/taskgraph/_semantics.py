"""Validation against a catalog: tasks, references, arguments, types, cycles.

:func:`analyze` takes the :class:`~._shape.Model` of a document and the
:class:`~aliquot_builtins.tasks.Catalog` of tasks it may name, and returns an
:class:`Analysis`: every issue found, plus -- for a graph without issues --
what :mod:`._build` needs (each step's task and the argument bound to each of
its inputs). One pass finds everything; a problem is reported once, where it
is, and what depends on it stays quiet (a reference to a step whose task is
unknown is not reported again).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from ..artifacts import serializer_name, validate_args
from ..tasks import (
    AmbiguousTaskError,
    Catalog,
    InputInfo,
    OutputInfo,
    TaskInfo,
    TypeDefinitionError,
    TypeExpr,
    TypeTable,
    UnknownTaskError,
    assignable,
    check,
    describe,
    literal_type,
)
from ._issues import ValidationIssue
from ._shape import ArtifactDef, Model, StepDef, is_identifier

#: A parameter value that could not be read (reported where it was read).
INVALID: Any = type("InvalidValue", (), {"__repr__": lambda self: "<invalid>"})()


@attrs.frozen
class Reference:
    """What a reference string resolved to: a parameter, or one output of a step."""

    text: str
    type: TypeExpr = "any"
    parameter: str | None = None
    step: str | None = None
    output: str | None = None


@attrs.define
class ResolvedStep:
    step: StepDef
    info: TaskInfo
    #: input name -> the document's value (references still as strings).
    bound: dict[str, Any]
    varargs: list[Any]
    varkw: dict[str, Any]
    varargs_name: str | None
    varkw_name: str | None
    outputs: tuple[OutputInfo, ...]


@attrs.define
class ResolvedArtifact:
    artifact: ArtifactDef
    task: type
    serializer: str


@attrs.define
class Analysis:
    model: Model
    issues: list[ValidationIssue] = attrs.field(factory=list)
    steps: dict[str, ResolvedStep] = attrs.field(factory=dict)
    artifacts: dict[str, ResolvedArtifact] = attrs.field(factory=dict)
    refs: dict[str, Reference] = attrs.field(factory=dict)
    #: Steps some other step or artifact takes a value from.
    consumed: set[str] = attrs.field(factory=set)
    #: Parameter values for the run (only when values were given).
    values: dict[str, Any] = attrs.field(factory=dict)


# ---------------------------------------------------------------------------
# References and literals
# ---------------------------------------------------------------------------


def reference_of(value: object) -> tuple[str, str | None] | str | None:
    """``(name, output)`` for a reference, a message for a malformed one, None for a literal.

    ``$x`` and ``$x.out`` are references; ``$$x`` is the literal ``$x`` and
    ``$`` alone the literal ``$``.
    """
    if not isinstance(value, str) or not value.startswith("$") or value == "$":
        return None
    if value.startswith("$$"):
        return None
    body = value[1:]
    name, dot, output = body.partition(".")
    if not is_identifier(name) or (dot and not is_identifier(output)):
        return (
            f"{value!r} is not a reference ($parameter, $step or $step.output); "
            f"write '$${body}' for the literal text '{value}'"
        )
    return name, (output if dot else None)


def unescape(value: Any) -> Any:
    """A literal as the task receives it: ``$$x`` becomes ``$x``, inside containers too."""
    if isinstance(value, str):
        return value[1:] if value.startswith("$$") else value
    if isinstance(value, list):
        return [unescape(v) for v in value]
    if isinstance(value, tuple):
        return tuple(unescape(v) for v in value)
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    return value


def reference_strings(value: Any) -> Iterator[str]:
    """Every string in ``value`` that is a reference or looks like a malformed one."""
    if isinstance(value, str):
        if reference_of(value) is not None:
            yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from reference_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from reference_strings(item)


# ---------------------------------------------------------------------------
# The analysis
# ---------------------------------------------------------------------------


class _Analyzer:
    def __init__(self, model: Model, catalog: Catalog) -> None:
        self.model = model
        self.catalog = catalog
        self.result = Analysis(model)
        self.table = TypeTable()
        self.table.merge(model.types)
        self.infos: dict[str, TaskInfo] = {}
        self.edges: dict[str, set[str]] = {name: set() for name in model.steps}
        self._resolved: dict[str, Reference | tuple[str, str] | None] = {}

    def add(
        self,
        location: str,
        code: str,
        message: str,
        step: str | None = None,
        argument: str | None = None,
    ) -> None:
        self.result.issues.append(ValidationIssue(location, code, message, step, argument))

    # -- names ---------------------------------------------------------------

    def resolve_tasks(self) -> None:
        model = self.model
        for name, step in model.steps.items():
            where = f"graph.{name}"
            if name in model.parameters or name in model.broken_parameters:
                self.add(
                    where,
                    "name-collision",
                    f"step {name!r} has the name of a parameter; '${name}' would be ambiguous, "
                    "so rename one of them",
                    name,
                )
            try:
                info = self.catalog.resolve(step.task, "function")
            except AmbiguousTaskError as exc:
                self.add(where, "ambiguous-task", str(exc), name)
                continue
            except UnknownTaskError as exc:
                message = str(exc)
                if self.catalog.candidates(step.task, "artifact"):
                    message += (
                        f"; {step.task!r} is an artifact task: name it under 'artifacts:' "
                        "to store a step's output with it"
                    )
                self.add(where, "unknown-task", message, name)
                continue
            if info.signature is None:
                self.add(where, "unknown-task", f"task {info.name!r} has no signature", name)
                continue
            self.infos[name] = info
            try:
                self.table.merge(info.signature.types)
            except TypeDefinitionError as exc:
                self.add(
                    where,
                    "type-conflict",
                    f"task {info.name!r} defines a type differently from the document or "
                    f"another task: {exc}",
                    name,
                )

    def undefined(self, expr: TypeExpr) -> list[str]:
        return [n for n in self.table.undefined(expr) if n not in self.model.broken_types]

    def check_types(self) -> None:
        model = self.model
        for name in model.types.to_json():
            missing = self.undefined(model.types.structure(name))
            if missing:
                self.add(
                    f"types.{name}",
                    "undefined-type",
                    f"custom type {name!r} uses undefined type(s) {missing}; define them under "
                    "'types:'",
                )
        for name, param in model.parameters.items():
            where = f"parameters.{name}"
            missing = self.undefined(param.type)
            if missing:
                self.add(
                    where,
                    "undefined-type",
                    f"parameter {name!r} has type {describe(param.type)}, which uses undefined "
                    f"type(s) {missing}; define them under 'types:'",
                )
                continue
            if not param.required:
                why = check(param.default, param.type, self.table)
                if why is not None:
                    self.add(
                        where,
                        "type-mismatch",
                        f"the default of parameter {name!r} should be {describe(param.type)}, "
                        f"but {why}",
                    )
        for name, info in self.infos.items():
            assert info.signature is not None
            used: list[str] = []
            typed: list[TypeExpr] = [i.type for i in info.signature.inputs]
            typed += [o.type for o in info.signature.outputs]
            for typ in typed:
                for missing_name in self.undefined(typ):
                    if missing_name not in used:
                        used.append(missing_name)
            if used:
                self.add(
                    f"graph.{name}",
                    "undefined-type",
                    f"task {info.name!r} uses type(s) {used}, which are not defined; define "
                    "them under 'types:'",
                    name,
                )

    # -- references ------------------------------------------------------------

    def resolve(self, text: str) -> Reference | tuple[str, str] | None:
        """A reference, ``(code, message)`` for a bad one, None for one to something broken."""
        if text in self._resolved:
            return self._resolved[text]
        found = self._resolve(text)
        self._resolved[text] = found
        if isinstance(found, Reference):
            self.result.refs[text] = found
        return found

    def _resolve(self, text: str) -> Reference | tuple[str, str] | None:
        model = self.model
        parsed = reference_of(text)
        if parsed is None:
            raise AssertionError(f"{text!r} is not a reference")
        if isinstance(parsed, str):
            return ("bad-reference", parsed)
        name, output = parsed
        if name in model.parameters:
            if output is not None:
                return (
                    "unknown-reference",
                    f"{text!r}: {name!r} is a parameter, which has no outputs; write '${name}'",
                )
            return Reference(text, model.parameters[name].type, parameter=name)
        if name in model.broken_parameters or name in model.broken_steps:
            return None
        if name in model.steps:
            info = self.infos.get(name)
            if info is None or info.signature is None:
                return None
            outputs = info.signature.outputs
            names = [o.name for o in outputs]
            if output is None:
                if len(outputs) == 1:
                    return Reference(text, outputs[0].type, step=name, output=outputs[0].name)
                if not outputs:
                    return (
                        "unknown-output",
                        f"{text!r}: step {name!r} (task {info.name!r}) has no outputs",
                    )
                return (
                    "ambiguous-output",
                    f"{text!r}: step {name!r} has {len(outputs)} outputs ({', '.join(names)}); "
                    f"write '${name}.<output>'",
                )
            for out in outputs:
                if out.name == output:
                    return Reference(text, out.type, step=name, output=output)
            close = difflib.get_close_matches(output, names, n=1)
            hint = f"; did you mean '${name}.{close[0]}'?" if close else ""
            listed = ", ".join(names) if names else "none"
            return (
                "unknown-output",
                f"{text!r}: step {name!r} (task {info.name!r}) has no output {output!r} "
                f"(outputs: {listed}){hint}",
            )
        known = [*model.parameters, *model.steps]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '${close[0]}'?" if close else ""
        if name in model.artifacts:
            hint = f"; {name!r} is an artifact, and artifacts cannot be referred to" + hint
        return (
            "unknown-reference",
            f"{text!r} refers to {name!r}, which is neither a parameter nor a step{hint}",
        )

    def check_references(
        self, value: Any, location: str, step: str | None, argument: str | None
    ) -> None:
        for text in reference_strings(value):
            parsed = reference_of(text)
            if isinstance(parsed, tuple) and step is not None:
                target = parsed[0]
                if target in self.edges:
                    self.edges[step].add(target)
                    if target != step:
                        self.result.consumed.add(target)
            found = self.resolve(text)
            if isinstance(found, tuple):
                self.add(location, found[0], found[1], step, argument)

    # -- steps -----------------------------------------------------------------

    def steps(self) -> None:
        model = self.model
        for name, step in model.steps.items():
            where = f"graph.{name}"
            info = self.infos.get(name)
            labelled = self.labelled(step, info)
            for value, argument in labelled:
                self.check_references(value, f"{where}.{argument}", name, argument)
            for dep in step.dependencies:
                if dep in self.edges:
                    self.edges[name].add(dep)
                elif dep not in model.broken_steps:
                    close = difflib.get_close_matches(dep, list(model.steps), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    if dep in model.parameters:
                        hint = f"; {dep!r} is a parameter (steps depend on steps)"
                    self.add(
                        f"{where}.dependencies",
                        "unknown-dependency",
                        f"step {name!r} depends on {dep!r}, which is not a step{hint}",
                        name,
                        "dependencies",
                    )
            if info is not None:
                self.bind(step, info, labelled)

    def labelled(self, step: StepDef, info: TaskInfo | None) -> list[tuple[Any, str]]:
        """Each argument value with its label: the input it binds to, ``args[i]`` or the
        keyword."""
        positional: list[InputInfo] = []
        varpos: InputInfo | None = None
        if info is not None and info.signature is not None:
            inputs = info.signature.inputs
            positional = [i for i in inputs if i.kind in ("positional", "positional_or_keyword")]
            varpos = next((i for i in inputs if i.kind == "var_positional"), None)
        out: list[tuple[Any, str]] = []
        for index, value in enumerate(step.args):
            if index < len(positional):
                label = positional[index].name
            elif varpos is not None:
                label = f"{varpos.name}[{index - len(positional)}]"
            else:
                label = f"args[{index}]"
            out.append((value, label))
        out.extend((value, key) for key, value in step.kwargs.items())
        return out

    def bind(self, step: StepDef, info: TaskInfo, labelled: list[tuple[Any, str]]) -> None:
        assert info.signature is not None
        name = step.name
        where = f"graph.{name}"
        inputs = info.signature.inputs
        positional = [i for i in inputs if i.kind in ("positional", "positional_or_keyword")]
        varpos = next((i for i in inputs if i.kind == "var_positional"), None)
        varkw = next((i for i in inputs if i.kind == "var_keyword"), None)
        by_keyword = {
            i.name: i for i in inputs if i.kind in ("positional_or_keyword", "keyword", "extra")
        }
        positional_only = {i.name for i in inputs if i.kind == "positional"}
        bound: dict[str, Any] = {}
        varargs: list[Any] = []
        varkw_values: dict[str, Any] = {}
        expected: list[tuple[Any, TypeExpr, str]] = []
        count = len(step.args)
        for index, value in enumerate(step.args):
            if index < len(positional):
                bound[positional[index].name] = value
                expected.append((value, positional[index].type, positional[index].name))
            elif varpos is not None:
                varargs.append(value)
                expected.append((value, varpos.type, labelled[index][1]))
        if count > len(positional) and varpos is None:
            names = ", ".join(i.name for i in positional) or "none"
            hint = ""
            if step.null_value:
                hint = f" (an empty value is one null argument; write '{step.task}: []' for none)"
            first = len(positional)
            self.add(
                f"{where}.args[{first}]",
                "too-many-positional",
                f"task {info.name!r} takes at most {len(positional)} positional value(s) "
                f"({names}), but step {name!r} gives {count}{hint}",
                name,
                f"args[{first}]",
            )
        for key, value in step.kwargs.items():
            target = by_keyword.get(key)
            if target is not None:
                if key in bound:
                    self.add(
                        f"{where}.{key}",
                        "duplicate-input",
                        f"input {key!r} of task {info.name!r} is given both positionally and "
                        "by keyword",
                        name,
                        key,
                    )
                    continue
                if target.kind == "extra":
                    varkw_values[key] = value
                else:
                    bound[key] = value
                expected.append((value, target.type, key))
            elif key in positional_only:
                self.add(
                    f"{where}.{key}",
                    "positional-only",
                    f"input {key!r} of task {info.name!r} is positional-only; give it by position",
                    name,
                    key,
                )
            elif varkw is not None:
                varkw_values[key] = value
                expected.append((value, varkw.type, key))
            else:
                known = list(by_keyword)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(
                    f"{where}.{key}",
                    "unknown-keyword",
                    f"task {info.name!r} has no input {key!r} (inputs: "
                    f"{', '.join(known) or 'none'}; it takes no **kwargs){hint}",
                    name,
                    key,
                )
        for item in inputs:
            if item.kind in ("var_positional", "var_keyword") or not item.required:
                continue
            if item.name in bound or (item.kind == "extra" and item.name in varkw_values):
                continue
            self.add(
                f"{where}.{item.name}",
                "missing-input",
                f"task {info.name!r} needs input {item.name!r} ({describe(item.type)}), which "
                f"step {name!r} does not give",
                name,
                item.name,
            )
        for value, typ, argument in expected:
            self.check_value(value, typ, f"{where}.{argument}", name, argument, info)
        self.result.steps[name] = ResolvedStep(
            step,
            info,
            bound,
            varargs,
            varkw_values,
            varpos.name if varpos is not None else None,
            varkw.name if varkw is not None else None,
            info.signature.outputs,
        )

    def static_type(self, value: Any) -> TypeExpr:
        if isinstance(value, str) and reference_of(value) is not None:
            found = self.resolve(value)
            return found.type if isinstance(found, Reference) else "any"
        if isinstance(value, (list, tuple)):
            return {"tuple": [self.static_type(v) for v in value]}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {"mapping": {k: self.static_type(v) for k, v in value.items()}}
            return "any"
        return literal_type(value)

    def check_value(
        self,
        value: Any,
        expected: TypeExpr,
        location: str,
        step: str,
        argument: str,
        info: TaskInfo,
    ) -> None:
        if expected == "any" or self.undefined(expected):
            return
        refs = list(reference_strings(value))
        if not refs:
            why = check(unescape(value), expected, self.table)
            if why is not None:
                self.add(
                    location,
                    "type-mismatch",
                    f"input {argument!r} of task {info.name!r} expects {describe(expected)}, "
                    f"but {why}",
                    step,
                    argument,
                )
            return
        if any(not isinstance(self.resolve(r), Reference) for r in refs):
            return  # the reference itself is reported
        source = self.static_type(value)
        if self.undefined(source) or assignable(source, expected, self.table):
            return
        what = (
            f"{value} is {describe(source)}"
            if isinstance(value, str)
            else (f"the value is {describe(source)}")
        )
        self.add(
            location,
            "type-mismatch",
            f"input {argument!r} of task {info.name!r} expects {describe(expected)}, but "
            f"{what}, which does not fit",
            step,
            argument,
        )

    # -- artifacts -------------------------------------------------------------

    def artifacts(self) -> None:
        for name, artifact in self.model.artifacts.items():
            where = f"artifacts.{name}"
            found = self.resolve(artifact.contents)
            if isinstance(found, tuple):
                self.add(f"{where}.contents", found[0], found[1])
            elif isinstance(found, Reference) and found.step is not None:
                self.result.consumed.add(found.step)
            try:
                info = self.catalog.resolve(artifact.task, "artifact")
            except (UnknownTaskError, AmbiguousTaskError) as exc:
                code = "ambiguous-task" if isinstance(exc, AmbiguousTaskError) else "unknown-task"
                message = str(exc)
                if code == "unknown-task" and self.catalog.candidates(artifact.task, "function"):
                    message += f"; {artifact.task!r} is a function task: use it as a step"
                self.add(f"{where}.task.name", code, message)
                continue
            task = info.load()
            problems = validate_args(task, artifact.args)
            for problem in problems:
                key = _argument_key(problem, artifact.args)
                self.add(
                    f"{where}.task.args" + (f".{key}" if key else ""),
                    "artifact-args",
                    f"artifact task {info.name!r}: {problem}",
                    None,
                    key,
                )
            if problems:
                continue
            try:
                serializer = serializer_name(task, artifact.args, name)
            except Exception as exc:  # TaskDefinitionError, or what the task's code raised
                self.add(
                    f"{where}.task.name",
                    "artifact-task",
                    f"artifact task {info.name!r} cannot store artifact {name!r}: {exc}",
                )
                continue
            if isinstance(found, Reference):
                self.result.artifacts[name] = ResolvedArtifact(artifact, task, serializer)

    # -- cycles ----------------------------------------------------------------

    def cycles(self) -> None:
        for cycle in find_cycles(list(self.model.steps), self.edges):
            first = cycle[0]
            if len(cycle) == 1:
                message = f"step {first!r} depends on itself"
            else:
                path = " -> ".join([*cycle, first])
                message = f"steps {path} form a cycle: each waits for the next"
            self.add(f"graph.{first}", "cycle", message, first)

    # -- run-time values ---------------------------------------------------------

    def values(self, values: Mapping[str, Any]) -> None:
        model = self.model
        known = list(model.parameters)
        for name in values:
            if name not in model.parameters and name not in model.broken_parameters:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(
                    "parameters",
                    "unknown-parameter",
                    f"a value was given for {name!r}, which is not a parameter (parameters: "
                    f"{', '.join(known) or 'none'}){hint}",
                    None,
                    name,
                )
        for name, param in model.parameters.items():
            where = f"parameters.{name}"
            if name in values:
                value = values[name]
                if value is not INVALID and not self.undefined(param.type):
                    why = check(value, param.type, self.table)
                    if why is not None:
                        self.add(
                            where,
                            "type-mismatch",
                            f"the value given for parameter {name!r} should be "
                            f"{describe(param.type)}, but {why}",
                        )
                self.result.values[name] = value
            elif param.required:
                self.add(
                    where,
                    "missing-parameter",
                    f"parameter {name!r} ({describe(param.type)}) has no default and no value "
                    f"was given; give one with -P {name}=VALUE (or inputs={{{name!r}: ...}})",
                )
            else:
                self.result.values[name] = param.default


def _argument_key(problem: str, args: Mapping[str, Any]) -> str | None:
    """The argument a problem from ``validate_args`` is about (its messages start with it)."""
    for key in sorted(args, key=len, reverse=True):
        if problem.startswith(f"argument {key!r}"):
            return key
    if problem.startswith("argument '"):
        return problem[len("argument '") :].partition("'")[0] or None
    return None


def find_cycles(order: list[str], edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Cycles among ``order``'s nodes (``edges[a]``: what ``a`` waits for), each once,
    starting at its first node in ``order``; nodes on no cycle are peeled off first."""
    position = {name: index for index, name in enumerate(order)}
    remaining = set(order)
    cycles: list[list[str]] = []
    while True:
        _peel(remaining, edges)
        if not remaining:
            return cycles
        start = min(remaining, key=position.__getitem__)
        path = [start]
        seen = {start: 0}
        node = start
        while True:
            following = min((m for m in edges[node] if m in remaining), key=position.__getitem__)
            if following in seen:
                cycle = path[seen[following] :]
                break
            seen[following] = len(path)
            path.append(following)
            node = following
        head = min(range(len(cycle)), key=lambda i: position[cycle[i]])
        cycles.append(cycle[head:] + cycle[:head])
        remaining.difference_update(cycle)


def _peel(remaining: set[str], edges: Mapping[str, set[str]]) -> None:
    """Remove nodes that wait for nothing, or that nothing waits for, until none is left
    that is not on (or between) cycles."""
    waits = {n: {m for m in edges[n] if m in remaining} for n in remaining}
    waited: dict[str, set[str]] = {n: set() for n in remaining}
    for n, targets in waits.items():
        for m in targets:
            waited[m].add(n)
    queue = [n for n in remaining if not waits[n] or not waited[n]]
    while queue:
        n = queue.pop()
        if n not in remaining:
            continue
        remaining.discard(n)
        for m in list(waits[n]):
            waited[m].discard(n)
            if m in remaining and not waited[m]:
                queue.append(m)
        for m in list(waited[n]):
            waits[m].discard(n)
            if m in remaining and not waits[m]:
                queue.append(m)


def analyze(
    model: Model,
    catalog: Catalog,
    values: Mapping[str, Any] | None = None,
    issues: list[ValidationIssue] | None = None,
) -> Analysis:
    """Every issue of ``model`` against ``catalog`` (and, when given, the run's parameter
    values), appended to ``issues`` (shape issues found before)."""
    analyzer = _Analyzer(model, catalog)
    if issues:
        analyzer.result.issues.extend(issues)
    analyzer.resolve_tasks()
    analyzer.check_types()
    analyzer.steps()
    analyzer.artifacts()
    analyzer.cycles()
    if values is not None:
        analyzer.values(values)
    return analyzer.result
