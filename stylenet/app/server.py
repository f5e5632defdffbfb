"""The whole app: its tabs in one ``gr.Blocks`` (``build``), and ``stylenet app`` to serve it.

Needs no training and no VGG: it reads the shipped models' ``manifest.json`` at start.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gradio as gr
from PIL import Image

from .. import paths
from ..images import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS
from ..jobs import JobError, JobStore, Runner
from .compare import compare_tab
from .report import report_tab
from .styles import StyleRegistry, has_pair, load_styles, style_lists, user_style
from .train import train_tab
from .uploads import ResultFiles
from .video import video_tab, webcam_tab
from .why_in import why_in_tab


def build(styles: StyleRegistry, jobs: JobStore | None = None) -> gr.Blocks:
    """The app's Blocks, ready to queue and launch (or to inspect in a test without a server)."""
    names = styles.names()
    if not names:
        raise SystemExit("no models found: the manifest is missing or empty (see docs/training.md)")
    files = ResultFiles()
    with gr.Blocks(title="stylenet: BN vs IN") as demo:
        gr.Markdown("# stylenet — Batch Norm vs Instance Norm for fast style transfer\n"
                    "Same network, same recipe, same training photos: only the normalization layer differs.")
        with gr.Tab("Compare"):
            photo, style = compare_tab(styles, names, files)
        with gr.Tab("Why IN?"):
            xstyle = why_in_tab(styles, names, files)
        with gr.Tab("Video"):
            vstyle = video_tab(styles, names)
        with gr.Tab("Webcam"):
            wstyle = webcam_tab(styles, names)
        if jobs is not None:
            with gr.Tab("Train a style"):
                train_tab(jobs, styles, photo)
            style_lists(styles, [(style, lambda s: True), (xstyle, has_pair), (vstyle, has_pair),
                                 (wstyle, has_pair)])
        with gr.Tab("Training report"):
            report_tab()
    return demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``app`` command's flags."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("STYLENET_PORT", 7860)),
                        help="(default: $STYLENET_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="the shipped models (default: $STYLENET_WEIGHTS or the shipped weights/)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests run at once (each uses the CPU fully)")
    parser.add_argument("--queue-size", type=int, default=32,
                        help="requests waiting their turn; beyond that a request is refused at once as busy")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="styles trained in the app and their jobs (default: $STYLENET_USER_MODELS or "
                             "the cache folder)")
    parser.add_argument("--train-photos", type=Path, default=None,
                        help="the training photos for new styles (default: $STYLENET_DATA or data/train)")


def run(args: argparse.Namespace) -> int:
    """Load the styles, start the job runner and serve until stopped."""
    Image.MAX_IMAGE_PIXELS = MAX_UPLOAD_PIXELS
    weights = args.weights_dir or paths.weights_dir()
    shipped = load_styles(weights)
    try:
        jobs = JobStore(args.models_dir, args.train_photos, reserved=tuple(shipped))
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    styles = StyleRegistry(shipped, user_style, jobs)
    styles.refresh()
    Runner(jobs, on_change=styles.refresh).start()  # trains queued jobs, one at a time
    demo = build(styles, jobs)
    # A bounded queue keeps memory bounded: when it is full a request is refused at once (the browser
    # shows "This application is currently busy", gradio_client raises "Queue is full") instead of hanging.
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD_BYTES,
                show_error=True,
                # Gradio serves files under the working folder and these only: the user styles' paintings
                # and previews, the shipped paintings and the example photos (wherever the app starts)
                allowed_paths=[str(jobs.root), str(weights / "styles"), str(paths.examples_dir())])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stylenet app", description="The web app: BN and IN side by side.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
