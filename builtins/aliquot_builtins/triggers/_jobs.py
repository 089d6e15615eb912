"""Trigger jobs: planned as a kernel graph, run on its executors, recorded in the store.

One *job* is one trigger method of one component for one event. The jobs of
a batch become one kernel run: a node per job, ``after`` edges for
``depends_on`` and from every job of a parent to every job of its children
(children first). The kernel runs independent nodes concurrently and skips
the dependants of a failed node; this module turns that into job records:

- ``pending`` when planned, ``running`` when its node starts;
- ``succeeded`` / ``failed`` (with the error) when it ends;
- ``failed`` with the reason "depends on job ... which failed" for the
  dependants of a failed job -- they did not run because of a failure;
- ``skipped`` when a field it ``requires`` is ``None`` (never planned), and
  for the dependants of a skipped job;
- ``cancelled`` when the run was cancelled before it ended.

Records live in the space ``trigger_jobs`` (key: 8-byte sequence number; id
shown as ``t<number>``).
"""

from __future__ import annotations

import datetime as _dt
import inspect
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import orjson

from aliquot import (
    AliquotError,
    Call,
    Graph,
    Node,
    PluginNotActiveError,
    TaskOptions,
    TaskSpec,
)
from aliquot.abc import PlanRequest

from ._decorator import Trigger, order

SPACE: Final = "trigger_jobs"
KIND: Final = "trigger"
FINISHED: Final = frozenset({"succeeded", "failed", "skipped", "cancelled"})


class TriggerError(AliquotError):
    """A trigger could not be run (not a stored component, unknown event...)."""


class JobsFailed(TriggerError):
    """Some trigger jobs failed; ``.jobs`` has every job record of the batch."""

    def __init__(
        self,
        message: str,
        jobs: list[dict[str, Any]],
        result: Any = None,
        run: str | None = None,
    ) -> None:
        super().__init__(message)
        self.jobs = jobs
        self.result = result
        #: the kernel run the jobs ran in
        self.run = run


@attrs.define
class Unit:
    """The jobs one component contributes to a batch."""

    component: Any
    huuid: str
    version: int | None
    #: trigger names to run, in dependency order
    run: list[str]
    #: trigger name -> why it is skipped (requires a None field, or a skipped dependency)
    skipped: dict[str, str]
    #: huuids of the components in this batch whose jobs must finish first
    after: list[str] = attrs.field(factory=list)

    def node_id(self, method: str) -> str:
        """The kernel node of one of its jobs: ``Type:identifier.method``."""
        return f"{type(self.component).type_name()}:{self.component.identifier}.{method}"


_OWNER: dict[str, Any] = {}


def owner() -> dict[str, Any]:
    """This process, as job records name the process that runs them."""
    pid = os.getpid()
    if _OWNER.get("pid") != pid:
        from ..operators._jobs import process_start

        _OWNER.update(hostname=socket.gethostname(), pid=pid, pid_start=process_start(pid))
    return dict(_OWNER)


def judged(record: dict[str, Any]) -> dict[str, Any]:
    """A record as it is now: an unfinished job whose process is gone is shown failed."""
    if record.get("status") not in ("pending", "running"):
        return record
    who = record.get("owner") or {}
    from ..operators._jobs import _alive

    if _alive(who.get("hostname"), who.get("pid"), who.get("pid_start")):
        return record
    return {
        **record,
        "status": "failed",
        "reason": (
            f"the process that ran it (pid {who.get('pid')}) ended before the job finished "
            "(killed, or the machine restarted)"
        ),
    }


def now() -> str:
    """UTC, milliseconds, ``Z`` -- the format of operator job records, so they sort together."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    stamp = _dt.datetime.fromtimestamp(seconds, _dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def select(
    component: Any, event: str, changed: Sequence[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The triggers of ``event`` to run, in dependency order, and those skipped (with why).

    ``changed`` (an update apply) keeps only triggers whose ``requires``
    names a changed field, plus nothing else: an update re-runs what it must.
    """
    triggers: Mapping[str, Trigger] = type(component).triggers
    names = [n for n, t in triggers.items() if event in t.events]
    if changed is not None:
        names = [n for n in names if set(triggers[n].requires) & set(changed)]
    skipped: dict[str, str] = {}
    chosen: list[str] = []
    for name in order(triggers, names):
        info = triggers[name]
        empty = [f for f in info.requires if getattr(component, f, None) is None]
        if empty:
            skipped[name] = f"requires {empty[0]!r}, which is None"
            continue
        dep = next((d for d in info.depends_on if d in skipped), None)
        if dep is not None:
            skipped[name] = f"depends on {dep!r}, which was skipped"
            continue
        chosen.append(name)
    return chosen, skipped


def _call_trigger(component: Any, method: str, kwargs: Mapping[str, Any]) -> Any:
    """What a job runs (on any executor): ``setup`` once, then the trigger method."""
    component.setup()
    fn = getattr(component, method)
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        taken = dict(kwargs)
    else:
        taken = {k: v for k, v in kwargs.items() if k in params}
    return fn(**taken)


