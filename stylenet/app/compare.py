"""The "Compare" tab: every norm's model for one style on the user's photo, BN | IN in a slider.

A first visit already shows a result: the flagship style on an example photo, rendered once when
the app starts. Every result is kept at full strength (a per-page ``gr.State`` names the files), so
the strength and colour controls remix those outputs in milliseconds instead of running the models again.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..norms import norm_label
from ..stylize import check_strength, restyle
from ..weights import FAST
from .errors import user_error
from .queueing import LIGHT
from .sessions import LOCAL, Sessions
from .styles import Style, StyleRegistry, find_style, style_dropdown, title_of
from .uploads import (
    ResultFiles,
    example_photo,
    example_photos,
    photo_input,
    read_upload,
)

MAX_SIDE = 1024  # resolution cap for the UI: bounds memory and latency per request
MIN_SIDE = 64
DEFAULT_SIDE = 768
VARIANTS = ("full", FAST)  # the model sizes offered: the trained models, or their slim distilled students
LOOK_FOR = (
    "**What to look for:** drag the handle across the picture — left of it is **Batch Norm**, right of it "
    "**Instance Norm**, the same network trained the same way; only the normalization layer differs. "
    "Instance Norm takes on the painting's colours and brush texture more strongly and evenly, while Batch Norm "
    "stays closer to the photo's own colours and contrast.")


def show_results(selector: str) -> str:
    """JavaScript to run in the browser as a tab's run button is pressed: on a phone the results (``selector``)
    sit above the inputs, ~1500 px above the button, so the page scrolls up to them (where the progress
    shows) instead of leaving no cue."""
    return """(...inputs) => {
  const results = document.querySelector("%s");
  if (results && results.getBoundingClientRect().top < 0) results.scrollIntoView({behavior: "smooth"});
  return inputs;
}""" % selector


def side_limit(max_side: object) -> int:
    """The requested longest side, clamped to MIN_SIDE..MAX_SIDE; a user error for anything that is not a
    finite number (a raw API call can send NaN or text where the slider sends numbers)."""
    try:
        side = float(max_side)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        side = math.nan
    if not math.isfinite(side):
        raise user_error(f"The maximum side must be a number of pixels ({MIN_SIDE} to {MAX_SIDE}).")
    return int(min(max(side, MIN_SIDE), MAX_SIDE))


def strength_value(strength: object) -> float:
    """The style strength as a float in [0, 1]; a user error otherwise."""
    try:
        value = float(strength)  # type: ignore[arg-type]
        check_strength(value)
    except (TypeError, ValueError):
        raise user_error("The style strength must be a number from 0 to 1.") from None
    return value


def painting(registry: StyleRegistry, files: ResultFiles, name: str, owner: str) -> str | None:
    """The style's painting for the thumbnail, copied into the owner's area (a user style's painting
    lives in its job's folder, which is never served); None when it has none. No model is loaded."""
    p = registry.painting(owner, name)
    copied = files.copies([(p, "")], owner) if p and p.is_file() else []
    return copied[0][0] if copied else None


def stylize_all(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str,
                max_side: Any = DEFAULT_SIDE, owner: str | Path = LOCAL, variant: str = "full") -> dict[str, Any]:
    """Every norm's model for ``style`` on the photo at full strength: the photo as used and each result
    saved in ``owner``'s area (or a kept folder), named in a dict ``finish`` remixes. ``variant="fast"``
    runs each norm's slim student where one is shipped (``fast`` lists those norms), else its full model."""
    found = find_style(styles, style)
    if variant not in VARIANTS:
        raise user_error(f"The model size must be one of: {', '.join(VARIANTS)}.")
    img = read_upload(photo, side_limit(max_side))
    models = found.variant(variant)
    results = {norm: stylizer.timed(img) for norm, stylizer in models.items()}
    saved = files.gallery([(img, "photo"), *((out, norm) for norm, (out, _) in results.items())], owner,
                          ["photo", *results])
    return {"photo": saved[0][0], "name": photo_name(photo), "style": style, "title": title_of(found, style),
            "results": [(norm, path, seconds) for (norm, (_, seconds)), (path, _) in zip(results.items(), saved[1:])],
            "variant": variant, "fast": [norm for norm, model in models.items() if model.variant == FAST]}


def photo_name(photo: str | None) -> str:
    """A short, safe name for downloads from an uploaded file's name (``photo`` for a paste)."""
    stem = re.sub(r"[^\w-]+", "_", Path(photo or "").stem.removeprefix("skimage_")).strip("_")[:40]
    return stem if stem and stem != "upload" else "photo"


def finish(files: ResultFiles, kept: dict[str, Any], strength: Any = 1.0, preserve_color: bool = False,
           owner: str = LOCAL) -> tuple[tuple, list, str]:
    """The full-strength results of ``stylize_all`` at ``strength`` and with the photo's colours when
    ``preserve_color``, without running a model: (BN, IN) for the slider, all for the row, a note. Each
    file is named for a download (photo, style, norm, settings)."""
    strength = strength_value(strength)
    try:
        photo = Image.open(kept["photo"]).convert("RGB")
        styled = [(norm, Image.open(path).convert("RGB"), seconds) for norm, path, seconds in kept["results"]]
    except (OSError, KeyError, TypeError, ValueError):
        raise user_error("These results are no longer kept: press the Stylize button again.") from None
    settings = ("" if strength == 1 else f"_strength{round(strength * 100)}") + ("_photo_colours" if preserve_color else "")
    fast = set(kept.get("fast", ()))
    tag = {norm: (f"_{FAST}", " (fast)") if norm in fast else ("", "") for norm, _, _ in styled}
    gallery = files.gallery([(restyle(photo, out, strength, bool(preserve_color)),
                              f"{norm_label(norm)}{tag[norm][1]} — {seconds:.2f} s") for norm, out, seconds in styled],
                            owner, [f"{kept['name']}_{kept['style']}_{norm}{tag[norm][0]}{settings}" for norm, _, _ in styled])
    by_norm = {norm: path for (norm, _, _), (path, _) in zip(styled, gallery)}
    pair = (by_norm.get("batch", kept["photo"]), by_norm.get("instance", kept["photo"]))
    note = (f"{photo.width}x{photo.height} px, {len(styled)} models · {kept['title']} · shown at its own size, "
            "scaled down only where the box is smaller, never enlarged")
    if kept.get("variant") == FAST:
        note += "\n\n" + fast_note([norm_label(n) for n, _, _ in styled if n in fast],
                                    [norm_label(n) for n, _, _ in styled if n not in fast])
    return pair, gallery, note


def fast_note(ran: list[str], full: list[str]) -> str:
    """What Fast did, in a line of its own: which norms ran their slim model and which ran full, and that a
    slider between a full and a slim model is no longer a like-for-like comparison."""
    if not ran:
        return "**Fast:** no slim model of this style is shipped yet: the full models ran."
    copies = "its slim model, a smaller copy" if len(ran) == 1 else "their slim models, smaller copies"
    text = f"**Fast:** {', '.join(ran)} ran {copies} trained to reproduce the full model's pictures"
    if full:
        text += (f"; {', '.join(full)} ran full (no slim model yet), so the slider compares models of different "
                 "sizes, not only different norms")
    return text + "."


def compare(styles: Mapping[str, Style], files: ResultFiles, photo: str | None, style: str, strength: Any = 1.0,
            preserve_color: bool = False, max_side: Any = DEFAULT_SIDE,
            owner: str = LOCAL, variant: str = "full") -> tuple[tuple, list, str, dict[str, Any]]:
    """Run every norm's model for ``style`` on the photo (``variant``: see ``stylize_all``): (BN, IN) for
    the slider, all for the row, a note, and the full-strength results that later strength and colour
    changes remix."""
    strength_value(strength)  # refused before any work
    kept = stylize_all(styles, files, photo, style, max_side, owner, variant)
    return (*finish(files, kept, strength, preserve_color, owner), kept)


def example(styles: Mapping[str, Style], files: ResultFiles, style: str) -> tuple[str | None, dict[str, Any] | None]:
    """The first-load example: the example photo's path and ``style``'s results on it, rendered once
    into a folder retention keeps; (None, None) where the example photo is missing (an odd install)."""
    photo = example_photo()
    return (photo, stylize_all(styles, files, photo, style, DEFAULT_SIDE, files.kept("example"))) if photo else (None, None)


def compare_tab(registry: StyleRegistry, sessions: Sessions, files: ResultFiles, heavy: dict,
                demo: gr.Blocks) -> gr.Dropdown:
    """Build the tab inside the caller's ``gr.Tab``; returns the style list.
    ``heavy``: the app-wide concurrency group the stylizing runs in; ``demo``: the app, whose page load
    shows the example."""
    styles, names = registry.view(None), registry.names()
    example_photo, example_kept = example(styles, files, names[0])
    with gr.Row(elem_id="compare-row"):
        with gr.Column(scale=1, min_width=300):
            photo = photo_input("Your photo", 300, value=example_photo)
            gr.Examples([[str(p)] for p in example_photos(4)], inputs=[photo], label="Or try an example photo")
            style = style_dropdown(styles, names, pairs_only=False)
            first = styles[names[0]].painting
            thumb = gr.Image(value=str(first) if first and first.is_file() else None, label="Painting",
                             interactive=False, height=160, buttons=[])
            strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength (0 = photo, 1 = full style)")
            keep = gr.Checkbox(label="Preserve the photo's colours")
            side = gr.Slider(128, MAX_SIDE, value=DEFAULT_SIDE, step=32, label="Resolution cap (longest side, px)")
            shipped_fast = [f"{n.replace('_', ' ')} {norm_label(norm)}"  # user styles have none: not loaded here
                            for n, s in registry.shipped.items() for norm in s.fast if norm in s.models]
            size = gr.Radio([("Full", "full"), ("Fast: slim distilled models", FAST)], value="full", label="Model size",
                            info=f"Slim models so far: {', '.join(shipped_fast)}; other models run full",
                            visible=bool(shipped_fast), elem_id="compare-size")
            run = gr.Button("Stylize with BN and IN", variant="primary", elem_id="compare-btn")
        with gr.Column(scale=2, min_width=300, elem_id="compare-results"):
            gr.Markdown(LOOK_FOR, elem_id="look-for")
            slider = gr.ImageSlider(label="Batch Norm (left) | Instance Norm (right): drag to compare", type="filepath",
                                    elem_id="bn-in-slider", max_height=520, buttons=["fullscreen"])
            note = gr.Markdown(elem_id="compare-note")
            row = gr.Gallery(label="All norms: click one to enlarge and download it", columns=4, height="auto",
                             elem_id="all-results", format="png", object_fit="contain",
                             buttons=["download", "download_all", "fullscreen"])
    kept = gr.State(example_kept)

    def show_painting(name: str, request: gr.Request):
        owner = sessions.owner(request)
        return painting(registry, files, name, owner)

    def run_compare(photo: str | None, style: str, strength: float = 1.0, preserve_color: bool = False,
                    max_side: int = DEFAULT_SIDE, variant: str = "full", request: gr.Request = None):
        """Run every norm's model for ``style`` on the photo; BN | IN for the slider, all for the row."""
        owner = sessions.owner(request)
        return compare(registry.view(owner), files, photo, style, strength, preserve_color, max_side, owner, variant)

    def remix(kept: dict[str, Any] | None, strength: float, preserve_color: bool, request: gr.Request = None):
        """The shown results at another strength or colour setting, without running a model."""
        if kept is None:
            return gr.skip(), gr.skip(), gr.skip()
        return finish(files, kept, strength, preserve_color, sessions.owner(request))

    style.change(show_painting, style, thumb, api_name=False, **LIGHT)
    # a refused photo leaves no earlier result, or its caption, under the error
    run.click(run_compare, [photo, style, strength, keep, side, size], [slider, row, note, kept], api_name="compare",
              js=show_results("#compare-results"), **heavy).failure(lambda: (None, [], "", None), None, [slider, row, note, kept],
                                                api_name=False, show_progress="hidden", **LIGHT)
    gr.on([demo.load, strength.release, keep.input], remix, [kept, strength, keep], [slider, row, note],
          api_name=False, show_progress="hidden", **LIGHT)
    return style
