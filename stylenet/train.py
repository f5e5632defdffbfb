"""Training feed-forward style networks: the perceptual-loss recipe of Johnson et al.

``Recipe`` holds everything that defines a run except the norm, because one run trains one model
per norm in ``norms`` on exactly the same batches: one data stream (each batch is drawn once), one
VGG, one set of style Grams, one content-target pass per batch; each model has its own Adam,
checkpoint, training state and CSV log. A BN-vs-IN comparison trained this way is fair by
construction, and cheaper than separate runs.

A run can warm-start from existing checkpoints (``init``), continues exactly where it stopped
(``resume``), reports to a ``Listener`` (the measured step time and the run's estimated duration
before the first step; losses, images/s and ETA after every step; ``should_stop`` ends it within a
step, keeping a checkpoint), and never overwrites a good checkpoint with a diverged one.
"""
from __future__ import annotations

import csv
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import check_style_name, read_metadata, save_model, save_train_state
from .data import ContentPhotos
from .distributed import DataParallel
from .recipe import (
    DEFAULT_PRESET,
    PRESETS,
    Recipe,
    learning_rate,
    provenance,
    style_weight,
)
from .resume import (
    LOG_COLUMNS,
    prepare_log,
    restore,
    saved_progress,
    warm_start,
    warm_starts,
)
from .runtime import pick_device
from .step import (
    NormRun,
    StepMode,
    TrainingDiverged,
    TrainStep,
    best_path,
    measure_step,
    new_run,
    state_path,
    style_targets,
)
from .transformer import TransformerNet
from .vgg import STYLE_LAYERS, VGGFeatures

# The names a caller of training needs, importable from here as before the split into recipe.py,
# step.py and resume.py.
__all__ = ["DEFAULT_PRESET", "PRESETS", "Listener", "Recipe", "RunStart", "StepEvent", "StepMode", "TrainStep",
           "TrainingDiverged", "best_path", "learning_rate", "new_run", "output_paths", "state_path",
           "style_targets", "style_weight", "train"]


@dataclass(frozen=True)
class RunStart:
    """What a run is about to do, sent to ``Listener.on_start`` before its first step."""

    norms: tuple[str, ...]
    outs: tuple[Path, ...]
    start: int  # the first step to run: 0, or where a resumed run continues
    steps: int
    photos: int
    skipped: tuple[Path, ...]  # unreadable files in the content folder
    step_seconds: float  # measured on copies of the models before the first step

    @property
    def eta_seconds(self) -> float:
        return (self.steps - self.start) * self.step_seconds


@dataclass(frozen=True)
class StepEvent:
    """One finished step, sent to ``Listener.on_step``. ``losses[norm]`` holds the weighted content,
    style, TV and total loss of that step. ``images_per_s`` counts each batch image once however
    many models it trains. ``models`` are the live networks in training mode: to preview one, use
    ``torch.no_grad()`` and ``model.eval()``, then ``model.train()`` (BN must not learn from it)."""

    step: int
    steps: int
    losses: dict[str, dict[str, float]]
    images_per_s: float
    eta_seconds: float
    elapsed_seconds: float
    models: dict[str, TransformerNet] = field(repr=False)
    skipped: tuple[str, ...] = ()  # norms whose update the spike guard refused at this step


class Listener:
    """Receives a run's progress; override what you need (the CLI's progress bar and a UI worker
    are listeners). Called in the training thread between steps, so keep each call short."""

    def on_scan(self, done: int, total: int) -> None:
        """``done`` of ``total`` training photos read."""

    def on_start(self, start: RunStart) -> None:
        """The run is about to begin."""

    def on_step(self, event: StepEvent) -> None:
        """A step has finished."""

    def should_stop(self) -> bool:
        """Asked after every step; True ends the run there, with a checkpoint of every model."""
        return False


