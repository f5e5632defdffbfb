"""Stylize one photo by optimization (Gatys et al.).

    stylenet optimize PHOTO --style PAINTING --iters 200

L-BFGS on the pixels with the library's own loss, starting from the photo. Far slower than a trained
model (one VGG19 forward and backward per iteration: about 1.3 CPU-seconds for a 256x256 photo)
but the best that loss can do, so it is the reference the models are measured against
(scripts/compare.py). Exit code 0 on success, 2 for bad input (one line, no traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stylenet import cli
from stylenet.images import ImageError, limit_size, open_image
from stylenet.optimize import LossWeights, optimize
from stylenet.runtime import pick_device, to_pil, to_tensor
from stylenet.train import Recipe, style_targets
from stylenet.vgg import VGGFeatures, VGGWeightsMissing

OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``optimize`` command's flags (``stylenet optimize --help``)."""
    d = Recipe(style="", content="")
    p.add_argument("photo")
    p.add_argument("--style", required=True, help="the painting (jpg/png/webp)")
    p.add_argument("--iters", type=int, default=200, help="L-BFGS iterations")
    p.add_argument("--out", help="image to write (default: PHOTO_PAINTING_lbfgsN.png in the current folder)")
    p.add_argument("--max-size", type=int, default=512, help="shrink the photo so its longest side is at most PX")
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--style-weight", type=float, default=d.style_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p.add_argument("--style-size", type=int, default=d.style_size, help="short side of the painting for its Grams")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` as ``stylenet optimize`` parses it."""
    return cli.parse_args("optimize", argv)


def run(args: argparse.Namespace) -> int:
    photo_path, style_path = Path(args.photo), Path(args.style)
    out = Path(args.out or f"{photo_path.stem}_{style_path.stem}_lbfgs{args.iters}.png")
    problems = [msg for bad, msg in [
        (min(args.iters, args.max_size, args.style_size) < 1, "--iters, --max-size and --style-size must be positive"),
        (out.suffix.lower() not in OUTPUT_SUFFIXES, f"--out must end in {', '.join(OUTPUT_SUFFIXES)}"),
        (out.resolve() in (photo_path.resolve(), style_path.resolve()), f"--out {out} would overwrite an input"),
    ] if bad]
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    try:
        photo, _alpha = open_image(photo_path)
        device = pick_device(args.device)
        vgg = VGGFeatures.oxford().to(device)
        grams = style_targets(vgg, str(style_path), args.style_size, device)  # a bad painting: ImageError
    except (ImageError, ValueError, VGGWeightsMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    weights = LossWeights(args.content_weight, args.style_weight, args.tv_weight)
    x = to_tensor(limit_size(photo, args.max_size)).unsqueeze(0).to(device)
    result = optimize(x, grams, vgg, weights, args.iters, progress=not args.no_progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_pil(result.image).save(out)
    first, last = result.history[0], result.history[-1]
    print(f"wrote {out} ({args.iters} iterations, {result.seconds:.0f} s on {device.type}): "
          f"style {first['style']:.3f} -> {last['style']:.3f}, content {first['content']:.3f} -> "
          f"{last['content']:.3f}, total {first['total']:.3f} -> {last['total']:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
