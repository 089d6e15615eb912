"""Components in the store: records, versions, blob references, users; apply/load/remove/show.

Spaces (see ``spec/components.md``):

- ``components``: ``Type \\0 identifier \\0 version(4, big-endian)`` -> record
  (JSON: the document without ``builds``, version, created/updated times,
  blob digests, child keys).
- ``component_uuids``: ``uuid`` -> ``Type \\0 identifier \\0 version``.
- ``component_blobs``: ``digest(32) + Type \\0 identifier \\0 version`` -> ``b""``:
  which stored component references which blob (reference counts).
- ``component_users``: ``child Type \\0 identifier \\0`` + ``parent key`` ->
  ``b""``: which stored component uses which.

Every change of one ``apply`` or ``remove`` is staged and committed at once,
so a crash leaves either the old state or the new one. Changes are serialized
across processes by a lock file (``STORE/components.lock``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from aliquot import AliquotError

from ._component import Component, ComponentError
from ._encoding import (
    Decoder,
    blobs_of,
    children_of,
    encode_tree,
    import_class,
    load_blob,
)

RECORDS: Final = "components"
UUIDS: Final = "component_uuids"
BLOBS: Final = "component_blobs"
USERS: Final = "component_users"

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


class ComponentNotFoundError(ComponentError):
    """No stored component matches."""


class ComponentInUseError(ComponentError):
    """A component cannot be removed: other stored components use it."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _prefix(type_name: str, identifier: str) -> bytes:
    return type_name.encode() + b"\0" + identifier.encode() + b"\0"


def record_key(type_name: str, identifier: str, version: int) -> bytes:
    return _prefix(type_name, identifier) + version.to_bytes(4, "big")


def split_key(key: bytes) -> tuple[str, str, int]:
    type_name, identifier, rest = key.split(b"\0", 2)
    return type_name.decode(), identifier.decode(), int.from_bytes(rest, "big")


