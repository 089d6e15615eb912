"""The artifact payload: one file or directory tree as deterministic bytes, and back.

Layout (format 1)::

    b"AQAT1\\0" | u32 header length (little endian) | header | contents

The header is canonical compact JSON (keys sorted)::

    {"entries": [...], "format": 1, "root": "artifact"}

``root`` is what ``serialize`` returned, relative to its working directory.
``entries`` lists ``root`` and everything under it, sorted by path, each
``{"kind": "dir", "path": p}`` or ``{"exec": bool, "kind": "file", "path": p,
"size": n}``; the contents of the files follow in that order. Nothing else is
kept -- no timestamps, owners or other mode bits -- so equal trees give equal
bytes, and equal bytes the same digest in the store.

A *signed* payload (``ArtifactTask.signed``) wraps this in
``b"AQAS1\\0" | key id (8) | HMAC-SHA256 (32) | payload``; the HMAC, under the
store's ``artifact`` key, covers the magic, the key id, the serializer name
and the payload, so a payload is trusted only by the store and the task that
signed it.

Unpacking trusts nothing in the bytes: every rule of :func:`read_header` is
checked before a byte is written, and files are created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under directory descriptors opened with
``O_NOFOLLOW``, inside a directory the caller has just created.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import posixpath
import stat
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from aliquot import SerializationError, SerializerContext, UntrustedPayloadError

MAGIC: Final = b"AQAT1\x00"
SIGNED_MAGIC: Final = b"AQAS1\x00"
FORMAT: Final = 1
_LEN: Final = struct.Struct("<I")
_SIGNED_HEAD: Final = len(SIGNED_MAGIC) + 8 + 32

#: Limits, checked when packing and when unpacking (so loads never refuses what dumps made).
MAX_TOTAL_SIZE = 16 << 30
MAX_ENTRIES = 100_000
MAX_HEADER = 64 << 20
MAX_PATH = 4096
MAX_PART = 255

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def check_path(path: object) -> str:
    """``path`` if it is a relative, normalised POSIX path within the limits, else raise."""
    if not isinstance(path, str) or not path:
        raise SerializationError(f"artifact path {path!r} is not a non-empty string")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError(f"artifact path {path!r} is not valid UTF-8") from None
    parts = path.split("/")
    bad = (
        path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or len(encoded) > MAX_PATH
        or posixpath.normpath(path) != path
        or any(p in ("", ".", "..") or len(p.encode("utf-8")) > MAX_PART for p in parts)
    )
    if bad:
        raise SerializationError(
            f"artifact path {path!r} is not a relative, normalised POSIX path (no '..', no "
            f"absolute path, no empty parts or backslashes, at most {MAX_PATH} bytes)"
        )
    return path


# --------------------------------------------------------------------------- packing


def pack(working_dir: Path, result: Path, owner: str) -> list[bytes]:
    """The payload of ``result`` (a file or directory inside ``working_dir``), as buffers.

    Raises:
        SerializationError: ``result`` is outside ``working_dir`` or missing, or
            the tree holds a symlink, device, fifo or socket; the message names
            ``owner`` and the path.
    """
    base = working_dir.resolve()
    candidate = Path(base, result)
    if candidate.is_symlink():
        raise SerializationError(
            f"{owner}: serialize returned {result}, a symlink; return the file or directory itself"
        )
    try:
        resolved = candidate.resolve(strict=True)
    except OSError:
        raise SerializationError(
            f"{owner}: serialize returned {result}, which does not exist"
        ) from None
    if resolved == base or base not in resolved.parents:
        raise SerializationError(
            f"{owner}: serialize returned {result}, which is outside its working directory "
            f"{base}; write the artifact inside working_dir"
        )
    try:
        root = check_path(resolved.relative_to(base).as_posix())
    except SerializationError as exc:
        raise SerializationError(f"{owner}: {exc}") from None
    found: list[tuple[dict[str, Any], bytes | None]] = []
    _walk(base, root, found, owner)
    # Sorted by path (not in walking order: "a/b-c" sorts before "a/b/c").
    found.sort(key=lambda pair: str(pair[0]["path"]))
    entries = [entry for entry, _ in found]
    contents = [data for _, data in found if data is not None]
    total = sum(len(data) for data in contents)
    if total > MAX_TOTAL_SIZE or len(entries) > MAX_ENTRIES:
        raise SerializationError(
            f"{owner}: the artifact is too large ({len(entries)} entries, {total} bytes; the "
            f"limits are {MAX_ENTRIES} entries and {MAX_TOTAL_SIZE} bytes)"
        )
    header = orjson.dumps(
        {"entries": entries, "format": FORMAT, "root": root}, option=orjson.OPT_SORT_KEYS
    )
    if len(header) > MAX_HEADER:
        raise SerializationError(f"{owner}: the artifact's file list is too long")
    return [MAGIC + _LEN.pack(len(header)) + header, *contents]


def _walk(
    base: Path, root: str, found: list[tuple[dict[str, Any], bytes | None]], owner: str
) -> None:
    pending = [root]  # a stack, not recursion: trees may be deeper than Python's stack
    while pending:
        rel = pending.pop()
        path = base / rel
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            found.append(({"kind": "dir", "path": rel}, None))
            for child in os.listdir(path):
                try:
                    pending.append(check_path(f"{rel}/{child}"))
                except SerializationError as exc:
                    raise SerializationError(f"{owner}: {exc}") from None
        elif stat.S_ISREG(info.st_mode):
            data = _read_regular(path, owner, rel)
            entry = {
                "exec": bool(info.st_mode & stat.S_IXUSR),
                "kind": "file",
                "path": rel,
                "size": len(data),
            }
            found.append((entry, data))
        else:
            kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file or directory"
            raise SerializationError(
                f"{owner}: {rel} in the artifact is {kind}; artifacts hold only regular files "
                "and directories"
            )


def _read_regular(path: Path, owner: str, rel: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SerializationError(f"{owner}: cannot read {rel} in the artifact: {exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise SerializationError(f"{owner}: {rel} in the artifact changed while it was read")
        return fh.read()


# --------------------------------------------------------------------------- unpacking


def read_header(data: memoryview) -> tuple[str, list[dict[str, Any]], int]:
    """Parse and check a payload's header: ``(root, entries, offset of the contents)``.

    Raises:
        SerializationError: anything at all is wrong with it.
    """
    start = len(MAGIC) + _LEN.size
    if len(data) < start or bytes(data[: len(MAGIC)]) != MAGIC:
        raise SerializationError("not an artifact payload (bad magic)")
    (size,) = _LEN.unpack_from(data, len(MAGIC))
    if size > MAX_HEADER or start + size > len(data):
        raise SerializationError("damaged artifact payload: the header length is out of range")
    raw = bytes(data[start : start + size])
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SerializationError(
            f"damaged artifact payload: the header is not JSON: {exc}"
        ) from exc
    if not isinstance(header, dict) or set(header) != {"entries", "format", "root"}:
        raise SerializationError("damaged artifact payload: the header has the wrong keys")
    if header["format"] != FORMAT or type(header["format"]) is not int:
        raise SerializationError(
            f"artifact payload format {header['format']!r} is not supported (this is {FORMAT})"
        )
    if orjson.dumps(header, option=orjson.OPT_SORT_KEYS) != raw:
        raise SerializationError("damaged artifact payload: the header is not in canonical form")
    root = check_path(header["root"])
    entries = header["entries"]
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_ENTRIES:
        raise SerializationError(
            f"damaged artifact payload: expected 1-{MAX_ENTRIES} entries in a list"
        )
    dirs: set[str] = set()
    previous = ""
    total = 0
    for index, entry in enumerate(entries):
        path = _check_entry(entry)
        if index == 0 and path != root:
            raise SerializationError(f"damaged artifact payload: the first entry is not {root!r}")
        if index and (path <= previous or not path.startswith(root + "/")):
            raise SerializationError(
                f"damaged artifact payload: entry {path!r} is out of order, repeated, or not "
                f"under {root!r}"
            )
        if index and posixpath.dirname(path) not in dirs:
            raise SerializationError(
                f"damaged artifact payload: the directory of {path!r} is not an entry"
            )
        if entry["kind"] == "dir":
            dirs.add(path)
        else:
            total += entry["size"]
            if total > MAX_TOTAL_SIZE:
                raise SerializationError(
                    f"artifact payload declares at least {total} bytes, over the limit of "
                    f"{MAX_TOTAL_SIZE}"
                )
        previous = path
    offset = start + size
    if total != len(data) - offset:
        raise SerializationError(
            f"damaged artifact payload: the header declares {total} bytes of contents, "
            f"the payload holds {len(data) - offset}"
        )
    return root, entries, offset


def _check_entry(entry: object) -> str:
    if isinstance(entry, dict):
        kind = entry.get("kind")
        if kind == "dir" and set(entry) == {"kind", "path"}:
            return check_path(entry["path"])
        if (
            kind == "file"
            and set(entry) == {"exec", "kind", "path", "size"}
            and type(entry["size"]) is int
            and entry["size"] >= 0
            and type(entry["exec"]) is bool
        ):
            return check_path(entry["path"])
    raise SerializationError(
        f"damaged artifact payload: {str(entry)[:200]} is not a file or directory entry"
    )


def unpack(
    data: memoryview, into: Path, header: tuple[str, list[dict[str, Any]], int] | None = None
) -> str:
    """Write the tree in ``data`` inside the empty directory ``into``; return its root path.

    ``into`` must be a fresh private directory; ``header`` is what
    :func:`read_header` returned for ``data`` (read here when not given).
    Nothing is written unless the whole header passes, and nothing is ever written
    outside ``into``: paths are opened one part at a time, relative to a
    directory descriptor, never following a symlink, and files must not exist.
    """
    root, entries, offset = header or read_header(data)
    base_fd = os.open(into, _DIR_FLAGS)
    try:
        *parents, _ = root.split("/")
        made = ""
        for part in parents:  # the directories above the root: the task's own layout
            made = f"{made}/{part}" if made else part
            _make_dir(base_fd, made)
        for entry in entries:
            path = entry["path"]
            if entry["kind"] == "dir":
                _make_dir(base_fd, path)
            else:
                size = entry["size"]
                _write_file(base_fd, path, data[offset : offset + size], entry["exec"])
                offset += size
    finally:
        os.close(base_fd)
    return root


def _open_parent(base_fd: int, path: str) -> tuple[int, str]:
    """A descriptor of ``path``'s directory (walked without following symlinks), and its name."""
    *parents, name = path.split("/")
    fd = os.dup(base_fd)
    try:
        for part in parents:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def _make_dir(base_fd: int, path: str) -> None:
    fd, name = _open_parent(base_fd, path)
    try:
        os.mkdir(name, 0o700, dir_fd=fd)
    finally:
        os.close(fd)


