"""Training a transformation network for one style: the perceptual-loss recipe of Johnson et al.

Everything that defines a run lives in ``Recipe``; ``train`` is resumable (``resume=True`` picks
up model, Adam state, step and data RNG from the last checkpoint) and never overwrites a good
checkpoint with a diverged one.
"""
from __future__ import annotations

import csv
import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import __version__
from .checkpoint import load_train_state, save_model, save_train_state
from .data import ContentPhotos, load_rgb
from .runtime import pick_device, to_tensor
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .transformer import TransformerNet
from .vgg import CONTENT_LAYER, STYLE_LAYERS, VGGFeatures

# Recipe fields that must match for --resume to continue the same run.
RESUME_MUST_MATCH = ("norm", "width", "image_size", "batch_size", "lr", "content_weight", "style_weight",
                     "tv_weight", "style_size", "style_warmup", "seed", "style_sha256", "contrast_normalize")
LOG_COLUMNS = ("step", "content", "style", "tv", "total", "images_per_s", "seconds")


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is left untouched."""


@dataclass
class Recipe:
    """All hyper-parameters of a run; stored in every checkpoint it writes."""

    style: str
    content: str
    norm: str = "instance"
    width: int = 32
    steps: int = 2000
    image_size: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    style_size: int = 384
    style_warmup: int = 0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    contrast_normalize: bool = False
    channels_last: bool = True
    style_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.style_sha256 and Path(self.style).is_file():
            self.style_sha256 = hashlib.sha256(Path(self.style).read_bytes()).hexdigest()

    @property
    def style_name(self) -> str:
        return Path(self.style).stem


def state_path(out: Path) -> Path:
    """The training-state file kept beside the model file (``x.safetensors`` -> ``x.train.safetensors``)."""
    return Path(out).with_suffix(".train.safetensors")


def normalize_contrast(batch: torch.Tensor) -> torch.Tensor:
    """Give every image the same per-channel mean (0.5) and std (0.2): the Huang & Belongie
    control that removes per-image contrast before the network sees it."""
    mean = batch.mean(dim=(2, 3), keepdim=True)
    std = batch.std(dim=(2, 3), keepdim=True) + 1e-5
    return ((batch - mean) / std * 0.2 + 0.5).clamp(0, 1)


def style_targets(vgg: VGGFeatures, style_path: str, style_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Gram matrices of the painting, resized so its short side is ``style_size``; computed once."""
    from torchvision.transforms.v2 import functional as TF

    img = TF.resize(load_rgb(Path(style_path)), style_size, antialias=True)
    with torch.no_grad():
        feats = vgg(to_tensor(img).unsqueeze(0).to(device))
    return {name: gram_matrix(feats[name]) for name in STYLE_LAYERS}


def style_weight(recipe: Recipe, step: int) -> float:
    """The style weight ramps up linearly over ``style_warmup`` steps: the network first learns to
    keep the photo's structure, which on a short CPU budget keeps content recognizable."""
    if recipe.style_warmup <= 0:
        return recipe.style_weight
    return recipe.style_weight * min(1.0, (step + 1) / recipe.style_warmup)


def provenance(recipe: Recipe, photo_count: int) -> dict[str, Any]:
    """What a checkpoint records of its inputs: names, counts and hashes, never this machine's paths
    (shipped files must not leak where they were trained, and paths mean nothing elsewhere)."""
    return {"style": recipe.style_name, "style_sha256": recipe.style_sha256,
            "painting": {"name": recipe.style_name, "file": Path(recipe.style).name, "sha256": recipe.style_sha256},
            "training_set": {"name": Path(recipe.content).name, "photos": photo_count},
            "recipe": asdict(recipe) | {"style": Path(recipe.style).name, "content": Path(recipe.content).name}}


def check_resumable(saved: dict[str, Any], recipe: Recipe) -> None:
    diff = [k for k in RESUME_MUST_MATCH if saved.get(k) != getattr(recipe, k)]
    if diff:
        raise ValueError(f"cannot resume: recipe differs from the checkpoint in {', '.join(diff)}")


