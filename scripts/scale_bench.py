"""Scale-out measured on this machine: what BN's synchronization costs under data parallelism, and the
Ray engine's overhead at one node.

    python scripts/scale_bench.py --content TRAIN_PHOTOS [--steps 12] [--photos examples/]

Training: the same recipe (128 px crops, global batch 8, width 32, the shipped painting) run as one
process and as ``torchrun --nproc-per-node 2`` with gloo (1 thread per process, as torchrun sets), for
IN, BN with synchronized statistics and BN with per-rank statistics, all on identical batches. It prints
each run's seconds per step (the log's clock, the first step left out), the largest relative distance of
its loss curve from the one-process curve, and on paper what one step synchronizes: all-reduce calls and
bytes for BN's statistics and for the gradients, with a ring all-reduce on 8 GPUs.

Ray: the same photos through ``stylenet stylize`` with the local engine and with ``--engine ray`` (a local
Ray), wall clock of each whole command, and their ratio. Writes docs/figures/scale.md.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from stylenet.paths import examples_dir, figures_dir
from stylenet.runtime import cpu_summary
from stylenet.transformer import TransformerNet
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["--image-size", "128", "--batch-size", "8", "--width", "32", "--log-every", "1", "--no-progress",
          "--spike-factor", "0", "--style", str(ROOT / "weights" / "styles" / "starry_night.jpg")]
RUNS = [("IN", "instance", "sync"), ("BN, synchronized", "batch", "sync"), ("BN, per-rank", "batch", "per-rank")]


def train(out: Path, content: str, steps: int, norm: str, processes: int, bn_stats: str) -> list[list[float]]:
    """One run's log rows (step, content, style, tv, total, images/s, seconds)."""
    port = free_port()  # another torchrun on the default 29500 must not collide
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--master-port", str(port), "-m", "stylenet"] if processes > 1 else [sys.executable, "-m", "stylenet"])
    subprocess.run([*launcher, "train", *RECIPE, "--content", content, "--steps", str(steps), "--norm", norm,
                    "--bn-stats", bn_stats, "--out", str(out)], check=True, capture_output=True)
    with open(next(out.glob(f"*_{norm}.csv"))) as f:
        return [[float(v) for v in row.values()] for row in csv.DictReader(f)]


def seconds_per_step(rows: list[list[float]]) -> float:
    return (rows[-1][-1] - rows[0][-1]) / (len(rows) - 1)


def curve_distance(rows: list[list[float]], reference: list[list[float]]) -> float:
    """The largest relative difference of the total loss, step by step."""
    return max(abs(a[4] - b[4]) / abs(b[4]) for a, b in zip(rows, reference))


def sync_on_paper(gpus: int = 8) -> list[str]:
    """Every collective one training step of one model issues, counted from the network's layers and
    the trainer's code: BN's statistics (synchronized BN: forward and backward, per layer; torch's
    SyncBatchNorm on GPUs moves float32 mean/var/count instead of our float64 sums, about the same
    size), DDP's gradient buckets (1 MiB first, then 25 MiB), DDP's buffer broadcast (per-rank BN
    only), and the step's loss average and stop check (once per step for all models of a run)."""
    model = TransformerNet("batch", 32)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stat_bytes = 2 * sum((2 * bn.num_features + 1) * 8 for bn in bns)
    grad_bytes = sum(p.numel() * 4 for p in model.parameters())
    buckets = 1 + math.ceil(max(0, grad_bytes - 2**20) / (25 * 2**20))
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    ring = 2 * (gpus - 1) / gpus  # bytes each GPU sends per byte all-reduced, ring algorithm
    return [f"| BN statistics (synchronized BN only) | {2 * len(bns)} ({len(bns)} layers, forward + backward) | "
            f"{stat_bytes / 1024:.1f} KiB | {stat_bytes * ring / 1024:.1f} KiB |",
            f"| BN running statistics broadcast (per-rank BN only) | 1 broadcast | {buffer_bytes / 1024:.1f} KiB | "
            f"{buffer_bytes / 1024:.1f} KiB (root) |",
            f"| gradients (every norm) | {buckets} | {grad_bytes / 2**20:.1f} MiB | {grad_bytes * ring / 2**20:.1f} MiB |",
            "| losses averaged, stop check (per step, all models) | 2 | < 0.1 KiB | < 0.1 KiB |"]


def timed(command: list[str]) -> tuple[float, str]:
    """Wall clock of a whole command, and what it printed."""
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--content", required=True, help="training photos")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--photos", default=str(examples_dir()), help="photos for the Ray comparison")
    p.add_argument("--weights", default="starry_night/instance")
    p.add_argument("--max-size", type=int, default=512)
    p.add_argument("--out", default=str(figures_dir() / "scale.md"))
    args = p.parse_args()
    lines = ["# Scale-out on one machine", "", f"`python scripts/scale_bench.py --content TRAIN_PHOTOS --steps {args.steps}`"
             f" on {cpu_summary()}.", "",
             f"## Data-parallel training: 1 process vs torchrun 2 × gloo ({args.steps} steps, 128 px, global batch 8, "
             "width 32)", "",
             "| model | 1 process: s/step | 2 processes: s/step | ratio | 2-process loss curve vs 1-process, max rel. diff |",
             "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        ones: dict[str, list[list[float]]] = {}
        for label, norm, bn_stats in RUNS:
            if norm not in ones:
                ones[norm] = train(Path(tmp) / f"one_{norm}", args.content, args.steps, norm, 1, "sync")
            one = ones[norm]
            two = train(Path(tmp) / f"two_{norm}_{bn_stats}", args.content, args.steps, norm, 2, bn_stats)
            a, b = seconds_per_step(one), seconds_per_step(two)
            lines.append(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f} | {curve_distance(two, one):.1e} |")
            print(lines[-1], flush=True)
    lines += ["", "## What one step synchronizes, per BN model (on paper, from the layer sizes)", "",
              "| what | all-reduce calls per step | bytes all-reduced | bytes each GPU sends, ring on 8 GPUs |",
              "|---|---|---|---|", *sync_on_paper()]
    command = [sys.executable, "-m", "stylenet", "stylize", args.photos, "--weights", args.weights,
               "--max-size", str(args.max_size)]
    with tempfile.TemporaryDirectory() as tmp:
        here, _ = timed([*command, "--out", f"{tmp}/local"])
        ray, printed = timed([*command, "--out", f"{tmp}/ray", "--engine", "ray"])
    actors = re.search(r"ray: (\d+) actor\(s\), ([^,]+) each", printed)
    photos = len([p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".png", ".webp")])
    lines += ["", f"## Ray engine vs the local engine ({photos} photos, {args.max_size} px, {args.weights})", "",
              "| engine | wall clock, whole command | photos/s |", "|---|---|---|",
              f"| local (1 process, all cores) | {here:.1f} s | {photos / here:.2f} |",
              f"| ray (local Ray: {actors[1]} actors, {actors[2]} each) | {ray:.1f} s | {photos / ray:.2f} |", "",
              f"Ray / local wall clock: **{ray / here:.2f}** (Ray's start, actor start-up and model loads included)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
