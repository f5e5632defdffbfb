"""Train every shipped checkpoint with one recipe: python scripts/train_zoo.py --data DATA (holds train/, styles/)

Each job trains all norms of one painting in one process, on the same batches (shared data, VGG and
style Grams); a later job of the same painting and seed draws the same batches again, so the LN/GN/none
models of Starry Night see exactly what its BN and IN models saw. Jobs run one after another (``--workers
1``, every core on one run) and always pass --resume, so rerunning after an interruption (Ctrl-C writes
the models) continues where each job stopped. Models go to --out (runs/zoo), logs beside them.

``--ship DIR`` copies DIR's models into weights/ (each norm's best checkpoint on the validation photos
where there is one, else its last; fp16, with its log up to that checkpoint) and rebuilds the manifest.
On a machine without ``runs/zoo`` a run cannot resume; ``--continue-from weights`` then warm-starts
from what was shipped (a new Adam and new crops, not the same run).

With ``--continue-from DIR --steps N`` every job instead warm-starts from DIR's models of the same
style and norms (``--init``; a job without a model for each of its norms there is skipped, with a line)
and trains N more steps with CPU_RECIPE and the library's loss (the models
shipped before the recipe sweep were trained with another: continue only models of this recipe), the style weight at full
strength from the start, new crops, and half the learning rate ramped in over 100 steps (see
CONTINUE_RECIPE). ``--promote DIR`` then copies DIR's finished models
into weights/, each with one log of its whole history (the warm start's rows, then the continuation's
with their steps counted on), and rebuilds the manifest.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stylenet import paths
from stylenet.checkpoint import is_side_file, load_model, read_metadata, save_model
from stylenet.train import best_path
from stylenet.weights import build_manifest, sha256_file

# The CPU recipe's sizes; its loss is the library's default (stylenet.recipe.Recipe: content at relu4_1,
# style 10, TV 10, the painting's Grams at 256 px, style ramped in over 150 steps; docs/recipe.md chose it).
# 6,400 steps of four 128 px crops are four times the pixels the models shipped before it had.
CPU_RECIPE = ["--image-size", "128", "--batch-size", "4", "--width", "32", "--lr", "1e-3", "--seed", "0",
              "--validation-photos", "16", "--checkpoint-every", "50", "--log-every", "10"]
STEPS = 6400
JOBS = [  # (painting, norms trained together, steps, extra flags), most important first
    ("starry_night", ["instance", "batch"], STEPS, []),
    ("great_wave", ["instance", "batch"], STEPS, []),
    ("the_scream", ["instance", "batch"], STEPS, []),
    ("starry_night", ["layer", "group", "none"], STEPS, []),
    ("udnie", ["instance", "batch"], STEPS, []),
    ("composition_vii", ["instance", "batch"], STEPS, []),
    ("cezanne_apples", ["instance", "batch"], STEPS, []),
]
CONTRAST_JOBS = [  # Huang & Belongie control: same recipe, contrast-normalized photos, shorter
    ("starry_night", ["instance", "batch"], 1600, ["--contrast-normalize"]),
]


# A continuation draws new crops (another seed: the warm start's would replay its batches first) at
# half the learning rate, ramped in over 100 steps: at the full rate a fresh Adam knocked the trained
# models off (Great Wave IN's style loss went from 0.40 to 0.75 within 100 steps before recovering).
CONTINUE_RECIPE = ["--seed", "1", "--lr", "5e-4", "--style-warmup", "0", "--lr-warmup", "100"]


def run(job: tuple[str, list[str], int, list[str]], data: Path, out_dir: Path, device: str,
        init_dir: Path | None, threads: int) -> int:
    style, norms, steps, extra = job
    tag = "_contrastnorm" if extra else ""
    if init_dir is not None:
        inits = [init_dir / f"{style}_{n}{tag}.safetensors" for n in norms]
        if not all(path.is_file() for path in inits):  # e.g. weights/in_progress holds the jobs begun so far
            print(f"{style}{tag} ({', '.join(norms)}): skipped, no warm start for every norm in {init_dir}", flush=True)
            return 0
        extra = [*extra, *CONTINUE_RECIPE, "--init", *map(str, inits)]
    out = out_dir / f"{style}_{{norm}}{tag}.safetensors"  # the trainer fills in {norm}
    cmd = [sys.executable, "-m", "stylenet", "train", "--style", str(data / "styles" / f"{style}.jpg"),
           "--content", str(data / "train"), "--norm", *norms, "--out", str(out), "--steps", str(steps),
           "--device", device, "--resume", "--no-progress", *CPU_RECIPE, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(out_dir / f"{style}{tag}.out", "a") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    print(f"{style}{tag} ({', '.join(norms)}): exit {code}", flush=True)
    return code


def stacked_log(first: Path, then: Path, out: Path) -> None:
    """One CSV: ``first``'s rows, then ``then``'s with their step (and seconds) counted on from its end."""
    with open(first, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(then, newline="") as f:
        more = list(csv.DictReader(f))
    step, seconds = int(rows[-1]["step"]), float(rows[-1]["seconds"])
    rows += [row | {"step": int(row["step"]) + step, "seconds": round(float(row["seconds"]) + seconds, 1)}
             for row in more]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def promote(continued: Path, weights: Path) -> None:
    """Replace weights/' models by their finished continuations in ``continued`` (see above). Every
    model is checked before anything is changed; each log is written aside and renamed."""
    models = [m for m in sorted(continued.glob("*.safetensors")) if not is_side_file(m)]
    metas = {model: read_metadata(model) for model in models}
    for model, meta in metas.items():
        if meta["steps"] < meta["recipe"]["steps"] or "init" not in meta:
            raise SystemExit(f"{model.name} is not a finished continuation; nothing promoted")
        if meta["init"]["sha256"] != sha256_file(weights / model.name):
            raise SystemExit(f"{model.name} did not start from {weights / model.name}; nothing promoted")
        if not (weights / f"{model.stem}.csv").is_file() or not model.with_suffix(".csv").is_file():
            raise SystemExit(f"{model.stem}.csv is missing here or there; nothing promoted")
    for model, meta in metas.items():
        shipped, log = weights / model.name, weights / f"{model.stem}.csv"
        if "recipe" not in meta["init"]:  # continuations from before the trainer recorded it
            meta["init"]["recipe"] = read_metadata(shipped)["recipe"]
        stacked_log(log, model.with_suffix(".csv"), log.with_suffix(".csv.tmp"))
        save_model(load_model(model)[0], meta, shipped)
        os.replace(log.with_suffix(".csv.tmp"), log)
        print(f"promoted {model.name}: {meta['init']['steps']} + {meta['steps']} steps")
    build_manifest(weights)


def ship(trained: Path, weights: Path) -> None:
    """Copy ``trained``'s models into ``weights`` (the best checkpoint where there is one), each with
    its log, and rebuild the manifest. Every file is checked before anything is copied."""
    models = [m for m in sorted(trained.glob("*.safetensors")) if not is_side_file(m)]
    if not models:
        raise SystemExit(f"no finished or stopped model in {trained} (Ctrl-C a run to write its models); nothing shipped")
    chosen = {m: best_path(m) if best_path(m).is_file() else m for m in models}
    for model, source in chosen.items():
        read_metadata(source)  # refuses a file that is not a model
        if not model.with_suffix(".csv").is_file():
            raise SystemExit(f"{model.stem}.csv is missing; nothing shipped")
    for model, source in chosen.items():
        net, meta = load_model(source)
        save_model(net, meta, weights / model.name)
        log_until(model.with_suffix(".csv"), meta["steps"], weights / f"{model.stem}.csv")
        print(f"shipped {model.name} (step {meta['steps']}, {'best' if source != model else 'last'})")
    build_manifest(weights)


def log_until(log: Path, step: int, out: Path) -> None:
    """``log``'s rows up to ``step``: the history of the checkpoint shipped, not of the run after it."""
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["step"])
        writer.writeheader()
        writer.writerows(row for row in rows if int(row["step"]) <= step)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=paths.data_dir().parent,
                   help="holds train/ (the photos) and styles/ (default: $STYLENET_DATA's parent or data/)")
    p.add_argument("--out", type=Path, default=Path("runs") / "zoo")
    p.add_argument("--workers", type=int, default=1, help="jobs at once; the cores are shared among them")
    p.add_argument("--threads", type=int, help="threads per job (default: the cores / --workers); on a machine "
                   "busy with other work one thread wastes less than two that wait for each other")
    p.add_argument("--device", default="cpu")
    p.add_argument("--contrast", action="store_true", help="also run the contrast-normalized control")
    p.add_argument("--continue-from", type=Path, help="warm-start every model from this folder's (see above)")
    p.add_argument("--steps", type=int, help="steps per job (default: each job's own)")
    p.add_argument("--promote", type=Path, help="copy this folder's finished continuations into weights/ (see above)")
    p.add_argument("--ship", type=Path, help="copy this folder's models into weights/ (see above)")
    args = p.parse_args()
    if args.promote:
        promote(args.promote, paths.weights_dir())
        return 0
    if args.ship:
        ship(args.ship, paths.weights_dir())
        return 0
    if args.continue_from is not None and not args.continue_from.is_dir():
        p.error(f"--continue-from {args.continue_from}: no such folder")
    jobs = JOBS + (CONTRAST_JOBS if args.contrast else [])
    if args.steps:
        jobs = [(style, norms, args.steps, extra) for style, norms, _, extra in jobs]
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.workers) as pool:
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
        codes = list(pool.map(lambda j: run(j, args.data, args.out, args.device, args.continue_from, threads), jobs))
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
