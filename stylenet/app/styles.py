"""The styles the app offers: the shipped ones and those trained while it runs, in one registry.

Request threads read the registry like a dict while, in another thread, a job finishes or a user
model is deleted. An update therefore never changes a dict in place: it builds a new one and swaps
the reference, so a reader sees the old set or the new one, never half of either; ``version`` grows
with every change so views know when to refresh their style lists. The user styles come from one
source, the job store: ``refresh`` reads it, and the runner calls ``refresh`` when a job ends.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import gradio as gr
import torch

from ..checkpoint import CheckpointError, load_model
from ..jobs import Job, JobStore, UserStyle
from ..norms import NORM_KINDS
from ..stylize import Stylizer
from ..weights import load_manifest

S = TypeVar("S")
USER_SUFFIX = " (user-trained)"
PAIR = ("batch", "instance")  # the BN-vs-IN views (Why IN?, Video, Webcam) need both
STYLE_LISTS_REFRESH_S = 5.0


@dataclass
class Style:
    """One painting and its models (norm -> stylizer), plus the un-optimized ones for the experiments.

    All requests share these objects, so no request may change them: ``Stylizer`` optimizes a copy
    of its own and the experiments (``stylenet.explain``) run on private copies.
    """

    name: str
    title: str
    painting: Path | None
    models: dict[str, Stylizer]
    raw: dict[str, torch.nn.Module]

    def add(self, norm: str, path: Path) -> None:
        raw, meta = load_model(path)
        self.models[norm] = Stylizer(raw, meta, torch.device("cpu"))
        self.raw[norm] = raw


def load_styles(weights_dir: Path) -> dict[str, Style]:
    """The shipped styles of ``weights_dir``'s manifest (experiments left out), norms in display order."""
    styles: dict[str, Style] = {}
    for entry in sorted(load_manifest(weights_dir), key=lambda e: NORM_KINDS.index(e["norm"])):
        if entry.get("experiment"):
            continue
        style = styles.setdefault(entry["style"], Style(
            entry["style"], entry.get("title", entry["style"]),
            weights_dir / entry["painting"] if entry.get("painting") else None, {}, {}))
        style.add(entry["norm"], weights_dir / entry["file"])
    return styles


def user_style(found: UserStyle) -> Style:
    """A finished training job's models, offered beside the shipped styles."""
    style = Style(found.name, found.name, found.painting, {}, {})
    for norm in sorted(found.files, key=NORM_KINDS.index):
        style.add(norm, found.files[norm])
    return style


def has_pair(style: Style) -> bool:
    """Whether the style has both a BN and an IN model (the filter of the BN-vs-IN style lists)."""
    return set(PAIR) <= set(style.models)


class StyleRegistry(Mapping[str, S], Generic[S]):
    """name -> style object (whatever ``load`` builds from a ``UserStyle``; the app's ``Style``)."""

    def __init__(self, shipped: Mapping[str, S], load: Callable[[UserStyle], S],
                 store: JobStore | None = None) -> None:
        self.shipped = dict(shipped)
        self.load = load
        self.store = store
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

    def refresh(self, jobs: list[Job] | None = None) -> bool:
        """Follow the store's finished jobs (``jobs`` when the caller has just read them); True on a change."""
        return self.store is not None and self.sync(self.store.user_styles(jobs))

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

    def names(self) -> list[str]:
        """Every style's name, the flagship first."""
        return sorted(self, key=lambda n: n != "starry_night")


def pair_of(styles: Mapping[str, Style], style: str) -> dict[str, Stylizer]:
    """The style's BN and IN stylizers; gr.Error (shown in the UI) when it lacks either."""
    if style not in styles or not has_pair(styles[style]):
        raise gr.Error(f"{style!r} needs both a BN and an IN model")
    return {norm: styles[style].models[norm] for norm in PAIR}


def style_dropdown(styles: Mapping[str, Style], names: list[str], pairs_only: bool = True) -> gr.Dropdown:
    """A style list; custom values let styles trained while the app runs through (in every session
    and the API). ``pairs_only``: the styles with a BN and an IN model."""
    shown = [n for n in names if has_pair(styles[n]) or not pairs_only]
    return gr.Dropdown(shown, value=shown[0] if shown else None, label="Style", allow_custom_value=True)


def style_lists(registry: StyleRegistry, dropdowns: list[tuple[gr.Dropdown, Callable]]) -> None:
    """Keep the tabs' style dropdowns in step with the registry (a job finished, a model was deleted).

    Built outside any tab, so it ticks whichever tab is open. ``dropdowns`` pairs each dropdown with
    a filter on the styles it may list; the shipped styles keep the dropdown's own order.
    """
    order = {id(dd): [value for _, value in dd.choices] for dd, _ in dropdowns}

    def update(version: int):
        registry.refresh()
        if version == registry.version:
            return [gr.skip()] * len(dropdowns) + [version]
        updates = []
        for dd, keep in dropdowns:
            first = order[id(dd)]
            choices = sorted(registry.choices(keep), key=lambda c: first.index(c[1]) if c[1] in first else len(first))
            updates.append(gr.update(choices=choices))
        return updates + [registry.version]

    version = gr.State(0)
    gr.Timer(STYLE_LISTS_REFRESH_S).tick(update, version, [dd for dd, _ in dropdowns] + [version], api_name=False,
                                         show_progress="hidden")
