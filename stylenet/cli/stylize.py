"""Stylize files, folders and glob patterns, here or on a Ray cluster, with trained styles or any painting.

    stylenet stylize photos/ --weights starry_night/instance --out out/
    stylenet stylize photos/ --weights starry_night/instance/fast --out out/   # the slim student: ~4x faster
    stylenet stylize "s3://bucket/photos/" --weights starry_night/instance --out out/ --engine ray
    stylenet stylize photos/ --style-image painting.jpg --out out/      # AdaIN: no training per painting

Exit code 0 if every file succeeded, 1 if some failed (one line each, with the reason), 2 for
usage errors (bad flags, unknown weights, nothing to do). Both engines plan the same outputs
(``plan``) and stylize each file with the same function (``stylize_file``).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from tqdm import tqdm

from stylenet import cli
from stylenet.adain import (
    DECODER_FILE,
    STYLE_SCALE,
    STYLE_SCALES,
    AdaINStylizer,
    PaintingStyle,
    shipped_decoder,
)
from stylenet.backends import CHOICES
from stylenet.batch import FORMATS, Job, Options, attempt, is_video, plan
from stylenet.checkpoint import CheckpointError
from stylenet.images import open_image
from stylenet.sources import collect
from stylenet.stylize import Stylizer
from stylenet.temporal import STABILIZERS
from stylenet.vgg import VGGWeightsMissing
from stylenet.video import DEFAULT_BATCH

ADAIN_FLAGS = ("alpha", "style_scale", "style_weights", "decoder")  # the flags that go with --style-image only


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``stylize`` command's flags (``stylenet stylize --help``)."""
    p.add_argument("inputs", nargs="+", help="image files, video clips, folders, glob patterns (quoted; ** with "
                                             "--recursive) or, with pyarrow, URIs like s3://bucket/photos/")
    styles = p.add_mutually_exclusive_group(required=True)
    styles.add_argument("--weights", action="append",
                        help="checkpoint path or shipped name like starry_night/instance (the full model) or "
                             "starry_night/instance/fast (its slim distilled student, where shipped); repeatable")
    styles.add_argument("--style-image", action="extend", nargs="+", metavar="PAINTING",
                        help="any painting, no training (AdaIN); several are mixed, by --style-weights")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--max-size", type=int, help="shrink so the longest side is at most PX")
    p.add_argument("--strength", type=float, default=1.0, help="0 = the photo, 1 = full style")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    p.add_argument("--format", choices=sorted(FORMATS), default="png")
    p.add_argument("--quality", type=int, default=92, help="JPEG/WebP quality")
    p.add_argument("--skip-existing", action="store_true", help="leave outputs that exist (always on with --engine ray)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--backend", choices=CHOICES, help="what runs the network: auto (the default, or "
                   "$STYLENET_BACKEND) measures eager and ONNX Runtime once per machine and size, and keeps the faster; "
                   "onnx-int8 is faster still on many CPUs but changes pixels a little (docs/stylize.md)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="video: frames per forward pass")
    p.add_argument("--stabilize", choices=("none", *STABILIZERS), default="none",
                   help="video: IN/LN/GN statistics smoothed over time (ema) or frozen at the first frame (reference)")
    p.add_argument("--gif-as-video", action="store_true", help="animated GIFs become MP4 clips (else: first frame)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a pool of Ray actors, the models loaded once in each "
                        "(pip install 'stylenet[ray]'); outputs that exist are skipped, so a stopped run resumes")
    p.add_argument("--address", metavar="ADDR",
                   help="ray: the cluster to join, e.g. ray://head:10001 (default: a local Ray for this run)")
    p.add_argument("--workers", type=int, metavar="N", help="ray: actors (default: one per GPU, else one per CPU)")
    adain = p.add_argument_group("any painting (--style-image; photos only, this process)")
    adain.add_argument("--alpha", type=float, help="strength in feature space: 0 = the photo's own features, "
                       "1 = the painting's statistics (default 1)")
    adain.add_argument("--style-scale", type=int, metavar="PX", help="the painting's long side when it is read: "
                       f"smaller = bigger strokes ({STYLE_SCALES[0]} to {STYLE_SCALES[1]}, default {STYLE_SCALE})")
    adain.add_argument("--style-weights", action="extend", nargs="+", type=float, metavar="W",
                       help="one weight per painting (scaled to sum to 1), e.g. 0.7 0.3")
    adain.add_argument("--decoder", type=Path, metavar="PATH", help=f"an AdaIN decoder file (default: the "
                       f"shipped {DECODER_FILE})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` as ``stylenet stylize`` parses it."""
    return cli.parse_args("stylize", argv)


def check_options(args: argparse.Namespace) -> str | None:
    """The first usage error among the options, or None."""
    for bad, message in [(not 0.0 <= args.strength <= 1.0, "--strength must be between 0 and 1"),
                         (args.max_size is not None and args.max_size < 1, "--max-size must be positive"),
                         (args.batch_size < 1, "--batch-size must be positive"),
                         (args.workers is not None and args.workers < 1, "--workers must be positive"),
                         (not args.style_image and any(getattr(args, flag) is not None for flag in ADAIN_FLAGS),
                          "--alpha, --style-scale, --style-weights and --decoder go with --style-image"),
                         (args.style_image and args.engine == "ray",
                          "--style-image runs in this process only (--engine local)"),
                         (args.alpha is not None and not 0.0 <= args.alpha <= 1.0, "--alpha must be between 0 and 1"),
                         (args.style_scale is not None and not STYLE_SCALES[0] <= args.style_scale <= STYLE_SCALES[1],
                          f"--style-scale must be {STYLE_SCALES[0]} to {STYLE_SCALES[1]} px"),
                         (args.style_weights is not None and len(args.style_weights) != len(args.style_image or ()),
                          "give one --style-weights per --style-image")]:
        if bad:
            return message
    return None


def painting_style(args: argparse.Namespace) -> PaintingStyle:
    """The ``--style-image`` paintings, mixed by ``--style-weights``, on the decoder (``--decoder``, else the
    shipped one). ValueError in one line for a painting that is not an image or a missing decoder."""
    paintings = [open_image(path)[0] for path in args.style_image]  # ImageError (a ValueError): one line
    decoder = args.decoder or shipped_decoder()
    if decoder is None:
        raise ValueError(f"no AdaIN decoder is shipped yet ({DECODER_FILE} in the weights folder): train one "
                         "(scripts/train_adain.py) and pass --decoder PATH")
    weights = args.style_weights or [1.0] * len(paintings)
    return PaintingStyle(AdaINStylizer.load(decoder, args.device),
                         [(Path(path).stem, img, w) for path, img, w in zip(args.style_image, paintings, weights)],
                         1.0 if args.alpha is None else args.alpha, args.style_scale or STYLE_SCALE)


def stylize_here(jobs: list[Job], stylizers: dict[str, Stylizer], options: Options) -> list[str]:
    """The local engine: every job in this process, with a progress bar; the failure lines."""
    failures = (attempt(job, stylizers[job.model], options) for job in tqdm(jobs, desc="stylizing", unit="img"))
    return [line for line in failures if line]


def run(args: argparse.Namespace) -> int:
    if problem := check_options(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.engine == "ray" and importlib.util.find_spec("ray") is None:
        print("error: --engine ray needs Ray: pip install 'stylenet[ray]'", file=sys.stderr)
        return 2
    try:  # on Ray the actors load the models; here they are only read for their names
        stylizers = [painting_style(args)] if args.style_image else [
            Stylizer.load(w, device="cpu" if args.engine == "ray" else args.device, backend=args.backend)
            for w in args.weights]
        sources = collect(args.inputs, args.recursive)
    except (ValueError, CheckpointError, VGGWeightsMissing) as exc:  # SourceError, a bad painting: ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [s.name for s in stylizers]
    if twice := next((n for n in names if names.count(n) > 1), None):
        print(f"error: two --weights are both {twice}; their outputs would replace each other", file=sys.stderr)
        return 2
    if not sources:
        print("error: no input files", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the output's model part: the name after the style, norm_fast for a slim student (adain for --style-image)
    models = [(s.name, s.meta["style"], s.name.split("/", 1)[1].replace("/", "_")) for s in stylizers]
    options = Options.of(args)
    jobs, refused = plan(sources, models, out_dir, options)
    if args.style_image:  # AdaIN paints photos; a clip needs a trained model's frame-by-frame path
        refused += [f"{job.source}: a clip; --style-image paints photos only (use --weights for clips)"
                    for job in jobs if is_video(job.source.path, options.gif_as_video)]
        jobs = [job for job in jobs if not is_video(job.source.path, options.gif_as_video)]
    skip = args.skip_existing or args.engine == "ray"  # on Ray, a rerun resumes where a stopped run ended
    todo = [job for job in jobs if not (skip and job.target.exists())]
    if args.engine == "ray":
        from stylenet.ray_stylize import RayUnavailable, stylize_on_ray

        try:
            failed = stylize_on_ray(todo, options, args.weights, out_dir, args.device, args.address, args.workers,
                                    backend=args.backend)
        except RayUnavailable as exc:
            done = sum(job.target.exists() for job in todo)
            print(f"error: {exc}; {done} of {len(todo)} outputs were written: rerun to resume", file=sys.stderr)
            return 1
    else:
        failed = stylize_here(todo, {s.name: s for s in stylizers}, options)
        if not args.style_image:  # AdaIN always runs eagerly: no backend to report
            for stylizer in stylizers:
                print(f"backend: {stylizer.backend.report()}" + (f" ({stylizer.name})" if len(stylizers) > 1 else ""))
    failures = refused + failed
    for line in failures:
        tqdm.write(f"failed: {line}", file=sys.stderr)
    print(f"done: {len(todo) - len(failed)} written, {len(jobs) - len(todo)} skipped (existing), "
          f"{len(failures)} failed -> {out_dir}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
