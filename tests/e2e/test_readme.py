"""The README tells the truth: its example runs, its commands exist, the quickstart works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
ENV = {**os.environ, "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _aliquot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aliquot.cli", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_readme_shows_the_two_setup_commands() -> None:
    assert "python -m pip install -e . && aliquot run examples/experiment.py\n" in README
    assert "python -m pip install -e '.[test]' && python -m pytest\n" in README


def test_readme_example_runs_as_printed(tmp_path: Path) -> None:
    block = re.search(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert block is not None
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 22, "the README example should stay about twenty lines"
    (tmp_path / "example.py").write_text(code)
    out = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["succeeded 49.5 99", "49.5"]


def test_quickstart_runs_and_leaves_the_run_in_the_store(tmp_path: Path) -> None:
    example = ROOT / "examples" / "quickstart.py"
    result = _aliquot("run", str(example), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("report = 'y = 2.5")
    assert "5 node(s) to execute" in result.stderr and "succeeded" in result.stderr
    assert (tmp_path / ".aliquot" / "index" / "data.mdb").exists()
    runs = _aliquot("runs", cwd=tmp_path)
    assert runs.returncode == 0 and "quickstart" in runs.stdout and "5 computed" in runs.stdout
    shown = _aliquot("show", "latest", cwd=tmp_path)
    assert shown.returncode == 0
    for node in ("make_data", "split", "fit", "evaluate", "report"):
        assert node in shown.stdout
    again = _aliquot("run", str(example), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to compute: 1 node(s) served from the cache" in again.stderr
    assert again.stdout == result.stdout  # the same report, from the cache
    targeted = _aliquot(
        "run", str(example), "--input", "n=400", "--target", "metrics", "-q", cwd=tmp_path
    )
    assert targeted.returncode == 0
    assert targeted.stdout.startswith("metrics = {'rmse'")


def test_quickstart_runs_as_a_script(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("y = 2.5")


def test_readme_experiment_runs_then_computes_nothing(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert len(blocks) >= 2
    (tmp_path / "demo.py").write_text(blocks[1])
    first = _aliquot("run", "demo.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "best = 'big'\n"
    again = _aliquot("run", "demo.py", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to compute" in again.stderr
    code = (
        "import aliquot, demo\n"
        "with aliquot.Kernel.open('.aliquot') as kernel:\n"
        "    run = kernel.run(demo.experiment)\n"
        "    print(run['best'], run.records['small'].state['mean'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "big 4.5\n"


def test_the_example_experiment_runs_and_caches(tmp_path: Path) -> None:
    example = ROOT / "examples" / "experiment.py"
    first = _aliquot("run", str(example), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "best = 'deg5'" in first.stdout
    # the data of the four degrees is made once per noise level
    assert "21 computed, 12 cached" in first.stderr
    again = _aliquot("run", str(example), cwd=tmp_path)
    assert "nothing to compute: 1 node(s) served from the cache, 32 not needed" in again.stderr
    dry = _aliquot("run", str(example), "--dry-run", "--names", "deg3", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "deg3/evaluate" in dry.stdout
    script = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, env=ENV, capture_output=True, text=True
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.splitlines()[-1] == "best: deg5 | deg3 rmse: 0.205"


def _walkthrough(
    section: str, expected: list[list[str]], tmp_path: Path
) -> list[subprocess.CompletedProcess[str]]:
    """Run the command block of README section ``section`` in order, on a fresh store;
    its commands must start as ``expected`` says, and each must succeed."""
    block = README.split(f"## {section}", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].split() for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == expected
    results = []
    for command in commands:
        args = [str(ROOT / a) if a.startswith("examples/") else a for a in command[1:]]
        result = _aliquot(*args, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        results.append(result)
    return results


def test_task_plugin_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    """The four commands of "Task plugins and task graphs", in order, on a fresh store."""
    expected = [
        ["aliquot", "task-plugins"],
        ["aliquot", "graphs"],
        ["aliquot", "run"],
        ["aliquot", "get"],
    ]
    results = _walkthrough("Task plugins and task graphs", expected, tmp_path)
    assert "hello_world.tasks.hello" in results[0].stdout
    assert results[1].stdout.startswith("ok")
    assert "HELLO, ADA!" in results[2].stdout
    assert results[3].stdout.strip() == "'HELLO, ADA!'"


def test_components_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    """The five commands of "Components and triggers", in order, on a fresh store."""
    expected = [
        ["aliquot", "apply"],
        ["aliquot", "apply"],
        ["aliquot", "components"],
        ["aliquot", "jobs"],
        ["aliquot", "components"],
    ]
    results = _walkthrough("Components and triggers", expected, tmp_path)
    first = results[0].stdout.splitlines()
    assert first[0] == "[client] registered n1"
    assert first[1].startswith("[client] initializing Notifier:n1:")
    assert first[2] == "[report] a=1 b=x c={'k': 1}"
    assert first[3] == "new       Notifier:n1 v0"
    assert "succeeded Notifier:n1.start" in first[4] and "succeeded Notifier:n1.go" in first[5]
    assert results[1].stdout == "same      Notifier:n1 v0\n"
    assert "Notifier:n1  v0" in results[2].stdout
    jobs = results[3].stdout.splitlines()
    assert len(jobs) == 3 and all(" trigger " in line for line in jobs[1:])
    assert results[4].stdout.startswith("[client] tore down n1\nremoved Notifier:n1 (v0)")
