"""The builtin artifact tasks: Dioptra's set, without its defects.

Differences from ``dioptra/extra/plugins/artifacts/tasks.py``: text is read
back exactly as written (UTF-8, newlines untouched); a directory comes back
under its own name (Dioptra #965 loses it); numpy never pickles; pickle
payloads are signed; JSON uses orjson and refuses what it cannot give back
(dataclasses, datetimes, subclasses) instead of converting it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
from pathlib import Path
from typing import Any, ClassVar

import orjson

from aliquot import SerializationError

from ._task import ArtifactTask


def _need(contents: Any, kinds: type | tuple[type, ...], task: str, what: str) -> None:
    if not isinstance(contents, kinds):
        raise SerializationError(f"{task} takes {what}, not {type(contents).__name__}")


class StringArtifactTask(ArtifactTask):
    """A ``str`` as a UTF-8 text file ``<name>.<type>`` (default ``txt``), read back exactly."""

    keep_unpacked: ClassVar[bool] = False

    @staticmethod
    def serialize(
        working_dir: Path, name: str, contents: str, type: str = "txt", **kwargs: Any
    ) -> Path:
        _need(contents, str, "StringArtifactTask", "a str")
        result = working_dir / f"{name}.{type}"
        with open(result, "w", encoding="utf-8", newline="") as fh:
            fh.write(contents)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> str:
        with open(Path(working_dir, path), encoding="utf-8", newline="") as fh:
            return fh.read()

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"type": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,16}$"}}


class BytesArtifactTask(ArtifactTask):
    """Bytes (``bytes``, ``bytearray``, ``memoryview``) as ``<name>.bin``; loads as ``bytes``."""

    keep_unpacked: ClassVar[bool] = False

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: bytes, **kwargs: Any) -> Path:
        _need(contents, (bytes, bytearray, memoryview), "BytesArtifactTask", "bytes")
        result = working_dir / f"{name}.bin"
        result.write_bytes(contents)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> bytes:
        return Path(working_dir, path).read_bytes()

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


class FileArtifactTask(ArtifactTask):
    """A file, given by its path: stored as ``<name><suffix>`` (the source's last suffix).

    Loading returns the ``Path`` of a restored copy, valid until the process
    exits; its executable bit is kept.
    """

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
        _need(contents, (str, os.PathLike), "FileArtifactTask", "the path of a file")
        source = Path(contents)
        if not source.is_file():
            raise SerializationError(f"FileArtifactTask: {source} is not a file")
        result = working_dir / f"{name}{source.suffix}"
        shutil.copyfile(source, result)
        if source.stat().st_mode & stat.S_IXUSR:
            result.chmod(0o700)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Path:
        return Path(working_dir, path)

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


class DirectoryArtifactTask(ArtifactTask):
    """A directory tree, given by its path, stored as ``<name>/``.

    Loading returns the ``Path`` of the restored directory -- still called
    ``<name>`` (Dioptra #965 loses the name) -- valid until the process exits.
    Only regular files and directories are stored: a symlink in the tree is
    refused, not followed.
    """

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
        _need(contents, (str, os.PathLike), "DirectoryArtifactTask", "the path of a directory")
        source = Path(contents)
        if not source.is_dir():
            raise SerializationError(f"DirectoryArtifactTask: {source} is not a directory")
        result = working_dir / name
        shutil.copytree(source, result, symlinks=True)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Path:
        return Path(working_dir, path)

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


class JsonArtifactTask(ArtifactTask):
    """JSON data (dicts with str keys, lists, str, int, float, bool, None) as ``<name>.json``.

    Arguments: ``indent`` (0 or 2) and ``sort_keys`` (bool). Tuples come back
    as lists; values JSON cannot give back as they were are refused.
    """

    keep_unpacked: ClassVar[bool] = False

    @staticmethod
    def serialize(
        working_dir: Path,
        name: str,
        contents: Any,
        indent: int = 0,
        sort_keys: bool = False,
        **kwargs: Any,
    ) -> Path:
        option = (
            orjson.OPT_PASSTHROUGH_DATACLASS
            | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_SUBCLASS
        )
        if indent:
            option |= orjson.OPT_INDENT_2
        if sort_keys:
            option |= orjson.OPT_SORT_KEYS
        try:
            data = orjson.dumps(contents, option=option)
        except TypeError as exc:
            raise SerializationError(f"JsonArtifactTask cannot store this value: {exc}") from exc
        result = working_dir / f"{name}.json"
        result.write_bytes(data)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Any:
        return orjson.loads(Path(working_dir, path).read_bytes())

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"indent": {"enum": [0, 2]}, "sort_keys": {"type": "boolean"}}


class NumpyArtifactTask(ArtifactTask):
    """A numpy array as ``<name>.npy`` (``np.save`` / ``np.load``, never pickle).

    Object arrays are refused: they can only be stored by pickling.
    """

    keep_unpacked: ClassVar[bool] = False

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
        np = _numpy()
        _need(contents, np.ndarray, "NumpyArtifactTask", "a numpy array")
        if contents.dtype.hasobject:
            raise SerializationError(
                f"NumpyArtifactTask refuses arrays of dtype {contents.dtype}: object arrays "
                "can only be stored by pickling (use PickleArtifactTask)"
            )
        result = working_dir / f"{name}.npy"
        np.save(result, contents, allow_pickle=False)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Any:
        return _numpy().load(Path(working_dir, path), allow_pickle=False)

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:
        raise SerializationError("NumpyArtifactTask needs numpy (pip install numpy)") from exc
    return numpy


class PickleArtifactTask(ArtifactTask):
    """Any picklable value as ``<name>.pkl`` (protocol 5), in a *signed* payload.

    ``signed = True``: the payload carries an HMAC under the store's secret
    ``artifact`` key, checked before ``deserialize`` runs, so only pickles this
    store wrote are ever unpickled (see ``spec/artifacts.md``). Calling
    ``deserialize`` directly on files from elsewhere bypasses that check.
    """

    signed: ClassVar[bool] = True
    keep_unpacked: ClassVar[bool] = False

    @staticmethod
    def serialize(working_dir: Path, name: str, contents: Any, **kwargs: Any) -> Path:
        try:
            data = pickle.dumps(contents, protocol=5)
        except Exception as exc:
            raise SerializationError(
                f"PickleArtifactTask cannot pickle {type(contents).__name__}: {exc}"
            ) from exc
        result = working_dir / f"{name}.pkl"
        result.write_bytes(data)
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs: Any) -> Any:
        # Reached only after the payload's signature was verified (signed = True).
        return pickle.loads(Path(working_dir, path).read_bytes())  # noqa: S301

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return None


BUILTIN_ARTIFACT_TASKS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StringArtifactTask,
        BytesArtifactTask,
        FileArtifactTask,
        DirectoryArtifactTask,
        JsonArtifactTask,
        NumpyArtifactTask,
        PickleArtifactTask,
    )
}
