"""Task graphs from the command line: `aliquot run FILE.yaml -P ...`, `aliquot get`,
`aliquot graphs validate`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aliquot.testing import run_cli

GREET = """
import aliquot

@aliquot.register
def hello(name: str) -> str:
    return f"Hello, {name}"

@aliquot.register
def shout(message: str) -> str:
    return message.upper() + "!"

@aliquot.register
def settings(n: int, flag: bool, items: list[int]) -> str:
    return f"{n}|{flag}|{sum(items)}"
"""

HELLO = """
modules: [greet.py]
parameters:
  name: World
graph:
  hello_step:
    hello: {name: $name}
  shout_step:
    shout: [$hello_step.output]
artifacts:
  message:
    contents: $shout_step.output
    task: {name: StringArtifactTask, args: {type: txt}}
"""

TYPED = """
modules: [greet.py]
parameters:
  n: {type: integer}
  flag: {type: boolean, default: false}
  items: {type: {list: integer}, default: []}
graph:
  s: {settings: {n: $n, flag: $flag, items: $items}}
"""

BROKEN = """
modules: [greet.py]
parameters:
  name: World
graph:
  hello_step:
    helo: {name: $name}
  shout_step:
    shout: [$hello_step.output, 2]
artifacts:
  message:
    contents: $shout_step.output
    task: {name: StringArtifactTask, args: {type: "no way"}}
"""


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sys_path: Callable[[Path], None]
) -> Path:
    sys_path(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIQUOT_STORE", str(tmp_path / "store"))
    (tmp_path / "greet.py").write_text(GREET)
    (tmp_path / "hello.yaml").write_text(HELLO)
    (tmp_path / "typed.yaml").write_text(TYPED)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    return tmp_path


def run_json(*args: str) -> dict[str, Any]:
    result = run_cli("run", *args, "--json", "-q")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_run_with_a_parameter_then_get_the_artifact(project: Path) -> None:
    run = run_json("hello.yaml", "-P", "name=Ada")
    assert run["status"] == "succeeded"
    assert run["inputs"] == {"name": "Ada"}
    got = run_cli("get", run["id"], "message")
    assert got.exit_code == 0, got.output
    assert got.stdout.strip() == "'HELLO, ADA!'"
    written = run_cli("get", run["id"], "message", "-o", str(project / "message.txt"))
    assert written.exit_code == 0, written.output
    assert (project / "message.txt").read_text() == "HELLO, ADA!"


def test_a_second_run_is_served_from_the_cache(project: Path) -> None:
    first = run_json("hello.yaml")
    assert {n["status"] for n in first["nodes"]} == {"computed"}
    second = run_json("hello.yaml")
    assert "computed" not in {n["status"] for n in second["nodes"]}
    assert run_cli("get", second["id"], "message").stdout.strip() == "'HELLO, WORLD!'"


def test_parameters_are_read_as_their_types(project: Path) -> None:
    run = run_json("typed.yaml", "-P", "n=7", "--graph-param", "flag=true", "-P", "items=[1,2,3]")
    got = run_cli("get", run["id"], "s.output")
    assert got.stdout.strip() == "'7|True|6'"


def test_bad_parameters_are_one_line_each(project: Path) -> None:
    result = run_cli("run", "typed.yaml", "-P", "n=seven", "-P", "flag=maybe", "-P", "x=1")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("aliquot: error: task graph ")
    assert lines[0].endswith("typed.yaml has 3 problems:")
    assert [line.strip().split(":")[0] for line in lines[1:]] == [
        "parameters.n",
        "parameters.flag",
        "parameters",
    ]
    assert "[unknown-parameter]" in lines[3]
    assert json.loads(run_cli("runs", "--json").stdout) == []  # nothing ran


def test_a_missing_required_parameter(project: Path) -> None:
    result = run_cli("run", "typed.yaml")
    assert result.exit_code == 2
    assert "parameters.n: parameter 'n' (integer) has no default" in result.stderr


def test_an_invalid_graph_does_not_run(project: Path) -> None:
    result = run_cli("run", "broken.yaml")
    assert result.exit_code == 2
    assert "has 3 problems" in result.stderr
    assert "[unknown-task]" in result.stderr
    assert "[too-many-positional]" in result.stderr
    assert "[artifact-args]" in result.stderr


def test_validate_ok(project: Path) -> None:
    result = run_cli("graphs", "validate", "hello.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 2 steps, 1 artifact"
    assert not (project / "store").exists()  # validating creates no store


def test_validate_prints_every_issue(project: Path) -> None:
    result = run_cli("graphs", "validate", "broken.yaml")
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("broken.yaml: graph.hello_step: no function task is named 'helo'")
    assert lines[0].endswith("[unknown-task]")
    assert lines[1].startswith("broken.yaml: graph.shout_step.args[1]: ")
    assert lines[2].startswith("broken.yaml: artifacts.message.task.args.type: ")
    assert "3 problems" in result.stderr


def test_validate_json(project: Path) -> None:
    result = run_cli("graphs", "validate", "broken.yaml", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [(i["code"], i["location"], i["step"], i["argument"]) for i in doc["issues"]] == [
        ("unknown-task", "graph.hello_step", "hello_step", None),
        ("too-many-positional", "graph.shout_step.args[1]", "shout_step", "args[1]"),
        ("artifact-args", "artifacts.message.task.args.type", None, "type"),
    ]
    ok = json.loads(run_cli("graphs", "validate", "hello.yaml", "--json").stdout)
    assert ok == {"ok": True, "file": "hello.yaml", "steps": 2, "artifacts": 1, "issues": []}


def test_validate_reports_yaml_errors(project: Path) -> None:
    (project / "dup.yaml").write_text("graph:\n  a: {hello: [x]}\n  a: {shout: [y]}\n")
    result = run_cli("graphs", "validate", "dup.yaml")
    assert result.exit_code == 1
    assert "dup.yaml: line 3, column 3: found duplicate key 'a'" in result.stdout
    assert "[duplicate-key]" in result.stdout


def test_run_help_lists_the_parameter_option(project: Path) -> None:
    result = run_cli("run", "--help")
    assert result.exit_code == 0
    assert "-P, --graph-param NAME=VALUE" in result.stdout


def test_dry_run_plans_the_graph(project: Path) -> None:
    result = run_cli("run", "hello.yaml", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [n["node"] for n in doc["nodes"]] == ["hello_step", "shout_step", "artifact:message"]
    assert doc["targets"] == ["message"]


PLUGIN_TASKS = """
from aliquot import pyplugs


