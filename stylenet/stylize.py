"""Inference: a loaded checkpoint turns a PIL photo into a stylized PIL photo of the same size.

Speed-ups applied once at load time (measured in ``scripts/bench.py``): BatchNorm folded into the
preceding conv (BN at eval is a fixed affine map), the upsampling and output convs computed at half
resolution on the CPU (``stylenet.subpixel``), channels_last memory layout (with instance norms
that compute it without copies, ``ImageInstanceNorm``), inference mode,
and bfloat16 weights and activations where the CPU computes bf16 natively (AVX512-BF16/AMX) or on
a GPU. bf16 changes pixels by well under 1/255 on average; pass ``precision="fp32"`` to opt out.
Which code then runs it (eager PyTorch, ONNX Runtime, torch.compile) is measured per machine and
size class, or asked for: ``stylenet.backends``.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .backends import Backend, default_backend
from .checkpoint import load_model
from .images import limit_size
from .norms import instance_norm_like, replace_norms
from .runtime import pick_device, pick_dtype, to_pil, to_tensor
from .subpixel import pays_on, rearrange_convs
from .tiling import run_tiled
from .transformer import ConvLayer
from .weights import FAST, WEIGHTS_DIR, resolve

TILE_ABOVE_PIXELS = 1536 * 1536  # larger inputs run tiled, keeping peak memory bounded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``norm`` BatchNorm2d into its sibling ``conv`` (a ConvLayer's named
    pair): BN at eval time is a fixed per-channel affine map, so one conv computes both."""
    for layer in model.modules():
        if isinstance(layer, ConvLayer) and isinstance(layer.norm, nn.BatchNorm2d):
            layer.conv = fuse_conv_bn_eval(layer.conv, layer.norm)
            layer.norm = nn.Identity()
    return model


class ImageInstanceNorm(nn.InstanceNorm2d):
    """An affine ``nn.InstanceNorm2d`` that computes a channels_last input image by image, as the batch norm
    (training mode, no running statistics) of a batch of that one image: the same statistics, over each
    channel's H x W, by PyTorch's channels_last batch-norm kernel. The stock CPU instance norm reshapes
    its input into one image of N*C channels, which for channels_last is a full copy, and returns NCHW for
    the next convolution to reorder again: on 2 cores without bf16 that made the optimized IN network
    slower than the plain NCHW one (docs/benchmarks.md). Other layouts, ONNX export and torch.compile
    take the stock path, so exported and compiled graphs keep the standard operator.

    The statistics are summed in fp32 in another order than the stock kernel's: outputs differ from it
    by about 1e-4 on average and up to about 1e-3 at 1024 px (in [0, 1] pixels; one 8-bit level is 0.004).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or torch.onnx.is_in_onnx_export()
                or torch.compiler.is_compiling()):
            return super().forward(x)
        images = [F.batch_norm(image, None, None, self.weight, self.bias, True, 0.0, self.eps) for image in x.split(1)]
        return images[0] if len(images) == 1 else torch.cat(images)

    @classmethod
    def like(cls, norm: nn.InstanceNorm2d) -> ImageInstanceNorm:
        """The same layer (its own parameter tensors) computing as above."""
        return instance_norm_like(cls, norm)


def keep_colors(photo: Image.Image, styled: Image.Image) -> Image.Image:
    """The styled image's luminance with the photo's chroma: the style's strokes, the photo's colours."""
    _, cb, cr = photo.convert("YCbCr").split()
    return Image.merge("YCbCr", (styled.convert("YCbCr").getchannel("Y"), cb, cr)).convert("RGB")


def restyle(photo: Image.Image, styled: Image.Image, strength: float = 1.0, preserve_color: bool = False) -> Image.Image:
    """A full-strength result made into what ``Stylizer(photo, strength, preserve_color)`` returns (up to
    rounding) without running the network again: the app's strength and colour controls reuse the
    outputs they already have."""
    check_strength(strength)
    out = Image.blend(photo, styled, strength)
    return keep_colors(photo, out) if preserve_color else out


def check_strength(strength: float) -> None:
    """Refuse a style strength outside [0, 1] (0 = the photo, 1 = full style) before any work."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")


