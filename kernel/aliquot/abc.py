"""The protocols plugins implement.

A plugin registers objects through the ``aliquot_register_*`` hooks (see
:mod:`aliquot.hookspecs`); this module says what those objects must look like.
They are :class:`typing.Protocol` classes, so a plugin needs no base class: any
object with the right attributes and methods qualifies, and the kernel checks
the shape when it is registered.

=============  =====================================  ===========================================
kind           registered as                          builtins
=============  =====================================  ===========================================
store          a class: ``name`` + ``open(location)``  ``store_lmdb`` (``lmdb``), ``store_memory``
serializer     an instance                            ``serializer_json``, ``_bytes``, ``_pickle``,
                                                      ``_numpy``, ``artifacts`` (a family)
executor       a class: ``name`` + ``__init__(workers,  ``executor_inline``, ``_threads``,
               **options)``                           ``_processes``
task type      an instance                            ``function``, ``stages``, ``aggregate``,
                                                      ``tasks``, ``taskgraph``, ``operators``
middleware     an instance                            ``cache``
=============  =====================================  ===========================================

Sync or async is part of each contract: a store's methods are synchronous
(they are fast or they fsync -- the kernel moves slow calls to a worker
thread), an executor's ``submit`` and a middleware are ``async`` (the kernel
awaits them inside its nurseries), and everything else is synchronous.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ._context import Handler, NodeContext
from ._graph import Graph, Node
from ._outcome import Outcome
from ._planner import Plan
from ._tasks import Call
from ._values import SerializerContext

if TYPE_CHECKING:
    from typing import Self

#: Anything that exposes the buffer protocol: bytes, bytearray, memoryview, arrays.
Buffer = bytes | bytearray | memoryview

__all__ = [
    "Buffer",
    "Executor",
    "ExecutorFactory",
    "Handler",
    "Middleware",
    "NodeContext",
    "PlanRequest",
    "Serializer",
    "Store",
    "StoreFactory",
    "TaskType",
]


@runtime_checkable
class Store(Protocol):
    """Durable keys and values, plus content-addressed values.

    **Spaces.** Keys live in named *spaces* (``runs``, ``nodes``, ``cache``...;
    names are ``[a-z0-9_]{1,40}``); keys are bytes of 1-400 bytes (hash longer
    user strings first). Values are bytes.

    **Staging and commit.** ``put``/``delete``/``put_value`` are *staged*: they
    are visible to this handle's reads at once and become durable, all
    together, at the next :meth:`commit` -- one commit point, so a crash leaves
    either all of a commit or none of it. The kernel commits in groups (at
    least once a second during a run, and at its end), so durability does not
    cost an fsync per node.

    **Content-addressed values.** :meth:`put_value` stores bytes under their
    SHA-256 and returns ``(digest_hex, size)``; the same bytes are stored once.
    :meth:`get_value` returns the bytes only if they pass their checksum;
    damaged or missing data is a miss (``None``) and is quarantined -- never a
    wrong value and never an exception.

    **Processes.** A handle must not be used from a process forked after it
    was opened (:class:`~aliquot.StoreForkedError`).

    The conformance kit :func:`aliquot.testing.check_store` checks all of this.
    """

    #: Where the store lives, as given to ``open`` (a path or ``memory://``).
    location: str
    #: A stable random id created with the store (used to find its secret keys).
    store_id: str

    def get(self, space: str, key: bytes) -> bytes | None:
        """The value under ``key``, including staged writes, or None."""
        ...

    def put(self, space: str, key: bytes, value: bytes) -> None:
        """Stage a write (durable at the next :meth:`commit`)."""
        ...

    def delete(self, space: str, key: bytes) -> None:
        """Stage a delete (a missing key is not an error)."""
        ...

    def scan(
        self, space: str, prefix: bytes = b"", *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Iterate ``(key, value)`` pairs whose key starts with ``prefix``, in key order."""
        ...

    def put_value(self, data: Buffer | Sequence[Buffer]) -> tuple[str, int]:
        """Store bytes content-addressed (a sequence is concatenated); return (sha256 hex, size)."""
        ...

    def get_value(self, digest: str) -> bytes | memoryview | None:
        """The bytes stored under ``digest``, verified, or None (missing or damaged)."""
        ...

    def has_value(self, digest: str) -> bool:
        """Whether a value with this digest is indexed (not verified)."""
        ...

    def next_sequence(self, name: str) -> int:
        """Atomically increment and return a durable counter (1, 2, 3...)."""
        ...

    def commit(self) -> None:
        """Make every staged write durable, atomically. Blocking (it may fsync)."""
        ...

    @property
    def pending(self) -> int:
        """How many writes are staged and not yet committed."""
        ...

    def verify(self) -> dict[str, Any]:
        """Check structure and every checksum; returns ``{"ok": bool, "problems": [...]...}``."""
        ...

    def gc(
        self, live_values: set[str] | None = None, *, candidates: set[str] | None = None
    ) -> dict[str, Any]:
        """Remove debris (orphan temp and blob files, quarantined entries), and values
        not in ``live_values`` when it is given. With ``candidates``, remove only
        those values (those in ``live_values`` excepted) and nothing else. Returns
        what was removed, and under ``skipped`` what it had to leave."""
        ...

    def stats(self) -> dict[str, Any]:
        """Sizes and counts, for ``aliquot store stats``."""
        ...

    def close(self) -> None:
        """Commit what is staged and release the store. Idempotent."""
        ...


