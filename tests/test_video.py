"""Video: tiny generated clips through the CLI and the library; temporal smoothing; the webcam handler."""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.stylize import Stylizer
from stylenet.temporal import SmoothedStatsNorm, stabilized
from stylenet.video import (
    VideoError,
    VideoLimits,
    even_size,
    probe,
    stylize_frames,
    stylize_video,
)

from .conftest import ROOT, smooth_image


def make_clip(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), fps: Fraction = Fraction(12),
              audio: bool = True, video: bool = True, rotation: int = 0) -> Path:
    """A small H.264 clip of moving colour, with a 440 Hz AAC tone as long as the video."""
    with av.open(str(path), "w", format="mp4") as container:
        if video:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            if rotation:
                stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=16000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i in range(frames if video else 0):
            rgb = np.asarray(smooth_image(i % 3, size)).copy()
            rgb[:, : 4 * i % size[0]] //= 2
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        if video:
            container.mux(stream.encode(None))
        if sound is not None:
            t = np.arange(int(16000 * frames / fps)) / 16000
            tone = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                              format="flt", layout="mono")
            tone.sample_rate, tone.pts = 16000, 0
            container.mux(sound.encode(tone))
            container.mux(sound.encode(None))
    return path


def read_clip(path: Path) -> dict:
    """Frame count, rate, size and the raw audio packets of a clip."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        info = {"frames": frames, "fps": stream.average_rate, "size": (stream.width, stream.height),
                "codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt}
    with av.open(str(path)) as container:
        info["audio"] = [bytes(p) for p in container.demux(audio=0) if p.size] if container.streams.audio else []
    return info


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "stylize.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_cli_keeps_frames_rate_and_audio_and_goes_on_after_bad_clips(tmp_path, checkpoints):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "walk.mp4", frames=7, size=(66, 50), fps=Fraction(30000, 1001))
    data = make_clip(tmp_path / "whole.mp4").read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) // 2])  # truncated: the index at the end is gone
    make_clip(src / "voice.mp4", video=False)  # audio only
    smooth_image(1).save(src / "photo.jpg")
    out = tmp_path / "out"
    result = run_cli(src, "--weights", checkpoints["batch"], "--weights", checkpoints["instance"], "--out", out,
                     "--max-size", 41, "--batch-size", 3, "--stabilize", "ema", "--device", "cpu")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 4  # two bad clips x two models, one line each
    assert sum("cut.mp4: not a readable video" in line for line in failed) == 2
    assert sum("voice.mp4: no video stream" in line for line in failed) == 2
    assert "done: 4 written" in result.stdout
    original = read_clip(src / "walk.mp4")
    for norm in ("batch", "instance"):
        clip = read_clip(out / f"walk_stripes_{norm}.mp4")
        assert clip["frames"] == 7 and clip["fps"] == Fraction(30000, 1001)
        assert clip["size"] == (40, 30)  # --max-size per frame (41 x 31), then even for yuv420p
        assert (clip["codec"], clip["pix_fmt"]) == ("h264", "yuv420p")
        assert clip["audio"] == original["audio"] and len(clip["audio"]) > 3  # copied packet for packet
    assert (out / "photo_stripes_batch.png").is_file()
    assert not list(out.glob(".*part"))  # nothing half-written left behind


def test_gif_is_a_video_only_when_asked(tmp_path, checkpoints):
    gif = tmp_path / "anim.gif"
    frames = [smooth_image(i, (32, 24)) for i in range(4)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out"
    assert run_cli(gif, "--weights", checkpoints["batch"], "--out", out, "--device", "cpu").returncode == 0
    assert (out / "anim_stripes_batch.png").is_file()
    result = run_cli(gif, "--weights", checkpoints["batch"], "--out", out, "--device", "cpu", "--gif-as-video")
    assert result.returncode == 0, result.stderr
    clip = read_clip(out / "anim_stripes_batch.mp4")
    assert clip["frames"] == 4 and clip["fps"] == 10 and clip["audio"] == []


def test_clear_errors_for_bad_clips(tmp_path):
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"definitely not a movie" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    long_clip = make_clip(tmp_path / "long.mp4", frames=12, fps=Fraction(4))  # 3 s
    expected = {junk: "junk.mov: not a readable video", empty: "empty.mp4: empty file",
                tmp_path / "gone.mp4": "gone.mp4: no such file",
                make_clip(tmp_path / "voice.mp4", video=False): "voice.mp4: no video stream",
                long_clip: "long.mp4: 3.0 s long, over the limit of 2 s"}
    for path, message in expected.items():
        with pytest.raises(VideoError, match=message):
            probe(path, VideoLimits(max_seconds=2))
    with pytest.raises(VideoError, match="64x48 frames are over the limit of 1,000 pixels"):
        probe(long_clip, VideoLimits(max_pixels=1000))


def test_truncated_stream_is_refused_and_leaves_no_file(tmp_path, checkpoints):
    """moov first ("faststart"), data cut: the header promises more frames than can be decoded."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0)
        for i in range(24):
            frame = av.VideoFrame.from_ndarray(noise.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    stylizer = Stylizer.load(checkpoints["batch"], device="cpu")
    with pytest.raises(VideoError, match=r"cut.mp4: truncated or corrupt video \(decoded \d+ of 24 frames\)"):
        stylize_video(cut, tmp_path / "out.mp4", stylizer)
    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


def test_rotated_phone_clip_comes_out_upright(tmp_path, checkpoints):
    src = make_clip(tmp_path / "phone.mp4", frames=3, size=(64, 48), rotation=-90, audio=False)
    info = probe(src)
    assert (info.width, info.height, info.rotation) == (48, 64, -90)
    stylize_video(src, tmp_path / "out.mp4", Stylizer.load(checkpoints["batch"], device="cpu"))
    assert read_clip(tmp_path / "out.mp4")["size"] == (48, 64)


def test_frames_match_the_photo_path_with_strength_and_preserve_color(checkpoints):
    """A batch of video frames comes out as each frame would through ``Stylizer`` as a photo."""
    stylizer = Stylizer.load(checkpoints["instance"], device="cpu")
    frames = [np.asarray(smooth_image(i, (32, 24))) for i in range(3)]
    assert all(np.array_equal(out, src) for out, src in zip(stylize_frames(stylizer, frames, strength=0.0), frames))
    for options in ({}, {"strength": 0.5}, {"preserve_color": True}):
        batched = stylize_frames(stylizer, frames, **options)
        for src, out in zip(frames, batched):
            alone = np.asarray(stylizer(Image.fromarray(src), **options)).astype(int)
            assert np.abs(out.astype(int) - alone).max() <= 1, options  # rounding only
    assert np.abs(batched[0].astype(int) - stylize_frames(stylizer, frames)[0]).mean() > 1  # the options did act


def test_even_size():
    assert even_size(63, 47, None) == (62, 46)
    assert even_size(1280, 720, 480) == (480, 270)
    assert even_size(3840, 2160, None) == (2048, 1152)  # over the tiling threshold: scaled, not tiled
    assert even_size(1000, 3, 512) == (512, 2)


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_smoothed_statistics(checkpoints, tmp_path, norm):
    from .conftest import make_checkpoint

    path = checkpoints.get(norm) or make_checkpoint(tmp_path / f"g_{norm}.safetensors", norm)
    stylizer = Stylizer.load(path, device="cpu", precision="fp32")
    frames = torch.rand(6, 3, 32, 32)
    plain = stylizer.forward(frames)
    assert torch.allclose(stabilized(stylizer, 0.0).forward(frames), plain, atol=1e-5)  # momentum 0 = plain IN
    smoothed = stabilized(stylizer, 0.9)
    whole = smoothed.forward(frames)
    assert (whole - plain).abs().mean() > 1e-3  # later frames use earlier frames' statistics
    assert torch.allclose(whole[0], plain[0], atol=1e-5)  # the first frame has only its own
    in_pieces = stabilized(stylizer, 0.9)
    pieces = torch.cat([in_pieces.forward(frames[:2]), in_pieces.forward(frames[2:5]), in_pieces.forward(frames[5:])])
    assert torch.allclose(pieces, whole, atol=1e-5)  # batching does not change the result
    reference = stabilized(stylizer, 1.0)
    first = reference.forward(frames[:1])
    assert torch.allclose(reference.forward(frames[:1]), first)  # frozen at the first frame's statistics
    assert torch.equal(stylizer.forward(frames), plain)  # the shared model is untouched
    assert not any(isinstance(m, SmoothedStatsNorm) for m in stylizer.model.modules())
    assert any(isinstance(m, SmoothedStatsNorm) for m in smoothed.model.modules())


def test_smoothing_leaves_bn_alone(checkpoints):
    stylizer = Stylizer.load(checkpoints["batch"], device="cpu")
    frames = torch.rand(3, 3, 32, 32)
    assert torch.equal(stabilized(stylizer, 0.9).forward(frames), stylizer.forward(frames))
    with pytest.raises(ValueError, match="momentum must be between 0 and 1"):
        stabilized(stylizer, 1.5)


def test_webcam_frame_reports_size_and_rate(checkpoints):
    from stylenet.ui_video import WEBCAM_SIDE, webcam_frame

    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    frame = np.asarray(smooth_image(2, (640, 480)))
    bn, inorm, text, clock = webcam_frame(models, frame, None)
    assert bn.size == inorm.size == (WEBCAM_SIDE, WEBCAM_SIDE * 3 // 4)
    assert text.startswith("256x192 px · BN + IN take") and text.endswith("achieved: – fps")
    _, _, text, clock2 = webcam_frame(models, frame, clock)
    assert clock2[0] > clock[0] and clock2[1] > 0 and "achieved: –" not in text
