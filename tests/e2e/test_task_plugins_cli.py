"""``aliquot task-plugins ...`` and ``aliquot tasks ...``: the client's operations from a shell.

The commands run in-process (``aliquot.testing.run_cli``), grouped so a few
tests cover every command; one runs the installed ``aliquot`` script. What the
commands print with ``--json`` must be what ``aliquot.Client`` returns for the
same store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot.testing import run_cli
from aliquot_builtins.tasks import TaskPluginStore, catalog_for

HELLO = """\
import logging

from aliquot import pyplugs

LOGGER = logging.getLogger(__name__)


@pyplugs.register
def hello(name: str) -> str:
    message = f"Hello, {name}"
    LOGGER.info(message)
    return message
"""

SCRIPT = Path(sys.executable).with_name("aliquot")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.py").write_text(HELLO)
    return tmp_path


def cli(store: Path, *args: str, code: int = 0) -> str:
    result = run_cli(*args, "--store", str(store))
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def cli_json(store: Path, *args: str) -> Any:
    return json.loads(cli(store, *args, "--json"))


def test_every_command_and_the_client_agree(project: Path) -> None:
    store = project / "store"
    out = cli(store, "task-plugins", "create", "hello_world", "--description", "Hello World")
    assert out.splitlines()[0].startswith("hello_world (id 1, snapshot")
    assert "Hello World" in out
    out = cli(store, "task-plugins", "add-file", "hello_world", "tasks.py")
    assert out.strip() == "hello_world/tasks.py: 1 task(s) hello_world.tasks.hello"
    error = cli(store, "task-plugins", "add-file", "hello_world", "tasks.py", code=2)
    assert "has a file 'tasks.py' already (--replace to change it)" in error
    (project / "tasks.py").write_text(HELLO.replace("Hello", "Hi"))
    cli(store, "task-plugins", "add-file", "hello_world", "tasks.py", "--replace")
    added = cli_json(
        store, "task-plugins", "add-file", "hello_world", "tasks.py", "--as", "sub/more.py"
    )
    assert added["filename"] == "sub/more.py"
    assert added["function_tasks"][0]["qualified_name"] == "hello_world.sub.more.hello"

    shown = cli(store, "task-plugins", "show", "hello_world")
    assert "function hello_world.tasks.hello(name: string) -> output" in shown
    assert "function hello_world.sub.more.hello(name: string) -> output" in shown
    listed = cli(store, "task-plugins", "list")
    assert listed.split()[:2] == ["hello_world", "id"] and "2 file(s)  2 task(s)" in listed
    history_text = cli(store, "task-plugins", "show", "hello_world", "--history")
    assert len(history_text.strip().splitlines()) == 4
    tasks_text = cli(store, "tasks", "list")
    assert "function  hello_world.tasks.hello  (task plugin hello_world (snapshot 4))" in tasks_text
    shown_task = cli(store, "tasks", "show", "hello_world.tasks.hello")
    assert "input  name: string" in shown_task and "output output: string" in shown_task
    ambiguous = cli(store, "tasks", "show", "hello", code=2)
    assert "hello_world.sub.more.hello" in ambiguous and "hello_world.tasks.hello" in ambiguous

    as_json = {
        "list": cli_json(store, "task-plugins", "list"),
        "show": cli_json(store, "task-plugins", "show", "hello_world"),
        "history": cli_json(store, "task-plugins", "show", "hello_world", "--history"),
        "snapshot": cli_json(store, "task-plugins", "show", "hello_world", "--snapshot", "2"),
        "tasks": cli_json(store, "tasks", "list"),
        "functions": cli_json(store, "tasks", "list", "--kind", "function"),
        "task": cli_json(store, "tasks", "show", "tasks.hello"),
    }
    with aliquot.Client(store) as client:
        assert as_json == {
            "list": client.plugins.get(),
            "show": client.plugins.get_by_id("hello_world"),
            "history": client.plugins.snapshots.get("hello_world"),
            "snapshot": client.plugins.snapshots.get_by_id("hello_world", 2),
            "tasks": client.tasks.get(),
            "functions": client.tasks.get(kind="function"),
            "task": client.tasks.get_by_name("hello_world.tasks.hello"),
        }

    removed = cli_json(store, "task-plugins", "remove-file", "hello_world", "sub/more.py")
    assert removed == added
    after_removal = cli_json(store, "task-plugins", "show", "hello_world")
    assert [f["filename"] for f in after_removal["files"]] == ["tasks.py"]
    assert as_json["snapshot"]["files"][0]["digest"] != after_removal["files"][0]["digest"]
    with aliquot.Client(store) as client:
        assert after_removal == client.plugins.get_by_id(1)
        assert len(client.plugins.snapshots.get(1)) == 5
        assert client.plugins.files.get_by_id(1, "tasks.py")["contents"] == HELLO.replace(
            "Hello", "Hi"
        )
        kernel = client.transport.kernel
        spec = catalog_for(kernel).resolve("hello").load()
        assert kernel.run(aliquot.graph_from_tasks([spec], {"name": "cli"}))["output"] == "Hi, cli"

    removed_plugin = cli_json(store, "task-plugins", "remove", "hello_world")
    assert removed_plugin["deleted"] is True
    assert cli_json(store, "task-plugins", "list") == []
    assert cli(store, "task-plugins", "list").strip() == "no task plugins"


def test_import_a_directory_and_an_archive(project: Path) -> None:
    store = project / "store"
    source = project / "greetings"
    (source / "sub").mkdir(parents=True)
    (source / "tasks.py").write_text(HELLO)
    (source / "sub" / "util.py").write_text("X = 1\n")
    (source / "notes.md").write_text("not code")
    imported = cli_json(store, "task-plugins", "import", str(source))
    assert imported["name"] == "greetings" and imported["skipped"] == ["notes.md"]
    assert [f["filename"] for f in imported["files"]] == ["sub/util.py", "tasks.py"]
    text = cli(store, "task-plugins", "import", str(source), "--name", "copy")
    assert text.startswith("copy (id 2") and "skipped notes.md (not a .py file)" in text
    refused = cli(store, "task-plugins", "import", str(source), code=2)
    assert "exists already; import with --replace" in refused

    archive = project / "bundle.tar.gz"
    (source / "tasks.py").write_text(HELLO.replace("Hello", "Howdy"))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "tasks.py", arcname="greetings/tasks.py")
    replaced = cli_json(store, "task-plugins", "import", str(archive), "--replace")
    assert replaced["name"] == "greetings" and [f["filename"] for f in replaced["files"]] == [
        "tasks.py"
    ]
    for path in sorted(source.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    archive.unlink()

    with aliquot.Client(store) as client:
        kernel = client.transport.kernel
        spec = catalog_for(kernel).resolve("greetings.tasks.hello").load()
        run = kernel.run(aliquot.graph_from_tasks([spec], {"name": "there"}))
        assert run["output"] == "Howdy, there"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("task-plugins", "create", "not valid"), "task plugin name 'not valid' is not a valid"),
        (("task-plugins", "show", "nope"), "no task plugin is named 'nope'"),
        (("task-plugins", "add-file", "p", "bad.py"), "p/bad.py:2: syntax error"),
        (("task-plugins", "add-file", "p", "tasks.py", "--as", "../x.py"), "leaves the plugin"),
        (("task-plugins", "add-file", "p", "tasks.py", "--as", "/x.py"), "is absolute"),
        (("task-plugins", "import", "evil.tar.gz", "--name", "evil"), "links are refused"),
        (("task-plugins", "remove-file", "p", "nope.py"), "has no file 'nope.py'"),
        (("task-plugins", "show", "p", "--snapshot", "999"), "no task plugin snapshot has id 999"),
        (("tasks", "show", "helo"), "no task is named 'helo'"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    project: Path, args: tuple[str, ...], message: str
) -> None:
    store = project / "store"
    (project / "bad.py").write_text("x = 1\ny = (\n")
    with tarfile.open(project / "evil.tar.gz", "w:gz") as tar:
        link = tarfile.TarInfo("evil/tasks.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    cli(store, "task-plugins", "create", "p")
    cli(store, "task-plugins", "add-file", "p", "tasks.py")
    before = cli_json(store, "task-plugins", "list")
    error = cli(store, *args, code=2)
    assert error.startswith("aliquot: error: ") and message in error, error
    assert len(error.strip().splitlines()) == 1
    assert cli_json(store, "task-plugins", "list") == before
    assert not (project.parent / "x.py").exists() and not Path("/x.py").exists()


def test_store_gc_keeps_the_files_of_every_snapshot(project: Path) -> None:
    store = project / "store"
    unique = f"# {project.name}\n"  # code this process has not loaded before
    (project / "tasks.py").write_text(unique + HELLO)
    cli(store, "task-plugins", "create", "hello_world")
    cli(store, "task-plugins", "add-file", "hello_world", "tasks.py")
    first = cli_json(store, "task-plugins", "show", "hello_world")["latest_snapshot"]["id"]
    (project / "tasks.py").write_text(unique + HELLO.replace("Hello", "Bye"))
    cli(store, "task-plugins", "add-file", "hello_world", "tasks.py", "--replace")
    cli(store, "task-plugins", "remove", "hello_world")
    with aliquot.Client(store) as client:
        kernel = client.transport.kernel
        orphan, _size = kernel.store.put_value(b"a value nothing refers to")
        kernel.store.commit()

    report = cli_json(store, "store", "gc", "--values")
    assert report["values_removed"] >= 1  # gc ran, and did delete something

    with aliquot.Client(store) as client:
        kernel = client.transport.kernel
        assert kernel.store.get_value(orphan) is None
        tps = TaskPluginStore(kernel.store)
        for snapshot in tps.snapshots(1):
            for file in snapshot["files"]:
                assert tps.contents(file).startswith(unique)
        spec = catalog_for(kernel, plugins=[f"hello_world@{first}"]).resolve("hello").load()
        assert spec.fn("old") == "Hello, old"


def test_the_installed_script_has_the_commands(project: Path) -> None:
    store = project / "store"
    source = project / "hello_world"
    source.mkdir()
    (source / "tasks.py").write_text(HELLO)
    result = subprocess.run(
        [str(SCRIPT), "task-plugins", "import", str(source), "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert imported["files"][0]["function_tasks"][0]["qualified_name"] == "hello_world.tasks.hello"
    assert cli_json(store, "tasks", "show", "hello")["name"] == "hello_world.tasks.hello"
