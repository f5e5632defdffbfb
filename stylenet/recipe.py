"""What defines a training run, apart from its norm: the ``Recipe`` (stored in every checkpoint),
the presets that fill it in, and the schedules it implies (style-weight and learning-rate ramps)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .vgg import CONTENT_LAYER
from .weights import sha256_file

# What checkpoints written before the recipe recorded its content layer were trained with.
LEGACY_CONTENT_LAYER = "relu2_2"
# Recipe fields that must match for --resume to continue the same run.
RESUME_MUST_MATCH = ("width", "image_size", "batch_size", "lr", "content_weight", "style_weight", "tv_weight",
                     "style_size", "style_warmup", "lr_warmup", "seed", "style_sha256", "contrast_normalize",
                     "content_layer", "validation_photos")


@dataclass
class Recipe:
    """All hyper-parameters of a run but the norm; stored in every checkpoint it writes."""

    style: str
    content: str
    width: int = 32
    steps: int = 2000
    image_size: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 10.0
    style_size: int = 256
    style_warmup: int = 150
    lr_warmup: int = 0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    contrast_normalize: bool = False
    style_sha256: str = ""
    # The VGG layer whose features the output must keep (vgg.CONTENT_LAYER says why relu4_1).
    content_layer: str = CONTENT_LAYER
    # Photos of the content folder kept out of training to choose the best checkpoint on (at most a
    # tenth of the folder); 0 keeps every photo for training and the last checkpoint only.
    validation_photos: int = 0
    # A step whose loss exceeds this many times the running median is skipped (guard.py); 0: never.
    spike_factor: float = 4.0

    def __post_init__(self) -> None:
        if not self.style_sha256 and Path(self.style).is_file():
            self.style_sha256 = sha256_file(Path(self.style))

    @property
    def style_name(self) -> str:
        return Path(self.style).stem

    @classmethod
    def from_metadata(cls, recipe: Mapping[str, Any]) -> Recipe:
        """The recipe a checkpoint records. Keys that older versions kept in it (``norm``,
        ``channels_last``) are no longer part of a recipe and are left out; one that recorded no
        content layer was trained at ``LEGACY_CONTENT_LAYER``, whatever today's default."""
        known = {f.name for f in fields(cls)}
        return cls(**{"content_layer": LEGACY_CONTENT_LAYER} | {k: v for k, v in recipe.items() if k in known})


# What --preset sets (explicit flags override it): crop size, batch, steps and width, for a known
# budget on a 2-core CPU (docs/training.md, "Presets"); the loss is the Recipe's (docs/recipe.md). quick:
# BN + IN within 15 minutes on a 2-core CPU without bf16 (docs/figures/quick_preset.md), a width-16
# network and a shorter style warm-up; full: Johnson et al.'s schedule.
PRESETS: dict[str, dict[str, float]] = {
    "quick": {"image_size": 128, "batch_size": 4, "steps": 400, "width": 16, "style_warmup": 100},
    "standard": {"image_size": 256, "batch_size": 4, "steps": 2000, "width": 32},
    "full": {"image_size": 256, "batch_size": 4, "steps": 40000, "width": 32},
}
DEFAULT_PRESET = "standard"


def ramp(full: float, warmup: int, step: int) -> float:
    """``full`` scaled linearly from 1/warmup at step 0 up to itself at step ``warmup - 1``."""
    return full if warmup <= 0 else full * min(1.0, (step + 1) / warmup)


def style_weight(recipe: Recipe, step: int) -> float:
    """The style weight ramps up over ``style_warmup`` steps: the network first learns to keep the
    photo's structure, which on a short CPU budget keeps content recognizable."""
    return ramp(recipe.style_weight, recipe.style_warmup, step)


def learning_rate(recipe: Recipe, step: int) -> float:
    """The learning rate ramps up over ``lr_warmup`` steps. A fresh Adam's first updates are
    ``lr * sign(grad)`` for every weight (its second moment has not built up yet): harmless from
    random weights, but enough to knock a trained model (``--init``) far off before it recovers."""
    return ramp(recipe.lr, recipe.lr_warmup, step)


def provenance(recipe: Recipe, photo_count: int) -> dict[str, Any]:
    """What a checkpoint records of its inputs: names, counts and hashes, never this machine's paths
    (shipped files must not leak where they were trained, and paths mean nothing elsewhere)."""
    return {"style": recipe.style_name, "style_sha256": recipe.style_sha256,
            "painting": {"name": recipe.style_name, "file": Path(recipe.style).name, "sha256": recipe.style_sha256},
            "training_set": {"name": Path(recipe.content).name, "photos": photo_count},
            "recipe": asdict(recipe) | {"style": Path(recipe.style).name, "content": Path(recipe.content).name}}
