"""A job's own training photos: the user's uploads (photos, or zips of photos) made safe.

Every photo goes through the upload rules (``images.open_image``: the raster-format allowlist, the
pixel cap read from the header, at most ``MAX_UPLOAD_BYTES`` a file) and is re-encoded as a JPEG
into the job's ``photos/`` folder, so the trainer never reads a byte the user sent. Decoding is the
cost a few bytes can buy (a 131 KB single-colour PNG of 40 MP takes seconds), so a photo is capped
at ``Limits.photo_pixels`` before it is decoded, a JPEG decodes at the reduced scale the job keeps,
one request decodes at most ``Limits.photos_pixels`` in all, and a request whose client has gone
(``stop``) ends between two photos. A zip is read
entry by entry into memory, never extracted: its names are never used as paths, and one that tries
to climb out (absolute, ``..``) refuses the whole archive, as does a zip bomb (more entries, or more
bytes once inflated, than the limits allow, or a compression ratio no photo has).
"""
from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..data import IMAGE_SUFFIXES
from ..images import MAX_UPLOAD_BYTES, ImageError, limit_size, open_bytes
from .job import JobError, Limits

PHOTO_SIDE = 1024  # the longest side kept: training crops are at most 512 px
MAX_RATIO = 100  # inflated / compressed bytes: photos barely compress, a bomb compresses 1000-fold


def import_photos(sources: list[str | Path], folder: Path, limits: Limits = Limits(),
                  stop: Callable[[], bool] = lambda: False) -> int:
    """Decode the user's photos and zips into ``folder`` as JPEGs; returns how many. An unreadable photo
    (or one over ``limits.photo_pixels``) is skipped; JobError (one line) when none is readable, an
    archive breaks the rules, the photos decode to more than ``limits.photos_pixels`` or ``stop()``
    says the request's client has gone."""
    folder.mkdir(parents=True, exist_ok=True)
    count = tried = decoded = 0
    budget = Budget(limits.photos_bytes)
    for source in sources:
        for name, data in photo_bytes(Path(source), limits, budget):
            if stop():
                raise JobError("training photos: the request was abandoned before its photos were read")
            tried += 1
            try:
                img, _ = open_bytes(data, limits.photo_pixels, draft=(PHOTO_SIDE, PHOTO_SIDE))
            except ImageError:
                continue  # like the trainer's scan: an unreadable photo is skipped, not fatal
            decoded += img.width * img.height
            if decoded > limits.photos_pixels:
                raise JobError(f"training photos: over {limits.photos_pixels / 1e6:,.0f} million pixels to decode in "
                               "all; send fewer or smaller photos")
            if count >= limits.photos:
                raise JobError(f"training photos: more than {limits.photos} photos; send at most {limits.photos}")
            limit_size(img, PHOTO_SIDE).save(folder / f"{count:05d}.jpg", quality=92)
            count += 1
    if not count:
        named = f"{tried} file" + ("" if tried == 1 else "s")
        raise JobError(f"training photos: no readable jpg/png/webp photo in what was sent ({named} named as a photo, "
                       "inside zips too; other files are ignored)")
    return count


def photo_bytes(source: Path, limits: Limits, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every photo in ``source``: the file itself, or each photo entry of a zip,
    each paid for from ``budget``."""
    if source.suffix.lower() != ".zip":
        size = source.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise JobError(f"{source.name}: {size / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB "
                           "limit for one photo")
        budget.spend(size, source.name)
        yield source.name, source.read_bytes()
        return
    try:
        with zipfile.ZipFile(source) as archive:
            entries = [e for e in archive.infolist() if not e.is_dir()]
            check_archive(source.name, entries, limits)
            for entry in entries:
                if Path(entry.filename).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                budget.spend(entry.file_size, source.name)
                with archive.open(entry) as f:
                    data = f.read(MAX_UPLOAD_BYTES + 1)  # the header's size is a claim: read no more than allowed
                if len(data) > MAX_UPLOAD_BYTES:
                    raise JobError(f"{source.name}: {entry.filename} is over the "
                                   f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB limit for one photo")
                yield entry.filename, data
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error,
            OSError) as exc:  # zlib.error: a damaged deflate stream; OSError: a damaged bzip2 or lzma one
        raise JobError(f"{source.name}: not a readable zip ({exc})") from None


def check_archive(name: str, entries: list[zipfile.ZipInfo], limits: Limits) -> None:
    """Refuse, before reading any entry, an archive with a name that climbs out, or one that is a bomb."""
    if len(entries) > limits.zip_entries:
        raise JobError(f"{name}: {len(entries):,} files, over the limit of {limits.zip_entries:,} in one zip")
    for entry in entries:
        parts = PurePosixPath(entry.filename).parts
        if entry.filename.startswith(("/", "\\")) or ".." in parts or PureWindowsPath(entry.filename).drive:
            raise JobError(f"{name}: the entry {entry.filename!r} points outside the archive; refused")
        if entry.file_size > MAX_RATIO * max(entry.compress_size, 1) and entry.file_size > 2**20:
            raise JobError(f"{name}: {entry.filename!r} inflates {entry.file_size // max(entry.compress_size, 1):,}-fold "
                           "(a zip bomb?); refused")
    declared = sum(e.file_size for e in entries)
    if declared > limits.photos_bytes:
        raise JobError(f"{name}: {declared / 2**20:,.0f} MB once unpacked, over the limit of "
                       f"{limits.photos_bytes / 2**20:,.0f} MB of photos")


class Budget:
    """The bytes of photos one request may still send, all files and archives together."""

    def __init__(self, total: int) -> None:
        self.total = self.left = total

    def spend(self, size: int, name: str) -> None:
        self.left -= size
        if self.left < 0:
            raise JobError(f"{name}: the training photos are over the limit of {self.total / 2**20:,.0f} MB")
