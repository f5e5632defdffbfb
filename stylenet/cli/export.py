"""Export a trained style for other runtimes.

    stylenet export starry_night/instance --format onnx

The ONNX file takes any height and width of at least 16 px (and any batch size): input ``x`` and
output ``y`` are float32 (N, 3, H, W) RGB in [0, 1] (clamp ``y`` before display). After writing,
the file is run with ONNX Runtime on three sizes, none a multiple of 4, and compared with the
PyTorch model: every pixel must agree within ``TOLERANCE``. Exit code 0 if it does, 1 if not,
2 for bad input (one line).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from stylenet import cli
from stylenet.backends import TOLERANCE, onnx_bytes, ort_session
from stylenet.checkpoint import CheckpointError, load_model
from stylenet.files import replaced_atomically
from stylenet.transformer import MIN_SIZE
from stylenet.weights import FAST, resolve

if TYPE_CHECKING:  # an optional dependency, imported where it is used
    import onnxruntime

CHECK_SIZES = ((257, 255), (301, 199), (130, 422))  # (H, W): odd, tall, wide


@torch.inference_mode()
def max_differences(model: nn.Module, session: onnxruntime.InferenceSession,
                    sizes: tuple[tuple[int, int], ...]) -> dict[tuple[int, int], float]:
    """Max abs difference between ONNX Runtime and PyTorch outputs on a random photo of each size."""
    generator = torch.Generator().manual_seed(0)
    result = {}
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=generator)
        onnx_out = session.run(None, {"x": x.numpy()})[0]
        result[(h, w)] = float(np.abs(onnx_out - model(x).numpy()).max())
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``export`` command's flags (``stylenet export --help``)."""
    p.add_argument("weights", help="checkpoint path or shipped name like starry_night/instance")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", help="file to write (default: STYLE_NORM.onnx, STYLE_NORM_fast.onnx for a slim model, in the current folder)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` as ``stylenet export`` parses it."""
    return cli.parse_args("export", argv)


def run(args: argparse.Namespace) -> int:
    try:
        model, meta = load_model(resolve(args.weights))
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    variant = f"_{FAST}" if "distill" in meta else ""  # a slim student's file apart from its teacher's
    out = Path(args.out or f"{meta['style']}_{meta['norm']}{variant}.{args.format}")
    if out.suffix != f".{args.format}":
        print(f"error: --out must end in .{args.format}", file=sys.stderr)
        return 2
    model = model.eval().float()
    data = onnx_bytes(model)
    described = f"{len(data) / 1e6:.1f} MB, {meta['style']}/{meta['norm']}, input x: N x 3 x H x W, H, W >= {MIN_SIZE}"
    try:
        session = ort_session(data)
    except ImportError:
        write(out, data)
        print(f"wrote {out} ({described})")
        print("onnxruntime is not installed: the check against PyTorch was skipped (pip install onnxruntime)")
        return 0
    worst = 0.0
    for (h, w), diff in max_differences(model, session, CHECK_SIZES).items():
        print(f"  {h}x{w}: max abs difference to PyTorch {diff:.2e}")
        worst = max(worst, diff)
    if worst > TOLERANCE:
        print(f"check: OVER the tolerance of {TOLERANCE:g}; nothing written")
        return 1
    write(out, data)
    print(f"check: within the tolerance of {TOLERANCE:g}\nwrote {out} ({described})")
    return 0


def write(out: Path, data: bytes) -> None:
    """Write aside and rename: ``out`` is either the whole checked file or untouched."""
    with replaced_atomically(out) as tmp:
        tmp.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
