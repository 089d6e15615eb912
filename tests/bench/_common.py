"""Shared helpers for the benchmark scripts in this folder (not a test module).

The scripts import this file by putting their own folder on ``sys.path``
(they are run as scripts, not collected by pytest). What is here:

* :func:`parse_args` -- the options every script takes (``--quick``,
  ``--json``, ``--repeat``, ``--strict``);
* :func:`time_once` / :func:`measure` -- wall-clock timing with
  ``time.perf_counter``, a ``gc.collect()`` before every sample (outside the
  timed region), and the garbage collector left *enabled* inside the timed
  region unless a caller asks for ``gc_off=True`` (then the row says so);
* :class:`Stats` -- median and quartiles of repeated samples (the machine is
  noisy: every headline number is a median);
* :class:`Report` -- rows of "aliquot vs peer/baseline, ratio, target,
  PASS/FAIL", printed as a table or as JSON.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

MICRO = "\u00b5"  # the micro sign, for "µs"


# --------------------------------------------------------------------------- options


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: fewer repetitions, smaller sizes"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of a table"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="override the number of timed repetitions"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target FAILs"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the headline operation(s) with cProfile (printed to stderr)",
    )
    if configure is not None:
        configure(parser)
    return parser.parse_args(argv)


def progress(message: str) -> None:
    """Progress goes to stderr, so ``--json`` output stays clean."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing


@dataclass
class Stats:
    """Repeated wall-clock samples, in seconds."""

    samples: list[float]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q[0], q[2]

    def to_json(self, scale: float = 1.0) -> dict[str, Any]:
        p25, p75 = self.quartiles
        return {
            "n": self.n,
            "median": self.median * scale,
            "p25": p25 * scale,
            "p75": p75 * scale,
            "min": self.min * scale,
            "max": self.max * scale,
            "samples": [s * scale for s in self.samples],
        }


def time_once(fn: Callable[[], Any], *, gc_off: bool = False) -> tuple[float, Any]:
    """One timed call of ``fn``: (seconds, result).

    ``gc.collect()`` runs first, outside the timed region, so garbage left by
    the previous sample is not charged to this one. The collector stays
    enabled while ``fn`` runs unless ``gc_off`` (then it is re-enabled after).
    """
    gc.collect()
    was_enabled = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    finally:
        if gc_off and was_enabled:
            gc.enable()
    return elapsed, result


def sample(
    fn: Callable[[Any], Any],
    *,
    setup: Callable[[], Any] | None = None,
    teardown: Callable[[Any, Any], None] | None = None,
    check: Callable[[Any], None] | None = None,
    gc_off: bool = False,
) -> float:
    """One sample: ``setup()`` (untimed), ``fn(state)`` (timed), ``check(result)`` and
    ``teardown(state, result)`` (untimed). Returns the seconds ``fn`` took.

    ``check`` should raise when the benchmark did not do what it claims (a
    failed run is not a fast run).
    """
    state = setup() if setup is not None else None
    elapsed, result = time_once(lambda: fn(state), gc_off=gc_off)
    if check is not None:
        check(result)
    if teardown is not None:
        teardown(state, result)
    return elapsed


def measure(
    fn: Callable[[Any], Any],
    *,
    repeat: int,
    warmup: int = 1,
    setup: Callable[[], Any] | None = None,
    teardown: Callable[[Any, Any], None] | None = None,
    check: Callable[[Any], None] | None = None,
    gc_off: bool = False,
) -> Stats:
    """:func:`sample` ``warmup + repeat`` times in a row; keep the last ``repeat``."""
    samples = []
    for i in range(warmup + repeat):
        elapsed = sample(fn, setup=setup, teardown=teardown, check=check, gc_off=gc_off)
        if i >= warmup:
            samples.append(elapsed)
    return Stats(samples)


def round_robin(
    cases: Mapping[str, Callable[[], float]], rounds: int, *, warmup: int = 1, label: str = ""
) -> dict[str, Stats]:
    """Interleave the cases: each round runs every case once (each returns its seconds).

    On a noisy machine this spreads a burst of noise over all cases instead of
    hitting one of them; samples stay in round order, so per-round differences
    between two cases are meaningful. The first ``warmup`` rounds are discarded.
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(warmup + rounds):
        if label:
            extra = " (warm-up, discarded)" if r < warmup else ""
            progress(f"[{label}] round {r + 1}/{warmup + rounds}{extra}...")
        for name, case in cases.items():
            elapsed = case()
            if r >= warmup:
                samples[name].append(elapsed)
    return {name: Stats(values) for name, values in samples.items()}


def profile(
    label: str,
    fn: Callable[[], Any],
    limit: int = 25,
    sorts: Sequence[str] = ("cumulative",),
) -> None:
    """Run ``fn`` once under cProfile; print the top functions, for each of ``sorts``
    (``cumulative``, ``tottime``), to stderr."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    for key in sorts:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(limit)
        # pstats prints absolute paths; shorten the ones inside this checkout and the venv.
        text = out.getvalue().replace(str(REPO) + os.sep, "")
        for prefix in (sys.prefix, sys.base_prefix):
            text = text.replace(prefix + os.sep, "")
        progress(f"\n---- cProfile: {label} (top {limit} by {key}) ----\n{text}")


