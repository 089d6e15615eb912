"""A mutation corpus for the cache: change one thing, re-run, and check exactly what recomputes.

Every case takes a small project (``PROJECTS``), runs it once cold, applies one
mutation (an edit of a file, a parameter, a run option, damage to the store)
and runs it again; the table says, per node id, what the second run must do:

- ``HIT``: served from the cache while planning (``cached``, cache status ``hit``);
- ``CUTOFF``: served from the cache when it came to run, because its upstream
  recomputed to the same bytes (``cached ... upstream unchanged``: early cutoff);
- ``MISS``: computed again (cache status ``miss``), with ``why`` naming the cause;
- ``SKIP``: not needed, because a node that needs it is served from the cache.

Every run is ``python -m aliquot.cli run exp.py --json -q`` in a fresh process,
so code edits are seen exactly as a user sees them. Most runs target every task
(``-t``), so every node reports a cache decision of its own instead of being
skipped. Each project's cold run happens once per module: its directory (project
files and store) is snapshotted and restored before each case at the same path,
because a script's module name -- and so its tasks' names and cache keys --
depends on its path. ``PYTHONDONTWRITEBYTECODE`` keeps a stale ``.pyc`` (same
size, same mtime second) from hiding an edit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(180)

HIT = "hit"
CUTOFF = "cutoff"
MISS = "miss"
SKIP = "skip"

NOT_NEEDED = "not needed: a node that needs it is loaded from the cache"


# ---------------------------------------------------------------------------- projects


@dataclass(frozen=True)
class Project:
    files: Mapping[str, str]
    targets: tuple[str, ...]
    #: Run arguments besides the targets (``-i size=5``).
    args: tuple[str, ...] = ()
    #: Arguments before ``run`` (``-p module``).
    global_args: tuple[str, ...] = ()


STAGES_EXP = """
import attrs

import helpers
from aliquot import Experiment, Record, aggregate, stage

SCALE = 3
UNUSED = 7


@attrs.frozen
class Params:
    name: str
    n: int = 3
    seed: int = 0
    clip: int = 100


@stage(outputs=["data"], cachers=["json"])
def load(record: Record):
    p = record.params
    return [min(i, p.clip) for i in range(p.n)]


@stage(inputs=["data"], outputs=["scaled"], cachers=["json"])
def scale(record: Record, data, factor=1):
    \"\"\"Scale the data.\"\"\"
    return [v * SCALE * factor for v in helpers.normalize(data)]


@aggregate(inputs=["scaled"], outputs=["total"], cachers=["json"])
def total(record: Record, records, scaled):
    return {r.name: sum(v) for r, v in scaled.items()}


def unrelated(x):
    return x + 1


experiment = Experiment(
    "mutations", stages=[load, scale, total], params=[Params("a", 3), Params("b", 5)]
)
"""

STAGES_HELPERS = """
LIMIT = 1000


def inner(x):
    return x * 2


def normalize(values):
    return [inner(v) for v in values if v < LIMIT]


def unrelated_helper():
    return "not used"
"""

NESTED_EXP = """
import attrs

from aliquot import Experiment, Record, stage


@attrs.frozen
class Sub:
    rate: float


@attrs.frozen
class Params:
    name: str
    enc: Sub = Sub(0.1)
    dec: Sub = Sub(0.5)
    tag: str = "x"


@stage(outputs=["rates"], cachers=["json"])
def rates(record: Record):
    return [record.params.enc.rate, record.params.dec.rate]


@stage(outputs=["everything"], cachers=["json"])
def dump(record: Record):
    return sorted(attrs.asdict(record.params).items())


experiment = Experiment("nested", stages=[rates, dump], params=[Params("a")])
"""

DATACLASS_EXP = """
import dataclasses

from aliquot import Experiment, Record, stage


@dataclasses.dataclass(frozen=True)
class Params:
    name: str
    n: int = 3
    seed: int = 0


@stage(outputs=["config"], cachers=["json"])
def config(record: Record):
    return dataclasses.asdict(record.params)


@stage(outputs=["count"], cachers=["json"])
def count(record: Record):
    return record.params.n


@stage(outputs=["untracked"], cachers=["json"], track_reads=False)
def untracked(record: Record):
    return record.params.n


experiment = Experiment("dc", stages=[config, count, untracked], params=[Params("a")])
"""

INDIRECT_EXP = """
from collections.abc import Callable

