"""The ``artifacts`` plugin: Dioptra's artifact tasks as the ``artifact:...`` serializers.

Rules (``spec/artifacts.md``): the seed's example class works as written;
``ArtifactTask`` is a plain class that refuses, on the ``class`` line, a
subclass without the three static methods; arguments are checked against
the task's schema, unknown ones refused, every problem named; serializer
names have one canonical spelling; every builtin task round-trips through
memory and LMDB stores, and equal contents give equal digests; ``serialize``
must write inside its private working directory and produce only regular
files and directories; a crafted payload never writes outside its fresh
unpack directory; signed payloads are verified before ``deserialize`` runs;
numpy never pickles; stages take task classes as cachers; ``aliquot get``
reads artifact-stored outputs.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import orjson
import pytest

import aliquot
from aliquot import (
    ArtifactTask,
    Experiment,
    Record,
    SerializationError,
    SerializerContext,
    TaskDefinitionError,
    UntrustedPayloadError,
    stage,
)
from aliquot.testing import check_serializer, make_kernel, run_cli
from aliquot_builtins import artifacts
from aliquot_builtins.artifacts import _payload, _serializer
from aliquot_builtins.artifacts._payload import MAGIC, SIGNED_MAGIC

KEY = bytes(range(32))
CTX = SerializerContext("artifacts-a", lambda purpose: KEY)
OTHER_CTX = SerializerContext("artifacts-b", lambda purpose: bytes(range(1, 33)))
STRING = "artifact:aliquot_builtins.artifacts:StringArtifactTask"
PICKLE = "artifact:aliquot_builtins.artifacts:PickleArtifactTask"


# --------------------------------------------------------------------------- the seed's example


class StringArtifactTask(ArtifactTask):
    @staticmethod
    def serialize(working_dir: Path, name: str, contents: str, type: str = "txt", **kwargs) -> Path:
        result = (working_dir / name).with_suffix("." + type)
        result.write_text(contents, encoding="UTF-8", newline="")
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs) -> str:
        return Path(working_dir, path).read_text()

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"type": {"type": "string"}}


# --------------------------------------------------------------------------- test tasks


class Tuned(ArtifactTask):
    """Text with a required argument (``level``) and an optional one (``mode``)."""

    @staticmethod
    def serialize(
        working_dir: Path, name: str, contents: str, level: int, mode: str = "fast", **kwargs: Any
    ) -> Path:
        result = working_dir / f"{name}.{mode}{level}"
        result.write_text(contents, encoding="utf-8")
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> str:
        return Path(working_dir, path).read_text(encoding="utf-8")

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"level": {"type": "integer", "minimum": 0}, "mode": {"enum": ["fast", "small"]}}


class Ported:
    """A Dioptra-style task that does not subclass ArtifactTask (only the shape counts)."""

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: bytes, **kwargs: Any) -> Path:
        result = working_dir / name
        result.write_bytes(contents)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> bytes:
        return Path(working_dir, path).read_bytes()

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


#: What a task under test writes: set by each test, read by Scripted.serialize.
SCRIPT: dict[str, Callable[[Path, str, Any], Any]] = {}
DESERIALIZED: list[tuple[Path, str]] = []


class Scripted(ArtifactTask):
    """serialize runs SCRIPT["serialize"]; deserialize records its call and returns the path."""

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Any:
        return SCRIPT["serialize"](working_dir, name, contents)

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Path:
        DESERIALIZED.append((working_dir, path))
        return Path(working_dir, path)

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


class SignedText(ArtifactTask):
    """A signed task other than pickle: its payloads must not load as PickleArtifactTask."""

    signed = True

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: str, **kwargs: Any) -> Path:
        result = working_dir / f"{name}.pkl"
        result.write_text(contents, encoding="utf-8")
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> str:
        return Path(working_dir, path).read_text(encoding="utf-8")

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


def plant_marker(path: str) -> str:
    """What the canary's unpickling calls: proof that unpickling ran."""
    Path(path).touch()
    return path


class Canary:
    """Unpickling this object creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (plant_marker, (self.marker,))


@attrs.frozen
class Opaque:
    """A value only pickle can carry."""

    name: str
    items: frozenset[int]


# --------------------------------------------------------------------------- fixtures & helpers


@pytest.fixture(autouse=True)
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Loads unpack under ``tmp_path/deep/a/b/scratch`` (deep, so '../' has somewhere to go)."""
    parent = tmp_path / "deep" / "a" / "b" / "scratch"
    parent.mkdir(parents=True)
    monkeypatch.setattr(_serializer, "SCRATCH", _serializer.Scratch(parent))
    SCRIPT.clear()
    DESERIALIZED.clear()
    return parent


@pytest.fixture(params=["memory", "lmdb"])
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[aliquot.Kernel]:
    store = "memory://" if request.param == "memory" else str(tmp_path / "store")
    k = make_kernel(store=store)
    yield k
    k.close()


def special(name: str) -> Any:
    """The serializer ``name`` as the family builds it (no kernel needed)."""
    family, _, argument = name.partition(":")
    assert family == "artifact"
    return artifacts.ArtifactFamily().specialize(argument)


def encode(name: str, value: Any, ctx: SerializerContext = CTX) -> bytes:
    return b"".join(bytes(memoryview(p)) for p in special(name).dumps(value, ctx))


def decode(name: str, data: bytes, ctx: SerializerContext = CTX) -> Any:
    return special(name).loads(memoryview(data), ctx)


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root``: file contents and mode, symlink targets, directories."""
    out: dict[str, Any] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(parent, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", path.read_bytes(), bool(path.stat().st_mode & stat.S_IXUSR))
    return out


def header_of(data: bytes) -> dict[str, Any]:
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    doc: dict[str, Any] = orjson.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + size])
    return doc


def craft(root: Any, entries: list[Any], body: bytes = b"", **header: Any) -> bytes:
    """A payload with a hand-made (canonical) header."""
    doc = {"entries": entries, "format": 1, "root": root, **header}
    raw = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return MAGIC + struct.pack("<I", len(raw)) + raw + body


def f(path: str, size: int, executable: bool = False) -> dict[str, Any]:
    return {"exec": executable, "kind": "file", "path": path, "size": size}


def d(path: str) -> dict[str, Any]:
    return {"kind": "dir", "path": path}


def make_tree(root: Path) -> Path:
    """A directory with text, an executable, binary data, an empty and a nested directory."""
    root.mkdir(parents=True)
    (root / "a.txt").write_text("A\r\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "empty").mkdir()
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (root / "sub" / "deeper" / "c.txt").write_text("")
    (root / "sub-b").mkdir()  # sorts between "sub" and "sub/..."
    (root / "sub-b" / "x").write_text("x")
    return root


# --------------------------------------------------------------------------- the contract


def test_the_seed_example_works_unchanged_except_the_import(kernel: aliquot.Kernel) -> None:
    """The seed's StringArtifactTask stores text through a kernel; its `type` argument picks the
    file suffix, which the payload keeps as the artifact's root."""
    assert artifacts.validate_args(StringArtifactTask, {"type": "md"}) == []
    name = artifacts.serializer_name(StringArtifactTask, {"type": "md"})
    assert name == (
        "artifact:tests.builtins.test_artifacts:StringArtifactTask?" + '{"args":{"type":"md"}}'
    )
    ref = kernel.values.save("# Title\nbody\n", name)
    kernel.store.commit()
    assert ref.serializer == name
    assert kernel.values.load(ref) == "# Title\nbody\n"
    stored = bytes(kernel.store.get_value(ref.digest))
    assert header_of(stored)["root"] == "artifact.md"


