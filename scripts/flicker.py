"""Flicker vs style, per norm: python scripts/flicker.py [--photos 4] [--frames 24] [--width 128]

Synthetic clips (no download): a camera pans and zooms over held-out photos (examples/) with exactly
known motion, so each stylized frame can be warped onto the next (``stylenet/flicker.py``). For the
shipped Starry Night models (BN, IN, LN, GN) and IN with the temporal stability option
(``stylenet/temporal.py``: statistics smoothed over time, or frozen from the first frame) it reports
the warping error (flicker) next to the input clip's, and the style loss of the frames (VGG19,
relative Gram error vs the painting, as in compare.py), so the trade-off is visible.

Writes docs/figures/flicker.md (table) and docs/figures/flicker.png (figure).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

from stylenet import paths
from stylenet.data import list_images, load_rgb
from stylenet.flicker import (
    PAN_PX_PER_FRAME,
    ZOOM_PER_FRAME,
    flicker,
    stylize_clip,
    synthetic_clip,
)
from stylenet.losses import style_loss
from stylenet.norms import NORM_KINDS, norm_label
from stylenet.runtime import cpu_summary, pick_dtype
from stylenet.stylize import Stylizer
from stylenet.temporal import STABILIZERS, stabilized
from stylenet.train import style_targets
from stylenet.vgg import VGGFeatures
from stylenet.weights import WEIGHTS_DIR, load_manifest

STYLE = "starry_night"
MOTIONS = ("pan", "zoom")
INPUT = "input clip"


def variants() -> dict[str, tuple[Stylizer, float | None]]:
    """Label -> (stylizer, momentum of the stability option or None)."""
    entries = {e["norm"]: e for e in load_manifest() if e["style"] == STYLE and not e.get("experiment")}
    out: dict[str, tuple[Stylizer, float | None]] = {}
    for norm in NORM_KINDS:
        if norm in entries:
            out[norm_label(norm)] = (Stylizer.load(WEIGHTS_DIR / entries[norm]["file"], device="cpu"), None)
    for name, momentum in STABILIZERS.items():
        out[f"IN + {name} ({momentum:g})"] = (out["IN"][0], momentum)
    return out


@torch.inference_mode()
def measure(photos: list[Path], frame_size: tuple[int, int], frames: int, loss_every: int,
            vgg: VGGFeatures, grams: dict[str, torch.Tensor]) -> dict[str, dict[str, list]]:
    """label -> {"pan": [Flicker per photo], "zoom": [...], "style": [style loss per measured frame]}."""
    models = variants()
    results: dict[str, dict[str, list]] = {name: {m: [] for m in (*MOTIONS, "style")} for name in (INPUT, *models)}
    for path in tqdm(photos, desc="photos", unit="photo"):
        photo = load_rgb(path)
        for motion in MOTIONS:
            clip, cameras = synthetic_clip(photo, motion, frame_size, frames)
            results[INPUT][motion].append(flicker(clip, cameras))
            for name, (stylizer, momentum) in models.items():
                model = stylizer if momentum is None else stabilized(stylizer, momentum)  # fresh state per clip
                styled = stylize_clip(model.forward, clip)
                results[name][motion].append(flicker(styled, cameras))
                for frame in styled[::loss_every]:
                    results[name]["style"].append(float(style_loss(vgg(frame[None]), grams)))
    return results


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summary(results: dict[str, dict[str, list]]) -> dict[str, dict[str, float]]:
    """label -> mean error and tone per motion ("pan error", "zoom tone", ...) and mean style loss."""
    return {name: {**{f"{m} {k}": mean([getattr(f, k) for f in r[m]]) for m in MOTIONS for k in ("error", "tone")},
                   "style": mean(r["style"])} for name, r in results.items()}


def table(s: dict[str, dict[str, float]], caption: str) -> str:
    lines = [caption, "",
             "| clip | flicker, pan / zoom | tone flicker ×1000, pan / zoom | tone vs BN | style loss |",
             "|---|---|---|---|---|"]
    for name, r in s.items():
        tone_ratio = (r["pan tone"] + r["zoom tone"]) / (s["BN"]["pan tone"] + s["BN"]["zoom tone"])
        style = "–" if name == INPUT else f"{r['style']:.3f}"
        lines.append(f"| {name} | {r['pan error']:.4f} / {r['zoom error']:.4f} | "
                     f"{1000 * r['pan tone']:.2f} / {1000 * r['zoom tone']:.2f} | {tone_ratio:.2f}x | {style} |")
    return "\n".join(lines) + "\n"


def figure(s: dict[str, dict[str, float]], out: Path) -> None:
    names = list(s)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for ax, kind, title in ((axes[0], "error", "Flicker: warped frame-to-frame |difference|"),
                            (axes[1], "tone", "Tone flicker: shift of the mean colour")):
        for i, motion in enumerate(MOTIONS):
            ax.bar([x + 0.4 * i for x in range(len(names))], [s[n][f"{motion} {kind}"] for n in names], 0.4,
                   label=motion, color=("#1f77b4", "#ff7f0e")[i])
        ax.set_xticks([x + 0.2 for x in range(len(names))], names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title} (lower is steadier)", fontsize=10)
        ax.legend()
    scatter = axes[2]
    for name in names[1:]:
        x = (s[name]["pan tone"] + s[name]["zoom tone"]) / 2
        scatter.scatter(x, s[name]["style"], s=40)
        scatter.annotate(name, (x, s[name]["style"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    scatter.set_xlabel("tone flicker (mean of pan and zoom)")
    scatter.set_ylabel("style loss per frame (lower = more Starry Night)")
    scatter.set_title("The trade-off: steadier vs more stylized", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photo-dir", type=Path, default=paths.examples_dir())
    p.add_argument("--photos", type=int, default=4, help="how many held-out photos (evenly spread; 0 = all)")
    p.add_argument("--frames", type=int, default=24, help="frames per clip")
    p.add_argument("--width", type=int, default=128, help="frame width; height is 3/4 of it")
    p.add_argument("--loss-every", type=int, default=3, help="style loss on every Nth frame")
    p.add_argument("--out", type=Path, default=paths.figures_dir())
    args = p.parse_args()
    if args.frames < 2 or args.width < 16 or args.loss_every < 1 or args.photos < 0:
        p.error("need --frames >= 2, --width >= 16, --loss-every >= 1, --photos >= 0")
    photos = list_images(args.photo_dir, recursive=False)
    if args.photos:
        photos = [photos[i * len(photos) // args.photos] for i in range(min(args.photos, len(photos)))]
    if not photos:
        p.error(f"no photos in {args.photo_dir}")
    frame_size = (args.width // 2 * 2, args.width * 3 // 8 * 2)
    start = time.perf_counter()
    vgg = VGGFeatures.oxford()
    entry = next(e for e in load_manifest() if e["style"] == STYLE)
    grams = style_targets(vgg, str(WEIGHTS_DIR / entry["painting"]), entry["recipe"]["style_size"],
                          torch.device("cpu"))
    results = measure(photos, frame_size, args.frames, args.loss_every, vgg, grams)
    seconds = time.perf_counter() - start
    device = f"{cpu_summary()}, {torch.get_num_threads()} threads"
    dtype = str(pick_dtype("auto", torch.device("cpu"))).replace("torch.", "")
    caption = (f"Starry Night models on {len(photos)} held-out photos ({', '.join(p.stem for p in photos)}), "
               f"{args.frames}-frame clips at {frame_size[0]}x{frame_size[1]}: a pan of {PAN_PX_PER_FRAME:g} px/frame "
               f"and a {ZOOM_PER_FRAME:.0%}/frame zoom. Flicker = mean |difference| (0-1 pixel units) between each "
               "stylized frame warped by the known motion and the next frame, over pixels visible in both; tone "
               "flicker = |mean difference| per colour channel, the frame-to-frame shift of the overall colour; a "
               "static clip gives 0 (below 10⁻⁶) for every model. Style loss: relative Gram error vs the painting "
               f"(VGG19) on one frame in {args.loss_every}. Measured with `python scripts/flicker.py "
               f"--photos {args.photos} --frames {args.frames} --width {args.width}` on the CPU ({device}, {dtype}, as "
               f"the CLI runs here; the CPU was shared with other jobs), {seconds / 60:.1f} min in all.")
    means = summary(results)
    md = table(means, caption)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flicker.md").write_text(md)
    figure(means, args.out / "flicker.png")
    print(md)
    print(f"wrote {args.out / 'flicker.md'} and {args.out / 'flicker.png'} in {seconds:.0f} s on {device}")


if __name__ == "__main__":
    main()
