"""Train a style: python scripts/train.py --style painting.jpg --content photos/ --norm instance --out x.safetensors"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stylenet.checkpoint import CheckpointError  # noqa: E402
from stylenet.data import NoImagesError  # noqa: E402
from stylenet.norms import NORM_KINDS  # noqa: E402
from stylenet.train import Recipe, TrainingDiverged, train  # noqa: E402
from stylenet.vgg import VGGWeightsMissing  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Recipe(style="", content="")
    p = argparse.ArgumentParser(description="Train a feed-forward style transfer network for one painting.")
    p.add_argument("--style", required=True, help="the painting (jpg/png/webp)")
    p.add_argument("--content", required=True, help="folder of training photos (searched recursively)")
    p.add_argument("--norm", default=d.norm, choices=NORM_KINDS)
    p.add_argument("--out", required=True, help="model file to write, *.safetensors")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--image-size", type=int, default=d.image_size, help="training crop size in pixels")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--style-weight", type=float, default=d.style_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p.add_argument("--style-size", type=int, default=d.style_size, help="short side of the painting for its Grams")
    p.add_argument("--style-warmup", type=int, default=d.style_warmup,
                   help="ramp the style weight up from 0 over this many steps")
    p.add_argument("--width", type=int, default=d.width, help="channels of the first conv (32 = Johnson)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--contrast-normalize", action="store_true",
                   help="give every content photo the same mean/std (Huang & Belongie control)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of --out")
    p.add_argument("--log", help="CSV of losses (default: beside --out)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    problems = [msg for bad, msg in [
        (out.suffix != ".safetensors", "--out must end in .safetensors"),
        (not Path(args.style).is_file(), f"--style {args.style}: no such file"),
        (min(args.steps, args.image_size, args.batch_size, args.checkpoint_every, args.log_every) < 1,
         "--steps, --image-size, --batch-size, --checkpoint-every and --log-every must be positive"),
        (args.image_size < 32, "--image-size must be at least 32")] if bad]
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    recipe = Recipe(style=args.style, content=args.content, norm=args.norm, width=args.width, steps=args.steps,
                    image_size=args.image_size, batch_size=args.batch_size, lr=args.lr,
                    content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
                    style_size=args.style_size, style_warmup=args.style_warmup, seed=args.seed,
                    checkpoint_every=args.checkpoint_every,
                    log_every=args.log_every, contrast_normalize=args.contrast_normalize)
    try:
        meta = train(recipe, out, device=args.device, resume=args.resume, log=args.log,
                     progress=not args.no_progress)
    except (NoImagesError, VGGWeightsMissing, CheckpointError, TrainingDiverged, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    print(f"wrote {out} ({meta['steps']} steps, final losses {meta['final_losses']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
