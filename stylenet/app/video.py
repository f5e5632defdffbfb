"""The app's moving pictures: the "Video" and "Webcam" tabs.

Every handler looks the style up in the app's style mapping at request time (styles trained while
the app runs work too) and never changes a shared model: the temporal smoothing runs on a private copy.

Webcam: Gradio's streaming image input, ``gr.Image(sources=["webcam"], streaming=True)`` with
``.stream(...)``. The browser grabs a frame every ``stream_every`` seconds and sends the next one
only after the previous result came back, so a slow CPU lowers the frame rate instead of piling up a
backlog. It ships with Gradio (no WebRTC/FastRTC package, no TURN server), which is all a few
frames per second of a 256 px picture need.
"""
from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from ..images import MAX_UPLOAD_BYTES, limit_size
from ..norms import norm_label
from ..stylize import Stylizer
from ..temporal import STABILIZERS, stabilized
from ..video import VideoError, VideoLimits, probe, stylize_video
from .styles import PAIR, Style, pair_of, style_dropdown

VIDEO_LIMITS = VideoLimits(max_seconds=10.0, max_pixels=1920 * 1088)  # and the upload size limit
UPLOAD_MB = MAX_UPLOAD_BYTES / 2**20
VIDEO_SIDE = (128, 480, 256)  # frame size slider: min, max, default (longest side, px)
WEBCAM_SIDE = 256
KEEP_RESULTS_S = 3600  # Gradio copies results into its cache; ours go after an hour


_results: list[Path] = []  # the process's private results folder, made on first use
_results_lock = threading.Lock()


def results_dir() -> Path:
    """A folder of this process's own (``mkdtemp``: private, never shared with another app or user on
    the machine), removed when the process exits, as ``uploads.ResultFiles`` does for images."""
    with _results_lock:
        if not _results:
            folder = Path(tempfile.mkdtemp(prefix="stylenet-video-"))
            atexit.register(shutil.rmtree, folder, True)
            _results.append(folder)
        return _results[0]


def prune_results(now: float) -> None:
    """Delete our finished clips older than ``KEEP_RESULTS_S`` (Gradio serves its own copies)."""
    for old in results_dir().glob("*.mp4"):
        try:
            if now - old.stat().st_mtime > KEEP_RESULTS_S:
                old.unlink(missing_ok=True)
        except FileNotFoundError:  # pruned by a concurrent request
            pass


def frame_side(side: Any) -> int:
    """The requested longest side, clamped to the slider's range (an API call can send anything)."""
    low, high, default = VIDEO_SIDE
    try:
        value = float(side)
    except (TypeError, ValueError):
        raise gr.Error(f"Frame size must be a number of pixels between {low} and {high}") from None
    return default if math.isnan(value) else int(min(max(value, low), high))


def stylize_pair(clip: str | None, style: str, side: Any, smooth: bool, styles: Mapping[str, Style],
                 progress: Callable[..., Any]) -> tuple[str, str, str]:
    """The clip through the style's BN and IN models: two MP4 paths and a one-line summary."""
    if not clip:
        raise gr.Error("Upload a clip first.")
    models = pair_of(styles, style)
    try:
        info = probe(clip, VIDEO_LIMITS)
    except VideoError as exc:
        raise gr.Error(str(exc)) from None
    side = frame_side(side)
    prune_results(time.time())
    total, done, outputs, seconds = 2 * info.estimated_frames, [0], [], []
    for norm, stylizer in models.items():
        if smooth and norm == "instance":
            stylizer = stabilized(stylizer, STABILIZERS["ema"])
        label = norm_label(norm)

        def tick(n: int, label: str = label) -> None:
            done[0] += n
            progress((min(done[0], total), total), desc=f"{label}: stylizing frames", unit="frames")

        out = results_dir() / f"{uuid.uuid4().hex[:12]}_{style}_{norm}.mp4"
        start = time.perf_counter()
        try:
            frames = stylize_video(clip, out, stylizer, max_size=side, info=info, limits=VIDEO_LIMITS,
                                   on_frames=tick)
        except VideoError as exc:
            raise gr.Error(str(exc)) from None
        outputs.append(str(out))
        seconds.append(time.perf_counter() - start)
    fps = float(info.fps)
    note = (f"{frames} frames at {fps:.3g} fps, {info.width}x{info.height} source, longest side {side} px; "
            f"sound {'copied' if info.audio else 'none'}. BN {frames / seconds[0]:.1f} fps, "
            f"IN{' (smoothed)' if smooth else ''} {frames / seconds[1]:.1f} fps on this server.")
    return outputs[0], outputs[1], note


