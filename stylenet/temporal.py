"""Temporal stability for video without retraining: per-frame IN/GN statistics averaged over time.

Instance, layer and group norm recompute their mean and variance on every frame, so when the picture
changes (a pan brings a bright sky into view, a zoom fills the frame with a face) the normalization of
*every* pixel changes with it and the painting's colours and stroke strength shift from frame to frame.
BN has no such term (its eval-mode statistics are constants), one reason why BN flickers differently.

``stabilized(stylizer, momentum)`` returns a copy whose per-image norms normalize frame t with an
exponential moving average of the statistics of frames 0..t, layer by layer:
``mean_t = momentum * mean_(t-1) + (1 - momentum) * mean(frame t)`` (the same for the variance).
``momentum = 0`` is plain IN; ``momentum = 1`` freezes the statistics of the first frame (a reference
frame). ``scripts/flicker.py`` measures what each costs in style and gains in stability.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .norms import norm_groups, normalize, replace_norms
from .stylize import Stylizer

STABILIZERS = {"ema": 0.9, "reference": 1.0}  # CLI/app names -> momentum (per frame)


class SmoothedStatsNorm(nn.Module):
    """Stands in for an InstanceNorm2d/GroupNorm: normalizes each frame of a batch (frames in time
    order) with group statistics averaged over the frames seen so far, earlier batches included."""

    def __init__(self, norm: nn.InstanceNorm2d | nn.GroupNorm, momentum: float) -> None:
        super().__init__()
        self.norm, self.momentum = norm, momentum
        self.groups = norm_groups(norm)
        self.running: tuple[torch.Tensor, torch.Tensor] | None = None  # (groups,) mean and variance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        var, mean = torch.var_mean(x.float().reshape(n, self.groups, -1), dim=-1, correction=0)
        smoothed = []
        for current in zip(mean, var):  # sequential: frame t depends on frames < t only
            if self.running is None:
                self.running = current
            else:
                self.running = tuple(self.momentum * old + (1 - self.momentum) * new
                                     for old, new in zip(self.running, current))
            smoothed.append(torch.stack(self.running))
        mean, var = torch.stack(smoothed).repeat_interleave(c // self.groups, dim=2).view(n, 2, c, 1, 1).unbind(1)
        return normalize(x, mean, var, self.norm)


def stabilized(stylizer: Stylizer, momentum: float) -> Stylizer:
    """A copy of ``stylizer`` with smoothed statistics; the original (shared by the app's concurrent
    requests) is untouched. Use one copy per clip: it remembers the frames it has seen. A BN model
    comes back unchanged in behaviour, since it has no per-frame statistics to smooth."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be between 0 and 1, got {momentum}")
    clone = copy.copy(stylizer)
    clone.model = copy.deepcopy(stylizer.model)
    replace_norms(clone.model, lambda norm: SmoothedStatsNorm(norm, momentum))
    return clone
