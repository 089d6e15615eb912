"""Task plugins: files and snapshots in the store, the Python client, loading code, safety.

Everything goes through ``aliquot.Client`` on a store in ``tmp_path`` (what a
user does); a task is run by resolving it in ``catalog_for(kernel)`` and giving
it to ``kernel.run``.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import shutil
import stat
import struct
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aliquot
from aliquot_builtins.tasks import (
    AmbiguousTaskError,
    TaskPluginError,
    TaskPluginImportError,
    TaskPluginStore,
    UnknownTaskError,
    catalog_for,
)

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

VERSIONED = """\
from aliquot import register


@register
def hello(name: str) -> str:
    return "{version} " + name
"""

GREETING = """\
def hello_world(greeting: str, name: str) -> str:
    return f"{greeting}, {name}"


def pair(x: int) -> tuple[int, int]:
    return x, x
"""

ARTIFACT = """\
from pathlib import Path
from typing import Any

from aliquot_builtins.artifacts import ArtifactTaskInterface


class StringArtifactTask(ArtifactTaskInterface):
    @staticmethod
    def serialize(
        working_dir: Path, name: str, contents: str, type: str = "txt", **kwargs
    ) -> Path:
        result = (working_dir / name).with_suffix("." + type)
        result.write_text(contents, encoding="UTF-8", newline="")
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs) -> str:
        return Path(working_dir, path).read_text()

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"type": {"type": "string"}}
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[aliquot.Client]:
    with aliquot.Client(tmp_path / "store") as c:
        yield c


def kernel_of(client: aliquot.Client) -> Any:
    return client.transport.kernel


def make_plugin(
    client: aliquot.Client, files: dict[str, str] | None = None, name: str = "hello_world"
) -> dict[str, Any]:
    """A plugin with ``files`` (filename -> contents), one snapshot per file."""
    plugin = client.plugins.create(name=name, description=f"the {name} plugin")
    for filename, contents in (files or {}).items():
        client.plugins.files.create(plugin_id=plugin["id"], filename=filename, contents=contents)
    found: dict[str, Any] = client.plugins.get_by_id(plugin["id"])
    return found


def run_task(
    client: aliquot.Client,
    name: str,
    inputs: dict[str, Any],
    *,
    plugins: Any = None,
    executor: str | None = None,
) -> Any:
    kernel = kernel_of(client)
    spec = catalog_for(kernel, plugins).resolve(name).load()
    return kernel.run(aliquot.graph_from_tasks([spec], inputs), executor=executor)


def latest_id(client: aliquot.Client, plugin: str = "hello_world") -> int:
    snap: int = client.plugins.get_by_id(plugin)["latest_snapshot"]["id"]
    return snap


