"""Validation issues: what is wrong with a task graph, and where.

Validation never stops at the first problem: it collects every issue it can
find, each with a location that points into the document (``graph.shout_step``,
``graph.hello_step.name``, ``artifacts.message.task.args.type``,
``parameters.name``) and a kebab-case code that tools can match on. The codes
and an example message for each are listed in ``spec/taskgraph.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

from aliquot import AliquotError

#: Codes of issues about the document's shape: exactly what ``spec/taskgraph.schema.json``
#: refuses (a test checks that the two agree).
SHAPE_CODES: Final = frozenset(
    {
        "bad-document",
        "bad-name",
        "bad-type",
        "bad-parameter",
        "bad-step",
        "bad-artifact",
        "bad-plugin",
        "bad-module",
    }
)

#: Every code validation can report (besides the shape codes), for the spec and the tests.
CODES: Final = SHAPE_CODES | {
    "yaml-syntax",
    "duplicate-key",
    "unknown-task",
    "ambiguous-task",
    "bad-reference",
    "unknown-reference",
    "unknown-output",
    "ambiguous-output",
    "type-mismatch",
    "undefined-type",
    "type-conflict",
    "cycle",
    "name-collision",
    "missing-input",
    "too-many-positional",
    "unknown-keyword",
    "positional-only",
    "duplicate-input",
    "unknown-dependency",
    "artifact-args",
    "artifact-task",
    "missing-parameter",
    "unknown-parameter",
    "duplicate-parameter",
    "bad-option",
    "duplicate-plugin",
    "unknown-plugin",
    "module-error",
}


@attrs.frozen
class ValidationIssue:
    """One problem found in a task graph.

    Attributes:
        location: where in the document (dotted path; ``[i]`` for list items).
        code: kebab-case kind of problem (``unknown-task``, ``type-mismatch``...).
        message: what is wrong and, where it can say, what to write instead.
        step: the step it concerns, if any.
        argument: the argument (input name, keyword, ``args[1]``...) it concerns, if any.
    """

    location: str
    code: str
    message: str
    step: str | None = None
    argument: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [{self.code}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "code": self.code,
            "message": self.message,
            "step": self.step,
            "argument": self.argument,
        }


class GraphValidationError(AliquotError):
    """A task graph has problems; ``issues`` lists all of them (nothing ran)."""

    def __init__(self, issues: Iterable[ValidationIssue], source: str = "") -> None:
        self.issues = list(issues)
        self.source = source
        count = len(self.issues)
        where = f" {source}" if source else ""
        head = f"task graph{where} has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in self.issues)]))
