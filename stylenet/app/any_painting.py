"""The "Any painting" tab: any painting onto the user's photo by one network for every painting (AdaIN,
Huang & Belongie 2017), beside the Instance Norm model trained for that painting alone, where one is shipped.

The tab needs the shipped AdaIN decoder (``adain.DECODER_FILE`` in the weights folder) and the VGG19
encoder. Without either, ``load_adain`` logs one line and the app leaves the tab out (and Why IN?'s
experiment (f), which runs on the same decoder): a page never offers what cannot run. A painting is an
upload or one of the shipped ones, picked under the input; a shipped one is recognised by its bytes, so
its trained model is shown beside it however it reached the input.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..adain import (
    DECODER_FILE,
    STYLE_SCALE,
    AdaINStylizer,
    load_decoder,
    shipped_decoder,
)
from ..checkpoint import CheckpointError
from ..evaluate import CONTENT_LAYER, STYLE_LAYERS, Evaluator
from ..vgg import VGGFeatures, VGGWeightsMissing
from ..weights import sha256_file
from .compare import photo_name, show_results, strength_value
from .errors import user_error
from .queueing import LIGHT
from .sessions import LOCAL, Sessions
from .styles import Style, StyleRegistry, one_line
from .uploads import (
    ResultFiles,
    example_photo,
    example_photos,
    photo_input,
    read_upload,
)

RESULT_SIDE = 512  # the photo's long side: AdaIN runs the VGG encoder and the decoder, more than a style network
PAINTING_SIDE = 1024  # an uploaded painting is read at most this big: the stroke slider never asks for more
STROKE_SCALES = (128, 1024)  # the slider's range for the painting's long side when it is read
LOOK_FOR = (
    "**What to look for:** the first picture comes from **one network for every painting**. It reads nothing "
    "of the painting but its statistics — a mean and a spread per feature channel, what Instance Norm takes "
    "from each image — and puts them in place of your photo's (AdaIN). A new painting needs no training. "
    "Beside it, for a shipped painting, the **Instance Norm model trained for that painting alone**, as in "
    "Compare.")


@dataclass(frozen=True)
class AdaINModels:
    """The shipped decoder, ready for every request, and the evaluator Why IN?'s (f) measures with; the two
    share one VGG19. Requests share them: running either changes neither."""

    stylizer: AdaINStylizer
    evaluator: Evaluator


def load_adain(weights_dir: Path) -> AdaINModels | None:
    """The shipped decoder and its encoder on the CPU, or None, with one line in the log saying why the tab
    is left out: no decoder shipped yet, a file that is not one, or no VGG19 weights installed."""
    path = shipped_decoder(weights_dir)
    reason = f"no AdaIN decoder ({DECODER_FILE}) in the weights folder yet"
    if path is not None:
        try:
            decoder, meta = load_decoder(path)
            vgg = VGGFeatures.oxford(STYLE_LAYERS + (CONTENT_LAYER,))  # relu4_1, AdaIN's layer, among them
            return AdaINModels(AdaINStylizer(decoder, meta, "cpu", vgg), Evaluator(vgg))
        except (CheckpointError, VGGWeightsMissing) as exc:
            reason = one_line(exc)
    print(f"stylenet app: the Any painting tab is left out: {reason}", file=sys.stderr, flush=True)
    return None


def shipped_paintings(registry: StyleRegistry) -> dict[str, Style]:
    """The shipped styles whose painting is on disk, by name, the flagship first: the paintings offered
    under the painting inputs, each with its trained models."""
    styles = {name: registry.shipped[name] for name in registry.names()}
    return {name: style for name, style in styles.items() if style.painting and style.painting.is_file()}


@dataclass(frozen=True)
class Painting:
    """A painting as a request uses it: the picture, a short name for downloads, and the shipped style it
    is, if it is one."""

    image: Image.Image
    name: str
    style: Style | None


def read_painting(path: str | None, shipped: Mapping[str, Style]) -> Painting:
    """The painting at ``path`` (an upload or a shipped one), safely opened; ``shipped`` maps a shipped
    painting's sha256 to its style. gr.Error in one line for no painting or a bad file."""
    image = read_upload(path, PAINTING_SIDE, "painting")
    style = shipped.get(sha256_file(Path(path)))  # read_upload refused a missing path
    return Painting(image, style.name if style else photo_name(path), style)


