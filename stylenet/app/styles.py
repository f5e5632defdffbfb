"""The styles the app offers: the shipped ones and those trained in the app, each to its owner.

Request threads read the registry while, in another thread, a job finishes or a user model is
deleted. An update never changes the dict of finished styles in place: it builds a new one and swaps
the reference, so a reader sees the old set or the new one, never half of either. The user styles
come from one source, the job store: ``refresh`` reads it, and the runner calls ``refresh`` when a
job ends. Each request sees ``registry.view(owner)``: the shipped styles and its owner's.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import gradio as gr
import torch

from ..checkpoint import load_model
from ..jobs import Job, JobStore, UserStyle
from ..norms import NORM_KINDS
from ..stylize import Stylizer
from ..weights import FAST, in_weights, load_manifest
from .errors import user_error
from .queueing import LIGHT
from .sessions import Sessions

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
    fast: dict[str, Stylizer] = field(default_factory=dict)  # norm -> its slim student, where one is shipped

    def add(self, norm: str, path: Path) -> None:
        raw, meta = load_model(path)
        self.models[norm] = Stylizer(raw, meta, torch.device("cpu"))
        self.raw[norm] = raw

    def variant(self, name: str) -> dict[str, Stylizer]:
        """norm -> the model to run for ``name``: "full", or "fast" (each norm's slim student where there
        is one, else its full model)."""
        return self.models if name != FAST else {norm: self.fast.get(norm, full) for norm, full in self.models.items()}


def load_styles(weights_dir: Path) -> dict[str, Style]:
    """The shipped styles of ``weights_dir``'s manifest (experiments left out), norms in display order.

    Entry by entry: one that names a file outside the weights folder, or whose model does not load,
    is left out with its reason on stderr, and the app starts with the others.
    """
    styles: dict[str, Style] = {}
    entries = load_manifest(weights_dir)
    for entry in sorted(entries, key=lambda e: NORM_KINDS.index(e["norm"]) if e.get("norm") in NORM_KINDS else 99):
        if entry.get("experiment"):
            continue
        try:
            name, norm = entry["style"], entry["norm"]
            model = in_weights(weights_dir, entry["file"])
            painting = in_weights(weights_dir, entry["painting"]) if entry.get("painting") else None
            style = styles.get(name) or Style(name, entry.get("title", name), painting, {}, {})
            style.add(norm, model)
        except Exception as exc:  # noqa: BLE001 - one bad entry is skipped, whatever the loader raised
            print(f"stylenet app: manifest entry {entry.get('file')!r} skipped: {one_line(exc)}",
                  file=sys.stderr, flush=True)
            continue
        styles[name] = style
    for entry in load_manifest(weights_dir, FAST):  # the slim students of the styles loaded above
        try:
            raw, meta = load_model(in_weights(weights_dir, entry["file"]))
            styles[entry["style"]].fast[entry["norm"]] = Stylizer(raw, meta, torch.device("cpu"))
        except Exception as exc:  # noqa: BLE001 - as above: one bad entry is skipped
            print(f"stylenet app: fast model {entry.get('file')!r} skipped: {one_line(exc)}", file=sys.stderr, flush=True)
    return styles


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def user_style(found: UserStyle) -> Style:
    """A finished training job's models, offered beside the shipped styles."""
    style = Style(found.name, found.name, found.painting, {}, {})
    for norm in sorted(found.files, key=NORM_KINDS.index):
        style.add(norm, found.files[norm])
    return style


def has_pair(norms: Iterable[str]) -> bool:
    """Whether a style with these models has both BN and IN (the filter of the BN-vs-IN style lists)."""
    return set(PAIR) <= set(norms)


