"""stylenet web app: BN and IN side by side, and a "why IN?" explorer.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--weights-dir weights]

Needs no training and no VGG: it reads weights/manifest.json at start.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from stylenet import explain, ui_train, ui_video
from stylenet.checkpoint import load_model
from stylenet.images import ImageError, limit_size, open_image
from stylenet.jobs import (
    DEFAULT_PHOTOS,
    JobError,
    JobStore,
    Runner,
    UserStyle,
    default_models_dir,
)
from stylenet.norms import NORM_KINDS, norm_label
from stylenet.runtime import to_pil, to_tensor
from stylenet.style_registry import StyleRegistry
from stylenet.stylize import Stylizer
from stylenet.weights import WEIGHTS_DIR, load_manifest

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
MAX_UPLOAD = "15mb"
MAX_PIXELS = 40_000_000  # refused before decoding
MAX_SIDE = 1024  # resolution cap for the UI: bounds memory and latency per request
EXPLAIN_SIDE = 256  # the experiments run several forwards: keep them small and snappy


@dataclass
class Style:
    """One painting and its models (norm -> stylizer), plus the un-optimized ones for the experiments.

    All requests share these objects, so no request may change them: ``Stylizer`` optimizes a copy
    of its own and the experiments (``stylenet.explain``) run on private copies.
    """

    name: str
    title: str
    painting: Path | None
    models: dict[str, Stylizer]
    raw: dict[str, torch.nn.Module]

    def add(self, norm: str, path: Path) -> None:
        raw, meta = load_model(path)
        self.models[norm] = Stylizer(raw, meta, torch.device("cpu"))
        self.raw[norm] = raw


def load_styles(weights_dir: Path) -> dict[str, Style]:
    styles: dict[str, Style] = {}
    for entry in sorted(load_manifest(weights_dir), key=lambda e: NORM_KINDS.index(e["norm"])):
        if entry.get("experiment"):
            continue
        style = styles.setdefault(entry["style"], Style(
            entry["style"], entry.get("title", entry["style"]),
            weights_dir / entry["painting"] if entry.get("painting") else None, {}, {}))
        style.add(entry["norm"], weights_dir / entry["file"])
    return styles


def user_style(found: UserStyle) -> Style:
    """A finished training job's models, offered beside the shipped styles."""
    style = Style(found.name, found.name, found.painting, {}, {})
    for norm in sorted(found.files, key=NORM_KINDS.index):
        style.add(norm, found.files[norm])
    return style