def tree(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int, int]]:
    """Everything under ``root`` (but ``skip``): mode, size and mtime of each entry."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        info = path.lstat()
        out[path.relative_to(root).as_posix()] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return out


# ---------------------------------------------------------------------------
# Registering: Dioptra's example, derived and explicit metadata
# ---------------------------------------------------------------------------


def test_the_dioptra_example_works_with_only_its_imports_changed(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world", description="This is a Hello World Plugin")
    file = client.plugins.files.create(plugin_id=plugin["id"], filename="tasks.py", contents=HELLO)
    (task,) = file["function_tasks"]
    assert task["qualified_name"] == "hello_world.tasks.hello"
    assert task["inputs"] == [
        {"name": "name", "type": "string", "required": True, "kind": "positional_or_keyword"}
    ]
    assert task["outputs"] == [{"name": "output", "type": "string"}]
    run = run_task(client, "hello", {"name": "World"})
    assert run.status == "succeeded" and run["output"] == "Hello, World"


def test_a_wrong_value_for_a_plugin_task_names_task_parameter_type_and_value(
    client: aliquot.Client,
) -> None:
    make_plugin(client, {"tasks.py": HELLO})
    run = run_task(client, "hello", {"name": 5})
    node = run.nodes["hello"]
    assert run.status == "failed" and node.error is not None
    assert node.error.message == (
        "task 'hello_world.tasks.hello': parameter 'name' expects string, "
        "but 5 (int) is not a string"
    )


@pytest.mark.parametrize("style", ["dioptra", "snake_case"])
def test_explicit_registration_dioptra_style(client: aliquot.Client, style: str) -> None:
    inputs, outputs, ptype = (
        ("inputParams", "outputParams", "parameterType")
        if style == "dioptra"
        else ("input_params", "output_params", "parameter_type")
    )
    plugin = client.plugins.create(name="hello_world")
    file = client.plugins.files.create(
        plugin_id=plugin["id"],
        filename="hello.py",
        contents=GREETING,
        function_tasks=[
            {
                "name": "hello_world",
                inputs: [
                    {"name": "greeting", ptype: "string", "required": True},
                    {"name": "name", ptype: "string", "required": True},
                ],
                outputs: [{"name": "message", ptype: "string"}],
            }
        ],
    )
    (task,) = file["function_tasks"]  # only what is registered: not `pair`
    assert task["qualified_name"] == "hello_world.hello.hello_world"
    assert [(i["name"], i["type"], i["required"]) for i in task["inputs"]] == [
        ("greeting", "string", True),
        ("name", "string", True),
    ]
    assert task["outputs"] == [{"name": "message", "type": "string"}]
    run = run_task(client, "hello_world", {"greeting": "Hi", "name": "Ada"})
    assert run.status == "succeeded" and run["message"] == "Hi, Ada"


@pytest.mark.parametrize(
    ("function_tasks", "artifact_tasks", "message"),
    [
        (
            [{"name": "hello_world", "inputParams": ["greeting", "name", "bogus"]}],
            None,
            "registered input 'bogus' is not a parameter of the function",
        ),
        (
            [{"name": "hello_world", "inputParams": [{"name": "greeting"}]}],
            None,
            "leave out required parameter(s) ['name']",
        ),
        (
            [
                {
                    "name": "hello_world",
                    "inputParams": [{"name": "greeting", "required": False}, {"name": "name"}],
                }
            ],
            None,
            "input 'greeting' is registered as not required, but the function gives it no default",
        ),
        (
            [{"name": "pair", "outputParams": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}],
            None,
            "3 output name(s) ['a', 'b', 'c'] for a function whose return annotation gives 2",
        ),
        ([{"name": "nope"}], None, "function task 'nope' is not a module-level function"),
        ([{"name": "pair", "tasks": []}], None, "unknown key(s) ['tasks']"),
        ({"name": "pair"}, None, "each function task is a mapping, not 'name'"),
        (["pair"], None, "each function task is a mapping"),
        (
            [{"name": "pair", "inputParams": [{"name": "x", "parameterType": {"set": "x"}}]}],
            None,
            "unknown type structure 'set'",
        ),
        (None, [{"name": "Missing"}], "artifact task 'Missing' is not a class of the file"),
    ],
)
def test_explicit_registration_that_disagrees_with_the_code_is_refused(
    client: aliquot.Client, function_tasks: Any, artifact_tasks: Any, message: str
) -> None:
    plugin = client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError, match=re.escape(message)):
        client.plugins.files.create(
            plugin_id=plugin["id"],
            filename="hello.py",
            contents=GREETING,
            function_tasks=function_tasks,
            artifact_tasks=artifact_tasks,
        )
    assert client.plugins.files.get(plugin["id"]) == []


def test_explicit_lists_register_exactly_what_they_name(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world")
    file = client.plugins.files.create(
        plugin_id=plugin["id"],
        filename="tasks.py",
        contents=HELLO + "\n" + ARTIFACT,
        function_tasks=[],
        artifact_tasks=[
            {
                "name": "StringArtifactTask",
                "outputParams": [{"name": "path", "parameterType": "any"}],
            }
        ],
    )
    assert file["function_tasks"] == []  # `hello` is decorated, but not registered here
    assert [t["qualified_name"] for t in file["artifact_tasks"]] == [
        "hello_world.tasks.StringArtifactTask"
    ]
    assert [t["name"] for t in client.tasks.get(plugin="hello_world")] == [
        "hello_world.tasks.StringArtifactTask"
    ]


def test_a_decorator_that_disagrees_with_the_code_is_refused_naming_file_and_line(
    client: aliquot.Client,
) -> None:
    plugin = client.plugins.create(name="hello_world")
    source = (
        "from aliquot import register\n\n\n"
        "@register(inputs={'bogus': 'integer'})\n"
        "def f(x):\n"
        "    return x\n"
    )
    with pytest.raises(
        TaskPluginError, match=r"^hello_world/tasks\.py:5: task 'f': registered input 'bogus'"
    ):
        client.plugins.files.create(plugin_id=plugin["id"], filename="tasks.py", contents=source)
    assert client.plugins.files.get(plugin["id"]) == []


def test_registration_reads_the_code_without_running_it(
    client: aliquot.Client, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    source = (
        "import pathlib\n"
        "from aliquot import register\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "raise RuntimeError('top level ran')\n"
        "\n"
        "@register\n"
        "def task(x: int) -> int:\n"
        "    return x\n"
    )
    analysis = client.workflows.analyze_plugin_task_signatures(source)
    assert [t["name"] for t in analysis["function_tasks"]] == ["task"]
    plugin = client.plugins.create(name="hello_world")
    file = client.plugins.files.create(plugin_id=plugin["id"], filename="tasks.py", contents=source)
    assert [t["qualified_name"] for t in file["function_tasks"]] == ["hello_world.tasks.task"]
    assert client.tasks.get_by_name("task")["name"] == "hello_world.tasks.task"
    assert not marker.exists()
    # Running it is another matter: importing names the file and the line.
    with pytest.raises(TaskPluginImportError, match=r"hello_world/tasks\.py:4: RuntimeError"):
        run_task(client, "task", {"x": 1})


# ---------------------------------------------------------------------------
# Names and files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "1abc", "hello world", "hello-world", "a.b", "class", "builtin", 5]
)
def test_plugin_names_must_be_identifiers(client: aliquot.Client, name: Any) -> None:
    with pytest.raises(TaskPluginError, match="task plugin name"):
        client.plugins.create(name=name)
    assert client.plugins.get() == []


def test_plugin_names_are_unique(client: aliquot.Client) -> None:
    make_plugin(client)
    make_plugin(client, name="other")
    with pytest.raises(TaskPluginError, match="'hello_world' exists already"):
        client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError, match="'other' exists already"):
        client.plugins.modify_by_id("hello_world", name="other")
    assert sorted(p["name"] for p in client.plugins.get()) == ["hello_world", "other"]


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("../x.py", "leaves the plugin"),
        ("sub/../../x.py", "leaves the plugin"),
        ("./x.py", "leaves the plugin"),
        ("/etc/x.py", "is absolute"),
        ("\\x.py", "is absolute"),
        ("C:x.py", "is absolute"),
        ("sub\\x.py", "uses '\\'"),
        ("x.txt", "is not a .py file"),
        ("x", "is not a .py file"),
        ("x.py/", "is not a .py file"),
        ("1x.py", "is not importable"),
        ("my-tasks.py", "is not importable"),
        ("my tasks.py", "is not importable"),
        ("class.py", "is not importable"),
        ("sub/def/x.py", "is not importable"),
        ("a//b.py", "is not importable"),
        (".py", "is not importable"),
        ("", "is empty"),
        (5, "is empty or not a string"),
    ],
)
def test_bad_filenames_are_refused(client: aliquot.Client, filename: Any, message: str) -> None:
    plugin = client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError, match=re.escape(message)):
        client.plugins.files.create(plugin_id=plugin["id"], filename=filename, contents=HELLO)
    assert client.plugins.files.get(plugin["id"]) == []


def test_subdirectories_make_qualified_names(client: aliquot.Client) -> None:
    src = "from aliquot import register\n\n@register\ndef {0}() -> int:\n    return 1\n"
    plugin = make_plugin(
        client,
        {
            "__init__.py": src.format("top"),
            "sub/models.py": src.format("model"),
            "deep/er/_private.py": src.format("hidden"),
        },
    )
    names = sorted(t["qualified_name"] for f in plugin["files"] for t in f["function_tasks"])
    assert names == [
        "hello_world.deep.er._private.hidden",
        "hello_world.sub.models.model",
        "hello_world.top",
    ]
    assert run_task(client, "hello_world.deep.er._private.hidden", {})["output"] == 1
    assert run_task(client, "model", {})["output"] == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [("tasks.py", "tasks/extra.py"), ("tasks/extra.py", "tasks.py"), ("sub/__init__.py", "sub.py")],
)
def test_a_name_cannot_be_both_a_module_and_a_package(
    client: aliquot.Client, first: str, second: str
) -> None:
    plugin = client.plugins.create(name="hello_world")
    client.plugins.files.create(plugin_id=plugin["id"], filename=first, contents="X = 1\n")
    with pytest.raises(TaskPluginError, match="would both be the module"):
        client.plugins.files.create(plugin_id=plugin["id"], filename=second, contents="X = 1\n")
    assert [f["filename"] for f in client.plugins.files.get(plugin["id"])] == [first]


def test_a_syntax_error_names_file_and_line_and_stores_nothing(client: aliquot.Client) -> None:
    plugin = make_plugin(client, {"tasks.py": HELLO})
    before = client.plugins.snapshots.get(plugin["id"])
    with pytest.raises(
        TaskPluginError, match=r"^hello_world/bad\.py:2: syntax error: .*the file was not stored"
    ):
        client.plugins.files.create(
            plugin_id=plugin["id"], filename="bad.py", contents="x = 1\ny = (\n"
        )
    assert client.plugins.snapshots.get(plugin["id"]) == before


def test_contents_must_be_text(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world")
    for contents, message in [(5, "contents must be text"), (b"\xff\xfe", "not UTF-8 text")]:
        with pytest.raises(TaskPluginError, match=message):
            client.plugins.files.create(plugin_id=plugin["id"], filename="t.py", contents=contents)  # type: ignore[arg-type]
    with pytest.raises(TaskPluginError, match="over the 1048576-byte limit"):
        client.plugins.files.create(
            plugin_id=plugin["id"], filename="t.py", contents="#" * (1 << 20) + "\n"
        )
    assert client.plugins.files.get(plugin["id"]) == []


# ---------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------


def test_every_change_is_a_new_immutable_snapshot(client: aliquot.Client) -> None:
    seen: list[dict[str, Any]] = []

    def check_new_snapshot() -> dict[str, Any]:
        history = client.plugins.snapshots.get("hello_world")
        assert len(history) == len(seen) + 1
        for old, now in zip(seen, history, strict=False):
            assert client.plugins.snapshots.get_by_id("hello_world", old["id"]) == old == now
        latest = history[-1]
        assert latest["id"] == latest_id(client)
        assert latest["parent"] == (seen[-1]["id"] if seen else None)
        assert len(latest["digest"]) == 64 and int(latest["digest"], 16) >= 0
        assert latest["created"] >= (seen[-1]["created"] if seen else "")
        seen.append(latest)
        return latest

    plugin = client.plugins.create(name="hello_world")
    empty = check_new_snapshot()
    file = client.plugins.files.create(
        plugin_id=plugin["id"], filename="tasks.py", contents=VERSIONED.format(version="v1")
    )
    one = check_new_snapshot()
    client.plugins.files.modify_by_id(
        plugin["id"], file["id"], contents=VERSIONED.format(version="v2")
    )
    two = check_new_snapshot()
    client.plugins.modify_by_id(plugin["id"], description="now described")
    described = check_new_snapshot()
    client.plugins.files.delete_by_id(plugin["id"], "tasks.py")
    removed = check_new_snapshot()
    assert len({empty["digest"], one["digest"], two["digest"]}) == 3
    assert described["digest"] == two["digest"]  # same code, same digest
    assert removed["files"] == [] and [f["filename"] for f in one["files"]] == ["tasks.py"]
    assert one["files"][0]["digest"] != two["files"][0]["digest"]


def test_a_snapshot_is_read_through_its_own_plugin(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": HELLO})
    make_plugin(client, name="other")
    with pytest.raises(TaskPluginError, match="belongs to task plugin 'hello_world', not 'other'"):
        client.plugins.snapshots.get_by_id("other", latest_id(client))


def test_an_old_snapshot_still_loads_beside_the_new_one(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": VERSIONED.format(version="v1")})
    first = latest_id(client)
    client.plugins.files.modify_by_id(
        "hello_world", "tasks.py", contents=VERSIONED.format(version="v2")
    )
    second = latest_id(client)
    kernel = kernel_of(client)

    old_catalog = catalog_for(kernel, plugins=[f"hello_world@{first}"])
    new_catalog = catalog_for(kernel)
    assert old_catalog.snapshots["hello_world"]["id"] == first
    assert new_catalog.snapshots["hello_world"]["id"] == second
    assert (
        old_catalog.snapshots["hello_world"]["digest"]
        != new_catalog.snapshots["hello_world"]["digest"]
    )
    old = old_catalog.resolve("hello").load()
    new = new_catalog.resolve("hello").load()
    assert old.fn.__module__ != new.fn.__module__
    assert sys.modules[old.fn.__module__] is not sys.modules[new.fn.__module__]
    assert (old.fn("x"), new.fn("x")) == ("v1 x", "v2 x")

    # Runs with the same input do not mix the two up (the snapshot pins the code).
    assert kernel.run(aliquot.graph_from_tasks([new], {"name": "a"}))["output"] == "v2 a"
    assert kernel.run(aliquot.graph_from_tasks([old], {"name": "a"}))["output"] == "v1 a"
    pinned = catalog_for(kernel, plugins={"hello_world": first}).resolve("hello").load()
    assert pinned.fn is old.fn


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        (["hello_world@abc"], "expected NAME or NAME@SNAPSHOT_ID"),
        (["hello_world@999"], "no task plugin snapshot has id 999"),
        (["nope"], "no task plugin is named 'nope' (task plugins: hello_world, other)"),
        (["other@{hello}"], "belongs to task plugin 'hello_world', not 'other'"),
    ],
)
def test_catalog_for_refuses_bad_pins(
    client: aliquot.Client, plugins: list[str], message: str
) -> None:
    make_plugin(client, {"tasks.py": HELLO})
    make_plugin(client, name="other")
    pins = [p.format(hello=latest_id(client)) for p in plugins]
    with pytest.raises(TaskPluginError, match=re.escape(message)):
        catalog_for(kernel_of(client), plugins=pins)


def test_changed_code_is_computed_again_not_served_from_the_cache(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": VERSIONED.format(version="v1")})
    assert run_task(client, "hello", {"name": "x"})["output"] == "v1 x"
    again = run_task(client, "hello", {"name": "x"})
    assert again.nodes["hello"].status == "cached"
    client.plugins.files.modify_by_id(
        "hello_world", "tasks.py", contents=VERSIONED.format(version="v2")
    )
    changed = run_task(client, "hello", {"name": "x"})
    assert changed.nodes["hello"].status == "computed" and changed["output"] == "v2 x"


# ---------------------------------------------------------------------------
# Loading code
# ---------------------------------------------------------------------------


def test_code_is_materialised_privately_under_a_module_name_per_snapshot(
    client: aliquot.Client, tmp_path: Path
) -> None:
    source = tmp_path / "src" / "hello_world"
    source.mkdir(parents=True)
    (source / "tasks.py").write_text(HELLO)
    (source / "README.md").write_text("not code")
    imported = client.plugins.import_path(source)
    assert imported["name"] == "hello_world" and imported["skipped"] == ["README.md"]
    shutil.rmtree(tmp_path / "src")  # the store has the files now

    spec = catalog_for(kernel_of(client)).resolve("hello").load()
    digest = client.plugins.get_by_id("hello_world")["latest_snapshot"]["digest"]
    assert spec.fn.__module__ == f"aliquot_tp_hello_world_{digest[:16]}.tasks"
    path = Path(spec.fn.__code__.co_filename)
    assert path.read_text() == HELLO
    assert not path.is_relative_to(tmp_path)
    package, root = path.parent, path.parent.parent
    assert stat.S_IMODE(package.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    run = run_task(client, "hello", {"name": "again"})
    assert run.status == "succeeded" and run["output"] == "Hello, again"


def test_a_plugin_task_runs_on_the_processes_executor(client: aliquot.Client) -> None:
    source = HELLO + (
        "\n\n@pyplugs.register\n"
        "def where(name: str) -> int:\n"
        "    import os\n\n"
        "    return os.getpid()\n"
    )
    make_plugin(client, {"tasks.py": source})
    run = run_task(client, "hello", {"name": "worker"}, executor="processes:2")
    assert run.status == "succeeded", [n.reason for n in run.nodes.values()]
    assert run.nodes["hello"].status == "computed" and run["output"] == "Hello, worker"
    run = run_task(client, "where", {"name": "worker"}, executor="processes:2")
    assert run.status == "succeeded" and run["output"] != os.getpid()


def test_a_plugin_package_is_materialised_again_on_import(client: aliquot.Client) -> None:
    """The meta-path finder: a module name of a snapshot imports from any open store."""
    make_plugin(
        client,
        name="finder",
        files={
            "tasks.py": "from aliquot import register\n\nclass Box:\n    pass\n\n"
            "@register\ndef f() -> int:\n    return 1\n"
        },
    )
    spec = catalog_for(kernel_of(client)).resolve("finder.tasks.f").load()
    module = spec.fn.__module__
    package = module.partition(".")[0]
    folder = Path(spec.fn.__code__.co_filename).parent
    shutil.rmtree(folder)
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    assert importlib.import_module(module).Box.__module__ == module
    assert folder.is_dir()


@pytest.mark.parametrize(
    ("files", "where", "error"),
    [
        (
            {
                "tasks.py": "from aliquot import register\nX = 1\nraise RuntimeError('boom')\n"
                "@register\ndef t() -> int:\n    return 1\n"
            },
            "hello_world/tasks.py:3",
            "RuntimeError: boom",
        ),
        (
            {
                "helper.py": "# a helper\nVALUE = 1 / 0\n",
                "tasks.py": "from aliquot import register\nfrom .helper import VALUE\n\n"
                "@register\ndef t() -> int:\n    return VALUE\n",
            },
            "hello_world/helper.py:2",
            "ZeroDivisionError",
        ),
        (
            {
                "sub/helper.py": "# a helper\n\nimport no_such_module_anywhere\n",
                "tasks.py": "from aliquot import register\nfrom .sub import helper\n\n"
                "@register\ndef t() -> int:\n    return 1\n",
            },
            "hello_world/sub/helper.py:3",
            "ModuleNotFoundError",
        ),
    ],
    ids=["first-file", "second-file", "sub-package"],
)
def test_code_that_raises_on_import_names_file_and_line(
    client: aliquot.Client, files: dict[str, str], where: str, error: str
) -> None:
    make_plugin(client, files)
    info = catalog_for(kernel_of(client)).resolve("t")  # resolving imports nothing
    with pytest.raises(TaskPluginImportError) as caught:
        info.load()
    message = str(caught.value)
    assert f"failed at {where}: {error}" in message and "importing tasks.py" in message
    assert f"snapshot {latest_id(client)}" in message


# ---------------------------------------------------------------------------
# Task names
# ---------------------------------------------------------------------------


def test_short_names_resolve_when_unambiguous(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": HELLO})
    catalog = catalog_for(kernel_of(client))
    for name in ("hello", "tasks.hello", "hello_world.tasks.hello"):
        assert catalog.resolve(name).name == "hello_world.tasks.hello"
    with pytest.raises(UnknownTaskError, match="no task is named 'helo'; did you mean 'hello'"):
        catalog.resolve("helo")
    with pytest.raises(UnknownTaskError):
        catalog.resolve("llo")  # a suffix of a name, not of a dotted part


def test_an_ambiguous_short_name_lists_the_candidates(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": HELLO})
    make_plugin(client, {"tasks.py": HELLO}, name="other")
    catalog = catalog_for(kernel_of(client))
    for name in ("hello", "tasks.hello"):
        with pytest.raises(AmbiguousTaskError) as caught:
            catalog.resolve(name)
        assert [c.split(" ")[0] for c in caught.value.candidates] == [
            "hello_world.tasks.hello",
            "other.tasks.hello",
        ]
        assert "write the qualified name" in str(caught.value)
    assert catalog.resolve("other.tasks.hello").plugin == "other"
    with pytest.raises(AmbiguousTaskError, match="ambiguous"):
        client.tasks.get_by_name("hello")


def test_builtin_artifact_tasks_give_way_to_a_plugin_class(client: aliquot.Client) -> None:
    catalog = catalog_for(kernel_of(client))
    assert catalog.resolve("StringArtifactTask").name == "builtin.StringArtifactTask"
    make_plugin(client, {"tasks.py": ARTIFACT}, name="artifacts_plugin")
    catalog = catalog_for(kernel_of(client))
    found = catalog.resolve("StringArtifactTask")
    assert found.name == "artifacts_plugin.tasks.StringArtifactTask" and found.kind == "artifact"
    assert catalog.resolve("builtin.StringArtifactTask").builtin
    cls = found.load()
    assert cls.__name__ == "StringArtifactTask" and cls.__module__.startswith("aliquot_tp_")
    assert cls.validation() == {"type": {"type": "string"}}


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


def test_client_plugins(client: aliquot.Client) -> None:
    created = client.plugins.create(name="hello_world", description="first")
    assert created["name"] == "hello_world" and created["files"] == []
    assert client.plugins.get() == [client.plugins.get_by_id(created["id"])]
    by_id = client.plugins.get_by_id(created["id"])
    assert (
        client.plugins.get_by_id("hello_world")
        == by_id
        == client.plugins.get_by_id(str(created["id"]))
    )
    assert by_id["description"] == "first"
    make_plugin(client, name="other")
    assert [p["name"] for p in client.plugins.get(search="hello")] == ["hello_world"]

    renamed = client.plugins.modify_by_id(created["id"], name="greetings", description="second")
    assert renamed["name"] == "greetings" and renamed["description"] == "second"
    with pytest.raises(TaskPluginError, match="no task plugin is named 'hello_world'"):
        client.plugins.get_by_id("hello_world")
    assert [s["name"] for s in client.plugins.snapshots.get("greetings")] == [
        "hello_world",
        "greetings",
    ]

    removed = client.plugins.delete_by_id("greetings")
    assert removed["deleted"] is True
    assert [p["name"] for p in client.plugins.get()] == ["other"]
    again = client.plugins.create(name="greetings")  # the name is free again
    assert again["id"] != created["id"]


def test_removing_a_plugin_keeps_its_snapshots_loadable(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": HELLO})
    pinned = latest_id(client)
    client.plugins.delete_by_id("hello_world")
    assert client.tasks.get(plugin="hello_world") == []
    run = run_task(client, "hello", {"name": "ghost"}, plugins={"hello_world": pinned})
    assert run["output"] == "Hello, ghost"


def test_client_files(client: aliquot.Client) -> None:
    plugin = make_plugin(client)
    created = client.plugins.files.create(
        plugin_id=plugin["id"], filename="tasks.py", contents=HELLO, description="greets"
    )
    assert created["description"] == "greets" and created["size"] == len(HELLO.encode())
    (listed,) = client.plugins.files.get(plugin["id"])
    assert listed == created
    for ref in (created["id"], "tasks.py"):
        got = client.plugins.files.get_by_id(plugin["id"], ref)
        assert got["contents"] == HELLO and got["id"] == created["id"]

    changed = client.plugins.files.modify_by_id(
        plugin["id"], created["id"], filename="sub/greet.py"
    )
    assert changed["id"] == created["id"] and changed["filename"] == "sub/greet.py"
    assert changed["function_tasks"][0]["qualified_name"] == "hello_world.sub.greet.hello"
    assert client.plugins.files.get_by_id(plugin["id"], "sub/greet.py")["contents"] == HELLO

    client.plugins.files.delete_by_id(plugin["id"], created["id"])
    assert client.plugins.files.get(plugin["id"]) == []
    with pytest.raises(TaskPluginError, match=r"has no file 'sub/greet\.py'"):
        client.plugins.files.get_by_id(plugin["id"], "sub/greet.py")


def test_client_tasks(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": HELLO, "art.py": ARTIFACT})
    everything = client.tasks.get()
    names = [t["name"] for t in everything]
    assert "hello_world.tasks.hello" in names and "builtin.JsonArtifactTask" in names
    assert [t["name"] for t in client.tasks.get(kind="function")] == ["hello_world.tasks.hello"]
    assert [t["name"] for t in client.tasks.get(plugin="hello_world")] == [
        "hello_world.art.StringArtifactTask",
        "hello_world.tasks.hello",
    ]
    hello = client.tasks.get_by_name("hello")
    assert hello == next(t for t in everything if t["name"] == "hello_world.tasks.hello")
    assert hello["plugin"] == "hello_world" and hello["snapshot"] == latest_id(client)
    with pytest.raises(UnknownTaskError, match="no task is named 'nope'"):
        client.tasks.get_by_name("nope")


def test_client_signature_analysis_runs_nothing(client: aliquot.Client) -> None:
    result = client.workflows.analyze_plugin_task_signatures(HELLO + "\nraise SystemExit(1)\n")
    assert result == {
        "function_tasks": [
            {
                "name": "hello",
                "function": "hello",
                "line": 9,
                "description": None,
                "inputs": [
                    {
                        "name": "name",
                        "type": "string",
                        "required": True,
                        "kind": "positional_or_keyword",
                    }
                ],
                "outputs": [{"name": "output", "type": "string"}],
                "types": {},
            }
        ],
        "artifact_tasks": [],
    }
    assert client.plugins.get() == []
    with pytest.raises(TaskPluginError, match=r"<code>:1: syntax error"):
        client.workflows.analyze_plugin_task_signatures("def (")


def test_requests_the_service_does_not_know_are_refused(client: aliquot.Client) -> None:
    with pytest.raises(TaskPluginError, match="no such API path: GET /nowhere"):
        client.request("GET", "/nowhere")
    with pytest.raises(TaskPluginError, match=r"PATCH /plugins: not allowed \(use GET, POST\)"):
        client.request("PATCH", "/plugins")
    with pytest.raises(TaskPluginError, match="the body must be a JSON object"):
        client.request("POST", "/plugins", [1])  # type: ignore[arg-type]
    with pytest.raises(TaskPluginError, match=r"unknown field\(s\) \['group'\]"):
        client.request("POST", "/plugins", {"name": "x", "group": 1})
    assert client.plugins.get() == []


# ---------------------------------------------------------------------------
# Importing directories and archives
# ---------------------------------------------------------------------------

GOOD = b"from aliquot import register\n\n@register\ndef hello(name: str) -> str:\n    return name\n"
REGULAR = (stat.S_IFREG | 0o644) << 16


def tar_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> Any:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_tar(path: Path, members: list[Any]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, data)
    return path


def write_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, attr in members:
            info = zipfile.ZipInfo(name)
            info.external_attr, info.compress_type = attr, zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def test_importing_a_tar_and_a_zip(client: aliquot.Client, tmp_path: Path) -> None:
    tar = write_tar(
        tmp_path / "bundle.tar.gz",
        [tar_member("hello_world/tasks.py", GOOD), tar_member("hello_world/notes.txt", b"x")],
    )
    imported = client.plugins.import_path(tar)
    assert imported["name"] == "hello_world" and imported["skipped"] == ["notes.txt"]
    assert [f["filename"] for f in imported["files"]] == ["tasks.py"]
    archive = write_zip(
        tmp_path / "anything.zip",
        [("pkg/tasks.py", GOOD, REGULAR), ("pkg/sub/more.py", b"X = 1\n", REGULAR)],
    )
    zipped = client.plugins.import_path(archive, name="zipped")
    assert sorted(f["filename"] for f in zipped["files"]) == ["sub/more.py", "tasks.py"]
    assert run_task(client, "zipped.tasks.hello", {"name": "z"})["output"] == "z"
    with pytest.raises(TaskPluginError, match="exists already; import with --replace"):
        client.plugins.import_path(archive, name="zipped")
    replaced = client.plugins.import_path(tar, name="zipped", replace=True)
    assert [f["filename"] for f in replaced["files"]] == ["tasks.py"]
    tasks_file = next(f for f in zipped["files"] if f["filename"] == "tasks.py")
    assert replaced["files"][0]["id"] == tasks_file["id"]  # the same file, changed


def _big() -> bytes:
    return b"#" * ((1 << 20) + 10)


def _lying_zip(path: Path) -> Path:
    data = _big()
    write_zip(path, [("p/tasks.py", data, REGULAR)])
    raw = path.read_bytes().replace(struct.pack("<I", len(data)), struct.pack("<I", 100))
    path.write_bytes(raw)
    return path


def _symlinked_dir(root: Path) -> Path:
    (root / "plugin").mkdir()
    (root / "plugin" / "tasks.py").write_bytes(GOOD)
    (root / "plugin" / "sub").symlink_to(root.parent / "outside", target_is_directory=True)
    return root / "plugin"


def _symlinked_file(root: Path) -> Path:
    (root / "plugin").mkdir()
    (root / "plugin" / "tasks.py").symlink_to(root.parent / "outside" / "secret.py")
    return root / "plugin"


def _fifo(root: Path) -> Path:
    (root / "plugin").mkdir()
    (root / "plugin" / "tasks.py").write_bytes(GOOD)
    os.mkfifo(root / "plugin" / "pipe.py")
    return root / "plugin"


MALICIOUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "tar-traversal": (
        lambda d: write_tar(
            d / "a.tar.gz", [tar_member("p/tasks.py", GOOD), tar_member("../x.py", GOOD)]
        ),
        "leaves the archive",
    ),
    "tar-absolute": (
        lambda d: write_tar(
            d / "a.tar.gz", [tar_member(str(d.parent / "outside" / "abs.py"), GOOD)]
        ),
        "has an absolute path",
    ),
    "tar-symlink": (
        lambda d: write_tar(
            d / "a.tar.gz", [tar_member("p/tasks.py", kind=tarfile.SYMTYPE, link="/etc/passwd")]
        ),
        "links are refused",
    ),
    "tar-hardlink": (
        lambda d: write_tar(
            d / "a.tar.gz",
            [
                tar_member("p/tasks.py", GOOD),
                tar_member("p/x.py", kind=tarfile.LNKTYPE, link="p/tasks.py"),
            ],
        ),
        "links are refused",
    ),
    "tar-device": (
        lambda d: write_tar(d / "a.tar.gz", [tar_member("p/tasks.py", kind=tarfile.CHRTYPE)]),
        "not a regular file",
    ),
    "tar-fifo": (
        lambda d: write_tar(d / "a.tar.gz", [tar_member("p/tasks.py", kind=tarfile.FIFOTYPE)]),
        "not a regular file",
    ),
    "tar-oversize": (
        lambda d: write_tar(d / "a.tar.gz", [tar_member("p/tasks.py", _big())]),
        "over the 1048576-byte limit",
    ),
    "tar-too-many": (
        lambda d: write_tar(d / "a.tar.gz", [tar_member(f"p/m{i}.txt") for i in range(2049)]),
        "more than 2048 members",
    ),
    "zip-traversal": (
        lambda d: write_zip(
            d / "a.zip", [("p/tasks.py", GOOD, REGULAR), ("../x.py", GOOD, REGULAR)]
        ),
        "leaves the archive",
    ),
    "zip-backslash-traversal": (
        lambda d: write_zip(d / "a.zip", [("..\\x.py", GOOD, REGULAR)]),
        "leaves the archive",
    ),
    "zip-absolute": (
        lambda d: write_zip(d / "a.zip", [(str(d.parent / "outside" / "abs.py"), GOOD, REGULAR)]),
        "has an absolute path",
    ),
    "zip-symlink": (
        lambda d: write_zip(
            d / "a.zip", [("p/tasks.py", b"/etc/passwd", (stat.S_IFLNK | 0o777) << 16)]
        ),
        "links are refused",
    ),
    "zip-device": (
        lambda d: write_zip(d / "a.zip", [("p/tasks.py", b"", (stat.S_IFCHR | 0o644) << 16)]),
        "not a regular file",
    ),
    "zip-oversize": (
        lambda d: write_zip(d / "a.zip", [("p/tasks.py", _big(), REGULAR)]),
        "over the 1048576-byte limit",
    ),
    "zip-too-many": (
        lambda d: write_zip(d / "a.zip", [(f"p/m{i}.txt", b"", REGULAR) for i in range(2049)]),
        "more than 2048 members",
    ),
    # The declared size lies (100 bytes); reading must not trust it. (The error
    # is zipfile's own today: see test_a_damaged_archive_is_a_task_plugin_error.)
    "zip-lying-size": (lambda d: _lying_zip(d / "a.zip"), "(over the 1048576-byte limit|CRC)"),
    "dir-symlinked-dir": (_symlinked_dir, "symlinked directory refused"),
    "dir-symlinked-file": (_symlinked_file, "symlink refused"),
    "dir-fifo": (_fifo, "not a regular file"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_malicious_source_writes_nothing_and_stores_nothing(
    client: aliquot.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    build, message = MALICIOUS[case]
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.py").write_bytes(GOOD)
    (tmp_path / "in").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    source = build(tmp_path / "in")
    client.plugins.get()  # the store exists before the snapshot of the tree
    before = tree(tmp_path, skip=tmp_path / "store")
    with pytest.raises((TaskPluginError, zipfile.BadZipFile), match=message):
        client.plugins.import_path(source, name="evil")
    assert tree(tmp_path, skip=tmp_path / "store") == before
    assert not (tmp_path / "x.py").exists() and not (tmp_path / "outside" / "abs.py").exists()
    assert client.plugins.get() == []


@pytest.mark.parametrize(
    "filename",
    [
        "../escaped.py",
        "../../escaped.py",
        "sub/../../escaped.py",
        "{tmp}/escaped.py",
        "..\\escaped.py",
    ],
)
def test_a_malicious_filename_writes_nothing(
    client: aliquot.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filename: str
) -> None:
    (tmp_path / "cwd" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd" / "deeper")
    plugin = make_plugin(client)
    before = tree(tmp_path, skip=tmp_path / "store")
    with pytest.raises(TaskPluginError):
        client.plugins.files.create(
            plugin_id=plugin["id"], filename=filename.format(tmp=tmp_path), contents=HELLO
        )
    catalog_for(kernel_of(client))  # nothing to materialise either
    assert tree(tmp_path, skip=tmp_path / "store") == before
    assert client.plugins.files.get(plugin["id"]) == []


def test_a_forged_snapshot_is_not_written_outside_the_plugin(
    client: aliquot.Client, tmp_path: Path
) -> None:
    """Defence in depth: even a store edited by hand cannot make loading escape."""
    from aliquot_builtins.tasks._loading import materialize

    make_plugin(client, {"tasks.py": HELLO})
    tps = TaskPluginStore(kernel_of(client).store)
    snapshot = dict(tps.latest("hello_world"))
    escape = os.path.relpath(tmp_path / "escaped.py", "/")
    forged_file = {**snapshot["files"][0], "filename": "../" * 40 + escape}
    forged = {**snapshot, "files": [forged_file], "digest": "f" * 64}
    with pytest.raises(TaskPluginError, match="refusing to write"):
        materialize(tps, forged)
    assert not (tmp_path / "escaped.py").exists()


# ---------------------------------------------------------------------------
# Stored data survives refused operations
# ---------------------------------------------------------------------------

REFUSED: dict[str, Callable[[aliquot.Client], Any]] = {
    "add-syntax-error": lambda c: c.plugins.files.create("hello_world", "bad.py", "x = (\n"),
    "add-bad-filename": lambda c: c.plugins.files.create("hello_world", "../bad.py", HELLO),
    "add-existing-file": lambda c: c.plugins.files.create("hello_world", "tasks.py", HELLO),
    "add-layout-clash": lambda c: c.plugins.files.create("hello_world", "tasks/x.py", HELLO),
    "add-bad-registration": lambda c: c.plugins.files.create(
        "hello_world", "more.py", HELLO, function_tasks=[{"name": "hello", "inputParams": ["x"]}]
    ),
    "modify-syntax-error": lambda c: c.plugins.files.modify_by_id(
        "hello_world", "tasks.py", contents="def ("
    ),
    "modify-bad-filename": lambda c: c.plugins.files.modify_by_id(
        "hello_world", "tasks.py", filename="/abs.py"
    ),
    "modify-bad-registration": lambda c: c.plugins.files.modify_by_id(
        "hello_world", "tasks.py", function_tasks=[{"name": "nope"}]
    ),
    "modify-missing-file": lambda c: c.plugins.files.modify_by_id(
        "hello_world", "nope.py", contents=HELLO
    ),
    "remove-missing-file": lambda c: c.plugins.files.delete_by_id("hello_world", "nope.py"),
    "rename-invalid": lambda c: c.plugins.modify_by_id("hello_world", name="not valid"),
    "rename-taken": lambda c: c.plugins.modify_by_id("hello_world", name="other"),
    "description-not-text": lambda c: c.plugins.modify_by_id("hello_world", description=5),  # type: ignore[arg-type]
    "create-existing": lambda c: c.plugins.create(name="hello_world"),
    "import-existing": lambda c: c.plugins.import_files("hello_world", {"tasks.py": HELLO}),
    "import-replace-bad-file": lambda c: c.plugins.import_files(
        "hello_world", {"tasks.py": HELLO, "broken.py": "def ("}, replace=True
    ),
    "import-replace-clash": lambda c: c.plugins.import_files(
        "hello_world", {"a.py": HELLO, "a/b.py": HELLO}, replace=True
    ),
    "import-replace-nothing": lambda c: c.plugins.import_files("hello_world", {}, replace=True),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_operation_leaves_the_plugin_intact(client: aliquot.Client, case: str) -> None:
    make_plugin(client, {"tasks.py": HELLO, "helpers/util.py": "X = 1\n"})
    make_plugin(client, name="other")
    before = client.plugins.get_by_id("hello_world")
    history = client.plugins.snapshots.get("hello_world")
    with pytest.raises(TaskPluginError):
        REFUSED[case](client)
    assert client.plugins.get_by_id("hello_world") == before
    assert client.plugins.snapshots.get("hello_world") == history
    assert client.plugins.files.get_by_id("hello_world", "tasks.py")["contents"] == HELLO
    assert run_task(client, "hello", {"name": case})["output"] == f"Hello, {case}"


# ---------------------------------------------------------------------------
# Known bugs (each test says what should happen)
# ---------------------------------------------------------------------------


def test_code_that_does_not_compile_is_refused_when_stored(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError, match=r"hello_world/tasks\.py:2"):
        client.plugins.files.create(
            plugin_id=plugin["id"], filename="tasks.py", contents="x = 1\nreturn x\n"
        )


@pytest.mark.parametrize(("what", "length"), [("filename", 300), ("plugin", 300), ("plugin", 600)])
def test_names_too_long_to_materialise_are_refused(
    client: aliquot.Client, what: str, length: int
) -> None:
    long = "a" * length  # 600: over the store's key limit, a StoreError today
    with pytest.raises(TaskPluginError):
        if what == "plugin":
            make_plugin(client, {"tasks.py": HELLO}, name=long)
        else:
            make_plugin(client, {long + ".py": HELLO})
    stored = [f for p in client.plugins.get() for f in p["files"]]
    assert stored == []  # refused before anything that could not be loaded was stored


@pytest.mark.parametrize("path", ["/plugins?foo=1", "/plugins/x?plugin=y", "/plugins/x?body=1"])
def test_unknown_query_parameters_are_refused_clearly(client: aliquot.Client, path: str) -> None:
    make_plugin(client, name="x")
    with pytest.raises(TaskPluginError):
        client.request("GET", path)


def test_searching_for_a_non_ascii_plugin_name(client: aliquot.Client) -> None:
    make_plugin(client, {"tasks.py": HELLO}, name="grüße")
    assert [p["name"] for p in client.plugins.get(search="grüße")] == ["grüße"]
    assert [t["name"] for t in client.tasks.get(plugin="grüße")] == ["grüße.tasks.hello"]


def test_a_removed_plugin_cannot_be_renamed(client: aliquot.Client) -> None:
    plugin = make_plugin(client, {"tasks.py": HELLO})
    client.plugins.delete_by_id(plugin["id"])
    with pytest.raises(TaskPluginError):
        client.plugins.modify_by_id(plugin["id"], name="back")
    client.plugins.create(name="back")


def test_contents_that_are_not_encodable_are_refused(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError):
        client.plugins.files.create(
            plugin_id=plugin["id"], filename="t.py", contents="x = '\udc80'\n"
        )


def test_a_zip_written_by_zipfile_writestr_imports(client: aliquot.Client, tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as archive:
        archive.writestr("hello_world/tasks.py", GOOD)
    assert client.plugins.import_path(tmp_path / "p.zip")["name"] == "hello_world"


@pytest.mark.parametrize("kind", ["corrupt-tar", "lying-zip"])
def test_a_damaged_archive_is_a_task_plugin_error(
    client: aliquot.Client, tmp_path: Path, kind: str
) -> None:
    if kind == "corrupt-tar":
        path = tmp_path / "p.tar.gz"
        path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    else:
        path = _lying_zip(tmp_path / "p.zip")
    with pytest.raises(TaskPluginError):
        client.plugins.import_path(path, name="p")


@pytest.mark.parametrize(("task", "param"), [("takes_bytes", "data"), ("takes_box", "box")])
def test_class_typed_parameters_of_plugin_tasks_are_checked(
    client: aliquot.Client, task: str, param: str
) -> None:
    source = (
        "from aliquot import register\n\n\nclass Box:\n    pass\n\n\n"
        "@register\ndef takes_bytes(data: bytes) -> int:\n    return 1\n\n\n"
        "@register\ndef takes_box(box: Box) -> int:\n    return 2\n"
    )
    make_plugin(client, {"tasks.py": source})
    run = run_task(client, task, {param: 5})
    assert run.status == "failed"
    assert "ParameterTypeError" in run.nodes[task].reason


def test_artifact_tasks_written_against_aliquot_artifact_task_interface_load(
    client: aliquot.Client,
) -> None:
    source = ARTIFACT.replace(
        "from aliquot_builtins.artifacts import ArtifactTaskInterface",
        "from aliquot import ArtifactTaskInterface",
    )
    make_plugin(client, {"tasks.py": source})
    assert catalog_for(kernel_of(client)).resolve("tasks.StringArtifactTask").load()


def test_a_non_text_description_in_a_decorator_is_refused(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError, match="description"):
        client.plugins.files.create(
            plugin_id=plugin["id"],
            filename="tasks.py",
            contents="from aliquot import register\n@register(description=5)\ndef f(): pass\n",
        )


def test_a_nul_byte_is_refused_without_a_none_line(client: aliquot.Client) -> None:
    plugin = client.plugins.create(name="hello_world")
    with pytest.raises(TaskPluginError) as caught:
        client.plugins.files.create(plugin_id=plugin["id"], filename="tasks.py", contents="x\x00\n")
    assert "None" not in str(caught.value)