class StyleRegistry(Generic[S]):
    """The shipped styles and the finished jobs' styles, and which of them each owner may use.

    A finished job's style is known by its ``UserStyle`` (names and files: no model is read) and
    belongs to the job's owner; with ``shared`` (the operator's choice, ``--share-styles``) every
    owner sees every finished style. Its models are loaded the first time a request uses them, and
    only the ``keep_loaded`` most recently used user styles stay in memory. A style whose models
    fail to load (any exception: a corrupt file, a torch ``RuntimeError``) is logged once and left out.
    """

    def __init__(self, shipped: Mapping[str, S], load: Callable[[UserStyle], S],
                 store: JobStore | None = None, shared: bool = False, keep_loaded: int = 4) -> None:
        self.shipped = dict(shipped)
        self.load, self.store, self.shared, self.keep_loaded = load, store, shared, keep_loaded
        # (owner, name) -> a finished job's style (shipped names left out): a name is unique per owner only
        self.found: dict[tuple[str, str], UserStyle] = {}
        self.loaded: OrderedDict[str, S] = OrderedDict()  # job id -> its loaded style, LRU order
        self.broken: set[str] = set()  # job ids whose models failed to load
        self.lock = threading.Lock()

    def refresh(self, jobs: list[Job] | None = None) -> bool:
        """Follow the store's finished jobs (``jobs`` when the caller has just read them); True on a change."""
        return self.store is not None and self.sync(self.store.user_styles(jobs))

    def sync(self, found: list[UserStyle]) -> bool:
        """Make the finished styles exactly ``found`` (no model is read); True when anything changed.
        Styles are compared by name, job id, owner and norms, never by file contents."""
        wanted = {(s.owner, s.name): s for s in found if s.name not in self.shipped}
        with self.lock:
            if wanted == self.found:
                return False
            self.found = wanted
            jobs = {s.job_id for s in wanted.values()}
            for job in [j for j in self.loaded if j not in jobs]:
                del self.loaded[job]
            return True

    def visible(self, owner: str | None) -> dict[str, UserStyle]:
        """The finished styles ``owner`` may use, by name: its own, or all of them when styles are shared
        (where two owners chose one name, the owner's own comes first, else the oldest)."""
        usable = [s for s in self.found.values()
                  if s.job_id not in self.broken and (self.shared or (owner is not None and s.owner == owner))]
        named: dict[str, UserStyle] = {}
        for style in sorted(usable, key=lambda s: s.owner != owner):  # stable: oldest first within each
            named.setdefault(style.name, style)
        return named

    def view(self, owner: str | None) -> StyleView:
        """The styles ``owner`` may use, as a name -> style mapping (user styles load when looked up)."""
        return StyleView(self, self.visible(owner))

    def painting(self, owner: str | None, name: str) -> Path | None:
        """The painting of a style ``owner`` may use (None when it has none, or there is no such style),
        from what the registry knows: no model is loaded, so a light request (a dropdown change) stays light."""
        if name in self.shipped:
            return getattr(self.shipped[name], "painting", None)
        found = self.visible(owner).get(name)
        return found.painting if found else None

    def get_user(self, found: UserStyle) -> S:
        """The loaded style of a finished job (loading it, and unloading the least recently used); KeyError
        when its models do not load."""
        with self.lock:
            if found.job_id in self.broken:
                raise KeyError(found.name)
            if found.job_id in self.loaded:
                self.loaded.move_to_end(found.job_id)
                return self.loaded[found.job_id]
            try:
                style = self.load(found)
            except Exception as exc:  # noqa: BLE001 - a bad user model must not break any page
                print(f"stylenet app: user style {found.name!r} left out: {one_line(exc)}", file=sys.stderr, flush=True)
                self.broken.add(found.job_id)
                raise KeyError(found.name) from None
            self.loaded[found.job_id] = style
            while len(self.loaded) > self.keep_loaded:
                self.loaded.popitem(last=False)
            return style

    def choices(self, owner: str | None, keep: Callable[[Iterable[str]], bool] = lambda norms: True) -> list[tuple[str, str]]:
        """(label, name) pairs for a dropdown: shipped styles first, then the owner's, marked as such.
        ``keep`` filters by the style's norms."""
        shipped = [(title_of(style, name), name) for name, style in self.shipped.items() if keep(norms_of(style))]
        return shipped + [(name + USER_SUFFIX, name) for name, s in self.visible(owner).items() if keep(s.files)]

    def names(self) -> list[str]:
        """Every shipped style's name, the flagship first."""
        return sorted(self.shipped, key=lambda n: n != "starry_night")


