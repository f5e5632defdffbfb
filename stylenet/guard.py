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
from typing import Any


class SpikeGuard:
    """Tells whether one model's loss at a step is a spike, from the losses of its recent good steps.

    ``factor``: how many times the running median a loss may reach. ``window``: how many recent good
    losses the median is taken over; no step is called a spike before ``min_history`` of them exist.
    The style weight's warm-up raises the loss by at most a few per cent a step, far below ``factor``.
    After ``max_skips`` spikes in a row the level itself has moved (a run must not skip every step
    for ever): that step is taken and the history starts again from it.
    """

    def __init__(self, factor: float = 4.0, window: int = 50, min_history: int = 20, max_skips: int = 10) -> None:
        if factor <= 1:
            raise ValueError(f"a spike factor must be above 1, got {factor}")
        self.factor, self.min_history, self.max_skips = factor, min_history, max_skips
        self.history: deque[float] = deque(maxlen=window)
        self.skips = 0  # spikes in a row

    def is_spike(self, loss: float) -> bool:
        """True when ``loss`` is a spike; a good loss joins the history, a spike does not."""
        high = len(self.history) >= self.min_history and loss > self.factor * statistics.median(self.history)
        if high and self.skips < self.max_skips:
            self.skips += 1
            return True
        if high:
            self.history.clear()
        self.skips = 0
        self.history.append(loss)
        return False

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to judge the next step exactly as an uninterrupted one would."""
        return {"history": list(self.history), "skips": self.skips}

    def load(self, state: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(state["history"])
        self.skips = state["skips"]
