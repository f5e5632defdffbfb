"""What a slim student buys and costs: python scripts/distill_eval.py [--students FILE ...] [--out FILE]

For every student (default: the manifest's ``fast`` models) and its teacher (the shipped model the
student's metadata names, checked by sha256):

- Speed at 1024x681 (and --sizes), 2 threads unless --threads: the plain network (eager fp32 NCHW, BN
  unfolded: bench.py's baseline), the teacher's and the student's default Stylizer (``backend="auto"``,
  what the CLI and the app run; the student's on --student-backend, e.g. onnx-int8), interleaved round by round (backends.measure), each one's fastest of
  --repeats calls; and the parameter counts.
- Quality: the independent evaluator (stylenet/evaluate.py, 512 px) on the held-out example photos,
  teacher against student, and the student's change in style and content distance (issue 24 asks
  for within 10 %); the mean absolute difference of the two outputs in [0, 1] pixels.
- Cost: the student's distillation steps and seconds (its log) against the teacher's training.

Writes markdown to --out (default docs/figures/distill.md) under a line with the CPU, its vector flags,
the threads and the minutes the run took, and a grid (photo, teacher, student) beside it. Backend
choices are measured in a temporary cache: the user's stays as it was.
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import torch

from stylenet import backends
from stylenet.checkpoint import load_model, read_metadata
from stylenet.data import list_images, load_rgb
from stylenet.evaluate import GRID_PHOTOS, Evaluator, Targets, score_method
from stylenet.figures import contact_sheet
from stylenet.norms import norm_label
from stylenet.paths import examples_dir, figures_dir
from stylenet.runtime import cpu_summary
from stylenet.stylize import Stylizer
from stylenet.weights import FAST, WEIGHTS_DIR, load_manifest, sha256_file


def teacher_of(student: Path) -> Path:
    """The shipped teacher a student's metadata names; SystemExit if it is not the file it learned from."""
    distill = read_metadata(student)["distill"]
    teacher = WEIGHTS_DIR / distill["teacher"]
    if not teacher.is_file() or sha256_file(teacher) != distill["teacher_sha256"]:
        raise SystemExit(f"{student.name}: its teacher {distill['teacher']} is not in {WEIGHTS_DIR} as it learned from it")
    return teacher


def log_cost(log: Path) -> tuple[int, float]:
    """(steps, seconds) of a training or distillation log's last row."""
    with open(log, newline="") as f:
        last = list(csv.DictReader(f))[-1]
    return int(last["step"]), float(last["seconds"])


def speed_rows(teacher: Path, student: Path, sizes: list[tuple[int, int]], backend: str) -> list[str]:
    """Per size: the plain network's seconds, the teacher's default Stylizer's and the student's on
    ``backend``, and their ratios."""
    plain, meta = load_model(teacher)
    runners = {"plain": plain.eval(), "teacher": Stylizer.load(teacher, "cpu").forward,
               "student": Stylizer.load(student, "cpu", backend=backend).forward}
    rows = []
    for width, height in sizes:
        x = torch.rand(1, 3, height, width)
        with torch.inference_mode():
            for runner in runners.values():
                runner(x)  # the first call: auto measures the backends here
            calls = {name: trial.call_s for name, trial in backends.measure(runners, dict.fromkeys(runners, 0.0), x).items()}
        rows.append(f"| {meta['style']} | {norm_label(meta['norm'])} | {width}×{height} | {calls['plain']:.2f} s | "
                    f"{calls['teacher']:.2f} s ({calls['plain'] / calls['teacher']:.2f}×) | "
                    f"**{calls['student']:.2f} s** ({calls['plain'] / calls['student']:.2f}×) |")
        print(rows[-1], flush=True)
    return rows


