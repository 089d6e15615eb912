"""Background jobs: ``op.deploy(kind="job")`` runs an operator in a process of its own.

nbox uploads a folder and triggers a remote batch run; here a job runs on this
machine, against the local store, in a process that outlives the one that
submitted it:

1. ``deploy`` stores the operator and its inputs as signed pickles, writes a
   job record (space ``op_jobs``, id from ``store.next_sequence("op_jobs")``)
   and commits, so the record exists before any process looks for it;
2. it spawns ``python -m aliquot_builtins.operators._jobs STORE ID`` in a new
   session (stdin ``/dev/null``, stdout and stderr to ``STORE/jobs/ID.log``),
   records its pid and the pid's start time, and returns a :class:`Job`;
3. the job process opens its own kernel, marks the job ``running``, imports
   the operator's defining module (a script under the module name it had when
   it was submitted), calls ``kernel.run(op, inputs=inputs)`` and records the
   run id and the output's ref, or the error.

Several processes update one record (the job process, ``cancel`` from
anywhere, anyone who finds the process dead), and the store has no
compare-and-set. So every change is read-modify-write under an exclusive
``flock`` on ``STORE/jobs/lock``: read the committed record, change it, put it,
commit, unlock. The first terminal state wins: a job that finished is not
cancelled afterwards, a cancelled job that then finishes stays cancelled. The
lock is held for milliseconds, never while a job runs.

A ``pending`` or ``running`` job whose process is gone -- no such pid, a
zombie, or a pid now used by another process (its start time in
``/proc/PID/stat`` differs) -- is marked ``failed`` by whoever looks at it
next. Processes on another host are never judged.

The contract is ``spec/operators.md`` ("Jobs").
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from aliquot import AliquotError, ArtifactRef, ErrorInfo, hookimpl

if TYPE_CHECKING:
    from aliquot import Kernel, Run

    from ._operator import Operator

#: The store space of job records (key: the job number, u64 big-endian).
SPACE: Final = "op_jobs"
#: The store sequence that numbers jobs.
SEQUENCE: Final = "op_jobs"
#: Version of the job record layout.
FORMAT: Final = 1
STATUSES: Final = ("pending", "running", "succeeded", "failed", "cancelled")
FINISHED: Final = frozenset({"succeeded", "failed", "cancelled"})
#: Seconds ``cancel`` waits after SIGTERM before it sends SIGKILL.
GRACE: Final = 5.0
#: The job process runs the operator on a worker thread, so a cancelled run
#: stops waiting for it at once (the thread is abandoned, the process exits).
EXECUTOR: Final = "threads:1"
_MAIN_ALIAS: Final = "__aliquot_job_main__"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class JobError(AliquotError):
    """A job could not be submitted, found or controlled."""


class JobNotFoundError(JobError):
    """No job with that id in the store."""


class JobFailedError(JobError):
    """``Job.result()`` of a job that failed.

    Attributes: ``job_id``, ``error`` (``{type, message, traceback}`` as
    recorded) and ``traceback`` (the job's traceback text, also in the message
    tail of ``aliquot jobs show``).
    """

    user_error = False

    def __init__(self, job_id: str, target: str, error: Mapping[str, Any]) -> None:
        self.job_id = job_id
        self.error = dict(error)
        self.traceback = str(error.get("traceback") or "")
        kind, message = error.get("type", "Error"), error.get("message", "")
        super().__init__(
            f"job {job_id} ({target}) failed: {kind}: {message} "
            f"(see `aliquot jobs show {job_id}` and `aliquot jobs logs {job_id}`)"
        )


class JobCancelledError(JobError):
    """``Job.result()`` of a job that was cancelled."""

    user_error = False

    def __init__(self, job_id: str, target: str, error: Mapping[str, Any] | None) -> None:
        self.job_id = job_id
        why = f": {error['message']}" if error and error.get("message") else ""
        super().__init__(f"job {job_id} ({target}) was cancelled{why}")


# ---------------------------------------------------------------------------
# Where jobs live, and the lock that serialises changes to their records
# ---------------------------------------------------------------------------


def jobs_dir(kernel: Kernel) -> Path:
    """``STORE/jobs``: logs and the record lock (a local store directory is required)."""
    location = str(kernel.location)
    if location.startswith("memory://"):
        raise JobError(
            "jobs need a store on disk: a memory:// store lives in one process, and a job "
            "runs in another. Open a kernel on a directory (Kernel.open('.aliquot'), --store PATH)"
        )
    if "://" in location and not location.startswith("lmdb://"):
        raise JobError(
            f"jobs need a store directory on this machine (lmdb); {location!r} is not one"
        )
    return Path(location.removeprefix("lmdb://")).expanduser().absolute() / "jobs"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _key(number: int) -> bytes:
    return number.to_bytes(8, "big")


def _number(job_id: object) -> int:
    text = str(job_id).strip()
    if not text.isdigit() or int(text) <= 0:
        raise JobNotFoundError(
            f"{job_id!r} is not an operator job id: operator jobs have numbers, component "
            "trigger jobs t<number> (see `aliquot jobs ls`)"
        )
    return int(text)


def _read(kernel: Kernel, number: int) -> dict[str, Any] | None:
    raw = kernel.store.get(SPACE, _key(number))
    if raw is None:
        return None
    record: dict[str, Any] = orjson.loads(raw)
    return record


def _write(kernel: Kernel, record: Mapping[str, Any]) -> None:
    kernel.store.put(SPACE, _key(int(record["id"])), orjson.dumps(record))
    kernel.store.commit()


def _update(
    kernel: Kernel, number: int, change: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Read the committed record, apply ``change`` (True: it changed), write, commit."""
    with _locked(jobs_dir(kernel)):
        record = _read(kernel, number)
        if record is None:
            raise _not_found(kernel, number)
        if change(record):
            _write(kernel, record)
        return record