def read_upload(path: str | None, max_side: int) -> Image.Image:
    """The user's photo, safely opened, capped at ``max_side``; gr.Error (shown in the UI) otherwise."""
    if not path:
        raise gr.Error("Upload a photo or pick an example first.")
    try:
        img, _ = open_image(path, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        raise gr.Error(str(exc).replace(str(path), Path(path).name)) from None
    return limit_size(img, max_side)


class ResultFiles:
    """Results go to gradio as PNG files of the request's own, never as PIL images.

    Gradio writes a returned PIL image in place, to ``cache/<hash of its bytes>/image.png``: two
    requests with the same result (an example photo at default settings) rewrite that file while
    the first one's client downloads it, and the download comes back truncated (seen with 16 clients
    at once). A returned file is copied under a temporary name and renamed, which is safe. Only the
    last ``keep`` galleries' files are kept: gradio copies them as their request ends, long before.
    """

    def __init__(self, keep: int = 256) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stylenet-results-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.keep, self.folders, self.lock = keep, deque(), threading.Lock()

    def gallery(self, items: list[tuple[Image.Image, str]]) -> list[tuple[str, str]]:
        """(image, caption) pairs as (PNG path, caption) pairs, in a new folder of their own."""
        folder = Path(tempfile.mkdtemp(dir=self.root))
        saved = []
        for i, (img, caption) in enumerate(items):
            img.save(folder / f"{i}.png")
            saved.append((str(folder / f"{i}.png"), caption))
        with self.lock:
            self.folders.append(folder)
            while len(self.folders) > self.keep:
                shutil.rmtree(self.folders.popleft(), ignore_errors=True)
        return saved


def photo_input(label: str, height: int, elem_id: str | None = None) -> gr.Image:
    """An image upload whose bad files become a friendly gr.Error instead of Gradio's internal one.

    An uploaded file's path is passed on without Gradio opening it (Gradio's own preprocessing
    calls ``PIL.Image.open`` with every plugin enabled), so it is decoded once, in ``read_upload``,
    through the raster-format allowlist and behind the pixel-count guard. Only a paste from the
    clipboard (a data: URL) goes through Gradio's decoding, to become a file.
    """
    component = gr.Image(type="filepath", image_mode=None, label=label, sources=["upload", "clipboard"],
                         height=height, elem_id=elem_id)
    gradio_preprocess = component.preprocess

    def preprocess(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        try:
            return gradio_preprocess(payload)
        except Exception as exc:  # any decoder error: the user only needs to know the file is unusable
            name = getattr(payload, "orig_name", None) or "upload"
            raise gr.Error(f"{name}: not a readable image ({type(exc).__name__})") from None

    component.preprocess = preprocess
    return component


def build(styles: StyleRegistry, jobs: JobStore | None = None) -> gr.Blocks:
    names = sorted(styles, key=lambda n: n != "starry_night")  # the flagship style first
    if not names:
        raise SystemExit("no models found: weights/manifest.json is missing or empty (see README: training)")
    files = ResultFiles()

    def painting(name: str) -> str | None:
        p = styles[name].painting
        return str(p) if p and p.is_file() else None

    def compare(photo: str | None, style: str, strength: float = 1.0, preserve_color: bool = False,
                max_side: int = 768):
        """Run every norm's model for ``style`` on the photo; BN | IN for the slider, all for the row."""
        if style not in styles:
            raise gr.Error(f"Unknown style {style!r}; choose one of: {', '.join(names)}")
        img = read_upload(photo, int(min(max_side, MAX_SIDE)))
        results = {}
        for norm, stylizer in styles[style].models.items():
            out, seconds = stylizer.timed(img, strength=float(strength), preserve_color=bool(preserve_color))
            results[norm] = (out, f"{norm_label(norm)} — {seconds:.2f} s")
        gallery = files.gallery(list(results.values()))
        paths = {norm: path for norm, (path, _) in zip(results, gallery)}
        pair = (paths.get("batch", img), paths.get("instance", img))
        note = f"{img.width}x{img.height} px, {len(results)} models"
        return pair, gallery, note

    def why_in(photo: str | None, style: str):
        """The four live experiments on the user's photo, for the style's BN and IN models."""
        if style not in styles or not ui_video.has_pair(styles[style]):
            raise gr.Error("This style needs both a BN and an IN model")
        img = read_upload(photo, EXPLAIN_SIDE)
        x = to_tensor(img).unsqueeze(0)
        others = torch.stack([to_tensor(o.resize(img.size)) for o in example_photos(3)])
        bn, inorm = styles[style].raw["batch"], styles[style].raw["instance"]
        trained, evaluated, d_mode = explain.train_vs_eval(bn, x)
        bn_alone, bn_batched, d_bn = explain.batch_dependence(bn, x, others)
        in_alone, in_batched, d_in = explain.batch_dependence(inorm, x, others)
        bn_lo, bn_hi, c_bn = explain.contrast_sensitivity(bn, x)
        in_lo, in_hi, c_in = explain.contrast_sensitivity(inorm, x)
        stats = explain.statistics_figure({"BN": explain.first_norm_statistics(bn, x),
                                           "IN": explain.first_norm_statistics(inorm, x)})
        lo, hi = explain.with_contrast(x, 0.4), explain.with_contrast(x, 1.6)
        return (files.gallery([(to_pil(trained), "BN, train mode (batch statistics)"),
                               (to_pil(evaluated), "BN, eval mode (running statistics)")]),
                f"**Mean abs difference: {d_mode:.4f}** — BN's output depends on the mode.",
                files.gallery([
                    (to_pil(explain.diff_image(bn_alone, bn_batched)), f"BN |alone − batched| ×4: {d_bn:.4f}"),
                    (to_pil(explain.diff_image(in_alone, in_batched)), f"IN |alone − batched| ×4: {d_in:.4f}")]),
                f"**BN changes by {d_bn:.4f}, IN by {d_in:.4f}** (mean abs difference, train mode, batch of 4).",
                files.gallery([(to_pil(lo), "photo, contrast ×0.4"), (to_pil(hi), "photo, contrast ×1.6"),
                               (to_pil(bn_lo), "BN on low"), (to_pil(bn_hi), "BN on high"),
                               (to_pil(in_lo), "IN on low"), (to_pil(in_hi), "IN on high")]),
                f"**Low vs high contrast: BN outputs differ by {c_bn:.4f}, IN outputs by {c_in:.4f}** — IN removes "
                "per-image contrast before styling.",
                stats)

    with gr.Blocks(title="stylenet: BN vs IN") as demo:
        gr.Markdown("# stylenet — Batch Norm vs Instance Norm for fast style transfer\n"
                    "Same network, same recipe, same training photos: only the normalization layer differs.")
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = photo_input("Your photo", 300)
                    # custom values: styles trained while the app runs are valid in every session and the API
                    style = gr.Dropdown(names, value=names[0], label="Style", allow_custom_value=True)
                    thumb = gr.Image(value=painting(names[0]), label="Painting", interactive=False, height=160)
                    strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength (0 = photo, 1 = full style)")
                    keep = gr.Checkbox(label="Preserve the photo's colours")
                    side = gr.Slider(128, MAX_SIDE, value=768, step=32, label="Resolution cap (longest side, px)")
                    run = gr.Button("Stylize with BN and IN", variant="primary", elem_id="compare-btn")
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="BN  |  IN  (drag to compare)", type="pil", elem_id="bn-in-slider",
                                            max_height=520)
                    row = gr.Gallery(label="All norms (click to enlarge, download from the viewer)", columns=5,
                                     height=240, elem_id="all-results", format="png")
                    note = gr.Markdown()
            gr.Examples([[str(p)] for p in example_photos(4, paths=True)], inputs=[photo], label="Example photos")
            style.change(painting, style, thumb, api_name=False)
            run.click(compare, [photo, style, strength, keep, side], [slider, row, note], api_name="compare")
        with gr.Tab("Why IN?"):
            gr.Markdown(explain_text())
            gr.Plot(explain.norm_axes_figure(), label="Which axes each norm averages over")
            with gr.Row():
                xphoto = photo_input("Photo for the experiments", 220)
                xstyle = ui_video.style_dropdown(styles, names)
            xrun = gr.Button("Run the experiments", variant="primary")
            gr.Markdown("### (a) BN: train mode vs eval mode")
            a_img, a_txt = gr.Gallery(columns=2, height=220), gr.Markdown()
            gr.Markdown("### (b) Alone vs in a batch with three other photos")
            b_img, b_txt = gr.Gallery(columns=2, height=220), gr.Markdown()
            gr.Markdown("### (c) Contrast test: the same photo at low and high contrast")
            c_img, c_txt = gr.Gallery(columns=6, height=200), gr.Markdown()
            gr.Markdown("### (d) Feature statistics around the first norm layer")
            d_plot = gr.Plot()
            experiments = xrun.click(why_in, [xphoto, xstyle], [a_img, a_txt, b_img, b_txt, c_img, c_txt, d_plot],
                                     api_name="why_in")
            ui_video.flicker_experiment(styles, read_upload, xphoto, xstyle, experiments)
        with gr.Tab("Video"):
            vstyle = ui_video.video_tab(styles, names)
        with gr.Tab("Webcam"):
            wstyle = ui_video.webcam_tab(styles, names)
        if jobs is not None:
            with gr.Tab("Train a style"):
                ui_train.train_tab(jobs, styles, photo_input, photo)
            ui_train.style_lists(styles, jobs, [(style, lambda s: True), (xstyle, ui_video.has_pair),
                                                 (vstyle, ui_video.has_pair), (wstyle, ui_video.has_pair)])
        with gr.Tab("Training report"):
            report_tab()
    return demo


def example_photos(count: int, paths: bool = False) -> list:
    files = sorted(EXAMPLES.glob("skimage_*.jpg"))[:count] or sorted(EXAMPLES.glob("*.jpg"))[:count]
    return files if paths else [open_image(f)[0] for f in files]


def explain_text() -> str:
    return ("All four layers compute *(x − mean) / std* and then a learned per-channel scale and shift; they differ "
            "in **which values share one mean and variance**:\n\n"
            "- **BN** — per channel over the whole batch (N, H, W). At test time it uses running averages from "
            "training, so outputs depend on the batch while training and on the training data afterwards.\n"
            "- **IN** — per image *and* channel over (H, W). Identical at train and test time, and it strips each "
            "image's own contrast and colour statistics — exactly the 'style' of the input photo.\n"
            "- **LN** — per image over (C, H, W). "
            "**GN** — per image over groups of channels: G = 1 is LN, G = C is IN.")


def report_tab() -> None:
    """Loss curves, the comparison grid and the measured table, as written by scripts/compare.py."""
    table = ui_video.FIGURES / "comparison.md"
    gr.Markdown(table.read_text() if table.is_file() else "Run `python scripts/compare.py` to build the report.")
    for name, label in (("loss_curves.png", "Training loss curves, BN vs IN"),
                        ("contrast_control.png", "Huang & Belongie control: contrast-normalized photos"),
                        ("grid.png", "Held-out photos: painting, BN, IN, LN, GN")):
        if (ui_video.FIGURES / name).is_file():
            gr.Image(str(ui_video.FIGURES / name), label=label, interactive=False)


def main() -> None:
    p = argparse.ArgumentParser(description="stylenet web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("STYLENET_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--concurrency", type=int, default=2, help="requests run at once (each uses the CPU fully)")
    p.add_argument("--queue-size", type=int, default=32,
                   help="requests waiting their turn; beyond that a request is refused at once as busy")
    p.add_argument("--models-dir", type=Path, default=default_models_dir(),
                   help="where styles trained in the app and their jobs live (default: in the user's cache folder)")
    p.add_argument("--train-photos", type=Path, default=DEFAULT_PHOTOS, help="the training photos for new styles")
    args = p.parse_args()
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    shipped = load_styles(args.weights_dir)
    try:
        jobs = JobStore(args.models_dir, args.train_photos, reserved=tuple(shipped))
    except JobError as exc:
        p.error(str(exc))
    styles = StyleRegistry(shipped, user_style)
    styles.sync(jobs.user_styles())
    Runner(jobs, on_change=lambda: styles.sync(jobs.user_styles())).start()  # trains queued jobs, one at a time
    demo = build(styles, jobs)
    # A bounded queue keeps memory bounded: when it is full a request is refused at once (the browser
    # shows "This application is currently busy", gradio_client raises "Queue is full") instead of hanging.
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
                show_error=True, allowed_paths=[str(jobs.root)])  # user styles' paintings and previews


if __name__ == "__main__":
    main()
