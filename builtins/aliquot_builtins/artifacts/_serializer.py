"""The ``artifact`` serializer family: one serializer per artifact task and arguments.

``artifact`` itself stores nothing; ``artifact:<module>:<qualname>[?<json>]``
(see ``_names``) is built by :meth:`ArtifactFamily.specialize` when a task
output or a stored reference names it. Such a serializer is chosen only by
name (``types = ()``): it runs the task's ``serialize`` in a fresh private
directory and packs what it wrote (``_payload``); loading unpacks into
another fresh directory and runs ``deserialize`` there.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aliquot import SerializationError, SerializerContext, TaskDefinitionError

from . import _payload
from ._args import check_args
from ._names import FAMILY, parse, resolve


class ArtifactFamily:
    """The registered ``artifact`` serializer: it builds ``artifact:...`` serializers."""

    name = FAMILY
    version = "1"
    priority = 100
    types: tuple[type, ...] = ()

    def specialize(self, argument: str) -> ArtifactSerializer:
        """The serializer named ``artifact:<argument>``.

        Raises:
            SerializationError: the argument is malformed or not canonical, the
                task cannot be found, or its arguments do not pass its schema.
        """
        parsed = parse(argument)
        task = resolve(parsed.module, parsed.qualname)
        try:
            check_args(task, parsed.args)
        except TaskDefinitionError as exc:
            raise SerializationError(f"serializer {FAMILY}:{argument}: {exc}") from exc
        return ArtifactSerializer(f"{FAMILY}:{argument}", task, parsed.args, parsed.name)

    def dumps(self, value: Any, ctx: SerializerContext) -> bytes:
        raise SerializationError(_FAMILY_ONLY)

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        raise SerializationError(_FAMILY_ONLY)


_FAMILY_ONLY = (
    "the 'artifact' serializer stands for a family: name one artifact task, as in "
    "'artifact:aliquot_builtins.artifacts:StringArtifactTask' "
    "(aliquot_builtins.artifacts.serializer_name(Task) writes the name)"
)


class ArtifactSerializer:
    """Values stored by one artifact task with fixed arguments (see the module docstring)."""

    version = "1"
    priority = 100
    types: tuple[type, ...] = ()

    def __init__(self, name: str, task: type, args: Mapping[str, Any], artifact_name: str) -> None:
        self.name = name
        #: The task class (any class with the three static methods, so typed Any).
        self.task: Any = task
        self.args = dict(args)
        self.artifact_name = artifact_name
        self._owner = f"artifact task {task.__qualname__}"

    def __repr__(self) -> str:
        return f"<ArtifactSerializer {self.name}>"

    def dumps(self, value: Any, ctx: SerializerContext) -> list[bytes]:
        working_dir = Path(tempfile.mkdtemp(prefix="aliquot-artifact-"))  # mode 0700
        try:
            result = self.task.serialize(working_dir, self.artifact_name, value, **self.args)
            if not isinstance(result, (str, os.PathLike)):
                raise SerializationError(
                    f"{self._owner}: serialize returned {type(result).__name__}, not a Path"
                )
            payload = _payload.pack(working_dir, Path(result), self._owner)
        finally:
            remove_tree(working_dir)
        if getattr(self.task, "signed", False):
            return _payload.sign(payload, ctx, self.name)
        return payload

    def loads(self, data: memoryview, ctx: SerializerContext) -> Any:
        if getattr(self.task, "signed", False):
            data = _payload.verify(data, ctx, self.name)
        header = _payload.read_header(data)  # refuse damage before making a directory
        working_dir = SCRATCH.fresh()
        keep = False
        try:
            try:
                path = _payload.unpack(data, working_dir, header)
            except OSError as exc:  # a full disk; names a case-insensitive file system merges
                raise SerializationError(
                    f"{self._owner}: cannot unpack the artifact into {working_dir}: {exc}"
                ) from exc
            try:
                value = self.task.deserialize(working_dir, path, **self.args)
            except Exception as exc:
                raise SerializationError(
                    f"{self._owner}: deserialize failed: {type(exc).__name__}: {exc}"
                ) from exc
            keep = bool(getattr(self.task, "keep_unpacked", True))
            return value
        finally:
            if not keep:
                remove_tree(working_dir)


class Scratch:
    """The per-process directory that loaded artifacts are unpacked in.

    Each load gets a fresh private directory inside it, kept until the process
    exits (a returned ``Path`` stays valid that long); an ``atexit`` handler
    removes the whole directory. A forked child makes its own, and so does a
    process whose directory was removed under it (a temp cleaner).
    """

    def __init__(self, parent: Path | None = None) -> None:
        self._parent = parent
        self._root: Path | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def fresh(self) -> Path:
        """A new empty directory (mode 0700) for one load."""
        with self._lock:
            if self._root is None or self._pid != os.getpid() or not self._root.is_dir():
                self._pid = os.getpid()
                self._root = Path(
                    tempfile.mkdtemp(prefix=f"aliquot-artifacts-{self._pid}-", dir=self._parent)
                )
                atexit.register(_remove_own, self._root, self._pid)
            root = self._root
        return Path(tempfile.mkdtemp(dir=root))


def _remove_own(root: Path, pid: int) -> None:
    if os.getpid() == pid:  # never a parent's directory from a forked child
        remove_tree(root)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything in it, also read-only directories a task left."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        # Top-down: each directory is made writable before the walk lists it.
        for parent, dirs, _ in os.walk(path):
            for name in dirs:
                child = os.path.join(parent, name)
                if not os.path.islink(child):
                    os.chmod(child, 0o700)
    shutil.rmtree(path)


#: Where this process unpacks artifacts (created on first use, not on import).
SCRATCH = Scratch()
