"""Train the AdaIN decoder (stylenet/adain.py) on content photos and many paintings.

    python scripts/train_adain.py --content ../shared/data/train \
        --styles ../shared/data/paintings ../shared/data/styles --hold-out starry_night udnie \
        --out runs/adain --steps 20000 --checkpoint-every 100
    python scripts/train_adain.py ... --resume      # continues exactly where the last checkpoint stopped

Every step pairs ``--batch-size`` random photo crops with as many random painting crops (each image
rescaled so its short side is a random size in [--scale-min, --scale-max], then cropped, maybe
flipped). ``--out`` receives ``decoder.safetensors`` (fp16, what ships), ``decoder.train.safetensors``
(fp32 decoder + Adam + RNGs, for ``--resume``) and ``log.csv``. Held-out paintings never enter
training and are recorded in both files. Ctrl-C (or SIGTERM) finishes the step and keeps a checkpoint.
"""
from __future__ import annotations

import argparse
import csv
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylenet import __version__
from stylenet.adain import (
    STYLE_WEIGHT,
    Decoder,
    encoder,
    load_train_state,
    losses,
    read_adain_metadata,
    save_decoder,
    save_train_state,
)
from stylenet.data import NoImagesError, list_images, load_rgb
from stylenet.resume import prepare_log
from stylenet.runtime import to_tensor
from stylenet.vgg import STYLE_LAYERS

LOG_COLUMNS = ("step", "content", "style", "total", "images_per_s", "seconds")
# Recipe fields a resumed run must share with the run it continues (steps and checkpointing may change).
RESUME_MUST_MATCH = ("content", "styles", "hold_out", "width", "batch_size", "crop", "scale_min", "scale_max",
                     "lr", "style_weight", "content_weight", "seed")


@dataclass
class Recipe:
    """Everything that defines a run; stored in every checkpoint (folder names only, not paths)."""

    content: str
    styles: list[str]
    hold_out: list[str] = field(default_factory=list)
    width: float = 1.0
    batch_size: int = 8
    crop: int = 256
    scale_min: int = 256
    scale_max: int = 512
    steps: int = 20000
    lr: float = 1e-4  # the paper's
    style_weight: float = STYLE_WEIGHT
    content_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100

    def public(self) -> dict[str, Any]:
        """The recipe as checkpoints record it: folder names, never this machine's paths."""
        return asdict(self) | {"content": Path(self.content).name, "styles": [Path(s).name for s in self.styles]}


