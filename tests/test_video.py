"""Video: tiny generated clips through the CLI and the library; temporal smoothing; the webcam handler."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from stylenet.stylize import Stylizer
from stylenet.video import (
    ClipWriter,
    VideoError,
    VideoLimits,
    even_size,
    probe,
    stylize_frames,
    stylize_video,
)

from .conftest import ROOT, smooth_image


def make_clip(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), fps: Fraction = Fraction(12),
              audio: bool = True, video: bool = True, rotation: int = 0, pts: Sequence[int] | None = None,
              audio_codec: str = "aac", marker: bool = False) -> Path:
    """A small H.264 clip of moving colour, with a 440 Hz tone from time 0 to the end of the video.

    ``pts``: the frames' timestamps in units of 1/``fps`` (default 0, 1, 2, ...: gaps make a variable
    frame rate, a first one above 0 a video that starts after its audio). ``marker``: dark frames with
    a white 16 px square in the top-left corner of the coded picture. The container follows the
    suffix (.mkv can carry PCM audio, which MP4 cannot)."""
    pts = list(range(frames)) if pts is None else list(pts)
    with av.open(str(path), "w") as container:
        if video:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            if rotation:
                stream.set_display_rotation(rotation)
        sound = container.add_stream(audio_codec, rate=16000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i, t in enumerate(pts if video else []):
            if marker:
                rgb = np.full((size[1], size[0], 3), 40, np.uint8)
                rgb[:16, :16] = 255
            else:
                rgb = np.asarray(smooth_image(i % 3, size)).copy()
                rgb[:, : 4 * i % size[0]] //= 2
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        if video:
            container.mux(stream.encode(None))
        if sound is not None:
            t = np.arange(int(16000 * (max(pts) + 1) / fps)) / 16000
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
                          check=False, capture_output=True, text=True)


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
    """The coded picture's top-left corner lands top-right: turned clockwise, as FFmpeg shows it."""
    src = make_clip(tmp_path / "phone.mp4", frames=3, size=(64, 48), rotation=-90, audio=False, marker=True)
    info = probe(src)
    assert (info.width, info.height, info.rotation) == (48, 64, -90)
    stylize_video(src, tmp_path / "out.mp4", Stylizer.load(checkpoints["batch"], device="cpu"), strength=0.0)
    assert read_clip(tmp_path / "out.mp4")["size"] == (48, 64)
    with av.open(str(tmp_path / "out.mp4")) as container:
        picture = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert picture.shape == (64, 48, 3)
    corners = {"top-left": picture[:16, :16], "top-right": picture[:16, -16:],
               "bottom-left": picture[-16:, :16], "bottom-right": picture[-16:, -16:]}
    brightness = {corner: block[2:-2, 2:-2].mean() for corner, block in corners.items()}  # inside the square
    assert brightness["top-right"] > 230, brightness
    assert all(value < 60 for corner, value in brightness.items() if corner != "top-right"), brightness


def frame_times(path: Path) -> tuple[list[float], float, int]:
    """Each decoded frame's time, the time the decoded sound ends and its sample count (seconds)."""
    with av.open(str(path)) as container:
        video = [float(frame.time) for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        sound = list(container.decode(audio=0))
    end = float(sound[-1].time) + sound[-1].samples / sound[-1].sample_rate if sound else 0.0
    return video, end, sum(frame.samples for frame in sound)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])  # AAC audio copied; PCM audio re-encoded to AAC
def test_variable_frame_rate_keeps_its_timing_and_its_sound_in_sync(tmp_path, checkpoints, name):
    """Frames at irregular times, the first 0.5 s after the sound starts: every frame keeps its time
    (counted from the first frame) and the sound keeps its place relative to the frames."""
    pts = [15 + t for t in (0, 1, 2, 3, 10, 11, 12, 13, 20, 21)]  # 1/30 s units: gaps of 7 and 7 frames
    src = make_clip(tmp_path / name, fps=Fraction(30), pts=pts,
                    audio_codec="aac" if name.endswith("mp4") else "pcm_s16le")
    out = tmp_path / "out.mp4"
    stylizer = Stylizer.load(checkpoints["batch"], device="cpu")
    assert stylize_video(src, out, stylizer, strength=0.0, batch_size=3) == len(pts)
    src_video, src_end, _ = frame_times(src)
    out_video, out_end, samples = frame_times(out)
    assert src_video[0] == pytest.approx(0.5) and src_video[-1] == pytest.approx(1.2)
    assert out_video == pytest.approx([t - src_video[0] for t in src_video], abs=2e-3)  # 0 ... 0.7 s, gaps kept
    assert samples > 0 and out_end > 0.6  # the sound is still there
    # in sync: the sound ends as long after the first frame as it did (within one AAC frame, 64 ms)
    assert out_end - out_video[0] == pytest.approx(src_end - src_video[0], abs=0.065)
    if name.endswith("mp4"):
        assert read_clip(out)["audio"] == read_clip(src)["audio"]  # copied packet for packet


