"""The inputs of batch stylization: files, folders and glob patterns on this machine, or files and
folders on any filesystem pyarrow opens (``s3://``, ``gs://``, ``hdfs://``, ``file://``). Each input
file comes with the root its output name is taken relative to, so both engines of ``stylenet
stylize`` (local and Ray) name, mirror and refuse outputs by one rule.
"""
from __future__ import annotations

import glob
import io
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import IO

from .data import IMAGE_SUFFIXES
from .images import VECTOR_SUFFIXES
from .video import VIDEO_SUFFIXES

# What a folder contributes: beyond the photos and clips, formats that are tried so they get a reason.
WANTED = IMAGE_SUFFIXES | {".gif", ".bmp", ".tif", ".tiff"} | VECTOR_SUFFIXES | VIDEO_SUFFIXES


class SourceError(ValueError):
    """An input that names nothing readable (a remote filesystem that cannot be opened)."""


@dataclass(frozen=True)
class Source:
    """One input file: its path (on this machine, or inside a remote filesystem), the folder its output
    name is relative to, and for a remote file its URI."""

    path: PurePath
    root: PurePath
    uri: str | None = None

    def __str__(self) -> str:
        return self.uri or str(self.path)

    def open(self) -> Path | IO[bytes]:
        """The local path, or the remote file's bytes as a named file object (for ``open_image``)."""
        if self.uri is None:
            return Path(self.path)
        fs, inner = remote_filesystem(self.uri)
        with fs.open_input_file(inner) as f:
            data = io.BytesIO(f.read())
        data.name = self.uri
        return data


def is_uri(text: str) -> bool:
    return "://" in text


def remote_filesystem(uri: str):  # -> tuple[pyarrow.fs.FileSystem, str]
    """pyarrow's filesystem for ``uri`` and the path inside it (pyarrow comes with the ``ray`` extra)."""
    try:
        from pyarrow import fs
    except ImportError:
        raise SourceError(f"{uri}: reading URIs needs pyarrow (pip install 'stylenet[ray]')") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{uri}: cannot open ({exc})") from None


def remote_sources(uri: str, recursive: bool) -> list[Source]:
    """The file a URI names, or the wanted files of the folder it names."""
    from pyarrow import fs as pafs

    filesystem, inner = remote_filesystem(uri)
    scheme = uri[:uri.index("://") + 3]
    info = filesystem.get_file_info(inner)
    if info.type == pafs.FileType.File:
        path = PurePosixPath(inner)
        return [Source(path, path.parent, uri)]
    if info.type != pafs.FileType.Directory:
        raise SourceError(f"{uri}: no such file or folder")
    found = filesystem.get_file_info(pafs.FileSelector(inner, recursive=recursive))
    return sorted((Source(PurePosixPath(i.path), PurePosixPath(inner), scheme + i.path) for i in found
                   if i.type == pafs.FileType.File and PurePosixPath(i.path).suffix.lower() in WANTED), key=str)


def local_sources(item: str, recursive: bool) -> list[Source]:
    """A file (always tried), a folder's wanted files (rooted at the folder, so sub-folders are mirrored),
    or the files a glob pattern matches (each rooted at its own folder)."""
    path = Path(item)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return [Source(p, path) for p in sorted(path.glob(pattern)) if p.is_file() and p.suffix.lower() in WANTED]
    if not path.exists() and glob.has_magic(item):
        return [Source(Path(p), Path(p).parent) for p in sorted(glob.glob(item, recursive=recursive))
                if Path(p).is_file()]
    return [Source(path, path.parent)]


def collect(inputs: list[str], recursive: bool) -> list[Source]:
    """Every input file once, in the order given (a file reached twice is stylized once)."""
    found: dict[str, Source] = {}
    for item in inputs:
        for source in remote_sources(item, recursive) if is_uri(item) else local_sources(item, recursive):
            found.setdefault(source.uri or str(Path(source.path).resolve()), source)
    return list(found.values())