import attrs

import helpers
from aliquot import Experiment, Record, stage


@attrs.frozen
class Params:
    name: str
    model: type = helpers.Model
    transform: Callable = helpers.triple


def make(fn):
    @stage(outputs=["closed"], cachers=["json"])
    def via_closure(record: Record):
        return fn(3)

    return via_closure


via_closure = make(helpers.closure_fn)


def make_offset(k):
    @stage(outputs=["offset"], cachers=["json"])
    def via_closure_value(record: Record):
        return 3 + k

    return via_closure_value


via_closure_value = make_offset(10)


@stage(outputs=["defaulted"], cachers=["json"])
def via_default(record: Record, fn=helpers.default_fn):
    return fn(3)


@stage(outputs=["predicted"], cachers=["json"])
def via_class(record: Record):
    return record.params.model().predict(3)


@stage(outputs=["transformed"], cachers=["json"])
def via_function(record: Record):
    return record.params.transform(3)


experiment = Experiment(
    "indirect",
    stages=[via_closure, via_closure_value, via_default, via_class, via_function],
    params=[Params("a")],
)
"""

INDIRECT_HELPERS = """
def closure_fn(v):
    return v * 2


def default_fn(v):
    return v * 3


def bump(v):
    return v + 1


def add_one(v):
    return v + 1


def triple(v):
    return add_one(v * 3)


class Model:
    def predict(self, x):
        return bump(x)
"""

TASKS_EXP = """
import aliquot


@aliquot.task(outputs=["raw"])
def make(size):
    return list(range(size))


@aliquot.task(outputs=["total"])
def summarize(raw):
    return sum(raw)
"""

SERIALIZER_PLUGIN = """
import json

from aliquot import hookimpl

VERSION = "1"


class ListSerializer:
    name = "mylist"
    version = VERSION
    priority = 50
    types = ()

    def dumps(self, value, ctx):
        return json.dumps(value).encode()

    def loads(self, data, ctx):
        return json.loads(bytes(data))


@hookimpl
def aliquot_register_serializers(register):
    register(ListSerializer())
"""

SERIALIZER_EXP = """
import attrs

from aliquot import Experiment, Record, stage


@attrs.frozen
class Params:
    name: str
    n: int = 3


@stage(outputs=["data"], cachers=["mylist"])
def load(record: Record):
    return list(range(record.params.n))


@stage(inputs=["data"], outputs=["total"], cachers=["json"])
def total(record: Record, data):
    return sum(data)


experiment = Experiment("ser", stages=[load, total], params=[Params("a")])
"""

# ``big`` is over the LMDB store's 1 MiB blob threshold: it lives in a file of its own.
BLOB_EXP = """
import attrs

from aliquot import Experiment, Record, stage


@attrs.frozen
class Params:
    name: str
    n: int = 24


@stage(outputs=["blob"], cachers=["bytes"])
def big(record: Record):
    return bytes(range(256)) * (1024 * record.params.n)


@stage(inputs=["blob"], outputs=["size"], cachers=["json"], version="1")
def measure(record: Record, blob):
    return len(blob)


experiment = Experiment("blob", stages=[big, measure], params=[Params("a")])
"""

PROJECTS: dict[str, Project] = {
    "stages": Project(
        {"exp.py": STAGES_EXP, "helpers.py": STAGES_HELPERS}, ("load", "scale", "total")
    ),
    "nested": Project({"exp.py": NESTED_EXP}, ("rates", "dump")),
    "dataclass": Project({"exp.py": DATACLASS_EXP}, ("config", "count", "untracked")),
    "indirect": Project(
        {"exp.py": INDIRECT_EXP, "helpers.py": INDIRECT_HELPERS},
        ("via_closure", "via_closure_value", "via_default", "via_class", "via_function"),
    ),
    "tasks": Project({"exp.py": TASKS_EXP}, ("make", "summarize"), args=("-i", "size=5")),
    "serializer": Project(
        {"exp.py": SERIALIZER_EXP, "myser.py": SERIALIZER_PLUGIN},
        ("load", "total"),
        global_args=("-p", "myser"),
    ),
    "blob": Project({"exp.py": BLOB_EXP}, ("big", "measure")),
}


# ---------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) with ``new`` in ``file``."""

    file: str
    old: str
    new: str

    def apply(self, lab: Lab, project: str) -> None:
        path = lab.root(project) / self.file
        text = path.read_text()
        found = text.count(self.old)
        assert found == 1, f"{self.file}: {self.old!r} occurs {found} times"
        path.write_text(text.replace(self.old, self.new))


