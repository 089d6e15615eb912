"""The artifact-task contract: :class:`ArtifactTask` and the shape check it shares.

Dioptra's ``ArtifactTaskInterface`` subclasses ``abc.ABCMeta``, which makes
every artifact task a metaclass by accident, and an implementation that
forgets a method is noticed only when a job runs. Here the base is a plain
class, and a subclass that does not define the three static methods is
refused on its ``class`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Final

from aliquot import TaskDefinitionError

#: The static methods every artifact task defines.
METHODS: Final = ("serialize", "deserialize", "validation")


class ArtifactTask:
    """Base class of artifact tasks: how one kind of value becomes files and back.

    A subclass overrides three static methods (Dioptra's artifact-task
    contract; see ``spec/artifacts.md``):

    - ``serialize(working_dir, name, contents, **args) -> Path`` writes
      ``contents`` inside ``working_dir`` (a fresh private directory), as a
      file or a directory named after ``name``, and returns its path;
    - ``deserialize(working_dir, path, **args) -> Any`` reads it back from
      ``Path(working_dir, path)``;
    - ``validation() -> dict | None`` gives the JSON Schema (draft 2020-12)
      of each argument ``serialize`` takes besides the first three; arguments
      it does not list are refused.

    Subclasses are never instantiated. Use one as a stage cacher
    (``cachers=[MyTask]``) or as a serializer name
    (:func:`~aliquot_builtins.artifacts.serializer_name`).

    Attributes:
        signed: sign payloads with the store's secret key and refuse unsigned or
            tampered ones before ``deserialize`` runs -- for tasks whose
            ``deserialize`` would run code from the files (pickle).
        keep_unpacked: whether the unpacked files must outlive ``deserialize``
            (its result refers to them, as a returned ``Path`` does). When
            False they are deleted as soon as ``deserialize`` returns.
    """

    signed: ClassVar[bool] = False
    keep_unpacked: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        problems = shape_problems(cls)
        if problems:
            raise TaskDefinitionError(
                f"artifact task {cls.__qualname__} {'; '.join(problems)}: an artifact task "
                "defines serialize, deserialize and validation, each under @staticmethod"
            )

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
        """Write ``contents`` inside ``working_dir`` and return the file or directory written."""
        raise NotImplementedError

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Any:
        """Read back what ``serialize`` wrote, from ``Path(working_dir, path)``."""
        raise NotImplementedError

    @staticmethod
    def validation() -> dict[str, Any] | None:
        """The JSON Schema of each extra argument of ``serialize`` (None: it takes none)."""
        raise NotImplementedError


#: The name ported Dioptra code imports.
ArtifactTaskInterface = ArtifactTask


def shape_problems(cls: object) -> list[str]:
    """What keeps ``cls`` from being an artifact task (empty: it is one).

    A task need not subclass :class:`ArtifactTask` (ported code may not), but
    each method must be a ``staticmethod`` defined by some class in its MRO
    other than :class:`ArtifactTask`, whose methods are placeholders.
    """
    if not isinstance(cls, type):
        return [f"is a {type(cls).__name__}, not a class"]
    if cls is ArtifactTask:
        return ["is the base class itself"]
    problems = []
    for method in METHODS:
        owner = next((k for k in cls.__mro__ if method in vars(k)), None)
        if owner is None or owner is ArtifactTask:
            problems.append(f"does not define {method}()")
            continue
        raw = vars(owner)[method]
        if not isinstance(raw, staticmethod) or not callable(raw.__func__):
            problems.append(
                f"defines {method} as a {type(raw).__name__}, not a staticmethod "
                f"(add @staticmethod; Dioptra calls it on the class)"
            )
    return problems
