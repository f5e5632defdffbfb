"""Stylize files and folders.

    stylenet stylize photos/ --weights starry_night/instance --out out/

Exit code 0 if every file succeeded, 1 if some failed (one line each, with the reason), 2 for
usage errors (bad flags, unknown weights, nothing to do).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from stylenet import cli
from stylenet.checkpoint import CheckpointError
from stylenet.data import IMAGE_SUFFIXES
from stylenet.files import replaced_atomically
from stylenet.images import VECTOR_SUFFIXES, ImageError, open_image
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
EXTRA_SUFFIXES = {".gif", ".bmp", ".tif", ".tiff"} | VECTOR_SUFFIXES  # tried, so they get a reason


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``stylize`` command's flags (``stylenet stylize --help``)."""
    p.add_argument("inputs", nargs="+", help="image files, video clips and/or folders")
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` as ``stylenet stylize`` parses it."""
    return cli.parse_args("stylize", argv)


def is_video(path: Path, gif_as_video: bool) -> bool:
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


def collect(inputs: list[str], recursive: bool) -> list[tuple[Path, Path]]:
    """(file, root) pairs. Files named directly are always tried (their root is their own folder);
    folders contribute image-like files, rooted at the folder so sub-folders can be mirrored.
    A file reached twice is stylized once."""
    found: dict[Path, tuple[Path, Path]] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            pairs = [(p, item) for p in sorted(item.glob(pattern))
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | EXTRA_SUFFIXES | VIDEO_SUFFIXES]
        else:
            pairs = [(item, item.parent)]
        for path, root in pairs:
            found.setdefault(path.resolve(), (path, root))
    return list(found.values())


def output_path(source: Path, root: Path, style: str, norm: str, fmt: str, taken: dict[Path, Path]) -> Path:
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


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.strength <= 1.0:
        print("error: --strength must be between 0 and 1", file=sys.stderr)
        return 2
    if args.max_size is not None and args.max_size < 1:
        print("error: --max-size must be positive", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("error: --batch-size must be positive", file=sys.stderr)
        return 2
    try:
        stylizers = [Stylizer.load(w, device=args.device) for w in args.weights]
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [s.name for s in stylizers]
    if twice := next((n for n in names if names.count(n) > 1), None):
        print(f"error: two --weights are both {twice}; their outputs would replace each other", file=sys.stderr)
        return 2
    files = collect(args.inputs, args.recursive)
    if not files:
        print("error: no input files", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = {f.resolve() for f, _ in files}
    written = skipped = 0
    failures: list[str] = []
    jobs, taken = [], {}
    for path, root in files:
        for stylizer in stylizers:
            try:
                fmt = "mp4" if is_video(path, args.gif_as_video) else args.format
                name = output_path(path, root, stylizer.meta["style"], stylizer.meta["norm"], fmt, taken)
                jobs.append((path, stylizer, out_dir / name))
            except ValueError as exc:
                failures.append(str(exc))
    for path, stylizer, target in tqdm(jobs, desc="stylizing", unit="img"):
        if target.resolve() in inputs:
            failures.append(f"{path}: output would overwrite an input; choose another --out")
            continue
        if args.skip_existing and target.exists():
            skipped += 1
            continue
        try:
            if is_video(path, args.gif_as_video):
                stylize_clip_file(path, target, stylizer, args)
                written += 1
                continue
            img, alpha = open_image(path)
            out = stylizer(img, strength=args.strength, preserve_color=args.preserve_color,
                           max_size=args.max_size, alpha=alpha)
            if args.format == "jpg":
                out = out.convert("RGB")
            with replaced_atomically(target) as tmp:  # a failed save (disk full) leaves nothing behind
                out.save(tmp, FORMATS[args.format], quality=args.quality)
            written += 1
        except (ImageError, VideoError) as exc:
            failures.append(str(exc))
        except (OSError, RuntimeError) as exc:  # e.g. out of memory: report, keep going
            failures.append(f"{path}: {exc}")
    for line in failures:
        tqdm.write(f"failed: {line}", file=sys.stderr)
    print(f"done: {written} written, {skipped} skipped (existing), {len(failures)} failed -> {out_dir}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
