"""What `--preset quick` buys: python scripts/quick_preset.py --style PAINTING --content PHOTOS/

Trains the quick preset for BN and IN together (as the app's "Train a style" tab does by default),
times the whole run from the first photo read to the last checkpoint, and draws held-out photos
through both models: docs/figures/quick_preset.png, with the recipe, the machine and the wall time
in docs/figures/quick_preset.md. The models go to --out (default runs/quick_preset/).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stylenet import paths
from stylenet.data import load_rgb
from stylenet.figures import contact_sheet
from stylenet.norms import norm_label
from stylenet.runtime import cpu_summary
from stylenet.stylize import Stylizer
from stylenet.train import PRESETS, Recipe, output_paths, train

NORMS = ["batch", "instance"]


def figure(painting: Path, photos: list[Path], models: dict[str, Path], out: Path, side: int = 256) -> None:
    """Rows: photos; columns: photo, painting, then each norm's model."""
    stylizers = [Stylizer.load(path, device="cpu") for path in models.values()]
    art = load_rgb(painting)
    rows = [[img, art] + [stylize(img) for stylize in stylizers] for img in map(load_rgb, photos)]
    contact_sheet(["photo", "painting"] + [norm_label(n) for n in models], rows, out, side)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", type=Path, required=True)
    p.add_argument("--content", type=Path, required=True, help="the training photos")
    p.add_argument("--photos", type=Path, nargs="+",
                   default=[paths.examples_dir() / n
                            for n in ("skimage_chelsea.jpg", "lomiri_sunset_by_Aitzol_Berasategi.jpg")],
                   help="held-out photos for the figure")
    p.add_argument("--out", type=Path, default=Path("runs") / "quick_preset")
    p.add_argument("--figures", type=Path, default=paths.figures_dir())
    args = p.parse_args()
    recipe = Recipe(style=str(args.style), content=str(args.content), **PRESETS["quick"])
    started = time.perf_counter()
    metas = train(recipe, NORMS, args.out, device="cpu")
    minutes = (time.perf_counter() - started) / 60
    models = output_paths(args.out, recipe.style_name, NORMS, ".safetensors")
    figure(args.style, args.photos, models, args.figures / "quick_preset.png")
    losses = "; ".join(f"{norm_label(n)} style {m['final_losses']['style']:.3f}, content {m['final_losses']['content']:.3f}"
                       for n, m in metas.items())
    device = f"{cpu_summary()}, {torch.get_num_threads()} threads"
    text = (f"`--preset quick` ({', '.join(f'{k}={v:g}' for k, v in PRESETS['quick'].items())}), BN and IN on the "
            f"same batches, painting {args.style.name}, {metas['instance']['training_set']['photos']} training photos: "
            f"**{minutes:.1f} minutes** wall clock for both models, in one process on the CPU ({device}). Last logged training losses (weighted): {losses}. "
            f"`python scripts/quick_preset.py --style {args.style.name} --content TRAIN_PHOTOS`\n")
    (args.figures / "quick_preset.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
