"""Clips in, clips out: a video streamed through a ``Stylizer`` a few frames at a time.

PyAV does the decoding and encoding because it ships FFmpeg (with libx264) inside its wheels: no
system ffmpeg to install, frames decoded lazily (the clip is never held in memory, only one batch of
frames), and audio packets can be copied into the new file without being decoded.

Output: H.264 in MP4, yuv420p (what browsers and phones play; it stores colour at half resolution, so
width and height are made even), with the source's audio stream copied bit for bit (re-encoded to AAC
only when MP4 cannot carry its codec, e.g. Vorbis from a WebM). Every frame keeps its source timestamp
(shifted so the video starts at 0, the audio shifted by the same amount), so variable-frame-rate clips
keep their length and stay in sync with their sound. Bad inputs, and FFmpeg errors while writing,
raise ``VideoError`` whose text is the one line to show the user.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from .files import AtomicFile
from .stylize import TILE_ABOVE_PIXELS, Stylizer, check_strength, keep_colors

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"})
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"})  # copied as they are
X264_OPTIONS = {"crf": "18", "preset": "medium"}  # painted textures are detailed: keep quality high
DEFAULT_BATCH = 4


class VideoError(ValueError):
    """A clip that cannot be stylized; ``str()`` is the one-line reason shown to the user."""


@dataclass(frozen=True)
class VideoLimits:
    """Caps checked from the header before any frame is stylized, and again while decoding (a header
    can leave out its duration, or claim any frame rate).

    ``max_fps``: a faster clip is resampled, a frame closer than 1/max_fps to the last one kept being
    skipped (None keeps every frame). ``max_decoded_fps``: how many frames a second may be decoded at
    all (a 2,000 fps clip is refused, not decoded). ``max_work``: frames stylized x pixels per frame,
    the bound on the stylizing work of one clip (None: only the other caps).
    """

    max_seconds: float = 600.0
    max_pixels: int = 4096 * 2304  # per frame: 4K UHD and a little more
    max_fps: float | None = None
    max_decoded_fps: float = 240.0  # phones' slow motion
    max_work: int | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What the header (and the first frame) say about a clip; ``frames`` is 0 when unknown."""

    width: int  # as displayed, i.e. after the rotation is applied
    height: int
    fps: Fraction
    frames: int
    seconds: float
    rotation: int  # degrees counter-clockwise to turn the coded picture upright (phones: -90, 90)
    audio: str | None  # the audio codec, or None when the clip is silent

    @property
    def estimated_frames(self) -> int:
        """The frame count for progress bars: the header's, else duration x frame rate."""
        return self.frames or round(self.seconds * self.fps)


