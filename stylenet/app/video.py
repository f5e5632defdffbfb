"""The app's moving pictures: the "Video" and "Webcam" tabs.

Every handler looks the style up at request time in what its owner may use (``StyleRegistry.view``:
styles trained while the app runs work too) and never changes a shared model: the temporal smoothing
runs on a private copy. Clips are resampled to at most ``MAX_FPS`` and bounded in frames x pixels
(``VIDEO_LIMITS``); a clip whose client went away stops at its next batch of frames.

Webcam: Gradio's streaming image input, ``gr.Image(sources=["webcam"], streaming=True)`` with
``.stream(...)``. The browser grabs a frame every ``stream_every`` seconds and sends the next one
only after the previous result came back, so a slow CPU lowers the frame rate instead of piling up a
backlog. It ships with Gradio (no WebRTC/FastRTC package, no TURN server), which is all a few
frames per second of a 256 px picture need.
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..images import MAX_UPLOAD_BYTES
from ..norms import norm_label
from ..stylize import Stylizer
from ..temporal import STABILIZERS, stabilized
from ..video import (
    VideoError,
    VideoLimits,
    even_size,
    open_clip,
    probe,
    stylize_video,
    video_stream,
)
from .errors import user_error
from .queueing import LIGHT
from .sessions import LOCAL, Sessions, client_watch
from .styles import PAIR, Style, StyleRegistry, has_pair, pair_of, style_dropdown
from .uploads import ResultFiles, read_upload, safe_preprocess

VIDEO_SIDE = (128, 480, 256)  # frame size slider: min, max, default (longest side, px)
MAX_SECONDS, MAX_FPS = 10.0, 30
# Besides the upload size limit: 10 s, read at up to 30 frames a second (faster clips are resampled),
# so at most 301 frames of at most 480x480 px go through each model.
VIDEO_LIMITS = VideoLimits(max_seconds=MAX_SECONDS, max_pixels=1920 * 1088, max_fps=MAX_FPS,
                           max_work=(int(MAX_SECONDS * MAX_FPS) + 1) * VIDEO_SIDE[1] ** 2)
UPLOAD_MB = MAX_UPLOAD_BYTES / 2**20
WEBCAM_SIDE = 256
# what every current browser plays in a <video>: FFmpeg's codec names, not its decoders' (AV1's is libdav1d)
BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")


class ClientGone(Exception):
    """The request's client disconnected: its work stops (and leaves no file)."""


def frame_side(side: Any) -> int:
    """The requested longest side, clamped to the slider's range (an API call can send anything)."""
    low, high, default = VIDEO_SIDE
    try:
        value = float(side)
    except (TypeError, ValueError):
        raise user_error(f"Frame size must be a number of pixels between {low} and {high}") from None
    return default if math.isnan(value) else int(min(max(value, low), high))


def stylize_pair(clip: str | None, style: str, side: Any, smooth: bool, styles: Mapping[str, Style],
                 files: ResultFiles, progress: Callable[..., Any], owner: str = LOCAL,
                 gone: Callable[[], bool] = lambda: False) -> tuple[str, str, str]:
    """The clip through the style's BN and IN models: two MP4 paths in ``owner``'s area and a one-line
    summary. ``gone`` is asked after every batch of frames: True stops the work (``ClientGone``)."""
    if not clip:
        raise user_error("Upload a clip first.")
    models = pair_of(styles, style)
    side = frame_side(side)
    folder = files.folder(owner)
    clip = held_copy(clip, folder)
    try:
        info = probe(clip, VIDEO_LIMITS)
    except VideoError as exc:
        raise user_error(str(exc)) from None
    expected = min(info.estimated_frames, int(info.seconds * MAX_FPS) + 1) or info.estimated_frames
    total, done, outputs, seconds = 2 * expected, [0], [], []
    for norm, stylizer in models.items():
        if smooth and norm == "instance":
            stylizer = stabilized(stylizer, STABILIZERS["ema"])
        label = norm_label(norm)

        def tick(n: int, label: str = label) -> None:
            if gone():
                raise ClientGone
            done[0] += n
            progress((min(done[0], total), total), desc=f"{label}: stylizing frames", unit="frames")

        out = folder / f"{style}_{norm}.mp4"
        start = time.perf_counter()
        try:
            frames = stylize_video(clip, out, stylizer, max_size=side, info=info, limits=VIDEO_LIMITS,
                                   on_frames=tick)
        except VideoError as exc:
            raise user_error(str(exc)) from None
        outputs.append(str(out))
        seconds.append(time.perf_counter() - start)
    fps = float(min(info.fps, MAX_FPS))
    width, height = even_size(info.width, info.height, side)
    note = (f"{frames} frames at {fps:.3g} fps, {info.width}x{info.height} source, {width}x{height} out (longest "
            f"side {max(width, height)} px; a clip is never enlarged, and is shown at its own size); "
            f"sound {'copied' if info.audio else 'none'}. BN {frames / seconds[0]:.1f} fps, "
            f"IN{' (smoothed)' if smooth else ''} {frames / seconds[1]:.1f} fps on this server.")
    return outputs[0], outputs[1], note


