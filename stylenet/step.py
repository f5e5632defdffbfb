"""One training step of every model of a run on one batch: how it is computed (``StepMode``), the
models it updates (``NormRun``), the loss it minimizes and the validation loss that picks the best
checkpoint (``TrainStep``)."""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .compiled_norm import compile_instance_norms
from .data import load_rgb
from .distributed import DataParallel
from .guard import SpikeGuard
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .recipe import Recipe, learning_rate, style_weight
from .runtime import native_bf16, to_tensor
from .subpixel import pays_on, rearrange_convs
from .transformer import TransformerNet
from .vgg import STYLE_LAYERS, VGGFeatures


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is left untouched."""


@dataclass(frozen=True)
class StepMode:
    """How a training step is computed, not what: every mode trains the same model up to rounding.

    ``StepMode()`` is the plain step (eager fp32 NCHW, the photo's content target through the whole
    VGG like the output, Adam's per-parameter loop); ``StepMode.fast`` switches on what measured
    faster with ``scripts/bench.py --train`` (docs/benchmarks.md, "Training speed").
    """

    channels_last: bool = False  # NHWC activations: oneDNN convolutions without layout reorders
    bf16: bool = False  # autocast convolutions to bfloat16; losses and Grams stay fp32
    fused_adam: bool = False  # one fused Adam kernel instead of a loop over 62 parameter tensors
    short_content_pass: bool = False  # the photo goes through VGG only up to the content layer
    compile: bool = False  # torch.compile the transformer + VGG forward (and so its backward)
    compiled_instance_norm: bool = False  # IN layers by a compiled kernel (compiled_norm.py)
    subpixel: bool = False  # upsampling and output convs computed at half resolution (subpixel.py)

    @classmethod
    def fast(cls, device: torch.device) -> StepMode:
        """The settings that measured faster (``bench.py --train --candidates`` for each alone,
        ``--ablations`` for each taken out again; docs/benchmarks.md, "Training speed"; fused Adam tied once in
        four). bf16 only where the hardware runs it natively (a GPU, a CPU with AVX512-BF16 or AMX):
        emulated bf16 was not measured to pay. The compiled instance norm and the half-resolution convs
        (the largest single gain without bf16) only on the CPU, the one place they were measured.
        torch.compile of the whole forward is left off: a minute of compiling for no gain per step."""
        return cls(channels_last=True, bf16=native_bf16(device), fused_adam=True, short_content_pass=True,
                   compiled_instance_norm=device.type == "cpu", subpixel=pays_on(device))

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
    net: nn.Module | None = None  # what a step calls: the model, or its data-parallel wrapper

    def __post_init__(self) -> None:
        if self.net is None:
            self.net = self.model

    @property
    def state(self) -> Path:
        return state_path(self.out)

    @property
    def best_out(self) -> Path:
        return best_path(self.out)


def state_path(out: Path) -> Path:
    """The training-state file kept beside the model file (``x.safetensors`` -> ``x.train.safetensors``)."""
    return Path(out).with_suffix(".train.safetensors")


def best_path(out: Path) -> Path:
    """The best checkpoint on the validation photos, beside the last (``x.safetensors`` -> ``x.best.safetensors``)."""
    return Path(out).with_suffix(".best.safetensors")


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


class TrainStep:
    """One optimization step of every model on one batch.

    The photo's content target is computed once and shared. Each model's output goes through VGG
    on its own and gets its own backward, so each model computes exactly what it would alone (and
    only one model's graph is alive at a time); no optimizer steps until every loss is finite.
    """

    def __init__(self, recipe: Recipe, vgg: VGGFeatures, grams: dict[str, torch.Tensor], mode: StepMode,
                 device: torch.device, parallel: DataParallel | None = None) -> None:
        self.recipe, self.vgg, self.grams, self.mode, self.device = recipe, vgg, grams, mode, device
        self.parallel = parallel
        self.content_layer = recipe.content_layer
        self.content_upto = recipe.content_layer if mode.short_content_pass else None
        self.forward = torch.compile(self.stylize_and_look) if mode.compile else self.stylize_and_look

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mode.bf16)

    def stylize_and_look(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
            y, feats = self.forward(run.net, x)
            terms[run.norm] = self.loss_terms(y, feats, target, step)
            terms[run.norm]["total"].backward()
        if self.parallel:  # every rank checks and guards with the whole batch's losses, so all decide alike
            means = iter(self.parallel.mean(torch.stack([v.detach() for t in terms.values() for v in t.values()])))
            terms = {norm: {name: next(means) for name in t} for norm, t in terms.items()}
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
    if mode.subpixel:
        rearrange_convs(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=mode.fused_adam)
    guard = SpikeGuard(recipe.spike_factor) if recipe.spike_factor else None
    return NormRun(norm, model, optimizer, out, log, guard=guard)


def measure_step(step: TrainStep, runs: Sequence[NormRun], recipe: Recipe, mode: StepMode,
                 batch_size: int | None = None) -> float:
    """Seconds per step, measured before the run on copies of its models and a random batch of
    ``batch_size`` (default: the recipe's; a data-parallel rank's share), so the run itself is
    untouched: the second of two steps (the first pays one-off setup costs). Under torchrun the copies
    are not DDP-wrapped, so the estimate leaves out the gradients' all-reduce (BN's synchronization is in)."""
    copies = []
    for run in runs:
        model = copy.deepcopy(run.model)
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=mode.fused_adam)
        copies.append(NormRun(run.norm, model, optimizer, run.out, run.log))
    batch = torch.rand(batch_size or recipe.batch_size, 3, recipe.image_size, recipe.image_size,
                       generator=torch.Generator().manual_seed(0))
    step(copies, batch, recipe.steps)
    started = time.perf_counter()
    step(copies, batch, recipe.steps)
    return time.perf_counter() - started
