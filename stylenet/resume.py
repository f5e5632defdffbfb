"""Continuing training: warm starts from earlier checkpoints (``--init``) and exact resumes of a
stopped run (``--resume``), each checked against the recipe before any step is taken."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_model, load_train_state, read_metadata
from .files import replaced_atomically
from .recipe import RESUME_MUST_MATCH, Recipe
from .step import NormRun
from .transformer import RESIDUAL_BLOCKS
from .weights import sha256_file, total_steps

LOG_COLUMNS = ("step", "content", "style", "tv", "total", "images_per_s", "seconds")


def warm_starts(paths: Sequence[Path], norms: Sequence[str], width: int) -> dict[str, Path]:
    """Which checkpoint starts which norm: one per norm, each of this run's width and one of its norms."""
    chosen: dict[str, Path] = {}
    for path in map(Path, paths):
        meta = read_metadata(path)
        if meta["norm"] not in norms or meta["width"] != width or meta["blocks"] != RESIDUAL_BLOCKS:
            raise ValueError(f"--init {path.name} is a {meta['norm']} width-{meta['width']} {meta['blocks']}-block "
                             f"model; this run trains {'/'.join(norms)} at width {width} with {RESIDUAL_BLOCKS} blocks")
        if meta["norm"] in chosen:
            raise ValueError(f"--init {chosen[meta['norm']].name} and {path.name} are both {meta['norm']} models")
        chosen[meta["norm"]] = path
    missing = [norm for norm in norms if norm not in chosen]
    if chosen and missing:
        raise ValueError(f"--init gives no checkpoint for {', '.join(missing)}")
    return chosen


def warm_start(run: NormRun, path: Path) -> None:
    """Load ``path``'s weights into the run's model (its Adam stays fresh) and record where they came from."""
    model, meta = load_model(path)
    run.model.load_state_dict(model.state_dict())
    # steps: all the training behind the start (its own and its warm start's), where its log ends
    run.init = {"file": path.name, "sha256": sha256_file(path), "style": meta["style"],
                "steps": total_steps(meta),
                "recipe": meta.get("recipe")}


def start_file(init: dict[str, Any] | None) -> tuple[str, str] | None:
    """What identifies a warm start: its file's name and hash (the rest of ``init`` describes it)."""
    return (init["file"], init["sha256"]) if init else None


def check_resumable(saved: dict[str, Any], recipe: Recipe, run: NormRun) -> None:
    theirs = Recipe.from_metadata(saved["recipe"])  # fields newer than the file: their defaults
    diff = [k for k in RESUME_MUST_MATCH if getattr(theirs, k) != getattr(recipe, k)]
    diff += [k for k, theirs, ours in (("norm", saved["norm"], run.norm),
                                       ("init", start_file(saved.get("init")), start_file(run.init)))
             if theirs != ours]
    if diff:
        raise ValueError(f"cannot resume {run.state.name}: the recipe differs from the checkpoint in {', '.join(diff)}")
    if saved["step"] > recipe.steps:
        raise ValueError(f"cannot resume {run.state.name}: it is at step {saved['step']}, "
                         f"beyond --steps {recipe.steps}")


def saved_progress(runs: Sequence[NormRun], recipe: Recipe) -> dict[str, dict[str, Any]]:
    """The metadata of every run's training state, checked against this run; empty for a fresh
    start. The states of a group must all exist and be at the same step."""
    present = [run for run in runs if run.state.is_file()]
    if not present:
        return {}
    if len(present) < len(runs):
        missing = ", ".join(run.state.name for run in runs if run not in present)
        raise ValueError(f"cannot resume: {missing} missing while {present[0].state.name} exists")
    saved = {run.norm: read_metadata(run.state) for run in runs}
    for run in runs:
        check_resumable(saved[run.norm], recipe, run)
    steps = {norm: meta["step"] for norm, meta in saved.items()}
    if len(set(steps.values())) > 1:
        raise ValueError(f"cannot resume: the training states are at different steps ({steps})")
    return saved


def restore(run: NormRun, generator: torch.Generator) -> None:
    """Load the run's training state. Adam's moments come back from the file in the default
    layout; they get their parameter's (channels_last) again, because the fused kernel walks all
    of them in memory order and would otherwise pair each weight with another weight's moments."""
    load_train_state(run.state, run.model, run.optimizer, generator)
    for param, state in run.optimizer.state.items():
        for key, value in state.items():
            if value.shape == param.shape:
                state[key] = torch.empty_like(param).copy_(value)


def prepare_log(path: Path, start: int, columns: Sequence[str] = LOG_COLUMNS) -> float:
    """A fresh CSV with its header, or, when resuming, the old one without the rows logged after
    ``start`` (a killed run logs steps its last checkpoint does not hold; they are trained again).
    Returns the training seconds of the last row kept (0 for a fresh log). ``columns`` start with
    the step and hold ``seconds``."""
    rows: list[list[str]] = []
    if start and path.is_file():
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and row[0].isdigit() and int(row[0]) <= start]
    with replaced_atomically(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([columns, *rows])
    return float(rows[-1][list(columns).index("seconds")]) if rows else 0.0