def test_artifact_task_is_a_plain_class_exported_by_the_facade() -> None:
    """No ABCMeta (Dioptra's makes every task a metaclass); the Dioptra name is an alias."""
    assert aliquot.ArtifactTask is artifacts.ArtifactTask is ArtifactTask
    assert artifacts.ArtifactTaskInterface is ArtifactTask
    assert type(ArtifactTask) is type
    assert type(StringArtifactTask) is type
    assert not issubclass(StringArtifactTask, type)
    assert ArtifactTask.__module__ == "aliquot_builtins.artifacts"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "@staticmethod\ndef serialize(working_dir, name, contents): ...\n"
            "@staticmethod\ndef validation(): return None\n",
            r"Broken does not define deserialize\(\)",
        ),
        (
            "def serialize(working_dir, name, contents): ...\n"
            "@staticmethod\ndef deserialize(working_dir, path): ...\n"
            "@staticmethod\ndef validation(): return None\n",
            "Broken defines serialize as a function, not a staticmethod",
        ),
        (
            "@staticmethod\ndef serialize(working_dir, name, contents): ...\n"
            "@staticmethod\ndef deserialize(working_dir, path): ...\n"
            "@classmethod\ndef validation(cls): return None\n",
            "Broken defines validation as a classmethod, not a staticmethod",
        ),
        (
            "pass\n",
            r"Broken does not define serialize\(\); does not define deserialize\(\); "
            r"does not define validation\(\)",
        ),
    ],
    ids=["missing", "plain-function", "classmethod", "empty"],
)
def test_a_subclass_without_the_static_methods_is_refused_when_defined(
    body: str, message: str
) -> None:
    """The class statement itself raises TaskDefinitionError naming the class and the method."""
    source = "class Broken(ArtifactTask):\n" + textwrap.indent(body, "    ")
    with pytest.raises(TaskDefinitionError, match=message):
        exec(source, {"ArtifactTask": ArtifactTask})


def test_methods_may_come_from_a_mixin_or_a_parent_task() -> None:
    """Inherited static methods count; the base class's placeholders do not."""

    class TextMixin:
        @staticmethod
        def deserialize(working_dir: Path, path: str, **kwargs: Any) -> str:
            return Path(working_dir, path).read_text()

        @staticmethod
        def validation() -> dict[str, Any] | None:
            return None

    class Child(TextMixin, ArtifactTask):
        @staticmethod
        def serialize(working_dir: Path, name: str, contents: str, **kwargs: Any) -> Path:
            return working_dir

    class Grandchild(Child):
        pass

    assert Grandchild.deserialize is TextMixin.deserialize
    with pytest.raises(TaskDefinitionError, match="is the base class itself"):
        artifacts.serializer_name(ArtifactTask)


def test_a_ported_class_without_the_base_is_an_artifact_task(kernel: aliquot.Kernel) -> None:
    """Only the shape counts: a class with the three static methods stores values."""
    ref = kernel.values.save(b"\x00ported", artifacts.serializer_name(Ported))
    assert kernel.values.load(ref) == b"\x00ported"


# --------------------------------------------------------------------------- argument validation


def test_valid_arguments_give_no_problems() -> None:
    assert artifacts.validate_args(Tuned, {"level": 3}) == []
    assert artifacts.validate_args(Tuned, {"level": 0, "mode": "small"}) == []
    artifacts.check_args(Tuned, {"level": 1})


def test_an_unknown_argument_is_refused() -> None:
    """Dioptra's schema keeps additionalProperties: true; here a misspelt argument is an error
    naming the key, the rule and the value."""
    [problem] = artifacts.validate_args(Tuned, {"level": 1, "colour": "red"})
    assert "argument 'colour'" in problem
    assert "additionalProperties: false" in problem
    assert "known arguments: ['level', 'mode']" in problem
    assert "'red'" in problem
    [problem] = artifacts.validate_args(artifacts.BytesArtifactTask, {"type": "txt"})
    assert "argument 'type': unknown" in problem


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"level": "high"}, ["argument 'level'", 'expected type: "integer"', "got 'high'"]),
        ({"level": -1}, ["argument 'level'", "expected minimum: 0", "got -1"]),
        ({"level": True}, ["argument 'level'", 'expected type: "integer"', "got True"]),
        (
            {"level": 1, "mode": "slow"},
            ["argument 'mode'", 'expected enum: ["fast","small"]', "got 'slow'"],
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused(args: dict[str, Any], expected: list[str]) -> None:
    """Each message names the argument, the schema keyword it breaks, and the value."""
    [problem] = artifacts.validate_args(Tuned, args)
    for part in expected:
        assert part in problem


def test_a_missing_required_argument_is_refused() -> None:
    """`required` = serialize's parameters after the first three with no default."""
    [problem] = artifacts.validate_args(Tuned, {"mode": "fast"})
    assert problem.startswith("argument 'level': required")
    assert '{"minimum":0,"type":"integer"}' in problem
    assert artifacts.validate_args(StringArtifactTask, {}) == []  # `type` has a default


def test_every_problem_is_reported_at_once() -> None:
    problems = artifacts.validate_args(Tuned, {"mode": "slow", "x": 1, "y": None})
    assert len(problems) == 4
    assert [p.split(":")[0] for p in problems] == [
        "argument 'x'",
        "argument 'y'",
        "argument 'level'",
        "argument 'mode'",
    ]
    with pytest.raises(TaskDefinitionError) as info:
        artifacts.check_args(Tuned, {"mode": "slow", "x": 1, "y": None})
    message = str(info.value)
    assert message.startswith("invalid arguments for artifact task Tuned: ")
    for problem in problems:
        assert problem in message
    assert artifacts.validate_args(Tuned, "level=1") == [  # type: ignore[arg-type]
        "arguments must be a mapping of names to values, not 'level=1'"
    ]


class BadSchema(ArtifactTask):
    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
        return working_dir

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Any:
        return None

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"level": {"type": "integr"}}


