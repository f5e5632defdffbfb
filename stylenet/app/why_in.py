"""The "Why IN?" tab: the norms explained, four live experiments on the user's photo, (e) flicker and,
where the AdaIN decoder is shipped, (f) a painting's style as its statistics, per image or per batch.

Every experiment runs on private copies of the style's models (``stylenet.explain``), never on the
shared ones; (f) runs the shared AdaIN decoder, which changes nothing when it runs.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import gradio as gr
import torch
from PIL import Image

from .. import explain, paths
from ..figures import contact_sheet
from ..flicker import flicker, stylize_clip, synthetic_clip, warp
from ..images import open_image
from ..runtime import to_pil, to_tensor
from ..temporal import STABILIZERS, stabilized
from .any_painting import AdaINModels, shipped_paintings
from .queueing import LIGHT
from .sessions import LOCAL, Sessions
from .styles import Style, StyleRegistry, one_line, pair_of, style_dropdown
from .uploads import (
    ResultFiles,
    example_photo,
    example_photos,
    photo_input,
    read_upload,
)

EXPLAIN_SIDE = 256  # the experiments run several forwards: keep them small and snappy
FLICKER_SIDE = 512  # the photo the flicker pan is cut from
EXPERIMENT_FRAMES, EXPERIMENT_SIZE = 8, (160, 120)

INTRO = (
    "Four experiments on your photo (an example photo is already in place) show what the normalization layer "
    "does. Each one ends in a one-line verdict; the numbers are mean pixel differences on a 0–1 scale.")

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
    "### (e) Where Instance Norm costs you: flicker on video\n"
    "Instance Norm re-measures every frame, so when new content comes into view the colours of the whole "
    "picture can shift from one frame to the next; Batch Norm's stored averages never change. Below, your photo "
    "is panned like a camera, and the difference between each stylized frame and the next (with the motion taken "
    "out) is shown: darker is steadier.")

STATISTICS_TEXT = (
    "### (f) A painting's style as statistics: one set per image (IN) or one per batch (BN)\n"
    "The Any painting tab's network paints with nothing of a painting but its statistics: a mean and a spread per "
    "feature channel, measured on that one image, as Instance Norm measures them. Below, your photo is painted with "
    "each shipped painting twice: with the painting's own statistics, and with those a Batch Norm layer would hold "
    "for a batch of all the paintings, one set for every image alike. The number is the style distance of each "
    "result to its own painting (lower is closer; Gram matrices of five VGG layers at 512 px).")

FLICKER_DETAIL = (
    "Flicker is the mean |difference| between a stylized frame, warped onto the next with the camera's exact "
    "motion, and that next frame; *tone* flicker is the shift of the mean colour (×1000). The stability "
    "option (IN + EMA) smooths IN's statistics over time without retraining: the Video tab's Steadier IN box.")


def verdict(name: str, expected: str, otherwise: str, more: tuple[str, float], less: tuple[str, float]) -> str:
    """One plain line on how the experiment came out on this photo: ``expected`` when ``more`` (a label
    and its number) is the larger as shown (three decimals), as the norms predict, ``otherwise`` when
    this photo says else: a verdict never contradicts the numbers beside it."""
    (a, x), (b, y) = more, less
    return f"**Verdict ({name}):** {expected if round(x, 3) > round(y, 3) else otherwise} ({a} {x:.3f}, {b} {y:.3f})."


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
    return (files.gallery([(to_pil(trained), "BN while training"),
                           (to_pil(evaluated), "BN in use, after training")], owner),
            (f"**Verdict (a):** Batch Norm gives a different picture while training and in use (they differ by "
             f"{d_mode:.3f}): it normalizes with the batch in one and with stored averages in the other. Instance "
             "Norm does the same in both."),
            files.gallery([
                (to_pil(explain.diff_image(bn_alone, bn_batched)), f"BN: change ×4 ({d_bn:.3f})"),
                (to_pil(explain.diff_image(in_alone, in_batched)), f"IN: change ×4 ({d_in:.3f})")],
                owner),
            verdict("b", "Batch Norm's picture of your photo changes when three other photos share its batch; "
                    "Instance Norm's does not", "here neither changed much with its batch-mates",
                    ("Batch Norm", d_bn), ("Instance Norm", d_in)),
            files.gallery([(to_pil(lo), "photo, low contrast"), (to_pil(hi), "photo, high contrast"),
                           (to_pil(bn_lo), "BN on low"), (to_pil(bn_hi), "BN on high"),
                           (to_pil(in_lo), "IN on low"), (to_pil(in_hi), "IN on high")], owner),
            verdict("c", "Instance Norm paints the low- and high-contrast photo more alike: it removes the photo's "
                    "own contrast before painting", "on this photo both changed about as much",
                    ("Batch Norm", c_bn), ("Instance Norm", c_in)),
            stats)


def flicker_pan(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str,
                owner: str = LOCAL) -> tuple[list, str]:
    """(e) A pan over the user's photo through BN, IN and IN + EMA: the warped difference images and
    each one's flicker."""
    models = pair_of(styles, style)
    clip, cameras = synthetic_clip(read_upload(photo, FLICKER_SIDE), "pan", EXPERIMENT_SIZE, EXPERIMENT_FRAMES)
    variants = {"BN": models["batch"], "IN": models["instance"],
                "IN + EMA": stabilized(models["instance"], STABILIZERS["ema"])}
    shown, lines, errors = [], [], {}
    for label, stylizer in variants.items():
        styled = stylize_clip(stylizer.forward, clip)
        measured = flicker(styled, cameras)
        middle = len(styled) // 2
        warped, _ = warp(styled[middle - 1], cameras[middle - 1], cameras[middle])
        shown.append((to_pil(explain.diff_image(warped, styled[middle])), f"{label}: {measured.error:.4f}"))
        errors[label] = measured.error
        lines.append(f"{label} {measured.error:.4f} (tone ×1000: {1000 * measured.tone:.2f})")
    text = verdict("e", "Instance Norm flickers more than Batch Norm on this pan",
                   "on this pan Instance Norm flickered about as much as Batch Norm or less: a pan over one still "
                   "photo brings little new content into view, and on real clips it does flicker more, as the "
                   "measured table in the details shows. Here",
                   ("Instance Norm", errors["IN"]), ("Batch Norm", errors["BN"]))
    return files.gallery(shown, owner), (
        text + f"\n\nPan over your photo, {EXPERIMENT_FRAMES} frames at {EXPERIMENT_SIZE[0]}x{EXPERIMENT_SIZE[1]}: "
        + ", ".join(lines) + ".")


