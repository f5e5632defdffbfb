"""Stylize files and folders: python scripts/stylize.py photos/ --weights starry_night/instance --out out/

Exit code 0 if every file succeeded, 1 if some failed (one line each, with the reason), 2 for
usage errors (bad flags, unknown weights, nothing to do).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from stylenet.checkpoint import CheckpointError  # noqa: E402
from stylenet.data import IMAGE_SUFFIXES  # noqa: E402
from stylenet.images import VECTOR_SUFFIXES, ImageError, open_image  # noqa: E402
from stylenet.stylize import Stylizer  # noqa: E402

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
EXTRA_SUFFIXES = {".gif", ".bmp", ".tif", ".tiff"} | VECTOR_SUFFIXES  # tried, so they get a reason


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Apply trained styles to photos.")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
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
    return p.parse_args(argv)


def collect(inputs: list[str], recursive: bool) -> list[Path]:
    """Files named directly are always tried; folders contribute image-like files."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            files += sorted(p for p in item.glob(pattern)
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | EXTRA_SUFFIXES)
        else:
            files.append(item)
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0.0 <= args.strength <= 1.0:
        print("error: --strength must be between 0 and 1", file=sys.stderr)
        return 2
    if args.max_size is not None and args.max_size < 1:
        print("error: --max-size must be positive", file=sys.stderr)
        return 2
    try:
        stylizers = [Stylizer.load(w, device=args.device) for w in args.weights]
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = collect(args.inputs, args.recursive)
    if not files:
        print("error: no input files", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = {f.resolve() for f in files}
    written = skipped = 0
    failures: list[str] = []
    jobs = [(f, s) for f in files for s in stylizers]
    for path, stylizer in tqdm(jobs, desc="stylizing", unit="img"):
        target = out_dir / f"{path.stem}_{stylizer.meta['style']}_{stylizer.meta['norm']}.{args.format}"
        if target.resolve() in inputs:
            failures.append(f"{path}: output would overwrite an input; choose another --out")
            continue
        if args.skip_existing and target.exists():
            skipped += 1
            continue
        try:
            img, alpha = open_image(path)
            out = stylizer(img, strength=args.strength, preserve_color=args.preserve_color,
                           max_size=args.max_size, alpha=alpha)
            if args.format == "jpg":
                out = out.convert("RGB")
            tmp = target.with_name(f".{target.name}.part")
            out.save(tmp, FORMATS[args.format], quality=args.quality)
            tmp.replace(target)
            written += 1
        except ImageError as exc:
            failures.append(str(exc))
        except (OSError, RuntimeError) as exc:  # e.g. out of memory: report, keep going
            failures.append(f"{path}: {exc}")
    for line in failures:
        tqdm.write(f"failed: {line}", file=sys.stderr)
    print(f"done: {written} written, {skipped} skipped (existing), {len(failures)} failed -> {out_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