def title_of(style: object, name: str) -> str:
    """What a newcomer reads in a style list: the painting's title from the manifest (an app ``Style``'s),
    else the style's name."""
    return getattr(style, "title", None) or name


def norms_of(style: object) -> Iterable[str]:
    """A shipped style's norms (an app ``Style``'s models; any other object, as tests use: none known)."""
    return getattr(style, "models", ())


class StyleView(Mapping[str, S]):
    """What one owner may use: the shipped styles and its visible finished ones. ``in`` and iteration
    read names only; looking a user style up loads it (KeyError when it does not load)."""

    def __init__(self, registry: StyleRegistry[S], user: dict[str, UserStyle]) -> None:
        self.registry, self.user = registry, user

    def __getitem__(self, name: str) -> S:
        if name in self.registry.shipped:
            return self.registry.shipped[name]
        return self.registry.get_user(self.user[name])

    def __contains__(self, name: object) -> bool:
        return name in self.registry.shipped or name in self.user

    def __iter__(self) -> Iterator[str]:
        return iter([*self.registry.shipped, *self.user])

    def __len__(self) -> int:
        return len(self.registry.shipped) + len(self.user)


def find_style(styles: Mapping[str, Style], name: str) -> Style:
    """The style called ``name``; gr.Error (shown in the UI) naming the choices when there is none."""
    try:
        return styles[name]
    except (KeyError, TypeError):
        raise user_error(f"Unknown style {name!r}; choose one of: {', '.join(styles)}") from None


def pair_of(styles: Mapping[str, Style], style: str) -> dict[str, Stylizer]:
    """The style's BN and IN stylizers; gr.Error (shown in the UI) when it lacks either."""
    found = find_style(styles, style)
    if not has_pair(found.models):
        raise user_error(f"{style!r} needs both a BN and an IN model")
    return {norm: found.models[norm] for norm in PAIR}


def style_dropdown(styles: Mapping[str, Style], names: list[str], pairs_only: bool = True) -> gr.Dropdown:
    """A style list; custom values let styles trained while the app runs through (in every session
    and the API). ``pairs_only``: the styles with a BN and an IN model."""
    shown = [n for n in names if has_pair(styles[n].models) or not pairs_only]
    return gr.Dropdown([(title_of(styles[n], n), n) for n in shown], value=shown[0] if shown else None,
                       label="Style", allow_custom_value=True)


def style_lists(registry: StyleRegistry, sessions: Sessions, dropdowns: list[tuple[gr.Dropdown, Callable]]) -> None:
    """Keep the tabs' style dropdowns in step with what this page's owner may use (a job of theirs
    finished, a model was deleted).

    Built outside any tab, so it ticks whichever tab is open. ``dropdowns`` pairs each dropdown with
    a filter on the norms of the styles it may list; the shipped styles keep the dropdown's own order.
    """
    order = {id(dd): [value for _, value in dd.choices] for dd, _ in dropdowns}

    def update(drawn: list, request: gr.Request):
        registry.refresh()
        owner = sessions.owner(request)
        lists = [registry.choices(owner, keep) for _, keep in dropdowns]
        if lists == drawn:
            return [gr.skip()] * len(dropdowns) + [drawn]
        updates = []
        for (dd, _), choices in zip(dropdowns, lists):
            first = order[id(dd)]
            updates.append(gr.update(choices=sorted(choices, key=lambda c: first.index(c[1]) if c[1] in first
                                                    else len(first))))
        return updates + [lists]

    drawn = gr.State([])
    gr.Timer(STYLE_LISTS_REFRESH_S).tick(update, drawn, [dd for dd, _ in dropdowns] + [drawn], api_name=False,
                                         show_progress="hidden", **LIGHT)