def probe(path: str | Path, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Read the header and decode the first frame, so unreadable, silent-only and over-sized clips
    fail here, before an output file is created."""
    name = Path(path).name
    with open_clip(path) as container:
        stream = video_stream(container, name)
        fps = stream.guessed_rate or stream.average_rate
        if not fps or fps <= 0:
            raise VideoError(f"{name}: the video stream has no frame rate")
        if stream.width * stream.height > limits.max_pixels:
            raise VideoError(f"{name}: {stream.width}x{stream.height} frames are over the limit of "
                             f"{limits.max_pixels:,} pixels")
        seconds = clip_seconds(container, stream)
        if seconds > limits.max_seconds:
            raise VideoError(f"{name}: {seconds:.1f} s long, over the limit of {limits.max_seconds:g} s")
        first = next(decoded_frames(container, stream, name), None)
        if first is None:
            raise corrupt(name, "no frame could be decoded")
        rotation = int(first.rotation)
        width, height = (stream.height, stream.width) if rotation % 180 else (stream.width, stream.height)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        frames = stream.frames or 0
        return VideoInfo(width, height, Fraction(fps), frames, seconds, rotation, audio)


def open_clip(path: str | Path) -> av.container.InputContainer:
    name = Path(path).name
    if not Path(path).is_file():
        raise VideoError(f"{name}: no such file")
    if Path(path).stat().st_size == 0:
        raise VideoError(f"{name}: empty file")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise VideoError(f"{name}: not a readable video (truncated, corrupt or not a video: {reason(exc)})") from None


def reason(exc: av.FFmpegError) -> str:
    return exc.strerror or type(exc).__name__


def corrupt(name: str, detail: str) -> VideoError:
    return VideoError(f"{name}: truncated or corrupt video ({detail})")


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoError(f"{name}: no video stream (an audio-only or data file?)")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
    return stream


def clip_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Duration from the stream, else the container; 0.0 when neither says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def decoded_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   name: str) -> Iterator[av.VideoFrame]:
    """The video frames in order; a decoding error becomes a one-line ``VideoError``."""
    try:
        yield from container.decode(stream)
    except av.FFmpegError as exc:
        raise corrupt(name, reason(exc)) from None


def even_size(width: int, height: int, max_size: int | None,
              max_pixels: int = TILE_ABOVE_PIXELS) -> tuple[int, int]:
    """Shrink so the longest side is at most ``max_size`` and the area at most ``max_pixels`` (never
    enlarge), then round each side down to an even number of pixels, as yuv420p requires. The area
    cap keeps frames below the size where stills switch to tiled inference (one image at a time,
    and per-tile statistics that would fight the temporal smoothing): 1080p passes, 4K is scaled."""
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    if max_size:
        scale = min(scale, max_size / max(width, height))
    return tuple(max(2, int(side * scale + 1e-6) // 2 * 2) for side in (width, height))


def to_rgb(frame: av.VideoFrame, size: tuple[int, int], rotation: int) -> np.ndarray:
    """An upright (H, W, 3) uint8 picture of ``size`` (width, height as displayed)."""
    coded = size[::-1] if rotation % 180 else size
    rgb = frame.to_ndarray(format="rgb24", width=coded[0], height=coded[1], interpolation="AREA")
    return np.ascontiguousarray(np.rot90(rgb, k=round(rotation / 90))) if rotation else rgb


class ClipWriter:
    """An H.264/yuv420p MP4 being written: RGB frames in, audio packets copied (or re-encoded).

    Frames carry their source timestamps: ``write(rgb, pts)`` with ``pts`` in ``time_base`` (the source
    video stream's); the output's time 0 is the source's ``start`` (in ``time_base`` too), and audio is
    shifted by the same time, so a variable frame rate and the sync with the sound survive. Without a
    ``time_base`` (or with ``pts=None``) frames are numbered on at ``fps``.

    Writes to a temporary file beside ``path`` (``files.AtomicFile``) and renames it on ``close()``, so an
    interrupted run never leaves a half-written clip under the final name.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: Fraction,
                 audio: av.audio.stream.AudioStream | None = None, *, time_base: Fraction | None = None,
                 start: int = 0) -> None:
        self.path = Path(path)
        self.target = AtomicFile(self.path)
        self.part = self.target.tmp
        self.time_base = Fraction(time_base) if time_base else 1 / Fraction(fps)
        self.start = start
        self.step = max(1, round(1 / (Fraction(fps) * self.time_base)))  # one frame, for frames without pts
        self.last_pts: int | None = None
        self.held: av.Packet | None = None  # the newest encoded packet, muxed when the next one comes
        self.first_dts: int | None = None
        self.frames = self.dropped = 0
        self.audio_start: Fraction | None = None  # re-encoded audio: its first sample's time in the output
        self.audio_samples = 0
        self.container = av.open(str(self.part), "w", format="mp4")
        try:
            self.video = self.container.add_stream("libx264", rate=fps)
            self.video.width, self.video.height = size
            self.video.pix_fmt = "yuv420p"
            self.video.codec_context.time_base = self.time_base
            self.video.time_base = self.time_base
            self.video.options = dict(X264_OPTIONS)
            self.copy_audio = audio is not None and audio.codec_context.name in MP4_AUDIO_CODECS
            self.audio = None
            if audio is not None:
                self.audio = (self.container.add_stream_from_template(audio) if self.copy_audio
                              else self.container.add_stream("aac", rate=audio.codec_context.sample_rate))
        except BaseException:
            self.abort()
            raise

    def write(self, rgb: np.ndarray, pts: int | None = None) -> bool:
        """One frame at source time ``pts``; False when it is dropped because its time is not after
        the previous frame's (or before the start)."""
        if pts is None:
            pts = 0 if self.last_pts is None else self.last_pts + self.step
        else:
            pts -= self.start
        if pts < 0 or (self.last_pts is not None and pts <= self.last_pts):
            self.dropped += 1
            return False
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self.last_pts = pts
        self.frames += 1
        self.mux_video(self.video.encode(frame))
        return True

    def mux_video(self, packets: list[av.Packet], last: bool = False) -> None:
        """Mux encoded video, one packet behind: at the end (``last``) the final packet is given the
        duration that carries the clip to its last frame's end. MP4 takes a track's length from the
        decode times, which x264 derives from earlier frames' times: after a gap in a variable frame
        rate the length would otherwise stop short of the last frame (3.1 s for frames up to 6 s)."""
        for packet in packets:
            if self.held is not None:
                self.container.mux(self.held)
            elif self.first_dts is None:
                self.first_dts = packet.dts
            self.held = packet
        if last and self.held is not None:
            if self.held.dts is not None and self.last_pts is not None:
                lead = min(0, self.first_dts or 0)  # decoding starts this far before time 0
                self.held.duration = max(1, self.last_pts + self.step - self.held.dts + lead)
            self.container.mux(self.held)
            self.held = None

    def shift(self, time_base: Fraction) -> int:
        """The video's start, in ``time_base``: what every audio timestamp loses."""
        return round(self.start * self.time_base / time_base)

    def write_audio(self, packet: av.Packet) -> None:
        """One packet of the source's audio stream, remuxed as it is (``copy_audio``), shifted like
        the video."""
        if packet.dts is None:  # the demuxer's final empty packet carries no data
            return
        shift = self.shift(packet.time_base)
        packet.dts -= shift
        if packet.pts is not None:
            packet.pts -= shift
        packet.stream = self.audio
        self.container.mux(packet)

    def encode_audio(self, frame: av.AudioFrame) -> None:
        """One decoded frame of the source's audio, re-encoded to AAC (when not ``copy_audio``)."""
        if self.audio_start is None:
            began = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else Fraction(0)
            self.audio_start, self.audio_samples = began - self.start * self.time_base, 0
        frame.pts, frame.time_base = self.audio_samples, Fraction(1, frame.sample_rate)  # gapless, from 0
        self.audio_samples += frame.samples
        self.mux_audio(self.audio.encode(frame))

    def mux_audio(self, packets: list[av.Packet]) -> None:
        """Encoded audio, moved from time 0 to where the source's first sample is."""
        for packet in packets:
            shift = round(self.audio_start / packet.time_base)
            packet.pts += shift
            packet.dts += shift
            self.container.mux(packet)

    def close(self) -> Path:
        """Flush the encoders, finish the file and give it its final name."""
        self.mux_video(self.video.encode(None), last=True)
        if self.audio is not None and not self.copy_audio and self.audio_start is not None:
            self.mux_audio(self.audio.encode(None))
        self.container.close()
        return self.target.commit()

    def abort(self) -> None:
        """Close without finishing and delete the partial file."""
        try:
            self.container.close()
        except av.FFmpegError:
            pass  # the partial file is deleted anyway
        self.target.discard()


def stylize_frames(stylizer: Stylizer, frames: list[np.ndarray], strength: float = 1.0,
                   preserve_color: bool = False) -> list[np.ndarray]:
    """A batch of (H, W, 3) uint8 frames through the network in one forward pass."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)
    out = stylizer.blend(x, strength).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    if preserve_color:
        out = np.stack([np.asarray(keep_colors(Image.fromarray(f), Image.fromarray(o))) for f, o in zip(frames, out)])
    return list(out)


def stylize_video(src: str | Path, dst: str | Path, stylizer: Stylizer, *, max_size: int | None = None,
                  strength: float = 1.0, preserve_color: bool = False, batch_size: int = DEFAULT_BATCH,
                  limits: VideoLimits = VideoLimits(), info: VideoInfo | None = None,
                  on_frames: Callable[[int], None] | None = None) -> int:
    """Stylize the clip ``src`` into ``dst`` (MP4); returns the number of frames written.

    ``max_size`` caps each frame's longest side; ``on_frames(n)`` is called after every batch of
    ``n`` frames (for progress bars); ``info`` skips a second ``probe`` when the caller has one.
    """
    check_strength(strength)
    name = Path(src).name
    info = info or probe(src, limits)
    size = even_size(info.width, info.height, max_size)
    rate = min(info.fps, Fraction(limits.max_fps)) if limits.max_fps else info.fps
    max_frames = int(limits.max_seconds * rate) + 1
    max_decoded = int(limits.max_seconds * limits.max_decoded_fps) + 1
    with open_clip(src) as container:
        stream = video_stream(container, name)
        audio = container.streams.audio[0] if container.streams.audio else None
        start = stream.start_time if stream.start_time is not None else 0
        # A frame this close after the last one kept is skipped (in the stream's time units; 5 % slack
        # for rounded timestamps): the resampling to max_fps.
        gap = 0.95 / (limits.max_fps * stream.time_base) if limits.max_fps and stream.time_base else 0
        writer: ClipWriter | None = None
        decoded = kept = 0
        last_kept: int | None = None
        try:
            writer = ClipWriter(dst, size, rate, audio, time_base=stream.time_base, start=start)
            batch: list[tuple[np.ndarray, int | None]] = []

            def flush() -> None:
                styled = stylize_frames(stylizer, [rgb for rgb, _ in batch], strength, preserve_color)
                for out, (_, pts) in zip(styled, batch):
                    writer.write(out, pts)
                if on_frames:
                    on_frames(len(batch))
                batch.clear()

            for packet in demuxed(container, [stream] + ([audio] if audio else []), name):
                if packet.stream is audio:
                    if writer.copy_audio:
                        writer.write_audio(packet)
                    else:
                        for sound in decode_packet(packet, name):
                            writer.encode_audio(sound)
                    continue
                for frame in decode_packet(packet, name):
                    decoded += 1
                    if decoded > max_decoded:
                        raise VideoError(f"{name}: more than {max_decoded:,} frames; at most "
                                         f"{limits.max_decoded_fps:g} frames a second are read")
                    if frame.pts is not None and last_kept is not None and frame.pts - last_kept < gap:
                        continue
                    last_kept, kept = frame.pts, kept + 1
                    if limits.max_work and kept * size[0] * size[1] > limits.max_work:
                        raise VideoError(f"{name}: over the limit of {limits.max_work // (size[0] * size[1]):,} "
                                         f"frames at {size[0]}x{size[1]}")
                    batch.append((to_rgb(frame, size, info.rotation), frame.pts))
                    if len(batch) >= batch_size:
                        flush()
                    if kept > max_frames:
                        raise VideoError(f"{name}: longer than the limit of {limits.max_seconds:g} s")
            if batch:
                flush()
            if info.frames - decoded > max(2, info.frames // 100):  # frames lost to errors, not skipped
                raise corrupt(name, f"decoded {decoded} of {info.frames} frames")
            if not writer.frames:
                raise corrupt(name, "no frame has a usable timestamp")
            writer.close()
        except BaseException as exc:
            if writer is not None:
                writer.abort()
            if isinstance(exc, av.FFmpegError):
                raise VideoError(f"{name}: could not write the stylized clip {Path(dst).name} ({reason(exc)})") from None
            raise
        return writer.frames


def demuxed(container: av.container.InputContainer, streams: list, name: str) -> Iterator[av.Packet]:
    """Packets of ``streams`` in file order, ending with one empty packet per stream (decoding it
    flushes that stream's decoder)."""
    try:
        yield from container.demux(streams)
    except av.FFmpegError as exc:
        raise corrupt(name, reason(exc)) from None


def decode_packet(packet: av.Packet, name: str) -> list[av.VideoFrame | av.AudioFrame]:
    try:
        return packet.decode()
    except av.FFmpegError as exc:
        raise corrupt(name, reason(exc)) from None
