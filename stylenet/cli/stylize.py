"""Stylize files, folders and glob patterns, here or on a Ray cluster.

    stylenet stylize photos/ --weights starry_night/instance --out out/
    stylenet stylize "s3://bucket/photos/" --weights starry_night/instance --out out/ --engine ray

Exit code 0 if every file succeeded, 1 if some failed (one line each, with the reason), 2 for
usage errors (bad flags, unknown weights, nothing to do). Both engines plan the same outputs
(``plan``) and stylize each file with the same function (``stylize_file``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath

from tqdm import tqdm

from stylenet import cli
from stylenet.checkpoint import CheckpointError
from stylenet.files import replaced_atomically
from stylenet.images import ImageError, open_image
from stylenet.sources import Source, collect
from stylenet.stylize import Stylizer
from stylenet.temporal import STABILIZERS, stabilized
from stylenet.video import (
    DEFAULT_BATCH,
    VIDEO_SUFFIXES,
    VideoError,
    probe,
    stylize_video,
)

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``stylize`` command's flags (``stylenet stylize --help``)."""
    p.add_argument("inputs", nargs="+",
                   help="image files, video clips, folders, glob patterns (quoted) or, with pyarrow, URIs like s3://b/dir/")
    p.add_argument("--weights", action="append", required=True,
                   help="checkpoint path or shipped name like starry_night/instance (repeatable)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--max-size", type=int, help="shrink so the longest side is at most PX")
    p.add_argument("--strength", type=float, default=1.0, help="0 = the photo, 1 = full style")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    p.add_argument("--format", choices=sorted(FORMATS), default="png")
    p.add_argument("--quality", type=int, default=92, help="JPEG/WebP quality")
    p.add_argument("--skip-existing", action="store_true")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="video: frames per forward pass")
    p.add_argument("--stabilize", choices=("none", *STABILIZERS), default="none",
                   help="video: IN/LN/GN statistics smoothed over time (ema) or frozen at the first frame (reference)")
    p.add_argument("--gif-as-video", action="store_true", help="animated GIFs become MP4 clips (else: first frame)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: a pool of Ray actors, one loaded model set each (pip install 'stylenet[ray]'); "
                        "outputs that exist are skipped, so a stopped run resumes")
    p.add_argument("--address", help="ray: the cluster to join (default: a local Ray started for this run)")
    p.add_argument("--workers", type=int, help="ray: actors (default: one per GPU, else one per CPU)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` as ``stylenet stylize`` parses it."""
    return cli.parse_args("stylize", argv)


def is_video(path: PurePath, gif_as_video: bool) -> bool:
    suffix = path.suffix.lower()
    return suffix in VIDEO_SUFFIXES or (gif_as_video and suffix == ".gif")


def stylize_clip_file(path: Path, target: Path, stylizer: Stylizer, args: argparse.Namespace) -> None:
    """One clip through one model, with a progress bar of its own (frames, with ETA)."""
    info = probe(path)
    if args.stabilize != "none":  # a fresh copy per clip: the smoothing remembers the frames it saw
        stylizer = stabilized(stylizer, STABILIZERS[args.stabilize])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=info.estimated_frames, desc=path.name, unit="frame", leave=False) as bar:
        stylize_video(path, target, stylizer, max_size=args.max_size, strength=args.strength,
                      preserve_color=args.preserve_color, batch_size=args.batch_size, info=info,
                      on_frames=bar.update)


def output_path(source: PurePath, root: PurePath, style: str, norm: str, fmt: str,
                taken: dict[PurePath, PurePath]) -> PurePath:
    """Where ``source``'s result goes, relative to --out, claimed in ``taken`` (output -> input).

    No output of a run may replace another. The source's folder below ``root`` is mirrored, so
    a/x.jpg and b/x.jpg (with --recursive) stay apart; of two inputs with one stem and different
    extensions in one folder (image.tiff, image.webp) the later keeps its extension in the name
    (image_webp_...). Any other clash (x.jpg named from two folders) is a ValueError naming both.
    """
    folder = source.parent.relative_to(root)
    name = folder / f"{source.stem}_{style}_{norm}.{fmt}"
    if name in taken and taken[name].suffix.lower() != source.suffix.lower():
        name = folder / f"{source.stem}_{source.suffix.lower().lstrip('.')}_{style}_{norm}.{fmt}"
    if name in taken:
        raise ValueError(f"{source}: its output {name} is already that of {taken[name]}; "
                         "rename one of them or stylize them separately")
    taken[name] = source
    return name


