"""Measure and picture every shipped checkpoint on held-out photos: python scripts/compare.py

Writes to docs/figures/:
  comparison.md        mean style loss (relative Gram error vs the painting, 4 VGG layers) and
                       content loss (relative error vs the photo at the models' content layer) per style x norm
  grid.png             rows = held-out photos, columns = photo, painting, BN, IN, LN, GN
  loss_curves.png      BN vs IN training curves (unweighted style loss, content loss)
  contrast_control.png Huang & Belongie control: BN/IN trained on contrast-normalized photos
  tiling.png           a large photo tiled with per-tile and with whole-image IN statistics
  optimization.md/.png the optimization reference (Gatys et al.): L-BFGS on the pixels of a few photos
                       with each style's training loss; the iteration at which it reaches each model's loss
The photos (examples/, never used for training) are stylized at their own size (short side 256).
L-BFGS costs ~1.3 CPU-seconds per iteration for a 256x256 photo, so the reference runs on a few
--reference-photos (default: one 256x256 photo, 200 iterations per style, about 7 min on the 2-core EPYC);
--reference-only writes only the reference, --reference-iters 0 skips it.
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from PIL import Image
from tqdm import tqdm

from stylenet.data import list_images, load_rgb
from stylenet.figures import contact_sheet
from stylenet.norms import NORM_KINDS, NORMS, norm_label
from stylenet.optimize import LossWeights, Objective, Optimized, optimize
from stylenet.paths import examples_dir, figures_dir
from stylenet.runtime import to_pil, to_tensor
from stylenet.stylize import Stylizer
from stylenet.train import Recipe, style_targets, style_weight
from stylenet.vgg import STYLE_LAYERS, VGGFeatures
from stylenet.weights import WEIGHTS_DIR, load_manifest, styles_in_grid_order


@torch.inference_mode()
def content_layer(entry: dict) -> str:
    """The content layer a manifest entry's model was trained with (older ones recorded none: relu2_2)."""
    return Recipe.from_metadata(entry["recipe"]).content_layer


def measure(models: list[dict], photos: list[Path], vgg: VGGFeatures) -> dict[tuple[str, str], tuple[float, float]]:
    """(style, norm) -> (mean style loss, mean content loss) over the photos, fp32 throughout; the
    optimization reference is measured with the same ``Objective``."""
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
            terms = Objective(vgg, x, grams[style], content_layer(entry)).terms(stylizer.forward(x).clamp(0, 1))
            s_losses.append(float(terms["style"]))
            c_losses.append(float(terms["content"]))
        results[(style, entry["norm"])] = (sum(s_losses) / len(s_losses), sum(c_losses) / len(c_losses))
    return results


def matched_loss(weights: LossWeights, style: float, content: float) -> float:
    """What a model and the optimization are matched on: the weighted style + content loss. TV is
    left out: it is a smoothness prior, not a measure of how well the photo was stylized."""
    return weights.style * style + weights.content * content


@dataclass
class Reference:
    """The optimization reference: per style, one L-BFGS run per reference photo."""

    photos: list[Path]
    iters: int
    weights: dict[str, LossWeights]
    runs: dict[str, list[Optimized]]

    @property
    def label(self) -> str:
        return f"optimization, {self.iters} it."

    def final(self, style: str) -> tuple[float, float]:
        """(mean style loss, mean content loss) after the last iteration."""
        last = [run.history[-1] for run in self.runs[style]]
        return sum(h["style"] for h in last) / len(last), sum(h["content"] for h in last) / len(last)

    def curve(self, style: str) -> list[float]:
        """Mean matched loss over the photos of the image clamped to [0, 1] after 0, 1, ..., iters
        iterations: the models' outputs are clamped too, so both are scored as pictures."""
        runs, w = self.runs[style], self.weights[style]
        return [sum(matched_loss(w, r.clamped[i]["style"], r.clamped[i]["content"]) for r in runs) / len(runs)
                for i in range(self.iters + 1)]

    def iterations_to_match(self, style: str, loss: float) -> int | None:
        """The first iteration whose mean loss is at most ``loss`` (None: not within ``iters``)."""
        return next((i for i, value in enumerate(self.curve(style)) if value <= loss), None)


