"""The ``aliquot`` command line (in-process through ``aliquot.testing.run_cli``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import aliquot
from aliquot.testing import run_cli

TASKS = """
import aliquot

@aliquot.task(outputs=["data"])
def load(n: int = 5) -> list[int]:
    return list(range(n))

@aliquot.task(outputs=["total"])
def total(data: list[int], offset: int = 0) -> int:
    return sum(data) + offset

pipeline = [load, total]
"""

FAILING = """
import aliquot

@aliquot.task(outputs=["x"])
def fine() -> int:
    return 1

@aliquot.task(outputs=["y"])
def explode(x: int) -> int:
    raise RuntimeError("kaboom " + str(x))
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.py").write_text(TASKS)
    (tmp_path / "failing.py").write_text(FAILING)
    return tmp_path


def test_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"aliquot {aliquot.__version__}"


def test_help_lists_the_core_commands() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("run", "runs", "show", "plugins", "store"):
        assert f"  {command}" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("run",),
        ("runs",),
        ("show",),
        ("plugins",),
        ("store",),
        ("store", "verify"),
        ("store", "gc"),
        ("store", "stats"),
    ],
)
def test_every_command_has_help(args: tuple[str, ...]) -> None:
    result = run_cli(*args, "--help")
    assert result.exit_code == 0, result
    assert "Usage:" in result.stdout


def test_run_a_bare_file_runs_every_task_and_stores_the_run(project: Path) -> None:
    result = run_cli("run", "tasks.py")
    assert result.exit_code == 0, result
    assert "total = 10" in result.stdout
    assert "2 node(s) to execute" in result.stderr  # progress goes to stderr
    assert "succeeded" in result.stderr
    assert (project / ".aliquot" / "index" / "data.mdb").exists()
    runs = run_cli("runs", "--json")
    assert runs.exit_code == 0
    headers = json.loads(runs.stdout)
    assert len(headers) == 1 and headers[0]["status"] == "succeeded"
    assert headers[0]["target"] == "tasks"


def test_run_file_object_with_inputs_and_targets(project: Path) -> None:
    result = run_cli(
        "run", "tasks.py:pipeline", "--input", "n=4", "-i", "offset=100", "--target", "total", "-q"
    )
    assert result.exit_code == 0, result
    assert result.stdout.strip() == "total = 106"
    assert result.stderr == ""  # --quiet


def test_input_values_parse_as_json_or_else_as_strings(project: Path) -> None:
    (project / "echo.py").write_text(
        "import aliquot\n@aliquot.task(outputs=['echo'])\ndef echo(v):\n    return repr(v)\n"
    )
    cases = {
        "[1, 2]": "[1, 2]",
        "3.5": "3.5",
        "true": "True",
        "hello": "'hello'",
        '"7"': "'7'",
        "": "''",
    }
    for raw, expected in cases.items():
        result = run_cli("run", "echo.py", "-i", f"v={raw}", "-q")
        assert result.exit_code == 0, result
        assert result.stdout.strip() == f"echo = {expected!r}"


def test_bad_input_syntax_is_a_usage_error(project: Path) -> None:
    result = run_cli("run", "tasks.py", "--input", "novalue")
    assert result.exit_code == 2
    assert "expected NAME=VALUE" in result.stderr


def test_run_module_object_target(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(project))
    (project / "mymod_cli.py").write_text(TASKS)
    result = run_cli("run", "mymod_cli:pipeline", "-q", "-i", "n=3")
    assert result.exit_code == 0, result
    assert "total = 3" in result.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py", "no such file: missing.py"),
        ("tasks.py:nothing", "'tasks.py' has no 'nothing'"),
        ("no_such_module_xyz", "no module or file of that name"),
        ("tasks.py:load:extra", "has no 'load:extra'"),
    ],
)
def test_bad_targets_are_one_line_user_errors(project: Path, target: str, message: str) -> None:
    result = run_cli("run", target)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_traceback_flag_shows_the_traceback(project: Path) -> None:
    result = run_cli("--traceback", "run", "missing.py")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_a_syntax_error_in_the_target_names_file_and_line(project: Path) -> None:
    (project / "broken.py").write_text("x = (\n")
    result = run_cli("run", "broken.py")
    assert result.exit_code == 2
    assert (
        "broken.py:1: syntax error" in result.stderr or "broken.py:2: syntax error" in result.stderr
    )


