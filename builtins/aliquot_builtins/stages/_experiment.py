"""Experiments: parameter sets, records and stages, recorded into one graph.

Both forms end in the same place. The declarative form
``Experiment(name, stages=[...], params=[...])`` is run as the procedural
form would be: one record per parameter set, each stage called on it in
order, and each aggregate called once over all of them. The procedural form
``Experiment(name, run=fn)`` calls ``fn(param_sets, ctx)`` while a
:class:`Recorder` is active: records register with it, and every stage or
aggregate call adds a node instead of running the stage's body. One pass; the
planner then runs only what the targets need.

Node ids are ``<record>/<stage>`` (``small/stats``), labelled with the record
and the stage. Values are published as ``<record>.<output>`` (``small.mean``),
and under the bare output name too when exactly one record produced it (so an
aggregate's ``best`` is ``run["best"]``). The default targets are the leaves:
stages none of whose outputs anything uses, and stages without outputs.
"""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from aliquot import (
    Graph,
    GraphError,
    Node,
    Ref,
    TargetLoadError,
    TaskDefinitionError,
    TaskSpec,
    load_target,
    task_spec_of,
)

from ._errors import MissingStageInputError, RecordingError
from ._record import RECORDING, Record, param_name
from ._spec import info_of

KINDS = ("stage", "aggregate")


class ExperimentContext:
    """What a procedural experiment's ``run(param_sets, ctx)`` receives.

    Attributes:
        name: the experiment's name.
        params: the selected parameter sets (after ``--names`` / ``--indices``).
        records: every record created so far, in order.
        options: the run's options (``--overwrite``, plugin options...).
    """

    def __init__(self, name: str, params: list[Any], options: Mapping[str, Any]) -> None:
        self.name = name
        self.params = params
        self.records: list[Record] = []
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"<experiment {self.name!r}: {len(self.records)} record(s)>"