@dataclass(frozen=True)
class Damage:
    """Damage to the store (``how(lab, project)``), described for the case table."""

    what: str
    how: Callable[[Lab, str], None]

    def apply(self, lab: Lab, project: str) -> None:
        self.how(lab, project)


def _cold_digest(lab: Lab, project: str, node: str, output: str) -> str:
    nodes = {n["id"]: n for n in lab.cold(project)["nodes"]}
    return str(nodes[node]["outputs"][output]["digest"])


def _drop_from_index(node: str, output: str) -> Callable[[Lab, str], None]:
    """The value leaves the store's index and its blob goes: what a gc with a narrower root
    set (another tool, an older version) would leave behind."""

    def how(lab: Lab, project: str) -> None:
        import aliquot

        digest = _cold_digest(lab, project, node, output)
        kernel = aliquot.Kernel.open(lab.store(project), autoload=False)
        try:
            assert kernel.store.has_value(digest)
            report = kernel.store.gc(live_values=kernel.live_values() - {digest})
            assert report["values_removed"] == 1, report
            assert not kernel.store.has_value(digest)
        finally:
            kernel.close()

    return how


def _delete_blob_file(node: str, output: str) -> Callable[[Lab, str], None]:
    """The value's blob file is deleted behind the store's back (its index record stays)."""

    def how(lab: Lab, project: str) -> None:
        digest = _cold_digest(lab, project, node, output)
        blob = lab.store(project) / "blobs" / digest[:2] / digest
        assert blob.is_file()
        blob.unlink()

    return how


# ---------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    project: str
    mutation: tuple[Edit | Damage, ...]
    #: node id -> HIT / CUTOFF / MISS / SKIP, for every node of the second run.
    expect: Mapping[str, str]
    #: node id -> phrases its ``info["cache"]["why"]`` must contain (each in some entry).
    why: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Extra arguments of the second run (``--overwrite-stage load``).
    args: tuple[str, ...] = ()
    #: Replaces the project's own run arguments (``-i size=6``).
    project_args: tuple[str, ...] | None = None
    #: Targets of the second run; None: every task of the project; (): the defaults.
    targets: tuple[str, ...] | None = None


def _ab(stage_name: str, a: str, b: str | None = None) -> dict[str, str]:
    """Both records' nodes of a stage of the ``stages`` project."""
    return {f"a/{stage_name}": a, f"b/{stage_name}": a if b is None else b}


def _stages(
    load: str | tuple[str, str], scale: str | tuple[str, str], total: str
) -> dict[str, str]:
    """Expectations for the ``stages`` project: a status per stage, or (record a, record b)."""
    out: dict[str, str] = {}
    out.update(_ab("load", *((load,) if isinstance(load, str) else load)))
    out.update(_ab("scale", *((scale,) if isinstance(scale, str) else scale)))
    out["aggregate/total"] = total
    return out


def _indirect(**changed: str) -> dict[str, str]:
    """Expectations for the ``indirect`` project: every node hits but those named."""
    stages = ("via_closure", "via_closure_value", "via_default", "via_class", "via_function")
    assert set(changed) <= set(stages)
    return {f"a/{name}": changed.get(name, HIT) for name in stages}


