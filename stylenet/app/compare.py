"""The "Compare" tab: every norm's model for one style on the user's photo, BN | IN in a slider."""
from __future__ import annotations

import math
from collections.abc import Mapping

import gradio as gr

from ..norms import norm_label
from ..stylize import check_strength
from .styles import Style, style_dropdown
from .uploads import ResultFiles, example_photos, photo_input, read_upload

MAX_SIDE = 1024  # resolution cap for the UI: bounds memory and latency per request
MIN_SIDE = 64
DEFAULT_SIDE = 768


def side_limit(max_side: object) -> int:
    """The requested longest side, clamped to MIN_SIDE..MAX_SIDE; gr.Error for anything that is not a
    finite number (a raw API call can send NaN or text where the slider sends numbers)."""
    try:
        side = float(max_side)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        side = math.nan
    if not math.isfinite(side):
        raise gr.Error(f"The maximum side must be a number of pixels ({MIN_SIDE} to {MAX_SIDE}).")
    return int(min(max(side, MIN_SIDE), MAX_SIDE))


def painting(styles: Mapping[str, Style], name: str) -> str | None:
    """The style's painting as a file for the thumbnail (None when it has none)."""
    p = styles[name].painting if name in styles else None
    return str(p) if p and p.is_file() else None


def compare(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str, strength: float = 1.0,
            preserve_color: bool = False, max_side: int = DEFAULT_SIDE) -> tuple[tuple, list, str]:
    """Run every norm's model for ``style`` on the photo: (BN, IN) for the slider, all for the row, a note."""
    if style not in styles:
        raise gr.Error(f"Unknown style {style!r}; choose one of: {', '.join(styles)}")
    try:
        check_strength(float(strength))
    except (TypeError, ValueError):
        raise gr.Error("The style strength must be a number from 0 to 1.") from None
    img = read_upload(photo, side_limit(max_side))
    results = {}
    for norm, stylizer in styles[style].models.items():
        out, seconds = stylizer.timed(img, strength=float(strength), preserve_color=bool(preserve_color))
        results[norm] = (out, f"{norm_label(norm)} — {seconds:.2f} s")
    gallery = files.gallery(list(results.values()))
    paths = {norm: path for norm, (path, _) in zip(results, gallery)}
    pair = (paths.get("batch", img), paths.get("instance", img))
    note = f"{img.width}x{img.height} px, {len(results)} models"
    return pair, gallery, note


def compare_tab(styles: Mapping[str, Style], names: list[str], files: ResultFiles) -> tuple[gr.Image, gr.Dropdown]:
    """Build the tab inside the caller's ``gr.Tab``; returns the photo input and the style list."""
    with gr.Row():
        with gr.Column(scale=1):
            photo = photo_input("Your photo", 300)
            style = style_dropdown(styles, names, pairs_only=False)
            thumb = gr.Image(value=painting(styles, names[0]), label="Painting", interactive=False, height=160)
            strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength (0 = photo, 1 = full style)")
            keep = gr.Checkbox(label="Preserve the photo's colours")
            side = gr.Slider(128, MAX_SIDE, value=DEFAULT_SIDE, step=32, label="Resolution cap (longest side, px)")
            run = gr.Button("Stylize with BN and IN", variant="primary", elem_id="compare-btn")
        with gr.Column(scale=2):
            slider = gr.ImageSlider(label="BN  |  IN  (drag to compare)", type="pil", elem_id="bn-in-slider",
                                    max_height=520)
            row = gr.Gallery(label="All norms (click to enlarge, download from the viewer)", columns=5,
                             height=240, elem_id="all-results", format="png")
            note = gr.Markdown()
    gr.Examples([[str(p)] for p in example_photos(4)], inputs=[photo], label="Example photos")

    def show_painting(name: str) -> str | None:
        return painting(styles, name)

    def run_compare(photo: str | None, style: str, strength: float = 1.0, preserve_color: bool = False,
                    max_side: int = DEFAULT_SIDE):
        """Run every norm's model for ``style`` on the photo; BN | IN for the slider, all for the row."""
        return compare(styles, files, photo, style, strength, preserve_color, max_side)

    style.change(show_painting, style, thumb, api_name=False)
    run.click(run_compare, [photo, style, strength, keep, side], [slider, row, note], api_name="compare")
    return photo, style
