"""Slim students: a narrower network trained to reproduce a trained model's pictures (distillation).

A style model is expensive to train because every step runs its output through VGG up to relu4_1 and
back, against Gram matrices. Once a teacher exists, a student needs none of that: its target is the
teacher's own output on the same crop, so the loss is a pixel error plus a light perceptual term (VGG
up to ``PERCEPTUAL_LAYER`` only, where edges and fine texture live), and a step costs a fraction of a
style-training step. The student keeps the teacher's norm (a BN teacher in eval mode, as it ships; a BN
student learns its own running statistics) and the architecture at a smaller ``width``, so it loads,
exports and stylizes like any other model (``blocks`` may also take residual blocks away).
"""
from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .checkpoint import MAX_BLOCKS, MAX_WIDTH, load_model, save_model
from .data import ContentPhotos
from .losses import content_loss
from .runtime import pick_device
from .subpixel import pays_on, rearrange_convs
from .transformer import RESIDUAL_BLOCKS, TransformerNet
from .vgg import VGGFeatures
from .weights import sha256_file

PERCEPTUAL_LAYER = "relu2_1"  # two conv blocks: cheap, and where a blurred stroke shows
LOG_COLUMNS = ("step", "pixel", "perceptual", "total", "images_per_s", "seconds")


@dataclass
class DistillRecipe:
    """What a student's training is made of; stored in its checkpoint under ``distill``."""

    teacher: str
    content: str
    width: int = 16
    blocks: int = RESIDUAL_BLOCKS  # fewer is faster at the same width
    steps: int = 2000
    image_size: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    perceptual_weight: float = 0.1  # on a relative feature error (1 = as far as zero); the L1 pixel error is ~0.05
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200


def distillation_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, vgg: VGGFeatures,
                      recipe: DistillRecipe) -> dict[str, torch.Tensor]:
    """L1 between the pictures, plus the relative feature error at ``PERCEPTUAL_LAYER``."""
    with torch.no_grad():
        target = vgg(teacher_out, upto=PERCEPTUAL_LAYER)[PERCEPTUAL_LAYER]
    pixel = F.l1_loss(student_out, teacher_out)
    perceptual = content_loss(vgg(student_out, upto=PERCEPTUAL_LAYER)[PERCEPTUAL_LAYER], target)
    return {"pixel": pixel, "perceptual": perceptual, "total": pixel + recipe.perceptual_weight * perceptual}


def student_provenance(teacher_meta: dict[str, Any], recipe: DistillRecipe, photos: int) -> dict[str, Any]:
    """The teacher's painting and provenance, its recipe as the one that made the pictures, and how
    the student learned them (file names and hashes only, never this machine's paths); computed once
    per run, the teacher's hash included."""
    kept = {k: teacher_meta[k] for k in ("style", "style_sha256", "painting", "training_set", "recipe")
            if k in teacher_meta}
    return kept | {"distill": asdict(recipe) | {"teacher": Path(recipe.teacher).name,
                                                "teacher_sha256": sha256_file(Path(recipe.teacher)),
                                                "teacher_width": teacher_meta["width"],
                                                "content": Path(recipe.content).name, "photos": photos}}


def distill(recipe: DistillRecipe, out: Path, device: str = "auto") -> dict[str, Any]:
    """Train a student of ``recipe.teacher`` on crops of ``recipe.content``; writes ``out`` (fp16,
    every ``checkpoint_every`` steps and at the end) and its log beside it; returns its metadata."""
    if Path(out).resolve() == Path(recipe.teacher).resolve():
        raise ValueError("the student's file would replace its teacher: choose another out")
    if recipe.steps < 1:
        raise ValueError(f"steps must be at least 1 (got {recipe.steps})")
    if not 1 <= recipe.width <= MAX_WIDTH or not 1 <= recipe.blocks <= MAX_BLOCKS:
        raise ValueError(f"width must be 1 to {MAX_WIDTH} and blocks 1 to {MAX_BLOCKS} "
                         f"(got {recipe.width} and {recipe.blocks})")
    dev = pick_device(device)
    teacher, teacher_meta = load_model(Path(recipe.teacher), dev)
    teacher.eval().requires_grad_(False)
    with torch.random.fork_rng():  # the student's initial weights follow the seed, as its crops do
        torch.manual_seed(recipe.seed)
        student = TransformerNet(teacher.norm_kind, recipe.width, recipe.blocks)
    student = student.to(dev, memory_format=torch.channels_last)
    if pays_on(dev):  # both networks' half-resolution convs (subpixel.py)
        rearrange_convs(teacher)
        rearrange_convs(student)
    vgg = VGGFeatures.oxford((PERCEPTUAL_LAYER,)).to(dev, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(student.parameters(), lr=recipe.lr)
    photos = ContentPhotos.scan(Path(recipe.content), recipe.image_size)
    generator = torch.Generator().manual_seed(recipe.seed)
    provenance = student_provenance(teacher_meta, recipe, len(photos.images))
    log = Path(out).with_suffix(".csv")
    log.write_text(",".join(LOG_COLUMNS) + "\n")
    started, meta = time.perf_counter(), {}
    for step in range(1, recipe.steps + 1):
        x = photos.batch(recipe.batch_size, recipe.image_size, generator).to(dev)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            target = teacher(x)
        terms = distillation_loss(student(x), target, vgg, recipe)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        losses = {k: round(v.item(), 5) for k, v in terms.items()}
        seconds = time.perf_counter() - started
        if step % recipe.log_every == 0 or step == recipe.steps:
            with open(log, "a", newline="") as f:
                csv.writer(f).writerow([step, losses["pixel"], losses["perceptual"], losses["total"],
                                        round(step * recipe.batch_size / seconds, 3), round(seconds, 1)])
        if step % recipe.checkpoint_every == 0 or step == recipe.steps:
            meta = provenance | {"steps": step, "final_losses": losses}
            save_model(student, meta, Path(out))
    return meta
