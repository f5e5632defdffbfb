"""Training that survives its own spikes.

A perceptual-loss run on a small batch now and then meets a batch whose gradient throws the model far
off (the shipped The Scream IN model: style loss 120-165x its level for ten steps, never fully
recovered). ``SpikeGuard`` refuses such a step before the optimizer takes it: a loss far above the
running median of the recent steps is a spike, its gradient is dropped and the step is logged as
skipped. The median (not the mean) is what the spikes themselves cannot drag up.
"""
from __future__ import annotations

import statistics
from collections import deque


class SpikeGuard:
    """Tells whether one model's loss at a step is a spike, from the losses of its recent good steps.

    ``factor``: how many times the running median a loss may reach. ``window``: how many recent good
    losses the median is taken over; no step is called a spike before ``min_history`` of them exist.
    The style weight's warm-up raises the loss by at most a few per cent a step, far below ``factor``.
    """

    def __init__(self, factor: float = 4.0, window: int = 50, min_history: int = 20) -> None:
        if factor <= 1:
            raise ValueError(f"a spike factor must be above 1, got {factor}")
        self.factor, self.min_history = factor, min_history
        self.history: deque[float] = deque(maxlen=window)

    def is_spike(self, loss: float) -> bool:
        """True when ``loss`` is a spike; a good loss joins the history, a spike does not."""
        if len(self.history) >= self.min_history and loss > self.factor * statistics.median(self.history):
            return True
        self.history.append(loss)
        return False
