"""Tiled inference for huge photos: bounded memory, the same pixels as one whole-image pass.

The photo is cut into cores that partition it; each core runs with ``MARGIN`` pixels of real context
around it (more than the network's receptive radius) and only the core is kept, so no blending is
needed. That makes a core's pixels exactly the whole image's, provided every per-image norm (instance,
layer, group) normalizes with the *whole image's* statistics rather than the tile's - per-tile
statistics leave seams. Those statistics are computed exactly, at full resolution, one norm layer at a
time: a pass over the tiles runs the network up to the first norm whose statistics are still unknown
(the earlier ones already fixed at their exact values), collects the mean and variance of that norm's
input over each tile's core, and stops there. A network with k per-image norms thus takes k partial
passes before the final one (15 for the Johnson network; the cost is in the README).

A model with per-image norms is deep-copied and its norms are wrapped in the copy, so a model that
other threads use at the same time is never modified; one without (BN, eval mode: constant statistics)
runs as it is.
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .norms import PER_IMAGE_NORMS, norm_groups, normalize, replace_norms
from .transformer import DOWNSCALE

# Context kept around every core, in pixels: more than the Johnson network's receptive radius (an
# input pixel changes outputs up to 57 px away; tests/test_tiling.py measures it) and a multiple of
# DOWNSCALE, so every crop samples the same stride-4 grid as the whole image does.
MARGIN = 64


class StatisticsTaken(Exception):
    """Raised by the norm being measured: the rest of the network is not needed in this pass."""


@dataclass(frozen=True)
class Tile:
    """One piece of the photo: the crop that runs through the network and the core kept from it."""

    crop_rows: slice
    crop_cols: slice
    core_rows: slice
    core_cols: slice

    def core_of(self, feature: torch.Tensor) -> torch.Tensor:
        """The core's part of a feature map computed from this tile's crop (at full, 1/2 or 1/4 scale)."""
        scale = (self.crop_rows.stop - self.crop_rows.start) // feature.shape[-2]
        top, left = self.core_rows.start - self.crop_rows.start, self.core_cols.start - self.crop_cols.start
        bottom, right = self.core_rows.stop - self.crop_rows.start, self.core_cols.stop - self.crop_cols.start
        return feature[..., top // scale:bottom // scale, left // scale:right // scale]


class WholeImageNorm(nn.Module):
    """Stands in for one InstanceNorm2d/GroupNorm while a photo runs tile by tile: until the whole
    image's statistics are known it measures them over each core (and stops the forward); after
    ``fix()`` it normalizes every tile with them."""

    def __init__(self, norm: nn.InstanceNorm2d | nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm
        self.tile: Tile | None = None  # the tile now running, set before each forward
        self.groups = norm_groups(norm)
        self.moments: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # per core: count, channel mean, var
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None  # (1, C, 1, 1) mean and variance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            core = self.tile.core_of(x)
            var, mean = torch.var_mean(core.float(), dim=(0, 2, 3), correction=0)
            self.moments.append((core.shape[-2] * core.shape[-1], mean.double(), var.double()))
            raise StatisticsTaken
        return normalize(x, *self.stats, self.norm)

    def fix(self) -> None:
        """Combine the cores' moments into the whole image's per-group mean and variance (float64:
        the variance comes out as a difference of two large sums)."""
        means = torch.stack([m for _, m, _ in self.moments])  # (cores, channels)
        squares = torch.stack([v for _, _, v in self.moments]) + means ** 2  # per core: mean of x^2
        counts = torch.tensor([n for n, _, _ in self.moments], dtype=torch.float64, device=means.device)
        weights = counts / counts.sum()
        group_mean = (weights @ means).view(self.groups, -1).mean(1)  # a group's channels: equal counts
        group_var = (weights @ squares).view(self.groups, -1).mean(1) - group_mean ** 2
        per_group = means.shape[1] // self.groups
        self.stats = tuple(g.repeat_interleave(per_group).view(1, -1, 1, 1).float() for g in (group_mean, group_var))
        self.moments = []


def with_whole_image_norms(model: nn.Module) -> tuple[nn.Module, list[WholeImageNorm]]:
    """A copy of ``model`` whose per-image norms are WholeImageNorms, and those norms. The caller's
    model stays untouched: it may be serving other threads meanwhile. A model without per-image
    norms (BN, whose statistics are constants at eval time) is returned as it is, not copied."""
    if not any(isinstance(m, PER_IMAGE_NORMS) for m in model.modules()):
        return model, []
    model = copy.deepcopy(model)
    return model, replace_norms(model, WholeImageNorm)


def spans(length: int, tile: int, margin: int) -> list[tuple[slice, slice]]:
    """(crop, core) pairs along one axis: cores of about ``tile`` pixels, at multiples of DOWNSCALE,
    that partition [0, length); each crop is its core plus ``margin`` on both sides, within the image."""
    count = math.ceil(length / tile)
    bounds = [round(length * i / count / DOWNSCALE) * DOWNSCALE for i in range(count + 1)]
    return [(slice(max(0, a - margin), min(length, b + margin)), slice(a, b)) for a, b in itertools.pairwise(bounds)]


def run_tiled(model: nn.Module, x: torch.Tensor, tile: int = 512, margin: int = MARGIN,
              freeze: bool = True) -> torch.Tensor:
    """``model(x)`` for a (1, 3, H, W) tensor and an eval-mode ``model``, computed tile by tile; returns
    (1, 3, H, W) float on the CPU.

    ``freeze=False`` lets every tile's norms use the tile's own statistics instead of the whole
    image's: what a naive tiling does, with visible seams (kept to show why).
    """
    height, width = x.shape[-2:]
    if height % DOWNSCALE or width % DOWNSCALE:  # as the network itself pads: replicate the last rows
        x = F.pad(x, (0, -width % DOWNSCALE, 0, -height % DOWNSCALE), mode="replicate")
    tiles = [Tile(crop_rows, crop_cols, core_rows, core_cols)
             for crop_rows, core_rows in spans(x.shape[-2], tile, margin)
             for crop_cols, core_cols in spans(x.shape[-1], tile, margin)]
    model, norms = with_whole_image_norms(model) if freeze else (model, [])
    out = torch.empty(1, 3, *x.shape[-2:])
    with torch.inference_mode():
        while True:  # each pass measures one more norm and stops there, or, once all are known, paints
            for piece in tiles:
                for norm in norms:
                    norm.tile = piece
                try:
                    y = model(x[..., piece.crop_rows, piece.crop_cols])
                except StatisticsTaken:
                    continue
                out[..., piece.core_rows, piece.core_cols] = piece.core_of(y).float().cpu()
            measured = [norm for norm in norms if norm.moments]
            if not measured:
                return out[..., :height, :width]
            measured[0].fix()
