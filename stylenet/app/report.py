"""The "Training report" tab: the loss curves, grid and table that ``scripts/compare.py`` writes."""
from __future__ import annotations

import gradio as gr

from .. import paths

FIGURES = (("loss_curves.png", "Training loss curves, BN vs IN"),
           ("contrast_control.png", "Huang & Belongie control: contrast-normalized photos"),
           ("grid.png", "Held-out photos: painting, BN, IN, LN, GN"))


def report_tab() -> None:
    """Build the tab inside the caller's ``gr.Tab`` from the figures folder (empty when installed)."""
    figures = paths.figures_dir()
    table = figures / "comparison.md"
    gr.Markdown(table.read_text() if table.is_file() else "Run `python scripts/compare.py` to build the report.")
    for name, label in FIGURES:
        if (figures / name).is_file():
            gr.Image(str(figures / name), label=label, interactive=False)