def optimization_reference(models: list[dict], photos: list[Path], vgg: VGGFeatures, iters: int) -> Reference:
    """L-BFGS (Gatys et al.) on every photo for every style, with the loss weights and style size that
    style's models were trained with, so its loss and theirs are the same number."""
    weights, runs = {}, {}
    for style in sorted({m["style"] for m in models}):
        entries = [m for m in models if m["style"] == style]
        setups = {(LossWeights.from_recipe(e["recipe"]), e["recipe"]["style_size"], content_layer(e)) for e in entries}
        if len(setups) > 1:
            raise SystemExit(f"error: the {style} models were trained with different losses; no single reference")
        (weights[style], style_size, layer), = setups
        grams = style_targets(vgg, str(WEIGHTS_DIR / entries[0]["painting"]), style_size, torch.device("cpu"))
        runs[style] = []
        for photo in photos:
            print(f"optimizing {photo.name} towards {style}")
            runs[style].append(optimize(to_tensor(load_rgb(photo)).unsqueeze(0), grams, vgg, weights[style], iters,
                                        measure_clamped=True, content_layer=layer))
    return Reference(photos, iters, weights, runs)


def reference_table(reference: Reference, results: dict[tuple[str, str], tuple[float, float]]) -> str:
    """Each model against the optimization on the same photos: where the optimization reaches its loss."""
    seconds = sum(r.seconds for runs in reference.runs.values() for r in runs)
    evaluations = sum(len(r.history) for runs in reference.runs.values() for r in runs)
    losses = ", ".join(sorted({f"content {w.content:g} / style {w.style:g} / TV {w.tv:g}"
                               for w in reference.weights.values()}))
    intro = (f"Optimization reference (Gatys et al.): L-BFGS on the pixels, starting from the photo, with each "
             f"style's training loss ({losses}), {reference.iters} iterations on {len(reference.photos)} held-out "
             f"photo(s) at their own size: {', '.join(p.name for p in reference.photos)}. fp32 on the CPU, "
             f"{seconds / evaluations:.2f} s per iteration, wall clock ({seconds / 60:.1f} min in all). Matched on the weighted "
             "style + content loss (mean over these photos; lower is better).")
    lines = [intro, "", "| style | model | style / content | loss | optimization reaches it at iteration |",
             "|---|---|---|---|---|"]
    for style in sorted(reference.runs):
        for norm in NORM_KINDS:
            if (style, norm) not in results:
                continue
            s, c = results[(style, norm)]
            loss = matched_loss(reference.weights[style], s, c)
            at = reference.iterations_to_match(style, loss)
            lines.append(f"| {style} | {norm_label(norm)} | {s:.3f} / {c:.3f} | {loss:.3f} | "
                         f"{'not within ' + str(reference.iters) if at is None else at} |")
        s, c = reference.final(style)
        lines.append(f"| {style} | {reference.label} | {s:.3f} / {c:.3f} | "
                     f"{matched_loss(reference.weights[style], s, c):.3f} | – |")
    return "\n".join(lines) + "\n"


