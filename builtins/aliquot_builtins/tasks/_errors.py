"""Errors of the ``tasks`` plugin (exported as ``aliquot_builtins.tasks.X``)."""

from __future__ import annotations

from collections.abc import Sequence

from aliquot import AliquotError


class ParameterTypeError(AliquotError, TypeError):
    """A value does not have the type a task declares for it."""


class UnknownTaskError(AliquotError, LookupError):
    """No registered task has this name."""


class AmbiguousTaskError(AliquotError, LookupError):
    """A short task name matches tasks of several task plugins."""

    def __init__(self, name: str, candidates: Sequence[str]) -> None:
        self.name = name
        self.candidates = list(candidates)
        super().__init__(
            f"task name {name!r} is ambiguous: it matches {', '.join(self.candidates)}; "
            "write the qualified name"
        )


class TaskPluginError(AliquotError, ValueError):
    """A task plugin, file or snapshot operation was refused (bad name, bad file...)."""


class TaskPluginImportError(AliquotError, ImportError):
    """A task plugin's code raised while it was imported (the message names file and line)."""
