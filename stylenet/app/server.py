"""The whole app: its tabs in one ``gr.Blocks`` (``build``), and ``stylenet app`` to serve it.

Needs no training and no VGG: it reads the shipped models' ``manifest.json`` at start. The Any painting
tab is there only where the AdaIN decoder is shipped and the VGG19 weights are installed (``load_adain``).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from .. import paths
from ..images import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS
from ..jobs import JobError, JobStore, Limits, Runner, estimate
from ..jobs.job import add_memory_argument
from .any_painting import AdaINModels, any_painting_tab, load_adain
from .compare import compare_tab
from .report import report_tab
from .sessions import OwnerCookie, Sessions
from .styles import StyleRegistry, has_pair, load_styles, style_lists, user_style
from .train import train_tab
from .uploads import ResultFiles, gradio_cache, kept_files
from .video import video_tab, webcam_tab
from .why_in import why_in_tab

# What the components alone do not do: BN and IN named on the slider's halves (at the bottom: the block label
# covers the top), pictures and clips never enlarged past their own size, gallery captions that leave the picture
# visible, an upload box whose long label does not cover its drop text, the report's grid and table readable, and
# on a phone the result first, the all-norms row in two columns, every tab on the bar (Gradio hides those that do
# not fit behind "…") and the report's wide grid and table scrolling inside their box.
CSS = """
#bn-in-slider .slider-wrap > .wrap { position: relative; width: fit-content; max-width: 100%; margin: 0 auto; }
#bn-in-slider img { width: auto !important; max-width: 100%; }
#bn-in-slider .slider-wrap > .wrap::before, #bn-in-slider .slider-wrap > .wrap::after { position: absolute; bottom: 6px;
  z-index: 10; padding: 1px 6px; border-radius: 4px; background: rgba(0, 0, 0, 0.7); color: #fff; font-size: 0.85em;
  font-weight: 600; pointer-events: none; box-shadow: 0 0 0 1px rgba(255, 255, 255, 0.6); }