def held_copy(clip: str, folder: Path) -> str:
    """A copy of the upload in the request's own ``folder``, which the run reads from start to end: the
    upload is read once per model, and Gradio's cache cap (``uploads.cap_files``) may remove it between
    the two. The upload itself where it cannot be copied (gone already): ``probe`` then says why."""
    source = folder / "source"
    source.mkdir()
    try:
        return str(shutil.copyfile(clip, source / Path(clip).name))
    except OSError:
        return clip


def video_tab(registry: StyleRegistry, sessions: Sessions, files: ResultFiles, heavy: dict,
              blocks: gr.Blocks | None = None) -> gr.Dropdown:
    """Upload a short clip, get BN and IN side by side as playable videos; returns the style dropdown.
    ``heavy``: the app-wide concurrency group; ``blocks``: the app, whose queue says when a client left."""
    gr.Markdown(f"Upload a short clip — at most **{VIDEO_LIMITS.max_seconds:g} s** and **{UPLOAD_MB:g} MB** "
                f"(mp4, mov, webm, mkv; up to 1080p; faster than {MAX_FPS} fps is resampled to {MAX_FPS}). "
                "Every frame goes through the style's BN and IN models and comes "
                "back as H.264 with the original sound. CPU-bound: expect about a second of work per frame at 256 px, "
                "per model.")
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Video(label=f"Your clip (≤ {VIDEO_LIMITS.max_seconds:g} s, ≤ {UPLOAD_MB:g} MB)",
                            sources=["upload"], elem_id="video-input")
            clip_note = gr.Markdown(elem_id="video-input-note")
            style = style_dropdown(registry.view(None), registry.names())
            low, high, default = VIDEO_SIDE
            side = gr.Slider(low, high, value=default, step=32, label="Frame size (longest side, px)")
            smooth = gr.Checkbox(label="Steadier IN: smooth its statistics over time (EMA, see Why IN? (e))")
            run = gr.Button("Stylize the clip with BN and IN", variant="primary", elem_id="video-btn")
        with gr.Column(scale=2):
            with gr.Row():
                bn = gr.Video(label="BN", interactive=False, elem_id="video-bn")
                inorm = gr.Video(label="IN", interactive=False, elem_id="video-in")
            note = gr.Markdown(elem_id="video-note")

    def handler(clip: str | None, style: str, side: float, smooth: bool, progress=gr.Progress(),  # noqa: B008
                request: gr.Request = None):
        owner = sessions.owner(request)
        try:
            return stylize_pair(clip, style, side, smooth, registry.view(owner), files, progress, owner,
                                client_watch(blocks, request))
        except ClientGone:
            print("stylenet app: a video stopped: its client went away", file=sys.stderr, flush=True)
            return gr.skip(), gr.skip(), gr.skip()

    clip.change(preview_note, clip, clip_note, api_name=False, show_progress="hidden", **LIGHT)
    # the last clip's videos and note go first, so a failed run never sits under an old success; the progress
    # shows in the note's place alone (on the BN box, "IN: stylizing frames" read as BN's progress)
    run.click(lambda: (None, None, ""), None, [bn, inorm, note], api_name=False, show_progress="hidden",
              **LIGHT).then(handler, [clip, style, side, smooth], [bn, inorm, note], api_name="video",
                            show_progress_on=note, **heavy)
    return style


def preview_note(clip: str | None) -> str:
    """A word under the upload where the browser cannot play the clip (an MPEG-4 Part 2 or HEVC file):
    Gradio then shows "Video not playable", which reads as a failed upload though the clip is fine to
    stylize. Empty for a playable clip, no clip, or one that does not open (the run says why)."""
    if not clip:
        return ""
    try:
        with open_clip(clip) as container:
            codec = video_stream(container, Path(clip).name).codec_context.codec
    except VideoError:
        return ""
    if codec.canonical_name in BROWSER_CODECS:
        return ""
    return (f"**Uploaded.** A \"Video not playable\" message only means that this browser cannot preview the "
            f"clip's video format ({codec.long_name}); the app reads it: press the button below and the clip "
            "will be stylized.")


