"""What int8 buys and costs: python scripts/quantize_eval.py [--sizes 512 1024] [--repeats 3] [--out FILE]

Speed, for Starry Night BN and IN at each size (--speed-models): the plain network (eager fp32 NCHW,
BN unfolded: bench.py's baseline), the Stylizer's optimized network eagerly ("stylenet": what the eager
backend runs), ONNX Runtime fp32 ("onnx") and ONNX Runtime int8 ("onnx-int8", stylenet/quantize.py), the
four interleaved round by round (backends.measure), each one's fastest of --repeats calls; ratios against
the plain network and int8 against fp32 ONNX Runtime; and the int8 backend's setup: export, calibration
and quantization from an empty cache, and a session from the cached file.

Quality, for every shipped BN and IN model (--norms; experiments left out): the independent evaluator
(stylenet/evaluate.py: style and content distance at 512 px) on the example photos calibration never
saw (quantize.held_out_photos), fp32 (eager) against int8, mean over photos, and the mean absolute
difference between the two outputs in [0, 1] pixels.

Writes markdown to --out (default docs/figures/quantize.md) under a line with the CPU, its vector flags
and the minutes the run took. The int8 models are cached in a temporary folder: the user's cache stays
as it was, and setup is timed from scratch.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from stylenet import backends
from stylenet.checkpoint import load_model
from stylenet.data import load_rgb
from stylenet.evaluate import Evaluator, Targets, score_method
from stylenet.norms import norm_label
from stylenet.paths import figures_dir
from stylenet.quantize import CALIBRATION_PHOTOS, held_out_photos
from stylenet.runtime import cpu_summary
from stylenet.stylize import Stylizer
from stylenet.weights import WEIGHTS_DIR, load_manifest, resolve

VARIANTS = ("eager", "stylenet", "onnx", "onnx-int8")


def speed_rows(ref: str, sizes: list[int]) -> list[str]:
    """One table row per size for the shipped model ``ref``, and a row of the int8 setup times."""
    plain, meta = load_model(resolve(ref))
    stylizer = Stylizer(plain, meta, torch.device("cpu"), precision="fp32", backend="eager")
    setup_s = {"fresh": backends.timed(lambda: backends.int8_runner(stylizer.model))}
    setup_s["cached"] = backends.timed(lambda: backends.int8_runner(stylizer.model))
    runners = {"eager": plain, "stylenet": stylizer.forward, "onnx": backends.onnx_runner(stylizer.model),
               "onnx-int8": backends.int8_runner(stylizer.model)}
    rows = []
    for size in sizes:
        x = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            for runner in runners.values():
                runner(x)  # warm-up: the first call of a session sets up its kernels
            calls = {name: trial.call_s for name, trial in backends.measure(runners, dict.fromkeys(runners, 0.0), x).items()}
        ms_per_mp = {name: seconds * 1000 / (size * size / 1e6) for name, seconds in calls.items()}
        cells = [f"{ms_per_mp['eager']:.0f} ms/MP"] + [f"{calls['eager'] / calls[name]:.2f}×" for name in VARIANTS[1:]]
        rows.append(f"| {ref} {size}² | " + " | ".join(cells) + f" | **{calls['onnx'] / calls['onnx-int8']:.2f}×** |")
    rows.append(f"| {ref} int8 setup | quantized in {setup_s['fresh']:.1f} s, from the cache {setup_s['cached']:.2f} s | | | | |")
    return rows


def quality_rows(norms: list[str], evaluator: Evaluator) -> list[str]:
    """One table row per shipped model of ``norms``: fp32 against int8 on the held-out photos."""
    photos = [load_rgb(path) for path in held_out_photos()]
    models = [m for m in load_manifest() if not m.get("experiment") and m["norm"] in norms]
    rows = []
    for style in dict.fromkeys(m["style"] for m in models):
        targets = Targets.of(evaluator, photos, load_rgb(WEIGHTS_DIR / next(m["painting"] for m in models if m["style"] == style)))
        for entry in (m for m in models if m["style"] == style):
            scored = {backend: score_method(Stylizer.load(WEIGHTS_DIR / entry["file"], device="cpu", precision="fp32",
                                                          backend=backend), targets, evaluator)
                      for backend in ("eager", "onnx-int8")}
            fp32, int8 = scored["eager"], scored["onnx-int8"]
            diff = fp32.pixel_difference(int8)
            rows.append(f"| {style} | {norm_label(entry['norm'])} | {fp32.style:.4f} → {int8.style:.4f} "
                        f"({int8.style / fp32.style - 1:+.1%}) | {fp32.content:.4f} → {int8.content:.4f} "
                        f"({int8.content / fp32.content - 1:+.1%}) | {diff:.4f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speed-models", nargs="+", default=["starry_night/batch", "starry_night/instance"])
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed calls of each variant")
    p.add_argument("--norms", nargs="+", default=["batch", "instance"], help="the models whose quality is scored")
    p.add_argument("--no-quality", action="store_true", help="speed only (scoring takes most of a run)")
    p.add_argument("--out", type=Path, default=figures_dir() / "quantize.md")
    args = p.parse_args()
    start = time.perf_counter()
    evaluator = None if args.no_quality else Evaluator()  # VGG comes from the user's cache, swapped below
    backends.REPEATS = args.repeats  # measure()'s interleaved rounds
    with tempfile.TemporaryDirectory() as cache:
        os.environ["STYLENET_CACHE"] = cache
        speed = [row for ref in args.speed_models for row in speed_rows(ref, args.sizes)]
        print("\n".join(speed), flush=True)
        quality = [] if args.no_quality else quality_rows(args.norms, evaluator)
    minutes = (time.perf_counter() - start) / 60
    command = f"python scripts/quantize_eval.py --sizes {' '.join(map(str, args.sizes))} --repeats {args.repeats}"
    lines = [(f"`{command}{' --no-quality' if args.no_quality else ''}`, "
              f"{minutes:.1f} min, CPU: {cpu_summary()}, {torch.get_num_threads()} threads, load average "
              f"{os.getloadavg()[0]:.1f} at the end."), "",
             (f"Speed: ms per megapixel of the plain network (eager fp32 NCHW, BN unfolded), and each variant's "
              f"speed-up over it; fastest of {args.repeats} interleaved calls."), "",
             "| model | eager fp32 | stylenet (eager, fp32) | ONNX Runtime fp32 | ONNX Runtime int8 | int8 vs fp32 ORT |",
             "|---|---|---|---|---|---|", *speed, ""]
    if quality:
        lines += [(f"Quality: the independent evaluator (stylenet/evaluate.py, 512 px), fp32 → int8, mean over the "
                   f"{len(held_out_photos())} example photos not used for calibration (calibrated on "
                   f"{', '.join(CALIBRATION_PHOTOS)}); lower is better. Last column: mean |fp32 − int8| of the "
                   f"8-bit outputs, in [0, 1] pixels."), "",
                  "| painting | norm | style distance | content distance | mean abs diff |", "|---|---|---|---|---|",
                  *quality, ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
