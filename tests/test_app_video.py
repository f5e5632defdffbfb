"""The app's Video and Webcam tabs, called as plain functions: no server."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stylenet.stylize import Stylizer

from .conftest import ROOT, smooth_image
from .test_video import make_clip, read_clip


def test_webcam_frame_reports_size_and_rate(checkpoints):
    from stylenet.app.video import WEBCAM_SIDE, webcam_frame

    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    frame = np.asarray(smooth_image(2, (640, 480)))
    bn, inorm, text, clock = webcam_frame(models, frame, None)
    assert bn.size == inorm.size == (WEBCAM_SIDE, WEBCAM_SIDE * 3 // 4)
    assert text.startswith("256x192 px · BN + IN take") and text.endswith("achieved: – fps")
    _, _, text, clock2 = webcam_frame(models, frame, clock)
    assert clock2[0] > clock[0] and clock2[1] > 0 and "achieved: –" not in text


def test_video_api_keeps_the_frame_size_within_the_slider(tmp_path, checkpoints):
    """The /video endpoint gets any number from an API call: 0 (no cap: 1080p through two models) or a
    negative side (2x2 frames) must not get through; NaN becomes the default."""
    import gradio as gr

    from stylenet.app import video as ui_video

    models = {norm: Stylizer.load(checkpoints[norm], device="cpu") for norm in ("batch", "instance")}
    style = SimpleNamespace(models=models)
    with gr.Blocks() as demo:
        ui_video.video_tab({"stripes": style}, ["stripes"])
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


def test_video_results_go_to_a_private_folder_removed_at_exit():
    script = ("import stat; from stylenet.app import video as ui_video; folder = ui_video.results_dir(); "
              "assert folder == ui_video.results_dir(); (folder / 'x.mp4').write_bytes(b'x'); "
              "print(folder, oct(stat.S_IMODE(folder.stat().st_mode)))")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    folder, mode = result.stdout.split()
    assert Path(folder).name.startswith("stylenet-video-") and mode == "0o700"  # mkdtemp: this process's own
    assert not Path(folder).exists()  # removed when the app exits
