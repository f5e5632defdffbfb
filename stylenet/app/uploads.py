"""What comes in and goes out of the app: uploaded photos, results as files, the example photos.

Limits are the library's (``images.MAX_UPLOAD_BYTES``, ``MAX_UPLOAD_PIXELS``): the web form refuses a
bigger file, ``read_upload`` a picture of more pixels before decoding it.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path

import gradio as gr
from PIL import Image

from .. import paths
from ..images import MAX_UPLOAD_PIXELS, ImageError, limit_size, open_image


def read_upload(path: str | None, max_side: int) -> Image.Image:
    """The user's photo, safely opened, capped at ``max_side``; gr.Error (shown in the UI) otherwise."""
    if not path:
        raise gr.Error("Upload a photo or pick an example first.")
    try:
        img, _ = open_image(path, max_pixels=MAX_UPLOAD_PIXELS)
    except ImageError as exc:
        raise gr.Error(str(exc).replace(str(path), Path(path).name)) from None
    return limit_size(img, max_side)


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


class ResultFiles:
    """Results go to gradio as files of the request's own, never as PIL images.

    Gradio writes a returned PIL image in place, to ``cache/<hash of its bytes>/image.png``: two
    requests with the same result (an example photo at default settings) rewrite that file while
    the first one's client downloads it, and the download comes back truncated (seen with 16 clients
    at once). A returned file is copied under a temporary name and renamed, which is safe. Only the
    last ``keep`` folders are kept: gradio copies their files as their request ends, long before.
    The folder is private to this process (``mkdtemp``) and removed when it exits.
    """

    def __init__(self, keep: int = 256) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stylenet-results-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.keep, self.folders, self.lock = keep, deque(), threading.Lock()

    def folder(self) -> Path:
        """A new folder of the request's own (the oldest beyond ``keep`` are removed)."""
        folder = Path(tempfile.mkdtemp(dir=self.root))
        with self.lock:
            self.folders.append(folder)
            while len(self.folders) > self.keep:
                shutil.rmtree(self.folders.popleft(), ignore_errors=True)
        return folder

    def gallery(self, items: list[tuple[Image.Image, str]]) -> list[tuple[str, str]]:
        """(image, caption) pairs as (PNG path, caption) pairs, in a new folder of their own."""
        folder = self.folder()
        saved = []
        for i, (img, caption) in enumerate(items):
            img.save(folder / f"{i}.png")
            saved.append((str(folder / f"{i}.png"), caption))
        return saved


def example_photos(count: int) -> list[Path]:
    """The first ``count`` example photos (the scikit-image ones first: small and familiar)."""
    folder = paths.examples_dir()
    return sorted(folder.glob("skimage_*.jpg"))[:count] or sorted(folder.glob("*.jpg"))[:count]