class ListSchema(BadSchema):
    @staticmethod
    def validation() -> dict[str, Any] | None:
        return ["level"]  # type: ignore[return-value]


class RaisingSchema(BadSchema):
    @staticmethod
    def validation() -> dict[str, Any] | None:
        raise RuntimeError("no schema today")


class UndeclaredRequired(BadSchema):
    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, level: int) -> Path:
        return working_dir

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (BadSchema, r"BadSchema.validation\(\) is not a valid JSON Schema \(draft 2020-12\)"),
        (ListSchema, r"ListSchema.validation\(\) returned \['level'\]; it must return None or"),
        (RaisingSchema, r"RaisingSchema.validation\(\) raised RuntimeError\('no schema today'\)"),
        (
            UndeclaredRequired,
            r"UndeclaredRequired.serialize requires argument\(s\) \['level'\], which "
            r"validation\(\) does not declare",
        ),
    ],
)
def test_a_bad_schema_is_an_error_naming_the_class(task: type, message: str) -> None:
    [problem] = artifacts.validate_args(task, {})
    assert re.search(message, problem)
    with pytest.raises(TaskDefinitionError, match=message):
        artifacts.check_args(task, {})
    with pytest.raises(TaskDefinitionError, match=message):
        artifacts.serializer_name(task)


# --------------------------------------------------------------------------- serializer names


def test_serializer_names_have_one_canonical_spelling() -> None:
    """Keys sorted, compact JSON, defaults left out: equal meanings give equal names."""
    assert artifacts.serializer_name(artifacts.StringArtifactTask) == STRING
    assert artifacts.serializer_name(artifacts.StringArtifactTask, {}, "artifact") == STRING
    assert (
        artifacts.serializer_name(Tuned, {"mode": "small", "level": 2}, "model.v1")
        == artifacts.serializer_name(Tuned, {"level": 2, "mode": "small"}, "model.v1")
        == "artifact:tests.builtins.test_artifacts:Tuned?"
        + '{"args":{"level":2,"mode":"small"},"name":"model.v1"}'
    )
    assert artifacts.serializer_name(Ported, name="raw") == (
        'artifact:tests.builtins.test_artifacts:Ported?{"name":"raw"}'
    )


def test_the_kernel_builds_each_name_once_and_with_exactly_that_name(
    kernel: aliquot.Kernel,
) -> None:
    name = artifacts.serializer_name(Tuned, {"level": 2})
    made = kernel.serializers.get(name)
    assert made.name == name
    assert made.types == ()
    assert kernel.serializers.get(name) is made
    assert name in kernel.serializers
    assert "artifact" in kernel.serializers.names()


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("aliquot_builtins.artifacts", "expected artifact:<module>:<qualname>"),
        ("aliquot_builtins.artifacts:", "expected artifact:<module>:<qualname>"),
        ("1bad:Task", "expected artifact:<module>:<qualname>"),
        ("mod:Task?{", "the part after '?' is not JSON"),
        ("mod:Task?[1]", "must be a JSON object with the optional keys"),
        ('mod:Task?{"other":1}', "must be a JSON object with the optional keys"),
        ('mod:Task?{"args":[]}', "'args' must be an object"),
        ('mod:Task?{"name":"../x"}', "artifact name '../x' is not a plain file stem"),
        ('mod:Task?{"args":{}}', "is not in canonical form; write 'artifact:mod:Task'"),
        ('mod:Task?{"name":"artifact"}', "is not in canonical form"),
        (
            'mod:Task?{"name":"n", "args":{"b":1,"a":2}}',
            """write 'artifact:mod:Task?{"args":{"a":2,"b":1},"name":"n"}'""",
        ),
        ("no_such_module_xyz:Task", "cannot import module 'no_such_module_xyz'"),
        ("aliquot_builtins.artifacts:NoSuchTask", "has no NoSuchTask"),
        ("aliquot_builtins.artifacts:serializer_name", "is a function, not a class"),
        ("aliquot_builtins.artifacts:ArtifactTask", "is the base class itself"),
        ("tests.builtins.test_artifacts:Opaque", "does not define serialize()"),
        (
            'tests.builtins.test_artifacts:Tuned?{"args":{"level":"x"}}',
            "argument 'level': expected type",
        ),
    ],
)
def test_a_bad_serializer_name_is_refused_with_the_reason(
    kernel: aliquot.Kernel, argument: str, message: str
) -> None:
    name = "artifact:" + argument
    with pytest.raises(SerializationError, match=re.escape(message)):
        kernel.serializers.get(name)
    assert name not in kernel.serializers
    with pytest.raises(SerializationError):
        kernel.values.save("x", name)


def test_the_family_itself_stores_nothing(kernel: aliquot.Kernel) -> None:
    with pytest.raises(SerializationError, match="stands for a family: name one artifact task"):
        kernel.values.save("text", "artifact")


def test_serializer_name_refuses_what_could_not_be_found_or_stored_again() -> None:
    class Local(ArtifactTask):
        serialize = vars(Ported)["serialize"]
        deserialize = vars(Ported)["deserialize"]
        validation = vars(Ported)["validation"]

    with pytest.raises(TaskDefinitionError, match="Local cannot be found again by its name"):
        artifacts.serializer_name(Local)
    for bad in ("", "../up", "a/b", ".hidden", "-flag", "x" * 101):
        with pytest.raises(TaskDefinitionError, match="is not a plain file stem"):
            artifacts.serializer_name(Ported, name=bad)
    with pytest.raises(TaskDefinitionError, match="must be JSON data"):
        artifacts.serializer_name(Tuned, {"level": {1, 2}})
    with pytest.raises(TaskDefinitionError, match="not an artifact task"):
        artifacts.serializer_name(Opaque)


def test_artifact_serializers_are_chosen_only_by_name(kernel: aliquot.Kernel) -> None:
    """types=(): registering the family changes no dispatch; a str still goes to `text`."""
    kernel.serializers.get(STRING)
    assert kernel.values.save("plain").serializer == "text"
    assert kernel.values.save(b"raw").serializer == "bytes"


# --------------------------------------------------------------------------- round trips


def _file_value(tmp_path: Path) -> Path:
    source = tmp_path / "source" / "model.onnx"
    source.parent.mkdir()
    source.write_bytes(b"\x00weights" * 100)
    source.chmod(0o755)
    return source


