"""The exceptions of curifactory's ``staging`` module, with their names and meanings.

Each is also an aliquot error of the matching kind, so ``except
aliquot.TaskDefinitionError`` catches declaration mistakes from every task type.
"""

from __future__ import annotations

from aliquot import AliquotError, GraphError, OutputMismatchError, TaskDefinitionError


class InputSignatureError(TaskDefinitionError):
    """An input is not a parameter of the function, or a suppressed input has no default."""


class OutputSignatureError(OutputMismatchError):
    """A stage returned a different number of values than ``outputs`` declares, or a
    ``Lazy`` output has no cacher."""


class CachersMismatchError(TaskDefinitionError):
    """``cachers`` does not have one entry per output."""


class EmptyCachersError(TaskDefinitionError):
    """``cachers=[]``: say ``cachers=None`` for "any suitable serializer"."""


class ExecutingWithSkippedInputError(AliquotError):
    """A stage or aggregate would run on a :class:`SkippedOutput` (a value that was never
    computed because nothing needed it)."""


class MissingStageInputError(GraphError, KeyError):
    """A stage input that no earlier stage of the record produced and nobody passed."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RecordingError(AliquotError):
    """Experiment code read a value while the experiment's graph was being recorded."""


for _cls in (
    InputSignatureError,
    OutputSignatureError,
    CachersMismatchError,
    EmptyCachersError,
    ExecutingWithSkippedInputError,
    MissingStageInputError,
    RecordingError,
):
    _cls.__module__ = "aliquot"
del _cls
