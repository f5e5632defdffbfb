"""The "why IN?" experiments: small, direct measurements of what each norm layer does.

Each function takes an un-optimized model (BatchNorm not folded, see ``checkpoint.load_model``),
never mutates it (BN in train mode would update running statistics, so it works on a copy), and
returns pictures plus a number: mean absolute pixel difference in [0, 1] units.
"""
from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)


def mad(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two images in [0, 1]."""
    return float((a.clamp(0, 1) - b.clamp(0, 1)).abs().mean())


def diff_image(a: torch.Tensor, b: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """|a - b| amplified so small differences are visible (black = identical)."""
    return ((a.clamp(0, 1) - b.clamp(0, 1)).abs() * gain).clamp(0, 1)


@torch.inference_mode()
def train_vs_eval(model: nn.Module, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Output with batch statistics (train mode) vs running statistics (eval mode)."""
    net = copy.deepcopy(model)
    evaluated = net.eval()(photo)
    trained = net.train()(photo)
    return trained, evaluated, mad(trained, evaluated)


@torch.inference_mode()
def batch_dependence(model: nn.Module, photo: torch.Tensor,
                     others: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The photo stylized alone vs in a batch with ``others``, both in train mode (how a norm sees
    images while learning). BN's statistics mix the batch; IN's do not."""
    net = copy.deepcopy(model).train()
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
    net = model.eval()
    out_low, out_high = net(with_contrast(photo, low)), net(with_contrast(photo, high))
    return out_low, out_high, mad(out_low, out_high)


@torch.inference_mode()
def first_norm_statistics(model: nn.Module, photo: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-channel mean and std of the feature maps entering and leaving the first norm layer."""
    norm = next(m for m in model.modules() if isinstance(m, NORM_TYPES))
    seen: dict[str, torch.Tensor] = {}
    handle = norm.register_forward_hook(lambda m, inp, out: seen.update(before=inp[0], after=out))
    try:
        model.eval()(photo)
    finally:
        handle.remove()
    return {f"{k}_{s}": getattr(v[0], s)(dim=(1, 2)).numpy() for k, v in seen.items() for s in ("mean", "std")}


def statistics_figure(stats: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Per-channel mean/std before and after the first norm, one row per model."""
    fig, axes = plt.subplots(len(stats), 2, figsize=(9, 2.4 * len(stats)), squeeze=False)
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
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.8), subplot_kw={"projection": "3d"})
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
