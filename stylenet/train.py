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

import copy
import csv
import math
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import (
    check_style_name,
    load_model,
    load_train_state,
    read_metadata,
    save_model,
    save_train_state,
)
from .compiled_norm import compile_instance_norms
from .data import ContentPhotos, load_rgb
from .files import replaced_atomically
from .guard import SpikeGuard
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .runtime import native_bf16, pick_device, to_tensor
from .transformer import TransformerNet
from .vgg import CONTENT_LAYER, STYLE_LAYERS, VGGFeatures
from .weights import sha256_file, total_steps

# Recipe fields that must match for --resume to continue the same run.
RESUME_MUST_MATCH = ("width", "image_size", "batch_size", "lr", "content_weight", "style_weight", "tv_weight",
                     "style_size", "style_warmup", "lr_warmup", "seed", "style_sha256", "contrast_normalize",
                     "content_layer", "validation_photos")
LOG_COLUMNS = ("step", "content", "style", "tv", "total", "images_per_s", "seconds")


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is left untouched."""


@dataclass
class Recipe:
    """All hyper-parameters of a run but the norm; stored in every checkpoint it writes."""

    style: str
    content: str
    width: int = 32
    steps: int = 2000
    image_size: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    style_size: int = 384
    style_warmup: int = 0
    lr_warmup: int = 0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    contrast_normalize: bool = False
    style_sha256: str = ""
    # The VGG layer whose features the output must keep: relu2_2 pins edges and fine detail in
    # place, deeper layers keep the objects but let the strokes move (docs/recipe.md measures it).
    content_layer: str = CONTENT_LAYER
    # Photos of the content folder kept out of training to choose the best checkpoint on (at most a
    # tenth of the folder); 0 keeps every photo for training and the last checkpoint only.
    validation_photos: int = 0
    # A step whose loss exceeds this many times the running median is skipped (guard.py); 0: never.
    spike_factor: float = 4.0

    def __post_init__(self) -> None:
        if not self.style_sha256 and Path(self.style).is_file():
            self.style_sha256 = sha256_file(Path(self.style))

    @property
    def style_name(self) -> str:
        return Path(self.style).stem

    @classmethod
    def from_metadata(cls, recipe: Mapping[str, Any]) -> Recipe:
        """The recipe a checkpoint records. Keys that older versions kept in it (``norm``,
        ``channels_last``) are no longer part of a recipe and are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in recipe.items() if k in known})


# What --preset sets (explicit flags override it): crop size, batch, steps and width, for a known
# budget on a 2-core CPU (README, "Presets"). quick: BN + IN in about 15 minutes on the 2-core EPYC
# (1,000 steps measured 12.9 min with 2 threads, docs/figures/quick_preset.md), a width-16 network with
# the loss weights, style size and style warm-up of the shipped CPU recipe; full: Johnson et al.'s schedule.
PRESETS: dict[str, dict[str, float]] = {
    "quick": {"image_size": 128, "batch_size": 4, "steps": 1000, "width": 16,
              "style_weight": 3.0, "tv_weight": 10.0, "style_size": 256, "style_warmup": 150, "validation_photos": 16},
    "standard": {"image_size": 256, "batch_size": 4, "steps": 2000, "width": 32, "validation_photos": 16},
    "full": {"image_size": 256, "batch_size": 4, "steps": 40000, "width": 32, "validation_photos": 16},
}
DEFAULT_PRESET = "standard"


@dataclass(frozen=True)
class StepMode:
    """How a training step is computed, not what: every mode trains the same model up to rounding.

    ``StepMode()`` is the plain step (eager fp32 NCHW, the photo's content target through the whole
    VGG like the output, Adam's per-parameter loop); ``StepMode.fast`` switches on what measured
    faster with ``scripts/bench.py --train`` (README, "Training speed").
    """

    channels_last: bool = False  # NHWC activations: oneDNN convolutions without layout reorders
    bf16: bool = False  # autocast convolutions to bfloat16; losses and Grams stay fp32
    fused_adam: bool = False  # one fused Adam kernel instead of a loop over 62 parameter tensors
    short_content_pass: bool = False  # the photo goes through VGG only up to the content layer
    compile: bool = False  # torch.compile the transformer + VGG forward (and so its backward)
    compiled_instance_norm: bool = False  # IN layers by a compiled kernel (compiled_norm.py)

    @classmethod
    def fast(cls, device: torch.device) -> StepMode:
        """The settings that measured faster (``bench.py --train --candidates`` for each alone,
        ``--ablations`` for each taken out again; README, "Training speed"; fused Adam tied once in
        four). bf16 only where the hardware runs it natively (a GPU, a CPU with AVX512-BF16 or AMX):
        emulated bf16 was not measured to pay. The compiled instance norm only on the CPU, the one
        place it was measured. torch.compile of the whole forward is left off: a minute of compiling
        for no gain per step."""
        return cls(channels_last=True, bf16=native_bf16(device), fused_adam=True, short_content_pass=True,
                   compiled_instance_norm=device.type == "cpu")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


