"""Tiled inference for huge photos: bounded memory, no seams.

Tiles overlap and are blended with linear ramps. Per-image norms (instance, layer, group) would
see different statistics in every tile and leave visible seams, so their statistics are first
recorded on a downscaled pass of the whole image and then frozen while the tiles run.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class FrozenStatsNorm(nn.Module):
    """Wraps an InstanceNorm2d/GroupNorm: ``record`` mode stores its per-image group statistics,
    ``frozen`` mode normalizes any crop with the stored ones."""

    def __init__(self, norm: nn.InstanceNorm2d | nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm
        self.groups = norm.num_groups if isinstance(norm, nn.GroupNorm) else norm.num_features
        self.mode = "record"
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.mode == "record":
            grouped = x.float().reshape(n, self.groups, -1)
            self.stats = (grouped.mean(-1), grouped.var(-1, unbiased=False))
            return self.norm(x)
        mean, var = (s.repeat_interleave(c // self.groups, dim=1).view(n, c, 1, 1) for s in self.stats)
        y = (x.float() - mean) * torch.rsqrt(var + self.norm.eps)
        if self.norm.weight is not None:
            y = y * self.norm.weight.float().view(1, c, 1, 1) + self.norm.bias.float().view(1, c, 1, 1)
        return y.to(x.dtype)


@contextmanager
def frozen_statistics(model: nn.Module) -> Iterator[list[FrozenStatsNorm]]:
    """Temporarily wrap every per-image norm of ``model``; restores the model on exit. The
    wrappers start in ``record`` mode, which behaves exactly like the wrapped norm."""
    wrapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.InstanceNorm2d, nn.GroupNorm)):
                setattr(parent, name, FrozenStatsNorm(child))
                wrapped.append((parent, name, child))
    try:
        yield [getattr(p, n) for p, n, _ in wrapped]
    finally:
        for parent, name, child in wrapped:
            setattr(parent, name, child)


def ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blending weights: rising over ``overlap`` pixels except at the image border."""
    weight = torch.ones(length)
    fade = torch.linspace(0, 1, overlap + 2)[1:-1]
    if not at_start and overlap:
        weight[:overlap] = fade
    if not at_end and overlap:
        weight[-overlap:] = fade.flip(0)
    return weight


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


@torch.inference_mode()
def run_tiled(model: nn.Module, x: torch.Tensor, tile: int = 512, overlap: int = 96,
              stats_size: int = 1024, freeze: bool = True) -> torch.Tensor:
    """``model(x)`` for a (1, 3, H, W) tensor, computed tile by tile.

    Statistics of per-image norms come from ``x`` resized so its longest side is ``stats_size``
    (the whole image when it is smaller), so every tile is normalized alike. ``freeze=False``
    shows what happens otherwise (each tile normalized by its own statistics: seams).
    """
    _, _, h, w = x.shape
    with frozen_statistics(model) as norms:
        if norms and freeze:
            scale = min(1.0, stats_size / max(h, w))
            small = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="area")
            model(small)
            for norm in norms:
                norm.mode = "frozen"
        out = torch.zeros(3, h, w)
        total = torch.zeros(1, h, w)
        ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
        for top in ys:
            for left in xs:
                crop = x[..., top:top + tile, left:left + tile]
                th, tw = crop.shape[-2:]
                y = model(crop)[0].float().cpu()
                weight = (ramp(th, overlap, top == 0, top + th >= h).view(th, 1)
                          * ramp(tw, overlap, left == 0, left + tw >= w).view(1, tw))
                out[:, top:top + th, left:left + tw] += y * weight
                total[:, top:top + th, left:left + tw] += weight
    return (out / total).unsqueeze(0)