@pyplugs.register
def hello(name: str) -> str:
    return "Hello, " + name


@pyplugs.register
def shout(text: str) -> str:
    return text.upper() + "{bang}"
"""

FROM_PLUGIN = """
{plugins}
graph:
  hello_step:
    hello: {{name: Ada}}
  shout_step:
    shout: [$hello_step.output]
artifacts:
  message:
    contents: $shout_step.output
    task: {{name: StringArtifactTask}}
"""


def test_tasks_from_task_plugins_in_the_store_pinned_by_snapshot(project: Path) -> None:
    plugin = project / "plugin_src" / "hello_world"
    plugin.mkdir(parents=True)
    (plugin / "tasks.py").write_text(PLUGIN_TASKS.format(bang="!"))
    imported = run_cli("task-plugins", "import", str(plugin))
    assert imported.exit_code == 0, imported.output
    (plugin / "tasks.py").write_text(PLUGIN_TASKS.format(bang="?"))
    replaced = run_cli("task-plugins", "import", "--replace", str(plugin))
    assert replaced.exit_code == 0, replaced.output

    (project / "latest.yaml").write_text(FROM_PLUGIN.format(plugins=""))
    (project / "pinned.yaml").write_text(FROM_PLUGIN.format(plugins="plugins: [hello_world@1]"))
    (project / "missing.yaml").write_text(
        FROM_PLUGIN.format(plugins="plugins: [hello_world, nope]")
    )

    latest = run_json("latest.yaml")
    assert run_cli("get", latest["id"], "message").stdout.strip() == "'HELLO, ADA?'"
    assert latest["meta"]["taskgraph"]["snapshots"]["hello_world"]["id"] == 2
    pinned = run_json("pinned.yaml")
    assert run_cli("get", pinned["id"], "message").stdout.strip() == "'HELLO, ADA!'"
    assert pinned["meta"]["taskgraph"]["snapshots"]["hello_world"]["id"] == 1

    result = run_cli("graphs", "validate", "missing.yaml", "--json")
    assert result.exit_code == 1
    issues = json.loads(result.stdout)["issues"]
    assert [(i["code"], i["location"]) for i in issues] == [("unknown-plugin", "plugins[1]")]
    assert "'nope'" in issues[0]["message"]