@dataclass(frozen=True)
class Job:
    """One output to make: which file, through which model (its ``Stylizer.name``), to where."""

    source: Source
    model: str
    target: Path


def check_options(args: argparse.Namespace) -> str | None:
    """The first usage error among the options, or None."""
    for bad, message in [(not 0.0 <= args.strength <= 1.0, "--strength must be between 0 and 1"),
                         (args.max_size is not None and args.max_size < 1, "--max-size must be positive"),
                         (args.batch_size < 1, "--batch-size must be positive"),
                         (args.workers is not None and args.workers < 1, "--workers must be positive")]:
        if bad:
            return message
    return None


def plan(sources: list[Source], models: list[tuple[str, str, str]], out_dir: Path, args: argparse.Namespace,
         ) -> tuple[list[Job], list[str]]:
    """The outputs to make for every source and model ((name, style, norm) triples), and a failure line
    for each that cannot be made: two inputs claiming one output, an output that would overwrite an
    input."""
    inputs = {Path(s.path).resolve() for s in sources if s.uri is None}
    jobs, failures, taken = [], [], {}
    for source in sources:
        for name, style, norm in models:
            try:
                fmt = "mp4" if is_video(source.path, args.gif_as_video) else args.format
                target = out_dir / output_path(source.path, source.root, style, norm, fmt, taken)
            except ValueError as exc:
                failures.append(str(exc))
                continue
            if target.resolve() in inputs:
                failures.append(f"{source}: output would overwrite an input; choose another --out")
            else:
                jobs.append(Job(source, name, target))
    return jobs, failures


def stylize_file(source: Source, target: Path, stylizer: Stylizer, args: argparse.Namespace) -> None:
    """One file through one model to ``target``, written atomically (a failed save leaves nothing).
    Raises ImageError/VideoError with a one-line reason, OSError/RuntimeError for the rest."""
    if is_video(source.path, args.gif_as_video):
        if source.uri is not None:
            raise VideoError(f"{source}: clips are read from local paths only")
        stylize_clip_file(Path(source.path), target, stylizer, args)
        return
    img, alpha = open_image(source.open())
    out = stylizer(img, strength=args.strength, preserve_color=args.preserve_color, max_size=args.max_size,
                   alpha=alpha)
    if args.format == "jpg":
        out = out.convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(target) as tmp:
        out.save(tmp, FORMATS[args.format], quality=args.quality)


def failure_line(source: Source, exc: Exception) -> str:
    """A failure as one line: the reason of ours as it is, anything else after the file's name."""
    return str(exc) if isinstance(exc, (ImageError, VideoError)) else f"{source}: {exc}"


def stylize_here(jobs: list[Job], stylizers: dict[str, Stylizer], args: argparse.Namespace) -> list[str]:
    """The local engine: every job in this process, with a progress bar; the failure lines."""
    failures = []
    for job in tqdm(jobs, desc="stylizing", unit="img"):
        try:
            stylize_file(job.source, job.target, stylizers[job.model], args)
        except (ImageError, VideoError, OSError, RuntimeError) as exc:  # e.g. out of memory: report, keep going
            failures.append(failure_line(job.source, exc))
    return failures


def run(args: argparse.Namespace) -> int:
    if problem := check_options(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        stylizers = [Stylizer.load(w, device=args.device) for w in args.weights]
        sources = collect(args.inputs, args.recursive)
    except (ValueError, CheckpointError) as exc:  # SourceError and unknown weights are ValueErrors
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
    models = [(s.name, s.meta["style"], s.meta["norm"]) for s in stylizers]
    jobs, refused = plan(sources, models, out_dir, args)
    skip = args.skip_existing or args.engine == "ray"  # on Ray, a rerun resumes where a stopped run ended
    todo = [job for job in jobs if not (skip and job.target.exists())]
    if args.engine == "ray":
        from stylenet.ray_stylize import stylize_on_ray

        failed = stylize_on_ray(todo, args)
    else:
        failed = stylize_here(todo, {s.name: s for s in stylizers}, args)
    failures = refused + failed
    for line in failures:
        tqdm.write(f"failed: {line}", file=sys.stderr)
    print(f"done: {len(todo) - len(failed)} written, {len(jobs) - len(todo)} skipped (existing), "
          f"{len(failures)} failed -> {out_dir}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
