"""Normalization layers, made by name.

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
"""
from __future__ import annotations

from torch import nn

NORM_KINDS: tuple[str, ...] = ("batch", "instance", "layer", "group", "none")
DEFAULT_MAX_GROUPS = 8


def default_groups(channels: int, max_groups: int = DEFAULT_MAX_GROUPS) -> int:
    """Largest group count <= ``max_groups`` that divides ``channels`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def create_norm_layer(kind: str, channels: int, groups: int | None = None) -> nn.Module:
    """Map a norm name to a layer normalizing ``channels`` feature maps.

    Raises ValueError for an unknown name, listing the valid ones, so a typo on the command line
    fails before any work is done.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        # track_running_stats=False: per-image statistics at train AND eval time.
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "layer":
        # GroupNorm with one group = statistics over (C, H, W) of each image, per-channel affine.
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(groups or default_groups(channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of: {', '.join(NORM_KINDS)}")
