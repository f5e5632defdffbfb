"""Train a slim student of a shipped model: python scripts/distill.py --teacher weights/starry_night_instance.safetensors --content TRAIN_PHOTOS

The student has the teacher's norm at a smaller width and learns the teacher's pictures (stylenet/distill.py:
pixel L1 plus a light perceptual term); its log is written beside it.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from stylenet.distill import DistillRecipe, distill
from stylenet.weights import FAST


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--content", type=Path, required=True, help="training photos (never the held-out ones)")
    p.add_argument("--out", type=Path, help="default: runs/distill/<teacher>_fast.safetensors, the name it ships "
                   "under in weights/ (copy it there with its .csv log, then python scripts/build_manifest.py)")
    p.add_argument("--device", default="auto")
    defaults = DistillRecipe(teacher="", content="")
    for f in fields(DistillRecipe)[2:]:
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                       default=getattr(defaults, f.name))
    args = p.parse_args()
    recipe = DistillRecipe(**{f.name: getattr(args, f.name) for f in fields(DistillRecipe)}
                           | {"teacher": str(args.teacher), "content": str(args.content)})
    out = args.out or Path("runs") / "distill" / f"{args.teacher.stem}_{FAST}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = distill(recipe, out, args.device)
    print(f"{out}: {meta['steps']} steps, last losses {meta['final_losses']}")


if __name__ == "__main__":
    main()
