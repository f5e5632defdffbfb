"""The optimization-based reference of Gatys et al.: L-BFGS on the pixels of one image.

No network: the image itself is optimized to minimize the very loss the feed-forward models are
trained on (``stylenet.losses`` on the Oxford VGG19). It is slow (one VGG forward and backward per
iteration) but the best this loss can do for one photo, so "a model's loss equals N iterations of
optimization" measures what a one-pass network gives up (Johnson et al.: their networks match 50-80).
``Objective`` is also what scripts/compare.py measures the models' outputs with, so both sides of
that comparison are the same number.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from .losses import content_loss, style_loss, total_variation
from .vgg import CONTENT_LAYER, VGGFeatures


@dataclass(frozen=True)
class LossWeights:
    """How the three unweighted loss terms add up to the objective."""

    content: float
    style: float
    tv: float

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> LossWeights:
        """The weights a checkpoint was trained with (its metadata's ``recipe``)."""
        return cls(recipe["content_weight"], recipe["style_weight"], recipe["tv_weight"])

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.content * terms["content"] + self.style * terms["style"] + self.tv * terms["tv"]


class Objective:
    """The perceptual loss of an output image for one photo and one painting (fp32).

    The photo's content features are computed once; ``terms`` gives the unweighted relative errors
    (content at ``content_layer``, a recipe's choice, style over the Gram layers, total variation) of
    any image of the photo's size.
    """

    def __init__(self, vgg: VGGFeatures, photo: torch.Tensor, grams: dict[str, torch.Tensor],
                 content_layer: str = CONTENT_LAYER) -> None:
        self.vgg, self.grams, self.content_layer = vgg, grams, content_layer
        with torch.no_grad():
            self.content_target = vgg(photo, upto=content_layer)[content_layer]

    def terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.vgg(image)
        return {"content": content_loss(feats[self.content_layer], self.content_target),
                "style": style_loss(feats, self.grams),
                "tv": total_variation(image)}


@dataclass
class Optimized:
    """The result of ``optimize``: ``history[i]`` holds the terms and total after i iterations
    (``history[0]`` is the photo itself, the last is the clamped result), so any iteration's loss
    can be read off. ``clamped[i]`` (with ``measure_clamped``) holds the same for the image clamped
    to [0, 1] after i iterations: what a picture taken at that point would score, comparable with
    a network's clamped output."""

    image: torch.Tensor
    history: list[dict[str, float]]
    seconds: float
    clamped: list[dict[str, float]] = field(default_factory=list)


def optimize(photo: torch.Tensor, grams: dict[str, torch.Tensor], vgg: VGGFeatures, weights: LossWeights,
             iters: int, progress: bool = True, measure_clamped: bool = False,
             content_layer: str = CONTENT_LAYER) -> Optimized:
    """L-BFGS on the pixels, starting from the photo ((1, 3, H, W) in [0, 1], on the VGG's device).

    Pixels are free while optimizing and clamped to [0, 1] once at the end, as in Gatys's and
    Johnson's implementations. Clamping inside the loss was measured to hurt (128-160 px, 60-100
    iterations): a plain clamp freezes every pixel that overshoots (3% stuck, loss 0.63 instead of
    0.42) and a straight-through clamp feeds L-BFGS inconsistent gradients (the loss stops falling
    and jumps by up to 0.16), while free pixels fall steadily. The final clamp costs a little: the
    weighted style + content loss rose 2-13% at 256 px after 80 iterations (0.1% at 128 px after 60),
    and the last ``history`` entry is the returned, clamped image's, so reports include that cost.
    Each ``step`` runs one L-BFGS iteration (one loss evaluation, no line search,
    as in those implementations), so iterations and evaluations are the same count.
    ``measure_clamped`` adds one VGG forward per iteration to score the clamped image too.
    """
    objective = Objective(vgg, photo, grams, content_layer)
    image = photo.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=1)
    history: list[dict[str, float]] = []
    clamped: list[dict[str, float]] = []

    def scores(terms: dict[str, torch.Tensor]) -> dict[str, float]:
        return {name: value.item() for name, value in terms.items()} | {"total": weights.total(terms).item()}

    def evaluate() -> torch.Tensor:
        optimizer.zero_grad()
        terms = objective.terms(image)
        total = weights.total(terms)
        total.backward()
        history.append(scores(terms))
        if measure_clamped:
            with torch.no_grad():
                clamped.append(scores(objective.terms(image.clamp(0, 1))))
        return total

    def show_latest() -> None:
        latest = history[-1]
        bar.set_postfix(style=f"{latest['style']:.3f}", content=f"{latest['content']:.3f}",
                        total=f"{latest['total']:.3f}")

    started = time.perf_counter()
    bar = tqdm(total=iters, desc="L-BFGS", unit="it", disable=not progress)
    for _ in range(iters):
        optimizer.step(evaluate)  # evaluates the loss where this iteration starts, then steps
        bar.update()
        show_latest()
    with torch.no_grad():
        image.clamp_(0, 1)
    evaluate()  # the loss of the result
    show_latest()
    bar.close()
    if measure_clamped:
        clamped[-1] = history[-1]  # the final evaluation's image is clamped already
    return Optimized(image.detach(), history, time.perf_counter() - started, clamped)