def number_in(value: object, low: float, high: float, message: str) -> float:
    """``value`` as a number from ``low`` to ``high``; a user error saying ``message`` otherwise (a raw API
    call can send NaN or text where the sliders send numbers)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high:
        raise user_error(message)
    return number


def paint(adain: AdaINModels, shipped: Mapping[str, Style], files: ResultFiles, photo: str | None,
          painting: str | None, strength: Any = 1.0, scale: Any = STYLE_SCALE, second: str | None = None,
          mix: Any = 0.5, preserve_color: bool = False, owner: str = LOCAL) -> tuple[list[tuple[str, str]], str]:
    """The photo (long side at most ``RESULT_SIDE``) painted by the one decoder with ``painting``, or mixed
    with ``second`` (``mix``: the second's share), and beside it the trained IN model of each shipped
    painting among them: a gallery (files in ``owner``'s area, named for downloads) and a note.
    ``shipped``: sha256 -> style, see ``read_painting``."""
    alpha = strength_value(strength)
    low, high = STROKE_SCALES
    scale = round(number_in(scale, low, high, f"The painting size must be {low} to {high} px."))
    share = number_in(mix, 0, 1, "The mix must be a number from 0 to 1.") if second else 0.0
    img = read_upload(photo, RESULT_SIDE)
    paintings = [read_painting(painting, shipped)] + ([read_painting(second, shipped)] if second else [])
    weights = [1 - share, share][:len(paintings)]
    start = time.perf_counter()
    out = adain.stylizer.stylize(img, [(p.image, w) for p, w in zip(paintings, weights)], alpha, scale,
                                 bool(preserve_color))
    items = [(out, f"AdaIN — {time.perf_counter() - start:.2f} s")]
    stem, colours = photo_name(photo), "_photo_colours" if preserve_color else ""
    settings = ((f"_alpha{round(alpha * 100)}" if alpha != 1 else "") + (f"_mix{round(share * 100)}" if second else "")
                + (f"_scale{scale}" if scale != STYLE_SCALE else "") + colours)
    names = [f"{stem}_{'+'.join(p.name for p in paintings)}_adain{settings}"]
    trained = {p.style.name: p.style.models["instance"] for p in paintings if p.style and "instance" in p.style.models}
    for name, model in trained.items():
        result, seconds = model.timed(img, preserve_color=bool(preserve_color))
        full = " (full strength)" if alpha != 1 else ""  # the strength slider is AdaIN's, in its feature space
        items.append((result, f"IN, {name.replace('_', ' ')}{full} — {seconds:.2f} s"))
        names.append(f"{stem}_{name}_instance{colours}")
    note = (f"{img.width}x{img.height} px · strength {alpha:g} · painting read at {scale} px"
            + (f" · mixed {1 - share:.0%} + {share:.0%}" if second else ""))
    if any(p.style is None for p in paintings):
        note += " · no model was trained for your painting: only the network for every painting can paint it"
    return files.gallery(items, owner, names), note


def any_painting_tab(registry: StyleRegistry, adain: AdaINModels, sessions: Sessions, files: ResultFiles,
                     heavy: dict) -> None:
    """Build the tab inside the caller's ``gr.Tab``. ``heavy``: the app-wide concurrency group it paints in."""
    shipped = shipped_paintings(registry)
    by_bytes = {sha256_file(style.painting): style for style in shipped.values()}
    pick = [[str(style.painting)] for style in shipped.values()]
    with gr.Row(elem_id="any-painting-row"):
        with gr.Column(scale=1, min_width=300):
            photo = photo_input("Your photo", 240, value=example_photo())
            gr.Examples([[str(p)] for p in example_photos(4)], inputs=[photo], label="Or try an example photo")
            painting = photo_input("Painting (upload any, or pick one below)", 200, elem_id="any-painting-input",
                                   value=pick[0][0] if pick else None)
            if pick:
                gr.Examples(pick, inputs=[painting], label="Or pick a shipped painting (its trained model is "
                            "shown beside)", elem_id="any-painting-examples")
            strength = gr.Slider(0, 1, value=1.0, step=0.05, elem_id="any-strength",
                                 label="Strength (0 = your photo's features, 1 = the painting's statistics)")
            scale = gr.Slider(*STROKE_SCALES, value=STYLE_SCALE, step=32, elem_id="any-scale",
                              label="Painting size when read (px): smaller = bigger strokes")
            keep = gr.Checkbox(label="Preserve the photo's colours")
            with gr.Accordion("Mix in a second painting", open=False, elem_id="any-mix-section"):
                second = photo_input("Second painting (optional)", 160, elem_id="any-second-input")
                if pick:
                    gr.Examples(pick, inputs=[second], label="Or pick a shipped painting",
                                elem_id="any-second-examples")
                mix = gr.Slider(0, 1, value=0.5, step=0.05, label="Share of the second painting", elem_id="any-mix")
            run = gr.Button("Paint my photo", variant="primary", elem_id="any-painting-btn")
        with gr.Column(scale=2, min_width=300, elem_id="any-painting-results"):
            gr.Markdown(LOOK_FOR, elem_id="any-look-for")
            gallery = gr.Gallery(label="Click one to enlarge and download it", columns=3, height="auto",
                                 object_fit="contain", format="png", elem_id="any-painting-gallery",
                                 elem_classes="whole-gallery", buttons=["download", "fullscreen"],
                                 visible=False)  # shown once there is something to show
            note = gr.Markdown(elem_id="any-painting-note")

    def handler(photo: str | None, painting: str | None, strength: float, scale: float, second: str | None,
                mix: float, preserve_color: bool, request: gr.Request = None):
        """The photo painted with any painting (or two mixed) by one network, beside the trained IN models."""
        owner = sessions.owner(request)
        return paint(adain, by_bytes, files, photo, painting, strength, scale, second, mix, preserve_color, owner)

    run.click(lambda: gr.Gallery(visible=True), None, gallery, api_name=False, show_progress="hidden", **LIGHT)
    painted = run.click(handler, [photo, painting, strength, scale, second, mix, keep], [gallery, note],
                        api_name="any_painting", js=show_results("#any-painting-results"), **heavy)
    # a refused request leaves no earlier result, or its note, under the error
    painted.failure(lambda: (gr.Gallery(value=None, visible=False), ""), None, [gallery, note], api_name=False,
                    show_progress="hidden", **LIGHT)