def test_every_builtin_task_round_trips_values(kernel: aliquot.Kernel) -> None:
    """String (newlines and non-ASCII kept exactly), bytes, JSON, numpy and pickle."""
    cases: list[tuple[type, dict[str, Any], Any]] = [
        (artifacts.StringArtifactTask, {}, "héllo\r\nwörld\n"),
        (artifacts.StringArtifactTask, {"type": "csv"}, "a,b\n1,2\n"),
        (artifacts.BytesArtifactTask, {}, bytes(range(256))),
        (artifacts.JsonArtifactTask, {}, {"a": [1, 2.5, None, True], "b": {"c": "d"}}),
        (artifacts.JsonArtifactTask, {"indent": 2, "sort_keys": True}, {"z": 1, "a": [2]}),
        (artifacts.PickleArtifactTask, {}, Opaque("p", frozenset({1, 2}))),
    ]
    for task, args, value in cases:
        ref = kernel.values.save(value, artifacts.serializer_name(task, args))
        kernel.store.commit()
        assert kernel.values.load(ref) == value, task
    arrays = [
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.asfortranarray(np.linspace(0, 1, 6).reshape(2, 3)),
        np.array(3.5),
        np.zeros((0, 2), np.uint8),
    ]
    for array in arrays:
        ref = kernel.values.save(array, artifacts.serializer_name(artifacts.NumpyArtifactTask))
        loaded = kernel.values.load(ref)
        assert loaded.dtype == array.dtype and loaded.shape == array.shape
        assert np.array_equal(loaded, array)
    assert sorted(artifacts.BUILTIN_ARTIFACT_TASKS) == [
        "BytesArtifactTask",
        "DirectoryArtifactTask",
        "FileArtifactTask",
        "JsonArtifactTask",
        "NumpyArtifactTask",
        "PickleArtifactTask",
        "StringArtifactTask",
    ]


def test_a_file_comes_back_as_a_path_to_a_copy(
    kernel: aliquot.Kernel, tmp_path: Path, scratch: Path
) -> None:
    """Named <name><suffix>, same bytes, executable bit kept, living in the scratch area."""
    source = _file_value(tmp_path)
    ref = kernel.values.save(source, artifacts.serializer_name(artifacts.FileArtifactTask))
    source.unlink()  # the store has its own copy
    path = kernel.values.load(ref)
    assert isinstance(path, Path)
    assert path.name == "artifact.onnx"
    assert path.read_bytes() == b"\x00weights" * 100
    assert path.stat().st_mode & stat.S_IXUSR
    assert scratch in path.parents
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = kernel.values.load(ref)
    assert again != path and again.read_bytes() == path.read_bytes()  # a fresh directory each


def test_a_directory_comes_back_under_its_name(kernel: aliquot.Kernel, tmp_path: Path) -> None:
    """Dioptra #965 loses the name; here the restored directory is called `name`, and its tree
    (empty directories, executable bits, nesting) is the same."""
    source = make_tree(tmp_path / "src")
    for name in (None, "model"):
        ref = kernel.values.save(
            source, artifacts.serializer_name(artifacts.DirectoryArtifactTask, name=name)
        )
        restored = kernel.values.load(ref)
        assert restored.name == (name or "artifact")
        assert restored.is_dir()
        assert snapshot(restored) == snapshot(source)


def test_conformance_kit_passes_for_the_value_tasks() -> None:
    """check_serializer on the specializations (wrapped so the kit can hand them samples:
    a specialization takes values only by name)."""
    samples: dict[type, list[Any]] = {
        artifacts.StringArtifactTask: ["", "text", "a\r\nb\rc\n", "𝄞 é"],
        artifacts.BytesArtifactTask: [b"", b"\x00\xff" * 50],
        artifacts.JsonArtifactTask: [{"a": [1, None]}, [], "s", 1.5],
        artifacts.NumpyArtifactTask: [np.arange(5), np.ones((2, 2), np.float32)],
        artifacts.PickleArtifactTask: [Opaque("x", frozenset()), {1: (2, 3)}],
    }
    for task, values in samples.items():
        made = special(artifacts.serializer_name(task))

        class ByName:
            name, version, types, priority = made.name, made.version, made.types, made.priority
            dumps, loads = made.dumps, made.loads

            @staticmethod
            def accepts(value: Any) -> bool:
                return True

        check_serializer(ByName(), values, ctx=CTX)


def test_equal_contents_give_the_same_digest(tmp_path: Path) -> None:
    """No timestamps or temp names in the payload: equal values are stored once, across stores
    and across source locations; different arguments give different bytes."""
    first = make_tree(tmp_path / "one")
    second = make_tree(tmp_path / "elsewhere" / "two")
    os.utime(second / "a.txt", (1, 1))
    directory = artifacts.serializer_name(artifacts.DirectoryArtifactTask)
    with (
        make_kernel(store=str(tmp_path / "s1")) as a,
        make_kernel(store=str(tmp_path / "s2")) as b,
        make_kernel() as c,
    ):
        refs = [k.values.save(v, directory) for k in (a, b, c) for v in (first, second)]
        assert len({r.digest for r in refs}) == 1
        text = [
            a.values.save("same", artifacts.serializer_name(artifacts.StringArtifactTask)),
            b.values.save("same", artifacts.serializer_name(artifacts.StringArtifactTask)),
            a.values.save("same", artifacts.serializer_name(artifacts.StringArtifactTask, {})),
        ]
        assert len({r.digest for r in text}) == 1
        other = a.values.save(
            "same", artifacts.serializer_name(artifacts.StringArtifactTask, {"type": "md"})
        )
        assert other.digest != text[0].digest
        (second / "a.txt").write_text("B\r\n")
        assert a.values.save(second, directory).digest != refs[0].digest


def test_the_payload_format(tmp_path: Path) -> None:
    """Magic, u32 length, canonical JSON header listing entries sorted by path, then the files'
    bytes in that order; only the executable bit of the mode is kept."""
    source = make_tree(tmp_path / "src")
    data = encode(artifacts.serializer_name(artifacts.DirectoryArtifactTask), source)
    assert data.startswith(MAGIC)
    header = header_of(data)
    assert header == {
        "entries": [
            d("artifact"),
            f("artifact/a.txt", 3),
            d("artifact/empty"),
            f("artifact/run.sh", 18, True),
            d("artifact/sub"),
            d("artifact/sub-b"),
            f("artifact/sub-b/x", 1),
            f("artifact/sub/b.bin", 256),
            d("artifact/sub/deeper"),
            f("artifact/sub/deeper/c.txt", 0),
        ],
        "format": 1,
        "root": "artifact",
    }
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    assert data[len(MAGIC) + 4 + size :] == (
        b"A\r\n" + b"#!/bin/sh\necho hi\n" + b"x" + bytes(range(256))
    )