class Pace:
    """Smoothed seconds per step (an exponential average seeded with the measured step time): the
    images/s and ETA shown while training."""

    def __init__(self, step_seconds: float, batch_size: int, smoothing: float = 0.1, before: float = 0.0) -> None:
        """``before``: seconds the run had trained before this process (a resumed run's log goes on)."""
        self.step_seconds, self.batch_size, self.smoothing = step_seconds, batch_size, smoothing
        self.last = time.perf_counter()
        self.started = self.last - before

    def tick(self) -> None:
        now = time.perf_counter()
        self.step_seconds += self.smoothing * (now - self.last - self.step_seconds)
        self.last = now

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.step_seconds

    @property
    def elapsed(self) -> float:
        return self.last - self.started


def output_paths(pattern: str | Path, style: str, norms: Sequence[str], suffix: str) -> dict[str, Path]:
    """Where each norm's file goes. A name ending in ``suffix`` is used as it is for one norm; with
    ``{norm}`` in it, it is filled in per norm; anything else is a folder that receives
    ``{style}_{norm}{suffix}`` (the names weights/ uses)."""
    pattern = str(pattern)
    if not pattern.endswith(suffix):
        return {norm: Path(pattern) / f"{style}_{norm}{suffix}" for norm in norms}
    if "{norm}" in pattern:
        return {norm: Path(pattern.replace("{norm}", norm)) for norm in norms}
    if len(norms) > 1:
        raise ValueError(f"several norms need a folder or a {suffix} name containing {{norm}}, not {pattern}")
    return {norms[0]: Path(pattern)}


