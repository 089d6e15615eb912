"""The ``lmdb`` store: the default, embedded in a directory (``.aliquot/``).

Layout (the full contract is ``spec/store.md``)::

    .aliquot/
      index/data.mdb, lock.mdb   LMDB: metadata, indexes and small values
      blobs/ab/abcdef...         large values, named by their SHA-256
      tmp/<pid>-<random>         blobs being written (swept when their process is gone)
      quarantine/                damaged blob files, kept for inspection
      writers.lock               shared flock held by every open handle

Every LMDB value starts with a header: ``b"AQ"``, format version ``1``, and a
kind byte -- ``k`` (a record: u32 length, u32 CRC-32, payload), ``i`` (an
inline content value: u64 length, payload; the key is its SHA-256) or ``x``
(a blob: u64 size, u32 CRC-32 of the file). A read that fails its check is a
miss, the entry is quarantined, and no exception escapes.

Writes are staged in memory and committed together in one LMDB transaction:
one commit point. A large value is written to ``tmp/``, fsynced, renamed into
``blobs/``, and its directory fsynced *before* the index record that points to
it is staged, so a committed index never points to a missing or short file.
LMDB runs with its safe defaults (sync and metasync on, no writemap): a
commit that returned is durable, also across power loss.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import lmdb

from aliquot import StoreError, StoreForkedError, hookimpl
from aliquot.abc import MAX_KEY, Buffer, check_digest, check_key, check_space

FORMAT_VERSION: Final = 1
MAGIC: Final = b"AQ\x01"
_REC = struct.Struct(">II")  # length, crc32
_INL = struct.Struct(">Q")  # length
_EXT = struct.Struct(">QI")  # size, crc32
#: Values at least this large become blob files; smaller ones live in LMDB.
BLOB_THRESHOLD: Final = 1 << 20
INITIAL_MAP_SIZE: Final = 256 << 20
MAX_DBS: Final = 128
META: Final = b"_meta"
VALUES: Final = b"_values"
QUARANTINE: Final = b"_quarantine"

_DELETE: Final = None


def _record_crc(dbname: bytes, key: bytes, payload: bytes) -> int:
    # The CRC covers where the record lives too: a damaged key must not serve a
    # valid-looking record under a key that was never written.
    return zlib.crc32(payload, zlib.crc32(key, zlib.crc32(dbname + b"\0")))


def _record(dbname: bytes, key: bytes, payload: bytes) -> bytes:
    return MAGIC + b"k" + _REC.pack(len(payload), _record_crc(dbname, key, payload)) + payload


def _open_record(dbname: bytes, key: bytes, raw: bytes) -> bytes | None:
    """The payload of a record, or None if its header or CRC is wrong."""
    if len(raw) < 4 + _REC.size or raw[:3] != MAGIC or raw[3:4] != b"k":
        return None
    length, crc = _REC.unpack_from(raw, 4)
    payload = raw[4 + _REC.size :]
    if len(payload) != length or _record_crc(dbname, key, payload) != crc:
        return None
    return payload


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_matches(path: Path, size: int, crc: int) -> bool:
    """Whether ``path`` holds ``size`` bytes with CRC-32 ``crc`` (a missing file does not)."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != size:
                return False
            if size == 0:
                return crc == 0
            with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                return zlib.crc32(mapped) == crc
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _SharedExclusive:
    """A lock many holders share, or one holds alone (value writers versus gc)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _Env:
    def __init__(self, env: Any) -> None:
        self.env = env
        self.handles = 1
        self.pid = os.getpid()
        self.values = _SharedExclusive()


class _SharedEnv:
    """One LMDB environment per directory per process.

    LMDB refuses to open the same environment twice in one process (its
    locks belong to the process), so handles to the same store share one,
    reference-counted. This mirrors a constraint of the operating system; it
    is not a registry that importing anything changes. A forked child does not
    inherit it: the parent's environment must not be used there, so the child
    closes its copy and opens its own.
    """

    lock = threading.Lock()
    envs: ClassVar[dict[tuple[int, int], _Env]] = {}

    @classmethod
    def acquire(cls, path: Path) -> tuple[_Env, tuple[int, int]]:
        st = path.stat()
        key = (st.st_dev, st.st_ino)
        with cls.lock:
            entry = cls.envs.get(key)
            if entry is not None and entry.pid == os.getpid():
                entry.handles += 1
                return entry, key
            if entry is not None:  # inherited from the parent across fork()
                del cls.envs[key]
                with contextlib.suppress(Exception):
                    entry.env.close()
            env = lmdb.open(
                str(path),
                subdir=True,
                map_size=INITIAL_MAP_SIZE,
                max_dbs=MAX_DBS,
                max_readers=2048,
                sync=True,
                metasync=True,
                writemap=False,
                lock=True,
                max_spare_txns=4,
            )
            entry = _Env(env)
            cls.envs[key] = entry
            return entry, key

    @classmethod
    def release(cls, key: tuple[int, int]) -> None:
        with cls.lock:
            entry = cls.envs.get(key)
            if entry is None or entry.pid != os.getpid():
                return
            entry.handles -= 1
            if entry.handles > 0:
                return
            del cls.envs[key]
        entry.env.close()


class LmdbStore:
    """The default store (see the module docstring)."""

    name: ClassVar[str] = "lmdb"

    def __init__(
        self, location: str, *, blob_threshold: int = BLOB_THRESHOLD, readonly: bool = False
    ) -> None:
        raw = location[len("lmdb://") :] if location.startswith("lmdb://") else location
        self.location = location
        self.root = Path(raw).expanduser().absolute()
        self.blob_threshold = blob_threshold
        #: A read-only handle changes nothing on disk: writes raise, damage is not quarantined.
        self.readonly = readonly
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._commit_lock = threading.Lock()
        self._commit_serial = threading.Lock()
        self._staged: dict[tuple[bytes, bytes], bytes | None] = {}
        self._committing: dict[tuple[bytes, bytes], bytes | None] = {}
        self._dbs: dict[bytes, Any] = {}
        self._space_names: dict[str, bytes] = {}  # space -> LMDB database name, once checked
        self._closed = False
        self._lockfile: int | None = None
        self.quarantined = 0
        self._prepare_dirs()
        try:
            self._shared, self._env_key = _SharedEnv.acquire(self.root / "index")
            self._env = self._shared.env
            self._env.reader_check()  # clear slots left by killed readers
            self.store_id = self._init_meta()
            if not readonly:
                self._sweep_tmp()
        except lmdb.Error as exc:
            self._release()
            raise StoreError(f"cannot open the store at {self.root}: {exc}") from exc
        except BaseException:
            self._release()
            raise

    @classmethod
    def open(cls, location: str, **options: Any) -> LmdbStore:
        unknown = sorted(set(options) - {"blob_threshold", "readonly"})
        if unknown:
            raise StoreError(
                f"unknown lmdb store option(s) {unknown} (known: blob_threshold, readonly)"
            )
        return cls(location, **options)

    # ------------------------------------------------------------- opening

    def _prepare_dirs(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a directory")
        if self.readonly:
            if not (self.root / "index" / "data.mdb").exists():
                raise StoreError(f"there is no store at {self.root} to open read-only")
            fd = os.open(self.root / "writers.lock", os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._lockfile = fd
            return
        try:
            created = not (self.root / "blobs").exists()
            for sub in ("index", "blobs", "tmp", "quarantine"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            if created:
                # Every blob directory exists (and is durable) from the start, so no
                # write ever depends on a directory entry that was never fsynced.
                for i in range(256):
                    (self.root / "blobs" / f"{i:02x}").mkdir(exist_ok=True)
                _fsync_dir(self.root / "blobs")
                _fsync_dir(self.root)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc}") from exc
        fd = os.open(self.root / "writers.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._lockfile = fd

    def _init_meta(self) -> str:
        def work(txn: Any) -> str:
            names = {bytes(k) for k, _ in txn.cursor()}  # the main database lists named ones
            foreign = names - {META} and not any(n == VALUES or n.startswith(b"s:") for n in names)
            meta = self._db(META, txn)
            fmt = txn.get(b"format", db=meta)
            if fmt is None and self.readonly:
                raise StoreError(f"{self.root} is not an aliquot store (no format marker)")
            if fmt is None:
                if foreign or any(True for _ in txn.cursor(db=meta)):
                    raise StoreError(f"{self.root} holds an LMDB database aliquot did not create")
                txn.put(b"format", str(FORMAT_VERSION).encode(), db=meta)
                store_id = uuid.uuid4().hex
                txn.put(b"store_id", store_id.encode(), db=meta)
                txn.put(b"created", str(time.time()).encode(), db=meta)
                return store_id
            try:
                version = int(fmt)
            except ValueError:
                raise StoreError(
                    f"the store at {self.root} has an unreadable format marker {bytes(fmt)!r}"
                ) from None
            if version > FORMAT_VERSION:
                raise StoreError(
                    f"the store at {self.root} has format {version}; this aliquot reads format "
                    f"{FORMAT_VERSION}. Upgrade aliquot."
                )
            return bytes(txn.get(b"store_id", db=meta)).decode()

        store_id: str = self._write(work)
        return store_id

    def _sweep_tmp(self) -> None:
        for entry in (self.root / "tmp").iterdir():
            pid_text = entry.name.partition("-")[0]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                with contextlib.suppress(OSError):
                    entry.unlink()

    # ------------------------------------------------------------- internals

    def _check(self) -> None:
        if os.getpid() != self._pid:
            raise StoreForkedError(
                f"the store at {self.root} was opened in process {self._pid} and used in its "
                f"forked child {os.getpid()}; open the store again in the child (or use the "
                "'spawn' start method)"
            )
        if self._closed:
            raise StoreError(f"the store at {self.root} is closed")

    def _db(self, name: bytes, txn: Any | None = None) -> Any:
        """The handle of a named database, created if needed.

        Handles are opened in a transaction of their own (or the caller's
        ``txn`` during initialisation) and cached: a handle opened inside a
        transaction that later aborts would be invalid.
        """
        db = self._dbs.get(name)
        if db is None:
            if txn is not None:
                db = self._env.open_db(name, txn=txn, create=True)
            else:
                db = self._write(lambda t: self._env.open_db(name, txn=t, create=True))
            self._dbs[name] = db
        return db

    def _begin(self, write: bool) -> Any:
        for _attempt in range(3):
            try:
                return self._env.begin(write=write)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map: adopt its size
        raise StoreError(f"cannot begin a transaction on {self.root}: the map keeps resizing")

    def _write(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(txn)`` in one write transaction; grow the map and retry when full."""
        with self._commit_lock:
            for _attempt in range(40):
                txn = self._begin(write=True)
                try:
                    result = work(txn)
                    txn.commit()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                    self._env.set_mapsize(self._env.info()["map_size"] * 2)
                except StoreError:
                    txn.abort()
                    raise
                except lmdb.Error as exc:
                    txn.abort()
                    raise StoreError(f"write to {self.root} failed: {exc}") from exc
                except BaseException:
                    txn.abort()
                    raise
            raise StoreError(f"the store at {self.root} cannot grow any further")

    def _read_raw(self, dbname: bytes, key: bytes) -> bytes | None:
        staged = self._staged
        lookup = (dbname, key)
        if lookup in staged:
            return staged[lookup]
        committing = self._committing
        if lookup in committing:
            return committing[lookup]
        db = self._dbs.get(dbname)
        if db is None:
            if not self._db_exists(dbname):
                return None
        else:
            try:  # the common case, without the retry loop's overhead
                txn = self._env.begin()
                try:
                    raw = txn.get(key, db=db)
                finally:
                    txn.abort()
                return None if raw is None else bytes(raw)
            except lmdb.Error:
                pass  # a resize raced this read: the loop below adopts it and retries
        last: Exception | None = None
        for _attempt in range(3):
            try:
                with self._begin(write=False) as txn:
                    raw = txn.get(key, db=self._dbs[dbname])
                    return None if raw is None else bytes(raw)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.Error as exc:  # a resize raced this read (py-lmdb >= 2.3): retry
                last = exc
        raise StoreError(f"read from {self.root} failed: {last}")

    def _has_raw(self, dbname: bytes, key: bytes) -> bool:
        """Whether ``key`` has a record, without copying it (values can be large)."""
        staged = self._staged
        lookup = (dbname, key)
        if lookup in staged:
            return staged[lookup] is not None
        committing = self._committing
        if lookup in committing:
            return committing[lookup] is not None
        if dbname not in self._dbs and not self._db_exists(dbname):
            return False
        for _attempt in range(3):
            try:
                txn = self._env.begin(buffers=True)
                try:
                    return txn.get(key, db=self._dbs[dbname]) is not None
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.Error:  # a resize raced this read: retry
                continue
        return self._read_raw(dbname, key) is not None

    def _db_exists(self, dbname: bytes) -> bool:
        with self._begin(write=False) as txn:
            if txn.get(dbname) is None:  # named databases are keys of the main database
                return False
        self._db(dbname)
        return True

    def _stage(self, dbname: bytes, key: bytes, raw: bytes | None) -> None:
        if self.readonly:
            raise StoreError(f"the store at {self.root} is open read-only")
        with self._lock:
            self._staged[(dbname, key)] = raw

    def _quarantine_record(self, dbname: bytes, key: bytes, raw: bytes, reason: str) -> None:
        self.quarantined += 1
        if self.readonly:
            return  # still a miss; the damage is left for a writable handle to quarantine
        qkey = hashlib.sha256(dbname + b"\0" + key).digest()
        note = b"%s\0%s\0%s" % (dbname, reason.encode(), raw)
        self._stage(QUARANTINE, qkey, _record(QUARANTINE, qkey, note))
        self._stage(dbname, key, _DELETE)

    # ------------------------------------------------------------- key/value

    def get(self, space: str, key: bytes) -> bytes | None:
        if self._closed or os.getpid() != self._pid:
            self._check()
        dbname = self._space_names.get(space)
        if dbname is None:
            check_space(space)
            dbname = self._space_names[space] = b"s:" + space.encode()
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY:
            check_key(key)
        raw = self._read_raw(dbname, key)
        if raw is None:
            return None
        payload = _open_record(dbname, key, raw)
        if payload is None:
            self._quarantine_record(dbname, key, raw, "record header or CRC mismatch")
        return payload

    def put(self, space: str, key: bytes, value: bytes) -> None:
        self._check()
        check_space(space)
        check_key(key)
        dbname = b"s:" + space.encode()
        self._stage(dbname, key, _record(dbname, key, bytes(value)))

    def delete(self, space: str, key: bytes) -> None:
        self._check()
        check_space(space)
        check_key(key)
        self._stage(b"s:" + space.encode(), key, _DELETE)

    def scan(
        self, space: str, prefix: bytes = b"", *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        check_space(space)
        if not isinstance(prefix, bytes):
            raise StoreError(f"scan prefixes are bytes, not {type(prefix).__name__}")
        dbname = b"s:" + space.encode()
        merged: dict[bytes, bytes | None] = {}
        if dbname in self._dbs or self._db_exists(dbname):
            with self._begin(write=False) as txn:
                cursor = txn.cursor(db=self._dbs[dbname])
                if cursor.set_range(prefix) if prefix else cursor.first():
                    for key, raw in cursor:
                        key = bytes(key)
                        if not key.startswith(prefix):
                            break
                        merged[key] = bytes(raw)
        with self._lock:
            overlay = [*self._committing.items(), *self._staged.items()]
        for (db, key), raw in overlay:
            if db == dbname and key.startswith(prefix):
                merged[key] = raw
        keys = sorted(k for k, v in merged.items() if v is not None)
        if reverse:
            keys.reverse()
        for key in keys:
            raw = merged[key]
            assert raw is not None
            payload = _open_record(dbname, key, raw)
            if payload is None:
                self._quarantine_record(dbname, key, raw, "record header or CRC mismatch")
                continue
            yield key, payload

    def next_sequence(self, name: str) -> int:
        self._check()
        if self.readonly:
            raise StoreError(f"the store at {self.root} is open read-only")
        key = b"seq:" + name.encode()

        def work(txn: Any) -> int:
            db = self._db(META, txn)
            current = txn.get(key, db=db)
            value = (int(current) if current is not None else 0) + 1
            txn.put(key, str(value).encode(), db=db)
            return value

        value: int = self._write(work)
        return value

    # ------------------------------------------------------------- values

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def put_value(self, data: Buffer | Sequence[Buffer]) -> tuple[str, int]:
        self._check()
        if self.readonly:
            raise StoreError(f"the store at {self.root} is open read-only")
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        views = [memoryview(p) for p in parts]
        size = sum(v.nbytes for v in views)
        with self._shared.values.shared():
            if size < self.blob_threshold:
                blob = b"".join(views)
                digest = hashlib.sha256(blob).hexdigest()
                key = bytes.fromhex(digest)
                entry = MAGIC + b"i" + _INL.pack(size) + blob
                # Rewrite unless the stored entry is byte-identical: a damaged copy is repaired.
                if self._read_raw(VALUES, key) != entry:
                    self._stage(VALUES, key, entry)
                return digest, size
            return self._put_blob(views, size)

    def _put_blob(self, views: list[memoryview], size: int) -> tuple[str, int]:
        tmp = self.root / "tmp" / f"{os.getpid()}-{uuid.uuid4().hex}"
        sha = hashlib.sha256()
        crc = 0

        # Hash in a second thread while this one writes (both release the GIL).
        def hash_all() -> None:
            for view in views:
                sha.update(view)

        hasher = threading.Thread(target=hash_all)
        hasher.start()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for view in views:
                flat = view.cast("B") if view.ndim != 1 or view.format != "B" else view
                crc = zlib.crc32(flat, crc)
                offset = 0
                while offset < len(flat):
                    offset += os.write(fd, flat[offset : offset + (64 << 20)])
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            hasher.join()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write a value to {self.root}: {exc}") from exc
        os.close(fd)
        hasher.join()
        digest = sha.hexdigest()
        final = self._blob_path(digest)
        if _file_matches(final, size, crc):
            tmp.unlink()  # the same bytes are already there, intact
        else:
            try:
                final.parent.mkdir(exist_ok=True)  # normally made with the store
                os.replace(tmp, final)
                _fsync_dir(final.parent)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise StoreError(f"cannot store a value in {self.root}: {exc}") from exc
        self._stage(VALUES, bytes.fromhex(digest), MAGIC + b"x" + _EXT.pack(size, crc))
        return digest, size

    def has_value(self, digest: str) -> bool:
        self._check()
        check_digest(digest)
        return self._has_raw(VALUES, bytes.fromhex(digest))

    def get_value(self, digest: str) -> bytes | memoryview | None:
        self._check()
        check_digest(digest)
        key = bytes.fromhex(digest)
        raw = self._read_raw(VALUES, key)
        if raw is None:
            return None
        if raw[:3] != MAGIC or len(raw) < 4:
            self._quarantine_record(VALUES, key, raw, "bad value header")
            return None
        kind = raw[3:4]
        if kind == b"i" and len(raw) >= 4 + _INL.size:
            (length,) = _INL.unpack_from(raw, 4)
            payload = raw[4 + _INL.size :]
            if len(payload) == length and hashlib.sha256(payload).digest() == key:
                return payload
            self._quarantine_record(VALUES, key, raw, "inline value failed its checksum")
            return None
        if kind == b"x" and len(raw) == 4 + _EXT.size:
            size, crc = _EXT.unpack_from(raw, 4)
            return self._read_blob(digest, key, raw, size, crc)
        self._quarantine_record(VALUES, key, raw, "bad value header")
        return None

    def _read_blob(
        self, digest: str, key: bytes, raw: bytes, size: int, crc: int
    ) -> memoryview | None:
        path = self._blob_path(digest)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._quarantine_record(VALUES, key, raw, "blob file is missing")
            return None
        try:
            actual = os.fstat(fd).st_size
            if actual != size:
                self._quarantine_blob(
                    path, key, raw, f"blob file has {actual} bytes, expected {size}"
                )
                return None
            if size == 0:
                return memoryview(b"")
            mapped = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
        finally:
            os.close(fd)
        if zlib.crc32(mapped) != crc:
            mapped.close()
            self._quarantine_blob(path, key, raw, "blob file failed its checksum")
            return None
        return memoryview(mapped)

    def _quarantine_blob(self, path: Path, key: bytes, raw: bytes, reason: str) -> None:
        if self.readonly:
            self.quarantined += 1
            return
        target = self.root / "quarantine" / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):
            os.replace(path, target)
        self._quarantine_record(VALUES, key, raw, reason)

    # ------------------------------------------------------------- durability

    @property
    def pending(self) -> int:
        return len(self._staged)

    def commit(self) -> None:
        self._check()
        # One commit at a time: a commit that finds nothing staged must still wait for a
        # batch another thread (the run's committer) took and has not written yet, or it
        # would return before those writes are durable.
        with self._commit_serial:
            self._commit_staged()

    def _commit_staged(self) -> None:
        with self._lock:
            if not self._staged:
                return
            batch = self._staged
            self._committing = batch
            self._staged = {}

        try:
            dbs = {name: self._db(name) for name in {dbname for dbname, _ in batch}}
        except BaseException:
            with self._lock:
                batch.update(self._staged)
                self._staged = batch
                self._committing = {}
            raise

        def work(txn: Any) -> None:
            for (dbname, key), raw in batch.items():
                db = dbs[dbname]
                if raw is None:
                    txn.delete(key, db=db)
                else:
                    txn.put(key, raw, db=db)

        try:
            self._write(work)
        except BaseException:
            with self._lock:
                # Keep the writes for the next attempt; newer staged writes win.
                batch.update(self._staged)
                self._staged = batch
                self._committing = {}
            raise
        with self._lock:
            self._committing = {}

    # ------------------------------------------------------------- maintenance

    def verify(self) -> dict[str, Any]:
        """Structure (``lmdb.verify``), every record's CRC, every value's checksum."""
        self._check()
        self.commit()
        from lmdb.verify import verify as lmdb_verify

        structural: list[str] = lmdb_verify(str(self.root / "index"))  # type: ignore[no-untyped-call,unused-ignore]
        problems = [f"lmdb: {p}" for p in structural]
        checked = {"records": 0, "values": 0, "blobs": 0}
        indexed_blobs: set[str] = set()
        with self._begin(write=False) as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
        for name in names:
            db = self._db(name)
            with self._begin(write=False) as txn:
                entries = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
            for key, raw in entries:
                if name == VALUES:
                    digest = key.hex()
                    checked["values"] += 1
                    problem = self._verify_value(digest, raw)
                    if raw[3:4] == b"x":
                        checked["blobs"] += 1
                        indexed_blobs.add(digest)
                    if problem:
                        problems.append(f"value {digest}: {problem}")
                elif name == META:
                    continue
                else:
                    checked["records"] += 1
                    if _open_record(name, key, raw) is None:
                        problems.append(
                            f"record {name.decode()}/{key.hex()}: header or CRC mismatch"
                        )
        orphans = [
            p.name
            for p in (self.root / "blobs").glob("*/*")
            if p.is_file() and p.name not in indexed_blobs
        ]
        return {
            "ok": not problems,
            "problems": problems,
            "checked": checked,
            "orphan_blobs": len(orphans),
            "quarantined": self._quarantined(),
        }

    def _verify_value(self, digest: str, raw: bytes) -> str | None:
        if raw[:3] != MAGIC:
            return "bad header"
        kind = raw[3:4]
        if kind == b"i":
            (length,) = _INL.unpack_from(raw, 4)
            payload = raw[4 + _INL.size :]
            if len(payload) != length:
                return f"inline payload has {len(payload)} bytes, expected {length}"
            if hashlib.sha256(payload).hexdigest() != digest:
                return "inline payload does not match its digest"
            return None
        if kind == b"x":
            size, crc = _EXT.unpack_from(raw, 4)
            path = self._blob_path(digest)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return "blob file is missing"
            if len(data) != size:
                return f"blob file has {len(data)} bytes, expected {size}"
            if zlib.crc32(data) != crc or hashlib.sha256(data).hexdigest() != digest:
                return "blob file does not match its digest"
            return None
        return f"unknown value kind {kind!r}"

    def _try_exclusive(self) -> bool:
        """Try to make this handle the only one with the store open (across processes).

        Linux converts a flock by dropping the old lock first, so a failed
        upgrade leaves this handle unlocked: it takes its shared lock back
        before saying no.
        """
        assert self._lockfile is not None
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            fcntl.flock(self._lockfile, fcntl.LOCK_SH)
            return False
        return True

    def gc(
        self, live_values: set[str] | None = None, *, candidates: set[str] | None = None
    ) -> dict[str, Any]:
        """Remove debris; with ``live_values``, also values not in it.

        With ``candidates``, remove only those values (minus ``live_values``)
        and nothing else -- a plugin freeing what it alone referenced (a
        removed component's blobs) -- under the same exclusivity rule.

        Always: temp files of dead processes and quarantined entries. Orphan
        blobs (written but never indexed) and unreferenced values only when
        this is the only handle with the store open -- no other process (the
        exclusive ``writers.lock``) and no other handle in this process --
        because another writer may have renamed a blob into place and not yet
        committed its index; otherwise that part is skipped and reported.
        ``put_value`` calls of this process wait while gc runs.
        """
        self._check()
        if self.readonly:
            raise StoreError(f"the store at {self.root} is open read-only")
        report: dict[str, Any] = {
            "tmp_removed": 0,
            "orphan_blobs_removed": 0,
            "quarantine_cleared": 0,
            "values_removed": 0,
            "bytes_freed": 0,
            "skipped": [],
        }
        if candidates is not None:
            return self._remove_candidates(candidates, live_values or set(), report)
        with self._shared.values.exclusive():
            self.commit()
            for entry in (self.root / "tmp").iterdir():
                pid_text = entry.name.partition("-")[0]
                if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                    report["bytes_freed"] += entry.stat().st_size
                    entry.unlink()
                    report["tmp_removed"] += 1
            for entry in (self.root / "quarantine").iterdir():
                report["bytes_freed"] += entry.stat().st_size
                entry.unlink()
                report["quarantine_cleared"] += 1
            if self._db_exists(QUARANTINE):
                quarantine_db = self._db(QUARANTINE)
                self._write(lambda txn: txn.drop(quarantine_db, delete=False))
            if self._shared.handles > 1:
                report["skipped"].append(
                    "orphan blobs and unreferenced values: another handle in this process has "
                    "the store open"
                )
                return report
            if not self._try_exclusive():
                report["skipped"].append(
                    "orphan blobs and unreferenced values: another process has the store open"
                )
                return report
            try:
                self._collect(live_values, report)
            finally:
                assert self._lockfile is not None
                fcntl.flock(self._lockfile, fcntl.LOCK_SH)
        return report

    def _remove_candidates(
        self, candidates: set[str], live: set[str], report: dict[str, Any]
    ) -> dict[str, Any]:
        with self._shared.values.exclusive():
            self.commit()
            if self._shared.handles > 1:
                report["skipped"].append(
                    "values: another handle in this process has the store open"
                )
                return report
            if not self._try_exclusive():
                report["skipped"].append("values: another process has the store open")
                return report
            try:
                self._drop_values(sorted(candidates - live), report)
            finally:
                assert self._lockfile is not None
                fcntl.flock(self._lockfile, fcntl.LOCK_SH)
        return report

    def _drop_values(self, digests: list[str], report: dict[str, Any]) -> None:
        values_db = self._db(VALUES)
        kinds: dict[str, bytes] = {}

        def work(txn: Any) -> None:
            for digest in digests:
                raw = txn.get(bytes.fromhex(digest), db=values_db)
                if raw is None:
                    continue
                kinds[digest] = bytes(raw)[3:4]
                report["bytes_freed"] += len(raw)
                txn.delete(bytes.fromhex(digest), db=values_db)

        self._write(work)
        for digest, kind in kinds.items():
            if kind == b"x":
                path = self._blob_path(digest)
                with contextlib.suppress(FileNotFoundError):
                    report["bytes_freed"] += path.stat().st_size
                    path.unlink()
        report["values_removed"] = report.get("values_removed", 0) + len(kinds)

    def _collect(self, live_values: set[str] | None, report: dict[str, Any]) -> None:
        values_db = self._db(VALUES)
        with self._begin(write=False) as txn:
            index = {bytes(k).hex(): bytes(v)[3:4] for k, v in txn.cursor(db=values_db)}
        for path in list((self.root / "blobs").glob("*/*")):
            if index.get(path.name) != b"x":
                report["bytes_freed"] += path.stat().st_size
                path.unlink()
                report["orphan_blobs_removed"] += 1
        if live_values is None:
            return
        dead = [d for d in index if d not in live_values]

        def work(txn: Any) -> None:
            for digest in dead:
                raw = txn.get(bytes.fromhex(digest), db=values_db)
                if raw is not None:
                    report["bytes_freed"] += len(raw)
                txn.delete(bytes.fromhex(digest), db=values_db)

        self._write(work)
        for digest in dead:
            if index[digest] == b"x":
                path = self._blob_path(digest)
                with contextlib.suppress(FileNotFoundError):
                    report["bytes_freed"] += path.stat().st_size
                    path.unlink()
        report["values_removed"] = len(dead)

    def _quarantined(self) -> int:
        """Quarantined entries: damaged records and values, and damaged blob files."""
        files = sum(1 for _ in (self.root / "quarantine").iterdir())
        if not self._db_exists(QUARANTINE):
            return files
        db = self._db(QUARANTINE)
        with self._begin(write=False) as txn:
            records = int(txn.stat(db)["entries"])
        return (
            files
            + records
            + sum(1 for (dbname, _), raw in self._staged.items() if dbname == QUARANTINE and raw)
        )

    def _live_readers(self) -> int:
        """Processes holding reader slots (slots of dead processes are cleared first)."""
        self._env.reader_check()
        lines = self._env.readers().splitlines()[1:]  # header: pid thread txnid
        return len({line.split()[0] for line in lines if line.split()})

    def stats(self) -> dict[str, Any]:
        self._check()
        spaces: dict[str, int] = {}
        with self._begin(write=False) as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
        for name in names:
            # Before the read transaction: handles opened later are invisible to it.
            db = self._db(name)
            with self._begin(write=False) as txn:
                stat = txn.stat(db)
            label = name[2:].decode() if name.startswith(b"s:") else name.decode()
            spaces[label] = stat["entries"]
        blobs = [p for p in (self.root / "blobs").glob("*/*") if p.is_file()]
        info = self._env.info()
        data_file = self.root / "index" / "data.mdb"
        return {
            "location": str(self.root),
            "store_id": self.store_id,
            "format": FORMAT_VERSION,
            "spaces": spaces,
            "values": spaces.get("_values", 0),
            "blobs": len(blobs),
            "blob_bytes": sum(p.stat().st_size for p in blobs),
            "index_bytes": data_file.stat().st_size if data_file.exists() else 0,
            "map_size": info["map_size"],
            "readers": self._live_readers(),
            "quarantined": self._quarantined(),
            "pending": self.pending,
        }

    def close(self) -> None:
        if self._closed:
            return
        if os.getpid() != self._pid:
            self._closed = True  # a forked child must not touch the parent's environment
            return
        try:
            self.commit()
        finally:
            self._release()

    def _release(self) -> None:
        self._closed = True
        if hasattr(self, "_env_key"):
            _SharedEnv.release(self._env_key)
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None


@hookimpl(trylast=True)
def aliquot_register_stores(register: Callable[..., None]) -> None:
    register(LmdbStore)