@contextlib.contextmanager
def locked(kernel: Any) -> Iterator[None]:
    """Serialize changes to components: a thread lock, and a file lock for a store on disk."""
    location = str(kernel.location)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(location, threading.RLock())
    with lock:
        if "://" in location and not location.startswith("lmdb://"):
            yield
            return
        root = Path(location.removeprefix("lmdb://")).expanduser()
        fd = os.open(root / "components.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _writable(kernel: Any, what: str) -> None:
    if getattr(kernel, "readonly", False):
        raise ComponentError(f"{what} needs a writable store; {kernel.location} is read-only")


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def read_record(kernel: Any, key: bytes) -> dict[str, Any] | None:
    raw = kernel.store.get(RECORDS, key)
    if raw is None:
        return None
    record: dict[str, Any] = orjson.loads(raw)
    return record


def versions(kernel: Any, type_name: str, identifier: str) -> list[int]:
    return [split_key(k)[2] for k, _ in kernel.store.scan(RECORDS, _prefix(type_name, identifier))]


def latest(kernel: Any, type_name: str, identifier: str) -> dict[str, Any] | None:
    for _key, raw in kernel.store.scan(RECORDS, _prefix(type_name, identifier), reverse=True):
        record: dict[str, Any] = orjson.loads(raw)
        return record
    return None


def find(
    kernel: Any,
    type_name: str,
    identifier: str | None = None,
    *,
    version: int | None = None,
    uuid: str | None = None,
) -> dict[str, Any]:
    """The stored record asked for (latest version by default)."""
    if uuid is not None:
        key = kernel.store.get(UUIDS, uuid.encode())
        record = read_record(kernel, key) if key is not None else None
        if record is None or (type_name and record["document"]["type"] != type_name):
            raise ComponentNotFoundError(f"no stored component {type_name or ''} with uuid {uuid}")
        return record
    if identifier is None:
        raise ComponentError("name the component: an identifier or uuid=")
    if version is None:
        record = latest(kernel, type_name, identifier)
    else:
        if not isinstance(version, int) or version < 0:
            raise ComponentError(f"version must be a non-negative int, not {version!r}")
        record = read_record(kernel, record_key(type_name, identifier, version))
    if record is None:
        stored = versions(kernel, type_name, identifier)
        if stored:
            detail = f" (stored versions: {', '.join(map(str, stored))})"
        else:
            idents = show(kernel, type_name)
            shown = ", ".join(idents[:20]) + (", ..." if len(idents) > 20 else "")
            detail = (
                f" (stored {type_name} identifiers: {shown})"
                if idents
                else f" (no {type_name} is stored; see `aliquot components ls`)"
            )
        which = f" version {version}" if version is not None else ""
        raise ComponentNotFoundError(
            f"no stored component {type_name}:{identifier}{which} in {kernel.location}{detail}"
        )
    return record


def require_stored(kernel: Any, component: Component) -> tuple[int, str]:
    """(version, huuid) of a component that is stored as it is now; else an error."""
    type_name = type(component).type_name()
    record = latest(kernel, type_name, component.identifier)
    stored_uuid = component.__dict__.get("_stored_uuid")
    if record is None or stored_uuid is None:
        raise ComponentError(
            f"{type_name}:{component.identifier} is not stored in {kernel.location}: "
            "kernel.apply() it first"
        )
    uuid = record["document"]["uuid"]
    if stored_uuid != uuid:
        raise ComponentError(
            f"{type_name}:{component.identifier}: this object is version "
            f"{component.version}, but the store's latest is version "
            f"{record['version']}; kernel.load() it again"
        )
    return int(record["version"]), f"{type_name}:{component.identifier}:{uuid}"


class _Loader:
    """Loads stored components; children once each, by uuid."""

    def __init__(self, kernel: Any, classes: Mapping[str, type[Component]]) -> None:
        self.kernel = kernel
        self.built: dict[str, Component] = {}
        self.decoder = Decoder(kernel, self._blob, self._child, classes)

    def _blob(self, ref: dict[str, Any]) -> Any:
        return load_blob(self.kernel, ref, self.kernel.store.get_value(ref["digest"]))

    def _child(self, huuid: str) -> Component:
        if huuid not in self.built:
            uuid = huuid.rpartition(":")[2]
            self.built[huuid] = self.load(find(self.kernel, "", uuid=uuid))
        return self.built[huuid]

    def load(self, record: Mapping[str, Any], cls: type[Component] | None = None) -> Component:
        doc = record["document"]
        if cls is None and doc["type"] not in self.decoder.classes:
            cls = _class_of(record)
        obj = self.decoder.component(doc, cls)
        obj.__dict__["_version"] = int(record["version"])
        return obj


def _class_of(record: Mapping[str, Any]) -> type[Component]:
    """Import a stored component's class; a script's class is loaded from its file."""
    doc = record["document"]
    try:
        return import_class(doc["class"], doc["type"])
    except ComponentError:
        source = record.get("file")
        if not source or not Path(source).is_file():
            raise
    from aliquot import load_target

    load_target(source)
    return import_class(doc["class"], doc["type"])


def _source_file(cls: type) -> str | None:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return str(Path(path).absolute()) if path else None


def load(
    kernel: Any,
    component: type[Component] | str,
    identifier: str | None = None,
    *,
    version: int | None = None,
    uuid: str | None = None,
) -> Component:
    """``kernel.load(Notifier, "n1")`` / ``kernel.load("Notifier", "n1", version=0)``."""
    if isinstance(component, type) and issubclass(component, Component):
        cls: type[Component] | None = component
        type_name = component.type_name()
    elif isinstance(component, str):
        cls, type_name = None, component
    else:
        raise ComponentError(
            f"kernel.load takes a Component class or a type name, not {component!r}"
        )
    record = find(kernel, type_name, identifier, version=version, uuid=uuid)
    classes = {cls.type_name(): cls} if cls is not None else {}
    return _Loader(kernel, classes).load(record, cls)


def show(
    kernel: Any,
    component: type[Component] | str | None = None,
    identifier: str | None = None,
    version: int | None = None,
) -> Any:
    """Types; identifiers of a type; versions of a component; or one version's record."""
    if component is None:
        types: dict[str, None] = {}
        for key, _ in kernel.store.scan(RECORDS):
            types[split_key(key)[0]] = None
        return sorted(types)
    type_name = component.type_name() if isinstance(component, type) else str(component)
    if identifier is None:
        idents: dict[str, None] = {}
        for key, _ in kernel.store.scan(RECORDS, type_name.encode() + b"\0"):
            idents[split_key(key)[1]] = None
        return sorted(idents)
    if version is None:
        found = versions(kernel, type_name, identifier)
        if not found:
            find(kernel, type_name, identifier)  # raises, naming what exists
        return found
    return describe(kernel, find(kernel, type_name, identifier, version=version))


def describe(kernel: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as ``show`` / ``components show`` present it (with its users)."""
    doc = record["document"]
    users = [
        "{}:{} v{}".format(*split_key(key[len(_prefix(doc["type"], doc["identifier"])) :]))
        for key, _ in kernel.store.scan(USERS, _prefix(doc["type"], doc["identifier"]))
    ]
    return {
        "type": doc["type"],
        "identifier": doc["identifier"],
        "version": record["version"],
        "uuid": doc["uuid"],
        "huuid": f"{doc['type']}:{doc['identifier']}:{doc['uuid']}",
        "class": doc["class"],
        "hash": doc["hash"],
        "created": record["created"],
        "updated": record["updated"],
        "fields": doc["fields"],
        "children": record["children"],
        "blobs": record["blobs"],
        "users": users,
    }


def list_all(kernel: Any) -> list[dict[str, Any]]:
    """Every stored component (latest version first per name), for ``components ls``."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for key, raw in kernel.store.scan(RECORDS):
        type_name, identifier, version = split_key(key)
        record = orjson.loads(raw)
        row = rows.setdefault(
            (type_name, identifier),
            {"type": type_name, "identifier": identifier, "versions": []},
        )
        row["versions"].append(version)
        row.update(
            latest=version,
            uuid=record["document"]["uuid"],
            updated=record["updated"],
            **{"class": record["document"]["class"]},
        )
    return [rows[k] for k in sorted(rows)]


# ---------------------------------------------------------------------------
# Apply
# ---------------------------------------------------------------------------


@attrs.frozen
class AppliedComponent:
    """What ``apply`` did to one component of the tree."""

    type: str
    identifier: str
    version: int
    uuid: str
    #: new, same, update or breaking
    action: str
    #: fields that differ from the stored version (update and breaking)
    changed: tuple[str, ...] = ()

    @property
    def huuid(self) -> str:
        return f"{self.type}:{self.identifier}:{self.uuid}"


@attrs.frozen
class Applied:
    """The result of ``kernel.apply``: per component what happened, and the jobs that ran."""

    components: tuple[AppliedComponent, ...]
    jobs: tuple[dict[str, Any], ...] = ()
    run: str | None = None

    @property
    def component(self) -> AppliedComponent:
        """The applied (top-level) component."""
        return self.components[-1]

    @property
    def action(self) -> str:
        return self.component.action

    @property
    def version(self) -> int:
        return self.component.version

    @property
    def ok(self) -> bool:
        return not any(j["status"] == "failed" for j in self.jobs)

    def to_json(self) -> dict[str, Any]:
        return {
            "components": [
                {**attrs.asdict(c), "changed": list(c.changed), "huuid": c.huuid}
                for c in self.components
            ],
            "jobs": list(self.jobs),
            "run": self.run,
        }


def _changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, ...]:
    from ._encoding import canonical

    if old is None:
        return ()
    names = dict.fromkeys([*old, *new])
    return tuple(n for n in names if canonical(old.get(n)) != canonical(new.get(n)))


class _Ops:
    """Writes planned for one apply or remove, staged only once all of them are known.

    Reads see the planned writes. Nothing reaches the store before :meth:`stage`,
    which cannot fail half-way (it only stages), so an exception while planning
    leaves nothing behind for a later commit to make durable.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._ops: dict[tuple[str, bytes], bytes | None] = {}

    def get(self, space: str, key: bytes) -> bytes | None:
        if (space, key) in self._ops:
            return self._ops[(space, key)]
        value: bytes | None = self.store.get(space, key)
        return value

    def put(self, space: str, key: bytes, value: bytes) -> None:
        self._ops[(space, key)] = value

    def delete(self, space: str, key: bytes) -> None:
        self._ops[(space, key)] = None

    def deleted(self, space: str, key: bytes) -> bool:
        return (space, key) in self._ops and self._ops[(space, key)] is None

    def stage(self) -> None:
        for (space, key), value in self._ops.items():
            if value is None:
                self.store.delete(space, key)
            else:
                self.store.put(space, key, value)


def _stage_record(
    ops: _Ops,
    obj: Component,
    doc: Mapping[str, Any],
    version: int,
    created: str,
    child_keys: Sequence[bytes],
    old: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Plan one component version's record and its index entries."""
    store = ops
    type_name, identifier = doc["type"], doc["identifier"]
    key = record_key(type_name, identifier, version)
    if old is not None:  # an update replaces this version: drop its old index entries
        _unstage_indexes(ops, old, repoint=False)
    blobs = [ref["digest"] for ref in blobs_of(doc)]
    record = {
        "document": {k: v for k, v in doc.items() if k != "builds"},
        "version": version,
        "created": created,
        "updated": _now(),
        "blobs": blobs,
        "children": ["{}:{} v{}".format(*split_key(k)) for k in child_keys],
        "file": _source_file(type(obj)),
        "_children": [k.hex() for k in child_keys],
    }
    store.put(RECORDS, key, orjson.dumps(record))
    store.put(UUIDS, doc["uuid"].encode(), key)
    for digest in blobs:
        store.put(BLOBS, bytes.fromhex(digest) + key, b"")
    for child in child_keys:
        child_type, child_id, _v = split_key(child)
        store.put(USERS, _prefix(child_type, child_id) + key, b"")
    return record


def _unstage_indexes(ops: _Ops, record: Mapping[str, Any], *, repoint: bool = True) -> None:
    """Plan the removal of a version's index entries.

    The uuid entry of a removed version moves to the newest remaining version
    with the same uuid (re-applying old content makes a new version with the
    old uuid), so that version stays reachable by uuid.
    """
    doc = record["document"]
    key = record_key(doc["type"], doc["identifier"], int(record["version"]))
    for digest in record["blobs"]:
        ops.delete(BLOBS, bytes.fromhex(digest) + key)
    for child_hex in record.get("_children", ()):
        child_type, child_id, _v = split_key(bytes.fromhex(child_hex))
        ops.delete(USERS, _prefix(child_type, child_id) + key)
    uuid = doc["uuid"].encode()
    if ops.get(UUIDS, uuid) != key:
        return
    ops.delete(UUIDS, uuid)
    if not repoint:
        return
    prefix = _prefix(doc["type"], doc["identifier"])
    for other, raw in ops.store.scan(RECORDS, prefix, reverse=True):
        if other == key or ops.deleted(RECORDS, other):
            continue
        if orjson.loads(raw)["document"]["uuid"] == doc["uuid"]:
            ops.put(UUIDS, uuid, other)
            return


def apply(
    kernel: Any,
    component: Component,
    *,
    jobs: bool = True,
    executor: str | None = None,
) -> Applied:
    """``kernel.apply(component)``: store it (and its children) and run its ``apply`` triggers.

    Each component of the tree is classified against its stored latest
    version: *new* (version 0), *same* (nothing happens), *update* (same
    version; only triggers whose ``requires`` fields changed re-run) or
    *breaking* (version + 1). Everything is committed at once; then
    ``on_create`` runs for each new version (children first), then the jobs.

    Raises:
        JobsFailed: a job failed (the components stay stored; ``.jobs`` has
            every job record).
    """
    if not isinstance(component, Component):
        raise ComponentError(f"kernel.apply takes a Component, not {type(component).__name__}")
    _writable(kernel, "apply")
    if jobs:
        from ..triggers import require_sync

        require_sync("apply")
    tree, blobs = encode_tree(component, kernel)
    if (
        jobs
        and "trigger" not in kernel.task_types
        and any(type(obj).triggers for obj, _doc in tree)
    ):
        from aliquot import PluginNotActiveError

        raise PluginNotActiveError(
            f"{type(component).type_name()} has triggers, and the 'triggers' plugin that "
            "runs them is not active (unblock it, or apply with jobs=False)"
        )
    results: list[AppliedComponent] = []
    created: list[Component] = []
    with locked(kernel):
        store = kernel.store
        ops = _Ops(store)
        keys: dict[str, bytes] = {}  # huuid -> record key of the version it resolves to
        needed: dict[str, None] = {}  # blob digests the new records reference
        for obj, doc in tree:
            type_name, identifier = doc["type"], doc["identifier"]
            current = latest(kernel, type_name, identifier)  # committed: one per tree
            old_doc = current["document"] if current is not None else None
            changed = _changed(old_doc["fields"] if old_doc else None, doc["fields"])
            if current is None:
                action, version = "new", 0
            elif old_doc is not None and old_doc["hash"] == doc["hash"]:
                action, version = "same", int(current["version"])
            elif old_doc is not None and old_doc["uuid"] == doc["uuid"]:
                action, version = "update", int(current["version"])
            else:
                action, version = "breaking", int(current["version"]) + 1
            huuid = f"{type_name}:{identifier}:{doc['uuid']}"
            keys[huuid] = record_key(type_name, identifier, version)
            if action != "same":
                child_keys = [keys[c] for c in children_of(doc)]
                needed.update(dict.fromkeys(ref["digest"] for ref in blobs_of(doc)))
                _stage_record(
                    ops,
                    obj,
                    doc,
                    version,
                    current["created"] if action == "update" and current else _now(),
                    child_keys,
                    current if action == "update" else None,
                )
            results.append(
                AppliedComponent(type_name, identifier, version, doc["uuid"], action, changed)
            )
        # Blobs first: if writing one fails, only unreferenced values are staged (gc
        # removes them); the records are staged after every blob is in.
        for digest in needed:
            if not store.has_value(digest):
                store.put_value(blobs[digest])
        ops.stage()
        store.commit()
    for (obj, doc), result in zip(tree, results, strict=True):
        obj.__dict__["_version"] = result.version
        obj.__dict__["_stored_uuid"] = doc["uuid"]
        if result.action in ("new", "breaking"):
            created.append(obj)
    for obj in created:
        try:
            obj.on_create()
        except Exception as exc:
            raise ComponentError(
                f"{type(obj).type_name()}:{obj.identifier} was saved (version "
                f"{obj.version}), but its on_create failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    applied = Applied(tuple(results))
    if not jobs:
        return applied
    return _run_apply_jobs(kernel, tree, results, applied, executor)


def _run_apply_jobs(
    kernel: Any,
    tree: Sequence[tuple[Component, dict[str, Any]]],
    results: Sequence[AppliedComponent],
    applied: Applied,
    executor: str | None,
) -> Applied:
    from ..triggers import JobsFailed, Unit, run_batch, select

    units = []
    in_batch: set[str] = set()
    # huuid -> every component below it (children, their children...), children first
    below: dict[str, list[str]] = {}
    for (_obj, doc), result in zip(tree, results, strict=True):
        found: dict[str, None] = {}
        for child in children_of(doc):
            found.update(dict.fromkeys(below.get(child, ())))
            found[child] = None
        below[result.huuid] = list(found)
    for (obj, _doc), result in zip(tree, results, strict=True):
        if result.action == "same" or not type(obj).triggers:
            continue
        changed = result.changed if result.action == "update" else None
        run, skipped = select(obj, "apply", changed)
        if not run and not skipped:
            continue
        after = [c for c in below[result.huuid] if c in in_batch]
        units.append(Unit(obj, result.huuid, result.version, run, skipped, after))
        in_batch.add(result.huuid)
    if not units:
        return applied
    try:
        records, run_id = run_batch(kernel, units, "apply", executor=executor)
    except JobsFailed as exc:
        exc.result = attrs.evolve(applied, jobs=tuple(exc.jobs), run=exc.run)
        raise
    return attrs.evolve(applied, jobs=tuple(records), run=run_id)


# ---------------------------------------------------------------------------
# Remove
# ---------------------------------------------------------------------------


def remove(
    kernel: Any,
    component: Component | type[Component] | str,
    identifier: str | None = None,
    *,
    version: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """``kernel.remove(component)``: call ``cleanup``, delete the records and unused blobs.

    Without ``version`` every version is removed. Refused while another
    stored component uses it (naming the users) unless ``force=True``;
    ``force`` also removes it when ``cleanup`` fails (the error is reported).
    Blobs no other component references are deleted when nothing else in the
    store (a run, a cache entry) holds them and no other process has the store
    open; otherwise ``aliquot store gc --values`` frees them later.
    """
    _writable(kernel, "remove")
    given: Component | None = None
    if isinstance(component, Component):
        given = component
        type_name, identifier = type(component).type_name(), component.identifier
        cls: type[Component] | None = type(component)
    elif isinstance(component, type) and issubclass(component, Component):
        type_name, cls = component.type_name(), component
    elif isinstance(component, str):
        type_name, cls = component, None
    else:
        raise ComponentError(f"kernel.remove takes a component or its type, not {component!r}")
    if identifier is None:
        raise ComponentError("kernel.remove: name the identifier")
    report: dict[str, Any] = {
        "type": type_name,
        "identifier": identifier,
        "removed": [],
        "cleanup_errors": [],
        "blobs_deleted": 0,
        "blobs_kept": [],
    }
    with locked(kernel):
        targets = [version] if version is not None else versions(kernel, type_name, identifier)
        records = [find(kernel, type_name, identifier, version=v) for v in targets]
        if not records:
            find(kernel, type_name, identifier)  # raises: not found
        removing = {record_key(type_name, identifier, int(r["version"])) for r in records}
        users = []
        for key, _ in kernel.store.scan(USERS, _prefix(type_name, identifier)):
            parent = key[len(_prefix(type_name, identifier)) :]
            if parent in removing:
                continue
            parent_record = read_record(kernel, parent)
            if parent_record is None:
                continue
            uses = set(parent_record.get("_children", ()))
            if any(k.hex() in uses for k in removing):
                users.append("{}:{} v{}".format(*split_key(parent)))
        if users and not force:
            raise ComponentInUseError(
                f"{type_name}:{identifier} is used by {', '.join(users)}; remove "
                f"{'them' if len(users) > 1 else 'it'} first, or pass force=True"
            )
        report["users"] = users
        for record in sorted(records, key=lambda r: -int(r["version"])):
            _cleanup(kernel, record, cls, given, force, report)
        candidates: set[str] = set()
        ops = _Ops(kernel.store)
        for record in records:
            doc = record["document"]
            ops.delete(RECORDS, record_key(doc["type"], doc["identifier"], int(record["version"])))
        for record in records:
            _unstage_indexes(ops, record)
            candidates.update(record["blobs"])
            report["removed"].append(int(record["version"]))
        unused = {d for d in candidates if not _referenced(ops, d)}
        ops.stage()
        kernel.store.commit()
    if given is not None:
        given.__dict__["_stored_uuid"] = None
    _delete_blobs(kernel, unused, report)
    return report


def _cleanup(
    kernel: Any,
    record: Mapping[str, Any],
    cls: type[Component] | None,
    given: Component | None,
    force: bool,
    report: dict[str, Any],
) -> None:
    doc = record["document"]
    where = f"{doc['type']}:{doc['identifier']} v{record['version']}"
    try:
        if given is not None and given.__dict__.get("_stored_uuid") == doc["uuid"]:
            obj = given
        else:
            classes = {cls.type_name(): cls} if cls is not None else {}
            obj = _Loader(kernel, classes).load(record, cls)
        obj.cleanup()
    except Exception as exc:
        message = f"{where}: cleanup failed: {type(exc).__name__}: {exc}"
        if not force:
            raise ComponentError(
                f"{message}; nothing was removed (pass force=True to remove it anyway)"
            ) from exc
        report["cleanup_errors"].append(message)


def _referenced(ops: _Ops, digest: str) -> bool:
    """Whether a component version (other than those being removed) references the blob."""
    for key, _ in ops.store.scan(BLOBS, bytes.fromhex(digest)):
        if not ops.deleted(BLOBS, key):
            return True
    return False


def _delete_blobs(kernel: Any, unused: set[str], report: dict[str, Any]) -> None:
    if not unused:
        return
    live = kernel.live_values()
    doomed = {d for d in unused if d not in live}
    report["blobs_kept"] = sorted(unused - doomed)
    if not doomed:
        return
    try:
        result = kernel.store.gc(live_values=None, candidates=doomed)
    except TypeError:  # a store without scoped gc: the next `store gc --values` frees them
        report["blobs_kept"] = sorted(unused)
        report["note"] = "this store cannot delete single values; run `aliquot store gc --values`"
        return
    except AliquotError as exc:
        report["blobs_kept"] = sorted(unused)
        report["note"] = f"blobs not deleted: {exc}"
        return
    report["blobs_deleted"] = int(result.get("values_removed", 0))
    if result.get("skipped"):
        report["blobs_kept"] = sorted(unused)
        report["note"] = "; ".join(result["skipped"]) + " (`aliquot store gc --values` frees them)"


def blob_roots(kernel: Any) -> Iterator[str]:
    """Value root ``components``: every blob a stored component references."""
    for key, _ in kernel.store.scan(BLOBS):
        yield key[:32].hex()