def test_graph_errors_are_user_errors(project: Path) -> None:
    result = run_cli("run", "tasks.py", "-i", "ofset=1")
    assert result.exit_code == 2
    assert "input 'ofset' (did you mean 'offset'?)" in result.stderr


def test_a_failed_run_exits_1_and_show_prints_the_traceback(project: Path) -> None:
    result = run_cli("run", "failing.py")
    assert result.exit_code == 1
    assert "node explode failed: RuntimeError: kaboom 1" in result.stderr
    assert "see `aliquot show" in result.stderr
    shown = run_cli("show", "latest")
    assert shown.exit_code == 0
    assert "status    failed" in shown.stdout
    assert "--- explode failed ---" in shown.stdout
    assert 'raise RuntimeError("kaboom " + str(x))' in shown.stdout
    assert "RuntimeError: kaboom 1" in shown.stdout


def test_show_json_validates_against_the_run_schema(project: Path) -> None:
    import jsonschema

    run_cli("run", "failing.py")
    run_cli("run", "tasks.py", "--executor", "threads:2")
    schema = json.loads((Path(__file__).parents[2] / "spec" / "run.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for ref in ("latest", "latest~1"):
        shown = run_cli("show", ref, "--json")
        assert shown.exit_code == 0
        doc = json.loads(shown.stdout)
        jsonschema.validate(doc, schema)
    runs = json.loads(run_cli("runs", "--json").stdout)
    for header in runs:
        jsonschema.validate(
            header,
            {**schema, "required": [r for r in schema["required"] if r not in ("meta", "nodes")]},
        )


def test_run_json_output(project: Path) -> None:
    result = run_cli("run", "tasks.py", "--json", "-q")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["status"] == "succeeded"
    assert [n["id"] for n in doc["nodes"]] == ["load", "total"]
    assert doc["outputs"]["total"]["ref"]["serializer"] == "json"


def test_runs_table_and_empty_store(project: Path) -> None:
    assert run_cli("runs").stdout.strip() == "no runs yet"
    run_cli("run", "tasks.py", "-q")
    table = run_cli("runs").stdout
    assert table.startswith("RUN")
    assert "succeeded" in table and "2 computed" in table


def test_show_unknown_run_is_a_user_error(project: Path) -> None:
    result = run_cli("show", "nope")
    assert result.exit_code == 2
    assert "no run matches 'nope'" in result.stderr


def test_executor_flag_and_bad_executor(project: Path) -> None:
    assert run_cli("run", "tasks.py", "-e", "threads:2", "-q").exit_code == 0
    bad = run_cli("run", "tasks.py", "-e", "quantum")
    assert bad.exit_code == 2
    assert "unknown executor 'quantum'" in bad.stderr


def test_store_option_and_memory_store(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    assert run_cli("run", "tasks.py", "--store", str(other), "-q").exit_code == 0
    assert (other / "index").is_dir()
    assert json.loads(run_cli("runs", "--store", str(other), "--json").stdout)
    assert run_cli("run", "tasks.py", "--store", "memory://", "-q").exit_code == 0


def test_store_env_var(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "from-env"
    result = run_cli("run", "tasks.py", "-q", env={"ALIQUOT_STORE": str(target)})
    assert result.exit_code == 0
    assert (target / "index").is_dir()


def test_store_verify_stats_and_gc(project: Path) -> None:
    run_cli("run", "tasks.py", "-q")
    verify = run_cli("store", "verify", "--json")
    assert verify.exit_code == 0 and json.loads(verify.stdout)["ok"] is True
    stats = json.loads(run_cli("store", "stats", "--json").stdout)
    assert stats["spaces"]["runs"] == 1 and stats["values"] >= 1
    gc = run_cli("store", "gc", "--values", "--json")
    assert gc.exit_code == 0
    assert json.loads(gc.stdout)["values_removed"] == 0  # the run still refers to its values
    assert run_cli("show", "latest").exit_code == 0


def test_store_verify_fails_on_damage(project: Path) -> None:
    run_cli("run", "tasks.py", "-q")
    big = (
        "import aliquot\n@aliquot.task(outputs=['blob'])\n"
        "def blob():\n    return b'x' * (2 << 20)\n"
    )
    (project / "big.py").write_text(big)
    assert run_cli("run", "big.py", "-q").exit_code == 0
    blobs = list((project / ".aliquot" / "blobs").glob("*/*"))
    assert len(blobs) == 1
    damaged = bytearray(blobs[0].read_bytes())
    damaged[1000] ^= 0xFF  # same size, one byte different
    blobs[0].write_bytes(bytes(damaged))
    result = run_cli("store", "verify")
    assert result.exit_code == 1
    assert "does not match its digest" in result.stdout


def test_plugins_table_and_json() -> None:
    table = run_cli("plugins")
    assert table.exit_code == 0
    assert "store_lmdb" in table.stdout and "loaded" in table.stdout
    infos = {p["name"]: p for p in json.loads(run_cli("plugins", "--json").stdout)}
    assert infos["function"]["builtin"] is True
    assert infos["function"]["distribution"] == "aliquot"
    assert infos["function"]["status"] == "loaded"
    assert infos["function"]["hooks"] == ["aliquot_register_task_types"]


def test_blocking_a_builtin_from_the_cli(project: Path) -> None:
    infos = {
        p["name"]: p
        for p in json.loads(run_cli("-p", "no:executor_threads", "plugins", "--json").stdout)
    }
    assert infos["executor_threads"]["status"] == "blocked"
    result = run_cli("-p", "no:executor_threads", "run", "tasks.py", "-e", "threads")
    assert result.exit_code == 2
    assert "executor_threads (blocked)" in result.stderr


def test_progress_lines_for_non_terminals(project: Path) -> None:
    result = run_cli("run", "failing.py")
    lines = result.stderr.splitlines()
    assert any("computed  fine" in line for line in lines)
    assert any("failed    explode" in line and "kaboom" in line for line in lines)
    assert any("skipped" not in line for line in lines)


def test_progress_reporter_on_a_terminal() -> None:
    """On a TTY the reporter redraws one status line and ends with a summary."""
    import io

    from aliquot._progress import ProgressReporter

    stream = io.StringIO()
    reporter = ProgressReporter(stream, interactive=True)
    with aliquot.testing.make_kernel([reporter]) as kernel:  # type: ignore[attr-defined]
        kernel.run(_quick_tasks())
    text = stream.getvalue()
    assert "\r[" in text and "node(s) to execute" in text
    assert text.rstrip().endswith("2 computed")


def _quick_tasks() -> list:
    namespace: dict = {}
    exec(textwrap.dedent(TASKS), namespace)
    return [namespace["load"], namespace["total"]]


def test_progress_for_large_runs_prints_summaries_not_a_line_per_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from aliquot import _progress
    from aliquot._progress import ProgressReporter

    monkeypatch.setattr(_progress, "PER_NODE_LINES", 3)
    clock = iter(range(0, 10_000, 6))  # every call is 6 s later: a summary each node
    monkeypatch.setattr(_progress.time, "monotonic", lambda: float(next(clock)))
    stream = io.StringIO()
    namespace: dict = {}
    exec("\n".join(f"def p{i}():\n    return {i}\n" for i in range(6)), namespace)
    tasks = [aliquot.task(outputs=[f"p{i}"])(namespace[f"p{i}"]) for i in range(6)]
    with aliquot.testing.make_kernel([ProgressReporter(stream, interactive=False)]) as kernel:  # type: ignore[attr-defined]
        kernel.run(tasks)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("6 node(s) to execute")
    assert not any("computed  p" in line for line in lines)  # no per-node lines
    assert any(line.strip().startswith("[") and "computed" in line for line in lines)
    assert lines[-1].endswith("6 computed")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("lock.mdb", "writers.lock")
    }


def test_dry_run_prints_the_plan_and_writes_nothing(project: Path) -> None:
    result = run_cli("run", "tasks.py", "--dry-run")
    assert result.exit_code == 0, result
    assert "load" in result.stdout and "run" in result.stdout
    assert "2 to run, 0 from the cache, 0 skipped" in result.stdout
    assert not (project / ".aliquot").exists()  # no store is created
    assert run_cli("run", "tasks.py", "-q").exit_code == 0
    before = _snapshot(project / ".aliquot")
    shown = run_cli("run", "tasks.py", "--dry-run", "--json", "-t", "data")
    assert shown.exit_code == 0
    doc = json.loads(shown.stdout)
    assert doc["counts"] == {"run": 0, "load": 1, "skip": 1}  # the cache would serve it
    assert {n["node"]: n["action"] for n in doc["nodes"]} == {"load": "load", "total": "skip"}
    assert _snapshot(project / ".aliquot") == before
    assert len(json.loads(run_cli("runs", "--json").stdout)) == 1


def test_parallel_runs_on_processes(project: Path) -> None:
    result = run_cli("run", "tasks.py", "--parallel", "2", "-q", "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["executor"] == "processes:2"
    both = run_cli("run", "tasks.py", "--parallel", "2", "-e", "threads")
    assert both.exit_code == 2
    assert "not both" in both.stderr


OPTION_PLUGIN = """
import click, aliquot

@aliquot.hookimpl
def aliquot_register_run_options(register):
    register(click.Option(["--flavour"], default=None, help="A flavour for the plan."))

class Seen:
    name = "seen"
    order = 0
    handles = frozenset()

    def plan(self, plan, kernel):
        for nid in plan.order:
            plan.notes[nid] = {"flavour": plan.options.get("flavour")}

    async def __call__(self, ctx, call_next):
        outcome = await call_next(ctx)
        ctx.info["flavour"] = ctx.notes.get("flavour")
        return outcome

@aliquot.hookimpl
def aliquot_register_middleware(register):
    register(Seen())
"""


def test_plugins_add_options_to_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "flavour_plugin.py").write_text(OPTION_PLUGIN)
    monkeypatch.syspath_prepend(str(project))
    helped = run_cli("-p", "flavour_plugin", "run", "--help")
    assert helped.exit_code == 0 and "--flavour" in helped.stdout
    result = run_cli("-p", "flavour_plugin", "run", "tasks.py", "--flavour", "mint", "-q", "--json")
    assert result.exit_code == 0, result
    infos = [n["info"] for n in json.loads(result.stdout)["nodes"]]
    assert [info["flavour"] for info in infos] == ["mint", "mint"]
    plain = run_cli("run", "tasks.py", "--flavour", "mint")
    assert plain.exit_code == 2 and "No such option" in plain.stderr


def test_get_prints_or_writes_a_stored_value(project: Path) -> None:
    (project / "many.py").write_text(
        "import aliquot\n"
        "@aliquot.task(outputs=['blob', 'text', 'obj'])\n"
        "def many():\n"
        "    return b'\\x00\\x01', 'hello', {'a': [1, 2]}\n"
    )
    assert run_cli("run", "many.py", "-q").exit_code == 0
    assert run_cli("get", "latest", "obj").stdout.strip() == "{'a': [1, 2]}"
    assert json.loads(run_cli("get", "latest", "obj", "--json").stdout) == {"a": [1, 2]}
    for name, path, expected in (
        ("blob", "b.bin", b"\x00\x01"),
        ("text", "t.txt", b"hello"),
        ("obj", "o.json", b'{\n  "a": [\n    1,\n    2\n  ]\n}'),
    ):
        result = run_cli("get", "latest", name, "-o", path)
        assert result.exit_code == 0, result
        assert (project / path).read_bytes() == expected
    missing = run_cli("get", "latest", "nothing")
    assert missing.exit_code == 2 and "stored no output 'nothing'" in missing.stderr


def test_get_with_records_and_ambiguity(project: Path) -> None:
    from aliquot import Graph, Node, Ref
    from aliquot_builtins.function import make_spec

    def ident(v: int) -> int:
        return v

    spec = make_spec(ident, outputs=["out"])
    graph = Graph()
    for name in ("small", "big"):
        graph.add(Node(name, spec, {"v": len(name)}, labels={"record": name}))
        graph.name(f"{name}.out", Ref(name, "out"))
        graph.default_targets.append(f"{name}.out")
    store = project / ".aliquot"
    with aliquot.Kernel.open(store) as kernel:
        kernel.run(graph)
    ambiguous = run_cli("get", "latest", "out")
    assert ambiguous.exit_code == 2 and "choose one with --record (big, small)" in ambiguous.stderr
    assert run_cli("get", "latest", "out", "--record", "big").stdout.strip() == "3"
    assert run_cli("get", "latest", "small.out").stdout.strip() == "5"