def reference_curves(reference: Reference, results: dict[tuple[str, str], tuple[float, float]], out: Path) -> None:
    """Per style, the optimization's loss against iterations, with every model's loss as a line."""
    styles = sorted(reference.runs)
    fig, axes = plt.subplots(1, len(styles), figsize=(4.2 * len(styles), 3.6), squeeze=False)
    for ax, style in zip(axes[0], styles):
        ax.plot(reference.curve(style), color="black", label="L-BFGS")
        for norm in NORM_KINDS:
            if (style, norm) in results:
                ax.axhline(matched_loss(reference.weights[style], *results[(style, norm)]), linestyle="--",
                           color=NORMS[norm].color, label=norm_label(norm))
        ax.set_title(style)
        ax.set_yscale("log")
        ax.set_xlabel("L-BFGS iteration")
        ax.set_ylabel("style + content loss (weighted)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def table(results: dict[tuple[str, str], tuple[float, float]], n_photos: int, reference: Reference | None = None) -> str:
    styles = sorted({s for s, _ in results})
    norms = [n for n in NORM_KINDS if any(k[1] == n for k in results)]
    extra = [f"{reference.label}*"] if reference else []
    lines = [(f"Mean over {n_photos} held-out photos, Oxford VGG19, relative errors (lower is better). "
              "Cell: **style loss** / content loss."), "",
             "| style | " + " | ".join([norm_label(n) for n in norms] + extra) + " | IN vs BN style loss |",
             "|---|" + "---|" * (len(norms) + len(extra) + 1)]
    for style in styles:
        cells = [f"**{results[(style, n)][0]:.3f}** / {results[(style, n)][1]:.3f}" if (style, n) in results else "–"
                 for n in norms]
        if reference:
            cells.append("**{:.3f}** / {:.3f}".format(*reference.final(style)) if style in reference.runs else "–")
        ratio = ""
        if (style, "batch") in results and (style, "instance") in results:
            ratio = f"{results[(style, 'instance')][0] / results[(style, 'batch')][0]:.2f}x"
        lines.append(f"| {style} | " + " | ".join(cells) + f" | {ratio} |")
    if reference:
        names = ", ".join(p.name for p in reference.photos)
        lines += ["", (f"\\* L-BFGS on the pixels (Gatys et al.), mean over {len(reference.photos)} of these photos "
                       f"only ({names}); optimization.md compares the models on the same photos.")]
    return "\n".join(lines) + "\n"


def grid(models: list[dict], photos: list[Path], out: Path, side: int = 192, reference: Reference | None = None) -> None:
    """Rows: (style, photo); columns: photo, painting, every norm, then the optimization reference
    (blank where none exists)."""
    by_style: dict[str, dict[str, dict]] = {}
    for entry in models:
        by_style.setdefault(entry["style"], {})[entry["norm"]] = entry
    norms = [n for n in NORM_KINDS if any(n in m for m in by_style.values())]
    rows = [(style, photo) for style in styles_in_grid_order(models) for photo in photos]
    cols = ["photo", "painting"] + [norm_label(n) for n in norms] + ([reference.label] if reference else [])
    optimized = {(style, photo.name): to_pil(run.image) for style, runs in (reference.runs if reference else {}).items()
                 for photo, run in zip(reference.photos, runs)}
    stylizers = {(s, n): Stylizer.load(WEIGHTS_DIR / e["file"], device="cpu") for s, d in by_style.items()
                 for n, e in d.items()}
    paintings = {s: load_rgb(WEIGHTS_DIR / next(iter(d.values()))["painting"]) for s, d in by_style.items()}
    tiles = []
    for style, photo in rows:
        img = load_rgb(photo)
        row = [img, paintings[style]] + [stylizers[(style, n)](img) if (style, n) in stylizers else None for n in norms]
        tiles.append(row + ([optimized.get((style, photo.name))] if reference else []))
    contact_sheet(cols, tiles, out, side)


def read_log(path: Path, recipe: dict, init: dict | None = None) -> dict[str, list[float]]:
    """Steps and *unweighted* losses: the CSV holds weighted ones (style weight ramps over warm-up).
    A continued model's log (``scripts/train_zoo.py --promote``) starts with its warm start's rows,
    which were weighted by the warm start's recipe."""
    run = Recipe.from_metadata(recipe)
    first, before = (Recipe.from_metadata(init["recipe"]), init["steps"]) if init else (run, 0)
    steps, style, content = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row["step"])  # logged after the update at loop index step - 1
            weight = style_weight(first, step - 1) if step <= before else style_weight(run, step - before - 1)
            steps.append(step)
            style.append(float(row["style"]) / weight)
            content.append(float(row["content"]) / (first if step <= before else run).content_weight)
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
            log = read_log(WEIGHTS_DIR / entry["log"], entry["recipe"], entry.get("init"))
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
    last = max(read_log(WEIGHTS_DIR / m["log"], m["recipe"], m.get("init"))["step"][-1] for m in control)
    for entry in all_models:
        if entry["style"] != style or entry["norm"] not in ("batch", "instance") or "log" not in entry:
            continue
        log = read_log(WEIGHTS_DIR / entry["log"], entry["recipe"], entry.get("init"))
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
    """A large photo through the Starry Night IN model: untiled, naive tiles, whole-image-statistics tiles.
    Shows a crop around tile seams (512 px cores, each run with 64 px of context)."""
    from stylenet.tiling import run_tiled

    stylizer = Stylizer.load("starry_night/instance", device="cpu", precision="fp32")
    img = load_rgb(photo)
    img = img.resize((img.width * scale, img.height * scale), Image.LANCZOS)
    x = to_tensor(img).unsqueeze(0)
    with torch.inference_mode():
        whole = stylizer.model(x)
        naive = run_tiled(stylizer.model, x, freeze=False)
        frozen = run_tiled(stylizer.model, x)
    crop = (slice(200, 800), slice(100, 1000))  # for Chelsea x5 (1925x1280): seams at row 500, columns 452 and 904
    panels = [("untiled (reference)", whole), ("tiles, own statistics", naive),
              ("tiles, whole-image statistics", frozen)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, (title, t) in zip(axes, panels):
        diff = (t - whole).abs().mean().item()
        ax.imshow(t[0, :, crop[0], crop[1]].clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(f"{title}\nmean |diff| vs untiled: {diff:.4f}", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{img.width}x{img.height} photo, crop around tile seams", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(out, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, default=examples_dir())
    p.add_argument("--grid-photos", nargs="+",
                   default=["skimage_chelsea.jpg", "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg",
                            "skimage_astronaut.jpg"])
    p.add_argument("--out", type=Path, default=figures_dir())
    p.add_argument("--reference-photos", nargs="+", default=["skimage_astronaut.jpg"],
                   help="photos (names in --photos) the optimization reference runs on")
    p.add_argument("--reference-iters", type=int, default=200, help="L-BFGS iterations per photo; 0 skips it")
    p.add_argument("--reference-only", action="store_true", help="write only optimization.md/.png")
    args = p.parse_args()
    missing = [name for name in args.reference_photos if not (args.photos / name).is_file()]
    if missing:
        p.error(f"--reference-photos: not in {args.photos}: {', '.join(missing)}")
    if args.reference_iters < 0 or (args.reference_only and args.reference_iters == 0):
        p.error("--reference-iters must be positive with --reference-only, else 0 or more")
    args.out.mkdir(parents=True, exist_ok=True)
    all_models = load_manifest()
    models = [m for m in all_models if not m.get("experiment")]
    photos = list_images(args.photos, recursive=False)
    vgg = VGGFeatures.oxford(STYLE_LAYERS + tuple({content_layer(m) for m in models}))
    reference = None
    if args.reference_iters:
        reference_photos = [args.photos / name for name in args.reference_photos]
        reference = optimization_reference(models, reference_photos, vgg, args.reference_iters)
        on_same_photos = measure(models, reference_photos, vgg)
        md = reference_table(reference, on_same_photos)
        (args.out / "optimization.md").write_text(md)
        reference_curves(reference, on_same_photos, args.out / "optimization.png")
        print(md)
        if args.reference_only:
            return
    results = measure(models, photos, vgg)
    md = table(results, len(photos), reference)
    (args.out / "comparison.md").write_text(md)
    print(md)
    grid(models, [args.photos / name for name in args.grid_photos], args.out / "grid.png", reference=reference)
    curves(models, args.out / "loss_curves.png")
    tiling_figure(args.photos / args.grid_photos[0], args.out / "tiling.png")
    if contrast_control(all_models, args.out / "contrast_control.png"):
        print("wrote contrast_control.png")
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
