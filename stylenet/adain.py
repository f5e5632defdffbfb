"""Arbitrary style transfer with adaptive instance normalization (Huang & Belongie 2017).

One decoder serves every painting, including paintings it never saw: the frozen Oxford VGG19 encodes
the photo and the painting up to relu4_1, ``adain`` gives the photo's features the painting's
per-channel mean and std, and the decoder paints the result back into pixels. Style strength (alpha),
interpolation between paintings and whole-image statistics for tiled large photos all happen on the
relu4_1 features, where the style is nothing but a mean and a std per channel.

Checkpoints use the project's format (safetensors + JSON metadata, never pickles; checkpoint.py) with
their own ``kind``s: the shipped decoder (fp16) and a training state (fp32 decoder + Adam + RNGs).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, safe_open
from torch import nn

from . import paths
from .checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, read_raw_metadata
from .images import ImageError, limit_size
from .runtime import pick_device, to_pil, to_tensor
from .stylize import TILE_ABOVE_PIXELS, check_strength, keep_colors, restyle
from .tiling import Tile
from .vgg import STYLE_LAYERS, VGGFeatures

ENCODER_LAYER = "relu4_1"  # where AdaIN works; the deepest of STYLE_LAYERS
DOWNSCALE = 8  # relu4_1 is after three 2x2 max-pools
# Huang & Belongie's decoder: relu4_1's 512 channels, then 256, 128 and 64 at width 1.0.
DECODER_CHANNELS = (256, 128, 64)
# Style weight against content weight 1. The losses are raw MSEs of Caffe-scale VGG features (inputs
# 0-255), so the paper's lambda = 10 (for its rescaled VGG) does not carry over; this default makes the
# two terms equal at initialization. Measured (untrained decoder, seed 0, 8 training photos x 8
# paintings at 256 px, weight 1): content 2.80e6 vs style 2.06e6 at width 1.0, 4.80e6 vs 3.92e6 at
# width 0.5, and 4.11e6 vs 2.94e6 on the first step of a width-1.0 run: style x 1.4 balances them.
STYLE_WEIGHT = 1.4
EPS = 1e-5
TILE = 512  # pixels per tile core above TILE_ABOVE_PIXELS
# Context kept around every tile core, in pixels, a multiple of DOWNSCALE. Encoder and decoder run as
# separate tiled passes, so it must exceed each one's receptive radius: relu4_1 sees 34 px either
# way, a decoder pixel 38 px (2 + 2x2 + 4x4 + 8, plus nearest-upsampling rounding). Measured on a
# 136x200 image in 64 px cores: margin 8 is 61% off, 32 px 3e-6, 64 px exact.
MARGIN = 64
# The smallest photo side: the decoder's reflection padding needs relu4_1 features at least 2 cells wide.
MIN_PHOTO_SIDE = 2 * DOWNSCALE
STYLE_SCALES = (64, 2048)  # allowed long sides of a painting at encoding
STYLE_SCALE = 512  # the default: the painting's long side at encoding
DECODER_FILE = "adain_decoder.safetensors"  # the shipped decoder, in the weights folder beside the manifest


def channel_stats(feat: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel: mean and std over the spatial positions, shaped (N, C, 1, 1)."""
    var, mean = torch.var_mean(feat, dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def adain_with_stats(content_feat: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     eps: float = EPS) -> torch.Tensor:
    """Normalize ``content_feat`` per image and channel, then scale by ``std`` and shift by ``mean``."""
    c_mean, c_std = channel_stats(content_feat, eps)
    return (content_feat - c_mean) / c_std * std + mean


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Adaptive instance normalization: the content's features with the style's per-channel statistics.

    It is instance normalization whose affine scale and shift are not learnt but taken from the
    painting: its per-channel std and mean. Instance norm removes an image's own feature statistics,
    which is where its style lives (Huang & Belongie; the IN argument of this project's README), so
    swapping in a painting's statistics swaps in its style, for any painting, with no training per style.
    Content and style may differ in size; batches pair up image by image (or broadcast from one).
    """
    return adain_with_stats(content_feat, *channel_stats(style_feat, eps), eps)


def blend_stats(stats: Sequence[tuple[torch.Tensor, torch.Tensor]],
                weights: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolation between paintings: the paper's sum of weighted AdaIN targets, with the weights
    scaled to sum to 1. AdaIN is affine in (mean, std), so that sum equals AdaIN with the weighted
    mean and std, which is what this returns (and what lets tiled decoding use one set of statistics)."""
    if len(stats) != len(weights) or not stats:
        raise ValueError("give one weight per painting, and at least one painting")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"painting weights must be >= 0 and not all 0, got {list(weights)}")
    total = float(sum(weights))
    mean = sum(w / total * m for w, (m, _) in zip(weights, stats))
    std = sum(w / total * s for w, (_, s) in zip(weights, stats))
    return mean, std


def encoder(layers: tuple[str, ...] = (ENCODER_LAYER,)) -> VGGFeatures:
    """The frozen Oxford VGG19 up to relu4_1 (never random weights): takes RGB in [0, 1]."""
    return VGGFeatures.oxford(layers)


def reflect_conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]


