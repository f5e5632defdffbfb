"""Measure and picture every shipped checkpoint on held-out photos: python scripts/compare.py

Writes to docs/figures/:
  comparison.md        mean style loss (relative Gram error vs the painting, 4 VGG layers) and
                       content loss (relative relu2_2 error vs the photo) per style x norm
  grid.png             rows = held-out photos, columns = photo, painting, BN, IN, LN, GN
  loss_curves.png      BN vs IN training curves (unweighted style loss, content loss)
  contrast_control.png Huang & Belongie control: BN/IN trained on contrast-normalized photos
  tiling.png           a large photo tiled with and without frozen IN statistics
The photos (examples/, never used for training) are stylized at their own size (short side 256).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from stylenet.data import list_images, load_rgb  # noqa: E402
from stylenet.norms import NORM_KINDS, NORMS, norm_label  # noqa: E402
from stylenet.runtime import to_tensor  # noqa: E402
from stylenet.losses import content_loss, style_loss  # noqa: E402
from stylenet.stylize import Stylizer  # noqa: E402
from stylenet.train import Recipe, style_targets, style_weight  # noqa: E402
from stylenet.vgg import CONTENT_LAYER, VGGFeatures  # noqa: E402
from stylenet.weights import WEIGHTS_DIR, load_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@torch.inference_mode()
def measure(models: list[dict], photos: list[Path], vgg: VGGFeatures) -> dict[tuple[str, str], tuple[float, float]]:
    """(style, norm) -> (mean style loss, mean content loss) over the photos, fp32 throughout."""
    grams: dict[str, dict[str, torch.Tensor]] = {}
    results = {}
    tensors = [to_tensor(load_rgb(p)).unsqueeze(0) for p in photos]
    for entry in tqdm(models, desc="measuring", unit="model"):
        style = entry["style"]
        if style not in grams:
            grams[style] = style_targets(vgg, str(WEIGHTS_DIR / entry["painting"]), entry["recipe"]["style_size"],
                                         torch.device("cpu"))
        stylizer = Stylizer.load(WEIGHTS_DIR / entry["file"], device="cpu", precision="fp32")
        s_losses, c_losses = [], []
        for x in tensors:
            y = stylizer.forward(x).clamp(0, 1)
            fy, fx = vgg(y), vgg(x, upto=CONTENT_LAYER)
            s_losses.append(float(style_loss(fy, grams[style])))
            c_losses.append(float(content_loss(fy[CONTENT_LAYER], fx[CONTENT_LAYER])))
        results[(style, entry["norm"])] = (sum(s_losses) / len(s_losses), sum(c_losses) / len(c_losses))
    return results


def table(results: dict[tuple[str, str], tuple[float, float]], n_photos: int) -> str:
    styles = sorted({s for s, _ in results})
    norms = [n for n in NORM_KINDS if any(k[1] == n for k in results)]
    lines = [f"Mean over {n_photos} held-out photos, Oxford VGG19, relative errors (lower is better). "
             "Cell: **style loss** / content loss.", "",
             "| style | " + " | ".join(norm_label(n) for n in norms) + " | IN vs BN style loss |",
             "|---|" + "---|" * (len(norms) + 1)]
    for style in styles:
        cells = [f"**{results[(style, n)][0]:.3f}** / {results[(style, n)][1]:.3f}" if (style, n) in results else "–"
                 for n in norms]
        ratio = ""
        if (style, "batch") in results and (style, "instance") in results:
            ratio = f"{results[(style, 'instance')][0] / results[(style, 'batch')][0]:.2f}x"
        lines.append(f"| {style} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines) + "\n"


def grid(models: list[dict], photos: list[Path], out: Path, side: int = 192) -> None:
    """Rows: (style, photo); columns: photo, painting, then every norm (blank where none exists)."""
    by_style: dict[str, dict[str, dict]] = {}
    for entry in models:
        by_style.setdefault(entry["style"], {})[entry["norm"]] = entry
    norms = [n for n in NORM_KINDS if any(n in m for m in by_style.values())]
    rows = [(style, photo) for style in sorted(by_style, key=lambda s: -len(by_style[s])) for photo in photos]
    cols = ["photo", "painting"] + [norm_label(n) for n in norms]
    canvas = Image.new("RGB", (side * len(cols), side * len(rows) + 28), "white")
    from PIL import ImageDraw
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(cols):
        draw.text((c * side + side // 2 - 12, 8), name, fill="black")
    stylizers = {(s, n): Stylizer.load(WEIGHTS_DIR / e["file"], device="cpu") for s, d in by_style.items()
                 for n, e in d.items()}
    for r, (style, photo) in enumerate(rows):
        img = load_rgb(photo)
        painting = load_rgb(WEIGHTS_DIR / next(iter(by_style[style].values()))["painting"])
        tiles = [img, painting] + [stylizers[(style, n)](img) if (style, n) in stylizers else None for n in norms]
        for c, tile in enumerate(tiles):
            if tile is not None:
                tile = tile.copy()
                tile.thumbnail((side - 4, side - 4))
                canvas.paste(tile, (c * side + (side - tile.width) // 2, 28 + r * side + (side - tile.height) // 2))
    canvas.save(out)


def read_log(path: Path, recipe: dict) -> dict[str, list[float]]:
    """Steps and *unweighted* losses: the CSV holds weighted ones (style weight ramps over warm-up)."""
    run = Recipe(**recipe)
    steps, style, content = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row["step"])  # logged after the update at loop index step - 1
            steps.append(step)
            style.append(float(row["style"]) / style_weight(run, step - 1))
            content.append(float(row["content"]) / recipe["content_weight"])
    return {"step": steps, "style": style, "content": content}


def smooth(values: list[float], k: int = 5) -> list[float]:
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def curves(models: list[dict], out: Path) -> None:
    styles = sorted({m["style"] for m in models})
    fig, axes = plt.subplots(2, len(styles), figsize=(4.2 * len(styles), 6), squeeze=False)
    for col, style in enumerate(styles):
        for entry in models:
            if entry["style"] != style or "log" not in entry:
                continue
            log = read_log(WEIGHTS_DIR / entry["log"], entry["recipe"])
            for row, what in enumerate(("style", "content")):
                axes[row][col].plot(log["step"], smooth(log[what]), label=norm_label(entry["norm"]),
                                    color=NORMS[entry["norm"]].color)
        axes[0][col].set_title(style)
        axes[0][col].set_yscale("log")
        axes[0][col].set_ylabel("style loss (unweighted)")
        axes[1][col].set_ylabel("content loss")
        axes[1][col].set_xlabel("step")
        axes[0][col].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def contrast_control(all_models: list[dict], out: Path) -> bool:
    """Style-loss curves of BN and IN on raw vs contrast-normalized photos (same steps shown)."""
    control = [m for m in all_models if m.get("experiment") == "contrast_normalize" and "log" in m]
    if not control:
        return False
    style = control[0]["style"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    last = max(read_log(WEIGHTS_DIR / m["log"], m["recipe"])["step"][-1] for m in control)
    for entry in all_models:
        if entry["style"] != style or entry["norm"] not in ("batch", "instance") or "log" not in entry:
            continue
        log = read_log(WEIGHTS_DIR / entry["log"], entry["recipe"])
        keep = [i for i, s in enumerate(log["step"]) if s <= last]
        dashed = entry.get("experiment") == "contrast_normalize"
        ax.plot([log["step"][i] for i in keep], smooth([log["style"][i] for i in keep]),
                linestyle="--" if dashed else "-", color=NORMS[entry["norm"]].color,
                label=f"{norm_label(entry['norm'])}, {'contrast-normalized' if dashed else 'raw'} photos")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("style loss (unweighted)")
    ax.set_title(f"{style}: does normalizing photo contrast close the BN–IN gap?")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return True


def tiling_figure(photo: Path, out: Path, scale: int = 5) -> None:
    """A large photo through the Starry Night IN model: untiled, naive tiles, frozen-statistics tiles.
    Shows a crop around a tile seam (tiles are 512 px with 96 px overlap)."""
    from stylenet.tiling import run_tiled

    stylizer = Stylizer.load("starry_night/instance", device="cpu", precision="fp32")
    img = load_rgb(photo)
    img = img.resize((img.width * scale, img.height * scale), Image.LANCZOS)
    x = to_tensor(img).unsqueeze(0)
    with torch.inference_mode():
        whole = stylizer.model(x)
        naive = run_tiled(stylizer.model, x, freeze=False)
        frozen = run_tiled(stylizer.model, x)
    crop = (slice(200, 800), slice(100, 1000))  # spans the seams at 416-512 (rows) and 416-512, 832-928 (cols)
    panels = [("untiled (reference)", whole), ("tiles, own statistics", naive), ("tiles, frozen statistics", frozen)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    for ax, (title, t) in zip(axes, panels):
        diff = (t - whole).abs().mean().item()
        ax.imshow(t[0, :, crop[0], crop[1]].clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(f"{title}\nmean |diff| vs untiled: {diff:.4f}", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{img.width}x{img.height} photo, crop around tile seams", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, default=ROOT / "examples")
    p.add_argument("--grid-photos", nargs="+",
                   default=["skimage_chelsea.jpg", "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg",
                            "skimage_astronaut.jpg"])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    all_models = load_manifest()
    models = [m for m in all_models if not m.get("experiment")]
    photos = list_images(args.photos, recursive=False)
    results = measure(models, photos, VGGFeatures.oxford())
    md = table(results, len(photos))
    (args.out / "comparison.md").write_text(md)
    print(md)
    grid(models, [args.photos / name for name in args.grid_photos], args.out / "grid.png")
    curves(models, args.out / "loss_curves.png")
    tiling_figure(args.photos / args.grid_photos[0], args.out / "tiling.png")
    if contrast_control(all_models, args.out / "contrast_control.png"):
        print("wrote contrast_control.png")
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
