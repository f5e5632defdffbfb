"""The "why IN?" experiments: small, direct measurements of what each norm layer does.

Each function takes an un-optimized model (BatchNorm not folded, see ``checkpoint.load_model``)
and returns pictures plus a number: mean absolute pixel difference in [0, 1] units. The app
shares one model between concurrent requests, so every experiment runs on a private copy and
never switches, hooks or (BN in train mode) updates the caller's model.

The figures are plain ``matplotlib.figure.Figure`` objects, not pyplot ones: pyplot keeps every
figure it makes until closed and is not thread-safe, and importing this module leaves the
matplotlib backend alone.

``instance_vs_batch_statistics`` is the one experiment on the AdaIN decoder (``stylenet.adain``) rather
than a style network: the style as statistics, per image (IN) or per batch (BN).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from .adain import EPS

if TYPE_CHECKING:
    from .adain import AdaINStylizer
    from .evaluate import Evaluator

NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)


def private_copy(model: nn.Module, training: bool) -> nn.Module:
    """A copy of ``model`` in train or eval mode, for this experiment alone."""
    return copy.deepcopy(model).train(training)


def mad(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two images in [0, 1]."""
    return float((a.clamp(0, 1) - b.clamp(0, 1)).abs().mean())


def diff_image(a: torch.Tensor, b: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """|a - b| amplified so small differences are visible (black = identical)."""
    return ((a.clamp(0, 1) - b.clamp(0, 1)).abs() * gain).clamp(0, 1)


@torch.inference_mode()
def train_vs_eval(model: nn.Module, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Output with batch statistics (train mode) vs running statistics (eval mode)."""
    net = private_copy(model, training=False)
    evaluated = net(photo)
    trained = net.train()(photo)
    return trained, evaluated, mad(trained, evaluated)


@torch.inference_mode()
def batch_dependence(model: nn.Module, photo: torch.Tensor,
                     others: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The photo stylized alone vs in a batch with ``others``, both in train mode (how a norm sees
    images while learning). BN's statistics mix the batch; IN's do not."""
    net = private_copy(model, training=True)
    alone = net(photo)
    batched = net(torch.cat([photo, others]))[:1]
    return alone, batched, mad(alone, batched)


def with_contrast(photo: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale the photo's contrast around its mean colour (factor < 1 flattens, > 1 boosts)."""
    mean = photo.mean(dim=(2, 3), keepdim=True)
    return ((photo - mean) * factor + mean).clamp(0, 1)


@torch.inference_mode()
def contrast_sensitivity(model: nn.Module, photo: torch.Tensor, low: float = 0.4,
                         high: float = 1.6) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Stylize a low- and a high-contrast version (eval mode); how much do the outputs differ?"""
    net = private_copy(model, training=False)
    out_low, out_high = net(with_contrast(photo, low)), net(with_contrast(photo, high))
    return out_low, out_high, mad(out_low, out_high)


@torch.inference_mode()
def first_norm_statistics(model: nn.Module, photo: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-channel mean and std of the feature maps entering and leaving the first norm layer."""
    net = private_copy(model, training=False)
    norm = next(m for m in net.modules() if isinstance(m, NORM_TYPES))
    seen: dict[str, torch.Tensor] = {}
    norm.register_forward_hook(lambda m, inp, out: seen.update(before=inp[0], after=out))
    net(photo)
    return {f"{k}_{s}": getattr(v[0], s)(dim=(1, 2)).numpy() for k, v in seen.items() for s in ("mean", "std")}


def batch_statistics(mean: torch.Tensor, std: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """What one Batch Norm layer measures on a batch of images, from each image's per-channel ``mean``
    and ``std`` ((N, C, 1, 1), as ``adain.channel_stats`` gives them): per channel, one mean and std over
    every image and position (each image weighing the same, as equal-size crops of a batch do), handed
    to every image alike, the same row N times. Instance statistics are the N rows as given."""
    var = std.square() - eps
    pooled_mean = mean.mean(0, keepdim=True)
    pooled_var = (var + mean.square()).mean(0, keepdim=True) - pooled_mean.square()  # law of total variance
    return pooled_mean.expand_as(mean), (pooled_var.clamp_min(0) + eps).sqrt().expand_as(std)


@dataclass(frozen=True)
class PaintingTargets:
    """What ``instance_vs_batch_statistics`` reads of its paintings: each one's AdaIN target (relu4_1 mean
    and std at ``style_scale``) and its Grams for the evaluator. The app's paintings are the same on every
    request, so it computes these once (``PaintingTargets.of``), not once per photo."""

    stats: list[tuple[torch.Tensor, torch.Tensor]]
    grams: list[dict[str, torch.Tensor]]

    @classmethod
    @torch.inference_mode()
    def of(cls, stylizer: AdaINStylizer, evaluator: Evaluator, paintings: Sequence[Image.Image],
           style_scale: int) -> PaintingTargets:
        return cls([stylizer.painting_stats(p, style_scale) for p in paintings],
                   [evaluator.painting_grams(p) for p in paintings])


@torch.inference_mode()
def instance_vs_batch_statistics(stylizer: AdaINStylizer, evaluator: Evaluator, photo: Image.Image,
                                 paintings: PaintingTargets) -> tuple[list[Image.Image], Image.Image, float, float]:
    """AdaIN's swap done with instance and with batch statistics: the photo painted with each painting's
    own statistics, and with the one set a Batch Norm layer holds for the batch of all the paintings. The
    photo is normalized by its own statistics either way: only where the target comes from differs.

    Returns each painting's result, the batch's one result (one target for every painting, so one
    picture) and the mean style distance (``stylenet.evaluate``) of each kind to its own painting: one
    set shared by all cannot carry each painting's style, so the batch's should be the farther."""
    stats, grams = paintings.stats, paintings.grams
    mean, std = batch_statistics(torch.cat([m for m, _ in stats]), torch.cat([s for _, s in stats]))
    own = [stylizer.paint(photo, target) for target in stats]
    shared = stylizer.paint(photo, (mean[:1], std[:1]))
    content = evaluator.photo_content(photo)
    own_distance = sum(evaluator.score(out, content, g).style for out, g in zip(own, grams)) / len(grams)
    batch_distance = sum(evaluator.score(shared, content, g).style for g in grams) / len(grams)
    return own, shared, own_distance, batch_distance


def statistics_figure(stats: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Per-channel mean/std before and after the first norm, one row per model."""
    fig = Figure(figsize=(9, 2.4 * len(stats)))
    axes = fig.subplots(len(stats), 2, squeeze=False)
    for row, (name, s) in enumerate(stats.items()):
        for col, what in enumerate(("mean", "std")):
            ax = axes[row][col]
            channels = np.arange(len(s[f"before_{what}"]))
            ax.bar(channels - 0.2, s[f"before_{what}"], 0.4, label="before norm", color="#999")
            ax.bar(channels + 0.2, s[f"after_{what}"], 0.4, label="after norm", color="#c33")
            ax.set_title(f"{name}: per-channel {what}", fontsize=9)
            ax.set_xlabel("channel", fontsize=8)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def norm_axes_figure() -> Figure:
    """The N x C x (H,W) cube of Wu & He (2018), shaded where each norm takes one mean/variance."""
    shades = {"Batch norm\nper channel over N,H,W": lambda n, c: c == 0,
              "Layer norm\nper image over C,H,W": lambda n, c: n == 0,
              "Instance norm\nper image & channel over H,W": lambda n, c: n == 0 and c == 0,
              "Group norm\nper image & group over C/G,H,W": lambda n, c: n == 0 and c < 2}
    fig = Figure(figsize=(12, 3.8))
    axes = fig.subplots(1, 4, subplot_kw={"projection": "3d"})
    size_n, size_c, size_hw = 4, 6, 3
    for ax, (title, shaded) in zip(axes, shades.items()):
        filled = np.ones((size_n, size_c, size_hw), dtype=bool)
        colors = np.empty(filled.shape, dtype=object)
        for n in range(size_n):
            for c in range(size_c):
                colors[n, c, :] = "#2a6fdb" if shaded(n, c) else "#e8e8e8"
        ax.voxels(filled, facecolors=colors, edgecolor="#555", linewidth=0.3)
        ax.set_xlabel("N"), ax.set_ylabel("C"), ax.set_zlabel("H, W")
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
        ax.set_title(title, fontsize=9)
        ax.view_init(elev=28, azim=-50)
    fig.tight_layout()
    return fig
