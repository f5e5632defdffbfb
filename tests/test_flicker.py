"""The flicker measurement: exact synthetic motion, warping, and the metric itself."""
from __future__ import annotations

import pytest
import torch

from stylenet.flicker import (
    Camera,
    camera_path,
    flicker,
    render,
    stylize_clip,
    synthetic_clip,
    warp,
)
from stylenet.stylize import Stylizer
from stylenet.temporal import SmoothedStatsNorm

from .conftest import smooth_image


@pytest.fixture
def photo():
    return smooth_image(7, (200, 150))


def test_zero_motion_warps_a_frame_onto_itself():
    frame = torch.rand(3, 24, 32)
    camera = Camera(3.5, 2.0, 0.8)
    warped, visible = warp(frame, camera, camera)
    assert visible.all()
    assert torch.allclose(warped, frame, atol=1e-5)


def test_integer_pan_warps_exactly_and_masks_what_entered():
    """Frames cut from one picture 2 px apart: warping undoes the shift exactly where both saw it."""
    picture = torch.rand(3, 20, 40)
    cameras = [Camera(2.0 * t, 0.0, 1.0) for t in range(4)]
    clip = render(picture, cameras, (30, 20))
    assert torch.allclose(clip[1], picture[:, :, 2:32], atol=1e-5)
    warped, visible = warp(clip[0], cameras[0], cameras[1])
    assert visible[:, :28].all() and not visible[:, 28:].any()  # the last 2 columns are new in frame 1
    assert torch.allclose(warped[:, visible], clip[1][:, visible], atol=1e-5)
    assert flicker(clip, cameras).error < 1e-5
    wrong_way = [Camera(-2.0 * t + 8, 0.0, 1.0) for t in range(4)]
    assert flicker(clip, wrong_way).error > 0.05  # a wrong motion model is not mistaken for a steady clip


@pytest.mark.parametrize("motion", ["pan", "zoom"])
def test_synthetic_motion_is_followed_by_the_warp(photo, motion):
    clip, cameras = synthetic_clip(photo, motion, (64, 48), 6)
    assert clip.shape == (6, 3, 48, 64)
    moving = flicker(clip, cameras)
    unwarped = flicker(clip, [cameras[0]] * len(cameras))  # pretend the camera stood still
    assert moving.error < unwarped.error / 3  # only resampling error is left


def test_static_clip_has_less_flicker_than_a_moving_one(photo, checkpoints):
    static, still = synthetic_clip(photo, "static", (64, 48), 5)
    assert torch.equal(static[0], static[-1])
    moving, cameras = synthetic_clip(photo, "pan", (64, 48), 5)
    for norm in ("batch", "instance"):
        stylizer = Stylizer.load(checkpoints[norm], device="cpu")
        quiet = flicker(stylize_clip(stylizer.forward, static), still)
        busy = flicker(stylize_clip(stylizer.forward, moving), cameras)
        assert quiet.error < 1e-6 and quiet.tone < 1e-6  # a deterministic network on identical frames
        assert busy.error > 100 * max(quiet.error, 1e-9) and busy.tone > quiet.tone


def test_smoothed_statistics_steady_what_did_not_change():
    """IN's mechanism of flicker, at one layer: half of each frame stays, the other half brightens.
    Plain IN renormalizes the steady half too; smoothed statistics change it less, frozen ones not at all."""
    steady = torch.randn(1, 4, 8, 8)
    frames = torch.cat([torch.cat([steady, torch.randn(1, 4, 8, 8) + t], dim=3) for t in range(5)])
    norm = torch.nn.InstanceNorm2d(4, affine=True)

    @torch.no_grad()
    def drift(momentum: float | None) -> float:
        layer = norm if momentum is None else SmoothedStatsNorm(norm, momentum)
        out = torch.cat([layer(frames[t:t + 1]) for t in range(len(frames))])[..., :8]  # the steady half
        return float((out[1:] - out[:-1]).abs().mean())

    assert drift(1.0) == 0.0 < drift(0.9) < drift(0.5) < drift(None)


def test_camera_path_stays_inside_the_photo():
    cameras = camera_path("pan", (300, 200), (64, 48), 10)
    assert all(c.x0 >= 0 and c.x0 + c.scale * 63 <= 299 for c in cameras)
    assert cameras[1].x0 > cameras[0].x0 and cameras[0].scale == cameras[-1].scale
    zoom = camera_path("zoom", (300, 200), (64, 48), 10)
    assert zoom[-1].scale < zoom[0].scale
    with pytest.raises(ValueError, match="leaves the photo"):
        camera_path("pan", (70, 50), (64, 48), 200)
    with pytest.raises(ValueError, match="unknown motion 'tilt'"):
        camera_path("tilt", (300, 200), (64, 48), 4)
