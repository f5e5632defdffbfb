"""A training job's peak memory, measured and fitted: python -m scripts.job_memory [--out FILE | --runs FILE]

The app refuses a job whose predicted peak is over its memory budget (``stylenet.jobs.estimate.peak_bytes``);
this measures what that prediction stands on. Each configuration runs the library trainer for
2 steps in a fresh process set up like the app's worker (``nice`` +10, one core fewer than the machine,
the trainer's warm-up trial steps included, the shipped example photos) and reports the process's peak
RSS. Then it fits, by least squares, with pixels = batch × crop²,

    RSS ≈ base + pixels × (a + b × width) + (two norms or more) × pixels × c + each model's weights

(the norms' models train one after another on each batch, so one model's graph is alive at a time,
with the previous model's output and VGG features still held; the weights term is
``estimate.PARAMETER_BYTES``, too small in these runs to fit), and prints the constants for
``estimate.py`` and a table of each run against the app's model as it stands. ``--out`` writes the
measurements as JSON (tests/fixtures/job_memory.json); ``--runs`` reads them instead of measuring.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from stylenet.jobs import estimate

# crop, batch, width, models: few and small enough for a busy 2-core machine, each factor varied alone
CONFIGS = [(128, 4, 16, 2), (256, 4, 16, 2), (256, 2, 16, 2), (192, 4, 16, 3), (256, 4, 16, 1), (256, 4, 32, 1),
           (256, 4, 32, 2), (256, 4, 64, 1), (384, 4, 32, 1), (512, 4, 16, 1)]
NORMS = ("batch", "instance", "layer", "group", "none")
STEPS = 2


def measure_one(crop: int, batch: int, width: int, models: int) -> int:
    """Train ``models`` norms for ``STEPS`` steps in this process; its peak RSS in bytes."""
    import torch

    from stylenet import paths
    from stylenet.jobs.runner import worker_threads
    from stylenet.jobs.worker import WORKER_NICE
    from stylenet.train import PRESETS, Recipe, train

    os.nice(WORKER_NICE)
    torch.set_num_threads(worker_threads())
    painting = next(paths.weights_dir().glob("styles/*.jpg"))
    recipe = Recipe(style=str(painting), content=str(paths.examples_dir()),
                    **{**PRESETS["standard"], "steps": STEPS, "image_size": crop, "batch_size": batch, "width": width})
    with tempfile.TemporaryDirectory() as out:
        train(recipe, NORMS[:models], Path(out) / "{norm}.safetensors", device="cpu")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def fit(rows: list[dict]) -> tuple[float, float, float, float]:
    """(base, a, b, c) of the model in this module's docstring, least squares."""
    pixels, width, models, rss = (np.array([r[k] for r in rows], dtype=float)
                                  for k in ("pixels", "width", "models", "rss"))
    design = np.stack([np.ones_like(pixels), pixels, pixels * width, pixels * (models > 1)], axis=1)
    weights = models * estimate.PARAMETER_BYTES * width**2
    (base, a, b, c), *_ = np.linalg.lstsq(design, rss - weights, rcond=None)
    return float(base), float(a), float(b), float(c)


def measure() -> list[dict]:
    """Every configuration's peak RSS, each in a process of its own."""
    rows = []
    for crop, batch, width, models in CONFIGS:
        done = subprocess.run([sys.executable, "-m", "scripts.job_memory", "--one", str(crop), str(batch), str(width),
                               str(models)], capture_output=True, text=True, check=True)
        rows.append({"crop": crop, "batch": batch, "width": width, "models": models,
                     "rss": int(done.stdout.split()[-1])})
        print(f"crop {crop:4d}  batch {batch}  width {width:3d}  models {models}:  {rows[-1]['rss'] / 2**30:.2f} GiB",
              flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write the measurements here as JSON")
    p.add_argument("--runs", type=Path, help="fit the measurements of this JSON file instead of measuring")
    p.add_argument("--one", type=int, nargs=4, metavar=("CROP", "BATCH", "WIDTH", "MODELS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(measure_one(*args.one))
        return 0
    rows = json.loads(args.runs.read_text())["runs"] if args.runs else measure()
    if args.out:
        args.out.write_text(json.dumps({"steps": STEPS, "runs": rows}, indent=1) + "\n")
    base, a, b, c = fit([{**r, "pixels": r["batch"] * r["crop"] ** 2} for r in rows])
    print(f"MEMORY_BASE = {base:,.0f}\nMEMORY_PER_PIXEL = {a:.0f}\nMEMORY_PER_PIXEL_WIDTH = {b:.1f}\n"
          f"MEMORY_PER_PIXEL_HELD = {c:.0f}\n")
    print("| crop | batch | width | norms | measured GiB | model GiB | error |\n|---|---|---|---|---|---|---|")
    for r in rows:
        model = estimate.peak_bytes(r["crop"], r["batch"], r["width"], r["models"])
        print(f"| {r['crop']} | {r['batch']} | {r['width']} | {r['models']} | {r['rss'] / 2**30:.2f} | "
              f"{model / 2**30:.2f} | {(model - r['rss']) / r['rss']:+.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
