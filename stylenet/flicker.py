"""Measuring flicker without optical flow: synthetic camera moves over a still photo.

A clip is rendered by moving a virtual camera over a photo: frame pixel (u, v) shows photo point
(x0 + scale * u, y0 + scale * v). Because that motion is known exactly, any frame can be warped onto
the next one, and what a stylized clip shows beyond the motion is flicker:

    flicker = mean over frames t of  mean |warp(S_t -> t+1) - S_(t+1)|  over pixels visible in both

(the warping error of Lai et al. 2018, with exact instead of estimated motion; [0, 1] pixel units),
and its low-frequency part, the shift of the mean colour ("tone"), which is where IN differs.
The input clip's own figure is the floor set by resampling; a static clip of a deterministic model gives
0 (to float rounding, below 1e-6). Coordinates use ``align_corners=True`` sampling, so pixel (u, v) sits
at u, v and a zero motion warps a frame onto itself.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .runtime import to_tensor

MOTIONS = ("static", "pan", "zoom")
PAN_PX_PER_FRAME = 1.5  # frame pixels per frame: a slow hand-held pan, sub-pixel shifts included
ZOOM_PER_FRAME = 0.01  # 1 % closer every frame
COVER = 0.75  # the first frame shows 75 % of the photo's width/height, leaving room to move


@dataclass(frozen=True)
class Camera:
    """Frame pixel (u, v) sees photo point (x0 + scale * u, y0 + scale * v)."""

    x0: float
    y0: float
    scale: float


def camera_path(motion: str, photo_size: tuple[int, int], frame_size: tuple[int, int],
                frames: int) -> list[Camera]:
    """``frames`` cameras for a ``static``, ``pan`` (left to right) or ``zoom`` (into the centre)
    shot of a photo of ``photo_size`` (width, height) filmed at ``frame_size``."""
    (pw, ph), (w, h) = photo_size, frame_size
    scale = COVER * min((pw - 1) / (w - 1), (ph - 1) / (h - 1))
    cx, cy = (pw - 1) / 2, (ph - 1) / 2
    cameras = []
    for t in range(frames):
        if motion == "static":
            s, dx = scale, 0.0
        elif motion == "pan":
            s, dx = scale, scale * PAN_PX_PER_FRAME * (t - (frames - 1) / 2)
        elif motion == "zoom":
            s, dx = scale * (1 - ZOOM_PER_FRAME) ** t, 0.0
        else:
            raise ValueError(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
        cameras.append(Camera(cx + dx - s * (w - 1) / 2, cy - s * (h - 1) / 2, s))
    if min(c.x0 for c in cameras) < 0 or max(c.x0 + c.scale * (w - 1) for c in cameras) > pw - 1:
        raise ValueError(f"a {motion} of {frames} frames leaves the photo; use fewer frames")
    return cameras


def sample(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a (C, H, W) image at pixel coordinates ``x``, ``y`` (each (h, w))."""
    height, width = image.shape[-2:]
    grid = torch.stack([x / (width - 1) * 2 - 1, y / (height - 1) * 2 - 1], dim=-1)
    return F.grid_sample(image[None].float(), grid[None], mode="bilinear", padding_mode="border",
                         align_corners=True)[0]


def pixel_grid(frame_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    w, h = frame_size
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                          indexing="ij")
    return u, v


def render(photo: torch.Tensor, cameras: list[Camera], frame_size: tuple[int, int]) -> torch.Tensor:
    """The clip, (T, 3, h, w) in [0, 1], that ``cameras`` film of a (3, H, W) photo."""
    u, v = pixel_grid(frame_size)
    return torch.stack([sample(photo, (c.x0 + c.scale * u).float(), (c.y0 + c.scale * v).float())
                        for c in cameras])


def synthetic_clip(photo: Image.Image, motion: str, frame_size: tuple[int, int],
                   frames: int) -> tuple[torch.Tensor, list[Camera]]:
    """A ``motion`` clip of ``photo`` and its cameras. The photo is cropped to the frame's aspect and
    sized so the first frame covers ``COVER`` of it at about one photo pixel per frame pixel, so the
    virtual camera does not alias."""
    w, h = frame_size
    size = (round((w - 1) / COVER) + 1, round((h - 1) / COVER) + 1)
    fitted = to_tensor(ImageOps.fit(photo.convert("RGB"), size, Image.LANCZOS))
    cameras = camera_path(motion, size, frame_size, frames)
    return render(fitted, cameras, frame_size), cameras


def warp(frame: torch.Tensor, src: Camera, dst: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """``frame`` (filmed by ``src``) as ``dst`` would have filmed it, and the (h, w) mask of the pixels
    ``src`` saw at all (the rest entered the picture since)."""
    h, w = frame.shape[-2:]
    u, v = pixel_grid((w, h))
    x = (dst.x0 + dst.scale * u - src.x0) / src.scale  # photo point -> pixel of the source frame
    y = (dst.y0 + dst.scale * v - src.y0) / src.scale
    tolerance = 1e-6
    visible = (x >= -tolerance) & (x <= w - 1 + tolerance) & (y >= -tolerance) & (y <= h - 1 + tolerance)
    return sample(frame, x.float(), y.float()), visible


@dataclass(frozen=True)
class Flicker:
    """Two views of the same warped frame-to-frame difference, each averaged over the clip's frame pairs.

    ``error``: mean |difference| per pixel: everything that does not move with the content, texture
    re-synthesized differently from frame to frame included. ``tone``: |mean difference| per colour
    channel: how much the overall colour and brightness of the same content shift from one frame to
    the next, the part that per-frame normalization statistics cause.
    """

    error: float
    tone: float


def flicker(frames: torch.Tensor, cameras: list[Camera]) -> Flicker:
    """Warping error of a (T, 3, h, w) clip filmed by ``cameras`` (see the module docstring)."""
    errors, tones = [], []
    for t in range(len(frames) - 1):
        warped, visible = warp(frames[t], cameras[t], cameras[t + 1])
        diff = (warped - frames[t + 1].float())[:, visible]  # (3, visible pixels)
        errors.append(float(diff.abs().mean()))
        tones.append(float(diff.mean(1).abs().mean()))
    return Flicker(sum(errors) / len(errors), sum(tones) / len(tones))


def stylize_clip(forward: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor,
                 batch_size: int = 4) -> torch.Tensor:
    """Run ``forward`` (e.g. ``Stylizer.forward``) over a (T, 3, h, w) clip in time-ordered batches,
    as the video path does, so a temporally smoothed model sees the frames in order."""
    return torch.cat([forward(clip[i:i + batch_size]).float().cpu().clamp(0, 1)
                      for i in range(0, len(clip), batch_size)])
