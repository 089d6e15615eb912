"""The ``artifacts`` plugin: Dioptra's artifact tasks, as aliquot serializers.

An *artifact task* (:class:`ArtifactTask`) says how one kind of value
becomes a file or directory and back; this plugin registers the serializer
family ``artifact`` that stores values through them. Name one with
:func:`serializer_name` -- ``artifact:<module>:<qualname>[?<json>]`` -- or
give the task class as a stage cacher (``cachers=[StringArtifactTask]``).
The contract, the name grammar, the payload format and the safety rules are
in ``spec/artifacts.md``; the parts live in:

- ``_task``: :class:`ArtifactTask`, checked when a subclass is defined;
- ``_args``: arguments against the task's JSON Schema, unknown ones refused;
- ``_names``: serializer names, and finding a task from one;
- ``_payload``: a tree as deterministic bytes, unpacked without trusting them;
- ``_serializer``: the ``artifact`` family and its specializations;
- ``_tasks``: the builtin tasks.
"""

from __future__ import annotations

from collections.abc import Callable

from aliquot import hookimpl

from ._args import check_args, validate_args
from ._names import serializer_name
from ._serializer import ArtifactFamily, ArtifactSerializer
from ._task import ArtifactTask, ArtifactTaskInterface
from ._tasks import (
    BUILTIN_ARTIFACT_TASKS,
    BytesArtifactTask,
    DirectoryArtifactTask,
    FileArtifactTask,
    JsonArtifactTask,
    NumpyArtifactTask,
    PickleArtifactTask,
    StringArtifactTask,
)

__all__ = [
    "BUILTIN_ARTIFACT_TASKS",
    "ArtifactFamily",
    "ArtifactSerializer",
    "ArtifactTask",
    "ArtifactTaskInterface",
    "BytesArtifactTask",
    "DirectoryArtifactTask",
    "FileArtifactTask",
    "JsonArtifactTask",
    "NumpyArtifactTask",
    "PickleArtifactTask",
    "StringArtifactTask",
    "check_args",
    "serializer_name",
    "validate_args",
]

# Serializer names record a task's module: give the public classes this public
# module's name (as trio does), so the names survive moving code between the
# private modules.
for _cls in (ArtifactTask, *BUILTIN_ARTIFACT_TASKS.values()):
    _cls.__module__ = __name__
del _cls


@hookimpl(trylast=True)
def aliquot_register_serializers(register: Callable[..., None]) -> None:
    register(ArtifactFamily())