#bn-in-slider .slider-wrap > .wrap::before { content: "Batch Norm"; left: 6px; }
#bn-in-slider .slider-wrap > .wrap::after { content: "Instance Norm"; right: 6px; }
#all-results .grid-wrap, .whole-gallery .grid-wrap { height: auto !important; min-height: 0 !important; max-height: none !important; }
.caption-label { font-size: 0.75em !important; padding: 1px 4px !important; }
#video-bn video, #video-in video { width: auto !important; height: auto !important; max-width: 100%; margin: 0 auto; }
#video-note { min-height: 4.5em; }  /* the run's progress shows here: an empty note has no height */
#train-photos > label[data-testid="block-label"] { position: static !important; }
#train-photos .upload-container { height: auto !important; min-height: 90px; }
#report-grid .grid-scroll, #report-table { overflow-x: auto; }
#report-grid .grid-inner { min-width: 720px; }
#report-grid .grid-head { display: flex; font-weight: 600; text-align: center; }
#report-grid .grid-head > span { flex: 1; }
#report-grid img { display: block; width: 100%; }
#report-table table { white-space: nowrap; }
@media (max-width: 640px) {
  #compare-results, #any-painting-results { order: -1; }
  #all-results .grid-container, .whole-gallery .grid-container { --grid-cols: 2 !important; }
  .tab-wrapper .tab-container > button { font-size: 13px !important; padding: 4px 5px !important; min-width: 0 !important; }
  .tab-wrapper .tab-container { gap: 0 !important; flex-wrap: wrap !important; height: auto !important; }
  .tab-wrapper { height: auto !important; }
}
"""
HEAVY = "heavy"  # the concurrency group of every handler that stylizes, trains or decodes much
GRADIO_CACHE_RETENTION = (600, 3600)  # every 10 minutes, Gradio's cache (uploads, results) loses files over an hour old
GRADIO_CACHE_CAP = {"max_bytes": 2**30, "max_files": 2000, "every_s": 60}  # and, every minute, its oldest beyond these


def build(styles: StyleRegistry, jobs: JobStore | None = None, concurrency: int = 2,
          sessions: Sessions | None = None, adain: AdaINModels | None = None) -> gr.Blocks:
    """The app's Blocks, ready to queue and launch (or to inspect in a test without a server).

    Every heavy handler (Compare, Any painting, Why IN?, Video, Webcam, a training submission) runs in
    one concurrency group, ``HEAVY``: at most ``concurrency`` of them at once across the whole app, the
    rest waiting in the one queue. ``adain``: the shipped AdaIN decoder; without it there is no Any
    painting tab and no experiment (f) in Why IN?.
    """
    if not styles.names():
        raise SystemExit("no models found: the manifest is missing or empty (see docs/training.md)")
    sessions = sessions or Sessions()
    files = ResultFiles()
    heavy = {"concurrency_id": HEAVY, "concurrency_limit": concurrency}
    with gr.Blocks(title="stylenet: BN vs IN", delete_cache=GRADIO_CACHE_RETENTION) as demo:
        gr.Markdown("# stylenet — Batch Norm vs Instance Norm for fast style transfer\n"
                    "Same network, same recipe, same training photos: only the normalization layer differs.")
        with gr.Tab("Compare"):
            style = compare_tab(styles, sessions, files, heavy, demo)
        if adain is not None:
            with gr.Tab("Any painting"):
                any_painting_tab(styles, adain, sessions, files, heavy)
        with gr.Tab("Why IN?"):
            xstyle = why_in_tab(styles, sessions, files, heavy, adain)
        with gr.Tab("Video"):
            vstyle = video_tab(styles, sessions, files, heavy, demo)
        with gr.Tab("Webcam"):
            wstyle = webcam_tab(styles, sessions, heavy, demo)
        if jobs is not None:
            with gr.Tab("Train a style"):
                train_tab(jobs, styles, sessions, files, heavy, demo)
            style_lists(styles, sessions, [(style, lambda norms: True), (xstyle, has_pair), (vstyle, has_pair),
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
    parser.add_argument("--concurrency", type=int, default=2,
                        help="heavy requests (Compare, Any painting, Why IN?, Video, Webcam, Train) run at once, "
                             "app-wide")
    parser.add_argument("--queue-size", type=int, default=32,
                        help="requests waiting their turn; beyond that a request is refused at once as busy")
    parser.add_argument("--share-styles", action="store_true",
                        default=os.environ.get("STYLENET_SHARE_STYLES", "") not in ("", "0"),
                        help="offer every finished style to every user (default: $STYLENET_SHARE_STYLES, else "
                             "off: a style is its trainer's alone)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="styles trained in the app and their jobs (default: $STYLENET_USER_MODELS or "
                             "the cache folder)")
    parser.add_argument("--train-photos", type=Path, default=None,
                        help="the training photos for new styles (default: $STYLENET_DATA or data/train)")
    add_memory_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Load the styles, start the job runner and serve until stopped."""
    Image.MAX_IMAGE_PIXELS = MAX_UPLOAD_PIXELS
    weights = args.weights_dir or paths.weights_dir()
    shipped = load_styles(weights)
    try:
        jobs = JobStore(args.models_dir, args.train_photos, Limits(memory=args.job_memory),
                        reserved=tuple(shipped))
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    styles = StyleRegistry(shipped, user_style, jobs, shared=args.share_styles)
    if shipped and (flagship := shipped[styles.names()[0]].painting):
        estimate.start(jobs.root, flagship, jobs.presets)  # each preset's time here, for the Train tab
    jobs.prune()  # the retention policy, at start; the runner applies it while running
    styles.refresh()
    Runner(jobs, on_change=styles.refresh).start()  # trains queued jobs, one at a time
    kept: set[str] = set()  # the page's own pictures in the cache, never capped: filled once the Blocks exist
    gradio_cache(**GRADIO_CACHE_CAP, kept=kept)  # before the Blocks: their components keep the cache folder they find
    demo = build(styles, jobs, args.concurrency, adain=load_adain(weights))
    kept.update(kept_files(demo))
    # A bounded queue keeps memory bounded: when it is full a request is refused at once (the browser
    # shows "This application is currently busy", gradio_client raises "Queue is full") instead of hanging.
    # api_open=False: no request skips the queue (Gradio opens /gradio_api/run/<api> by default, which
    # would run a heavy handler outside the app-wide limit); only the light handlers (queueing.LIGHT),
    # which never join the queue, still answer there.
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency, api_open=False)
    # SIGTERM ends the process through SystemExit, so the atexit cleanups (results areas) run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD_BYTES,
                show_error=True, css=CSS, app_kwargs={"middleware": [Middleware(OwnerCookie)]},
                # Gradio serves its own cache and these only: the shipped paintings and the example photos
                # (wherever the app starts). Never the models folder: a user's results, previews and
                # paintings are copied into that user's results area (uploads.ResultFiles) and served from
                # Gradio's cache.
                allowed_paths=[str(weights / "styles"), str(paths.examples_dir())])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stylenet app", description="The web app: BN and IN side by side.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