def video_tab(styles: Mapping[str, Style], names: list[str]) -> gr.Dropdown:
    """Upload a short clip, get BN and IN side by side as playable videos; returns the style dropdown."""
    gr.Markdown(f"Upload a short clip — at most **{VIDEO_LIMITS.max_seconds:g} s** and **{UPLOAD_MB:g} MB** "
                "(mp4, mov, webm, mkv; up to 1080p). Every frame goes through the style's BN and IN models and comes "
                "back as H.264 with the original sound. CPU-bound: expect about a second of work per frame at 256 px, "
                "per model.")
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Video(label=f"Your clip (≤ {VIDEO_LIMITS.max_seconds:g} s, ≤ {UPLOAD_MB:g} MB)",
                            sources=["upload"], elem_id="video-input")
            style = style_dropdown(styles, names)
            low, high, default = VIDEO_SIDE
            side = gr.Slider(low, high, value=default, step=32, label="Frame size (longest side, px)")
            smooth = gr.Checkbox(label="Steadier IN: smooth its statistics over time (EMA, see Why IN? (e))")
            run = gr.Button("Stylize the clip with BN and IN", variant="primary", elem_id="video-btn")
        with gr.Column(scale=2):
            with gr.Row():
                bn = gr.Video(label="BN", interactive=False, elem_id="video-bn")
                inorm = gr.Video(label="IN", interactive=False, elem_id="video-in")
            note = gr.Markdown()

    def handler(clip: str | None, style: str, side: float, smooth: bool, progress=gr.Progress()):  # noqa: B008
        return stylize_pair(clip, style, side, smooth, styles, progress)

    run.click(handler, [clip, style, side, smooth], [bn, inorm, note], api_name="video")
    return style


def webcam_frame(models: dict[str, Stylizer], frame: np.ndarray | None,
                 clock: tuple[float, float] | None) -> tuple[Any, Any, str, tuple[float, float] | None]:
    """One camera frame at ``WEBCAM_SIDE`` px through BN and IN. ``clock`` (per browser session) is
    (time of the previous result, smoothed achieved fps): the achieved rate counts the round trip
    through the browser, the stylizing time alone bounds it from above."""
    if frame is None:
        return gr.skip(), gr.skip(), gr.skip(), clock
    img = limit_size(Image.fromarray(frame).convert("RGB"), WEBCAM_SIDE)
    start = time.perf_counter()
    outs = [models[norm](img) for norm in PAIR]
    now = time.perf_counter()
    busy = now - start
    achieved = None
    if clock is not None:
        current = 1 / max(now - clock[0], 1e-6)
        achieved = current if clock[1] == 0 else 0.8 * clock[1] + 0.2 * current
    text = (f"{img.width}x{img.height} px · BN + IN take {1000 * busy:.0f} ms a frame (at most {1 / busy:.1f} fps) · "
            f"achieved: {'–' if achieved is None else f'{achieved:.1f}'} fps")
    return outs[0], outs[1], text, (now, achieved or 0.0)


def webcam_tab(styles: Mapping[str, Style], names: list[str]) -> gr.Dropdown:
    """Live BN | IN of the camera stream at reduced size, with the frame rate; returns the dropdown."""
    gr.Markdown(f"Live stylization of your camera at {WEBCAM_SIDE} px, BN and IN side by side. The browser sends a "
                "frame, waits for the result, then sends the next (Gradio's streaming image input), so the frame "
                "rate below is what this server achieves; each session streams for at most 2 minutes.")
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", height=260)
        style = style_dropdown(styles, names)
    with gr.Row():
        bn = gr.Image(label="BN", interactive=False, height=260, elem_id="webcam-bn")
        inorm = gr.Image(label="IN", interactive=False, height=260, elem_id="webcam-in")
    rate = gr.Markdown(elem_id="webcam-rate")
    clock = gr.State(None)

    def handler(frame: np.ndarray | None, style: str, clock: tuple[float, float] | None):
        return webcam_frame(pair_of(styles, style), frame, clock)

    cam.stream(handler, [cam, style, clock], [bn, inorm, rate, clock], stream_every=0.1, time_limit=120,
               show_progress="hidden", api_name=False)
    return style
