"""``run.records``: the records of an experiment run, for runs in memory and stored runs alike.

``run.records["small"].state["mean"]`` loads the value the run stored for
record ``small`` (values are loaded on first access, then kept) -- also when
its stage was skipped because nothing needed it to run but its result was in
the cache. A value that was never computed (skipped, not cached) reads as a
:class:`SkippedOutput`; a value whose stage failed or was cancelled raises
``KeyError`` saying so.
Parameters come back as read-only namespaces of their stored JSON form
(``rec.params.n``), so reading a stored run never imports experiment code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from aliquot import Ref, Run

from ._record import SkippedOutput


class Params(Mapping[str, Any]):
    """Stored parameters: attribute and item access, read-only."""

    def __init__(self, data: Mapping[str, Any], type_name: str | None = None) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_type", type_name)

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self._data[name])
        except KeyError:
            raise AttributeError(
                f"the parameters have no {name!r} (they have {sorted(self._data)})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("stored parameters are read-only")

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        name = (self._type or "params").rpartition(".")[2]
        inner = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"{name}({inner})"


def _wrap(value: Any) -> Any:
    return Params(value) if isinstance(value, dict) else value


class RunState(Mapping[str, Any]):
    """One record's state in a run: output name -> value (loaded when asked for)."""

    def __init__(self, owner: RunRecord, producers: dict[str, tuple[str, str]]) -> None:
        self._owner = owner
        self._producers = producers  # output -> (node id, stage)
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._loaded:
            return self._loaded[key]
        owner = self._owner
        try:
            nid, stage = self._producers[key]
        except KeyError:
            known = ", ".join(map(repr, self._producers)) or "nothing"
            raise KeyError(
                f"record {owner.name!r} has no {key!r} in its state (its stages produce {known})"
            ) from None
        run = owner._run
        node = run.nodes.get(nid)
        status = node.status if node is not None else "missing"
        if status == "skipped" and (node is None or key not in node.outputs):
            value: Any = SkippedOutput(owner, stage, key, node.reason if node else "")
        elif status not in ("computed", "cached", "skipped"):
            why = f": {node.reason}" if node is not None and node.reason else ""
            raise KeyError(f"{owner.name}.{key} was not produced: stage {stage!r} {status}{why}")
        else:
            value = _load(owner._view, nid, key, f"{owner.name}.{key}")
        self._loaded[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._producers)

    def __len__(self) -> int:
        return len(self._producers)

    def __repr__(self) -> str:
        return f"<state of {self._owner.name!r} in run {self._owner._run.id}: {list(self)}>"


def _load(view: RunRecords, nid: str, output: str, label: str) -> Any:
    run = view._run
    name = view.target_names().get(Ref(nid, output))
    if name is not None:
        try:
            return run[name]  # a target: in memory for a run that just ended
        except KeyError:
            pass
    node = run.nodes[nid]
    artifact = node.outputs.get(output)
    kernel = run.__dict__.get("_kernel")
    if artifact is None or kernel is None:
        raise KeyError(
            f"{label} was computed but not stored: without the cache plugin only the run's "
            "targets are stored (ask for it with --target / targets=[...])"
        )
    return kernel.values.load(artifact)


class RunRecord:
    """A record of a run: name, parameters, stages, and its state."""

    def __init__(self, run: Run, doc: Mapping[str, Any], view: RunRecords) -> None:
        self._run = run
        self._view = view
        self.name: str = doc["name"]
        self.hash: str | None = doc.get("hash")
        self.is_aggregate: bool = bool(doc.get("aggregate"))
        self.params_type: str | None = doc.get("params_type")
        raw = doc.get("params")
        self.params: Any = Params(raw, self.params_type) if isinstance(raw, dict) else raw
        self._inputs: list[str] = list(doc.get("inputs") or [])
        self.stages: list[str] = []
        self.nodes: list[str] = []
        for nid, stage, _outputs in doc.get("nodes") or []:
            self.stages.append(stage)
            self.nodes.append(nid)
        producers: dict[str, tuple[str, str]] = {}
        for out, nid in (doc.get("state") or {}).items():
            node = run.nodes.get(nid)
            stage = node.labels.get("stage", nid) if node is not None else nid
            producers[out] = (nid, stage)
        self.state = RunState(self, producers)

    @property
    def input_records(self) -> list[RunRecord]:
        return [self._view[name] for name in self._inputs]

    def __repr__(self) -> str:
        kind = "aggregate record" if self.is_aggregate else "record"
        return f"<{kind} {self.name!r} of run {self._run.id}>"


class RunRecords(Mapping[str, RunRecord]):
    """``run.records``: record name -> :class:`RunRecord`, in creation order."""

    def __init__(self, run: Run) -> None:
        meta = run.meta.get("stages") or {}
        self.experiment: str | None = meta.get("experiment")
        self._run = run
        self._docs = {doc["name"]: doc for doc in meta.get("records") or []}
        self._made: dict[str, RunRecord] = {}
        self._targets: dict[Ref, str] | None = None

    def target_names(self) -> dict[Ref, str]:
        """Target ref -> its name (built once per view)."""
        if self._targets is None:
            self._targets = {ref: name for name, ref in self._run.targets.items()}
        return self._targets

    def __getitem__(self, name: str) -> RunRecord:
        record = self._made.get(name)
        if record is not None:
            return record
        doc = self._docs.get(name)
        if doc is None:
            if not self._docs:
                raise KeyError(f"run {self._run.id} is not an experiment run: it has no records")
            known = ", ".join(self._docs)
            raise KeyError(f"run {self._run.id} has no record {name!r} (records: {known})")
        record = self._made[name] = RunRecord(self._run, doc, self)
        return record

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __repr__(self) -> str:
        return f"<records of run {self._run.id}: {list(self._docs)}>"


def records_view(run: Run) -> RunRecords:
    cached = run.__dict__.get("_aliquot_records")
    if cached is None:
        cached = run.__dict__["_aliquot_records"] = RunRecords(run)
    return cached
