"""Records: one parameter set's line of state, and the values that live in it.

A :class:`Record` is in one of three situations, and its ``state`` behaves
accordingly:

- **eager** (created outside any experiment): stages called on it run at once
  and put their outputs in ``record.state`` (notebooks, tests);
- **recording** (created by experiment code while the kernel records the
  graph): ``state`` holds *references* to the outputs that will exist; asking
  for a value raises :class:`RecordingError` instead of returning something
  empty, and assigning a value makes it a constant input of later stages;
- **in a stage** (the record a running stage receives): ``params`` is a
  tracked copy (see ``_tracking``) and ``state`` holds the stage's declared
  inputs only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs

from aliquot import TaskDefinitionError, Unfingerprintable, fingerprint

from ._errors import RecordingError
from ._tracking import Reads, track

if TYPE_CHECKING:
    from ._experiment import Recorder

#: The recorder of the experiment whose code is running, if any.
RECORDING: ContextVar[Recorder | None] = ContextVar("aliquot_stages_recording", default=None)


@attrs.frozen
class Lazy:
    """An output that is stored as soon as it is produced and dropped from memory.

    ``@stage(outputs=[Lazy("model")], cachers=["pickle"])``. Every consumer
    loads its own copy from the store; each record has its own value (never a
    shared handle). ``resolve=False`` (curifactory hands the consumer the
    cacher, to read its path) has no equivalent: aliquot's store has no
    paths, so it is refused when the stage is declared.
    """

    name: str
    resolve: bool = True

    def __str__(self) -> str:
        return self.name


@attrs.frozen
class SkippedOutput:
    """What a record's state holds for a value that was never computed: the stage that
    produces it was skipped because nothing that ran needed it.

    Running a stage or an aggregate on it raises
    :class:`ExecutingWithSkippedInputError`.
    """

    record: Any
    stage_name: str
    artifact: str
    reason: str = ""

    def __repr__(self) -> str:
        name = getattr(self.record, "name", self.record)
        why = f": {self.reason}" if self.reason else ""
        return f"<SkippedOutput {name}.{self.artifact} (stage {self.stage_name!r} skipped{why})>"


def param_name(params: Any) -> str | None:
    """``params.name`` (or ``params["name"]``) when it is a non-empty string."""
    value = params.get("name") if isinstance(params, Mapping) else getattr(params, "name", None)
    return value if isinstance(value, str) and value else None


class Record:
    """One parameter set's line of execution: its parameters and its state.

    ``Record(params)`` (curifactory's ``Record(manager, params)`` also works:
    the manager argument is ignored). ``record.name`` is ``params.name`` when
    the parameters have one; ``Record(None)`` is the record of an aggregate.
    """

    def __init__(self, *args: Any, name: str | None = None) -> None:
        from ._experiment import ExperimentContext

        if len(args) == 2 and (args[0] is None or isinstance(args[0], ExperimentContext)):
            args = args[1:]  # curifactory: Record(manager, params)
        if len(args) > 1:
            raise TypeError("Record(params) takes one parameter set")
        params = args[0] if args else None
        if isinstance(params, Record):
            raise TypeError("Record(params) takes parameters, not a record; use record.make_copy()")
        self._params = params
        self._base_name = name or param_name(params)
        self._name: str = self._base_name or ("aggregate" if params is None else "record")
        self.input_records: list[Record] = []
        self.is_aggregate = False
        self.stages: list[str] = []
        self._output: Any = None
        self._recorder: Recorder | None = None
        self._reads: Reads | None = None
        self._path = "record"
        self._tracked: Any = _UNSET
        self._index = -1
        recorder = RECORDING.get()
        self.state: State = State(self, recording=recorder is not None)
        if recorder is not None:
            recorder.register(self)

    # ------------------------------------------------------------------ parameters

    @property
    def params(self) -> Any:
        """The parameter set (inside a stage: a tracked copy; see the module docstring)."""
        reads = self._reads
        if reads is None:
            return self._params
        if self._tracked is _UNSET:
            self._tracked = track(self._params, self._path + ".params", reads)
        return self._tracked

    @property
    def name(self) -> str:
        """The record's name: unique within an experiment (``small``, ``small~2``)."""
        if self._reads is not None:
            self._reads.add(self._path + ".name")
        return self._name

    @property
    def hash(self) -> str | None:
        """A digest of the parameters (class and values) and of the records this one
        derives from; None when the parameters have no canonical form."""
        try:
            return fingerprint(self._identity(with_name=False))[:32]
        except Unfingerprintable:
            return None

    def get_hash(self) -> str | None:
        """curifactory's name for :attr:`hash`."""
        return self.hash

    def _identity(self, *, with_name: bool) -> list[Any]:
        params = self.params  # a read of the whole set, inside a stage
        parents = [r._identity(with_name=with_name) for r in self.input_records]
        ident = ["record", params, parents, self.is_aggregate]
        if with_name:
            ident.append(self.name)
        return ident

    def __aliquot_fingerprint__(self) -> Any:
        return self._identity(with_name=True)

    # ------------------------------------------------------------------ state

    @property
    def output(self) -> Any:
        """The value the last stage returned (curifactory's ``record.output``)."""
        if self._recorder is not None:
            raise RecordingError(
                f"record {self.name!r}: record.output is not available while the experiment "
                "is being recorded (no stage has run yet); read results from the run"
            )
        return self._output

    @output.setter
    def output(self, value: Any) -> None:
        self._output = value

    def make_copy(self, params: Any = None, *, name: str | None = None) -> Record:
        """A new record that starts from this one's state (``input_records=[self]``).

        With ``params`` the copy has its own parameter set (the usual way to
        compute shared data once and fan out); without, it keeps this one's.
        """
        if self._reads is not None:
            raise RecordingError("make_copy() is for experiment code, not for stage bodies")
        if params is None:
            new = Record(self._params, name=name or self._base_name)
        else:
            new = Record(params, name=name)
        new.input_records = [self]
        if new._recorder is not None or self._recorder is not None:
            if new._recorder is not self._recorder:
                raise RecordingError(
                    f"record {self.name!r} belongs to another experiment (or was created "
                    "outside one); make copies inside the experiment's code"
                )
            new.state._symbols.update(self.state._symbols)
        else:
            new.state._values.update(copy.deepcopy(self.state._values))
        return new

    # ------------------------------------------------------------------ stage views

    def _view(self, reads: Reads | None, path: str, state: Mapping[str, Any], owner: str) -> Record:
        """The record a running stage receives (tracked params, declared inputs as state)."""
        view = object.__new__(Record)
        d = view.__dict__
        d.update(self.__dict__)
        d["_reads"] = reads
        d["_path"] = path
        d["_tracked"] = _UNSET
        d["_recorder"] = None
        d["input_records"] = [
            r._view(reads, f"{path}.input_records.{i}", {}, owner)
            for i, r in enumerate(self.input_records)
        ]
        d["state"] = StageState(view, dict(state), owner)
        return view

    def __reduce__(self) -> Any:
        return (
            _rebuild,
            (
                self._name,
                self._params,
                tuple(self.input_records),
                self.is_aggregate,
                self._base_name,
            ),
        )

    def __repr__(self) -> str:
        kind = "aggregate record" if self.is_aggregate else "record"
        return f"<{kind} {self._name!r}>"


