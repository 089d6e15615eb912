"""Live progress for ``aliquot run``: an observer plugin the CLI registers.

On a terminal it keeps one status line up to date (at most ten redraws a
second); elsewhere (CI logs, pipes) it prints one line per finished node for
small runs and a summary line every few seconds for large ones. Everything
goes to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from .hookspecs import hookimpl

if TYPE_CHECKING:
    from ._graph import Node
    from ._outcome import Outcome
    from ._planner import Plan
    from ._runs import Run

#: Runs with more nodes than this print periodic summaries instead of a line per node.
PER_NODE_LINES = 200
#: Steps (work a plugin runs inside a node) printed per node; the rest are counted.
STEP_LINES = 20


class ProgressReporter:
    """Prints progress of runs (see the module docstring)."""

    __name__ = "aliquot-progress"

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.total = 0
        self.done = 0
        self.counts: dict[str, int] = {}
        self.running: dict[str, float] = {}
        #: Steps seen per enclosing node.
        self.steps: dict[str, int] = {}
        self._last = 0.0
        self._line = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    @hookimpl
    def aliquot_run_planned(self, run: Run, plan: Plan) -> None:
        self.total = len(plan.order)
        self.done = 0
        self.counts = {}
        self.running = {}
        self.steps = {}
        counts = plan.counts()
        skipped = f", {counts['skip']} not needed" if counts["skip"] else ""
        if counts["run"] == 0 and counts["load"]:
            self._write(
                f"run {run.id}: nothing to compute: {counts['load']} node(s) served from the "
                f"cache{skipped}\n"
            )
            return
        cached = f" ({counts['load']} from the cache)" if counts["load"] else ""
        self._write(f"run {run.id}: {self.total} node(s) to execute{cached}{skipped}\n")

    @hookimpl
    def aliquot_node_started(self, run: Run, node: Node) -> None:
        if "within" in node.labels:
            return  # a step inside a node: shown when it ends, never counted
        self.running[node.id] = time.monotonic()
        if self.interactive:
            self._redraw()

    @hookimpl
    def aliquot_node_finished(
        self, run: Run, node: Node, outcome: Outcome, duration: float
    ) -> None:
        within = node.labels.get("within")
        if within is not None:
            shown = self.steps.get(within, 0)
            self.steps[within] = shown + 1
            if not self.interactive and (
                (self.total <= PER_NODE_LINES and shown < STEP_LINES) or outcome.status == "failed"
            ):
                self._write(f"        {outcome.status:<9} {node.id} ({_secs(duration)})\n")
            return
        steps = self.steps.pop(node.id, 0)
        if steps > STEP_LINES and not self.interactive and self.total <= PER_NODE_LINES:
            self._write(f"        ... and {steps - STEP_LINES} more step(s)\n")
        self.running.pop(node.id, None)
        self.done += 1
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if self.interactive:
            if outcome.status == "failed":
                self._clear()
                self._write(f"  failed  {node.id}: {outcome.reason}\n")
            self._redraw()
        elif self.total <= PER_NODE_LINES or outcome.status == "failed":
            why = f": {outcome.reason}" if outcome.reason and outcome.status != "computed" else ""
            counter = f"[{self.done}/{self.total}]"
            self._write(f"  {counter} {outcome.status:<9} {node.id} ({_secs(duration)}){why}\n")
        else:
            now = time.monotonic()
            if now - self._last > 5:
                self._last = now
                self._write(f"  [{self.done}/{self.total}] {self._summary()}\n")

    @hookimpl
    def aliquot_run_finished(self, run: Run) -> None:
        if self.interactive:
            self._clear()
        duration = _secs(run.duration or 0.0)
        self._write(f"run {run.id} {run.status} in {duration}: {self._summary(run.counts())}\n")

    def _summary(self, counts: dict[str, Any] | None = None) -> str:
        counts = counts if counts is not None else self.counts
        order = ("computed", "cached", "skipped", "failed", "cancelled")
        parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
        return ", ".join(parts) or "nothing ran"

    def _redraw(self) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        names = ", ".join(list(self.running)[:3])
        more = f" +{len(self.running) - 3}" if len(self.running) > 3 else ""
        line = f"[{self.done}/{self.total}] {self._summary()}"
        if names:
            line += f" | running {names}{more}"
        line = line[:160]
        pad = " " * max(0, self._line - len(line))
        self._line = len(line)
        self._write("\r" + line + pad)

    def _clear(self) -> None:
        if self._line:
            self._write("\r" + " " * self._line + "\r")
            self._line = 0


def _secs(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"