@dataclass(frozen=True)
class StatisticsPaintings:
    """(f)'s batch of paintings, by name, read and measured once (``of``) for every request."""

    pictures: dict[str, Image.Image]
    targets: explain.PaintingTargets

    @classmethod
    def of(cls, adain: AdaINModels, paintings: Mapping[str, Style]) -> StatisticsPaintings:
        pictures = {name: open_image(style.painting)[0] for name, style in paintings.items()}
        return cls(pictures, explain.PaintingTargets.of(adain.stylizer, adain.evaluator, list(pictures.values()),
                                                        EXPLAIN_SIDE))


def statistics_swap(adain: AdaINModels, paintings: StatisticsPaintings, files: ResultFiles, photo: str | None,
                    owner: str = LOCAL) -> tuple[list, str]:
    """(f) The photo painted by the AdaIN decoder with each painting's own statistics and with the batch's
    one set: one picture (a row per painting, in ``owner``'s area) and the verdict on the style distances."""
    img = read_upload(photo, EXPLAIN_SIDE)
    own, shared, d_own, d_batch = explain.instance_vs_batch_statistics(adain.stylizer, adain.evaluator, img,
                                                                       paintings.targets)
    sheet = files.folder(owner) / "statistics.png"
    contact_sheet(("painting", "own statistics", "batch statistics"),
                  [[p, o, shared] for p, o in zip(paintings.pictures.values(), own)],
                  sheet, side=200, row_labels=[name.replace("_", " ") for name in paintings.pictures])
    caption = "Rows: the paintings. Own statistics: per image, as IN measures them; batch: one set, as BN holds"
    return [(str(sheet), caption)], verdict(
        "f", "with its own statistics each painting's result is closer to that painting than with the batch's one "
        "set: batch statistics are one set for every image and cannot carry a per-image style; instance statistics "
        "can", "on this photo the batch's one set came as close",
        ("the batch's statistics", d_batch), ("each painting's own", d_own))


def whole_gallery(columns: int) -> gr.Gallery:
    """A row of results shown whole (not cropped to squares), captions on the pictures."""
    return gr.Gallery(columns=columns, height="auto", object_fit="contain", elem_classes="whole-gallery",
                      show_label=False)


