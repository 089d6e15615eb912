"""Runs: what one execution did, kept in the store.

Layout (see ``spec/store.md``): the run header is JSON under its id in space
``runs``; each node's record is JSON in space ``nodes`` under
``<run id>/<index:4 bytes>``; space ``runseq`` maps a durable sequence number
to the id (listing order never depends on the clock); space ``active`` holds
the ids of runs in progress with their owner process, so a run whose process
died is found and marked *crashed* without scanning every run.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import orjson

from ._errors import RunNotFoundError, ValueUnavailableError
from ._graph import Ref
from ._outcome import ErrorInfo
from ._values import ArtifactRef

if TYPE_CHECKING:
    from ._graph import Node
    from ._kernel import Kernel
    from ._outcome import Outcome
    from .abc import Store

RunStatus = Literal["running", "succeeded", "failed", "cancelled", "crashed"]
RUN_FORMAT: Final = 1
SPACE_RUNS: Final = "runs"
SPACE_NODES: Final = "nodes"
SPACE_RUNSEQ: Final = "runseq"
SPACE_ACTIVE: Final = "active"
SPACE_RUNMETA: Final = "runmeta"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        _dt.datetime.fromtimestamp(ts, _dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx`` (UTC time + random), readable and roughly sortable."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{os.urandom(2).hex()}"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` in clock ticks (``/proc``), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def owner_alive(owner: Mapping[str, Any]) -> bool:
    """Whether the process that owns a run is still that process (pid + start time)."""
    if owner.get("hostname") != socket.gethostname():
        return True  # another machine: we cannot tell, so never call it crashed
    pid = int(owner.get("pid", 0))
    if pid <= 0:
        return False
    start = process_start_time(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return owner.get("pid_start") is None
    return start == owner.get("pid_start")


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe description of a user value (for inputs shown in run records)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and value != value:
            return {"$repr": "nan", "$type": "float"}
        return value
    if depth < 6 and isinstance(value, (list, tuple)) and len(value) <= 100:
        return [jsonable(v, depth + 1) for v in value]
    if depth < 6 and isinstance(value, dict) and len(value) <= 100:
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    text = repr(value)
    if len(text) > 200:
        text = text[:197] + "..."
    kind = type(value)
    return {"$repr": text, "$type": f"{kind.__module__}.{kind.__qualname__}"}


@attrs.define(eq=False, slots=True)
class NodeRecord:
    """One node's entry in a run: status, why, timings, stored outputs, error."""

    id: str
    index: int
    task: str
    kind: str
    labels: dict[str, str] = attrs.field(factory=dict)
    status: str = "pending"
    reason: str = ""
    started: float | None = None
    finished: float | None = None
    duration: float = 0.0
    outputs: dict[str, ArtifactRef] = attrs.field(factory=dict)
    error: ErrorInfo | None = None
    info: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "task": self.task,
            "kind": self.kind,
            "labels": self.labels,
            "status": self.status,
            "reason": self.reason,
            "started": self.started,
            "finished": self.finished,
            "duration": self.duration,
            "outputs": {k: v.to_json() for k, v in self.outputs.items()},
            "error": self.error.to_json() if self.error else None,
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeRecord:
        error = data.get("error")
        return cls(
            id=data["id"],
            index=int(data["index"]),
            task=data["task"],
            kind=data["kind"],
            labels=dict(data.get("labels") or {}),
            status=data["status"],
            reason=data.get("reason", ""),
            started=data.get("started"),
            finished=data.get("finished"),
            duration=float(data.get("duration") or 0.0),
            outputs={k: ArtifactRef.from_json(v) for k, v in (data.get("outputs") or {}).items()},
            error=ErrorInfo(**error) if error else None,
            info=dict(data.get("info") or {}),
        )


