"""Serializer names for artifact tasks: ``artifact:<module>:<qualname>[?<json>]``.

The part after ``?`` is a canonical compact JSON object (keys sorted, no
spaces) with the optional keys ``args`` (the task's arguments, non-empty)
and ``name`` (the artifact's file stem, when not ``"artifact"``). A name has
exactly one spelling, so equal meanings give equal names -- and equal cache
keys. :func:`serializer_name` writes it; :func:`parse` reads it back.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs
import orjson

from aliquot import SerializationError, TaskDefinitionError

from ._args import check_args
from ._task import shape_problems

FAMILY: Final = "artifact"
#: The artifact name (file stem) when none is given.
DEFAULT_NAME: Final = "artifact"
_DOTTED: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: Artifact names are file stems: no separators, no leading dot, nothing a shell mangles.
_ARTIFACT_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


@attrs.frozen
class TaskName:
    """A parsed serializer argument: which task, with which arguments, under which name."""

    module: str
    qualname: str
    args: Mapping[str, Any] = attrs.field(factory=dict)
    name: str = DEFAULT_NAME

    @property
    def ref(self) -> str:
        return f"{self.module}:{self.qualname}"

    def argument(self) -> str:
        """The canonical serializer argument (the serializer name without ``artifact:``)."""
        extras: dict[str, Any] = {}
        if self.args:
            extras["args"] = dict(self.args)
        if self.name != DEFAULT_NAME:
            extras["name"] = self.name
        if not extras:
            return self.ref
        return self.ref + "?" + orjson.dumps(extras, option=orjson.OPT_SORT_KEYS).decode()


def serializer_name(
    task_cls: type, args: Mapping[str, Any] | None = None, name: str | None = None
) -> str:
    """The serializer name that stores values with artifact task ``task_cls``.

    ``args`` are the task's arguments (checked with
    :func:`~aliquot_builtins.artifacts.check_args` in their JSON form, which is
    what ``serialize`` will receive); ``name`` is the artifact's file stem
    (default ``"artifact"``). Use the result wherever a serializer name goes:
    ``kernel.values.save(value, serializer_name(MyTask))``, ``cachers=[...]``.

    Raises:
        TaskDefinitionError: ``task_cls`` is not an artifact task, cannot be found
            again from its module and qualified name, or ``args`` or ``name``
            are invalid.
    """
    problems = shape_problems(task_cls)
    if problems:
        raise TaskDefinitionError(f"{task_cls!r} is not an artifact task: {'; '.join(problems)}")
    module, qualname = task_cls.__module__, task_cls.__qualname__
    try:
        found: object = resolve(module, qualname)
        why = f"{module}:{qualname} is another object"
    except SerializationError as exc:
        found, why = None, str(exc)
    if found is not task_cls:
        raise TaskDefinitionError(
            f"artifact task {qualname} cannot be found again by its name ({why}); define it at "
            "the top level of an importable module"
        )
    if name is None:
        name = DEFAULT_NAME
    check_artifact_name(name, TaskDefinitionError)
    try:
        normal = orjson.loads(orjson.dumps(dict(args or {})))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise TaskDefinitionError(
            f"arguments of artifact task {qualname} must be JSON data (they become part of the "
            f"serializer name): {exc}"
        ) from exc
    check_args(task_cls, normal)
    return f"{FAMILY}:{TaskName(module, qualname, normal, name).argument()}"


def parse(argument: str) -> TaskName:
    """Read a serializer argument; refuse anything but the canonical spelling.

    Raises:
        SerializationError: the argument is malformed or not canonical.
    """
    shown = repr(f"{FAMILY}:{argument}")
    ref, sep, extras_text = argument.partition("?")
    module, colon, qualname = ref.partition(":")
    if not colon or not _DOTTED.match(module) or not _DOTTED.match(qualname):
        raise SerializationError(
            f"serializer {shown}: expected {FAMILY}:<module>:<qualname>[?<json>], "
            "e.g. 'artifact:aliquot_builtins.artifacts:StringArtifactTask'"
        )
    args: Mapping[str, Any] = {}
    name = DEFAULT_NAME
    if sep:
        try:
            extras = orjson.loads(extras_text)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(
                f"serializer {shown}: the part after '?' is not JSON: {exc}"
            ) from exc
        if not isinstance(extras, dict) or not set(extras) <= {"args", "name"}:
            raise SerializationError(
                f"serializer {shown}: the part after '?' must be a JSON object "
                "with the optional keys 'args' and 'name'"
            )
        args = extras.get("args", {})
        name = extras.get("name", DEFAULT_NAME)
        if not isinstance(args, dict) or not isinstance(name, str):
            raise SerializationError(
                f"serializer {shown}: 'args' must be an object and 'name' a string"
            )
        check_artifact_name(name, SerializationError)
    parsed = TaskName(module, qualname, args, name)
    canonical = parsed.argument()
    if canonical != argument:
        raise SerializationError(
            f"serializer {shown} is not in canonical form; write "
            f"{FAMILY + ':' + canonical!r} (or use aliquot_builtins.artifacts.serializer_name)"
        )
    return parsed


def resolve(module: str, qualname: str) -> type:
    """The artifact task class at ``module:qualname``, importing the module if needed.

    Raises:
        SerializationError: the module does not import, the name is missing,
            or the object there is not an artifact task; the message names the ref.
    """
    ref = f"{module}:{qualname}"
    try:
        found: Any = importlib.import_module(module)
    except Exception as exc:
        raise SerializationError(
            f"artifact task {ref}: cannot import module {module!r} ({type(exc).__name__}: {exc})"
        ) from exc
    for part in qualname.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise SerializationError(
                f"artifact task {ref}: {module} has no {qualname} (renamed or removed?)"
            ) from None
    problems = shape_problems(found)
    if problems:
        raise SerializationError(
            f"artifact task {ref} is not an artifact task: it {'; '.join(problems)}"
        )
    task: type = found
    return task


def check_artifact_name(name: object, error: type[Exception]) -> None:
    """Raise ``error`` unless ``name`` is a valid artifact name (a plain file stem)."""
    if not isinstance(name, str) or not _ARTIFACT_NAME.match(name):
        raise error(
            f"artifact name {name!r} is not a plain file stem: use 1-100 of letters, digits, "
            "'_', '.', '-', not starting with '.' or '-'"
        )