@runtime_checkable
class StoreFactory(Protocol):
    """What ``aliquot_register_stores`` registers: usually the store class itself.

    ``name`` is the URL scheme it serves (``memory`` for ``memory://``); a plain
    path goes to the store named ``lmdb``.
    """

    name: ClassVar[str]

    def open(self, location: str, **options: Any) -> Store:
        """Open (creating if needed) the store at ``location``."""
        ...


@runtime_checkable
class Serializer(Protocol):
    """Turns values of some types into bytes and back.

    Attributes:
        name: what users and ``cachers=[...]`` call it (``json``, ``pickle``).
        version: part of every stored reference and of cache keys; bump it when
            the byte format changes.
        types: types taken by exact match or MRO (``(dict, list, ...)``).
        priority: order within a dispatch tier, lower first (JSON 10, pickle 1000).

    A serializer may also define ``accepts(value) -> bool`` to take values by
    predicate (tried after every type match), and ``specialize(argument) ->
    Serializer`` to stand for a family: the name ``family:argument`` (asked for
    by a task output or found in a stored reference) is built by the registered
    ``family`` serializer, must carry exactly that name, and is kept once built
    (the ``artifact`` serializer makes one per artifact task and arguments).
    ``dumps`` may return one buffer or a sequence of buffers (stored
    concatenated, never copied together);
    ``loads`` receives a memoryview that may be backed by a memory map.
    """

    name: str
    version: str
    types: tuple[type, ...]
    priority: int

    def dumps(self, value: Any, ctx: SerializerContext) -> Buffer | Sequence[Buffer]:
        """Encode ``value``; raise (any exception) to refuse it."""
        ...

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        """Decode bytes produced by :meth:`dumps` (this or an earlier version)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs bound calls and returns their results.

    An executor is an async context manager, entered once per run. ``capacity``
    is how many calls the scheduler may have in flight with it at once (an
    executor that batches asks for more than it has workers). ``submit``
    returns the call's result or raises the call's exception; the kernel turns
    that into the node's outcome. Cancelling ``submit`` must not leave work
    that writes anywhere: executors return values, and only the kernel writes
    the store. ``submit`` may return :class:`aliquot.Executed` (the value plus
    where it ran, e.g. a remote worker's address): the kernel records that
    ``info`` with the node (``info["executor"]``).
    """

    name: ClassVar[str]
    capacity: int

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def submit(self, call: Call) -> Any:
        """Run ``call`` and return its result (or raise its exception)."""
        ...


@runtime_checkable
class ExecutorFactory(Protocol):
    """What ``aliquot_register_executors`` registers: usually the executor class.

    Called as ``factory(workers=N, **options)``; ``workers=None`` means the
    executor's default (``--executor threads:8`` passes 8). A factory may also
    define ``from_run_options(options) -> Mapping``: executor options taken from
    the run's options (its plugin's ``aliquot run`` options, e.g.
    ``--dask-address``); ``executor_options`` given explicitly win.
    """

    name: ClassVar[str]

    def __call__(self, workers: int | None = None, **options: Any) -> Executor: ...


class PlanRequest:
    """What ``TaskType.plan`` receives besides the target: the run's inputs and
    options, and the kernel planning it (for plugins that keep definitions in
    its store, such as task plugins)."""

    def __init__(
        self, inputs: Mapping[str, Any], options: Mapping[str, Any], kernel: Any = None
    ) -> None:
        self.inputs = dict(inputs)
        self.options = dict(options)
        self.kernel = kernel


