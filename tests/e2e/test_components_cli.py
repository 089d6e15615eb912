"""Components from the command line: `aliquot apply`, `aliquot components ls|show|remove|export`,
and their trigger jobs in `aliquot jobs ls|show`.

The components live in a script written to the test's directory, as users write them; their
triggers append lines to ``ran.log`` next to it, so a test sees what ran (in this process or
another). Commands run in-process through ``run_cli``; one test runs them as separate
processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aliquot.testing import CliResult, run_cli

COMPONENTS = """
import threading
import typing as t
from pathlib import Path

from aliquot import Component, trigger

RAN = Path(__file__).with_name("ran.log")


def note(*parts):
    with RAN.open("a") as f:
        f.write(" ".join(map(str, parts)) + "\\n")


def shout(a, b, c):
    note("d", a, b, c["k"])
    return f"{a}{b}"


class Notifier(Component):
    a: int
    b: str
    c: t.Dict
    d: t.Callable | None = None

    def cleanup(self):
        note("cleanup", self.identifier)

    @trigger("apply")
    def start(self):
        note("start", self.identifier, threading.current_thread().name)
        return "started"

    @trigger("apply", depends_on="start", requires="d")
    def go(self):
        note("go", self.identifier)
        return self.d(a=self.a, b=self.b, c=self.c)


class Boom(Component):
    n: int = 0

    @trigger("apply")
    def bad(self):
        raise RuntimeError("kaput")

    @trigger("apply", depends_on="bad")
    def after(self):
        note("after")

    @trigger("apply")
    def fine(self):
        note("fine")


class Holder(Component):
    inner: Notifier


