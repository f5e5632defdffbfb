"""Writing a file whole or not at all: readers (another thread, process or a later run) never see half
of one, and a crash or a Ctrl-C mid-write leaves the old file, not a broken one under its name."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AtomicFile:
    """A temporary path to write the whole new ``path`` to, for a writer that outlives one block (a clip
    written frame by frame): ``commit`` renames it over ``path``, ``discard`` deletes it.

    The temporary file is in the same folder (a rename within one file system is atomic) and its
    name is unique to this writer (pid and a random part), so two writers of one file never write
    into each other's half-finished file: the last rename wins, whole.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")

    def commit(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary path (``AtomicFile``) to write the whole new ``path`` to; when the block ends it is
    renamed over ``path``, or deleted if the block raised."""
    target = AtomicFile(path)
    try:
        yield target.tmp
        target.commit()
    except BaseException:
        target.discard()
        raise