def train(recipe: Recipe, out: Path, device: str = "auto", resume: bool = False, log: Path | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train (or continue training) and write the model to ``out``; returns its metadata."""
    out, dev = Path(out), pick_device(device)
    log = Path(log) if log else out.with_suffix(".csv")
    torch.manual_seed(recipe.seed)
    model = TransformerNet(recipe.norm, recipe.width).to(dev)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(recipe.seed)
    start = 0
    if resume and state_path(out).is_file():
        saved = load_train_state(state_path(out), model, optimizer, generator)
        check_resumable(saved["recipe"], recipe)
        start = saved["step"]
        print(f"resuming {out.name} from step {start}")
    vgg = VGGFeatures.oxford().to(dev).to(memory_format=memory_format)
    grams = style_targets(vgg, recipe.style, recipe.style_size, dev)
    photos = ContentPhotos.scan(Path(recipe.content), recipe.image_size, progress=progress)
    if photos.skipped:
        print(f"skipped {len(photos.skipped)} unreadable file(s) in {recipe.content}")
    use_amp = dev.type == "cuda"
    log.parent.mkdir(parents=True, exist_ok=True)
    if start == 0 or not log.is_file():
        with open(log, "w", newline="") as f:
            csv.writer(f).writerow(LOG_COLUMNS)

    def meta(step: int, losses: dict[str, float]) -> dict[str, Any]:
        return {**provenance(recipe, len(photos.images)), "steps": step, "final_losses": losses,
                "stylenet_version": __version__, "step": step}

    model.train()
    losses: dict[str, float] = {}
    tick, seen = time.perf_counter(), 0
    started = time.perf_counter()
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress,
               desc=f"{recipe.style_name}/{recipe.norm}", unit="step")
    for step in bar:
        x = photos.batch(recipe.batch_size, recipe.image_size, generator).to(dev)
        if recipe.contrast_normalize:
            x = normalize_contrast(x)
        x = x.contiguous(memory_format=memory_format)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            y = model(x)
            feats = vgg(y)
            with torch.no_grad():
                target = vgg(x, upto=CONTENT_LAYER)[CONTENT_LAYER]
            parts = {"content": recipe.content_weight * content_loss(feats[CONTENT_LAYER].float(), target.float()),
                     "style": style_weight(recipe, step) * style_loss({k: v.float() for k, v in feats.items()}, grams),
                     "tv": recipe.tv_weight * total_variation(y.float())}
        total = parts["content"] + parts["style"] + parts["tv"]
        if not math.isfinite(total.item()):
            raise TrainingDiverged(f"loss became {total.item()} at step {step + 1}; last good checkpoint "
                                   f"{state_path(out)} kept (try a lower --lr)")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        seen += x.shape[0]
        done = step + 1
        if done % recipe.log_every == 0 or done == recipe.steps:
            now = time.perf_counter()
            losses = {k: round(v.item(), 5) for k, v in parts.items()} | {"total": round(total.item(), 5)}
            rate = seen / (now - tick)
            tick, seen = now, 0
            bar.set_postfix(content=f"{losses['content']:.3f}", style=f"{losses['style']:.3f}",
                            tv=f"{losses['tv']:.3f}", img_s=f"{rate:.2f}")
            with open(log, "a", newline="") as f:
                csv.writer(f).writerow([done, losses["content"], losses["style"], losses["tv"], losses["total"],
                                        round(rate, 3), round(now - started, 1)])
        if done % recipe.checkpoint_every == 0 and done < recipe.steps:
            save_train_state(model, optimizer, generator, meta(done, losses), state_path(out))
    bar.close()
    final = meta(recipe.steps, losses)
    save_train_state(model, optimizer, generator, final, state_path(out))
    save_model(model.to(memory_format=torch.contiguous_format), final, out)
    return final

