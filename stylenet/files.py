"""Writing a file whole or not at all: readers (another thread, process or a later run) never see half
of one, and a crash or a Ctrl-C mid-write leaves the old file, not a broken one under its name."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the whole new ``path`` to; when the block ends it is renamed over
    ``path``, or deleted if the block raised.

    The temporary file is in the same folder (a rename within one file system is atomic) and its
    name is unique to this writer (pid and a random part), so two writers of one file never write
    into each other's half-finished file: the last rename wins, whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