class Decoder(nn.Module):
    """The encoder's mirror: relu4_1 features -> RGB, nearest upsampling, reflection padding, ReLU
    (no norm layers: a norm would undo the statistics AdaIN just set). ``width`` scales every
    channel count but the input's 512; 1.0 is Huang & Belongie's 512-256-128-64 decoder."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        if not 0 < width <= 4 or round(DECODER_CHANNELS[-1] * width) < 1:
            raise ValueError(f"decoder width must be in (0, 4], got {width}")
        self.width = float(width)
        c4, c2, c1 = (max(1, round(c * width)) for c in DECODER_CHANNELS)
        relu, up = nn.ReLU, lambda: nn.Upsample(scale_factor=2, mode="nearest")
        layers = [*reflect_conv(512, c4), relu(), up()]  # relu4_1 -> the 1/4 scale
        for _ in range(3):
            layers += [*reflect_conv(c4, c4), relu()]
        layers += [*reflect_conv(c4, c2), relu(), up(),  # block 3 (mirror) -> 1/2
                   *reflect_conv(c2, c2), relu(), *reflect_conv(c2, c1), relu(), up(),  # block 2 -> 1/1
                   *reflect_conv(c1, c1), relu(), *reflect_conv(c1, 3)]  # block 1 -> RGB
        self.net = nn.Sequential(*layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """(N, 512, h, w) -> (N, 3, 8h, 8w), RGB in about [0, 1] (unclamped, as trained)."""
        return self.net(feat)


def style_loss(out_feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Huang & Belongie: over relu1_1..relu4_1, MSE of the channel means plus MSE of the channel stds."""
    total = torch.zeros((), device=next(iter(out_feats.values())).device)
    for name in STYLE_LAYERS:
        (om, os), (sm, ss) = channel_stats(out_feats[name]), channel_stats(style_feats[name])
        total = total + F.mse_loss(om, sm) + F.mse_loss(os, ss)
    return total