class CropPool:
    """Image files decoded when drawn (a few ms each, nothing next to a training step; thousands of
    photos need no memory). Unreadable files are skipped and counted; every draw comes from the
    run's generator, so a resumed run sees the batches an uninterrupted one would."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.bad = paths, set()

    def crop(self, size: int, scale_min: int, scale_max: int, generator: torch.Generator) -> torch.Tensor:
        while len(self.bad) < len(self.paths):
            path = self.paths[int(torch.randint(len(self.paths), (1,), generator=generator))]
            try:
                img = load_rgb(path)
            except (OSError, ValueError):  # ImageError is a ValueError
                self.bad.add(path)
                continue
            short = min(img.size)
            scale = scale_min + float(torch.rand((), generator=generator)) * (scale_max - scale_min)
            side = min(short, size * short / scale)  # the crop, in the file's pixels
            left = float(torch.rand((), generator=generator)) * (img.width - side)
            top = float(torch.rand((), generator=generator)) * (img.height - side)
            img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
            if torch.rand((), generator=generator) < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            return to_tensor(img)
        raise NoImagesError(f"none of the {len(self.paths)} files is a readable image")

    def batch(self, count: int, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
        return torch.stack([self.crop(recipe.crop, recipe.scale_min, recipe.scale_max, generator) for _ in range(count)])


def painting_files(folders: list[str], hold_out: list[str]) -> list[Path]:
    """The paintings to train on: every image of ``folders`` but the held-out ones (by file name or
    stem). A hold-out name that matches no painting is an error: a typo must not leak one into training."""
    paths = [p for folder in folders for p in list_images(Path(folder))]
    unknown = [name for name in hold_out if not any(name in (p.name, p.stem) for p in paths)]
    if unknown:
        raise ValueError(f"--hold-out {' '.join(unknown)}: no such painting in {', '.join(folders)}")
    kept = [p for p in paths if p.name not in hold_out and p.stem not in hold_out]
    if not kept:
        raise NoImagesError(f"no painting left to train on in {', '.join(folders)}")
    return kept


def train(recipe: Recipe, out: Path, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train (or continue) the decoder; returns the metadata of the decoder file written last."""
    out = Path(out)
    model_path, state, log_path = out / "decoder.safetensors", out / "decoder.train.safetensors", out / "log.csv"
    photos = CropPool(list_images(Path(recipe.content)))
    if not photos.paths:
        raise NoImagesError(f"no jpg/png/webp photo in {recipe.content}")
    paintings = CropPool(painting_files(recipe.styles, recipe.hold_out))
    vgg = encoder(STYLE_LAYERS)
    torch.manual_seed(recipe.seed)
    decoder = Decoder(recipe.width).train()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(recipe.seed)
    start = 0
    if resume:
        saved = load_train_state(state, decoder, optimizer, generator)
        changed = [k for k in RESUME_MUST_MATCH if saved["recipe"][k] != recipe.public()[k]]
        if changed:
            raise ValueError(f"--resume: this run's {', '.join(changed)} differ from the saved run's")
        start = saved["step"]
        if start >= recipe.steps and model_path.is_file():
            return read_adain_metadata(model_path)  # finished: left as it is
    elif model_path.is_file() or state.is_file():
        raise ValueError(f"{out} holds a decoder already: pass --resume to continue it, or choose another --out")
    seconds_before = prepare_log(log_path, start, LOG_COLUMNS)
    last: dict[str, float] = {}

    def metadata(step: int, seconds: float) -> dict[str, Any]:
        return {"recipe": recipe.public(), "step": step, "steps": step, "hold_out": recipe.hold_out,
                "paintings": sorted(p.stem for p in paintings.paths), "photos": len(photos.paths),
                "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
                "final_losses": last, "stylenet_version": __version__}

    def checkpoint(step: int, seconds: float) -> None:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:  # both files at one step, whatever signal arrives meanwhile
            save_train_state(decoder, optimizer, generator, metadata(step, seconds), state)
            save_decoder(decoder, metadata(step, seconds), model_path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    stop: list[int] = []
    handlers = {sig: signal.signal(sig, lambda signum, _: stop.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    started, done, seconds = time.perf_counter(), start, seconds_before
    try:
        for step in range(start, recipe.steps):
            tick = time.perf_counter()
            batch_photos = photos.batch(recipe.batch_size, recipe, generator)
            batch_paintings = paintings.batch(recipe.batch_size, recipe, generator)
            terms = losses(vgg, decoder, batch_photos, batch_paintings, recipe.style_weight, recipe.content_weight)
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(f"loss became {terms['total'].item()} at step {step + 1}; "
                                         "the last checkpoint is kept (try a lower --lr)")
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            done, step_seconds = step + 1, time.perf_counter() - tick
            seconds = seconds_before + time.perf_counter() - started
            last = {k: round(v.item(), 3) for k, v in terms.items()}
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([done, last["content"], last["style"], last["total"],
                                        round(recipe.batch_size / step_seconds, 3), round(seconds, 1)])
            if not quiet:
                print(f"step {done}/{recipe.steps}  content {last['content']:.4g}  style {last['style']:.4g}  "
                      f"total {last['total']:.4g}  {step_seconds:.2f} s/step", flush=True)
            if stop:
                break
            if done % recipe.checkpoint_every == 0 and done < recipe.steps:
                checkpoint(done, seconds)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    checkpoint(done, seconds)
    if not quiet:
        print(f"checkpoint at step {done}: {model_path}" + (" (stopped)" if stop else ""), flush=True)
    return metadata(done, seconds)


def parse(argv: list[str] | None = None) -> tuple[Recipe, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Recipe("", [])
    p.add_argument("--content", required=True, help="folder of content photos (nested folders too)")
    p.add_argument("--styles", nargs="+", required=True, metavar="DIR", help="folders of paintings")
    p.add_argument("--hold-out", nargs="*", default=[], metavar="NAME", help="paintings kept out of training")
    p.add_argument("--out", type=Path, default=Path("runs/adain"), help="folder for checkpoints and log.csv")
    p.add_argument("--resume", action="store_true", help="continue from --out's training state")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    for name in ("width", "batch_size", "crop", "scale_min", "scale_max", "steps", "lr", "style_weight",
                 "content_weight", "seed", "checkpoint_every"):
        default = getattr(d, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=f"default {default}")
    args = p.parse_args(argv)
    recipe = Recipe(**{k: v for k, v in vars(args).items() if k not in ("out", "resume", "threads")})
    if not 0 < recipe.crop <= recipe.scale_min <= recipe.scale_max:
        p.error("need 0 < --crop <= --scale-min <= --scale-max")
    return recipe, args


def main(argv: list[str] | None = None) -> int:
    recipe, args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train(recipe, args.out, args.resume)
    except (ValueError, OSError, FloatingPointError) as exc:  # CheckpointError, NoImagesError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
