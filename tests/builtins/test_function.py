"""The ``function`` task type: ``@aliquot.task``, binding by name, output unpacking."""

from __future__ import annotations

import dataclasses
import pickle
from typing import NamedTuple

import attrs
import pytest

import aliquot
from aliquot import OutputMismatchError, TaskDefinitionError
from aliquot.testing import make_kernel


@aliquot.task(outputs=["data"])
def load(n: int) -> list[int]:
    return list(range(n))


@aliquot.task(outputs=["mean"])
def mean(data: list[int]) -> float:
    return sum(data) / len(data)


def test_issue_example() -> None:
    """The issue's example runs exactly as written (on an in-memory store)."""
    with make_kernel() as kernel:
        run = kernel.run([load, mean], inputs={"n": 100}, targets=["mean"])
    assert run.status == "succeeded" and run["mean"] == 49.5


def test_decorator_returns_the_function_unchanged() -> None:
    """A task stays a plain function: callable directly, picklable by reference."""
    assert load(3) == [0, 1, 2]
    assert pickle.loads(pickle.dumps(load)) is load
    spec = aliquot.task_spec_of(load)
    assert spec is not None and spec.kind == "function" and spec.output_names == ("data",)
    assert spec.name.endswith("test_function.load") and spec.short_name == "load"
    assert [p.name for p in spec.inputs] == ["n"]


def test_bare_decorator_names_the_output_after_the_function() -> None:
    @aliquot.task
    def doubled(x: int) -> int:
        return 2 * x

    spec = aliquot.task_spec_of(doubled)
    assert spec is not None and spec.output_names == ("doubled",)
    with make_kernel() as kernel:
        assert kernel.run([doubled], inputs={"x": 4})["doubled"] == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": "data"}, "list of names"),
        ({"outputs": ["a", "a"]}, "repeat"),
        ({"outputs": ["not valid"]}, "not a valid identifier"),
        ({"outputs": ["class"]}, "not a valid identifier"),
        ({"outputs": ["a"], "serializers": ["json", "json"]}, "2 serializers for 1 outputs"),
        ({"outputs": ["a"], "serializers": {"b": "json"}}, "unknown outputs"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"timeout": 0}, "timeout must be > 0"),
    ],
)
def test_bad_declarations_are_refused_when_defined(kwargs: dict, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):

        @aliquot.task(**kwargs)
        def f(x: int) -> int:
            return x


def test_positional_argument_to_task_factory_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="keyword arguments"):
        aliquot.task("data")  # type: ignore[call-overload]


class Pair(NamedTuple):
    left: int
    right: int


@attrs.frozen
class AttrsPair:
    left: int
    right: int


@dataclasses.dataclass
class DataPair:
    left: int
    right: int


@pytest.mark.parametrize(
    "value",
    [(1, 2), [1, 2], Pair(1, 2), AttrsPair(1, 2), DataPair(1, 2)],
    ids=["tuple", "list", "namedtuple", "attrs", "dataclass"],
)
def test_several_outputs_are_unpacked_by_position(value: object) -> None:
    @aliquot.task(outputs=["left", "right"])
    def pair() -> object:
        return value

    @aliquot.task(outputs=["total"])
    def total(left: int, right: int) -> int:
        return left * 10 + right

    with make_kernel() as kernel:
        run = kernel.run([pair, total])
    assert run["total"] == 12


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2, 3), "declares 2 outputs .* but returned 3 values"),
        ((1,), "declares 2 outputs .* but returned 1 values"),
        ("ab", "a str or bytes return is never unpacked"),
        (b"ab", "a str or bytes return is never unpacked"),
        (7, "returned a single int"),
        ({"left": 1, "right": 2}, "returned a single dict"),
    ],
)
def test_output_count_mismatch_fails_the_node_naming_task_and_counts(
    value: object, message: str
) -> None:
    @aliquot.task(outputs=["left", "right"])
    def pair() -> object:
        return value

    with make_kernel() as kernel:
        run = kernel.run([pair])
    record = run.nodes["pair"]
    assert run.status == "failed" and record.status == "failed"
    assert record.error is not None and "OutputMismatchError" in record.error.type
    assert "'pair'" in record.error.message
    import re

    assert re.search(message, record.error.message), record.error.message


def test_single_output_is_never_unpacked() -> None:
    @aliquot.task(outputs=["pair"])
    def pair() -> tuple[int, int]:
        return (1, 2)

    with make_kernel() as kernel:
        assert kernel.run([pair])["pair"] == (1, 2)


def test_task_without_outputs_must_return_none() -> None:
    seen = []

    @aliquot.task(outputs=[])
    def side_effect(x: int) -> None:
        seen.append(x)

    @aliquot.task(outputs=[])
    def returns_something(x: int) -> int:
        return x

    with make_kernel() as kernel:
        ok = kernel.run([side_effect], inputs={"x": 1})
        bad = kernel.run([returns_something], inputs={"x": 1})
    assert ok.status == "succeeded" and seen == [1]
    assert bad.status == "failed"
    assert bad.nodes["returns_something"].error is not None
    assert "declares no outputs" in bad.nodes["returns_something"].error.message
    with pytest.raises(OutputMismatchError):
        from aliquot_builtins.function import unpack_outputs

        spec = aliquot.task_spec_of(returns_something)
        assert spec is not None
        unpack_outputs(spec, 3)