def _write_file(base_fd: int, path: str, contents: memoryview, executable: bool) -> None:
    parent, name = _open_parent(base_fd, path)
    try:
        fd = os.open(name, _FILE_FLAGS, 0o700 if executable else 0o600, dir_fd=parent)
    finally:
        os.close(parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(contents)


# --------------------------------------------------------------------------- signing


def _key(ctx: SerializerContext) -> tuple[bytes, bytes]:
    key = ctx.secret("artifact")
    return key, hashlib.sha256(key).digest()[:8]


def _mac(key: bytes, key_id: bytes, serializer: str, payload: Sequence[Any]) -> bytes:
    mac = hmac.new(key, SIGNED_MAGIC + key_id, hashlib.sha256)
    label = serializer.encode("utf-8")
    mac.update(_LEN.pack(len(label)) + label)
    for part in payload:
        mac.update(part)
    return mac.digest()


def sign(payload: list[bytes], ctx: SerializerContext, serializer: str) -> list[bytes]:
    """``payload`` in a signed envelope (see the module docstring)."""
    key, key_id = _key(ctx)
    return [SIGNED_MAGIC + key_id + _mac(key, key_id, serializer, payload), *payload]


def verify(data: memoryview, ctx: SerializerContext, serializer: str) -> memoryview:
    """The payload inside a signed envelope, or :class:`~aliquot.UntrustedPayloadError`."""
    if len(data) < _SIGNED_HEAD or bytes(data[: len(SIGNED_MAGIC)]) != SIGNED_MAGIC:
        raise UntrustedPayloadError(
            f"refusing to load {serializer}: the payload is not signed by aliquot"
        )
    key, key_id = _key(ctx)
    if bytes(data[len(SIGNED_MAGIC) : len(SIGNED_MAGIC) + 8]) != key_id:
        raise UntrustedPayloadError(
            f"refusing to load {serializer}: the payload was signed with another key "
            "(another store?)"
        )
    payload = data[_SIGNED_HEAD:]
    expected = _mac(key, key_id, serializer, [payload])
    if not hmac.compare_digest(expected, bytes(data[len(SIGNED_MAGIC) + 8 : _SIGNED_HEAD])):
        raise UntrustedPayloadError(
            f"refusing to load {serializer}: the signature does not match (tampered?)"
        )
    return payload