def why_in_tab(registry: StyleRegistry, sessions: Sessions, files: ResultFiles, heavy: dict,
               adain: AdaINModels | None = None) -> gr.Dropdown:
    """Build the tab inside the caller's ``gr.Tab``; returns its style list. ``heavy``: the app-wide
    concurrency group the experiments run in; ``adain``: the shipped AdaIN decoder, for (f), which needs
    it and two shipped paintings at least (without them, (f) is left out)."""
    shipped = shipped_paintings(registry) if adain is not None else {}  # (f)'s batch: two at least
    paintings = None
    if adain is not None and len(shipped) >= 2:
        try:
            paintings = StatisticsPaintings.of(adain, shipped)
        except Exception as exc:  # noqa: BLE001 - a bad painting file leaves (f) out, not the app
            print(f"stylenet app: Why IN? (f) is left out: {one_line(exc)}", file=sys.stderr, flush=True)
    gr.Markdown(INTRO)
    with gr.Row():
        photo = photo_input("Photo for the experiments", 220, value=example_photo())
        style = style_dropdown(registry.view(None), registry.names())
    run = gr.Button("Run the experiments", variant="primary", elem_id="why-in-btn")
    with gr.Column(visible=False, elem_id="why-in-results") as results:  # shown once there is something to show
        gr.Markdown("### (a) Batch Norm while training vs in use")
        a_img, a_txt = whole_gallery(2), gr.Markdown(elem_classes="verdict")
        gr.Markdown("### (b) Your photo alone vs in a batch with three other photos\n"
                    "The pictures show how much the result changed (×4 to make it visible): black means no change.")
        b_img, b_txt = whole_gallery(2), gr.Markdown(elem_classes="verdict")
        gr.Markdown("### (c) The same photo at low and high contrast")
        c_img, c_txt = whole_gallery(6), gr.Markdown(elem_classes="verdict")
        gr.Markdown(FLICKER_TEXT)
        e_img, e_txt = whole_gallery(3), gr.Markdown(elem_classes="verdict")
        if paintings is not None:
            gr.Markdown(STATISTICS_TEXT)
            f_img, f_txt = whole_gallery(1), gr.Markdown(elem_classes="verdict")
    with gr.Accordion("Research detail: how the four norms differ", open=False):
        gr.Markdown(EXPLAIN_TEXT)
        gr.Plot(explain.norm_axes_figure(), label="Which axes each norm averages over")
        gr.Markdown("**(d) Feature statistics around the first norm layer** (after a run)")
        d_plot = gr.Plot(show_label=False)
    with gr.Accordion("Research detail: flicker measured on clips", open=False):
        gr.Markdown(FLICKER_DETAIL)
        table = paths.figures_dir() / "flicker.md"
        gr.Markdown(table.read_text() if table.is_file() else
                    "No measured table on this server: it comes with a source checkout of stylenet "
                    "(`python scripts/flicker.py` builds it).")
        if (paths.figures_dir() / "flicker.png").is_file():
            gr.Image(str(paths.figures_dir() / "flicker.png"), label="Flicker vs style", interactive=False)

    def why_in(photo: str | None, style: str, request: gr.Request = None):
        """The four live experiments on the user's photo, for the style's BN and IN models."""
        owner = sessions.owner(request)
        return experiments(registry.view(owner), files, photo, style, owner)

    def why_in_flicker(photo: str | None, style: str, request: gr.Request = None):
        """(e) flicker of BN, IN and IN + EMA on a pan over the user's photo."""
        owner = sessions.owner(request)
        return flicker_pan(registry.view(owner), files, photo, style, owner)

    def why_in_statistics(photo: str | None, request: gr.Request = None):
        """(f) the AdaIN decoder with each painting's own statistics vs the batch's one set."""
        owner = sessions.owner(request)
        return statistics_swap(adain, paintings, files, photo, owner)

    run.click(lambda: gr.Column(visible=True), None, results, api_name=False, show_progress="hidden", **LIGHT)
    done = run.click(why_in, [photo, style], [a_img, a_txt, b_img, b_txt, c_img, c_txt, d_plot], api_name="why_in",
                     **heavy)
    flickered = done.success(why_in_flicker, [photo, style], [e_img, e_txt], api_name="why_in_flicker", **heavy)
    if paintings is not None:
        flickered.success(why_in_statistics, [photo], [f_img, f_txt], api_name="why_in_statistics", **heavy)
    return style