def _not_found(kernel: Kernel, number: int) -> JobNotFoundError:
    return JobNotFoundError(
        f"no job {number} in the store at {kernel.location} (see `aliquot jobs ls`)"
    )


def _now() -> str:
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def seconds_of(text: str | None) -> float | None:
    if not text:
        return None
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------
# Is the job's process still that process?
# ---------------------------------------------------------------------------


def process_start(pid: int) -> str | None:
    """``pid``'s start time in clock ticks (``/proc/PID/stat``); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


def _alive(hostname: str | None, pid: int | None, start: str | None) -> bool:
    if hostname != socket.gethostname():
        return True  # another machine: we cannot tell, so never call it dead
    if not pid:
        return False
    if not os.path.exists("/proc/self/stat"):  # no /proc: the pid alone has to do
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = process_start(pid)
    return now is not None and (start is None or now == start)


def _judge(record: dict[str, Any]) -> bool:
    """Mark an unfinished job whose process is gone as failed; True if it changed."""
    if record["status"] in FINISHED:
        return False
    if record.get("pid"):
        if _alive(record["hostname"], record["pid"], record.get("pid_start")):
            return False
        message = (
            f"the job's process (pid {record['pid']}) ended without recording a result "
            f"(killed, out of memory, or the machine restarted); its log: {record['log']}"
        )
    else:
        submitter = record.get("submitter") or {}
        if _alive(record["hostname"], submitter.get("pid"), submitter.get("pid_start")):
            return False  # it is about to record the job process's pid
        message = "the submitting process died before it started the job process"
    record.update(
        status="failed",
        finished=_now(),
        error={"type": "JobProcessDied", "message": message, "traceback": ""},
    )
    return True


def _fresh(kernel: Kernel, number: int) -> dict[str, Any]:
    """The record as it is now: a dead process found is recorded (if the kernel may write)."""
    if kernel.readonly:
        record = _read(kernel, number)
        if record is None:
            raise _not_found(kernel, number)
        _judge(record)  # reported, not written
        return record
    return _update(kernel, number, _judge)


def list_jobs(kernel: Kernel, limit: int | None = None) -> list[dict[str, Any]]:
    """Job records, newest first (dead processes judged as in :meth:`Job.status`)."""
    jobs_dir(kernel)  # a memory:// store is refused here as everywhere
    numbers = []
    for key, _raw in kernel.store.scan(SPACE, reverse=True):
        numbers.append(int.from_bytes(key, "big"))
        if limit is not None and len(numbers) >= limit:
            break
    return [_fresh(kernel, n) for n in numbers]


def job_source(kernel: Kernel, limit: int | None) -> list[dict[str, Any]]:
    """Job source ``operator``: the records of :func:`list_jobs` (none for a memory:// store)."""
    try:
        records = list_jobs(kernel, limit=limit)
    except JobError:
        return []
    return [{**record, "kind": "operator"} for record in records]


def job_values(kernel: Kernel) -> Iterator[str]:
    """Digests job records point to (operators, inputs, results), for ``store gc --values``."""
    for _, raw in kernel.store.scan(SPACE):
        record = orjson.loads(raw)
        for field in ("operator", "inputs", "result"):
            ref = record.get(field)
            if ref:
                yield str(ref["digest"])


# ---------------------------------------------------------------------------
# The handle
# ---------------------------------------------------------------------------


class Job:
    """A handle on a background job (from :func:`deploy` or :func:`from_job`).

    Every method reads the job's record from the store, so a handle in any
    process sees the same job; calling the handle (``job()``) waits for and
    returns the result, like :meth:`result`. A handle that opened its own
    kernel (no ``kernel=`` given) closes it with :meth:`close` or ``with``.
    """

    def __init__(self, number: int, kernel: Kernel, *, owns_kernel: bool = False) -> None:
        self._number = number
        self.kernel = kernel
        self._owns_kernel = owns_kernel

    @property
    def id(self) -> str:
        """The job id (a number, as text): ``from_job(id)``, ``aliquot jobs show ID``."""
        return str(self._number)

    def record(self) -> dict[str, Any]:
        """The job record: id, status, times, pid, target, refs, run id, error, log path."""
        return _fresh(self.kernel, self._number)

    def status(self) -> str:
        """``pending``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return str(self.record()["status"])

    @property
    def run_id(self) -> str | None:
        """The id of the kernel run that ran the operator (once it started)."""
        run_id = self.record().get("run")
        return str(run_id) if run_id else None

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the job finished; returns its record.

        Raises:
            TimeoutError: it is still pending or running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.02
        while True:
            record = self.record()
            if record["status"] in FINISHED:
                return record
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"job {self.id} ({record['target']}) is still {record['status']} "
                        f"after {timeout:g} s; wait longer, or `aliquot jobs cancel {self.id}`"
                    )
                pause = min(pause, left)
            time.sleep(pause)
            pause = min(pause * 1.5, 0.5)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return the operator's return value.

        Raises:
            JobFailedError: the job failed (its error and traceback are attached).
            JobCancelledError: the job was cancelled.
            TimeoutError: it did not finish within ``timeout`` seconds.
        """
        record = self.wait(timeout)
        if record["status"] == "failed":
            raise JobFailedError(self.id, record["target"], record["error"] or {})
        if record["status"] == "cancelled":
            raise JobCancelledError(self.id, record["target"], record.get("error"))
        return self.kernel.values.load(ArtifactRef.from_json(record["result"]))

    def __call__(self, timeout: float | None = None) -> Any:
        """``job()``: the same as :meth:`result`."""
        return self.result(timeout)

    def logs(self) -> str:
        """What the job process wrote to stdout and stderr so far."""
        path = Path(self.record()["log"])
        try:
            return path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def cancel(self, grace: float = GRACE) -> bool:
        """Cancel the job: record it ``cancelled``, SIGTERM its process group, and
        SIGKILL it if it is still there after ``grace`` seconds. Returns once the
        process is gone.

        Returns:
            True if this call cancelled it; False if it had already finished
            (succeeded, failed or cancelled: nothing changes).
        """
        cancelled = False

        def change(record: dict[str, Any]) -> bool:
            nonlocal cancelled
            if _judge(record):
                return True
            if record["status"] in FINISHED:
                return False
            if record["hostname"] != socket.gethostname():
                raise JobError(
                    f"job {self.id} runs on host {record['hostname']!r}; cancel it there"
                )
            record.update(
                status="cancelled",
                finished=_now(),
                error={
                    "type": "JobCancelled",
                    "message": f"cancelled by process {os.getpid()} on {socket.gethostname()}",
                    "traceback": "",
                },
            )
            cancelled = True
            return True

        if self.kernel.readonly:
            raise JobError(f"cannot cancel job {self.id}: the kernel's store is open read-only")
        record = _update(self.kernel, self._number, change)
        if record["status"] == "cancelled" and record.get("pid"):
            _terminate(record["hostname"], record["pid"], record.get("pid_start"), grace)
        return cancelled

    def close(self) -> None:
        """Close the kernel this handle opened itself (a given kernel stays open)."""
        if self._owns_kernel:
            self.kernel.close()

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Job {self.id} on {self.kernel.location!r}>"


def _terminate(hostname: str, pid: int, start: str | None, grace: float) -> None:
    """SIGTERM the job's process group, SIGKILL after ``grace``; return when it is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not _alive(hostname, pid, start):
            return
        try:
            os.killpg(pid, sig)  # started with start_new_session: its group id is its pid
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(hostname, pid, start):
                return
            time.sleep(0.02)
    raise JobError(f"the job process {pid} is still there after SIGKILL")


# ---------------------------------------------------------------------------
# Submitting and re-attaching
# ---------------------------------------------------------------------------


def _origin(op: Operator) -> tuple[str, str | None]:
    """The module that defines the operator (imported first in the job process) and its file."""
    from ._operator import FunctionOperator

    if isinstance(op, FunctionOperator):
        module = getattr(op, "__module__", None) or getattr(op._wrapped, "__module__", None)
    else:
        module = type(op).__module__
    module = module or "__main__"
    loaded = sys.modules.get(module)
    file = getattr(loaded, "__file__", None) if loaded is not None else None
    if module == "__main__" and not file:
        raise JobError(
            "the operator is defined in __main__ of `python -c` or an interactive session, "
            "which the job process cannot import: define it in a file or a module"
        )
    return module, (os.path.abspath(file) if file else None)


def _shown(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs as the record shows them: JSON values as they are, others as a short repr."""
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        try:
            text = orjson.dumps(value)
        except TypeError:
            text = b""
        if text and len(text) <= 200:
            out[name] = value
        else:
            shown = repr(value)
            out[name] = shown if len(shown) <= 200 else shown[:197] + "..."
    return out


def _open_default_kernel(*, must_exist: bool) -> Kernel:
    import aliquot
    from aliquot.cli import default_store

    location = default_store()
    if must_exist and "://" not in location and not (Path(location) / "index").exists():
        raise JobNotFoundError(
            f"no store at {os.path.abspath(location)} ($ALIQUOT_STORE or ./.aliquot): "
            "pass kernel= (a kernel open on the job's store) or set ALIQUOT_STORE"
        )
    return aliquot.Kernel.open(location)


def deploy(
    op: Operator,
    kind: str = "job",
    inputs: Mapping[str, Any] | None = None,
    kernel: Kernel | None = None,
    *,
    plugin_args: Sequence[str] = (),
) -> Job:
    """Run ``op`` with ``inputs`` in a background process; return its :class:`Job`.

    ``kind="job"`` is the only kind built in (servings come with the
    ``aliquot-http`` plugin). ``kernel`` (default: a kernel on the CLI's
    default store) must be open read-write on a store directory. The
    operator and inputs must pickle, and the operator's module must be
    importable from a file (not ``python -c``). ``plugin_args`` are ``-p``
    options for the job process (``NAME`` or ``no:NAME``).
    """
    from ._operator import ClassOperator, Operator
    from ._tasktype import operator_spec

    if kind == "serving":
        raise JobError(
            "servings come with the aliquot-http plugin; deploy(kind='job') runs the "
            "operator once in a background process"
        )
    if kind != "job":
        raise JobError(f"unknown deployment kind {kind!r}: expected 'job' (or 'serving')")
    if not isinstance(op, Operator):
        raise JobError(f"deploy needs an Operator, got {type(op).__name__}")
    if isinstance(op, ClassOperator) and not callable(op._wrapped):
        raise JobError(
            f"{type(op).__qualname__} instances are not callable, and a job calls the "
            "operator once: give the class a __call__ (or deploy a function operator); "
            "servings of classes come with the aliquot-http plugin"
        )
    values = dict(inputs or {})
    bad = [k for k in values if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise JobError(f"job inputs are keyword names; got {bad!r}")
    owns = kernel is None
    kernel = kernel if kernel is not None else _open_default_kernel(must_exist=False)
    try:
        folder = jobs_dir(kernel)
        if kernel.readonly:
            raise JobError("cannot submit a job: the kernel's store is open read-only")
        module, file = _origin(op)
        target = operator_spec(op).name.replace(".__wrapped__", "")
        number = kernel.store.next_sequence(SEQUENCE)
        folder.mkdir(exist_ok=True)
        record: dict[str, Any] = {
            "format": FORMAT,
            "id": str(number),
            "status": "pending",
            "created": _now(),
            "started": None,
            "finished": None,
            "hostname": socket.gethostname(),
            "pid": None,
            "pid_start": None,
            "submitter": {"pid": os.getpid(), "pid_start": process_start(os.getpid())},
            "target": target,
            "module": module,
            "file": file,
            "cwd": os.getcwd(),
            "sys_path": [p for p in sys.path if isinstance(p, str)],
            "inputs_shown": _shown(values),
            "operator": kernel.values.save(op, "pickle").to_json(),
            "inputs": kernel.values.save(values, "pickle").to_json(),
            "run": None,
            "result": None,
            "error": None,
            "log": str(folder / f"{number}.log"),
        }
        with _locked(folder):
            _write(kernel, record)
        try:
            pid = _spawn(folder.parent, number, Path(record["log"]), plugin_args)
        except OSError as exc:
            info = ErrorInfo.from_exception(exc)
            _update(kernel, number, lambda r: _fail_spawn(r, info))
            raise JobError(f"could not start the process of job {number}: {exc}") from exc
        start = process_start(pid)

        def started(r: dict[str, Any]) -> bool:
            if r["pid"] is not None:
                return False  # the job process recorded itself first
            r.update(pid=pid, pid_start=start)
            return True

        _update(kernel, number, started)
    except BaseException:
        if owns:
            kernel.close()
        raise
    return Job(number, kernel, owns_kernel=owns)


def _fail_spawn(record: dict[str, Any], info: ErrorInfo) -> bool:
    record.update(status="failed", finished=_now(), error=info.to_json())
    return True


def _spawn(store: Path, number: int, log: Path, plugin_args: Sequence[str]) -> int:
    command = [sys.executable, "-m", __name__, str(store), str(number)]
    command += [f"-p{arg}" for arg in plugin_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C here does not reach it; cancel kills its group
            close_fds=True,
            env=env,
        )
    # Reap it when it ends (no zombie while this process lives); the thread holds the only
    # reference, so the Popen object is never collected while the job still runs.
    threading.Thread(target=process.wait, name=f"aliquot-job-{number}", daemon=True).start()
    return process.pid


def from_job(job_id: str | int, kernel: Kernel | None = None) -> Job:
    """Re-attach to job ``job_id`` from any process (``Operator.from_job``).

    ``kernel`` defaults to a kernel on the CLI's default store
    (``$ALIQUOT_STORE`` or ``./.aliquot``), owned by the handle.

    Raises:
        JobNotFoundError: no such job in that store.
    """
    number = _number(job_id)
    owns = kernel is None
    kernel = kernel if kernel is not None else _open_default_kernel(must_exist=True)
    try:
        jobs_dir(kernel)
        if _read(kernel, number) is None:
            raise _not_found(kernel, number)
    except BaseException:
        if owns:
            kernel.close()
        raise
    return Job(number, kernel, owns_kernel=owns)


# ---------------------------------------------------------------------------
# The job process
# ---------------------------------------------------------------------------


class _RunStarted:
    """Records the run id on the job record as soon as the run starts."""

    __name__ = "aliquot-job"

    def __init__(self, number: int) -> None:
        self.number = number
        self.kernel: Kernel | None = None

    @hookimpl
    def aliquot_run_started(self, run: Run) -> None:
        if self.kernel is None:
            return

        def change(record: dict[str, Any]) -> bool:
            if record.get("run"):
                return False
            record["run"] = run.id
            return True

        _update(self.kernel, self.number, change)


def _import_origin(record: Mapping[str, Any]) -> None:
    """Import the operator's defining module the way the submitter had it."""
    missing = [p for p in record.get("sys_path") or [] if p not in sys.path]
    sys.path[:0] = missing
    module, file = record["module"], record.get("file")
    if module in sys.modules and module != "__main__":
        return
    if module == "__main__" or ("." not in module and file and not file.endswith("__init__.py")):
        assert file is not None
        # Scripts: loaded from their file under the name they had (a script's
        # ``__main__`` under another name, so its ``if __name__ == "__main__":``
        # block -- which submitted this job -- does not run again).
        name = _MAIN_ALIAS if module == "__main__" else module
        folder = os.path.dirname(file)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise JobError(f"cannot load {file} as a Python module")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        if module == "__main__":
            sys.modules["__main__"] = loaded  # pickles refer to __main__.NAME
        return
    importlib.import_module(module)


def _finish(kernel: Kernel, number: int, **fields: Any) -> None:
    """Record how the job ended, unless it already ended (cancelled while it ran)."""
    run_id = fields.pop("run", None)

    def change(record: dict[str, Any]) -> bool:
        if run_id and not record.get("run"):
            record["run"] = run_id
        if record["status"] == "running":
            record.update(finished=_now(), **fields)
        return True

    # A SIGTERM now must not leave the outcome unrecorded: hold it until it is committed.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _update(kernel, number, change)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _outcome(run: Run) -> dict[str, Any]:
    if run.status == "succeeded":
        ref = run.targets["output"]
        return {"status": "succeeded", "result": run.nodes[ref.node].outputs[ref.output].to_json()}
    failed = run.failed_nodes
    error = failed[0].error if failed and failed[0].error else run.error
    if error is None:
        error = ErrorInfo("RunFailed", f"run {run.id} ended {run.status}")
    if error.traceback:
        print(error.traceback, file=sys.stderr, end="" if error.traceback.endswith("\n") else "\n")
    status = "cancelled" if run.status == "cancelled" else "failed"
    return {"status": status, "error": error.to_json()}


def _interrupted(signum: int, frame: Any) -> None:
    # SIGTERM (cancel) becomes SIGINT: a running kernel.run cancels cleanly and stores
    # its run as cancelled; before or after the run, Python's KeyboardInterrupt ends us.
    signal.raise_signal(signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """The job process: ``python -m aliquot_builtins.operators._jobs STORE ID [-pNAME]...``."""
    import aliquot

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m aliquot_builtins.operators._jobs STORE ID [-pNAME]...")
        return 2
    store, number = args[0], int(args[1])
    plugin_args = [a[2:] for a in args[2:] if a.startswith("-p")]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    observer = _RunStarted(number)
    try:
        kernel = aliquot.Kernel.open(
            store,
            plugins=[observer],
            load=[a for a in plugin_args if not a.startswith("no:")],
            block=[a[3:] for a in plugin_args if a.startswith("no:")],
        )
    except BaseException:
        traceback.print_exc()  # the record is judged failed once this process is gone
        return 1
    try:
        return _run_job(kernel, number, observer)
    finally:
        kernel.close()


def _run_job(kernel: Kernel, number: int, observer: _RunStarted) -> int:
    from aliquot import RunInterrupted

    state: dict[str, Any] = {}

    def begin(record: dict[str, Any]) -> bool:
        state["status"] = record["status"]
        if record["status"] != "pending":
            return False
        record.update(
            status="running",
            started=_now(),
            pid=os.getpid(),
            pid_start=process_start(os.getpid()),
        )
        return True

    try:
        record = _update(kernel, number, begin)
    except JobNotFoundError as exc:
        print(f"aliquot job: {exc}", file=sys.stderr)
        return 1
    if state["status"] != "pending":
        print(f"job {number} is {state['status']}; not starting it", file=sys.stderr)
        return 0
    try:
        observer.kernel = kernel
        _import_origin(record)
        op = kernel.values.load(ArtifactRef.from_json(record["operator"]))
        inputs = kernel.values.load(ArtifactRef.from_json(record["inputs"]))
        op.remote_init()  # the tree prepares itself where it runs (nbox's __remote_init__)
        run = kernel.run(op, inputs=inputs, executor=EXECUTOR)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        interrupted = ErrorInfo(
            "JobInterrupted", "the job process was interrupted (SIGTERM or SIGINT)"
        )
        run_id = exc.run.id if isinstance(exc, RunInterrupted) else None
        _finish(kernel, number, status="cancelled", run=run_id, error=interrupted.to_json())
        return 1
    except BaseException as exc:
        traceback.print_exc()
        _finish(kernel, number, status="failed", error=ErrorInfo.from_exception(exc).to_json())
        return 1
    outcome = _outcome(run)
    _finish(kernel, number, run=run.id, **outcome)
    return 0 if outcome["status"] == "succeeded" else 1


if __name__ == "__main__":
    # Run as a script, this file is ``__main__``: hand over to the imported module, so
    # its classes and functions are the ones every other import sees.
    from aliquot_builtins.operators import _jobs

    code = _jobs.main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A cancelled run may leave its abandoned worker thread behind: do not wait for it.
    os._exit(code)