# --------------------------------------------------------------------------- serialize's output


def test_the_working_directory_is_private_fresh_and_removed(tmp_path: Path) -> None:
    seen: list[tuple[Path, int, list[str]]] = []

    def write(working_dir: Path, name: str, contents: Any) -> Path:
        seen.append(
            (working_dir, stat.S_IMODE(working_dir.stat().st_mode), os.listdir(working_dir))
        )
        (working_dir / "scratch.tmp").write_text("not part of the artifact")
        locked = working_dir / name
        locked.mkdir()
        (locked / "f").write_text(contents)
        locked.chmod(0o500)  # removal must cope with what a task leaves read-only
        return locked

    SCRIPT["serialize"] = write
    name = artifacts.serializer_name(Scripted)
    first = encode(name, "x")
    encode(name, "x")
    assert [mode for _, mode, _ in seen] == [0o700, 0o700]
    assert [listing for _, _, listing in seen] == [[], []]
    assert seen[0][0] != seen[1][0]
    assert not seen[0][0].exists() and not seen[1][0].exists()
    assert [e["path"] for e in header_of(first)["entries"]] == ["artifact", "artifact/f"]

    def fail(working_dir: Path, name: str, contents: Any) -> Path:
        seen.append((working_dir, 0, []))
        raise RuntimeError("serialize broke")

    SCRIPT["serialize"] = fail
    with pytest.raises(RuntimeError, match="serialize broke"):
        encode(name, "x")
    assert not seen[-1][0].exists()


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        ("outside", "which is outside its working directory"),
        ("working_dir", "which is outside its working directory"),
        ("dotdot", "which is outside its working directory"),
        ("missing", "which does not exist"),
        ("link-out", "a symlink; return the file or directory itself"),
        ("number", "serialize returned int, not a Path"),
    ],
)
def test_serialize_must_return_a_path_inside_its_working_directory(
    tmp_path: Path, returns: str, message: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")

    def write(working_dir: Path, name: str, contents: Any) -> Any:
        return {
            "outside": outside,
            "working_dir": working_dir,
            "dotdot": Path(os.path.relpath(outside, working_dir)),
            "missing": working_dir / "never-written",
            "number": 42,
        }.get(returns) or _link(working_dir / name, outside)

    SCRIPT["serialize"] = write
    with pytest.raises(SerializationError, match=f"artifact task Scripted: .*{message}"):
        encode(artifacts.serializer_name(Scripted), None)
    assert outside.read_text() == "secret"


def _link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def test_a_symlink_or_fifo_in_a_produced_directory_is_refused(tmp_path: Path) -> None:
    """Artifacts hold only regular files and directories; the error names the path."""

    def with_link(working_dir: Path, name: str, contents: Any) -> Path:
        (working_dir / name / "sub").mkdir(parents=True)
        (working_dir / name / "sub" / "link").symlink_to("/etc/passwd")
        return working_dir / name

    def with_fifo(working_dir: Path, name: str, contents: Any) -> Path:
        (working_dir / name).mkdir()
        os.mkfifo(working_dir / name / "pipe")
        return working_dir / name

    SCRIPT["serialize"] = with_link
    with pytest.raises(SerializationError, match="artifact/sub/link in the artifact is a symlink"):
        encode(artifacts.serializer_name(Scripted), None)
    SCRIPT["serialize"] = with_fifo
    with pytest.raises(SerializationError, match=r"artifact/pipe .* not a regular file"):
        encode(artifacts.serializer_name(Scripted), None)
    source = make_tree(tmp_path / "src")
    (source / "sub" / "escape").symlink_to(tmp_path)
    with pytest.raises(
        SerializationError, match="artifact/sub/escape in the artifact is a symlink"
    ):
        encode(artifacts.serializer_name(artifacts.DirectoryArtifactTask), source)


def test_builtin_tasks_refuse_values_of_the_wrong_kind(tmp_path: Path) -> None:
    cases = [
        (artifacts.StringArtifactTask, b"bytes", "StringArtifactTask takes a str, not bytes"),
        (artifacts.BytesArtifactTask, "text", "BytesArtifactTask takes bytes, not str"),
        (artifacts.FileArtifactTask, tmp_path, "is not a file"),
        (artifacts.DirectoryArtifactTask, tmp_path / "none", "is not a directory"),
        (artifacts.JsonArtifactTask, {1: 2}, "JsonArtifactTask cannot store this value"),
        (artifacts.JsonArtifactTask, Opaque("x", frozenset()), "cannot store this value"),
        (artifacts.NumpyArtifactTask, [1, 2], "NumpyArtifactTask takes a numpy array, not list"),
        (artifacts.PickleArtifactTask, lambda: 1, "PickleArtifactTask cannot pickle function"),
    ]
    for task, value, message in cases:
        with pytest.raises(SerializationError, match=message):
            encode(artifacts.serializer_name(task), value)


# --------------------------------------------------------------------------- malicious payloads


def _malicious(tmp_path: Path) -> dict[str, bytes]:
    victim = tmp_path / "outside" / "victim.txt"
    evil = b"EVIL"
    good = [d("artifact"), f("artifact/x", 4)]
    return {
        "parent traversal": craft("../evil", [f("../evil", 4)], evil),
        "deep traversal": craft(
            "../../../../outside/victim.txt", [f("../../../../outside/victim.txt", 4)], evil
        ),
        "traversal inside": craft(
            "artifact", [d("artifact"), f("artifact/../../../evil", 4)], evil
        ),
        "absolute": craft(str(victim), [f(str(victim), 4)], evil),
        "absolute entry": craft("artifact", [d("artifact"), f(str(victim), 4)], evil),
        "dot part": craft("./artifact", [f("./artifact", 4)], evil),
        "empty part": craft("artifact", [d("artifact"), f("artifact//x", 4)], evil),
        "trailing slash": craft("artifact/", [f("artifact/", 4)], evil),
        "backslash": craft("..\\evil", [f("..\\evil", 4)], evil),
        "empty path": craft("", [f("", 4)], evil),
        "nul": craft("a\x00b", [f("a\x00b", 4)], evil),
        "symlink entry": craft(
            "artifact",
            [d("artifact"), {"kind": "symlink", "path": "artifact/l", "target": str(victim)}],
        ),
        "hard link entry": craft(
            "artifact", [d("artifact"), {"kind": "link", "path": "artifact/l", "size": 0}]
        ),
        "duplicate": craft("artifact", [*good, f("artifact/x", 4)], evil + evil),
        "dir and file": craft("artifact", [d("artifact"), d("artifact/x"), f("artifact/x", 4)]),
        "out of order": craft("artifact", [d("artifact"), f("artifact/z", 0), f("artifact/a", 4)]),
        "not under root": craft("artifact", [d("artifact"), f("other", 4)], evil),
        "sibling of root": craft("artifact", [d("artifact"), f("artifact-x", 4)], evil),
        "first is not root": craft("artifact", [f("artifact/x", 4)], evil),
        "missing parent": craft("artifact", [d("artifact"), f("artifact/sub/x", 4)], evil),
        "file under a file": craft("artifact", [f("artifact", 0), f("artifact/x", 4)], evil),
        "size too large": craft("artifact", [d("artifact"), f("artifact/x", 5)], evil),
        "size too small": craft("artifact", [d("artifact"), f("artifact/x", 3)], evil),
        "negative size": craft("artifact", [d("artifact"), f("artifact/x", -4)], evil),
        "huge size": craft("artifact", [d("artifact"), f("artifact/x", 1 << 62)], evil),
        "bool size": craft("artifact", [d("artifact"), {**f("artifact/x", 0), "size": True}], b"E"),
        "float size": craft("artifact", [d("artifact"), {**f("artifact/x", 0), "size": 4.0}], evil),
        "string exec": craft("artifact", [d("artifact"), {**f("artifact/x", 4), "exec": 1}], evil),
        "extra entry key": craft(
            "artifact", [d("artifact"), {**f("artifact/x", 4), "mode": 0o4777}], evil
        ),
        "no entries": craft("artifact", []),
        "entries not a list": craft("artifact", {"artifact": 4}, evil),  # type: ignore[arg-type]
        "entry not an object": craft("artifact", ["artifact"]),
        "extra header key": craft("artifact", good, evil, owner="root"),
        "format 2": craft("artifact", good, evil, format=2),
        "format true": craft("artifact", good, evil, format=True),
        "bad magic": b"AQAT9\x00" + craft("artifact", good, evil)[len(MAGIC) :],
        "signed magic on an unsigned task": SIGNED_MAGIC + b"\x00" * 40,
        "header length past the end": MAGIC + struct.pack("<I", 1 << 30) + b"{}",
        "header not JSON": MAGIC + struct.pack("<I", 5) + b"{abc}",
        "header not canonical": _reheader(craft("artifact", good, evil), lambda h: h + b" "),
        "header with duplicate keys": _reheader(
            craft("artifact", good, evil),
            lambda h: h.replace(b'"root":"artifact"', b'"root":"../evil","root":"artifact"'),
        ),
        "empty": b"",
    }


def _reheader(data: bytes, change: Callable[[bytes], bytes]) -> bytes:
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    header = change(data[start : start + size])
    return MAGIC + struct.pack("<I", len(header)) + header + data[start + size :]


def _assert_nothing_written(tmp_path: Path, before: dict[str, Any], scratch: Path) -> None:
    after = snapshot(tmp_path)
    new = {p: v for p, v in after.items() if p not in before}
    # At most the per-process scratch root appears, and it is empty again.
    roots = [p for p in new if Path(tmp_path, p).parent == scratch]
    assert set(new) == set(roots), f"written outside the unpack directory: {sorted(new)}"
    for root in roots:
        assert os.listdir(tmp_path / root) == [], "a failed load left files behind"
    assert {p: v for p, v in after.items() if p in before} == before, "existing files changed"


def test_a_malicious_payload_writes_nothing_outside_its_directory(
    tmp_path: Path, scratch: Path
) -> None:
    """Traversal, absolute paths, link kinds, duplicates, lying or odd sizes, loose headers:
    each is refused with SerializationError, deserialize never runs, and the tree around the
    scratch area is exactly as before (a failed load also removes its own directory)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim.txt").write_text("precious")
    name = artifacts.serializer_name(Scripted)
    before = snapshot(tmp_path)
    cases = _malicious(tmp_path)
    for label, data in cases.items():
        with pytest.raises(SerializationError):
            decode(name, data)
        assert DESERIALIZED == [], label
        _assert_nothing_written(tmp_path, before, scratch)
    assert len(cases) > 40
    assert not any(tmp_path.rglob("evil"))
    # Control: a well-formed crafted payload does unpack and reach deserialize.
    good = craft("artifact", [d("artifact"), d("artifact/s"), f("artifact/s/x", 4)], b"GOOD")
    path = decode(name, good)
    assert (path / "s" / "x").read_bytes() == b"GOOD"
    assert scratch in path.parents
    assert [(path.parent, "artifact")] == DESERIALIZED


def test_truncated_and_damaged_payloads_are_refused(tmp_path: Path, scratch: Path) -> None:
    """Every truncation of a real payload, and random byte damage to its header, fail cleanly
    (an exception, never a partial tree left behind or a write outside)."""
    source = make_tree(tmp_path / "src")
    name = artifacts.serializer_name(artifacts.DirectoryArtifactTask)
    data = encode(name, source)
    before = snapshot(tmp_path)
    source_before = snapshot(source)
    for cut in range(len(data)):
        with pytest.raises(SerializationError):
            decode(name, data[:cut])
    _assert_nothing_written(tmp_path, before, scratch)
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    rng = random.Random(7)
    for _ in range(300):
        damaged = bytearray(data)
        damaged[rng.randrange(len(MAGIC) + 4 + size)] ^= 1 << rng.randrange(8)
        try:
            restored = decode(name, bytes(damaged))
        except SerializationError:
            continue
        assert scratch in restored.parents  # damage that still parses stays inside
    assert snapshot(source) == source_before


def test_size_limits_are_enforced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A payload over the total-size or entry-count cap is refused on load (and not made)."""
    name = artifacts.serializer_name(artifacts.DirectoryArtifactTask)
    data = encode(name, make_tree(tmp_path / "src"))
    monkeypatch.setattr(_payload, "MAX_TOTAL_SIZE", 100)
    with pytest.raises(SerializationError, match="over the limit of 100"):
        decode(name, data)
    with pytest.raises(SerializationError, match="too large"):
        encode(name, tmp_path / "src")
    monkeypatch.setattr(_payload, "MAX_TOTAL_SIZE", 1 << 30)
    monkeypatch.setattr(_payload, "MAX_ENTRIES", 5)
    with pytest.raises(SerializationError, match="expected 1-5 entries"):
        decode(name, data)
    monkeypatch.setattr(_payload, "MAX_ENTRIES", 100)
    assert decode(name, data).name == "artifact"


def test_unpacking_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    """Files are created with O_CREAT|O_EXCL|O_NOFOLLOW and directories made, never reused: a
    symlink planted where the payload writes makes the load fail, and its target is untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    as_file = craft("artifact.txt", [f("artifact.txt", 4)], b"EVIL")
    as_tree = craft("artifact", [d("artifact"), f("artifact/victim.txt", 4)], b"EVIL")
    nested = craft("sub/artifact.txt", [f("sub/artifact.txt", 4)], b"EVIL")
    plants = [
        (as_file, "artifact.txt", outside / "victim.txt"),
        (as_tree, "artifact", outside),
        (nested, "sub", outside),
    ]
    for index, (data, planted, target) in enumerate(plants):
        into = tmp_path / f"into{index}"
        into.mkdir(mode=0o700)
        (into / planted).symlink_to(target)
        with pytest.raises(FileExistsError):
            _payload.unpack(memoryview(data), into)
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "precious"
    # Control: into an empty directory, the same payloads unpack.
    for index, (data, _, _) in enumerate(plants):
        into = tmp_path / f"clean{index}"
        into.mkdir()
        root = _payload.unpack(memoryview(data), into)
        assert (into / root).exists()


def test_a_load_that_fails_after_unpacking_leaves_nothing_behind(
    tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError while unpacking (a full disk) becomes a SerializationError and the load's
    directory is removed; a scratch root removed under the process (a temp cleaner) is made
    again."""
    source = make_tree(tmp_path / "src")
    name = artifacts.serializer_name(artifacts.DirectoryArtifactTask)
    data = encode(name, source)
    first = decode(name, data)
    real_unpack = _payload.unpack

    def disk_full(data: memoryview, into: Path, header: Any = None) -> str:
        real_unpack(data, into, header)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_payload, "unpack", disk_full)
    with pytest.raises(SerializationError, match=r"cannot unpack the artifact .*No space left"):
        decode(name, data)
    assert [p.name for p in first.parent.parent.iterdir()] == [first.parent.name]
    monkeypatch.setattr(_payload, "unpack", real_unpack)
    _serializer.remove_tree(first.parent.parent)
    again = decode(name, data)
    assert snapshot(again) == snapshot(source)
    assert again.parent.parent.parent == scratch


