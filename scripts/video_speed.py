"""Video throughput, end to end: python scripts/video_speed.py [--frames 6] [--heights 480 720]

Writes a synthetic 16:9 clip per height (a pan over a held-out photo, H.264, no download), runs it
through ``stylize_video`` (decode, batches through the optimized ``Stylizer``, H.264 encode) with the
shipped Starry Night BN and IN models, and reports frames per second. Each model first stylizes a short
clip untimed, so one-time start-up costs are not counted in the first size's rate. Writes
docs/figures/video_speed.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch

from stylenet import paths
from stylenet.data import load_rgb
from stylenet.flicker import synthetic_clip
from stylenet.norms import norm_label
from stylenet.runtime import cpu_summary
from stylenet.stylize import Stylizer
from stylenet.video import ClipWriter, stylize_video

PHOTO = paths.examples_dir() / "skimage_chelsea.jpg"
FPS = Fraction(24)


def write_test_clip(path: Path, height: int, frames: int) -> Path:
    size = (height * 16 // 9 // 2 * 2, height)
    clip, _ = synthetic_clip(load_rgb(PHOTO), "pan", size, frames)
    writer = ClipWriter(path, size, FPS)
    for frame in clip:
        writer.write(frame.mul(255).round().byte().permute(1, 2, 0).numpy())
    return writer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--heights", type=int, nargs="+", default=[480, 720])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--norms", nargs="+", default=["batch", "instance"])
    p.add_argument("--out", type=Path, default=paths.figures_dir() / "video_speed.md")
    args = p.parse_args()
    start = time.perf_counter()
    device = f"{cpu_summary()}, {torch.get_num_threads()} threads"
    stylizers = {norm: Stylizer.load(f"starry_night/{norm}") for norm in args.norms}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm_up = write_test_clip(Path(tmp) / "warm_up.mp4", min(args.heights), min(args.frames, args.batch_size))
        for norm, stylizer in stylizers.items():  # untimed: lazy set-up, thread pools, first kernels
            stylize_video(warm_up, Path(tmp) / f"warm_up_{norm}.mp4", stylizer, batch_size=args.batch_size)
        for height in args.heights:
            src = write_test_clip(Path(tmp) / f"pan_{height}.mp4", height, args.frames)
            cells = []
            for norm, stylizer in stylizers.items():
                began = time.perf_counter()
                frames = stylize_video(src, Path(tmp) / f"out_{norm}.mp4", stylizer, batch_size=args.batch_size)
                fps = frames / (time.perf_counter() - began)
                cells.append(f"{fps:.2f} fps ({1 / fps:.1f} s/frame)")
                print(f"{height}p {norm_label(norm)}: {cells[-1]}", flush=True)
            rows.append(f"| {height * 16 // 9 // 2 * 2}x{height} | " + " | ".join(cells) + " |")
    dtype = next(iter(stylizers.values())).dtype
    md = "\n".join([
        (f"End to end (decode, stylize in batches of {args.batch_size}, H.264 encode), {args.frames}-frame synthetic "
         f"clips, Starry Night, {str(dtype).replace('torch.', '')} on the CPU ({device}; shared with other jobs: "
         f"load average {os.getloadavg()[1]:.1f} over the last 5 minutes, so slower than an idle machine). "
         f"`python scripts/video_speed.py --frames {args.frames}`, "
         f"{(time.perf_counter() - start) / 60:.1f} min in all."),
        "",
        "| frame size | " + " | ".join(norm_label(n) for n in stylizers) + " |",
        "|---|" + "---|" * len(stylizers), *rows]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