def webcam_frame(models: dict[str, Stylizer], frame: str | None,
                 clock: tuple[float, float] | None) -> tuple[Any, Any, str, tuple[float, float] | None]:
    """One camera frame (a file, decoded by ``read_upload`` with the uploads' caps) at ``WEBCAM_SIDE`` px
    through BN and IN. ``clock`` (per browser session) is (time of the previous result, smoothed
    achieved fps): the achieved rate counts the round trip through the browser, the stylizing time
    alone bounds it from above."""
    if frame is None:
        return gr.skip(), gr.skip(), gr.skip(), clock
    img = read_upload(frame, WEBCAM_SIDE)
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


# Run in the browser when the page loads: why the camera cannot start, in words (Gradio's webcam shows
# nothing when it fails, only a console error).
CAMERA_CHECK = """async () => {
  if (!window.isSecureContext) return "**The camera cannot start here:** browsers allow it only on a secure "
    + "page. Open the app over https or at http://localhost (this page is " + location.origin + ").";
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices)
    return "**The camera cannot start here:** this browser offers no camera access.";
  try {
    const permission = await navigator.permissions.query({name: "camera"});
    if (permission.state === "denied") return "**Camera access is blocked for this page:** allow it in the "
      + "browser's site settings (the icon left of the address), then reload.";
  } catch (e) {}
  const devices = await navigator.mediaDevices.enumerateDevices();
  if (!devices.some(d => d.kind === "videoinput")) return "**No camera found on this device.** Connect one and "
    + "reload, or use the Video tab with a recorded clip.";
  return "Camera found: click the camera box, allow access when the browser asks, then press Record.";
}"""


def expected_fps(models: dict[str, Stylizer]) -> float:
    """Frames a second this server manages for one BN + IN frame at ``WEBCAM_SIDE`` px, measured once at
    start (the second of two runs), before any browser round trip or other users' work."""
    frame = Image.new("RGB", (WEBCAM_SIDE, WEBCAM_SIDE * 3 // 4), (128, 96, 64))
    for _ in range(2):
        start = time.perf_counter()
        for norm in PAIR:
            models[norm](frame)
        busy = time.perf_counter() - start
    return 1 / busy


def webcam_tab(registry: StyleRegistry, sessions: Sessions, heavy: dict, demo: gr.Blocks) -> gr.Dropdown:
    """Live BN | IN of the camera stream at reduced size, with the frame rate; returns the dropdown.
    Frames come as files and are decoded like uploads (``safe_preprocess``); each one is heavy work.
    ``demo``: the app, whose page load checks in the browser whether a camera can start."""
    styles = registry.view(None)
    first = next((name for name in registry.names() if has_pair(styles[name].models)), None)
    rate = f"expect about **{expected_fps(pair_of(styles, first)):.1f} frames a second**" if first else "see"
    gr.Markdown(f"Live stylization of your camera at {WEBCAM_SIDE} px, BN and IN side by side. The browser sends a "
                "frame, waits for the result, then sends the next, so the rate shown below the pictures is what "
                f"this server achieves: {rate} (fewer while others use the app). Each session streams for at most "
                "2 minutes.")
    camera_help = gr.Markdown("Checking for a camera…", elem_id="webcam-help")
    demo.load(None, None, camera_help, js=CAMERA_CHECK)
    with gr.Row():
        cam = safe_preprocess(gr.Image(sources=["webcam"], streaming=True, type="filepath", label="Camera",
                                       height=260))
        style = style_dropdown(registry.view(None), registry.names())
    with gr.Row():
        bn = gr.Image(label="BN", interactive=False, height=260, elem_id="webcam-bn")
        inorm = gr.Image(label="IN", interactive=False, height=260, elem_id="webcam-in")
    rate = gr.Markdown(elem_id="webcam-rate")
    clock = gr.State(None)

    def handler(frame: str | None, style: str, clock: tuple[float, float] | None, request: gr.Request = None):
        return webcam_frame(pair_of(registry.view(sessions.owner(request)), style), frame, clock)

    cam.stream(handler, [cam, style, clock], [bn, inorm, rate, clock], stream_every=0.1, time_limit=120,
               show_progress="hidden", api_name=False, **heavy)
    return style