E = Edit
CASES: list[Case | Any] = [
    # ----------------------------------------------------------- nothing changed
    Case(
        "unchanged, default targets: the leaf is cached and the rest skipped",
        "stages",
        (),
        _stages(SKIP, SKIP, HIT),
        targets=(),
    ),
    Case("unchanged, every node targeted: all hit", "stages", (), _stages(HIT, HIT, HIT)),
    # ----------------------------------------------------------- the stage's own code
    Case(
        "stage body edited",
        "stages",
        (E("exp.py", "v * SCALE * factor for", "v * SCALE * factor + 1 for"),),
        _stages(HIT, MISS, MISS),
        why={
            "a/scale": ("the code of scale changed",),
            "b/scale": ("the code of scale changed",),
            "aggregate/total": ("input scaled changed",),
        },
    ),
    Case(
        "stage body edited, same output: downstream cut off",
        "stages",
        (
            E(
                "exp.py",
                "return [min(i, p.clip) for i in range(p.n)]",
                "out = [min(i, p.clip) for i in range(p.n)]\n    return out",
            ),
        ),
        _stages(MISS, CUTOFF, CUTOFF),
        why={"a/load": ("the code of load changed",), "b/load": ("the code of load changed",)},
    ),
    Case(
        "only comments, docstring and layout of the stage edited",
        "stages",
        (
            E(
                "exp.py",
                '    """Scale the data."""\n    return [v * SCALE * factor for v in '
                "helpers.normalize(data)]",
                '    """Scale the data, differently worded."""\n\n    # a new comment\n'
                "    return [\n        v * SCALE * factor  # per value\n"
                "        for v in helpers.normalize(data)\n    ]",
            ),
        ),
        _stages(HIT, HIT, HIT),
    ),
    Case(
        "default argument value of the stage changed",
        "stages",
        (E("exp.py", "factor=1", "factor=2"),),
        _stages(HIT, MISS, MISS),
        why={"a/scale": ("the code of scale changed",)},
    ),
    # ----------------------------------------------------------- code the stage reaches
    Case(
        "helper the stage calls edited (same output)",
        "stages",
        (E("helpers.py", "if v < LIMIT", "if v <= LIMIT"),),
        _stages(HIT, MISS, CUTOFF),
        why={
            "a/scale": ("the code of normalize changed",),
            "b/scale": ("the code of normalize changed",),
        },
    ),
    Case(
        "helper of a helper edited",
        "stages",
        (E("helpers.py", "return x * 2", "return x * 4"),),
        _stages(HIT, MISS, MISS),
        why={"a/scale": ("the code of inner changed",), "b/scale": ("the code of inner changed",)},
    ),
    Case(
        "the stage now calls another helper",
        "stages",
        (
            E(
                "exp.py",
                "    return [v * SCALE * factor for v in",
                "    helpers.unrelated_helper()\n    return [v * SCALE * factor for v in",
            ),
        ),
        _stages(HIT, MISS, CUTOFF),
        why={"a/scale": ("it now calls unrelated_helper",)},
    ),
    Case(
        "unrelated functions edited (same module and helper module)",
        "stages",
        (
            E("exp.py", "return x + 1", "return x + 2"),
            E("helpers.py", 'return "not used"', 'return "still not used"'),
        ),
        _stages(HIT, HIT, HIT),
    ),
    # ----------------------------------------------------------- module-level constants
    Case(
        "constant the stage reads edited",
        "stages",
        (E("exp.py", "SCALE = 3", "SCALE = 4"),),
        _stages(HIT, MISS, MISS),
        why={"a/scale": ("constant SCALE changed",), "b/scale": ("constant SCALE changed",)},
    ),
    Case(
        "constant a helper reads edited",
        "stages",
        (E("helpers.py", "LIMIT = 1000", "LIMIT = 2"),),
        _stages(HIT, MISS, MISS),
        why={"a/scale": ("constant LIMIT changed",)},
    ),
    Case(
        "constant nothing reads edited",
        "stages",
        (E("exp.py", "UNUSED = 7", "UNUSED = 8"),),
        _stages(HIT, HIT, HIT),
    ),
    # ----------------------------------------------------------- parameters
    Case(
        "parameter load reads changed for one record",
        "stages",
        (E("exp.py", 'Params("a", 3)', 'Params("a", 4)'),),
        _stages((MISS, HIT), (MISS, HIT), MISS),
        why={
            "a/load": ("parameter record.params.n changed",),
            "a/scale": ("input data changed",),
            "aggregate/total": ("input scaled changed",),
        },
    ),
    Case(
        "parameter no stage reads changed",
        "stages",
        (E("exp.py", 'Params("a", 3)', 'Params("a", 3, seed=5)'),),
        _stages(HIT, HIT, HIT),
    ),
    Case(
        "parameter only load reads changed, same output: early cutoff",
        "stages",
        (E("exp.py", 'Params("a", 3)', 'Params("a", 3, clip=50)'),),
        _stages((MISS, HIT), (CUTOFF, HIT), CUTOFF),
        why={"a/load": ("parameter record.params.clip changed",)},
    ),
    Case(
        "params class renamed",
        "stages",
        (
            E("exp.py", "class Params:", "class Settings:"),
            E(
                "exp.py",
                'params=[Params("a", 3), Params("b", 5)]',
                'params=[Settings("a", 3), Settings("b", 5)]',
            ),
        ),
        _stages(MISS, CUTOFF, CUTOFF),
        why={"a/load": ("parameter record.params.__class__ changed",)},
    ),
    Case(
        "another params class with the same field values",
        "stages",
        (
            E(
                "exp.py",
                '@stage(outputs=["data"]',
                "@attrs.frozen\nclass Other:\n    name: str\n    n: int = 3\n    seed: int = 0\n"
                '    clip: int = 100\n\n\n@stage(outputs=["data"]',
            ),
            E(
                "exp.py",
                'params=[Params("a", 3), Params("b", 5)]',
                'params=[Other("a", 3), Other("b", 5)]',
            ),
        ),
        _stages(MISS, CUTOFF, CUTOFF),
        why={
            "a/load": ("parameter record.params.__class__ changed",),
            "b/load": ("parameter record.params.__class__ changed",),
        },
    ),
    Case(
        "comment added to the params class",
        "stages",
        (E("exp.py", "    clip: int = 100\n", "    clip: int = 100  # upper bound\n"),),
        _stages(HIT, HIT, HIT),
    ),
    Case(
        "docstring added to the params class",
        "stages",
        (E("exp.py", "class Params:\n", 'class Params:\n    """The parameters."""\n\n'),),
        _stages(HIT, HIT, HIT),
    ),
    Case(
        "sub-attrs values of the same type swapped",
        "nested",
        (E("exp.py", 'params=[Params("a")]', 'params=[Params("a", enc=Sub(0.5), dec=Sub(0.1))]'),),
        {"a/rates": MISS, "a/dump": MISS},
        why={
            "a/rates": (
                "parameter record.params.enc.rate changed",
                "parameter record.params.dec.rate changed",
            ),
        },
    ),
    Case(
        "field read only through attrs.asdict changed",
        "nested",
        (E("exp.py", 'params=[Params("a")]', 'params=[Params("a", tag="y")]'),),
        {"a/rates": HIT, "a/dump": MISS},
        why={"a/dump": ("parameter record.params.tag changed",)},
    ),
    Case(
        "field read only through dataclasses.asdict changed",
        "dataclass",
        (E("exp.py", 'params=[Params("a")]', 'params=[Params("a", seed=1)]'),),
        {"a/config": MISS, "a/count": HIT, "a/untracked": MISS},
        why={
            "a/config": ("parameter record.params.seed changed",),
            "a/untracked": ("input record",),
        },
    ),
    # ----------------------------------------------------------- parameter sets
    Case(
        "parameter set added",
        "stages",
        (E("exp.py", 'Params("b", 5)]', 'Params("b", 5), Params("c", 4)]'),),
        {**_stages(HIT, HIT, MISS), "c/load": MISS, "c/scale": MISS},
        why={
            "c/load": ("no earlier result for this node",),
            "aggregate/total": ("input records changed",),
        },
    ),
    Case(
        "parameter set added that agrees with another on what the stages read",
        "stages",
        (E("exp.py", 'Params("b", 5)]', 'Params("b", 5), Params("c", 3, seed=9)]'),),
        {**_stages(HIT, HIT, MISS), "c/load": HIT, "c/scale": HIT},
        why={"aggregate/total": ("input records changed",)},
    ),
    Case(
        "parameter set removed",
        "stages",
        (E("exp.py", 'params=[Params("a", 3), Params("b", 5)]', 'params=[Params("a", 3)]'),),
        {"a/load": HIT, "a/scale": HIT, "aggregate/total": MISS},
        why={"aggregate/total": ("input records changed",)},
    ),
    Case(
        "record renamed: content-addressed stages still hit, the aggregate reads names",
        "stages",
        (E("exp.py", 'Params("a", 3)', 'Params("a2", 3)'),),
        {
            "a2/load": HIT,
            "b/load": HIT,
            "a2/scale": HIT,
            "b/scale": HIT,
            "aggregate/total": MISS,
        },
        why={"aggregate/total": ("parameter records.0.name changed",)},
    ),
    # ----------------------------------------------------------- run options
    Case(
        "--overwrite-stage load cascades downstream",
        "stages",
        (),
        _stages(MISS, MISS, MISS),
        why={
            "a/load": ("overwrite requested (--overwrite-stage load)",),
            "b/load": ("overwrite requested (--overwrite-stage load)",),
            "a/scale": ("upstream 'a/load' is overwritten",),
            "b/scale": ("upstream 'b/load' is overwritten",),
            "aggregate/total": ("is overwritten",),
        },
        args=("--overwrite-stage", "load"),
    ),
    Case(
        "--overwrite-stage scale: upstream untouched, downstream recomputed",
        "stages",
        (),
        _stages(HIT, MISS, MISS),
        why={
            "a/scale": ("overwrite requested (--overwrite-stage scale)",),
            "aggregate/total": ("is overwritten",),
        },
        args=("--overwrite-stage", "scale"),
    ),
    Case(
        "--overwrite recomputes everything",
        "stages",
        (),
        _stages(MISS, MISS, MISS),
        why={
            "a/load": ("overwrite requested (--overwrite)",),
            "aggregate/total": ("overwrite requested (--overwrite)",),
        },
        args=("--overwrite",),
    ),
    # ----------------------------------------------------------- serializers
    Case(
        "cachers= of an output changed",
        "stages",
        (
            E(
                "exp.py",
                'outputs=["scaled"], cachers=["json"]',
                'outputs=["scaled"], cachers=["pickle"]',
            ),
        ),
        _stages(HIT, MISS, MISS),
        why={
            "a/scale": ("the outputs or their serializers changed",),
            "aggregate/total": ("input scaled changed",),
        },
    ),
    Case(
        "serializer version bumped (plugin loaded with -p)",
        "serializer",
        (E("myser.py", 'VERSION = "1"', 'VERSION = "2"'),),
        {"a/load": MISS, "a/total": CUTOFF},
        why={"a/load": ("serializer 'mylist' of output 'data' changed version (1 -> 2)",)},
    ),
    # ----------------------------------------------------------- values held elsewhere
    Case(
        "class held by a parameter edited",
        "indirect",
        (E("helpers.py", "return bump(x)", "return bump(x) * 10"),),
        _indirect(via_class=MISS),
        why={"a/via_class": ("parameter record.params.model changed",)},
    ),
    Case(
        "helper of a function held by a parameter edited",
        "indirect",
        (
            E(
                "helpers.py",
                "def add_one(v):\n    return v + 1",
                "def add_one(v):\n    return v + 2",
            ),
        ),
        _indirect(via_function=MISS),
        why={"a/via_function": ("parameter record.params.transform changed",)},
    ),
    Case(
        "value held in the stage's closure changed",
        "indirect",
        (E("exp.py", "make_offset(10)", "make_offset(20)"),),
        _indirect(via_closure_value=MISS),
        why={"a/via_closure_value": ("the code of via_closure_value changed",)},
    ),
    Case(
        "function held in the stage's closure edited",
        "indirect",
        (E("helpers.py", "return v * 2", "return v * 5"),),
        _indirect(via_closure=MISS),
    ),
    Case(
        "function given as a default argument edited",
        "indirect",
        (E("helpers.py", "return v * 3\n", "return v * 7\n"),),
        _indirect(via_default=MISS),
    ),
    Case(
        "helper called by a method of a class held by a parameter edited",
        "indirect",
        (E("helpers.py", "return v + 1\n\n\ndef add_one", "return v + 9\n\n\ndef add_one"),),
        _indirect(via_class=MISS),
    ),
    # ----------------------------------------------------------- function tasks
    Case("function tasks, inputs unchanged", "tasks", (), {"make": HIT, "summarize": HIT}),
    Case(
        "function task input changed (-i)",
        "tasks",
        (),
        {"make": MISS, "summarize": MISS},
        why={"make": ("input size changed",), "summarize": ("input raw changed",)},
        project_args=("-i", "size=6"),
    ),
    Case(
        "function task body edited",
        "tasks",
        (E("exp.py", "return sum(raw)", "return sum(raw) * 2"),),
        {"make": HIT, "summarize": MISS},
        why={"summarize": ("the code of summarize changed",)},
    ),
    # ----------------------------------------------------------- declared versions
    Case(
        "versioned stage: body edited, same version",
        "blob",
        (E("exp.py", "return len(blob)", "return len(blob) + 1"),),
        {"a/big": HIT, "a/measure": HIT},
    ),
    Case(
        "versioned stage: version bumped",
        "blob",
        (E("exp.py", 'version="1"', 'version="2"'),),
        {"a/big": HIT, "a/measure": MISS},
        why={"a/measure": ("the declared version of measure changed (1 -> 2)",)},
    ),
    # ----------------------------------------------------------- the store loses a value
    Case(
        "stored value dropped from the store (gc-like)",
        "blob",
        (Damage("value of a/big.blob removed by gc", _drop_from_index("a/big", "blob")),),
        # big is a target, so its value is needed: it recomputes. measure's result stays
        # valid for the data big had: a hit (values are checked only where they are used).
        {"a/big": MISS, "a/measure": HIT},
        why={"a/big": ("the stored value of output 'blob' is gone",)},
    ),
]