def test_unpacked_files_live_until_the_process_exits(tmp_path: Path) -> None:
    """A returned Path stays valid while the process runs; at exit the scratch root is removed.
    Importing the plugin imports neither numpy nor jsonschema."""
    script = textwrap.dedent(
        """
        import sys, pathlib
        import aliquot_builtins.artifacts as a
        print("numpy" in sys.modules, "jsonschema" in sys.modules)
        from aliquot import SerializerContext
        ctx = SerializerContext("x", lambda purpose: b"k" * 32)
        files = a.ArtifactFamily().specialize("aliquot_builtins.artifacts:FileArtifactTask")
        text = a.ArtifactFamily().specialize("aliquot_builtins.artifacts:StringArtifactTask")
        src = pathlib.Path(sys.argv[1])
        path = files.loads(memoryview(b"".join(files.dumps(src, ctx))), ctx)
        text.loads(memoryview(b"".join(text.dumps("t", ctx))), ctx)
        root = path.parent.parent
        print(path, path.read_text(), sorted(len(list(p.iterdir())) for p in root.iterdir()))
        """
    )
    source = tmp_path / "f.txt"
    source.write_text("kept")
    (tmp_path / "tmp").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", script, str(source)],
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    imported, shown = out.stdout.splitlines()
    assert imported == "False False"
    path, text, counts = shown.split(" ", 2)
    assert text == "kept"
    assert counts == "[1]"  # the string load removed its directory; the file's stays
    assert Path(path).parent.parent.parent == tmp_path / "tmp"
    assert not Path(path).exists()
    assert os.listdir(tmp_path / "tmp") == []


