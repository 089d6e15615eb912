"""Reading a task plugin to import: a directory, or a ``.tar[.gz]``/``.tgz``/``.zip`` archive.

Nothing is extracted to disk: files are read into memory, with every member
checked first. Refused outright (the whole import, naming the member): a
symlink or hard link, a device or fifo, an absolute path, a path with ``..``,
a member or a total over the size caps, more members than the cap. Files that
are not ``.py`` (and ``__pycache__``) are skipped and reported. An archive whose
members all sit in one top folder is read from inside it, and that folder names
the plugin unless a name is given.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Final

from ._errors import TaskPluginError
from ._store import MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, check_filename

ARCHIVE_SUFFIXES: Final = (".tar", ".tar.gz", ".tgz", ".zip")
#: Members an archive may hold at all (Python files or not).
MAX_MEMBERS: Final = 4 * MAX_FILES


class Source:
    def __init__(self, name: str | None) -> None:
        self.name = name
        self.files: dict[str, str] = {}
        self.skipped: list[str] = []
        self._total = 0

    def add(self, path: str, data: bytes) -> None:
        if len(data) > MAX_FILE_BYTES:
            raise TaskPluginError(f"{path}: over the {MAX_FILE_BYTES}-byte limit per file")
        self._total += len(data)
        if self._total > MAX_TOTAL_BYTES:
            raise TaskPluginError(f"the plugin is over the {MAX_TOTAL_BYTES}-byte limit in all")
        if len(self.files) >= MAX_FILES:
            raise TaskPluginError(f"the plugin has more than {MAX_FILES} Python files")
        check_filename(path)
        try:
            self.files[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TaskPluginError(f"{path}: not UTF-8 text") from None


def _wanted(path: str, source: Source) -> bool:
    parts = PurePosixPath(path).parts
    if "__pycache__" in parts or not path.endswith(".py"):
        source.skipped.append(path)
        return False
    return True


def read_source(location: str | os.PathLike[str], name: str | None = None) -> Source:
    try:
        return _read_source(Path(location), name)
    except TaskPluginError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise TaskPluginError(
            f"{location}: damaged or unreadable ({type(exc).__name__}: {exc}); nothing was imported"
        ) from None


def _read_source(path: Path, name: str | None) -> Source:
    if path.is_symlink():
        raise TaskPluginError(f"{path} is a symlink; give the directory or archive itself")
    if path.is_dir():
        return _read_directory(path, name)
    if path.is_file():
        lower = path.name.lower()
        if lower.endswith((".tar", ".tar.gz", ".tgz")):
            return _read_tar(path, name)
        if lower.endswith(".zip"):
            return _read_zip(path, name)
        if lower.endswith(".py"):
            source = Source(name or path.stem)
            _check_size(path.name, path.stat().st_size)
            source.add(path.name, path.read_bytes())
            return source
        raise TaskPluginError(
            f"{path}: not a directory, a .py file or an archive ({', '.join(ARCHIVE_SUFFIXES)})"
        )
    raise TaskPluginError(f"{path}: no such file or directory")


def _check_size(member: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise TaskPluginError(f"{member}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit")


def _read_directory(root: Path, name: str | None) -> Source:
    source = Source(name or root.resolve().name)
    count = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for d in list(dirs):
            if (base / d).is_symlink():
                raise TaskPluginError(
                    f"{(base / d).relative_to(root)}: symlinked directory refused"
                )
            if d == "__pycache__" or d.startswith("."):
                dirs.remove(d)
        dirs.sort()
        for f in sorted(files):
            full = base / f
            rel = full.relative_to(root).as_posix()
            count += 1
            if count > MAX_MEMBERS:
                raise TaskPluginError(f"{root}: more than {MAX_MEMBERS} files")
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise TaskPluginError(f"{rel}: symlink refused")
            if not stat.S_ISREG(info.st_mode):
                raise TaskPluginError(f"{rel}: not a regular file")
            if not _wanted(rel, source):
                continue
            _check_size(rel, info.st_size)
            source.add(rel, full.read_bytes())
    return source


def _member_path(raw: str) -> str:
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        raise TaskPluginError(f"archive member {raw!r} has an absolute path")
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TaskPluginError(f"archive member {raw!r} leaves the archive ('..')")
    return "/".join(parts)


def _strip_top(paths: list[str]) -> tuple[str | None, int]:
    tops = {p.split("/")[0] for p in paths}
    if len(tops) == 1 and all("/" in p for p in paths):
        return next(iter(tops)), 1
    return None, 0


def _read_tar(path: Path, name: str | None) -> Source:
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as exc:
        raise TaskPluginError(f"{path}: not a readable tar archive: {exc}") from None
    with archive:
        members = []
        for index, member in enumerate(archive):
            if index >= MAX_MEMBERS:
                raise TaskPluginError(f"{path}: more than {MAX_MEMBERS} members")
            rel = _member_path(member.name)
            if member.issym() or member.islnk():
                raise TaskPluginError(f"archive member {member.name!r}: links are refused")
            if member.isdir():
                continue
            if not member.isfile():
                raise TaskPluginError(f"archive member {member.name!r}: not a regular file")
            members.append((rel, member))
        top, cut = _strip_top([rel for rel, _ in members])
        source = Source(name or top or _stem(path))
        for rel, member in members:
            inner = "/".join(rel.split("/")[cut:])
            if not _wanted(inner, source):
                continue
            _check_size(member.name, member.size)
            handle = archive.extractfile(member)
            if handle is None:
                raise TaskPluginError(f"archive member {member.name!r} cannot be read")
            data = handle.read(MAX_FILE_BYTES + 1)
            _check_size(member.name, len(data))
            source.add(inner, data)
    return source


def _read_zip(path: Path, name: str | None) -> Source:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TaskPluginError(f"{path}: not a readable zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise TaskPluginError(f"{path}: more than {MAX_MEMBERS} members")
        members = []
        for info in infos:
            rel = _member_path(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise TaskPluginError(f"archive member {info.filename!r}: links are refused")
            if info.is_dir():
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise TaskPluginError(f"archive member {info.filename!r}: not a regular file")
            members.append((rel, info))
        top, cut = _strip_top([rel for rel, _ in members])
        source = Source(name or top or _stem(path))
        for rel, info in members:
            inner = "/".join(rel.split("/")[cut:])
            if not _wanted(inner, source):
                continue
            _check_size(info.filename, info.file_size)
            with archive.open(info) as handle:
                data = handle.read(MAX_FILE_BYTES + 1)  # the declared size may lie
            _check_size(info.filename, len(data))
            source.add(inner, data)
    return source


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