# ---------------------------------------------------------------------------- running


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIQUOT_")}
    env.update(
        ALIQUOT_CONFIG_DIR=str(config),
        ALIQUOT_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


class Lab:
    """Project directories, their cold runs and snapshots (one per module)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.config = base / "config"
        self._cold: dict[str, dict[str, Any]] = {}

    def root(self, project: str) -> Path:
        return self.base / project

    def store(self, project: str) -> Path:
        return self.root(project) / "store"

    def run(
        self,
        project: str,
        *,
        targets: tuple[str, ...] | None = None,
        args: tuple[str, ...] = (),
        project_args: tuple[str, ...] | None = None,
        check: bool = True,
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
        spec = PROJECTS[project]
        chosen = spec.targets if targets is None else targets
        command = [
            sys.executable,
            "-m",
            "aliquot.cli",
            *spec.global_args,
            "run",
            "exp.py",
            "--json",
            "-q",
            "--store",
            str(self.store(project)),
            *(part for target in chosen for part in ("-t", target)),
            *(spec.args if project_args is None else project_args),
            *args,
        ]
        out = subprocess.run(
            command,
            cwd=self.root(project),
            env=_env(self.config),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert out.returncode == 0, f"{' '.join(command[3:])}\n{out.stderr}"
        try:
            doc = json.loads(out.stdout)
        except ValueError:
            doc = None
        return out, doc

    def cold(self, project: str) -> dict[str, Any]:
        """The cold run of ``project`` (made once; the directory is then snapshotted)."""
        if project not in self._cold:
            root = self.root(project)
            root.mkdir(parents=True)
            for name, text in PROJECTS[project].files.items():
                (root / name).write_text(textwrap.dedent(text).lstrip())
            _, doc = self.run(project)
            assert doc is not None
            for node in doc["nodes"]:
                assert node["status"] == "computed", node
                assert node["info"]["cache"]["why"] == ["no earlier result for this node"], node
            shutil.copytree(root, self.base / f"{project}.snapshot")
            self._cold[project] = doc
        return self._cold[project]

    def fresh(self, project: str) -> Path:
        """``project`` as its cold run left it, at its own path."""
        self.cold(project)
        root = self.root(project)
        shutil.rmtree(root)
        shutil.copytree(self.base / f"{project}.snapshot", root)
        return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("mutations"))


def _observed(node: Mapping[str, Any]) -> str:
    """What a node of the second run did, in the table's terms (or its raw status)."""
    cache = node["info"].get("cache") or {}
    status = node["status"]
    if status == "computed" and cache.get("status") == "miss":
        return MISS
    if status == "cached" and cache.get("status") == "hit":
        return CUTOFF if "upstream unchanged" in node["reason"] else HIT
    if status == "skipped" and node["reason"] == NOT_NEEDED:
        return SKIP
    return f"{status} (cache {cache.get('status')}: {node['reason'] or cache.get('why')})"


def _name(case: Case | Any) -> str:
    inner = case.values[0] if hasattr(case, "values") else case
    return str(inner.name)


@pytest.mark.parametrize("case", CASES, ids=[_name(c) for c in CASES])
def test_mutation(lab: Lab, case: Case) -> None:
    lab.fresh(case.project)
    for mutation in case.mutation:
        mutation.apply(lab, case.project)
    out, doc = lab.run(
        case.project,
        targets=case.targets,
        args=case.args,
        project_args=case.project_args,
        check=False,
    )
    assert doc is not None, out.stderr
    nodes = {n["id"]: n for n in doc["nodes"]}
    observed = {nid: _observed(n) for nid, n in nodes.items()}
    assert observed == dict(case.expect), "\n".join(
        f"{nid:20} expected {case.expect.get(nid, '-'):8} got {observed.get(nid, '-')}"
        for nid in sorted(set(observed) | set(case.expect))
    )
    assert out.returncode == 0 and doc["status"] == "succeeded", out.stderr
    for nid, phrases in case.why.items():
        why = nodes[nid]["info"]["cache"]["why"]
        for phrase in phrases:
            assert any(phrase in reason for reason in why), f"{nid}: {phrase!r} not in {why}"


def test_blob_file_deleted_fails_its_consumer_once_then_recomputes(lab: Lab) -> None:
    """spec/cache.md, Limits: a value still indexed but gone from disk is not noticed by the
    lookup (a hit); the node that loads it fails ("could not load input") and the value is
    quarantined, so the next run recomputes it. Never a wrong value, never a traceback."""
    import aliquot
    from aliquot import ArtifactRef

    lab.fresh("blob")
    _delete_blob_file("a/big", "blob")(lab, "blob")
    Edit("exp.py", 'version="1"', 'version="2"').apply(lab, "blob")  # measure must run
    out, doc = lab.run("blob", check=False)
    assert doc is not None, out.stderr
    assert out.returncode == 1 and doc["status"] == "failed"
    assert "Traceback" not in out.stderr
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert _observed(nodes["a/big"]) == HIT
    assert nodes["a/measure"]["status"] == "failed"
    assert "could not load input 'blob'" in nodes["a/measure"]["reason"]

    out, doc = lab.run("blob")
    assert doc is not None
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert {nid: _observed(n) for nid, n in nodes.items()} == {"a/big": MISS, "a/measure": MISS}
    assert "the stored value of output 'blob' is gone" in nodes["a/big"]["info"]["cache"]["why"]
    ref = ArtifactRef.from_json(nodes["a/measure"]["outputs"]["size"])
    with aliquot.Kernel.open(lab.store("blob"), readonly=True, autoload=False) as kernel:
        assert kernel.values.load(ref) == 256 * 1024 * 24


def test_how_aliquot_is_started_does_not_change_cache_keys(tmp_path: Path) -> None:
    (tmp_path / "exp.py").write_text(textwrap.dedent(TASKS_EXP).lstrip())
    script = Path(sys.executable).with_name("aliquot")
    tail = ["run", "exp.py", "-i", "size=5", "--json", "-q", "--store", str(tmp_path / "store")]
    docs = []
    for head in ([str(script)], [sys.executable, "-m", "aliquot.cli"]):
        out = subprocess.run(
            [*head, *tail],
            cwd=tmp_path,
            env=_env(tmp_path / "config"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        docs.append(json.loads(out.stdout))
    assert [n["status"] for n in docs[0]["nodes"]] == ["computed", "computed"]
    tasks = [[n["task"] for n in doc["nodes"]] for doc in docs]
    assert tasks[0] == tasks[1]
    assert {n["id"]: _observed(n) for n in docs[1]["nodes"]} == {"make": SKIP, "summarize": HIT}


def test_table_is_a_real_corpus() -> None:
    """At least 24 cases, distinct names, and every case names known nodes and phrases."""
    cases = [c.values[0] if hasattr(c, "values") else c for c in CASES]
    assert len(cases) >= 24
    assert len({c.name for c in cases}) == len(cases)
    for case in cases:
        assert case.project in PROJECTS
        assert set(case.why) <= set(case.expect), case.name
        assert all(case.expect[nid] == MISS for nid in case.why), case.name
        kinds = set(case.expect.values())
        assert kinds <= {HIT, CUTOFF, MISS, SKIP}, case.name


def test_explain_names_what_changed(lab: Lab) -> None:
    """``aliquot explain RUN NODE`` says why a node recomputed, from the stored run."""
    root = lab.fresh("stages")
    Edit("exp.py", "SCALE = 3", "SCALE = 4").apply(lab, "stages")
    lab.run("stages")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aliquot.cli",
            "explain",
            "latest",
            "a/scale",
            "--json",
            "--store",
            str(lab.store("stages")),
        ],
        cwd=root,
        env=_env(lab.config),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["node"] for r in rows] == ["a/scale"]
    assert rows[0]["status"] == "computed" and rows[0]["cache"] == "miss"
    assert rows[0]["why"] == ["computed: constant SCALE changed"]
