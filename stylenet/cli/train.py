"""Train a style.

    stylenet train --style painting.jpg --content photos/ --norm batch instance --out models/

One model per --norm, all trained on the same batches in one process; under torchrun
(``torchrun --nproc-per-node N -m stylenet train ...``, same flags) each process trains on its share
of every batch, and --bn-stats says whether BN layers see the whole batch's statistics. --preset sets crop size, batch,
steps and width (flags given explicitly override it); before the first step the measured step time
and the run's estimated wall-clock time are printed. Ctrl-C stops after the current step and keeps a
checkpoint of every model (--resume continues); a second Ctrl-C quits at once.
"""
from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from stylenet import cli
from stylenet.checkpoint import CheckpointError
from stylenet.data import NoImagesError
from stylenet.distributed import BN_STATS, DataParallel
from stylenet.norms import NORM_KINDS, norm_label
from stylenet.train import (
    DEFAULT_PRESET,
    PRESETS,
    Listener,
    Recipe,
    RunStart,
    StepEvent,
    TrainingDiverged,
    output_paths,
    train,
)
from stylenet.units import duration
from stylenet.vgg import VGGWeightsMissing

RECIPE_FIELDS = {f.name for f in fields(Recipe)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` command's flags (``stylenet train --help``)."""
    d = Recipe(style="", content="")
    presets = "; ".join(f"{name}: " + ", ".join(f"{k}={v:g}" for k, v in values.items())
                        for name, values in PRESETS.items())
    p.add_argument("--style", required=True, help="the painting (jpg/png/webp)")
    p.add_argument("--content", required=True, help="folder of training photos (searched recursively)")
    p.add_argument("--norm", nargs="+", default=["instance"], choices=NORM_KINDS,
                   help="one model per norm, all trained on the same batches")
    p.add_argument("--out", required=True,
                   help="model file (*.safetensors; with several norms a name containing {norm}), or a folder "
                        "that receives STYLE_NORM.safetensors")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESETS, help=f"{presets} (default {DEFAULT_PRESET})")
    p.add_argument("--init", nargs="+", type=Path, default=[], metavar="CKPT",
                   help="start from these checkpoints, one per norm, of the same norm and width (Adam starts fresh)")
    p.add_argument("--steps", type=int, help="(preset)")
    p.add_argument("--image-size", type=int, help="training crop size in pixels (preset)")
    p.add_argument("--batch-size", type=int,
                   help="(preset); under torchrun the global batch, split evenly over the processes")
    p.add_argument("--width", type=int, help="channels of the first conv, 32 = Johnson (preset)")
    p.add_argument("--lr", type=float, help=f"(default {d.lr:g})")
    p.add_argument("--content-weight", type=float, help=f"(default {d.content_weight:g})")
    p.add_argument("--style-weight", type=float, help=f"(default {d.style_weight:g})")
    p.add_argument("--tv-weight", type=float, help=f"(default {d.tv_weight:g})")
    p.add_argument("--style-size", type=int, help=f"short side of the painting for its Grams (default {d.style_size})")
    p.add_argument("--style-warmup", type=int,
                   help=f"ramp the style weight in linearly, at full weight after this many steps "
                        f"(default {d.style_warmup})")
    p.add_argument("--lr-warmup", type=int,
                   help=f"ramp the learning rate in linearly, reaching --lr after this many steps; use with --init "
                        f"(default {d.lr_warmup})")
    p.add_argument("--seed", type=int, help=f"(default {d.seed})")
    p.add_argument("--checkpoint-every", type=int, help=f"(default {d.checkpoint_every})")
    p.add_argument("--log-every", type=int, help=f"(default {d.log_every})")
    p.add_argument("--content-layer", choices=("relu2_2", "relu3_1", "relu4_1", "relu4_2"),
                   help=f"VGG layer whose features the output keeps; deeper lets strokes move (default {d.content_layer})")
    p.add_argument("--validation-photos", type=int,
                   help="photos held out of training (at most a tenth) to keep the best checkpoint by, beside "
                        f"the last as NAME.best.safetensors; 0: none (default {d.validation_photos})")
    p.add_argument("--spike-factor", type=float,
                   help="skip a step whose loss exceeds this many times the running median; 0: never "
                        f"(default {d.spike_factor:g})")
    p.add_argument("--contrast-normalize", action="store_true", default=None,
                   help="give every content photo the same mean/std (Huang & Belongie control)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--bn-stats", default="sync", choices=BN_STATS,
                   help="data-parallel runs (torchrun --nproc-per-node N -m stylenet train ...): BN statistics over "
                        "the whole batch (sync, the one-process model) or over each process's share (per-rank); "
                        "IN, LN and GN need neither (default sync)")
    p.add_argument("--resume", action="store_true", help="continue from the training states beside --out")
    p.add_argument("--log", help="CSV of losses, same forms as --out (default: beside each model)")
    p.add_argument("--no-progress", action="store_true")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` as ``stylenet train`` parses it."""
    return cli.parse_args("train", argv)


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """Recipe defaults, then the preset's values, then every flag given explicitly."""
    given = {k: v for k, v in vars(args).items() if k in RECIPE_FIELDS and v is not None}
    return Recipe(**PRESETS[args.preset] | given)


class ConsoleProgress(Listener):
    """The terminal's view of a run: the photo scan, the plan with its measured estimate, then a
    progress bar with losses, images/s and the ETA; Ctrl-C asks the run to stop after the step."""

    def __init__(self, bars: bool) -> None:
        self.bars = bars
        self.bar: tqdm | None = None
        self.running = self.stop_requested = False

    def on_scan(self, done: int, total: int) -> None:
        if self.bars and self.bar is None:
            self.bar = tqdm(total=total, desc="reading photos", unit="img", leave=False)
        if self.bar is not None:
            self.bar.update(1)

    def on_start(self, start: RunStart) -> None:
        self.close()
        if start.skipped:
            print(f"skipped {len(start.skipped)} unreadable file(s) among the training photos")
        if start.start:
            print(f"resuming {', '.join(p.name for p in start.outs)} from step {start.start}")
        print(f"{start.photos} photos, {len(start.norms)} model(s): measured {start.step_seconds:.2f} s/step, "
              f"so {start.steps - start.start} steps take about {duration(start.eta_seconds, estimate=True)}", flush=True)
        if self.bars:
            self.bar = tqdm(initial=start.start, total=start.steps, unit="step",
                            desc=" + ".join(norm_label(n) for n in start.norms))
        self.running = True

    def on_step(self, event: StepEvent) -> None:
        if event.skipped:
            tqdm.write(f"step {event.step}: loss spike, update skipped for {', '.join(map(norm_label, event.skipped))}")
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(" ".join(f"{norm_label(n)} style {l['style']:.3f} content {l['content']:.3f}"
                                              for n, l in event.losses.items()) + f" {event.images_per_s:.2f} img/s")

    def request_stop(self, signum: int, frame: object) -> None:
        """The SIGINT handler: before the first step Ctrl-C quits; during the run it asks for a stop."""
        if not self.running:
            raise KeyboardInterrupt
        print("\nstopping after this step, keeping a checkpoint (Ctrl-C again quits at once)", file=sys.stderr)
        self.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def should_stop(self) -> bool:
        return self.stop_requested

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    recipe = resolve_recipe(args)
    out = Path(args.out)
    problems = [msg for bad, msg in [
        (out.suffix not in ("", ".safetensors"), "--out must end in .safetensors or be a folder"),
        (not Path(args.style).is_file(), f"--style {args.style}: no such file"),
        (min(recipe.steps, recipe.image_size, recipe.batch_size, recipe.width, recipe.checkpoint_every,
             recipe.log_every) < 1,
         "--steps, --image-size, --batch-size, --width, --checkpoint-every and --log-every must be positive"),
        (recipe.image_size < 32, "--image-size must be at least 32")] if bad]
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    parallel = DataParallel.from_environment(args.bn_stats, args.device)
    main = parallel is None or parallel.is_main
    progress = ConsoleProgress(bars=not args.no_progress and main)
    # Under torchrun the launcher owns Ctrl-C (it ends every rank); --resume continues from the last checkpoint.
    previous_handler = signal.signal(signal.SIGINT, progress.request_stop) if parallel is None else None
    try:
        metas = train(recipe, args.norm, args.out, init=args.init, resume=args.resume, log=args.log,
                      device=args.device, listener=progress, parallel=parallel)
    except (NoImagesError, VGGWeightsMissing, CheckpointError, TrainingDiverged, ValueError, OSError) as exc:
        if main:  # under torchrun every rank meets the same error: one line, not one per process
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        progress.close()
        if parallel:
            parallel.close()
        else:
            signal.signal(signal.SIGINT, previous_handler)
    if not main:
        return 0
    outs = output_paths(args.out, recipe.style_name, list(metas), ".safetensors")
    for norm, meta in metas.items():
        print(f"wrote {outs[norm]} ({meta['steps']} steps, final losses {meta['final_losses']})")
    if any(meta["steps"] < recipe.steps for meta in metas.values()):
        print("stopped early: rerun with --resume to continue", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
