"""The app's styles: the shipped ones plus user-trained ones that come and go while it runs.

Request threads read it like a dict while, in another thread, a job finishes or a user model is
deleted. An update therefore never changes a dict in place: it builds a new one and swaps the
reference, so a reader sees the old set or the new one, never half of either; ``version`` grows
with every change so views know when to refresh their style lists.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from .checkpoint import CheckpointError
from .jobs import UserStyle

S = TypeVar("S")
USER_SUFFIX = " (user-trained)"


class StyleRegistry(Mapping[str, S], Generic[S]):
    """name -> style object (whatever ``load`` builds from a ``UserStyle``; the app's ``Style``)."""

    def __init__(self, shipped: Mapping[str, S], load: Callable[[UserStyle], S]) -> None:
        self.shipped = dict(shipped)
        self.load = load
        self.user: dict[str, S] = {}
        self.loaded: dict[str, tuple] = {}  # name -> the job and files it was loaded from
        self.all: dict[str, S] = dict(self.shipped)
        self.version = 0
        self.sync_lock = threading.Lock()

    def __getitem__(self, name: str) -> S:
        return self.all[name]

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self.all))

    def __len__(self) -> int:
        return len(self.all)

    def sync(self, found: list[UserStyle]) -> bool:
        """Make the user styles exactly ``found`` (loading only new ones); True when anything changed.

        A style whose model files fail the loader (a ``CheckpointError`` or other ``ValueError``, an
        ``OSError``) is left out. It is tried again only when ``found`` differs from the last call's
        (a job finished or was deleted): styles are compared by name, job id and norms, never by file
        contents, so a rewritten file alone does not trigger a retry (a finished job's files are not
        rewritten), and an unchanged broken one costs no load per refresh.
        """
        with self.sync_lock:
            wanted = {s.name: (s.job_id, tuple(sorted(s.files))) for s in found if s.name not in self.shipped}
            if wanted == self.loaded:
                return False
            user = {}
            for style in found:
                if style.name not in wanted:
                    continue
                if self.loaded.get(style.name) == wanted[style.name] and style.name in self.user:
                    user[style.name] = self.user[style.name]
                    continue
                try:
                    user[style.name] = self.load(style)
                except (CheckpointError, ValueError, OSError):  # CheckpointError is a ValueError: named for the reader
                    continue
            self.user, self.loaded = user, wanted
            self.all = {**self.shipped, **user}
            self.version += 1
            return True

    def choices(self, keep: Callable[[S], bool] = lambda style: True) -> list[tuple[str, str]]:
        """(label, name) pairs for a dropdown: shipped styles first, then the user's, marked as such."""
        snapshot, user = self.all, self.user
        return [(name + USER_SUFFIX if name in user else name, name) for name, style in snapshot.items() if keep(style)]