def train(recipe: Recipe, norms: Sequence[str], out: str | Path, *, init: Sequence[Path] = (),
          resume: bool = False, log: str | Path | None = None, device: str = "auto",
          listener: Listener | None = None, mode: StepMode | None = None,
          parallel: DataParallel | None = None) -> dict[str, dict[str, Any]]:
    """Train one model per norm on the same batches; returns each norm's model metadata.

    ``out`` (and ``log``, default: each model's name with ``.csv``) follow ``output_paths``.
    ``init``: checkpoints to warm-start from, one per norm. ``resume``: continue from the training
    states beside the outputs when they exist (a finished run is left as it is). ``parallel``: this
    process is one rank of a torchrun (``distributed.py``): it trains on its share of every batch,
    and rank 0 alone writes files and reports to ``listener``.
    """
    check_style_name(recipe.style_name)  # the painting's name is refused now, not at the first checkpoint
    norms = list(dict.fromkeys(norms))
    dev = pick_device(device)
    mode = mode or StepMode.fast(dev)
    main = parallel is None or parallel.is_main
    listener = listener if listener and main else Listener()
    share = parallel.check_batch(recipe.batch_size) if parallel else recipe.batch_size
    outs = output_paths(out, recipe.style_name, norms, ".safetensors")
    logs = (output_paths(log, recipe.style_name, norms, ".csv") if log
            else {norm: path.with_suffix(".csv") for norm, path in outs.items()})
    runs = [new_run(norm, recipe, mode, dev, outs[norm], logs[norm]) for norm in norms]
    starts = warm_starts(init, norms, recipe.width)
    for run in runs:
        if run.norm in starts:
            warm_start(run, starts[run.norm])
    if any(Path(path).resolve() == run.out.resolve() for path in init for run in runs):
        raise ValueError("--init and --out name the same file: write the continued model elsewhere")
    if not resume:
        taken = [path.name for run in runs for path in (run.out, run.state) if path.is_file()]
        if taken:
            raise ValueError(f"{taken[0]} exists: pass --resume to continue its run, or choose another --out")
    elif lost := [run.out.name for run in runs if run.out.is_file() and not run.state.is_file()]:
        raise ValueError(f"{lost[0]} exists but its training state does not, so there is nothing to resume; "
                         "choose another --out")
    saved = saved_progress(runs, recipe) if resume else {}
    start = next(iter(saved.values()))["step"] if saved else 0
    losses = {norm: meta["final_losses"] for norm, meta in saved.items()}
    if start == recipe.steps and all(run.out.is_file() for run in runs):
        return {run.norm: read_metadata(run.out) for run in runs}

    vgg = VGGFeatures.oxford(STYLE_LAYERS + (recipe.content_layer,)).to(dev, memory_format=mode.memory_format)
    grams = style_targets(vgg, recipe.style, recipe.style_size, dev)
    photos, validation = ContentPhotos.scan(Path(recipe.content), recipe.image_size,
                                            on_progress=listener.on_scan).split(recipe.validation_photos,
                                                                                recipe.image_size)
    train_step = TrainStep(recipe, vgg, grams, mode, dev, parallel)
    generator = torch.Generator().manual_seed(recipe.seed)
    if saved:  # after everything that draws from the global RNG (VGG's init), which the states record
        for run in runs:
            restore(run, generator)
            run.skipped, run.best = list(saved[run.norm].get("skipped_steps", [])), saved[run.norm].get("best", {})
            if run.guard and "guard" in saved[run.norm]:
                run.guard.load(saved[run.norm]["guard"])
    if parallel:  # after any restore: DDP starts every rank from rank 0's weights
        for run in runs:
            run.net = parallel.wrap(run.model)

    def metadata(run: NormRun, step: int) -> dict[str, Any]:
        return {**provenance(recipe, len(photos.images)), "steps": step, "final_losses": losses.get(run.norm, {}),
                "stylenet_version": __version__, "step": step, "skipped_steps": run.skipped,
                "validation_photos": 0 if validation is None else len(validation)} | (
                    {"init": run.init} if run.init else {}) | ({"best": run.best} if run.best else {}) | (
                    {"guard": run.guard.state()} if run.guard else {}) | (
                    {"data_parallel": {"processes": parallel.world, "bn_stats": parallel.bn_stats}} if parallel else {})

    def improves(run: NormRun, step: int) -> bool:
        """Whether the model's validation loss is its lowest so far (then ``run.best`` records it)."""
        loss = train_step.validation_loss(run.model, validation)
        if run.best and loss >= run.best["validation_loss"]:
            return False
        run.best = {"step": step, "validation_loss": round(loss, 5)}
        return True

    def checkpoint(step: int, with_models: bool) -> None:
        better = {run.norm for run in runs if validation is not None and improves(run, step)}
        # The states of a group must stay at one step (resume refuses otherwise): Ctrl-C and SIGTERM
        # wait until every file is written (the validation pass above stays interruptible).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for run in runs:
                if run.norm in better:
                    save_model(run.model, metadata(run, step), run.best_out)
                save_train_state(run.model, run.optimizer, generator, metadata(run, step), run.state)
                if with_models:
                    save_model(run.model, metadata(run, step), run.out)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    step_seconds = measure_step(train_step, runs, recipe, mode, share) if start < recipe.steps else 0.0
    listener.on_start(RunStart(tuple(norms), tuple(outs.values()), start, recipe.steps, len(photos.images),
                               tuple(photos.skipped), step_seconds))
    before = max(prepare_log(run.log, start) for run in runs) if main else 0.0
    pace = Pace(step_seconds, recipe.batch_size, before=before)
    done = start
    for step in range(start, recipe.steps):
        batch = photos.batch(recipe.batch_size, recipe.image_size, generator)  # every rank draws it alike
        terms = train_step(runs, parallel.share(batch) if parallel else batch, step)
        pace.tick()
        done = step + 1
        losses = {norm: {k: round(v.item(), 5) for k, v in t.items()} for norm, t in terms.items()}
        if main and (done % recipe.log_every == 0 or done == recipe.steps):
            for run in runs:
                with open(run.log, "a", newline="") as f:
                    csv.writer(f).writerow([done, *(losses[run.norm][k] for k in LOG_COLUMNS[1:5]),
                                            round(pace.images_per_s, 3), round(pace.elapsed, 1)])
        listener.on_step(StepEvent(done, recipe.steps, losses, pace.images_per_s,
                                   (recipe.steps - done) * pace.step_seconds, pace.elapsed,
                                   {run.norm: run.model for run in runs},
                                   tuple(run.norm for run in runs if run.skipped[-1:] == [done])))
        if done < recipe.steps and (parallel.anyone(listener.should_stop()) if parallel else listener.should_stop()):
            break
        if main and done % recipe.checkpoint_every == 0 and done < recipe.steps:
            checkpoint(done, with_models=False)
    if main:
        checkpoint(done, with_models=True)
    if parallel:
        parallel.barrier()  # the other ranks read the files rank 0 has just written
    return {run.norm: read_metadata(run.out) for run in runs}
