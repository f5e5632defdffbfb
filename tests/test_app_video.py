"""The app's Video and Webcam tabs, called as plain functions: no server."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from stylenet.stylize import Stylizer

from .conftest import ROOT, smooth_image
from .test_video import make_clip, read_clip


def test_webcam_frame_reports_size_and_rate(checkpoints, tmp_path):
    from stylenet.app.video import WEBCAM_SIDE, webcam_frame

    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    frame = tmp_path / "frame.png"
    smooth_image(2, (640, 480)).save(frame)
    bn, inorm, text, clock = webcam_frame(models, str(frame), None)
    assert bn.size == inorm.size == (WEBCAM_SIDE, WEBCAM_SIDE * 3 // 4)
    assert text.startswith("256x192 px · BN + IN take") and text.endswith("achieved: – fps")
    _, _, text, clock2 = webcam_frame(models, str(frame), clock)
    assert clock2[0] > clock[0] and clock2[1] > 0 and "achieved: –" not in text


def test_webcam_frames_get_the_uploads_decoder_and_caps(tmp_path, monkeypatch):
    """A streamed frame, sent as a file or inline, reaches no Pillow decoder before read_upload: an
    8800x8800 PNG (77 MP, under Pillow's own bomb limit) is refused from its header, in one line."""
    import base64
    import time

    import gradio as gr
    from gradio.components.image import ImageData
    from PIL import Image as PILImage

    from stylenet.app import video as ui_video
    from stylenet.app.sessions import Sessions
    from stylenet.app.styles import StyleRegistry

    huge = tmp_path / "huge.png"
    PILImage.new("1", (8800, 8800)).save(huge)
    registry = StyleRegistry({"stripes": SimpleNamespace(models={}, painting=None)}, lambda found: None)
    with gr.Blocks() as demo:
        ui_video.webcam_tab(registry, Sessions(), {}, demo)
    cam = next(b for b in demo.blocks.values() if isinstance(b, gr.Image) and b.streaming)
    inline = "data:image/png;base64," + base64.b64encode(huge.read_bytes()).decode()
    decoded = []
    real_open = PILImage.open
    monkeypatch.setattr(PILImage, "open", lambda *a, **k: decoded.append(k.get("formats")) or real_open(*a, **k))
    for payload in (ImageData(path=str(huge), orig_name="huge.png"), ImageData(url=inline, orig_name="huge.png")):
        frame = cam.preprocess(payload)
        assert decoded == [] and Path(frame).read_bytes() == huge.read_bytes()
        start = time.perf_counter()
        with pytest.raises(gr.Error, match="over the limit of 40,000,000"):
            ui_video.webcam_frame({}, frame, None)
        assert time.perf_counter() - start < 2 and decoded[-1] is not None  # the allowlist, header only
        decoded.clear()


def test_video_api_keeps_the_frame_size_within_the_slider(tmp_path, checkpoints):
    """The /video endpoint gets any number from an API call: 0 (no cap: 1080p through two models) or a
    negative side (2x2 frames) must not get through; NaN becomes the default."""
    import gradio as gr

    from stylenet.app import video as ui_video
    from stylenet.app.sessions import Sessions
    from stylenet.app.styles import StyleRegistry
    from stylenet.app.uploads import ResultFiles

    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    registry = StyleRegistry({"stripes": SimpleNamespace(models=models, painting=None)}, lambda found: None)
    with gr.Blocks() as demo:
        ui_video.video_tab(registry, Sessions(), ResultFiles(), {})
    handler = next(f.fn for f in demo.fns.values() if f.api_name == "video")
    clip = make_clip(tmp_path / "big.mp4", frames=2, size=(640, 480), audio=False)
    low, high, default = ui_video.VIDEO_SIDE
    for side, longest in ((0, low), (-5, low), (10_000, high), (float("nan"), default), (320.7, 320)):
        bn, inorm, note = handler(str(clip), "stripes", side, False, progress=lambda *args, **kwargs: None)
        for out in (bn, inorm):
            assert read_clip(Path(out))["size"] == (longest, longest * 3 // 4), side
        assert f"longest side {longest} px;" in note
    with pytest.raises(gr.Error, match="Frame size must be a number"):
        handler(str(clip), "stripes", "big", False, progress=lambda *args, **kwargs: None)


def test_results_areas_are_private_pruned_and_removed_when_the_process_ends(tmp_path):
    """Each owner writes in its own folder; the newest ``keep`` folders and ``max_bytes`` are kept; the
    area goes at exit, and one left by a killed app goes when the next one starts."""
    from stylenet.app.uploads import ResultFiles

    files = ResultFiles(keep=3, max_bytes=10_000)
    try:
        made = [files.folder(owner) for owner in ("alice", "bob", "alice", "alice")]
        assert [f.parent.name for f in made] == ["alice", "bob", "alice", "alice"]
        assert not made[0].exists() and all(f.exists() for f in made[1:])  # count
        (made[1] / "big.bin").write_bytes(b"x" * 20_000)
        newest = files.folder("bob")
        assert not made[1].exists() and newest.exists()  # bytes: the oldest went first
        assert oct(made[3].parent.stat().st_mode & 0o777) == "0o700"
    finally:
        shutil.rmtree(files.root, ignore_errors=True)
    script = "from stylenet.app.uploads import ResultFiles; import os; print(ResultFiles().root, flush=True); {}"
    ended = subprocess.run([sys.executable, "-c", script.format("")], capture_output=True, text=True, cwd=ROOT, check=True)
    assert not Path(ended.stdout.strip()).exists()  # atexit
    killed = subprocess.run([sys.executable, "-c", script.format("os.kill(os.getpid(), 9)")], capture_output=True, check=False,
                            text=True, cwd=ROOT)
    left = Path(killed.stdout.strip())
    assert left.exists()  # a killed process runs no atexit
    ResultFiles()
    assert not left.exists()  # swept by the next start


def mp4v_clip(path: Path, size: tuple[int, int] = (96, 64), frames: int = 4, codec: str = "mpeg4") -> Path:
    """A silent clip, by default MPEG-4 Part 2 (what many cameras and old tools write): the app reads it,
    browsers don't play it."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(smooth_image(i, size)), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_a_clip_the_browser_cannot_preview_is_said_to_be_uploaded_and_kept_at_its_size(tmp_path, checkpoints):
    """Gradio answers an MPEG-4 Part 2 upload with "Video not playable": a note says the clip is fine. A clip
    smaller than the frame size comes back at its own size, the note says so, and the progress shows in
    the note's place only (not as "IN: stylizing frames" on the BN box)."""
    import gradio as gr

    from stylenet.app import video as ui_video
    from stylenet.app.sessions import Sessions
    from stylenet.app.styles import StyleRegistry
    from stylenet.app.uploads import ResultFiles

    clip = mp4v_clip(tmp_path / "old_camera.mp4")
    assert ('"Video not playable" message only means that this browser cannot preview the clip\'s video format (MPEG-4 '
            'part 2); the app reads it') in ui_video.preview_note(str(clip))
    assert ui_video.preview_note(str(make_clip(tmp_path / "h264.mp4", frames=2, audio=False))) == ""
    assert ui_video.preview_note(None) == ui_video.preview_note(str(tmp_path / "missing.mp4")) == ""
    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    registry = StyleRegistry({"stripes": SimpleNamespace(models=models, painting=None)}, lambda found: None)
    with gr.Blocks() as demo:
        ui_video.video_tab(registry, Sessions(), ResultFiles(), {})
    run = next(f for f in demo.fns.values() if f.api_name == "video")
    bn, inorm, note = run.fn(str(clip), "stripes", 256, False, progress=lambda *args, **kwargs: None)
    assert read_clip(Path(bn))["size"] == read_clip(Path(inorm))["size"] == (96, 64)
    assert "96x64 source, 96x64 out (longest side 96 px; a clip is never enlarged" in note
    note_box = next(b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b._id in [o._id for o in run.outputs])
    assert [c._id for c in run.show_progress_on] == [note_box._id]


@pytest.mark.parametrize(("codec", "encoder"), [("av1", "libsvtav1"), ("vp9", "libvpx-vp9")])
def test_an_av1_or_vp9_clip_is_one_the_browser_plays(tmp_path, codec, encoder):
    """Browsers play AV1 and VP9: no "cannot preview" note, though FFmpeg decodes AV1 with ``libdav1d``
    (a decoder's name, not the codec's)."""
    import av

    from stylenet.app.video import preview_note

    if encoder not in av.codecs_available:
        pytest.skip(f"this PyAV cannot write {codec} ({encoder})")
    clip = mp4v_clip(tmp_path / f"{codec}.mp4", frames=2, codec=encoder)
    with av.open(str(clip)) as container:
        assert container.streams.video[0].codec_context.codec.canonical_name == codec
    assert preview_note(str(clip)) == ""


def test_a_clip_removed_from_the_cache_during_a_run_is_still_stylized_by_both_models(tmp_path, checkpoints, monkeypatch):
    """Each model reads the clip anew; Gradio's cache cap may remove the upload in between: the run reads
    its own copy."""
    from stylenet.app import video as ui_video
    from stylenet.app.uploads import ResultFiles

    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    styles = {"stripes": SimpleNamespace(models=models, painting=None)}
    clip = make_clip(tmp_path / "upload.mp4", frames=2, audio=False)
    stylize_video = ui_video.stylize_video

    def then_capped(src, *args, **kwargs) -> int:
        frames = stylize_video(src, *args, **kwargs)
        clip.unlink(missing_ok=True)  # the cap's pass between BN and IN
        return frames

    monkeypatch.setattr(ui_video, "stylize_video", then_capped)
    files = ResultFiles()
    try:
        bn, inorm, _ = ui_video.stylize_pair(str(clip), "stripes", 128, False, styles, files, lambda *a, **k: None)
        assert read_clip(Path(bn))["frames"] == read_clip(Path(inorm))["frames"] == 2
    finally:
        shutil.rmtree(files.root, ignore_errors=True)