class Experiment:
    """An experiment: stages over parameter sets.

    ``Experiment(name, stages=[...], params=[...])`` runs every stage on one
    record per parameter set, in order; aggregates in the list run once,
    over all the records, and the stages after an aggregate continue on the
    aggregate's record. ``Experiment(name, run=fn)`` calls ``fn(param_sets,
    ctx)``, which creates records and chains stages itself (curifactory's
    experiment modules). ``params`` is a list, or a function returning one
    (curifactory's ``get_params``); ``--params FILE`` replaces it.
    """

    __aliquot_plugin__ = "stages"

    def __init__(
        self,
        name: str,
        *,
        stages: Sequence[Callable[..., Any]] | None = None,
        params: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
        run: Callable[..., Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TaskDefinitionError(f"an experiment needs a name (str), got {name!r}")
        if (stages is None) == (run is None):
            raise TaskDefinitionError(
                f"experiment {name!r}: give either stages=[...] or run=fn (not both, not neither)"
            )
        self.name = name
        self.run = run
        self.params = params
        self.stages: list[Callable[..., Any]] = []
        if stages is not None:
            if not isinstance(stages, (list, tuple)):
                raise TaskDefinitionError(f"experiment {name!r}: stages must be a list")
            for item in stages:
                spec = task_spec_of(item)
                if spec is None or spec.kind not in KINDS:
                    raise TaskDefinitionError(
                        f"experiment {name!r}: {item!r} in stages is not a @stage or @aggregate"
                    )
                self.stages.append(item)
            if not self.stages:
                raise TaskDefinitionError(f"experiment {name!r}: stages=[] is empty")
        elif not callable(run):
            raise TaskDefinitionError(f"experiment {name!r}: run must be a function")
        if params is not None and not callable(params):
            _check_param_list(f"experiment {name!r}", params)

    def __repr__(self) -> str:
        form = f"{len(self.stages)} stages" if self.run is None else "procedural"
        return f"<Experiment {self.name!r} ({form})>"


def _check_param_list(owner: str, params: Any) -> list[Any]:
    if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Sequence):
        raise TaskDefinitionError(
            f"{owner}: parameter sets must be a list, got {type(params).__name__}"
        )
    if not params:
        raise TaskDefinitionError(f"{owner}: the list of parameter sets is empty")
    return list(params)


# ---------------------------------------------------------------------------- recording


class Recorder:
    """Builds the graph while experiment code runs (see the module docstring)."""

    def __init__(self, context: ExperimentContext) -> None:
        self.context = context
        self.graph = Graph(source=f"experiment {context.name}")
        self.records: list[Record] = context.records
        self._names: dict[str, int] = {}
        self._consumed: set[str] = set()

    # -------------------------------------------------------------- records

    def register(self, record: Record) -> None:
        base = record._name
        count = self._names.get(base, 0) + 1
        self._names[base] = count
        if count > 1:
            name = f"{base}~{count}"
            while name in self._names:
                count += 1
                name = f"{base}~{count}"
            self._names[name] = 1
            record._name = name
            if record._base_name is not None and not record.is_aggregate:
                self.graph.warnings.append(
                    f"two records are named {base!r}: the later one is {name!r}"
                )
        record._recorder = self
        record._index = len(self.records)
        self.records.append(record)

    def _own(self, record: Any, spec: TaskSpec) -> Record:
        if not isinstance(record, Record):
            raise TaskDefinitionError(
                f"{spec.kind} {spec.short_name!r} was called on {record!r}; call it on a Record"
            )
        if record._recorder is not self:
            raise RecordingError(
                f"{spec.kind} {spec.short_name!r} was called on record {record.name!r}, which was "
                "created outside this experiment's code; create records inside it"
            )
        return record

    # -------------------------------------------------------------- calls

    def _node_id(self, record: Record, spec: TaskSpec) -> str:
        base = f"{record._name}/{spec.short_name}"
        nid, n = base, 1
        while nid in self.graph.nodes:
            n += 1
            nid = f"{base}#{n}"
        return nid

    def _bind(self, value: Any) -> Any:
        """A state symbol as a binding (noting which node's outputs are used)."""
        if type(value) is Ref:
            self._consumed.add(value.node)
        return value

    def call_stage(self, spec: TaskSpec, target: Any, kwargs: dict[str, Any]) -> Record:
        record = self._own(target, spec)
        info = info_of(spec)
        nid = self._node_id(record, spec)
        symbols = record.state._symbols
        bindings: dict[str, Any] = {"record": record}
        for name in info.inputs:
            if name in kwargs:
                continue
            if name in symbols:
                bindings[name] = self._bind(symbols[name])
            elif not info.suppress_missing_inputs:
                produced = ", ".join(map(repr, symbols)) or "nothing"
                raise MissingStageInputError(
                    f"stage {spec.short_name!r} of record {record.name!r} needs input {name!r}, "
                    f"which no earlier stage of the record produced (it has {produced}); run the "
                    f"stage that outputs {name!r} first, pass it ({spec.short_name}(record, "
                    f"{name}=...)), or declare the stage with suppress_missing_inputs=True"
                )
        for name, value in kwargs.items():
            bindings[name] = value
        self._add(spec, record, nid, bindings)
        return record

    def call_aggregate(
        self,
        spec: TaskSpec,
        target: Any,
        records: Sequence[Record] | None,
        kwargs: dict[str, Any],
    ) -> Record:
        record = self._own(target, spec)
        info = info_of(spec)
        if records is None:
            members = [r for r in self.records if r is not record]
        else:
            if isinstance(records, Record) or not isinstance(records, Iterable):
                raise TaskDefinitionError(
                    f"aggregate {spec.short_name!r}: records must be a list of records"
                )
            members = [self._own(r, spec) for r in records]
        nid = self._node_id(record, spec)
        record.is_aggregate = True
        record.input_records = list(members)
        bindings: dict[str, Any] = {"record": record, "records": list(members)}
        for name in info.inputs:
            if name in kwargs:
                continue
            per_record: dict[int, Any] = {}
            lacking = []
            for index, member in enumerate(members):
                symbols = member.state._symbols
                if name in symbols:
                    per_record[index] = self._bind(symbols[name])
                else:
                    lacking.append(member.name)
            if lacking:
                self.graph.warnings.append(
                    f"aggregate {spec.short_name!r} ({nid}): record(s) "
                    f"{', '.join(map(repr, lacking))} have no {name!r}; left out of {name}"
                )
            bindings[name] = per_record
        for name, value in kwargs.items():
            bindings[name] = value
        self._add(spec, record, nid, bindings)
        return record

    def _add(self, spec: TaskSpec, record: Record, nid: str, bindings: dict[str, Any]) -> None:
        self.graph.add(
            Node(nid, spec, bindings, labels={"record": record._name, "stage": spec.short_name})
        )
        symbols = record.state._symbols
        for out in spec.output_names:
            symbols[out] = Ref(nid, out)
        record.stages.append(spec.short_name)

    # -------------------------------------------------------------- the result

    def finish(self) -> Graph:
        graph = self.graph
        if not graph.nodes:
            raise GraphError(
                f"experiment {self.context.name!r} called no stage: its code created "
                f"{len(self.records)} record(s) but ran nothing on them"
            )
        names = graph.names
        by_output: dict[str, set[Ref]] = {}
        for record in self.records:
            for out, symbol in record.state._symbols.items():
                if type(symbol) is Ref:
                    names[f"{record._name}.{out}"] = symbol
                    by_output.setdefault(out, set()).add(symbol)
        for out, refs in by_output.items():
            if len(refs) == 1 and out not in names:
                names[out] = next(iter(refs))
        public: dict[Ref, str] = {}
        for name, ref in names.items():
            if ref not in public or "." not in name:
                public[ref] = name
        for node in graph.nodes.values():
            if node.id in self._consumed:
                continue
            if not node.outputs:
                graph.default_targets.append(node.id)
                continue
            for out in node.outputs:
                ref = Ref(node.id, out)
                graph.default_targets.append(public.get(ref, node.id))
        graph.default_targets = list(dict.fromkeys(graph.default_targets))
        by_record: dict[str, list[list[Any]]] = {}
        for node in graph.nodes.values():
            by_record.setdefault(node.labels["record"], []).append(
                [node.id, node.task.short_name, list(node.outputs)]
            )
        graph.meta["stages"] = {
            "experiment": self.context.name,
            "records": [_record_meta(r, by_record.get(r._name, [])) for r in self.records],
        }
        return graph


def _record_meta(record: Record, nodes: list[list[Any]]) -> dict[str, Any]:
    return {
        "name": record._name,
        "index": record._index,
        "hash": record.hash,
        "aggregate": record.is_aggregate,
        "params_type": None
        if record._params is None
        else f"{type(record._params).__module__}.{type(record._params).__qualname__}",
        "params": json_params(record._params),
        "inputs": [r._name for r in record.input_records],
        "nodes": nodes,
        # The record's final state: output -> the node that produced it (inherited
        # from a parent record for copies; the latest producer when stages repeat a name).
        "state": {out: ref.node for out, ref in record.state._symbols.items() if type(ref) is Ref},
    }


def json_params(value: Any) -> Any:
    """Parameters as JSON data (fields by name; what JSON cannot carry as its repr)."""
    import attrs

    def default(obj: Any) -> Any:
        if attrs.has(type(obj)):
            return {f.name: getattr(obj, f.name) for f in attrs.fields(type(obj))}
        if isinstance(obj, (set, frozenset, tuple)):
            return list(obj)
        return repr(obj)

    try:
        return orjson.loads(orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)


# ---------------------------------------------------------------------------- planning


def find_experiment(module: types.ModuleType) -> Experiment | None:
    """The experiment a module defines: an Experiment object, or a curifactory-style
    ``run(param_sets, manager)`` function next to stages. Raises when it is ambiguous."""
    found = [(n, v) for n, v in vars(module).items() if isinstance(v, Experiment)]
    if len(found) == 1:
        return found[0][1]
    if len(found) > 1:
        names = ", ".join(n for n, _ in found)
        raise TargetLoadError(
            f"module {module.__name__!r} defines {len(found)} experiments ({names}); "
            f"choose one: TARGET:{found[0][0]}"
        )
    run = vars(module).get("run")
    has_stages = any(
        (spec := task_spec_of(v)) is not None and spec.kind in KINDS for v in vars(module).values()
    )
    if inspect.isfunction(run) and task_spec_of(run) is None and has_stages:
        if len(inspect.signature(run).parameters) < 2:
            raise TargetLoadError(f"module {module.__name__!r}: run() must take (param_sets, ctx)")
        get_params = vars(module).get("get_params")
        name = module.__name__.rpartition(".")[2]
        if name.startswith("aliquot_script_") and getattr(module, "__file__", None):
            name = os.path.splitext(os.path.basename(module.__file__ or name))[0]
        return Experiment(name, run=run, params=get_params if callable(get_params) else None)
    if has_stages:
        raise TargetLoadError(
            f"module {module.__name__!r} defines stages but no experiment to run them: add "
            "`experiment = Experiment(name, stages=[...], params=[...])`, or a "
            "run(param_sets, ctx) function"
        )
    return None


def select_params(experiment: Experiment, options: Mapping[str, Any]) -> list[Any]:
    """The parameter sets a run uses: ``--params`` files or the experiment's own, filtered by
    ``--names`` and ``--indices`` (per file), then ``--global-indices``."""
    owner = f"experiment {experiment.name!r}"
    groups: list[tuple[str, list[Any]]] = []
    files = options.get("params") or ()
    if isinstance(files, str):
        files = (files,)
    for path in files:
        groups.append((path, _params_from_file(path)))
    if not groups:
        source = experiment.params
        if source is None:
            raise TaskDefinitionError(
                f"{owner} has no parameter sets: give params=[...] (or a get_params function), "
                "or --params FILE"
            )
        if callable(source):
            source = source()
            _check_param_list(f"{owner}: get_params()", source)
        groups.append(("the experiment", list(source)))
    names = _split(options.get("names"))
    indices = options.get("indices")
    selected: list[Any] = []
    for origin, group in groups:
        if names:
            group = [p for p in group if param_name(p) in names]
        if indices:
            group = [group[i] for i in _parse_indices(str(indices), len(group), origin)]
        selected.extend(group)
    if names:
        available = {param_name(p) for _, g in groups for p in g}
        unknown = sorted(set(names) - available)
        if unknown:
            raise TaskDefinitionError(
                f"{owner}: no parameter set is named {', '.join(map(repr, unknown))} "
                f"(names: {', '.join(sorted(str(n) for n in available if n))})"
            )
    global_indices = options.get("global_indices")
    if global_indices:
        selected = [
            selected[i] for i in _parse_indices(str(global_indices), len(selected), "all files")
        ]
    if not selected:
        raise TaskDefinitionError(f"{owner}: the selection leaves no parameter sets to run")
    return selected


def _split(value: Any) -> list[str]:
    if not value:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _parse_indices(text: str, count: int, origin: str) -> list[int]:
    """``"0-3"`` (end-exclusive), ``"2"``, ``"5-"``, or comma-separated ranges."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            open_ended = part.endswith("-")
            if "-" in part:
                first, _, last = part.partition("-")
                start = int(first) if first.strip() else 0
                end = int(last) if last.strip() else count
            else:
                start = int(part)
                end = start + 1
        except ValueError:
            raise TaskDefinitionError(
                f"--indices {text!r}: expected ranges like 0-3 (end excluded), 2 or 5-"
            ) from None
        if open_ended and start >= count:
            continue  # "5-" of a shorter file selects nothing from it
        if start < 0 or end > count or start >= end:
            raise TaskDefinitionError(
                f"--indices {part!r} is outside the {count} parameter set(s) of {origin} "
                f"(valid: 0-{count})"
            )
        out.extend(range(start, end))
    return list(dict.fromkeys(out))


def _params_from_file(path: str) -> list[Any]:
    module = load_target(path)
    if not isinstance(module, types.ModuleType):
        raise TargetLoadError(f"--params {path}: expected a Python file or module")
    get_params = getattr(module, "get_params", None)
    if not callable(get_params):
        raise TargetLoadError(f"--params {path}: the file defines no get_params() function")
    return _check_param_list(f"--params {path}: get_params()", get_params())


def record_graph(experiment: Experiment, options: Mapping[str, Any]) -> Graph:
    """Run the experiment's code under a recorder and return the graph it describes."""
    params = select_params(experiment, options)
    context = ExperimentContext(experiment.name, params, options)
    recorder = Recorder(context)
    token = RECORDING.set(recorder)
    try:
        if experiment.run is not None:
            experiment.run(params, context)
        else:
            _run_declared(experiment, params, context)
    finally:
        RECORDING.reset(token)
    return recorder.finish()


def _run_declared(experiment: Experiment, params: list[Any], context: ExperimentContext) -> None:
    chains = [Record(p) for p in params]
    members = list(chains)
    for item in experiment.stages:
        spec = task_spec_of(item)
        assert spec is not None
        if spec.kind == "aggregate":
            target = Record(None)
            item(target, members)
            chains = [target]
        else:
            for record in chains:
                item(record)