@dataclass
class NormRun:
    """One model of a run: its norm, network, optimizer, files and warm start."""

    norm: str
    model: TransformerNet
    optimizer: torch.optim.Optimizer
    out: Path
    log: Path
    init: dict[str, Any] | None = None  # the warm-start checkpoint: file name, sha256, its steps
    guard: SpikeGuard | None = None
    skipped: list[int] = field(default_factory=list)  # steps the guard refused, 1-based like the log
    best: dict[str, Any] = field(default_factory=dict)  # the best checkpoint's step and validation loss

    @property
    def state(self) -> Path:
        return state_path(self.out)

    @property
    def best_out(self) -> Path:
        return best_path(self.out)


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


def state_path(out: Path) -> Path:
    """The training-state file kept beside the model file (``x.safetensors`` -> ``x.train.safetensors``)."""
    return Path(out).with_suffix(".train.safetensors")


def best_path(out: Path) -> Path:
    """The best checkpoint on the validation photos, beside the last (``x.safetensors`` -> ``x.best.safetensors``)."""
    return Path(out).with_suffix(".best.safetensors")


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


def normalize_contrast(batch: torch.Tensor) -> torch.Tensor:
    """Give every image the same per-channel mean (0.5) and std (0.2): the Huang & Belongie
    control that removes per-image contrast before the network sees it."""
    mean = batch.mean(dim=(2, 3), keepdim=True)
    std = batch.std(dim=(2, 3), keepdim=True) + 1e-5
    return ((batch - mean) / std * 0.2 + 0.5).clamp(0, 1)


