"""The "Why IN?" tab: the norms explained, four live experiments on the user's photo, and (e) flicker.

Every experiment runs on private copies of the style's models (``stylenet.explain``), never on the
shared ones.
"""
from __future__ import annotations

from collections.abc import Mapping

import gradio as gr
import torch

from .. import explain, paths
from ..flicker import flicker, stylize_clip, synthetic_clip, warp
from ..images import open_image
from ..runtime import to_pil, to_tensor
from ..temporal import STABILIZERS, stabilized
from .sessions import LOCAL, Sessions
from .styles import Style, StyleRegistry, pair_of, style_dropdown
from .uploads import ResultFiles, example_photos, photo_input, read_upload

EXPLAIN_SIDE = 256  # the experiments run several forwards: keep them small and snappy
FLICKER_SIDE = 512  # the photo the flicker pan is cut from
EXPERIMENT_FRAMES, EXPERIMENT_SIZE = 8, (160, 120)

EXPLAIN_TEXT = (
    "All four layers compute *(x − mean) / std* and then a learned per-channel scale and shift; they differ "
    "in **which values share one mean and variance**:\n\n"
    "- **BN** — per channel over the whole batch (N, H, W). At test time it uses running averages from "
    "training, so outputs depend on the batch while training and on the training data afterwards.\n"
    "- **IN** — per image *and* channel over (H, W). Identical at train and test time, and it strips each "
    "image's own contrast and colour statistics — exactly the 'style' of the input photo.\n"
    "- **LN** — per image over (C, H, W). "
    "**GN** — per image over groups of channels: G = 1 is LN, G = C is IN.")

FLICKER_TEXT = (
    "### (e) Where IN costs you: flicker on video\n"
    "IN recomputes its statistics on every frame, so when the picture changes — a pan brings new "
    "content in — the normalization of *every* pixel changes with it and the colours shift from frame "
    "to frame. BN's statistics are constants. Each stylized frame is warped onto the next with the "
    "camera's exact motion; what remains is flicker (lower is steadier). *Tone* flicker is the shift of "
    "the mean colour. The stability option smooths IN's statistics over time (EMA) without retraining.")


def experiments(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str,
                owner: str = LOCAL) -> tuple:
    """The four live experiments on the user's photo, for the style's BN and IN models: three
    galleries with their captions (files in ``owner``'s area), and the statistics figure."""
    pair_of(styles, style)  # refuses a style without both models, in one line
    img = read_upload(photo, EXPLAIN_SIDE)
    x = to_tensor(img).unsqueeze(0)
    others = torch.stack([to_tensor(open_image(p)[0].resize(img.size)) for p in example_photos(3)])
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
                           (to_pil(evaluated), "BN, eval mode (running statistics)")], owner),
            f"**Mean abs difference: {d_mode:.4f}** — BN's output depends on the mode.",
            files.gallery([
                (to_pil(explain.diff_image(bn_alone, bn_batched)), f"BN |alone − batched| ×4: {d_bn:.4f}"),
                (to_pil(explain.diff_image(in_alone, in_batched)), f"IN |alone − batched| ×4: {d_in:.4f}")], owner),
            f"**BN changes by {d_bn:.4f}, IN by {d_in:.4f}** (mean abs difference, train mode, batch of 4).",
            files.gallery([(to_pil(lo), "photo, contrast ×0.4"), (to_pil(hi), "photo, contrast ×1.6"),
                           (to_pil(bn_lo), "BN on low"), (to_pil(bn_hi), "BN on high"),
                           (to_pil(in_lo), "IN on low"), (to_pil(in_hi), "IN on high")], owner),
            f"**Low vs high contrast: BN outputs differ by {c_bn:.4f}, IN outputs by {c_in:.4f}** — IN removes "
            "per-image contrast before styling.",
            stats)