class Stylizer:
    """One trained style, ready to apply. Load with ``Stylizer.load("starry_night/instance")``.

    It optimizes its own copy of ``model`` (folding and casting work in place), so the caller's
    model, which may be shared with other requests, is never changed. ``backend`` is "auto", "eager",
    "compiled", "onnx" or "onnx-int8" (default: ``$STYLENET_BACKEND``, else "auto"; see ``stylenet.backends``).
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], device: torch.device, optimize: bool = True,
                 precision: str = "auto", backend: str | None = None) -> None:
        self.meta, self.device = meta, device
        self.dtype = pick_dtype(precision, device) if optimize else torch.float32
        model = copy.deepcopy(model).eval().to(device)
        if optimize:
            model = fold_batchnorm(model)
            if pays_on(device):
                rearrange_convs(model)
            model = model.to(memory_format=torch.channels_last, dtype=self.dtype)
            replace_norms(model, ImageInstanceNorm.like, kinds=(nn.InstanceNorm2d,))
        self._model = model
        self.backend = Backend(model, backend or default_backend(), meta["norm"], device)
        self.channels_last = optimize

    @classmethod
    def load(cls, ref: str | Path, device: str = "auto", weights_dir: Path = WEIGHTS_DIR,
             optimize: bool = True, precision: str = "auto", backend: str | None = None) -> Stylizer:
        dev = pick_device(device)
        model, meta = load_model(resolve(ref, weights_dir))
        return cls(model, meta, dev, optimize, precision, backend)

    @property
    def model(self) -> nn.Module:
        """The optimized network, as eager PyTorch runs it (tiled photos always run it so)."""
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:
        """A network swapped in (``temporal.stabilized`` swaps in one that smooths statistics over
        frames) runs eagerly: another backend's runner was made from the old network, and measuring
        would run one with per-frame state more often than asked."""
        self._model = model
        self.backend = Backend(model, "eager", self.meta["norm"], self.device)

    @property
    def variant(self) -> str:
        """``"fast"`` for a slim student of a trained model (its metadata says how it was distilled), else ``"full"``."""
        return FAST if "distill" in self.meta else "full"

    @property
    def name(self) -> str:
        """The manifest name: ``style/norm``, or ``style/norm/fast`` for a slim student."""
        return f"{self.meta['style']}/{self.meta['norm']}" + (f"/{FAST}" if self.variant == FAST else "")

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> same shape; tiled above ``TILE_ABOVE_PIXELS``, one image at a
        time (tiling's whole-image statistics are per image, taken by the eager network), else on
        ``self.backend``."""
        x = x.to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if x.shape[-2] * x.shape[-1] > TILE_ABOVE_PIXELS:
            return torch.cat([run_tiled(self.model, image.unsqueeze(0)).float() for image in x])
        return self.backend(x).float()

    def blend(self, x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """(N, 3, H, W) photos in [0, 1] -> their stylized images clamped to [0, 1], on the CPU, mixed
        with the photos by ``strength`` (at 0 the network does not run)."""
        check_strength(strength)
        if strength == 0:
            return x.to("cpu", torch.float32, copy=True)
        styled = self.forward(x).cpu().clamp(0, 1)
        return styled if strength == 1 else strength * styled + (1 - strength) * x.float().cpu()

    def __call__(self, img: Image.Image, strength: float = 1.0, preserve_color: bool = False,
                 max_size: int | None = None, alpha: Image.Image | None = None) -> Image.Image:
        """Stylize an RGB image. ``strength`` blends with the photo (0 = photo, 1 = full style);
        ``preserve_color`` keeps the photo's chroma and takes only luminance from the style;
        ``alpha`` (as returned by ``images.open_image``) is re-attached to the result."""
        check_strength(strength)
        photo = limit_size(img.convert("RGB"), max_size)
        out = photo.copy() if strength == 0 else to_pil(self.blend(to_tensor(photo).unsqueeze(0), strength))
        if preserve_color:
            out = keep_colors(photo, out)
        if alpha is not None:
            out.putalpha(limit_size(alpha, max_size).resize(out.size))
        return out

    def timed(self, img: Image.Image, **options: Any) -> tuple[Image.Image, float]:
        """The stylized image and the seconds it took (for the app's per-model timings)."""
        start = time.perf_counter()
        out = self(img, **options)
        return out, time.perf_counter() - start