def style_targets(vgg: VGGFeatures, style_path: str, style_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Gram matrices of the painting, resized so its short side is ``style_size``; computed once."""
    from torchvision.transforms.v2 import functional as TF

    img = TF.resize(load_rgb(Path(style_path)), style_size, antialias=True)
    with torch.no_grad():
        feats = vgg(to_tensor(img).unsqueeze(0).to(device))
    return {name: gram_matrix(feats[name]) for name in STYLE_LAYERS}


def ramp(full: float, warmup: int, step: int) -> float:
    """``full`` scaled linearly from 1/warmup at step 0 up to itself at step ``warmup - 1``."""
    return full if warmup <= 0 else full * min(1.0, (step + 1) / warmup)


def style_weight(recipe: Recipe, step: int) -> float:
    """The style weight ramps up over ``style_warmup`` steps: the network first learns to keep the
    photo's structure, which on a short CPU budget keeps content recognizable."""
    return ramp(recipe.style_weight, recipe.style_warmup, step)


def learning_rate(recipe: Recipe, step: int) -> float:
    """The learning rate ramps up over ``lr_warmup`` steps. A fresh Adam's first updates are
    ``lr * sign(grad)`` for every weight (its second moment has not built up yet): harmless from
    random weights, but enough to knock a trained model (``--init``) far off before it recovers."""
    return ramp(recipe.lr, recipe.lr_warmup, step)


def provenance(recipe: Recipe, photo_count: int) -> dict[str, Any]:
    """What a checkpoint records of its inputs: names, counts and hashes, never this machine's paths
    (shipped files must not leak where they were trained, and paths mean nothing elsewhere)."""
    return {"style": recipe.style_name, "style_sha256": recipe.style_sha256,
            "painting": {"name": recipe.style_name, "file": Path(recipe.style).name, "sha256": recipe.style_sha256},
            "training_set": {"name": Path(recipe.content).name, "photos": photo_count},
            "recipe": asdict(recipe) | {"style": Path(recipe.style).name, "content": Path(recipe.content).name}}


class TrainStep:
    """One optimization step of every model on one batch.

    The photo's content target is computed once and shared. Each model's output goes through VGG
    on its own and gets its own backward, so each model computes exactly what it would alone (and
    only one model's graph is alive at a time); no optimizer steps until every loss is finite.
    """

    def __init__(self, recipe: Recipe, vgg: VGGFeatures, grams: dict[str, torch.Tensor], mode: StepMode,
                 device: torch.device) -> None:
        self.recipe, self.vgg, self.grams, self.mode, self.device = recipe, vgg, grams, mode, device
        self.content_layer = recipe.content_layer
        self.content_upto = recipe.content_layer if mode.short_content_pass else None
        self.forward = torch.compile(self.stylize_and_look) if mode.compile else self.stylize_and_look

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mode.bf16)

    def stylize_and_look(self, model: TransformerNet, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model's output and its VGG features (in bf16 under ``mode.bf16``)."""
        with self.autocast():
            y = model(x)
            return y, self.vgg(y)

    def loss_terms(self, y: torch.Tensor, feats: dict[str, torch.Tensor], target: torch.Tensor,
                   step: int) -> dict[str, torch.Tensor]:
        """The weighted loss terms, in fp32 and outside autocast: inside it a Gram matrix of
        ``.float()`` features would still be computed in bf16."""
        r = self.recipe
        feats = {name: f.float() for name, f in feats.items()}
        terms = {"content": r.content_weight * content_loss(feats[self.content_layer], target),
                 "style": style_weight(r, step) * style_loss(feats, self.grams),
                 "tv": r.tv_weight * total_variation(y.float())}
        return terms | {"total": terms["content"] + terms["style"] + terms["tv"]}

    def inputs(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input for ``batch`` (uint8-derived floats in [0, 1]) and its content target."""
        x = batch.to(self.device)
        if self.recipe.contrast_normalize:
            x = normalize_contrast(x)
        x = x.contiguous(memory_format=self.mode.memory_format)
        with torch.no_grad(), self.autocast():
            target = self.vgg(x, upto=self.content_upto)[self.content_layer]
        return x, target.float()

    @torch.no_grad()
    def validation_loss(self, model: TransformerNet, photos: torch.Tensor) -> float:
        """The objective at its full style weight on held-out photos, with the model in eval mode:
        what it would ship as (BN with its running statistics). Chooses the best checkpoint."""
        x, target = self.inputs(photos)
        model.eval()
        try:
            y, feats = self.stylize_and_look(model, x)
            return self.loss_terms(y, feats, target, self.recipe.steps)["total"].item()
        finally:
            model.train()

    def __call__(self, runs: Sequence[NormRun], batch: torch.Tensor, step: int) -> dict[str, dict[str, torch.Tensor]]:
        """Update every model on ``batch`` (uint8-derived floats in [0, 1]); returns each norm's terms.
        A model whose loss the spike guard calls a spike keeps its weights (``run.skipped``)."""
        x, target = self.inputs(batch)
        terms = {}
        for run in runs:
            run.optimizer.zero_grad(set_to_none=True)
            y, feats = self.forward(run.model, x)
            terms[run.norm] = self.loss_terms(y, feats, target, step)
            terms[run.norm]["total"].backward()
        for norm, t in terms.items():
            if not math.isfinite(t["total"].item()):
                raise TrainingDiverged(f"the {norm} model's loss became {t['total'].item()} at step {step + 1}; "
                                       "its last good checkpoint is kept (try a lower --lr)")
        for run in runs:
            if run.guard and run.guard.is_spike(terms[run.norm]["total"].item()):
                run.skipped.append(step + 1)
                continue
            for group in run.optimizer.param_groups:
                group["lr"] = learning_rate(self.recipe, step)
            run.optimizer.step()
        return terms


def new_run(norm: str, recipe: Recipe, mode: StepMode, device: torch.device, out: Path, log: Path) -> NormRun:
    """A fresh model (seeded, so each norm starts where a run of that norm alone would) and its Adam."""
    torch.manual_seed(recipe.seed)
    model = TransformerNet(norm, recipe.width).to(device, memory_format=mode.memory_format).train()
    if mode.compiled_instance_norm:
        compile_instance_norms(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=mode.fused_adam)
    guard = SpikeGuard(recipe.spike_factor) if recipe.spike_factor else None
    return NormRun(norm, model, optimizer, out, log, guard=guard)


def warm_starts(paths: Sequence[Path], norms: Sequence[str], width: int) -> dict[str, Path]:
    """Which checkpoint starts which norm: one per norm, each of this run's width and one of its norms."""
    chosen: dict[str, Path] = {}
    for path in map(Path, paths):
        meta = read_metadata(path)
        if meta["norm"] not in norms or meta["width"] != width:
            raise ValueError(f"--init {path.name} is a {meta['norm']} width-{meta['width']} model; this run "
                             f"trains {'/'.join(norms)} at width {width}")
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


def prepare_log(path: Path, start: int) -> float:
    """A fresh CSV with its header, or, when resuming, the old one without the rows logged after
    ``start`` (a killed run logs steps its last checkpoint does not hold; they are trained again).
    Returns the training seconds of the last row kept (0 for a fresh log)."""
    rows: list[list[str]] = []
    if start and path.is_file():
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and row[0].isdigit() and int(row[0]) <= start]
    with replaced_atomically(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([LOG_COLUMNS, *rows])
    return float(rows[-1][LOG_COLUMNS.index("seconds")]) if rows else 0.0


def measure_step(step: TrainStep, runs: Sequence[NormRun], recipe: Recipe, mode: StepMode) -> float:
    """Seconds per step, measured before the run on copies of its models and a random batch, so the
    run itself is untouched: the second of two steps (the first pays one-off setup costs)."""
    copies = []
    for run in runs:
        model = copy.deepcopy(run.model)
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=mode.fused_adam)
        copies.append(NormRun(run.norm, model, optimizer, run.out, run.log))
    batch = torch.rand(recipe.batch_size, 3, recipe.image_size, recipe.image_size,
                       generator=torch.Generator().manual_seed(0))
    step(copies, batch, recipe.steps)
    started = time.perf_counter()
    step(copies, batch, recipe.steps)
    return time.perf_counter() - started


def train(recipe: Recipe, norms: Sequence[str], out: str | Path, *, init: Sequence[Path] = (),
          resume: bool = False, log: str | Path | None = None, device: str = "auto",
          listener: Listener | None = None, mode: StepMode | None = None) -> dict[str, dict[str, Any]]:
    """Train one model per norm on the same batches; returns each norm's model metadata.

    ``out`` (and ``log``, default: each model's name with ``.csv``) follow ``output_paths``.
    ``init``: checkpoints to warm-start from, one per norm. ``resume``: continue from the training
    states beside the outputs when they exist (a finished run is left as it is).
    """
    check_style_name(recipe.style_name)  # the painting's name is refused now, not at the first checkpoint
    norms = list(dict.fromkeys(norms))
    dev = pick_device(device)
    mode = mode or StepMode.fast(dev)
    listener = listener or Listener()
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
    train_step = TrainStep(recipe, vgg, grams, mode, dev)
    generator = torch.Generator().manual_seed(recipe.seed)
    if saved:  # after everything that draws from the global RNG (VGG's init), which the states record
        for run in runs:
            restore(run, generator)
            run.skipped, run.best = list(saved[run.norm].get("skipped_steps", [])), saved[run.norm].get("best", {})

    def metadata(run: NormRun, step: int) -> dict[str, Any]:
        return {**provenance(recipe, len(photos.images)), "steps": step, "final_losses": losses.get(run.norm, {}),
                "stylenet_version": __version__, "step": step, "skipped_steps": run.skipped,
                "validation_photos": 0 if validation is None else len(validation)} | (
                    {"init": run.init} if run.init else {}) | ({"best": run.best} if run.best else {})

    def keep_best(run: NormRun, step: int) -> None:
        """Write the model to its best file when its validation loss is the lowest so far."""
        loss = train_step.validation_loss(run.model, validation)
        if not run.best or loss < run.best["validation_loss"]:
            run.best = {"step": step, "validation_loss": round(loss, 5)}
            save_model(run.model, metadata(run, step), run.best_out)

    def checkpoint(step: int, with_models: bool) -> None:
        # The states of a group must stay at one step (resume refuses otherwise): Ctrl-C and SIGTERM
        # wait until every file is written.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for run in runs:
                if validation is not None:
                    keep_best(run, step)
                save_train_state(run.model, run.optimizer, generator, metadata(run, step), run.state)
                if with_models:
                    save_model(run.model, metadata(run, step), run.out)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    step_seconds = measure_step(train_step, runs, recipe, mode) if start < recipe.steps else 0.0
    listener.on_start(RunStart(tuple(norms), tuple(outs.values()), start, recipe.steps, len(photos.images),
                               tuple(photos.skipped), step_seconds))
    before = max(prepare_log(run.log, start) for run in runs)
    pace = Pace(step_seconds, recipe.batch_size, before=before)
    done = start
    for step in range(start, recipe.steps):
        terms = train_step(runs, photos.batch(recipe.batch_size, recipe.image_size, generator), step)
        pace.tick()
        done = step + 1
        losses = {norm: {k: round(v.item(), 5) for k, v in t.items()} for norm, t in terms.items()}
        if done % recipe.log_every == 0 or done == recipe.steps:
            for run in runs:
                with open(run.log, "a", newline="") as f:
                    csv.writer(f).writerow([done, *(losses[run.norm][k] for k in LOG_COLUMNS[1:5]),
                                            round(pace.images_per_s, 3), round(pace.elapsed, 1)])
        listener.on_step(StepEvent(done, recipe.steps, losses, pace.images_per_s,
                                   (recipe.steps - done) * pace.step_seconds, pace.elapsed,
                                   {run.norm: run.model for run in runs},
                                   tuple(run.norm for run in runs if run.skipped[-1:] == [done])))
        if done < recipe.steps and listener.should_stop():
            break
        if done % recipe.checkpoint_every == 0 and done < recipe.steps:
            checkpoint(done, with_models=False)
    checkpoint(done, with_models=True)
    return {run.norm: read_metadata(run.out) for run in runs}