def ffmpeg_error() -> av.FFmpegError:
    """One of the FFmpeg errors that is neither an OSError nor a RuntimeError."""
    return av.error.PatchWelcomeError(-1163346256, "Not yet implemented in FFmpeg, patches welcome")


@pytest.mark.parametrize("stage", ["add_stream", "encode", "close"])
def test_ffmpeg_errors_while_writing_are_one_line_and_leave_no_part_file(tmp_path, checkpoints, monkeypatch, stage):
    src = make_clip(tmp_path / "clip.mp4", frames=5)
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    seen = {}
    if stage == "add_stream":
        real_open = av.open

        class FailingOutput:  # the output container, whose add_stream fails
            def __init__(self, container):
                self.container = container

            def add_stream(self, *args, **kwargs):
                raise ffmpeg_error()

            def close(self):
                seen["closed"] = True
                self.container.close()

            def __getattr__(self, name):
                return getattr(self.container, name)

        def fake_open(file, mode="r", **kwargs):
            container = real_open(file, mode, **kwargs)
            return FailingOutput(container) if mode == "w" else container

        monkeypatch.setattr(av, "open", fake_open)
    elif stage == "encode":
        real_write = ClipWriter.write

        def write(self, rgb, pts=None):
            if self.frames == 2:
                raise ffmpeg_error()
            return real_write(self, rgb, pts)

        monkeypatch.setattr(ClipWriter, "write", write)
    else:
        def close(self):
            self.container.mux(self.video.encode(None))  # the encoder's packets: the file is on disk
            seen["part on disk"] = self.part.is_file()
            raise ffmpeg_error()

        monkeypatch.setattr(ClipWriter, "close", close)
    with pytest.raises(VideoError) as caught:
        stylize_video(src, out, Stylizer.load(checkpoints["batch"], device="cpu"), batch_size=2)
    assert str(caught.value) == ("clip.mp4: could not write the stylized clip styled.mp4 "
                                 "(Not yet implemented in FFmpeg, patches welcome)")
    assert list(out.parent.iterdir()) == []  # neither the clip nor its .part file
    assert seen == {"add_stream": {"closed": True}, "encode": {}, "close": {"part on disk": True}}[stage]


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


def test_a_gap_before_the_last_frame_keeps_the_clip_s_length(tmp_path, checkpoints):
    """Frames at 0, 1/30, 2/30, 3/30, then 2, 4, 5 and 6 s: MP4 takes a track's length from decoding
    times, which x264 derives from earlier frames, so the header said 4.1 s while the last frame is at 6 s."""
    src = make_clip(tmp_path / "gaps.mp4", fps=Fraction(30), pts=[0, 1, 2, 3, 60, 120, 150, 180], audio=False)
    out = tmp_path / "out.mp4"
    stylize_video(src, out, Stylizer.load(checkpoints["batch"], device="cpu"), strength=0.0)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
        assert times[-1] == pytest.approx(6.0)
        assert float(stream.duration * stream.time_base) == pytest.approx(6.0 + 1 / 30, abs=1e-3)
        assert container.duration / av.time_base == pytest.approx(6.0 + 1 / 30, abs=1e-3)


def test_fast_clips_are_resampled_and_bounded_in_frames_and_pixels(tmp_path, checkpoints):
    """A 120 fps clip comes out at 30 fps with its length; one faster than max_decoded_fps is refused
    before it is decoded in full; max_work bounds frames x pixels."""
    stylizer = Stylizer.load(checkpoints["batch"], device="cpu")
    fast = make_clip(tmp_path / "fast.mp4", frames=48, fps=Fraction(120), audio=False)  # 0.4 s
    limits = VideoLimits(max_seconds=1.0, max_fps=30)
    assert stylize_video(fast, tmp_path / "out.mp4", stylizer, limits=limits) == 12
    with av.open(str(tmp_path / "out.mp4")) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    assert times == pytest.approx([i / 30 for i in range(12)], abs=1e-3)
    frantic = make_clip(tmp_path / "frantic.mp4", frames=200, fps=Fraction(2000), audio=False)  # 0.1 s
    with pytest.raises(VideoError, match=r"frantic.mp4: more than 25 frames; at most 24 frames a second"):
        stylize_video(frantic, tmp_path / "no.mp4", stylizer, limits=VideoLimits(max_seconds=1.0, max_decoded_fps=24))
    with pytest.raises(VideoError, match=r"fast.mp4: over the limit of 3 frames at 64x48"):
        stylize_video(fast, tmp_path / "no.mp4", stylizer, limits=VideoLimits(max_fps=30, max_work=3 * 64 * 48))
    assert not (tmp_path / "no.mp4").exists()