def test_every_parameter_kind_binds() -> None:
    """Positional-only, keyword-only, defaults, *args and **kwargs all bind correctly."""

    @aliquot.task(outputs=["out"])
    def kinds(a: int, /, b: int, c: int = 3, *rest: int, d: int, e: int = 5, **extra: int) -> tuple:
        return (a, b, c, rest, d, e, extra)

    from aliquot_builtins.function import FunctionTaskType

    spec = aliquot.task_spec_of(kinds)
    assert spec is not None
    assert [p.kind for p in spec.inputs] == [
        "positional", "positional_or_keyword", "positional_or_keyword",
        "var_positional", "keyword", "keyword", "var_keyword",
    ]  # fmt: skip
    node = aliquot.Node("kinds", spec)
    bind = FunctionTaskType().bind
    call = bind(node, {"a": 1, "b": 2, "d": 4})
    assert call() == (1, 2, 3, (), 4, 5, {})
    call = bind(node, {"a": 1, "b": 2, "d": 4, "rest": [7, 8], "extra": {"z": 9}})
    assert call() == (1, 2, 3, (7, 8), 4, 5, {"z": 9})
    with pytest.raises(TaskDefinitionError, match="clash"):
        bind(node, {"a": 1, "b": 2, "d": 4, "extra": {"b": 1}})


def test_positional_only_parameters_bind_through_a_run() -> None:
    @aliquot.task(outputs=["diff"])
    def diff(a: int, b: int = 0, /) -> int:
        return a - b

    with make_kernel() as kernel:
        assert kernel.run([diff], inputs={"a": 5})["diff"] == 5
        assert kernel.run([diff], inputs={"a": 5, "b": 2})["diff"] == 3


def test_async_tasks_are_awaited() -> None:
    @aliquot.task(outputs=["value"])
    async def fetch(x: int) -> int:
        import trio

        await trio.sleep(0)
        return x + 1

    with make_kernel() as kernel:
        assert kernel.run([fetch], inputs={"x": 1})["value"] == 2
        assert kernel.run([fetch], inputs={"x": 1}, executor="threads:2")["value"] == 2


def test_serializer_hints_are_used_for_stored_outputs() -> None:
    @aliquot.task(outputs=["payload"], serializers=["pickle"])
    def payload() -> dict[str, int]:
        return {"a": 1}

    with make_kernel() as kernel:
        run = kernel.run([payload])
        assert run.nodes["payload"].outputs["payload"].serializer == "pickle"
        assert kernel.get_run(run.id)["payload"] == {"a": 1}


def test_options_nobody_handles_are_refused_before_running() -> None:
    """retries/timeout/cache need middleware; without it the run is refused, not ignored."""

    @aliquot.task(outputs=["x"], retries=2)
    def flaky() -> int:
        return 1

    with make_kernel() as kernel, pytest.raises(aliquot.PluginNotActiveError, match="retries"):
        kernel.run([flaky])


def test_version_replaces_the_source_fingerprint() -> None:
    @aliquot.task(outputs=["x"], version="2")
    def pinned() -> int:
        return 1

    @aliquot.task(outputs=["x"], version="2")
    def pinned_other_body() -> int:
        return 2

    a = aliquot.task_spec_of(pinned)
    b = aliquot.task_spec_of(pinned_other_body)
    assert a is not None and b is not None
    assert a.fingerprint == b.fingerprint
    spec_load = aliquot.task_spec_of(load)
    assert spec_load is not None and spec_load.fingerprint != a.fingerprint


def _fingerprint_of_source(tmp_path, name: str, source: str) -> str:
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return aliquot.code_fingerprint(module.f)


def test_fingerprint_ignores_comments_docstrings_and_layout_but_not_code(tmp_path) -> None:
    base = _fingerprint_of_source(tmp_path, "fp_a", "def f(x):\n    return x + 1\n")
    cosmetic = _fingerprint_of_source(
        tmp_path,
        "fp_b",
        'def f(x):\n    """A docstring."""\n    # a comment\n\n    return (x +\n            1)\n',
    )
    changed = _fingerprint_of_source(tmp_path, "fp_c", "def f(x):\n    return x + 2\n")
    assert base == cosmetic
    assert base != changed


def test_fingerprint_without_source_uses_the_bytecode() -> None:
    namespace: dict[str, object] = {}
    exec("def f(x):\n    return x + 1\n", namespace)
    first = aliquot.code_fingerprint(namespace["f"])  # type: ignore[arg-type]
    exec("def f(x):\n    return x + 2\n", namespace)
    second = aliquot.code_fingerprint(namespace["f"])  # type: ignore[arg-type]
    assert first != second
