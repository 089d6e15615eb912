""":class:`TaskGraph`: a task-graph document, loaded, validated and turned into a graph."""

from __future__ import annotations

import copy
import hashlib
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import yaml

from aliquot import AliquotError, Graph, load_target

from ..tasks import (
    AmbiguousTaskError,
    Catalog,
    TaskPluginImportError,
    catalog_for,
    coerce_text,
    describe,
)
from ._build import build
from ._issues import GraphValidationError, ValidationIssue
from ._semantics import INVALID, Analysis, analyze
from ._shape import Model, parse


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last one silently, which hides a copy-paste mistake in a step)."""


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = seen.get(key)
        except TypeError:
            continue  # unhashable: construct_mapping says so below
        if earlier is not None:
            raise _DuplicateKeyError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {earlier.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; a syntax error or a duplicate key is a :class:`GraphValidationError`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = (
            f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "document"
        )
        problem = getattr(exc, "problem", None) or str(exc)
        code = "duplicate-key" if isinstance(exc, _DuplicateKeyError) else "yaml-syntax"
        raise GraphValidationError(
            [
                ValidationIssue(
                    where, code, f"{problem}" if code == "duplicate-key" else f"YAML: {problem}"
                )
            ],
            source,
        ) from None


class TaskGraph:
    """A task-graph document: parameters, steps that call tasks, artifacts to store.

    The format (Dioptra's entrypoint YAML) is in ``spec/taskgraph.md``. Build
    one with :meth:`from_yaml`, :meth:`load` or :meth:`from_dict`; run it with
    ``kernel.run(graph, inputs={...})`` or ``aliquot run FILE.yaml -P name=value``.
    Everything is validated -- and every problem reported at once -- before
    anything runs.

    ``tasks`` adds registered functions (``@aliquot.register``) and artifact
    task classes to the tasks the document can name, besides its ``modules``
    and ``plugins``.
    """

    #: The plugin that runs these objects (named by the kernel when it is blocked).
    __aliquot_plugin__: ClassVar[str] = "taskgraph"

    def __init__(
        self,
        document: Any,
        *,
        source: str = "",
        base_dir: str | os.PathLike[str] | None = None,
        tasks: Iterable[object] = (),
    ) -> None:
        self._document = copy.deepcopy(document)
        self.source = source
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self._tasks = list(tasks)
        self._parsed: tuple[Model, list[ValidationIssue]] | None = None

    # ------------------------------------------------------------------ building

    @classmethod
    def from_yaml(
        cls,
        text: str,
        *,
        source: str = "<yaml>",
        base_dir: str | os.PathLike[str] | None = None,
        tasks: Iterable[object] = (),
    ) -> TaskGraph:
        """Parse YAML text (safely; a duplicate key is an error).

        Raises:
            GraphValidationError: the text is not YAML, or repeats a key.
        """
        return cls(load_yaml(text, source), source=source, base_dir=base_dir, tasks=tasks)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, tasks: Iterable[object] = ()) -> TaskGraph:
        """Read a YAML file; relative ``modules`` paths are relative to its folder."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise AliquotError(f"cannot read task graph {file}: {exc.strerror or exc}") from exc
        return cls.from_yaml(text, source=str(path), base_dir=file.absolute().parent, tasks=tasks)

    @classmethod
    def from_dict(
        cls,
        document: Mapping[str, Any],
        *,
        source: str = "<dict>",
        base_dir: str | os.PathLike[str] | None = None,
        tasks: Iterable[object] = (),
    ) -> TaskGraph:
        """A document already loaded (a copy is kept)."""
        return cls(document, source=source, base_dir=base_dir, tasks=tasks)

    # ------------------------------------------------------------------ reading

    @property
    def document(self) -> Any:
        """A copy of the document."""
        return copy.deepcopy(self._document)

    @property
    def digest(self) -> str:
        """SHA-256 of the document's canonical JSON (what the run records)."""
        blob = orjson.dumps(
            self._document,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
            default=repr,
        )
        return hashlib.sha256(blob).hexdigest()

    def _model(self) -> tuple[Model, list[ValidationIssue]]:
        if self._parsed is None:
            self._parsed = parse(self._document)
        return self._parsed

    @property
    def step_names(self) -> list[str]:
        return list(self._model()[0].steps)

    @property
    def artifact_names(self) -> list[str]:
        return list(self._model()[0].artifacts)

    def shape_issues(self) -> list[ValidationIssue]:
        """Problems with the document's shape alone (what the JSON Schema checks)."""
        return list(self._model()[1])

    # ------------------------------------------------------------------ tasks

    def plugin_pins(self) -> dict[str, int | None] | None:
        """The task plugins the document names (name -> pinned snapshot or None), or None
        when it names none (every task plugin in the store is available)."""
        model = self._model()[0]
        if model.plugins is None:
            return None
        return {pin.name: pin.snapshot for pin in model.plugins}

    def catalog(self, kernel: object) -> Catalog:
        """The tasks this document can name in ``kernel``'s store: the task plugins it
        names (or all of them), the builtin artifact tasks. Its ``modules`` and ``tasks``
        join in :meth:`validate`."""
        return catalog_for(kernel, plugins=self.plugin_pins())

    def _with_modules(self, catalog: Catalog) -> tuple[Catalog, list[ValidationIssue]]:
        model = self._model()[0]
        if not model.modules and not self._tasks:
            return catalog, []
        issues: list[ValidationIssue] = []
        extra = Catalog()
        for index, entry in model.modules:
            where = f"modules[{index}]"
            try:
                module = self._import(entry)
                extra.add_module(module)
            except AmbiguousTaskError as exc:
                issues.append(ValidationIssue(where, "module-error", str(exc)))
            except AliquotError as exc:
                issues.append(ValidationIssue(where, "module-error", str(exc)))
        for obj in self._tasks:
            extra.add_object(obj)
        merged = Catalog(list(catalog))
        merged.snapshots = dict(catalog.snapshots)
        known = {info.name for info in catalog}
        for info in extra:
            if info.name not in known:
                merged.add(info)
        return merged, issues

    def _import(self, entry: str) -> types.ModuleType:
        if ":" in entry:
            raise AliquotError(f"{entry!r} names an object; name a module or a .py file")
        if entry.endswith(".py") or "/" in entry or os.sep in entry:
            path = Path(entry)
            if not path.is_absolute():
                path = (self.base_dir or Path.cwd()) / path
            if not path.is_file():
                raise AliquotError(f"no such Python file: {path}")
            found = load_target(str(path))
        else:
            found = load_target(entry)
        if not isinstance(found, types.ModuleType):
            raise AliquotError(f"{entry!r} is not a Python module")
        return found

    # ------------------------------------------------------------------ validating

    def _analyze(
        self,
        catalog: Catalog,
        values: Mapping[str, Any] | None,
        extra: Sequence[ValidationIssue] = (),
    ) -> tuple[Analysis, Catalog]:
        model, shape = self._model()
        merged, module_issues = self._with_modules(catalog)
        analysis = analyze(model, merged, values, [*shape, *module_issues, *extra])
        return analysis, merged

    def validate(self, catalog: Catalog) -> list[ValidationIssue]:
        """Every problem of the document against the tasks of ``catalog`` (empty: none).

        Parameters without a default are fine here; :meth:`to_graph` needs their values.
        Loading an artifact task's code (to read its argument schema) may raise
        :class:`~aliquot_builtins.tasks.TaskPluginImportError`.
        """
        return self._analyze(catalog, None)[0].issues

    def check(self, kernel: object) -> list[ValidationIssue]:
        """:meth:`validate` against the tasks ``kernel`` can see (a task plugin the
        document names and the store lacks is an issue too)."""
        catalog, issues = self._catalog_or_issue(kernel)
        return self._analyze(catalog, None, issues)[0].issues

    def _catalog_or_issue(self, kernel: object) -> tuple[Catalog, list[ValidationIssue]]:
        try:
            return self.catalog(kernel), []
        except TaskPluginImportError:
            raise
        except AliquotError as exc:
            first_error = exc
        # Find which named plugins the store lacks, and keep the others' tasks.
        model = self._model()[0]
        issues: list[ValidationIssue] = []
        good: dict[str, int | None] = {}
        for pin in model.plugins or ():
            try:
                catalog_for(kernel, plugins={pin.name: pin.snapshot})
            except TaskPluginImportError:
                raise
            except AliquotError as exc:
                issues.append(ValidationIssue(f"plugins[{pin.index}]", "unknown-plugin", str(exc)))
            else:
                good[pin.name] = pin.snapshot
        if not issues:
            issues.append(ValidationIssue("plugins", "unknown-plugin", str(first_error)))
            good = {}
        return catalog_for(kernel, plugins=good), issues

    def to_graph(self, catalog: Catalog, values: Mapping[str, Any] | None = None) -> Graph:
        """The :class:`aliquot.Graph` that runs this document with parameter ``values``.

        Raises:
            GraphValidationError: every problem at once, before anything runs
                (including parameters without a value, and values of the wrong type).
        """
        return self._graph(catalog, dict(values or {}), ())

    def _graph(
        self,
        catalog: Catalog,
        values: Mapping[str, Any],
        extra: Sequence[ValidationIssue],
    ) -> Graph:
        analysis, merged = self._analyze(catalog, values, extra)
        if analysis.issues:
            raise GraphValidationError(analysis.issues, self.source)
        return build(analysis, merged, source=self.source or "task graph", digest=self.digest)

    def plan(self, kernel: object, inputs: Mapping[str, Any], texts: Sequence[str] = ()) -> Graph:
        """The graph for a run: values from ``inputs`` (Python values) and ``texts``
        (``NAME=VALUE`` from ``-P``, typed by the parameter), all problems at once."""
        catalog, issues = self._catalog_or_issue(kernel)
        values, more = self.parameter_values(inputs, texts)
        return self._graph(catalog, values, [*issues, *more])

    def parameter_values(
        self, inputs: Mapping[str, Any], texts: Sequence[str]
    ) -> tuple[dict[str, Any], list[ValidationIssue]]:
        """Values given from Python and as ``NAME=VALUE`` text, with the problems found
        reading them (unknown names are left for validation to report)."""
        model = self._model()[0]
        values = dict(inputs)
        issues: list[ValidationIssue] = []
        for text in texts:
            name, sep, raw = text.partition("=")
            name = name.strip()
            if not sep or not name:
                issues.append(
                    ValidationIssue(
                        "parameters",
                        "bad-option",
                        f"-P {text!r}: expected NAME=VALUE",
                    )
                )
                continue
            if name in values:
                issues.append(
                    ValidationIssue(
                        f"parameters.{name}" if name in model.parameters else "parameters",
                        "duplicate-parameter",
                        f"parameter {name!r} is given more than once",
                        None,
                        name,
                    )
                )
                continue
            param = model.parameters.get(name)
            if param is None:
                values[name] = raw  # reported as an unknown parameter
                continue
            try:
                values[name] = coerce_text(raw, param.type, model.types)
            except ValueError as exc:
                issues.append(
                    ValidationIssue(
                        f"parameters.{name}",
                        "type-mismatch",
                        f"-P {name}={raw}: parameter {name!r} is {describe(param.type)}, but {exc}",
                        None,
                        name,
                    )
                )
                values[name] = INVALID  # reported here, not again
                continue
        return values, issues

    def __repr__(self) -> str:
        return f"<TaskGraph {self.source or '?'}>"