class _Unset:
    pass


_UNSET: Any = _Unset()


def _rebuild(
    name: str, params: Any, parents: tuple[Record, ...], aggregate: bool, base: str | None
) -> Record:
    record = object.__new__(Record)
    record.__dict__.update(
        _params=params,
        _base_name=base,
        _name=name,
        input_records=list(parents),
        is_aggregate=aggregate,
        stages=[],
        _output=None,
        _recorder=None,
        _reads=None,
        _path="record",
        _tracked=_UNSET,
        _index=-1,
    )
    record.__dict__["state"] = State(record, recording=False)
    return record


class State(MutableMapping[str, Any]):
    """A record's state: output name -> value (eager), or -> where it will come from (recording)."""

    def __init__(self, record: Record, *, recording: bool) -> None:
        self._record = record
        self._recording = recording
        self._values: dict[str, Any] = {}
        #: recording: name -> Ref of the producing node, or a constant set by experiment code.
        self._symbols: dict[str, Any] = {}

    def _store(self) -> dict[str, Any]:
        return self._symbols if self._recording else self._values

    def __getitem__(self, key: str) -> Any:
        if self._recording:
            where = "produced by a stage" if key in self._symbols else "not produced yet"
            raise RecordingError(
                f"record {self._record.name!r}: state[{key!r}] ({where}) has no value while the "
                "experiment is being recorded -- stage bodies run after the graph is known. "
                "Compute with it in a stage or an aggregate, or read it from the run "
                f"afterwards: run.records[{self._record.name!r}].state[{key!r}]"
            )
        try:
            return self._values[key]
        except KeyError:
            known = ", ".join(map(repr, self._values)) or "nothing yet"
            raise KeyError(
                f"record {self._record.name!r} has no {key!r} in its state (it has {known})"
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"state keys are output names (str), not {type(key).__name__}")
        self._store()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._store()))

    def __len__(self) -> int:
        return len(self._store())

    def __contains__(self, key: object) -> bool:
        return key in self._store()

    def __repr__(self) -> str:
        if self._recording:
            return f"<state of {self._record.name!r} (recording): {sorted(self._symbols)}>"
        return f"<state of {self._record.name!r}: {sorted(self._values)}>"


class StageState(Mapping[str, Any]):
    """``record.state`` inside a running stage: the inputs it declared, read-only."""

    def __init__(self, record: Record, values: dict[str, Any], owner: str) -> None:
        self._record = record
        self._values = values
        self._owner = owner

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(
                f"stage {self._owner!r} reads record.state[{key!r}] but does not declare it: "
                f"add {key!r} to inputs=[...] so the graph and the cache know about it"
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        raise TaskDefinitionError(
            f"stage {self._owner!r} assigns record.state[{key!r}]: a stage's results are what "
            "it returns (declare them in outputs=[...])"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)