@attrs.define(eq=False)
class Batch:
    """A planning target: the jobs of one event over some components."""

    units: list[Unit]
    event: str
    book: JobBook


class JobBook:
    """The job records of one batch, kept up to date while its run executes."""

    def __init__(self, kernel: Any, event: str, kwargs: Mapping[str, Any] | None = None) -> None:
        self.kernel = kernel
        self.event = event
        #: keyword arguments for the trigger methods (``kernel.trigger(c, event, **kwargs)``)
        self.kwargs = dict(kwargs or {})
        self.records: dict[str, dict[str, Any]] = {}  # node id -> record
        self.order: list[str] = []

    def add(self, unit: Unit, method: str, status: str, reason: str = "") -> dict[str, Any]:
        number = self.kernel.store.next_sequence(SPACE)
        component = unit.component
        type_name = type(component).type_name()
        record: dict[str, Any] = {
            "id": f"t{number}",
            "kind": KIND,
            "target": f"{type_name}:{component.identifier}.{method}",
            "component": unit.huuid,
            "type": type_name,
            "identifier": component.identifier,
            "version": unit.version,
            "event": self.event,
            "method": method,
            "status": status,
            "reason": reason,
            "created": now(),
            "started": None,
            "finished": None,
            "duration": None,
            "run": None,
            "depends_on": [],
            "error": None,
            "result": None,
            "owner": owner(),
        }
        node_id = unit.node_id(method)
        self.records[node_id] = record
        self.order.append(node_id)
        self.write(record)
        return record

    def write(self, record: Mapping[str, Any]) -> None:
        number = int(str(record["id"])[1:])
        shown = {k: v for k, v in record.items() if not k.startswith("_")}
        self.kernel.store.put(SPACE, number.to_bytes(8, "big"), orjson.dumps(shown))

    def started(self, run: Any, node: Node) -> None:
        record = self.records.get(node.id)
        if record is None:
            return
        record.update(status="running", started=now(), run=run.id)
        self.write(record)

    def finished(self, run: Any) -> None:
        """Final statuses from the run's node records; dependants of failures are failed."""
        nodes = run.nodes
        for node_id in self.order:
            record = self.records[node_id]
            if record["status"] == "skipped" and node_id not in nodes:
                continue
            node = nodes.get(node_id)
            if node is None:
                continue
            record["run"] = run.id
            record["started"] = record["started"] or _stamp(node.started)
            record["finished"] = _stamp(node.finished) or (
                now() if node.status != "pending" else None
            )
            record["duration"] = round(node.duration, 6) if node.started else None
            if node.status in ("computed", "cached"):
                record["status"] = "succeeded"
                record["result"] = node.info.get("trigger_result")
            elif node.status == "failed":
                record["status"] = "failed"
                record["error"] = node.error.to_json() if node.error else None
            elif node.status == "skipped":
                failed = self._failed_dependency(node_id)
                if failed is not None:
                    record["status"] = "failed"
                    record["reason"] = (
                        f"depends on job {failed['id']} ({failed['target']}), which failed"
                    )
                else:
                    record["status"] = "skipped"
                    record["reason"] = node.reason
            else:
                record["status"] = "cancelled"
                record["reason"] = node.reason
            self.write(record)

    def abandoned(self, exc: BaseException) -> None:
        """The run could not start or was interrupted: unfinished jobs end now."""
        interrupted = not isinstance(exc, Exception)
        for node_id in self.order:
            record = self.records[node_id]
            if record["status"] not in ("pending", "running"):
                continue
            record["status"] = "cancelled" if interrupted else "failed"
            record["finished"] = now()
            record["reason"] = (
                "the run was interrupted"
                if interrupted
                else f"the jobs could not run: {type(exc).__name__}: {exc}"
            )
            self.write(record)

    def _failed_dependency(self, node_id: str) -> dict[str, Any] | None:
        seen: set[str] = set()
        stack = list(self.records[node_id]["_deps"]) if "_deps" in self.records[node_id] else []
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            record = self.records[dep]
            if record["status"] == "failed" and not record["reason"]:
                return record
            stack.extend(record.get("_deps", ()))
        return None

    def jobs(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in self.records[n].items() if not k.startswith("_")} for n in self.order
        ]


