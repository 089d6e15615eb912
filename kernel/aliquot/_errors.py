"""Every error aliquot raises, in one room.

Each message says what was wrong, where, and what to do next. Errors that a
user can fix by changing their input are *user errors*: the CLI prints them as
one line on stderr and exits with code 2 (no traceback unless ``--traceback``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ._runs import Run


class AliquotError(Exception):
    """Base class of every aliquot error."""

    #: The CLI prints user errors as one line and exits with code 2.
    user_error: ClassVar[bool] = True


# ---------------------------------------------------------------- plugins


class PluginError(AliquotError):
    """A plugin could not be loaded, registered or used."""


class PluginLoadError(PluginError):
    """A plugin failed while it was imported or registered.

    The message names the plugin, its entry point, its distribution and
    version, the cause, and the escape hatch (``-p no:NAME``).
    """

    def __init__(
        self,
        name: str,
        cause: BaseException | str,
        *,
        entry_point: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
        stage: str = "import",
    ) -> None:
        self.name = name
        self.entry_point = entry_point
        self.distribution = distribution
        self.version = version
        self.stage = stage
        if isinstance(cause, BaseException):
            text = f"{type(cause).__name__}: {cause}".rstrip(": ")
        else:
            text = cause
        # One line: the CLI prints errors as a single line (pluggy's messages span several).
        self.cause_text = " ".join(text.split())
        where = []
        if entry_point:
            where.append(f"entry point {name} = {entry_point}")
        if distribution:
            where.append(f"distribution {distribution} {version or '?'}")
        detail = f" ({', '.join(where)})" if where else ""
        super().__init__(
            f"plugin {name!r}{detail} failed at {stage}: {self.cause_text}. "
            f"Re-run with `-p no:{name}` (or ALIQUOT_DISABLE_PLUGINS={name}) to skip it."
        )


class PluginUnavailable(PluginError):
    """Raised by a plugin at import when an optional dependency is missing.

    ``raise aliquot.PluginUnavailable("needs numpy")``: the plugin is listed as
    *unavailable* with this reason and everything else keeps working.
    """


class RegistrationError(PluginError):
    """A plugin registered something the kernel refuses (for example a duplicate name)."""


class UnknownNameError(AliquotError, KeyError):
    """A serializer, store, executor, task type or middleware name that nothing registered."""

    def __init__(self, kind: str, name: str, known: list[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = known
        listing = ", ".join(sorted(known)) or "none"
        msg = f"unknown {kind} {name!r} (known: {listing})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PluginNotActiveError(AliquotError):
    """A declaration belongs to a plugin that is blocked, failed or not installed."""


# ---------------------------------------------------------------- tasks and graphs


class TaskDefinitionError(AliquotError):
    """A task declaration is invalid (caught when the task is defined)."""


class GraphError(AliquotError):
    """A graph cannot be planned. Raised before anything runs."""


class CycleError(GraphError):
    """The graph has a cycle; the message names it."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("the graph has a cycle: " + " -> ".join(cycle))


class MissingInputError(GraphError):
    """A task parameter that neither another task nor ``inputs`` provides."""

    def __init__(self, missing: list[tuple[str, str]]) -> None:
        self.missing = missing
        parts = [f"task {task!r} parameter {param!r}" for task, param in missing]
        super().__init__(
            "nothing provides "
            + "; ".join(parts)
            + " (no task has an output of that name and it is not in inputs)"
        )


class UnknownTargetError(GraphError):
    """A requested target names no output and no task of the graph."""


class OutputMismatchError(AliquotError):
    """A task returned a value that does not match its declared outputs."""


class TaskTimeoutError(AliquotError):
    """A task ran longer than its ``timeout`` option."""


# ---------------------------------------------------------------- values and stores


class SerializationError(AliquotError):
    """No serializer could encode a value, or a payload could not be decoded."""


class UntrustedPayloadError(SerializationError):
    """A code-carrying payload (pickle) is unsigned or its signature does not match.

    It is refused *before* anything is unpickled.
    """


class StoreError(AliquotError):
    """The store could not be opened or used."""

    user_error = False


class StoreForkedError(StoreError):
    """A store handle was used in a process forked after it was opened."""

    user_error = True


class ValueUnavailableError(AliquotError, KeyError):
    """A stored value is missing or failed its checksum (and was quarantined)."""

    def __str__(self) -> str:
        return str(self.args[0])


class RunNotFoundError(AliquotError, KeyError):
    """No stored run matches the given id or prefix."""

    def __str__(self) -> str:
        return str(self.args[0])


# ---------------------------------------------------------------- running


class TargetLoadError(AliquotError):
    """``aliquot run TARGET`` could not import or resolve TARGET."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C cancelled a run. The run is stored as *cancelled*; ``.run`` holds it."""

    def __init__(self, run: Run) -> None:
        self.run = run
        super().__init__(f"run {run.id} cancelled by Ctrl-C")


def error_summary(exc: BaseException) -> dict[str, Any]:
    """The JSON form of an exception stored on a run (type, message, traceback)."""
    import traceback

    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


# Errors are public as ``aliquot.<Name>``: show (and pickle) them under that name.
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, BaseException) and _cls.__module__ == __name__:
        _cls.__module__ = "aliquot"
del _cls
