"""A task-plugin task's cache key covers exactly the plugin code it can reach."""

from __future__ import annotations

from pathlib import Path

import pytest

import aliquot
from aliquot_builtins.tasks import catalog_for

TASKS = """\
from aliquot import register
from .helpers import factor


@register
def scaled(x: int) -> int:
    return x * factor()
"""
HELPERS = "def factor() -> int:\n    return 2\n"


def _run(client: aliquot.Client, x: int = 3) -> tuple[str, int]:
    kernel = client.transport.kernel
    spec = catalog_for(kernel).resolve("scaled").load()
    run = kernel.run(aliquot.graph_from_tasks([spec], {"x": x}))
    assert run.status == "succeeded", [n.reason for n in run.nodes.values()]
    (node,) = run.nodes.values()
    return node.status, run["output"]


@pytest.fixture
def client(tmp_path: Path) -> aliquot.Client:
    c = aliquot.Client(tmp_path / "store")
    c.plugins.import_files("calc", {"tasks.py": TASKS, "helpers.py": HELPERS})
    yield c
    c.close()


def test_an_unrelated_file_keeps_the_cache(client: aliquot.Client) -> None:
    assert _run(client) == ("computed", 6)
    client.plugins.files.create(plugin_id="calc", filename="other.py", contents="Y = 1\n")
    assert _run(client) == ("cached", 6)


def test_a_change_in_an_imported_file_recomputes(client: aliquot.Client) -> None:
    assert _run(client) == ("computed", 6)
    changed = "def factor():\n    return 5\n"
    client.plugins.files.modify_by_id("calc", "helpers.py", contents=changed)
    assert _run(client) == ("computed", 15)


def test_a_change_in_the_task_file_recomputes(client: aliquot.Client) -> None:
    assert _run(client) == ("computed", 6)
    client.plugins.files.modify_by_id(
        "calc", "tasks.py", contents=TASKS.replace("x * factor()", "x * factor() + 1")
    )
    assert _run(client) == ("computed", 7)


def test_a_package_init_is_part_of_the_code(client: aliquot.Client) -> None:
    assert _run(client) == ("computed", 6)
    client.plugins.files.create(plugin_id="calc", filename="__init__.py", contents="Z = 2\n")
    assert _run(client)[0] == "computed"
    assert _run(client)[0] == "cached"