def plan_batch(batch: Batch, request: PlanRequest) -> Graph:
    """The kernel graph of a batch: one node per job to run."""
    graph = Graph(source=f"{batch.event} triggers")
    book = batch.book
    by_component: dict[str, list[str]] = {}
    for unit in batch.units:
        by_component[unit.huuid] = [unit.node_id(m) for m in unit.run]
    for unit in batch.units:
        cls = type(unit.component)
        triggers: Mapping[str, Trigger] = cls.triggers
        upstream = [nid for child in unit.after for nid in by_component.get(child, ())]
        for method in unit.run:
            node_id = unit.node_id(method)
            # On an update only some triggers re-run: a dependency that does not is done.
            local = [d for d in triggers[method].depends_on if d in unit.run]
            deps = [unit.node_id(d) for d in local] + upstream
            record = book.records[node_id]
            record["_deps"] = deps
            record["depends_on"] = [book.records[d]["id"] for d in deps]
            spec = TaskSpec(
                name=f"{cls.__module__}.{cls.__qualname__}.{method}",
                kind=KIND,
                fn=_call_trigger,
                options=TaskOptions(cache=False),
                short_name=f"{cls.type_name()}:{unit.component.identifier}.{method}",
                version="trigger",
                extra={"book": book, "component": unit.component, "method": method},
            )
            graph.add(
                Node(
                    id=node_id,
                    task=spec,
                    labels={"component": unit.huuid, "event": batch.event, "job": record["id"]},
                    after=tuple(deps),
                )
            )
            book.write(record)
            graph.default_targets.append(node_id)
    graph.extra["trigger_batch"] = batch
    return graph


class TriggerTaskType:
    """Task type ``trigger``: plans a :class:`Batch`, calls trigger methods."""

    name = KIND

    def plan(self, target: object, request: PlanRequest) -> Graph | None:
        if not isinstance(target, Batch):
            return None
        return plan_batch(target, request)

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        extra = node.task.extra
        return Call(
            _call_trigger,
            (extra["component"], extra["method"], extra["book"].kwargs),
            {},
            node.task.short_name,
            modules=(type(extra["component"]).__module__,),
        )

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        return {}

    def facts(self, node: Node, result: Any) -> Mapping[str, Any]:
        if result is None:
            return {}
        text = repr(result)
        return {"trigger_result": text if len(text) <= 200 else text[:197] + "..."}


def check_executor_name(kernel: Any, spec: str) -> None:
    """An unknown executor is an error before anything is written."""
    name, _, count = str(spec).partition(":")
    if count and not (count.isdigit() and int(count) > 0):
        raise TriggerError(f"invalid executor {spec!r}: expected NAME or NAME:N (N >= 1)")
    kernel.executors.get(name)  # raises, naming the registered executors


def require_sync(event: str) -> None:
    """Refuse to start jobs from inside trio (they are a synchronous kernel run)."""
    import trio

    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return
    raise TriggerError(
        f"{event} jobs run a kernel run synchronously, which cannot happen inside trio: "
        "call kernel.apply / kernel.trigger from a thread (trio.to_thread.run_sync)"
    )


def run_batch(
    kernel: Any,
    units: Sequence[Unit],
    event: str,
    *,
    executor: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    raise_on_failure: bool = True,
    result: Any = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Record and run the jobs of ``units``; returns (job records, run id)."""
    if KIND not in kernel.task_types:
        raise PluginNotActiveError(
            "running trigger jobs needs the 'triggers' plugin, which is not active "
            "(unblock it: remove `-p no:triggers` / ALIQUOT_DISABLE_PLUGINS)"
        )
    require_sync(event)
    chosen = executor or (
        "threads" if kernel.default_executor == "inline" else kernel.default_executor
    )
    check_executor_name(kernel, chosen)
    book = JobBook(kernel, event, kwargs)
    planned = False
    for unit in units:
        for method in unit.run:
            book.add(unit, method, "pending")
            planned = True
        for method, reason in unit.skipped.items():
            record = book.add(unit, method, "skipped", reason)
            record["finished"] = record["created"]
            book.write(record)
    kernel.store.commit()
    run_id = None
    if planned:
        batch = Batch(list(units), event, book)
        try:
            run = kernel.run(batch, executor=chosen)
        except BaseException as exc:
            book.abandoned(exc)
            kernel.store.commit()
            raise
        run_id = run.id
        book.finished(run)
        kernel.store.commit()
    jobs = book.jobs()
    failed = [j for j in jobs if j["status"] == "failed"]
    if failed and raise_on_failure:
        first = next((j for j in failed if j["error"]), failed[0])
        why = (
            f"{first['error']['type']}: {first['error']['message']}"
            if first["error"]
            else first["reason"]
        )
        raise JobsFailed(
            f"{len(failed)} of {len(jobs)} {event} job(s) failed; first: {first['id']} "
            f"{first['target']}: {why} (see `aliquot jobs show {first['id']}`)",
            jobs,
            result,
            run_id,
        )
    return jobs, run_id


def list_trigger_jobs(kernel: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """Trigger job records, newest first."""
    out: list[dict[str, Any]] = []
    for _key, raw in kernel.store.scan(SPACE, reverse=True):
        out.append(judged(orjson.loads(raw)))
        if limit is not None and len(out) >= limit:
            break
    return out


def find_trigger_job(kernel: Any, job_id: str) -> dict[str, Any] | None:
    text = str(job_id)
    if not (text.startswith("t") and text[1:].isdigit()):
        return None
    raw = kernel.store.get(SPACE, int(text[1:]).to_bytes(8, "big"))
    if raw is None:
        return None
    return judged(orjson.loads(raw))
