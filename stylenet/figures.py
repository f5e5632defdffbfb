"""Labelled picture grids for the measurement scripts and the docs: pictures people look at."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LABEL_PX = 18  # readable at the size the README shows the grid


def contact_sheet(header: Sequence[str], rows: Sequence[Sequence[Image.Image | None]], out: Path, side: int,
                  row_labels: Sequence[str] = ()) -> None:
    """A grid of pictures, each fitted into a ``side`` x ``side`` cell (None leaves it blank), with a
    column header above and, when given, a label at the left of every row."""
    font = ImageFont.load_default(size=LABEL_PX)
    head = LABEL_PX + 14
    left = (max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t, font=font) for t in row_labels) + 16
            if row_labels else 0)
    canvas = Image.new("RGB", (int(left) + side * len(header), head + side * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(header):
        x = left + c * side + (side - draw.textlength(name, font=font)) // 2
        draw.text((x, 6), name, fill="black", font=font)
    for r, row in enumerate(rows):
        if row_labels:
            draw.text((8, head + r * side + side // 2 - LABEL_PX // 2), row_labels[r], fill="black", font=font)
        for c, tile in enumerate(row):
            if tile is not None:
                tile = tile.copy()
                tile.thumbnail((side - 4, side - 4))
                canvas.paste(tile, (int(left) + c * side + (side - tile.width) // 2,
                                    head + r * side + (side - tile.height) // 2))
    canvas.save(out, quality=88)  # a .jpg keeps a grid of many photos small; PNG ignores quality


def pareto_plot(points: Mapping[str, tuple[float, float]], out: Path, title: str) -> None:
    """Style distance against content distance (``stylenet.evaluate``), one labelled point per method:
    BN models red circles, IN blue squares, the peer a black star, L-BFGS references green diamonds.
    Down and to the left is better on both; the front is what no other point beats on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for name, (content, style) in points.items():
        marker, color = (("*", "black") if name.startswith("peer") else ("D", "tab:green") if name.startswith("L-BFGS")
                         else ("o", "tab:red") if name.endswith("BN") else ("s", "tab:blue"))
        ax.scatter(content, style, marker=marker, color=color, s=140 if marker == "*" else 40)
        ax.annotate(name, (content, style), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("content distance to the photo (VGG relu4_2; lower keeps more of the photo)")
    ax.set_ylabel("style distance to the painting (Grams relu1_1-relu5_1; lower paints more)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