def filesystem_of(path: str) -> str:
    """``fstype on mount (device)`` of the mount that holds ``path`` (from /proc/mounts)."""
    best, label = "", "?"
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                device, mount, fstype, *_ = line.split()
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, label = mount, f"{fstype} on {mount} ({device})"
    except OSError:
        pass
    return label


# --------------------------------------------------------------------------- reporting


@dataclass
class Row:
    """One line of a report: aliquot's number, a peer's or baseline's, and a verdict.

    ``value`` and ``peer`` are in ``unit`` (already scaled). ``ok`` is True
    (PASS), False (FAIL) or None (information only, no target).
    """

    section: str
    label: str
    value: float | None
    unit: str
    stats: Stats | None = None
    scale: float = 1.0
    peer: float | None = None
    peer_label: str = ""
    peer_stats: Stats | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""
    ratio: float | None = None  # aliquot / peer when both are set (computed if left None)

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.peer:
            self.ratio = self.value / self.peer

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "info"
        return "PASS" if self.ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "stats": self.stats.to_json(self.scale) if self.stats else None,
            "peer": self.peer,
            "peer_label": self.peer_label,
            "peer_stats": self.peer_stats.to_json(self.scale) if self.peer_stats else None,
            "ratio": self.ratio,
            "target": self.target,
            "verdict": self.verdict,
            "note": self.note,
        }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if value == 0:
        text = "0"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


@dataclass
class Report:
    """Rows grouped in sections; printed as a table or as JSON."""

    name: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]

    def environment(self) -> dict[str, Any]:
        return {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_before": list(self.load_before),
            "loadavg_after": list(os.getloadavg()),
            "aliquot": dist_version("aliquot"),
            "git": git_revision(),
            "mode": "quick" if self.quick else "full",
            "wall_seconds": round(time.time() - self.started, 2),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "environment": self.environment(),
            "rows": [r.to_json() for r in self.rows],
            "notes": self.notes,
            **self.extra,
        }

    def render(self) -> str:
        headers = ["measurement", "aliquot", "peer / baseline", "ratio", "n", "target", "result"]
        lines: list[str] = []
        env = self.environment()
        lines.append(
            f"== {self.name} ({env['mode']} mode) -- Python {env['python']}, {env['cpus']} CPUs, "
            f"aliquot {env['aliquot']} @ {env['git']}"
        )
        lines.append(
            "   load average before/after: "
            + " ".join(f"{x:.2f}" for x in env["loadavg_before"])
            + " / "
            + " ".join(f"{x:.2f}" for x in env["loadavg_after"])
            + f"; wall {env['wall_seconds']} s; every number is a median of n runs"
        )
        table: list[list[str]] = []
        sections: list[str] = []
        for row in self.rows:
            if row.section not in sections:
                sections.append(row.section)
        for section in sections:
            table.append([f"[{section}]"])
            for row in (r for r in self.rows if r.section == section):
                peer = fmt(row.peer, row.unit) if row.peer is not None else ""
                if row.peer_label:
                    peer = f"{peer} ({row.peer_label})" if peer else row.peer_label
                n = str(row.stats.n) if row.stats else ""
                if row.peer_stats:
                    n += f"/{row.peer_stats.n}"
                ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
                table.append(
                    [
                        "  " + row.label,
                        fmt(row.value, row.unit),
                        peer,
                        ratio,
                        n,
                        row.target,
                        row.verdict if row.ok is not None else "",
                    ]
                )
        widths = [len(h) for h in headers]
        for cells in table:
            if len(cells) == 1:
                continue
            widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        rule = "-+-".join("-" * w for w in widths)
        lines.append(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        lines.append(rule)
        for cells in table:
            if len(cells) == 1:
                lines.append(cells[0])
                continue
            lines.append(
                " | ".join(
                    c.rjust(w) if i in (1, 3, 4) else c.ljust(w)
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                ).rstrip()
            )
        lines.append(rule)
        verdicts = [r for r in self.rows if r.ok is not None]
        passed = sum(1 for r in verdicts if r.ok)
        lines.append(f"targets: {passed}/{len(verdicts)} PASS")
        for row in self.failed:
            lines.append(f"  FAIL: {row.label}: {fmt(row.value, row.unit)} (target {row.target})")
        notes = [f"[{r.section}] {r.label}: {r.note}" for r in self.rows if r.note] + self.notes
        if notes:
            lines.append("notes:")
            lines.extend(f"  - {n}" for n in notes)
        return "\n".join(lines)

    def finish(self, args: argparse.Namespace) -> int:
        if args.json:
            print(json.dumps(self.to_json(), indent=2))
        else:
            print(self.render())
        return 1 if (args.strict and self.failed) else 0


def dist_version(dist: str) -> str:
    """The installed version of a distribution, or ``?``."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def git_revision() -> str:
    """The checkout's commit (with ``+dirty`` when the tree has changes), or ``?``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        if dirty:
            # Identify the exact working-tree state the numbers belong to.
            diff = subprocess.run(
                ["git", "diff", "HEAD"], cwd=REPO, capture_output=True, timeout=30, check=True
            ).stdout
            head += "+dirty:" + hashlib.sha256(diff).hexdigest()[:10]
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head


def reps(args: argparse.Namespace, full: int, quick: int) -> int:
    """Repetitions for this run: ``--repeat`` wins, then quick or full."""
    if args.repeat is not None:
        return max(1, args.repeat)
    return quick if args.quick else full