def losses(vgg: VGGFeatures, decoder: Decoder, photos: torch.Tensor, paintings: torch.Tensor,
           style_weight: float = STYLE_WEIGHT, content_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """One training batch (pairs of photo and painting crops, RGB in [0, 1]) -> weighted content,
    style and total loss. ``vgg`` must return STYLE_LAYERS. Content: the output's relu4_1 against
    the AdaIN target t (not the photo's features), as in the paper."""
    with torch.no_grad():
        style_feats = vgg(paintings)
        target = adain(vgg(photos, upto=ENCODER_LAYER)[ENCODER_LAYER], style_feats[ENCODER_LAYER])
    out_feats = vgg(decoder(target))
    content = content_weight * F.mse_loss(out_feats[ENCODER_LAYER], target)
    style = style_weight * style_loss(out_feats, style_feats)
    return {"content": content, "style": style, "total": content + style}


# -- checkpoints ------------------------------------------------------------------------------------

MODEL_KIND, STATE_KIND = "adain_decoder", "adain_train_state"


def read_adain_metadata(path: Path, kind: str = MODEL_KIND) -> dict[str, Any]:
    """The JSON metadata of an AdaIN decoder or training-state file; refuses pickles and other files
    with one line, before any tensor is read."""
    meta = read_raw_metadata(path)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: not an AdaIN {'decoder' if kind == MODEL_KIND else 'training state'} file")
    if type(meta.get("width")) is not float or not 0 < meta["width"] <= 4:
        raise CheckpointError(f"{path}: bad decoder width in metadata")
    return meta


def load_decoder_tensors(path: Path, meta: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """The decoder's fp32 weights, after checking names and shapes from the header against the
    network the metadata describes (built on the meta device, so a crafted file allocates nothing)."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in Decoder(meta["width"]).state_dict().items()}
    with safe_open(str(path), "pt") as f:
        shapes = {k[len(prefix):]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118 - not a dict
    if shapes != {k: tuple(v) for k, v in expected.items()}:
        raise CheckpointError(f"{path}: tensors do not match a width-{meta['width']} AdaIN decoder")
    return {k[len(prefix):]: v.float() for k, v in load_file(str(path)).items() if k.startswith(prefix)}


def save_decoder(decoder: Decoder, meta: dict[str, Any], path: Path, half: bool = True) -> None:
    """Ship a decoder: its weights only (fp16 by default: half the size, inference runs in fp32)."""
    state = {k: v.half() if half else v for k, v in decoder.state_dict().items()}
    atomic_save(state, {**meta, "format": FORMAT, "version": VERSION, "kind": MODEL_KIND,
                        "width": decoder.width}, path)


def shipped_decoder(weights_dir: Path | None = None) -> Path | None:
    """The shipped decoder (``DECODER_FILE`` in the weights folder, default ``paths.weights_dir()``), or
    None while none is shipped. Found by its fixed name: the manifest describes it (``build_manifest``)
    but lists only the per-style models, which the app and ``style/norm`` names read."""
    path = Path(weights_dir or paths.weights_dir()) / DECODER_FILE
    return path if path.is_file() else None


def load_decoder(path: Path) -> tuple[Decoder, dict[str, Any]]:
    meta = read_adain_metadata(path)
    decoder = Decoder(meta["width"])
    decoder.load_state_dict(load_decoder_tensors(path, meta))
    return decoder.eval(), meta


def save_train_state(decoder: Decoder, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                     meta: dict[str, Any], path: Path) -> None:
    """Everything an exact resume needs: fp32 decoder, Adam's moments (param_groups in the JSON), RNGs."""
    tensors = {f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        tensors |= {f"optim.{idx}.{key}": torch.as_tensor(value) for key, value in state.items()}
    tensors |= {"rng.data": generator.get_state(), "rng.torch": torch.get_rng_state()}
    atomic_save(tensors, {**meta, "format": FORMAT, "version": VERSION, "kind": STATE_KIND,
                          "width": decoder.width, "param_groups": opt["param_groups"]}, path)


def load_train_state(path: Path, decoder: Decoder, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> dict[str, Any]:
    """Restore decoder, Adam and both RNGs in place; returns the metadata (step, recipe, hold-outs)."""
    meta = read_adain_metadata(path, STATE_KIND)
    if meta["width"] != decoder.width:
        raise CheckpointError(f"{path}: a width-{meta['width']} decoder, not {decoder.width}")
    decoder.load_state_dict(load_decoder_tensors(path, meta, "decoder."))
    tensors = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta


# -- inference --------------------------------------------------------------------------------------

Painting = Image.Image | Sequence[tuple[Image.Image, float]]


def to_cells(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) padded at the bottom and right, by repeating the last rows and columns (as
    tiling.py does), to whole relu4_1 cells: multiples of DOWNSCALE."""
    return F.pad(x, (0, -x.shape[-1] % DOWNSCALE, 0, -x.shape[-2] % DOWNSCALE), mode="replicate")


def pixel_tiles(height: int, width: int, tile: int, margin: int) -> list[Tile]:
    """Tiles whose cores of about ``tile`` pixels partition a ``height`` x ``width`` image (both
    multiples of DOWNSCALE), each crop its core plus ``margin`` within the image. Every boundary is
    a multiple of DOWNSCALE, so each crop's max-pools sample the whole image's grid."""
    def axis(length: int) -> list[tuple[slice, slice]]:
        cells, count = length // DOWNSCALE, math.ceil(length / tile)
        bounds = [round(cells * i / count) * DOWNSCALE for i in range(count + 1)]
        return [(slice(max(0, a - margin), min(length, b + margin)), slice(a, b)) for a, b in itertools.pairwise(bounds)]
    return [Tile(cr, cc, kr, kc) for cr, kr in axis(height) for cc, kc in axis(width)]


def check_photo_size(photo: Image.Image) -> None:
    """ImageError (one line) for a photo the decoder cannot paint: under MIN_PHOTO_SIDE on a side."""
    if min(photo.size) < MIN_PHOTO_SIDE:
        raise ImageError(f"the photo is {photo.width}x{photo.height} px: too small to paint (at least "
                         f"{MIN_PHOTO_SIDE} px on each side)")


class AdaINStylizer:
    """Any painting onto any photo with one trained decoder. ``AdaINStylizer.load(path)`` loads a
    decoder file; the encoder is always the Oxford VGG19 (its weights must be installed)."""

    def __init__(self, decoder: Decoder, meta: dict[str, Any] | None = None, device: str = "auto",
                 vgg: VGGFeatures | None = None) -> None:
        self.device = pick_device(device)
        self.meta = meta or {}
        # channels_last: oneDNN convolutions without layout reorders (measured 10-15% faster here)
        self.decoder = decoder.eval().to(self.device, memory_format=torch.channels_last)
        self.vgg = (vgg or encoder()).to(self.device, memory_format=torch.channels_last)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> AdaINStylizer:
        decoder, meta = load_decoder(Path(path))
        return cls(decoder, meta, device)

    def encode(self, x: torch.Tensor, tile: int = TILE, margin: int = MARGIN) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1], H and W multiples of DOWNSCALE -> relu4_1 (1, 512, H/8, W/8). Above
        TILE_ABOVE_PIXELS tile by tile, each core with ``margin`` pixels of context: the same features."""
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        if x.shape[-2] * x.shape[-1] <= TILE_ABOVE_PIXELS:
            return self.vgg(x, upto=ENCODER_LAYER)[ENCODER_LAYER]
        feat = torch.empty(1, 512, x.shape[-2] // DOWNSCALE, x.shape[-1] // DOWNSCALE, device=self.device)
        for t in pixel_tiles(*x.shape[-2:], tile, margin):
            out = self.vgg(x[..., t.crop_rows, t.crop_cols], upto=ENCODER_LAYER)[ENCODER_LAYER]
            feat[..., t.core_rows.start // DOWNSCALE:t.core_rows.stop // DOWNSCALE,
                 t.core_cols.start // DOWNSCALE:t.core_cols.stop // DOWNSCALE] = t.core_of(out)
        return feat

    def decode(self, feat: torch.Tensor, tile: int = TILE, margin: int = MARGIN) -> torch.Tensor:
        """relu4_1 (1, 512, h, w) -> (1, 3, 8h, 8w) on the CPU; tiled like ``encode``. The features
        already carry the whole image's AdaIN statistics, so tiles agree and leave no seams."""
        height, width = feat.shape[-2] * DOWNSCALE, feat.shape[-1] * DOWNSCALE
        if height * width <= TILE_ABOVE_PIXELS:
            return self.decoder(feat).float().cpu()
        out = torch.empty(1, 3, height, width)
        for t in pixel_tiles(height, width, tile, margin):
            crop = feat[..., t.crop_rows.start // DOWNSCALE:t.crop_rows.stop // DOWNSCALE,
                        t.crop_cols.start // DOWNSCALE:t.crop_cols.stop // DOWNSCALE]
            out[..., t.core_rows, t.core_cols] = t.core_of(self.decoder(crop)).float().cpu()
        return out

    def painting_stats(self, painting: Image.Image, style_scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """relu4_1 channel mean and std of the painting resized so its long side is ``style_scale``:
        a smaller painting at encoding means bigger strokes on the photo."""
        if not STYLE_SCALES[0] <= style_scale <= STYLE_SCALES[1]:
            raise ValueError(f"style_scale must be {STYLE_SCALES[0]} to {STYLE_SCALES[1]} px, got {style_scale}")
        scale = style_scale / max(painting.size)
        img = painting.convert("RGB").resize((max(1, round(painting.width * scale)),
                                              max(1, round(painting.height * scale))), Image.LANCZOS)
        return channel_stats(self.encode(to_cells(to_tensor(img).unsqueeze(0))))

    @torch.inference_mode()
    def style_stats(self, painting: Painting, style_scale: int = STYLE_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
        """The AdaIN target: one painting's relu4_1 mean and std, or the weighted blend of several
        ((image, weight) pairs, weights scaled to sum to 1). Compute once, paint many photos with it."""
        pairs = [(painting, 1.0)] if isinstance(painting, Image.Image) else list(painting)
        return blend_stats([self.painting_stats(img, style_scale) for img, _ in pairs], [w for _, w in pairs])

    @torch.inference_mode()
    def paint(self, photo: Image.Image, stats: tuple[torch.Tensor, torch.Tensor], alpha: float = 1.0,
              preserve_color: bool = False) -> Image.Image:
        """The photo with the target ``stats`` (mean, std) swapped into its relu4_1 features, decoded at
        the photo's size: ``stylize`` with the statistics given rather than read from a painting."""
        check_strength(alpha)
        check_photo_size(photo)
        photo = photo.convert("RGB")
        feat = self.encode(to_cells(to_tensor(photo).unsqueeze(0)))
        target = alpha * adain_with_stats(feat, *stats) + (1 - alpha) * feat
        out = to_pil(self.decode(target)[..., :photo.height, :photo.width].clamp(0, 1))
        return keep_colors(photo, out) if preserve_color else out

    def stylize(self, photo: Image.Image, painting: Painting, alpha: float = 1.0, style_scale: int = STYLE_SCALE,
                preserve_color: bool = False) -> Image.Image:
        """The photo painted in the painting's style, at the photo's size.

        ``painting``: one image, or (image, weight) pairs to interpolate (weights scaled to sum to 1).
        ``alpha``: style strength in feature space, t = alpha * AdaIN + (1 - alpha) * photo features.
        ``style_scale``: the painting's long side at encoding (stroke size). ``preserve_color``: the
        result's luminance with the photo's colours.
        """
        check_strength(alpha)
        check_photo_size(photo)  # before the painting's statistics are computed for nothing
        return self.paint(photo, self.style_stats(painting, style_scale), alpha, preserve_color)


class PaintingStyle:
    """Paintings bound to a decoder and a strength, called like ``stylize.Stylizer``, so the batch code of
    ``stylenet stylize`` (files, folders, output names, one line per bad file) runs AdaIN unchanged.

    ``paintings``: (name, image, weight) triples; the names make the outputs' style part (``a+b``). They
    are encoded once, here, not once per photo. ``alpha`` is AdaIN's strength, in feature space; the
    call's ``strength`` blends the result with the photo in pixels, as for every model.
    """

    def __init__(self, stylizer: AdaINStylizer, paintings: Sequence[tuple[str, Image.Image, float]],
                 alpha: float = 1.0, style_scale: int = STYLE_SCALE) -> None:
        check_strength(alpha)
        self.stylizer, self.feature_alpha = stylizer, alpha
        self.stats = stylizer.style_stats([(img, weight) for _, img, weight in paintings], style_scale)
        self.meta = {"style": "+".join(name for name, _, _ in paintings), "norm": "adain"}
        self.name = f"{self.meta['style']}/adain"

    def __call__(self, img: Image.Image, strength: float = 1.0, preserve_color: bool = False,
                 max_size: int | None = None, alpha: Image.Image | None = None) -> Image.Image:
        """As ``Stylizer.__call__``: ``alpha`` is the photo's transparency, re-attached to the result."""
        photo = limit_size(img.convert("RGB"), max_size)
        out = restyle(photo, self.stylizer.paint(photo, self.stats, self.feature_alpha), strength, preserve_color)
        if alpha is not None:
            out.putalpha(limit_size(alpha, max_size).resize(out.size))
        return out
