"""Batch stylization, shared by both engines of ``stylenet stylize`` (this process, or Ray actors):
which output each input gets through each model (``plan``), and the work on one file
(``stylize_file``), so names, collisions and a bad file's one-line reason never depend on the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path, PurePath
from typing import Any

from tqdm import tqdm

from .files import replaced_atomically
from .images import ImageError, open_image
from .sources import Source, SourceError
from .stylize import Stylizer
from .temporal import STABILIZERS, stabilized
from .video import DEFAULT_BATCH, VIDEO_SUFFIXES, VideoError, probe, stylize_video

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
FILE_ERRORS = (ImageError, VideoError, SourceError, OSError, RuntimeError)  # one file fails, the batch goes on


@dataclass(frozen=True)
class Options:
    """How every file is stylized and written (the stylize command's flags of the same names)."""

    strength: float = 1.0
    preserve_color: bool = False
    max_size: int | None = None
    format: str = "png"
    quality: int = 92
    batch_size: int = DEFAULT_BATCH  # video: frames per forward pass
    stabilize: str = "none"  # video: none, or one of temporal.STABILIZERS
    gif_as_video: bool = False

    @classmethod
    def of(cls, flags: Any) -> Options:
        """The options among parsed flags (an argparse namespace)."""
        return cls(**{f.name: getattr(flags, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Job:
    """One output to make: which file, through which model (its ``Stylizer.name``), to where."""

    source: Source
    model: str
    target: Path


def is_video(path: PurePath, gif_as_video: bool) -> bool:
    suffix = path.suffix.lower()
    return suffix in VIDEO_SUFFIXES or (gif_as_video and suffix == ".gif")


def output_path(source: PurePath, root: PurePath, style: str, norm: str, fmt: str,
                taken: dict[PurePath, PurePath]) -> PurePath:
    """Where ``source``'s result goes, relative to the output folder, claimed in ``taken`` (output -> input).

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


def plan(sources: list[Source], models: list[tuple[str, str, str]], out_dir: Path,
         options: Options) -> tuple[list[Job], list[str]]:
    """The outputs to make for every source and model ((name, style, norm) triples), with absolute
    targets (an engine's workers may run elsewhere), and a failure line for each output that cannot
    be made: two inputs claiming one output, an output that would overwrite an input."""
    out_dir = out_dir.absolute()
    inputs = {Path(s.path).resolve() for s in sources if s.remote is None}
    jobs, failures, taken = [], [], {}
    for source in sources:
        for name, style, norm in models:
            try:
                fmt = "mp4" if is_video(source.path, options.gif_as_video) else options.format
                target = out_dir / output_path(source.path, source.root, style, norm, fmt, taken)
            except ValueError as exc:
                failures.append(str(exc))
                continue
            if target.resolve() in inputs:
                failures.append(f"{source}: output would overwrite an input; choose another --out")
            else:
                jobs.append(Job(source, name, target))
    return jobs, failures


def stylize_clip_file(path: Path, target: Path, stylizer: Stylizer, options: Options) -> None:
    """One clip through one model, with a progress bar of its own (frames, with ETA)."""
    info = probe(path)
    if options.stabilize != "none":  # a fresh copy per clip: the smoothing remembers the frames it saw
        stylizer = stabilized(stylizer, STABILIZERS[options.stabilize])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=info.estimated_frames, desc=path.name, unit="frame", leave=False) as bar:
        stylize_video(path, target, stylizer, max_size=options.max_size, strength=options.strength,
                      preserve_color=options.preserve_color, batch_size=options.batch_size, info=info,
                      on_frames=bar.update)


def stylize_file(source: Source, target: Path, stylizer: Stylizer, options: Options) -> None:
    """One file through one model to ``target``, written whole or not at all. Raises one of
    ``FILE_ERRORS``; ``failure_line`` turns it into the line the user reads."""
    if is_video(source.path, options.gif_as_video):
        if source.remote is not None:
            raise VideoError(f"{source}: clips are read from local paths only")
        stylize_clip_file(Path(source.path), target, stylizer, options)
        return
    img, alpha = open_image(source.open())
    out = stylizer(img, strength=options.strength, preserve_color=options.preserve_color,
                   max_size=options.max_size, alpha=alpha)
    if options.format == "jpg":
        out = out.convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(target) as tmp:
        out.save(tmp, FORMATS[options.format], quality=options.quality)


def attempt(job: Job, stylizer: Stylizer, options: Options) -> str | None:
    """``stylize_file`` for one job, as either engine runs it: None when it was written, else the
    failure line (one file fails, the batch goes on)."""
    try:
        stylize_file(job.source, job.target, stylizer, options)
    except FILE_ERRORS as exc:  # e.g. out of memory: report, keep going
        return failure_line(job.source, exc)
    return None


def failure_line(source: Source, exc: Exception) -> str:
    """A failure as one line: a reason of ours as it is where it names the file, anything else after the file's name."""
    text = str(exc)
    named = isinstance(exc, (ImageError, VideoError, SourceError)) and str(source) in text
    return text if named else f"{source}: {text}"
