"""The "Training report" tab: the loss curves, grid and table that the report script writes into the
figures folder of a checkout (an installed app has none and says so).

The grid picture's own column names are 18 px text on a 1344 px picture: in a box a third of that
width they cannot be read, and its rows carry no style names. The tab therefore shows the grid as page
text and pictures: one band of rows per style under the painting's title, the column names above
every band, in a box that scrolls sideways on a phone instead of shrinking the pictures to stamps.
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import gradio as gr
from PIL import Image

from .. import paths
from ..weights import load_manifest, styles_in_grid_order

FIGURES = (("loss_curves.png", "Training loss curves, BN vs IN"),
           ("contrast_control.png", "Huang & Belongie control: contrast-normalized photos"))
GRID = "grid.png"
TABLE = "comparison.md"
RATIO = re.compile(r"\|\s*([\w-]+)\s*\|.*\|\s*([\d.]+)x\s*\|\s*$")  # a table row: its style and "IN vs BN" ratio


def report_tab() -> None:
    """Build the tab inside the caller's ``gr.Tab`` from the figures folder (empty when installed)."""
    figures = paths.figures_dir()
    if not (figures / TABLE).is_file():
        gr.Markdown("No training report on this server: it comes with a source checkout of stylenet.")
        with gr.Accordion("How to build it", open=False):
            gr.Markdown("In a checkout, with the shipped models: `python scripts/compare.py`.")
        return
    intro, table, notes = split_table((figures / TABLE).read_text())
    if line := takeaway(table):
        gr.Markdown(line, elem_id="report-takeaway")
    gr.Markdown(f"{intro}\n\n{table}", elem_id="report-table")
    if notes:
        with gr.Accordion("Notes on the table", open=False):
            gr.Markdown(notes)
    if (figures / GRID).is_file():
        gr.Markdown("### Held-out photos through every model")
        gr.HTML(grid_html(figures / GRID, grid_columns(table), style_titles()), elem_id="report-grid")
    for name, label in FIGURES:
        if (figures / name).is_file():
            gr.Image(str(figures / name), label=label, interactive=False)


def split_table(text: str) -> tuple[str, str, str]:
    """A report's text as (the lines before its table, the table, the notes after it)."""
    lines = text.strip().splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    if not rows:
        return text, "", ""
    first, last = rows[0], rows[-1] + 1
    return "\n".join(lines[:first]).strip(), "\n".join(lines[first:last]), "\n".join(lines[last:]).strip()


def takeaway(table: str) -> str | None:
    """One plain line on what the table says, from its "IN vs BN" column (IN's style loss over BN's):
    the line follows the numbers, whichever way they fall; None for a table without that column."""
    ratios = {m[1]: float(m[2]) for line in table.splitlines() if (m := RATIO.match(line))}
    if not ratios:
        return None
    low, high = min(ratios.values()), max(ratios.values())
    if high < 1:
        return (f"**In short:** Instance Norm copies every painting's style more closely than Batch Norm: its style "
                f"loss is {low:.2f}x to {high:.2f}x of Batch Norm's (lower is closer).")
    better = [style for style, ratio in ratios.items() if ratio < 1]
    return (f"**In short:** Instance Norm copies the style more closely than Batch Norm for {len(better)} of "
            f"{len(ratios)} paintings (its style loss is {low:.2f}x to {high:.2f}x of Batch Norm's; lower is closer).")


def grid_columns(table: str) -> list[str]:
    """The grid's columns: the photo, the painting, then the table's model columns (as the report
    script draws them: every norm, then the optimization reference where it was run)."""
    header = table.splitlines()[0] if table else ""
    models = [cell.strip().rstrip("*") for cell in header.strip("|").split("|")[1:-1]]
    return ["photo", "painting", *models]


def style_titles() -> dict[str, str]:
    """Each shipped style's painting title, in the grid's row order."""
    entries = [e for e in load_manifest(paths.weights_dir()) if not e.get("experiment")]
    titles = {e["style"]: e.get("title", e["style"]) for e in reversed(entries)}  # the first entry's title wins
    return {style: titles[style] for style in styles_in_grid_order(entries)}


def grid_html(path: Path, columns: list[str], titles: dict[str, str]) -> str:
    """The grid as one band of rows per style under its title, with the column names as text above
    each band; the picture whole, under one line naming the columns, where its rows do not split
    evenly into those styles (a grid older than the manifest)."""
    img = Image.open(path).convert("RGB")
    side = img.width // len(columns)
    rows = img.height // side
    head = "".join(f"<span>{html.escape(name)}</span>" for name in columns)
    if side * len(columns) != img.width or not titles or rows % len(titles):
        return (f"<div class='grid-scroll'><p>Columns, left to right: {html.escape(', '.join(columns))}.</p>"
                f"<img src='{data_url(img)}' alt='the comparison grid'></div>")
    top, per_style = img.height - rows * side, rows // len(titles)
    bands = [f"<h4>{html.escape(title)}</h4><div class='grid-head'>{head}</div>"
             f"<img src='{data_url(img.crop((0, top + i * per_style * side, img.width, top + (i + 1) * per_style * side)))}' "
             f"alt='{html.escape(title)}: {per_style} photos through every model'>"
             for i, title in enumerate(titles.values())]
    note = ("<p>A blank square: no model of that kind was trained for that painting. On a narrow screen the grid "
            "scrolls sideways.</p>")
    return f"{note}<div class='grid-scroll'><div class='grid-inner'>{''.join(bands)}</div></div>"


def data_url(img: Image.Image) -> str:
    """``img`` inline as a JPEG: the figures folder is not served, and the page needs no extra request."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