class Run:
    """One execution of a graph.

    ``run[name]`` is a target value (``run["mean"]``); ``run.status`` is
    ``running``, ``succeeded``, ``failed``, ``cancelled`` or ``crashed``;
    ``run.nodes`` maps node id to :class:`NodeRecord`. Runs are identity
    objects: two runs are never equal unless they are the same object.
    """

    def __init__(
        self,
        id: str,
        *,
        seq: int = 0,
        target: str = "",
        targets: Mapping[str, Ref] | None = None,
        inputs: Mapping[str, Any] | None = None,
        executor: str = "inline",
        options: Mapping[str, Any] | None = None,
        plugins: list[dict[str, Any]] | None = None,
        kernel: Kernel | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.seq = seq
        self.status: RunStatus = "running"
        self.target = target
        self.targets: dict[str, Ref] = dict(targets or {})
        self.inputs = dict(inputs or {})
        self.executor = executor
        self.options = dict(options or {})
        self.plugins = list(plugins or [])
        #: JSON-able data task types keep with the run, by plugin (``run.meta["stages"]``).
        self.meta: dict[str, Any] = dict(meta or {})
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.nodes: dict[str, NodeRecord] = {}
        self.warnings: list[str] = []
        self.error: ErrorInfo | None = None
        self.host = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "python": platform.python_version(),
            "platform": sys.platform,
        }
        self._values: dict[str, Any] = {}
        self._kernel = kernel
        #: The scheduler's event dispatcher while the run executes (None otherwise).
        self._events: Any = None

    # ---------------------------------------------------------------- steps

    def observed(self) -> bool:
        """Whether anything listens to node events of this run right now."""
        events = self._events
        return events is not None and (
            events.active("aliquot_node_started") or events.active("aliquot_node_finished")
        )

    def notify_step_started(self, node: Node) -> None:
        """Fire ``aliquot_node_started`` for a *step*: work a plugin runs inside one of
        the run's nodes (an operator's nested calls). ``node.labels["within"]`` must name
        that node; progress reporters show steps under it without counting them as
        nodes. Call from the kernel's trio thread while the run executes."""
        if self._events is not None:
            self._events.node_started(run=self, node=node)

    def notify_step_finished(self, node: Node, outcome: Outcome, duration: float) -> None:
        """Fire ``aliquot_node_finished`` for a step (see :meth:`notify_step_started`)."""
        if self._events is not None:
            self._events.node_finished(run=self, node=node, outcome=outcome, duration=duration)

    def __getattr__(self, name: str) -> Any:
        """Views plugins register (``run.records``): see ``aliquot_register_run_views``."""
        kernel = self.__dict__.get("_kernel")
        if name.startswith("_") or kernel is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        views = kernel.run_views
        if name not in views:
            known = ", ".join(views.names()) or "none"
            raise AttributeError(
                f"a run has no attribute {name!r} (views plugins provide: {known})"
            )
        return views.get(name)(self)

    # ---------------------------------------------------------------- values

    def __getitem__(self, name: str) -> Any:
        """The value of target ``name``, from memory or loaded from the store."""
        if name in self._values:
            return self._values[name]
        ref = self.targets.get(name)
        if ref is None:
            known = ", ".join(sorted(self.targets)) or "none"
            raise KeyError(
                f"{name!r} is not a target of run {self.id} (targets: {known}); "
                "ask for it with targets=[...] / --target"
            )
        record = self.nodes.get(ref.node)
        if record is None or record.status not in ("computed", "cached"):
            status = record.status if record else "missing"
            why = f": {record.reason}" if record and record.reason else ""
            raise KeyError(f"{name!r} was not produced: node {ref.node!r} is {status}{why}")
        artifact = record.outputs.get(ref.output)
        if artifact is None or self._kernel is None:
            raise KeyError(
                f"{name!r} of run {self.id} is not in memory and was not stored "
                f"(node {ref.node!r}, output {ref.output!r})"
            )
        try:
            value = self._kernel.values.load(artifact)
        except ValueUnavailableError as exc:
            raise KeyError(str(exc)) from exc
        self._values[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.targets

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    @property
    def outputs(self) -> dict[str, Any]:
        """Every target value that was produced, by name."""
        out = {}
        for name in self.targets:
            try:
                out[name] = self[name]
            except KeyError:
                continue
        return out

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.nodes.values():
            counts[record.status] = counts.get(record.status, 0) + 1
        return counts

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    @property
    def failed_nodes(self) -> list[NodeRecord]:
        return [r for r in self.nodes.values() if r.status == "failed"]

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.status} {self.counts()}>"

    # ---------------------------------------------------------------- JSON

    def header_json(self) -> dict[str, Any]:
        outputs = {}
        for name, ref in self.targets.items():
            record = self.nodes.get(ref.node)
            artifact = record.outputs.get(ref.output) if record else None
            outputs[name] = {
                "node": ref.node,
                "output": ref.output,
                "ref": artifact.to_json() if artifact else None,
            }
        return {
            "format": RUN_FORMAT,
            "id": self.id,
            "seq": self.seq,
            "status": self.status,
            "target": self.target,
            "targets": list(self.targets),
            "inputs": jsonable(self.inputs),
            "executor": self.executor,
            "options": jsonable(self.options),
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "duration": round(self.duration, 6) if self.duration is not None else None,
            "host": self.host,
            "plugins": self.plugins,
            "counts": self.counts(),
            "outputs": outputs,
            "warnings": list(self.warnings),
            "error": self.error.to_json() if self.error else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The whole run, meta and nodes included (what ``aliquot show RUN --json`` prints)."""
        doc = self.header_json()
        doc["meta"] = self.meta
        doc["nodes"] = [r.to_json() for r in self.nodes.values()]
        return doc

    @classmethod
    def from_json(
        cls,
        header: Mapping[str, Any],
        nodes: list[NodeRecord],
        kernel: Kernel | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Run:
        run = cls(
            header["id"],
            seq=int(header.get("seq", 0)),
            target=header.get("target", ""),
            targets={
                name: Ref(o["node"], o["output"])
                for name, o in (header.get("outputs") or {}).items()
            },
            inputs=header.get("inputs") or {},
            executor=header.get("executor", ""),
            options=header.get("options") or {},
            plugins=list(header.get("plugins") or []),
            kernel=kernel,
            meta=meta,
        )
        run.status = header["status"]
        run.created = parse_iso(header.get("created")) or 0.0
        run.started = parse_iso(header.get("started"))
        run.finished = parse_iso(header.get("finished"))
        run.host = dict(header.get("host") or {})
        run.warnings = list(header.get("warnings") or [])
        error = header.get("error")
        run.error = ErrorInfo(**error) if error else None
        run.nodes = {r.id: r for r in nodes}
        return run


# -------------------------------------------------------------------- persistence

#: Node records are stored in chunks of this many nodes (one store entry per chunk).
CHUNK = 512


def _chunk_key(run_id: str, chunk: int) -> bytes:
    return run_id.encode() + b"/" + struct.pack(">I", chunk)


class RunWriter:
    """Keeps one run's records in the store (staged; whoever commits makes them durable).

    Finishing a node only marks its chunk dirty (O(1)); :meth:`flush`
    serializes the dirty chunks. It is called by the run's committer thread
    about once a second and at the end of the run, so the cost of run records
    is paid in batches, and a run that is still going -- even one whose trio
    loop is held by a long inline task -- has a recent, durable picture,
    running nodes included.
    """

    def __init__(self, store: Store, run: Run) -> None:
        self.store = store
        self.run = run
        self._records: list[NodeRecord] = []
        self._dirty: set[int] = set()
        self._later: set[int] = set()
        self._header_dirty = True
        self._lock = threading.Lock()

    def begin(self, *, write_records: bool = True) -> None:
        """Stage the run's header and its bookkeeping; with ``write_records``, also the
        chunks holding nodes decided while planning (else they wait for the end)."""
        self._records = sorted(self.run.nodes.values(), key=lambda r: r.index)
        # Only chunks holding a decided node (skipped while planning) need writing now;
        # the others are written once one of their nodes starts.
        self._dirty = {r.index // CHUNK for r in self._records if r.status != "pending"}
        if not write_records:
            self._later = self._dirty
            self._dirty = set()
        run = self.run
        self.store.put(SPACE_RUNSEQ, struct.pack(">Q", run.seq), run.id.encode())
        self.store.put(SPACE_ACTIVE, run.id.encode(), orjson.dumps(run.host))
        if run.meta:  # written once, apart from the header the committer rewrites
            self.store.put(SPACE_RUNMETA, run.id.encode(), orjson.dumps(run.meta))
        self.flush()

    def touch(self, record: NodeRecord) -> None:
        """Note that ``record`` changed (cheap; serialized at the next flush)."""
        # Under the lock: the committer thread swaps the set out while flushing,
        # and an index added to the old set then would never be written.
        with self._lock:
            self._dirty.add(record.index // CHUNK)

    def flush(self) -> None:
        """Stage the header and every chunk that changed since the last flush."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            records = self._records
            run = self.run
            for chunk in sorted(dirty):
                part = records[chunk * CHUNK : (chunk + 1) * CHUNK]
                self.store.put(
                    SPACE_NODES,
                    _chunk_key(run.id, chunk),
                    orjson.dumps([r.to_json() for r in part]),
                )
            self.store.put(SPACE_RUNS, run.id.encode(), orjson.dumps(run.header_json()))

    def end(self) -> None:
        with self._lock:
            self._dirty |= self._later
            self._later = set()
        self.flush()
        self.store.delete(SPACE_ACTIVE, self.run.id.encode())


class RunLog:
    """Reads stored runs (and marks runs of dead processes as crashed)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def ids(self, *, newest_first: bool = True) -> Iterator[str]:
        for _, value in self.store.scan(SPACE_RUNSEQ, reverse=newest_first):
            yield value.decode()

    def header(self, run_id: str) -> dict[str, Any] | None:
        raw = self.store.get(SPACE_RUNS, run_id.encode())
        if raw is None:
            return None
        doc: dict[str, Any] = orjson.loads(raw)
        return doc

    def meta(self, run_id: str) -> dict[str, Any]:
        raw = self.store.get(SPACE_RUNMETA, run_id.encode())
        return {} if raw is None else dict(orjson.loads(raw))

    def node_records(self, run_id: str) -> list[NodeRecord]:
        prefix = run_id.encode() + b"/"
        out: list[NodeRecord] = []
        for _, value in self.store.scan(SPACE_NODES, prefix):
            out.extend(NodeRecord.from_json(item) for item in orjson.loads(value))
        return out

    def resolve(self, ref: str) -> str:
        """A full run id from an id, a unique prefix, ``latest``, ``latest~N`` or ``-N``.

        ``latest~1`` is the run before the latest (as in git); ``-1`` is the
        latest and ``-2`` the one before it.
        """
        ref = ref.strip()
        if ref in ("latest", "last"):
            ref = "-1"
        elif ref.startswith(("latest~", "last~")) and ref.partition("~")[2].isdigit():
            ref = f"-{int(ref.partition('~')[2]) + 1}"
        if ref.startswith("-") and ref[1:].isdigit():
            n = int(ref[1:])
            for i, run_id in enumerate(self.ids()):
                if i + 1 == n:
                    return run_id
            raise RunNotFoundError(f"there is no run {ref} (the store has fewer runs)")
        if self.store.get(SPACE_RUNS, ref.encode()) is not None:
            return ref
        matches = [rid for rid in self.ids() if rid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFoundError(f"no run matches {ref!r} (see `aliquot runs`)")
        raise RunNotFoundError(
            f"{ref!r} matches {len(matches)} runs ({', '.join(matches[:5])}...); "
            "give more of the id"
        )

    def mark_crashed(self) -> list[str]:
        """Mark runs whose owner process is gone as crashed (staged). Returns their ids."""
        crashed = []
        for key, value in list(self.store.scan(SPACE_ACTIVE)):
            owner = orjson.loads(value)
            if owner_alive(owner):
                continue
            run_id = key.decode()
            header = self.header(run_id)
            if header is not None and header.get("status") == "running":
                header["status"] = "crashed"
                header["warnings"] = [
                    *header.get("warnings", []),
                    "the process running this run died before it finished",
                ]
                self.store.put(SPACE_RUNS, key, orjson.dumps(header))
                for ckey, raw in list(self.store.scan(SPACE_NODES, key + b"/")):
                    chunk = orjson.loads(raw)
                    changed = False
                    for rec in chunk:
                        if rec.get("status") in ("pending", "running"):
                            was = rec["status"]
                            rec["status"] = "cancelled"
                            rec["reason"] = (
                                "the run's process died while it ran"
                                if was == "running"
                                else "the run's process died before it started"
                            )
                            changed = True
                    if changed:
                        self.store.put(SPACE_NODES, ckey, orjson.dumps(chunk))
            self.store.delete(SPACE_ACTIVE, key)
            crashed.append(run_id)
        return crashed
