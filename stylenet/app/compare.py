"""The "Compare" tab: every norm's model for one style on the user's photo, BN | IN in a slider."""
from __future__ import annotations

import math
from collections.abc import Mapping

import gradio as gr

from ..norms import norm_label
from ..stylize import check_strength
from .errors import user_error
from .sessions import LOCAL, Sessions
from .styles import Style, StyleRegistry, find_style, style_dropdown
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
        raise user_error(f"The maximum side must be a number of pixels ({MIN_SIDE} to {MAX_SIDE}).")
    return int(min(max(side, MIN_SIDE), MAX_SIDE))


def painting(styles: Mapping[str, Style], files: ResultFiles, name: str, owner: str) -> str | None:
    """The style's painting for the thumbnail, copied into the owner's area (a user style's painting
    lives in its job's folder, which is never served); None when it has none."""
    try:
        p = styles[name].painting
    except KeyError:
        return None
    copied = files.copies([(p, "")], owner) if p and p.is_file() else []
    return copied[0][0] if copied else None


def compare(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str, strength: float = 1.0,
            preserve_color: bool = False, max_side: int = DEFAULT_SIDE, owner: str = LOCAL) -> tuple[tuple, list, str]:
    """Run every norm's model for ``style`` on the photo: (BN, IN) for the slider, all for the row, a note;
    the results are files in ``owner``'s area."""
    found = find_style(styles, style)
    try:
        check_strength(float(strength))
    except (TypeError, ValueError):
        raise user_error("The style strength must be a number from 0 to 1.") from None
    img = read_upload(photo, side_limit(max_side))
    results = {}
    for norm, stylizer in found.models.items():
        out, seconds = stylizer.timed(img, strength=float(strength), preserve_color=bool(preserve_color))
        results[norm] = (out, f"{norm_label(norm)} — {seconds:.2f} s")
    gallery = files.gallery(list(results.values()), owner)
    paths = {norm: path for norm, (path, _) in zip(results, gallery)}
    pair = (paths.get("batch", img), paths.get("instance", img))
    note = f"{img.width}x{img.height} px, {len(results)} models"
    return pair, gallery, note


def compare_tab(registry: StyleRegistry, sessions: Sessions, files: ResultFiles,
                heavy: dict) -> tuple[gr.Image, gr.Dropdown]:
    """Build the tab inside the caller's ``gr.Tab``; returns the photo input and the style list.
    ``heavy``: the app-wide concurrency group the stylizing runs in."""
    styles, names = registry.view(None), registry.names()
    with gr.Row():
        with gr.Column(scale=1):
            photo = photo_input("Your photo", 300)
            style = style_dropdown(styles, names, pairs_only=False)
            first = styles[names[0]].painting
            thumb = gr.Image(value=str(first) if first and first.is_file() else None, label="Painting",
                             interactive=False, height=160)
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

    def show_painting(name: str, request: gr.Request) -> str | None:
        owner = sessions.owner(request)
        return painting(registry.view(owner), files, name, owner)

    def run_compare(photo: str | None, style: str, strength: float = 1.0, preserve_color: bool = False,
                    max_side: int = DEFAULT_SIDE, request: gr.Request = None):
        """Run every norm's model for ``style`` on the photo; BN | IN for the slider, all for the row."""
        owner = sessions.owner(request)
        return compare(registry.view(owner), files, photo, style, strength, preserve_color, max_side, owner)

    style.change(show_painting, style, thumb, api_name=False)
    run.click(run_compare, [photo, style, strength, keep, side], [slider, row, note], api_name="compare", **heavy)
    return photo, style
