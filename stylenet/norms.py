"""Normalization layers, made by name: one registry maps a name to its constructor and label.

Every norm computes ``(x - mean) / sqrt(var + eps)`` followed by a learned per-channel scale and
shift; they differ only in *which axes* of an ``N x C x H x W`` activation the mean and variance
are taken over:

* ``batch``    - per channel, over (N, H, W): the statistics mix all images in the batch, so a
  picture's output depends on its batch-mates; at eval time running averages replace them.
* ``instance`` - per image and channel, over (H, W): identical at train and test time, and it
  removes each image's own contrast, which is what stylization wants (Ulyanov et al. 2016).
* ``layer``    - per image, over (C, H, W), with a per-channel affine.
* ``group``    - per image and group of channels, over (C/G, H, W); G=1 is ``layer``, G=C is
  ``instance``.
* ``none``     - identity, the un-normalized baseline.

As in timm (``get_norm_layer``/``create_norm_layer``), callers resolve a name once and everything
else (the app, the comparison script, the CLI) reads names, order and labels from ``NORMS``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

DEFAULT_MAX_GROUPS = 8
# The layers that normalize each image with its own statistics (IN; LN and GN are GroupNorms): the
# ones tiling, video smoothing and the compiled training norm stand in for.
PER_IMAGE_NORMS: tuple[type[nn.Module], ...] = (nn.InstanceNorm2d, nn.GroupNorm)


def default_groups(channels: int, max_groups: int = DEFAULT_MAX_GROUPS) -> int:
    """Largest group count <= ``max_groups`` that divides ``channels`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


@dataclass(frozen=True)
class NormSpec:
    """A registered norm: its display label (BN, IN, ...), its colour in plots and a
    ``channels -> layer`` constructor."""

    name: str
    label: str
    color: str
    make: Callable[[int], nn.Module]


# instance: track_running_stats=False means per-image statistics at train AND eval time.
# layer: GroupNorm with one group = statistics over (C, H, W) of each image, per-channel affine.
NORMS: dict[str, NormSpec] = {spec.name: spec for spec in (
    NormSpec("batch", "BN", "#d62728", nn.BatchNorm2d),
    NormSpec("instance", "IN", "#1f77b4", lambda c: nn.InstanceNorm2d(c, affine=True, track_running_stats=False)),
    NormSpec("layer", "LN", "#2ca02c", lambda c: nn.GroupNorm(1, c)),
    NormSpec("group", "GN", "#9467bd", lambda c: nn.GroupNorm(default_groups(c), c)),
    NormSpec("none", "no norm", "#777777", lambda c: nn.Identity()),
)}
NORM_KINDS: tuple[str, ...] = tuple(NORMS)  # the display order: batch, instance, layer, group, none


def get_norm(kind: str) -> NormSpec:
    """The registry entry for ``kind``; ValueError listing the valid names, so a typo on the
    command line fails before any work is done."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of: {', '.join(NORM_KINDS)}")
    return NORMS[kind]


def norm_label(kind: str) -> str:
    """Short display label: BN, IN, LN, GN, no norm."""
    return get_norm(kind).label


def create_norm_layer(kind: str, channels: int) -> nn.Module:
    """A layer of norm ``kind`` normalizing ``channels`` feature maps."""
    return get_norm(kind).make(channels)


def norm_groups(norm: nn.InstanceNorm2d | nn.GroupNorm) -> int:
    """How many groups of channels ``norm`` takes its statistics over (IN: one per channel)."""
    return norm.num_groups if isinstance(norm, nn.GroupNorm) else norm.num_features


def normalize(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``norm``'s output for ``x`` given the mean and variance to use (broadcastable, per channel):
    computed in fp32, returned in ``x``'s dtype. For layers that replace a norm's statistics."""
    y = (x.float() - mean) * torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = y * norm.weight.float().view(shape) + norm.bias.float().view(shape)
    return y.to(x.dtype)


N = TypeVar("N", bound=nn.InstanceNorm2d)


def instance_norm_like(cls: type[N], norm: nn.InstanceNorm2d) -> N:
    """A ``cls`` layer (an ``nn.InstanceNorm2d`` subclass that computes differently) holding ``norm``'s own
    parameter tensors, so an optimizer made before the swap keeps updating them."""
    if not norm.affine or norm.track_running_stats:
        raise ValueError("only affine instance norms without running statistics are replaced")
    layer = cls(norm.num_features, eps=norm.eps, affine=True, track_running_stats=False)
    layer.weight, layer.bias = norm.weight, norm.bias
    return layer


def replace_norms(model: nn.Module, make: Callable[[nn.Module], nn.Module],
                  kinds: tuple[type[nn.Module], ...] = PER_IMAGE_NORMS) -> list[nn.Module]:
    """Replace, in place, every layer of ``model`` that is one of ``kinds`` by ``make(layer)``;
    returns the replacements in network order."""
    made = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kinds):
                made.append(make(child))
                setattr(parent, name, made[-1])
    return made