# --------------------------------------------------------------------------- signing


def _pickle_payload(marker: Path) -> bytes:
    return encode(PICKLE, Canary(marker))


def test_pickle_payloads_are_signed_and_load_when_intact(tmp_path: Path) -> None:
    marker = tmp_path / "fired"
    data = _pickle_payload(marker)
    assert data.startswith(SIGNED_MAGIC)
    assert data[len(SIGNED_MAGIC) + 40 :].startswith(MAGIC)
    decode(PICKLE, data)
    assert marker.exists()  # control: an intact payload does unpickle


def test_unsigned_and_tampered_pickle_payloads_are_refused_before_deserialize(
    tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsigned (the inner payload alone, a hand-made one), tampered (bit flips in every region),
    foreign-keyed, truncated, or signed for another task: UntrustedPayloadError, nothing is
    unpacked, deserialize never runs and the canary never fires."""
    calls: list[Any] = []
    monkeypatch.setattr(
        artifacts.PickleArtifactTask, "deserialize", staticmethod(lambda *a, **k: calls.append(a))
    )
    marker = tmp_path / "pwned"
    data = _pickle_payload(marker)
    inner = data[len(SIGNED_MAGIC) + 40 :]
    evil = b"\x80\x05N."  # a pickle (of None) that is not signed
    cases: dict[str, bytes] = {
        "unsigned inner payload": inner,
        "hand-made unsigned": craft("artifact.pkl", [f("artifact.pkl", len(evil))], evil),
        "other store's key": encode(PICKLE, Canary(marker), OTHER_CTX),
        "signed for another task": encode(artifacts.serializer_name(SignedText), "x"),
        "zero signature": data[: len(SIGNED_MAGIC) + 8] + b"\0" * 32 + inner,
        "empty": b"",
    }
    rng = random.Random(11)
    positions = list(range(len(SIGNED_MAGIC) + 40 + 60)) + rng.sample(range(len(data)), 200)
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        cases[f"flip at {pos}"] = bytes(flipped)
    for cut in range(0, len(data), 7):
        cases[f"cut at {cut}"] = data[:cut]
    cases["extended"] = data + b"\0"
    for label, payload in cases.items():
        with pytest.raises(UntrustedPayloadError, match="refusing to load artifact:"):
            decode(PICKLE, payload)
        assert calls == [], label
    assert not marker.exists()
    assert os.listdir(scratch) == []  # nothing was even unpacked
    with pytest.raises(UntrustedPayloadError, match="another key"):
        decode(PICKLE, cases["other store's key"])
    with pytest.raises(UntrustedPayloadError, match="signature does not match"):
        decode(PICKLE, cases["signed for another task"])
    with pytest.raises(UntrustedPayloadError, match="not signed by aliquot"):
        decode(PICKLE, inner)
    decode(PICKLE, data)
    assert len(calls) == 1  # control: the spy sees the intact payload


def test_a_pickle_copied_from_another_store_is_refused(tmp_path: Path) -> None:
    """The key is the store's `artifact` key, kept outside the store with mode 0600."""
    marker = tmp_path / "pwned"
    with (
        make_kernel(store=str(tmp_path / "a")) as a,
        make_kernel(store=str(tmp_path / "b")) as b,
    ):
        ref = a.values.save(Canary(marker), PICKLE)
        b.store.put_value(bytes(a.store.get_value(ref.digest)))
        with pytest.raises(UntrustedPayloadError, match="another key"):
            b.values.load(ref)
        assert not marker.exists()
        key = Path(os.environ["ALIQUOT_CONFIG_DIR"]) / "keys" / f"{a.store.store_id}.artifact.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        a.values.load(ref)
        assert marker.exists()


# --------------------------------------------------------------------------- numpy


def test_numpy_object_arrays_are_refused_both_ways(tmp_path: Path, scratch: Path) -> None:
    """Storing one is refused with a clear error; a planted .npy holding pickled objects is
    refused on load (np.load with allow_pickle=False) and no code runs."""
    name = artifacts.serializer_name(artifacts.NumpyArtifactTask)
    with pytest.raises(SerializationError, match="object arrays can only be stored by pickling"):
        encode(name, np.array([1, None], dtype=object))
    marker = tmp_path / "pwned"
    planted = tmp_path / "planted.npy"
    np.save(planted, np.array([Canary(marker)], dtype=object), allow_pickle=True)
    body = planted.read_bytes()
    data = craft("artifact.npy", [f("artifact.npy", len(body))], body)
    with pytest.raises(SerializationError, match="deserialize failed: ValueError"):
        decode(name, data)
    assert not marker.exists()
    [root] = scratch.iterdir()
    assert list(root.iterdir()) == []  # the failed load's directory is gone


def test_the_plugin_loads_without_numpy(tmp_path: Path) -> None:
    """With numpy unimportable, the plugin imports, other tasks work, and the numpy task says
    what it needs."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numpy"] = None  # import numpy now raises ImportError
        import aliquot_builtins.artifacts as a
        from aliquot import SerializationError, SerializerContext
        ctx = SerializerContext("x", lambda purpose: b"k" * 32)
        text = a.ArtifactFamily().specialize("aliquot_builtins.artifacts:StringArtifactTask")
        print(text.loads(memoryview(b"".join(text.dumps("ok", ctx))), ctx))
        numpy = a.ArtifactFamily().specialize("aliquot_builtins.artifacts:NumpyArtifactTask")
        try:
            numpy.dumps([1], ctx)
        except SerializationError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.splitlines() == [
        "ok",
        "NumpyArtifactTask needs numpy (pip install numpy)",
    ]


# --------------------------------------------------------------------------- stages


STAGE_CALLS: list[str] = []


@attrs.frozen
class Greeting:
    name: str


@stage(outputs=["text", "seed_text"], cachers=[artifacts.StringArtifactTask, StringArtifactTask])
def greet(record: Record) -> tuple[str, str]:
    STAGE_CALLS.append(record.name)
    return f"hello {record.name}\r\n", f"seed {record.name}"


def greetings() -> Experiment:
    return Experiment("greetings", stages=[greet], params=[Greeting("a"), Greeting("b")])


def test_a_stage_with_artifact_task_cachers_runs_and_reruns_from_the_cache(
    tmp_path: Path,
) -> None:
    STAGE_CALLS.clear()
    store = str(tmp_path / "store")
    with make_kernel(store=store) as kernel:
        run = kernel.run(greetings())
        assert run.status == "succeeded"
        assert STAGE_CALLS == ["a", "b"]
        outputs = run.nodes["a/greet"].outputs
        assert outputs["text"].serializer == STRING
        assert outputs["seed_text"].serializer == artifacts.serializer_name(StringArtifactTask)
    with make_kernel(store=store) as kernel:
        again = kernel.run(greetings())
        assert STAGE_CALLS == ["a", "b"]
        assert again.counts() == {"cached": 2}
        assert again.records["a"].state["text"] == "hello a\r\n"
        assert again.records["b"].state["seed_text"] == "seed b"
    STAGE_CALLS.clear()


def test_a_class_that_is_not_an_artifact_task_is_refused_as_a_cacher() -> None:
    class NotStatic:
        def serialize(self, working_dir: Path, name: str, contents: Any) -> Path:
            return working_dir

    def body(record: Record) -> int:
        return 1

    with pytest.raises(
        TaskDefinitionError,
        match=r"stage 'body': cachers\[0\] \(for output 'x'\): .*defines serialize as a "
        "function, not a staticmethod",
    ):
        stage(outputs=["x"], cachers=[NotStatic])(body)
    with pytest.raises(TaskDefinitionError, match="cannot be found again"):
        stage(outputs=["x"], cachers=[type("Made", (Ported,), {})])(body)


# --------------------------------------------------------------------------- the CLI


DEMO = """
import attrs
from aliquot import stage, Record, Experiment
from aliquot_builtins.artifacts import JsonArtifactTask, StringArtifactTask

@attrs.frozen
class Params:
    name: str
    n: int = 3

@stage(outputs=["text", "data"], cachers=[StringArtifactTask, JsonArtifactTask])
def make(record: Record):
    return "line 1\\r\\nline 2 " + record.params.name, {"n": record.params.n}

experiment = Experiment("demo", stages=[make], params=[Params("small", 3), Params("big", 5)])
"""


def test_aliquot_get_reads_an_artifact_stored_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sys_path: Callable[[Path], None]
) -> None:
    """`aliquot get` loads outputs stored by artifact tasks (text exactly, JSON as JSON);
    without the plugin, the error names the serializer."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIQUOT_STORE", str(tmp_path / "store"))
    sys_path(tmp_path)  # and forget the experiment module afterwards
    (tmp_path / "artifacts_demo.py").write_text(DEMO)
    first = run_cli("run", "artifacts_demo.py")
    assert first.exit_code == 0, first.stderr
    assert "2 computed" in first.stderr
    shown = run_cli("get", "latest", "text", "--record", "small")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.strip() == repr("line 1\r\nline 2 small")
    out = tmp_path / "text.txt"
    written = run_cli("get", "latest", "text", "--record", "big", "-o", str(out))
    assert written.exit_code == 0, written.stderr
    assert out.read_bytes() == b"line 1\r\nline 2 big"
    data = run_cli("get", "latest", "data", "--record", "big", "--json")
    assert json.loads(data.stdout) == {"n": 5}
    again = run_cli("run", "artifacts_demo.py")
    assert "served from the cache" in again.stderr
    blocked = run_cli("-p", "no:artifacts", "get", "latest", "text", "--record", "small")
    assert blocked.exit_code != 0
    assert STRING in blocked.stderr
