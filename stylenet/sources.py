"""The inputs of batch stylization: files, folders and glob patterns on this machine, or files and
folders on any filesystem pyarrow opens (``s3://``, ``gs://``, ``hdfs://``, ``file://``). Each input
file comes with the root its output name is taken relative to, so both engines of ``stylenet
stylize`` (local and Ray) name, mirror and refuse outputs by one rule: a folder's files, and a glob
pattern's, are rooted at the folder (the pattern's fixed leading folders), so sub-folders are mirrored.
"""
from __future__ import annotations

import glob
import io
import itertools
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from types import ModuleType
from typing import IO, Any

from .data import IMAGE_SUFFIXES
from .images import VECTOR_SUFFIXES
from .video import VIDEO_SUFFIXES

# What a folder contributes: beyond the photos and clips, formats that are tried so they get a reason.
WANTED = IMAGE_SUFFIXES | {".gif", ".bmp", ".tif", ".tiff"} | VECTOR_SUFFIXES | VIDEO_SUFFIXES


class SourceError(ValueError):
    """An input that cannot be listed or opened as given (a remote filesystem, pyarrow missing)."""


@dataclass(frozen=True)
class Source:
    """One input file: its path (on this machine, or inside a remote filesystem), the folder its output
    name is relative to, and for a remote file the URI the user gave, whose filesystem (with its host,
    port and query options) holds ``path``."""

    path: PurePath
    root: PurePath
    remote: str | None = None
    label: str | None = None  # a remote file's name in failure lines: its URI without the query

    def __str__(self) -> str:
        return self.label or str(self.path)

    def open(self) -> Path | IO[bytes]:
        """The local path, or the remote file's bytes as a named file object (for ``open_image``).
        Raises OSError when the remote file cannot be read."""
        if self.remote is None:
            return Path(self.path)
        filesystem, _ = remote_filesystem(self.remote)
        with filesystem.open_input_file(str(self.path)) as f:
            data = io.BytesIO(f.read())
        data.name = str(self)
        return data


def is_uri(text: str) -> bool:
    return "://" in text


def pyarrow_fs() -> ModuleType:
    """pyarrow's filesystem module (pyarrow comes with the ``ray`` extra)."""
    try:
        from pyarrow import fs
    except ImportError:
        raise SourceError("reading URIs needs pyarrow: pip install 'stylenet[ray]'") from None
    return fs


def remote_filesystem(uri: str) -> tuple[Any, str]:
    """pyarrow's filesystem for ``uri`` and the path inside it."""
    try:
        return pyarrow_fs().FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{uri}: cannot open ({exc})") from None


def remote_sources(uri: str, recursive: bool) -> list[Source]:
    """The file a URI names, or the wanted files of the folder it names."""
    fs = pyarrow_fs()
    filesystem, inner = remote_filesystem(uri)
    try:
        info = filesystem.get_file_info(inner)
        base = uri.split("?", 1)[0].rstrip("/")
        if info.type == fs.FileType.File:
            path = PurePosixPath(inner)
            return [Source(path, path.parent, uri, base)]
        if info.type != fs.FileType.Directory:
            raise SourceError(f"{uri}: no such file or folder")
        found = filesystem.get_file_info(fs.FileSelector(inner, recursive=recursive))
    except OSError as exc:
        raise SourceError(f"{uri}: cannot list ({exc})") from None
    root = PurePosixPath(inner)
    return sorted((Source(path, root, uri, f"{base}/{path.relative_to(root)}")
                   for path in (PurePosixPath(i.path) for i in found if i.type == fs.FileType.File)
                   if path.suffix.lower() in WANTED), key=str)


def glob_root(pattern: str) -> Path:
    """The pattern's leading folders without wildcards (``photos/**/*.jpg`` -> ``photos``)."""
    parts = Path(pattern).parts[:-1]
    return Path(*itertools.takewhile(lambda part: not glob.has_magic(part), parts)) if parts else Path(".")


def local_sources(item: str, recursive: bool) -> list[Source]:
    """A file (always tried: a missing one gets its reason), a folder's wanted files, or the wanted
    files a glob pattern matches (``**`` with ``recursive``)."""
    path = Path(item)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return [Source(p, path) for p in sorted(path.glob(pattern)) if p.is_file() and p.suffix.lower() in WANTED]
    if not path.exists() and glob.has_magic(item):
        root = glob_root(item)
        matches = [Path(p) for p in sorted(glob.glob(item, recursive=recursive))]
        wanted = [Source(p, root) for p in matches if p.is_file() and p.suffix.lower() in WANTED]
        return wanted or [Source(path, path.parent)]  # matching nothing: one "no such file" line
    return [Source(path, path.parent)]


def collect(inputs: list[str], recursive: bool) -> list[Source]:
    """Every input file once, in the order given (a file reached twice is stylized once)."""
    found: dict[str, Source] = {}
    for item in inputs:
        for source in remote_sources(item, recursive) if is_uri(item) else local_sources(item, recursive):
            found.setdefault(str(source) if source.remote else str(Path(source.path).resolve()), source)
    return list(found.values())