def flicker_pan(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str,
                owner: str = LOCAL) -> tuple[list, str]:
    """(e) A pan over the user's photo through BN, IN and IN + EMA: the warped difference images and
    each one's flicker."""
    models = pair_of(styles, style)
    clip, cameras = synthetic_clip(read_upload(photo, FLICKER_SIDE), "pan", EXPERIMENT_SIZE, EXPERIMENT_FRAMES)
    variants = {"BN": models["batch"], "IN": models["instance"],
                "IN + EMA": stabilized(models["instance"], STABILIZERS["ema"])}
    shown, lines = [], []
    for label, stylizer in variants.items():
        styled = stylize_clip(stylizer.forward, clip)
        measured = flicker(styled, cameras)
        middle = len(styled) // 2
        warped, _ = warp(styled[middle - 1], cameras[middle - 1], cameras[middle])
        shown.append((to_pil(explain.diff_image(warped, styled[middle])), f"{label}: {measured.error:.4f}"))
        lines.append(f"{label} {measured.error:.4f} (tone ×1000: {1000 * measured.tone:.2f})")
    return files.gallery(shown, owner), (f"**Pan over your photo, {EXPERIMENT_FRAMES} frames at {EXPERIMENT_SIZE[0]}x{EXPERIMENT_SIZE[1]}"
                   f" — flicker: {', '.join(lines)}.**")


def why_in_tab(registry: StyleRegistry, sessions: Sessions, files: ResultFiles, heavy: dict) -> gr.Dropdown:
    """Build the tab inside the caller's ``gr.Tab``; returns its style list. ``heavy``: the app-wide
    concurrency group the experiments run in."""
    gr.Markdown(EXPLAIN_TEXT)
    gr.Plot(explain.norm_axes_figure(), label="Which axes each norm averages over")
    with gr.Row():
        photo = photo_input("Photo for the experiments", 220)
        style = style_dropdown(registry.view(None), registry.names())
    run = gr.Button("Run the experiments", variant="primary")
    gr.Markdown("### (a) BN: train mode vs eval mode")
    a_img, a_txt = gr.Gallery(columns=2, height=220), gr.Markdown()
    gr.Markdown("### (b) Alone vs in a batch with three other photos")
    b_img, b_txt = gr.Gallery(columns=2, height=220), gr.Markdown()
    gr.Markdown("### (c) Contrast test: the same photo at low and high contrast")
    c_img, c_txt = gr.Gallery(columns=6, height=200), gr.Markdown()
    gr.Markdown("### (d) Feature statistics around the first norm layer")
    d_plot = gr.Plot()
    gr.Markdown(FLICKER_TEXT)
    table = paths.figures_dir() / "flicker.md"
    gr.Markdown(table.read_text() if table.is_file() else "Run `python scripts/flicker.py` for the measured table.")
    if (paths.figures_dir() / "flicker.png").is_file():
        gr.Image(str(paths.figures_dir() / "flicker.png"), label="Flicker vs style", interactive=False)
    e_img = gr.Gallery(columns=3, height=200, label="Your photo, panned: |warped frame − next| ×4")
    e_txt = gr.Markdown()

    def why_in(photo: str | None, style: str, request: gr.Request = None):
        """The four live experiments on the user's photo, for the style's BN and IN models."""
        owner = sessions.owner(request)
        return experiments(registry.view(owner), files, photo, style, owner)

    def why_in_flicker(photo: str | None, style: str, request: gr.Request = None):
        """(e) flicker of BN, IN and IN + EMA on a pan over the user's photo."""
        owner = sessions.owner(request)
        return flicker_pan(registry.view(owner), files, photo, style, owner)

    done = run.click(why_in, [photo, style], [a_img, a_txt, b_img, b_txt, c_img, c_txt, d_plot], api_name="why_in",
                     **heavy)
    done.success(why_in_flicker, [photo, style], [e_img, e_txt], api_name="why_in_flicker", **heavy)
    return style
