"""How a node ended: the :class:`Outcome` a middleware chain returns."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

if TYPE_CHECKING:
    from ._values import ArtifactRef

Status = Literal["computed", "cached", "skipped", "failed", "cancelled"]
STATUSES: Final = ("computed", "cached", "skipped", "failed", "cancelled")


@attrs.frozen
class ErrorInfo:
    """An exception, reduced to what a run record keeps: type, message, traceback text."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, *, remote_traceback: str = "") -> ErrorInfo:
        tb = remote_traceback or "".join(traceback.format_exception(exc))
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        return cls(name, str(exc), tb)

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


_EMPTY: Final[Mapping[str, Any]] = {}


@attrs.frozen
class Outcome:
    """The result of one node.

    Attributes:
        status: computed, cached, skipped, failed or cancelled.
        values: output name -> value in memory (absent for outputs not loaded).
        refs: output name -> :class:`~aliquot.ArtifactRef` for outputs in the store.
        reason: why (for cached, skipped, failed and cancelled nodes).
        error: the task's exception for failed nodes.
        info: free-form data plugins attach (cache key, worker, attempts...).
    """

    status: Status
    values: Mapping[str, Any] = _EMPTY
    refs: Mapping[str, ArtifactRef] = _EMPTY
    reason: str = ""
    error: ErrorInfo | None = None
    info: Mapping[str, Any] = _EMPTY

    @classmethod
    def computed(cls, values: Mapping[str, Any], **kw: Any) -> Outcome:
        return cls("computed", values, **kw)

    @classmethod
    def failed(cls, exc: BaseException | ErrorInfo, reason: str = "", **kw: Any) -> Outcome:
        error = exc if isinstance(exc, ErrorInfo) else ErrorInfo.from_exception(exc)
        return cls("failed", reason=reason or str(error), error=error, **kw)

    @property
    def ok(self) -> bool:
        """True when the node produced its outputs (computed or cached)."""
        return self.status in ("computed", "cached")