@runtime_checkable
class TaskType(Protocol):
    """A kind of task (``function``, ``stage``, ``operator``...).

    It turns decorated objects into :class:`~aliquot.TaskSpec` values (its
    decorator does that), binds a node's resolved parameters into a
    :class:`~aliquot.Call`, and unpacks a return value into named outputs.

    It may also define ``plan(target, request) -> Graph | None`` to build
    graphs from runnable objects it knows (an experiment, an operator, a
    task-graph document). The kernel asks every task type in turn; the first
    graph wins.

    And it may define ``facts(node, result) -> Mapping[str, Any]``: what the
    call taught it besides the outputs (the ``stage`` type reports which
    parameters the stage read). The kernel puts them in the outcome's ``info``,
    where middleware (the cache) reads them; they must be JSON-serializable.
    """

    name: str

    def bind(self, node: Node, values: Mapping[str, Any]) -> Call:
        """Build the call for ``node`` from its resolved parameter values."""
        ...

    def unpack(self, node: Node, result: Any) -> Mapping[str, Any]:
        """Map the call's return value onto the node's named outputs."""
        ...


class TaskTypeWithPlan(TaskType, Protocol):
    """A task type that also builds graphs from runnable objects."""

    def plan(self, target: object, request: PlanRequest) -> Graph | None: ...


@runtime_checkable
class Middleware(Protocol):
    """Behaviour around every node: caching, retries, timeouts, tracing.

    ``await middleware(ctx, call_next)`` must return an
    :class:`~aliquot.Outcome`: call ``await call_next(ctx)`` to run the rest of
    the chain (ending in the executor), or return without calling it (a cache
    hit). ``order`` places it: lower numbers run outside higher ones.
    ``handles`` names the task options it implements (``"retries"``,
    ``"timeout"``, ``"cache"``); a task that sets an option nobody handles is
    refused when the run is planned.

    A middleware may also define ``plan(plan, kernel) -> None`` to take part in
    planning: it may ``plan.decide(node_id, "load", reason)`` for nodes it can
    serve without their inputs; the planner then skips what only those nodes
    needed.
    """

    name: str
    order: int
    handles: frozenset[str]

    async def __call__(self, ctx: NodeContext, call_next: Handler) -> Outcome: ...


class MiddlewareWithPlan(Middleware, Protocol):
    def plan(self, plan: Plan, kernel: Any) -> None: ...


# ---------------------------------------------------------------------------
# Helpers for store implementations
# ---------------------------------------------------------------------------

import re as _re  # noqa: E402

from ._errors import StoreError as _StoreError  # noqa: E402

_SPACE = _re.compile(r"^[a-z0-9_]{1,40}$")
#: Longest key a store must accept (LMDB's limit is 511 bytes; leave room for prefixes).
MAX_KEY = 400
#: Space names already checked (a store validates on every call: keep it a set lookup).
_GOOD_SPACES: set[str] = set()


def check_space(space: str) -> None:
    """Raise :class:`~aliquot.StoreError` unless ``space`` is a valid space name."""
    if space in _GOOD_SPACES:
        return
    if not isinstance(space, str) or not _SPACE.match(space):
        raise _StoreError(f"invalid store space {space!r}: use 1-40 of [a-z0-9_]")
    if len(_GOOD_SPACES) < 1024:
        _GOOD_SPACES.add(space)


def check_key(key: bytes) -> None:
    """Raise :class:`~aliquot.StoreError` unless ``key`` is 1..MAX_KEY bytes.

    Keys that come from users must be hashed before they reach a store (see
    :func:`hashed_key`); this check turns a forgotten hash into a clear error
    instead of an LMDB ``BadValsizeError``.
    """
    if type(key) is not bytes and not isinstance(key, bytes):
        raise _StoreError(f"store keys are bytes, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY:
        raise _StoreError(f"store keys must be 1-{MAX_KEY} bytes, got {len(key)}")


def hashed_key(text: str, prefix: bytes = b"") -> bytes:
    """A fixed-size key for a user-supplied string: ``prefix + sha256(text)``."""
    import hashlib

    return prefix + hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def check_digest(digest: str) -> None:
    """Raise :class:`~aliquot.StoreError` unless ``digest`` is 64 lowercase hex characters."""
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise _StoreError(f"invalid value digest {digest!r}")