def params(path: Path) -> int:
    return sum(p.numel() for p in load_model(path)[0].parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", nargs="+", type=Path, help="student files (default: the manifest's fast models)")
    p.add_argument("--sizes", nargs="+", default=["1024x681", "512x512"], help="WIDTHxHEIGHT")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed calls of each network")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--student-backend", default="auto", help="what runs the student (the teacher: always auto)")
    p.add_argument("--photos", type=Path, default=examples_dir(), help="held-out photos")
    p.add_argument("--out", type=Path, default=figures_dir() / "distill.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    students = args.students or [WEIGHTS_DIR / e["file"] for e in load_manifest(variant=FAST)]
    if not students:
        raise SystemExit("no student given and none shipped (weights/manifest.json has no fast models)")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    backends.REPEATS = args.repeats
    paths = list_images(args.photos, recursive=False)
    photos = [load_rgb(path) for path in paths]
    evaluator = Evaluator()
    speed, quality, cost, grid = [], [], [], []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["STYLENET_CACHE"] = cache
        for student in students:
            teacher = teacher_of(student)
            meta = read_metadata(teacher)
            speed += speed_rows(teacher, student, sizes, args.student_backend)
            targets = Targets.of(evaluator, photos, load_rgb(WEIGHTS_DIR / "styles" / meta["painting"]["file"]))
            t, s = (score_method(Stylizer.load(f, "cpu", backend=b), targets, evaluator)
                    for f, b in ((teacher, "auto"), (student, args.student_backend)))
            diff = t.pixel_difference(s)
            label = f"{meta['style']} | {norm_label(meta['norm'])}"
            quality.append(f"| {label} | {t.style:.4f} → {s.style:.4f} ({s.style / t.style - 1:+.1%}) | "
                           f"{t.content:.4f} → {s.content:.4f} ({s.content / t.content - 1:+.1%}) | {diff:.4f} |")
            print(quality[-1], flush=True)
            (t_steps, t_s), (s_steps, s_s) = log_cost(teacher.with_suffix(".csv")), log_cost(student.with_suffix(".csv"))
            cost.append(f"| {label} | {params(teacher):,} → {params(student):,} | {t_steps:,} steps, {t_s / 3600:.1f} h "
                        f"({t_s / t_steps:.2f} s/step) | {s_steps:,} steps, {s_s / 3600:.1f} h ({s_s / s_steps:.2f} s/step) |")
            shown = [i for i, path in enumerate(paths) if path.name in GRID_PHOTOS]
            grid += [[photos[i], t.pictures[i], s.pictures[i]] for i in shown]
    minutes = (time.perf_counter() - start) / 60
    command = "python scripts/distill_eval.py" + (f" --student-backend {args.student_backend}"
                                                  if args.student_backend != "auto" else "")
    lines = [f"`{command}`, {minutes:.1f} min, CPU: {cpu_summary()}, {args.threads} threads, "
             f"load average {os.getloadavg()[0]:.1f} at the end.", "",
             f"Speed: the plain network (eager fp32 NCHW, BN unfolded) against the default Stylizer (backend auto) "
             f"of the teacher and its slim student on backend {args.student_backend}; fastest of {args.repeats} "
             "interleaved calls.", "",
             "| painting | norm | size | plain | teacher (×plain) | student (×plain) |", "|---|---|---|---|---|---|", *speed, "",
             f"Quality: the independent evaluator (stylenet/evaluate.py, 512 px), teacher → student, mean over "
             f"{len(photos)} held-out photos; lower is better. Last column: mean |teacher − student| in [0, 1] pixels.", "",
             "| painting | norm | style distance | content distance | mean abs diff |", "|---|---|---|---|---|", *quality, "",
             "Cost: parameters, and training as logged (seconds of the process that trained; the machine may have "
             "been shared).", "",
             "| painting | norm | parameters | teacher's training | student's distillation |", "|---|---|---|---|---|", *cost, ""]
    args.out.write_text("\n".join(lines))
    contact_sheet(["photo", "teacher", "student (fast)"], grid, args.out.with_suffix(".jpg"), 320)
    print(f"wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