n1 = Notifier("n1", a=1, b="x", c={"k": 1}, d=shout)
n1_changed = Notifier("n1", a=9, b="x", c={"k": 1}, d=shout)
plain = Notifier("plain", a=2, b="y", c={"k": 2})
boom = Boom("boom")
holder = Holder("h", inner=Notifier("inner", a=3, b="z", c={"k": 3}))
x = 5
"""

SCRIPT = "cli_components.py"


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sys_path: Callable[[Path], None]
) -> Path:
    """The script in a fresh directory (the working directory, on sys.path for
    `module:object`); modules imported from it are forgotten after the test."""
    (tmp_path / SCRIPT).write_text(COMPONENTS)
    sys_path(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def store(project: Path) -> Path:
    return project / "store"


def ran(project: Path) -> list[str]:
    path = project / "ran.log"
    return path.read_text().splitlines() if path.exists() else []


def cli(store: Path, *args: str) -> CliResult:
    return run_cli(*args, "--store", str(store))


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


def as_json(result: CliResult) -> Any:
    return json.loads(ok(result).stdout)


def one_error(result: CliResult, *needles: str) -> str:
    """The command failed with one line on stderr, no traceback, naming every needle."""
    assert result.exit_code == 2, result
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("aliquot: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def stored(store: Path) -> list[str]:
    return [
        f"{r['type']}:{r['identifier']}" for r in as_json(cli(store, "components", "ls", "--json"))
    ]


# ---------------------------------------------------------------------------
# aliquot apply
# ---------------------------------------------------------------------------


def test_apply_a_script_object_stores_it_and_runs_its_jobs(project: Path, store: Path) -> None:
    result = ok(cli(store, "apply", f"{SCRIPT}:n1"))
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["new", "Notifier:n1", "v0"]
    assert lines[1].split() == ["job", "t1", "succeeded", "Notifier:n1.start"]
    assert lines[2].split() == ["job", "t2", "succeeded", "Notifier:n1.go"]
    assert len(lines) == 3
    assert [line.split()[0] for line in ran(project)] == ["start", "go", "d"]
    assert ran(project)[2] == "d 1 x 1"
    assert stored(store) == ["Notifier:n1"]


def test_apply_a_module_object(project: Path, store: Path) -> None:
    result = ok(cli(store, "apply", "cli_components:plain"))
    assert result.stdout.splitlines()[0].split() == ["new", "Notifier:plain", "v0"]
    assert "job t2     skipped   Notifier:plain.go  requires 'd', which is None" in result.stdout
    assert [line.split()[:2] for line in ran(project)] == [["start", "plain"]]


def test_apply_again_does_nothing_and_a_change_makes_a_new_version(
    project: Path, store: Path
) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    again = ok(cli(store, "apply", f"{SCRIPT}:n1"))
    assert again.stdout.split() == ["same", "Notifier:n1", "v0"]
    assert len(ran(project)) == 3  # nothing ran again
    changed = ok(cli(store, "apply", f"{SCRIPT}:n1_changed"))
    first = changed.stdout.splitlines()[0]
    assert first.split()[:3] == ["breaking", "Notifier:n1", "v1"]
    assert "(changed: a)" in first
    assert len(ran(project)) == 6


def test_apply_no_jobs_stores_without_running(project: Path, store: Path) -> None:
    result = ok(cli(store, "apply", f"{SCRIPT}:n1", "--no-jobs"))
    assert result.stdout.split() == ["new", "Notifier:n1", "v0"]
    assert ran(project) == []
    assert stored(store) == ["Notifier:n1"]
    assert ok(cli(store, "jobs", "ls")).stdout.strip() == "no jobs yet"


@pytest.mark.parametrize(
    ("option", "main_thread"),
    [(("--executor", "inline"), True), (("-e", "threads:2"), False), ((), False)],
)
def test_apply_executor_option(
    project: Path, store: Path, option: tuple[str, ...], main_thread: bool
) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1", *option))
    (start,) = [line for line in ran(project) if line.startswith("start")]
    assert (start.split()[2] == "MainThread") is main_thread


def test_apply_json(project: Path, store: Path) -> None:
    doc = as_json(cli(store, "apply", f"{SCRIPT}:holder", "--json"))
    assert [(c["type"], c["identifier"], c["action"]) for c in doc["components"]] == [
        ("Notifier", "inner", "new"),
        ("Holder", "h", "new"),
    ]
    assert doc["components"][1]["huuid"] == f"Holder:h:{doc['components'][1]['uuid']}"
    jobs = {j["method"]: j for j in doc["jobs"]}
    assert jobs["start"]["status"] == "succeeded"
    assert jobs["start"]["result"] == "'started'"
    assert jobs["start"]["run"] == doc["run"]
    assert jobs["go"]["status"] == "skipped"
    assert stored(store) == ["Holder:h", "Notifier:inner"]


def test_a_failing_trigger_fails_the_command_and_shows_the_job(project: Path, store: Path) -> None:
    result = cli(store, "apply", f"{SCRIPT}:boom")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["new", "Boom:boom", "v0"]
    jobs = {line.split()[3]: line for line in lines[1:]}
    assert jobs["Boom:boom.bad"].split()[:3] == ["job", "t1", "failed"]
    assert jobs["Boom:boom.bad"].endswith("RuntimeError: kaput")
    assert "failed" in jobs["Boom:boom.after"]
    assert "depends on job t1 (Boom:boom.bad), which failed" in jobs["Boom:boom.after"]
    assert jobs["Boom:boom.fine"].split()[2] == "succeeded"
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("aliquot: error: ")
    assert "RuntimeError: kaput" in error
    assert "aliquot jobs show t1" in error
    assert ran(project) == ["fine"]  # the sibling ran; the dependant did not
    assert stored(store) == ["Boom:boom"]  # saved although its jobs failed


def test_a_failing_trigger_exits_1(project: Path, store: Path) -> None:
    assert cli(store, "apply", f"{SCRIPT}:boom").exit_code == 1


@pytest.mark.parametrize(
    ("target", "needles"),
    [
        (f"{SCRIPT}:x", ("int", "not a component")),
        (f"{SCRIPT}:Notifier", ("not a component instance",)),
        (f"{SCRIPT}:missing", ("missing",)),
        ("nowhere.py:x", ("no such file",)),
        ("no_such_module:x", ("no_such_module",)),
        ("bad.json", ("not an encoded component",)),
    ],
)
def test_apply_refuses_what_is_not_a_component(
    project: Path, store: Path, target: str, needles: tuple[str, ...]
) -> None:
    (project / "bad.json").write_text('{"hello": "world"}')
    one_error(cli(store, "apply", target), *needles)
    assert stored(store) == []


def test_with_triggers_blocked_apply_refuses_unless_no_jobs(project: Path, store: Path) -> None:
    blocked = run_cli("-p", "no:triggers", "apply", f"{SCRIPT}:n1", "--store", str(store))
    one_error(blocked, "'triggers'")
    assert stored(store) == []
    assert ran(project) == []
    ok(run_cli("-p", "no:triggers", "apply", f"{SCRIPT}:n1", "--no-jobs", "--store", str(store)))
    assert stored(store) == ["Notifier:n1"]
    assert ran(project) == []


# ---------------------------------------------------------------------------
# aliquot components ls | show | remove
# ---------------------------------------------------------------------------


def test_components_ls(project: Path, store: Path) -> None:
    assert ok(cli(store, "components", "ls")).stdout.strip() == "no components yet"
    assert as_json(cli(store, "components", "ls", "--json")) == []
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    ok(cli(store, "apply", f"{SCRIPT}:n1_changed"))
    ok(cli(store, "apply", f"{SCRIPT}:plain"))
    lines = ok(cli(store, "components", "ls")).stdout.splitlines()
    assert lines[0].split() == ["COMPONENT", "LATEST", "VERSIONS", "UUID", "UPDATED"]
    rows = [line.split()[:3] for line in lines[1:]]
    assert rows == [["Notifier:n1", "v1", "0,1"], ["Notifier:plain", "v0", "0"]]
    doc = as_json(cli(store, "components", "ls", "--json"))
    assert [(r["identifier"], r["latest"], r["versions"]) for r in doc] == [
        ("n1", 1, [0, 1]),
        ("plain", 0, [0]),
    ]
    assert doc[0]["class"] == "cli_components:Notifier"


def test_components_show(project: Path, store: Path) -> None:
    first = as_json(cli(store, "apply", f"{SCRIPT}:n1", "--json"))
    second = as_json(cli(store, "apply", f"{SCRIPT}:n1_changed", "--json"))
    text = ok(cli(store, "components", "show", "Notifier:n1")).stdout
    assert text.splitlines()[0] == "component Notifier:n1 v1"
    assert f"uuid      {second['components'][0]['uuid']}" in text
    assert "  a: 9" in text
    assert '  b: "x"' in text
    assert "  d: <builtins.function:" in text and "pickle" in text
    doc = as_json(cli(store, "components", "show", "Notifier:n1", "--version", "0", "--json"))
    assert doc["version"] == 0
    assert doc["uuid"] == first["components"][0]["uuid"]
    assert doc["huuid"] == first["components"][0]["huuid"]
    assert doc["fields"]["a"] == 1
    assert set(doc["fields"]["d"]) == {"$blob"}
    assert doc["users"] == []
    assert (
        as_json(cli(store, "components", "show", "Notifier:n1", "-v", "1", "--json"))["fields"]["a"]
        == 9
    )


def test_components_show_of_a_used_component_names_its_user(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:holder"))
    inner = ok(cli(store, "components", "show", "Notifier:inner")).stdout
    assert "used by   Holder:h v0" in inner
    holder = as_json(cli(store, "components", "show", "Holder:h", "--json"))
    assert holder["children"] == ["Notifier:inner v0"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("show", "Bad"), ("'Bad'", "Type:identifier")),
        (("show", "Notifier:nope"), ("no stored component Notifier:nope",)),
        (("show", "Notifier:n1", "--version", "7"), ("version 7", "stored versions: 0")),
        (("remove", "Bad"), ("'Bad'", "Type:identifier")),
        (("remove", "Notifier:nope"), ("no stored component Notifier:nope",)),
    ],
)
def test_components_errors_are_one_line(
    project: Path, store: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    one_error(cli(store, "components", *args), *needles)
    assert stored(store) == ["Notifier:n1"]


def test_components_remove_refuses_a_used_component_unless_forced(
    project: Path, store: Path
) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:holder"))
    one_error(cli(store, "components", "remove", "Notifier:inner"), "Holder:h v0")
    assert stored(store) == ["Holder:h", "Notifier:inner"]
    assert "cleanup inner" not in ran(project)
    report = as_json(cli(store, "components", "remove", "Notifier:inner", "--force", "--json"))
    assert report["removed"] == [0]
    assert report["users"] == ["Holder:h v0"]
    assert "cleanup inner" in ran(project)
    assert stored(store) == ["Holder:h"]


def test_components_remove_a_version_then_all(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    ok(cli(store, "apply", f"{SCRIPT}:n1_changed"))
    one = ok(cli(store, "components", "remove", "Notifier:n1", "--version", "0"))
    assert one.stdout.splitlines()[0] == "removed Notifier:n1 (v0)"
    versions = as_json(cli(store, "components", "ls", "--json"))[0]["versions"]
    assert versions == [1]
    rest = ok(cli(store, "components", "remove", "Notifier:n1"))
    assert rest.stdout.splitlines()[0] == "removed Notifier:n1 (v1)"
    assert "blobs deleted: " in rest.stdout
    assert stored(store) == []
    assert ran(project).count("cleanup n1") == 2


# ---------------------------------------------------------------------------
# aliquot components export, then aliquot apply DIR | component.json
# ---------------------------------------------------------------------------


def test_an_export_with_a_function_needs_trust_to_apply(project: Path, store: Path) -> None:
    original = as_json(cli(store, "apply", f"{SCRIPT}:n1", "--json"))["components"][0]
    export = project / "export"
    exported = ok(cli(store, "components", "export", "Notifier:n1", str(export)))
    assert "--trust" in exported.stderr
    assert (export / "component.json").is_file()
    assert (export / "export.key").is_file()
    other = project / "other"
    refused = cli(other, "apply", str(export))
    one_error(refused, "--trust", "export.key")
    assert stored(other) == []
    before = len(ran(project))
    doc = as_json(cli(other, "apply", str(export), "--trust", "--json"))
    (component,) = doc["components"]
    assert component["action"] == "new"
    assert component["uuid"] == original["uuid"]
    assert component["huuid"] == original["huuid"]
    assert {j["status"] for j in doc["jobs"]} == {"succeeded"}
    assert [line.split()[0] for line in ran(project)[before:]] == ["start", "go", "d"]
    shown = as_json(cli(other, "components", "show", "Notifier:n1", "--json"))
    assert shown["uuid"] == original["uuid"]
    # Applied back into its own store it is the same component.
    back = as_json(cli(store, "apply", str(export), "--trust", "--json"))
    assert back["components"][0]["action"] == "same"
    assert back["jobs"] == []


def test_an_export_without_pickles_applies_from_its_component_json(
    project: Path, store: Path
) -> None:
    original = as_json(cli(store, "apply", f"{SCRIPT}:plain", "--json"))["components"][0]
    export = project / "export"
    summary = as_json(cli(store, "components", "export", "Notifier:plain", str(export), "--json"))
    assert summary["signed"] is False
    assert summary["huuid"] == original["huuid"]
    assert not (export / "export.key").exists()
    other = project / "other"
    result = ok(cli(other, "apply", str(export / "component.json")))
    assert result.stdout.splitlines()[0].split() == ["new", "Notifier:plain", "v0"]
    shown = as_json(cli(other, "components", "show", "Notifier:plain", "--json"))
    assert shown["uuid"] == original["uuid"]
    assert shown["fields"] == {"a": 2, "b": "y", "c": {"k": 2}, "d": None}


def test_an_export_of_a_nested_component_applies_with_its_child(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:holder"))
    export = project / "export"
    ok(cli(store, "components", "export", "Holder:h", str(export)))
    other = project / "other"
    result = ok(cli(other, "apply", str(export)))
    actions = [
        line.split()[:3] for line in result.stdout.splitlines() if not line.startswith("job")
    ]
    assert actions == [["new", "Notifier:inner", "v0"], ["new", "Holder:h", "v0"]]
    assert stored(other) == ["Holder:h", "Notifier:inner"]


def test_export_refuses_a_directory_that_holds_an_export(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:plain"))
    export = project / "export"
    ok(cli(store, "components", "export", "Notifier:plain", str(export)))
    one_error(cli(store, "components", "export", "Notifier:plain", str(export)), "component.json")


def test_a_damaged_export_is_refused(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    export = project / "export"
    ok(cli(store, "components", "export", "Notifier:n1", str(export)))
    (blob,) = (export / "blobs").iterdir()
    blob.write_bytes(blob.read_bytes() + b"!")
    other = project / "other"
    one_error(cli(other, "apply", str(export), "--trust"), "do not match")
    assert stored(other) == []


def test_export_and_apply_in_separate_processes(project: Path, store: Path) -> None:
    """Each command a process of its own, the last one from another directory: the script's
    class and function are found again through the export's sources."""
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()

    def aliquot(*args: str, cwd: Path = project) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"}
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            [sys.executable, "-m", "aliquot.cli", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    applied = aliquot("apply", f"{SCRIPT}:n1", "--json", "--store", str(store))
    assert applied.returncode == 0, applied.stderr
    uuid = json.loads(applied.stdout)["components"][0]["uuid"]
    export = elsewhere / "export"
    exported = aliquot("components", "export", "Notifier:n1", str(export), "--store", str(store))
    assert exported.returncode == 0, exported.stderr
    refused = aliquot("apply", "export", "--store", "other", cwd=elsewhere)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("aliquot: error: ")
    assert "--trust" in refused.stderr
    trusted = aliquot("apply", "export", "--trust", "--json", "--store", "other", cwd=elsewhere)
    assert trusted.returncode == 0, trusted.stderr
    doc = json.loads(trusted.stdout)
    assert doc["components"][0]["uuid"] == uuid
    assert [j["status"] for j in doc["jobs"]] == ["succeeded", "succeeded"]
    assert [line.split()[0] for line in ran(project)] == ["start", "go", "d"] * 2


# ---------------------------------------------------------------------------
# aliquot jobs ls | show with trigger jobs
# ---------------------------------------------------------------------------


def test_jobs_ls_lists_trigger_jobs_newest_first(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    ok(cli(store, "apply", f"{SCRIPT}:plain"))
    lines = ok(cli(store, "jobs", "ls")).stdout.splitlines()
    assert lines[0].split() == ["JOB", "KIND", "STATUS", "CREATED", "DURATION", "RUN", "TARGET"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [
        ("t4", "trigger", "skipped", "Notifier:plain.go"),
        ("t3", "trigger", "succeeded", "Notifier:plain.start"),
        ("t2", "trigger", "succeeded", "Notifier:n1.go"),
        ("t1", "trigger", "succeeded", "Notifier:n1.start"),
    ]
    records = as_json(cli(store, "jobs", "ls", "--json"))
    assert [r["id"] for r in records] == ["t4", "t3", "t2", "t1"]
    assert {r["kind"] for r in records} == {"trigger"}
    assert [r["id"] for r in as_json(cli(store, "jobs", "ls", "-n", "1", "--json"))] == ["t4"]


def test_jobs_show_a_trigger_job(project: Path, store: Path) -> None:
    applied = as_json(cli(store, "apply", f"{SCRIPT}:n1", "--json"))
    text = ok(cli(store, "jobs", "show", "t2")).stdout
    fields = dict(line.split(None, 1) for line in text.splitlines() if line.strip())
    assert fields["job"] == "t2"
    assert fields["kind"] == "trigger"
    assert fields["status"] == "succeeded"
    assert fields["target"] == "Notifier:n1.go"
    assert fields["component"] == applied["components"][0]["huuid"]
    assert fields["event"] == "apply"
    assert fields["after"] == "t1"
    assert fields["run"] == applied["run"]
    assert fields["result"] == "'1x'"
    record = as_json(cli(store, "jobs", "show", "t2", "--json"))
    assert record == applied["jobs"][1]


def test_jobs_show_a_failed_trigger_job_with_its_traceback(project: Path, store: Path) -> None:
    cli(store, "apply", f"{SCRIPT}:boom")
    text = ok(cli(store, "jobs", "show", "t1")).stdout
    assert "status    failed" in text
    assert "error     RuntimeError: kaput" in text
    assert "Traceback (most recent call last):" in text
    assert 'raise RuntimeError("kaput")' in text
    dependant = as_json(cli(store, "jobs", "show", "t2", "--json"))
    assert dependant["status"] == "failed"
    assert dependant["reason"] == "depends on job t1 (Boom:boom.bad), which failed"


def test_jobs_show_an_unknown_trigger_job_is_one_line(project: Path, store: Path) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    one_error(cli(store, "jobs", "show", "t999"), "t999")


def test_jobs_show_an_unknown_trigger_job_says_it_does_not_exist(
    project: Path, store: Path
) -> None:
    ok(cli(store, "apply", f"{SCRIPT}:n1"))
    line = one_error(cli(store, "jobs", "show", "t999"), "t999")
    assert "not an operator job id" not in line
    assert "no " in line.lower() or "not found" in line.lower()
