"""Opening user images safely: one clear line for every kind of bad input, never a traceback.

Handles EXIF orientation, every PIL mode (alpha is split off and re-attached after stylization),
16-bit and CMYK, animated files (first frame), and refuses decompression bombs from the header,
before any pixel is decoded. Every image the project reads (uploads, CLI inputs, training photos,
paintings, examples) goes through ``open_image``, so these rules hold everywhere.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000  # ~8000x8000: tiled inference handles it within ~3 GB
# What one upload to a server (the app, a training job) may be: the web form refuses a bigger file,
# open_image a picture of more pixels, before decoding.
MAX_UPLOAD_BYTES = 15 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
VECTOR_SUFFIXES = {".svg", ".svgz", ".eps", ".pdf", ".ai", ".wmf", ".emf"}
# The only decoders ever tried. Image.open picks a plugin from the file's bytes, not its name, so
# without this list an EPS renamed .jpg would reach Pillow's EPS plugin (which runs Ghostscript),
# and so would every rarely used decoder Pillow ships. These are the raster formats photos come in:
# JPEG includes MPO, the multi-picture JPEG many phones write (Pillow opens it through its JPEG
# plugin); TIFF carries 16-bit and CMYK scans.
RASTER_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class ImageError(ValueError):
    """An input that cannot be stylized; ``str()`` is the one-line reason shown to the user."""


def open_image(source: str | Path | IO[bytes], max_pixels: int = DEFAULT_MAX_PIXELS,
               draft: tuple[int, int] | None = None) -> tuple[Image.Image, Image.Image | None]:
    """Return (RGB image, alpha channel or None) for a path or binary file object. ``draft``: the size
    the caller needs at most; a JPEG is then decoded at a reduced scale no smaller than it (Pillow's
    draft mode: a fraction of the work, where the caller would shrink the picture anyway)."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "upload")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: no such file")
        if path.suffix.lower() in VECTOR_SUFFIXES:
            raise ImageError(f"{name}: vector images are not supported; export it as PNG or JPEG first")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=RASTER_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image in a supported format "
                         f"({', '.join(RASTER_FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: too many pixels (over {max_pixels:,}); refusing to decode") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc})") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f"{name}: {w}x{h} is {w * h:,} pixels, over the limit of {max_pixels:,}")
        try:
            img.seek(0)  # animated GIF/WebP/APNG: first frame
            if draft and img.format == "JPEG":
                img.draft("RGB", draft)
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{name}: truncated or corrupt image ({exc})") from None
        return split_alpha(img)


def open_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               draft: tuple[int, int] | None = None) -> tuple[Image.Image, Image.Image | None]:
    if not data:
        raise ImageError("upload: empty file")
    return open_image(io.BytesIO(data), max_pixels, draft)


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Any mode -> RGB plus the alpha channel if the image has transparency."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit greyscale: rescale to 8 bits rather than clipping everything to white
        import numpy as np
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        return Image.fromarray(arr.astype("uint8")).convert("RGB"), None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    alpha = None
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = img.getchannel("A")
    return img.convert("RGB"), alpha


def limit_size(img: Image.Image, max_size: int | None) -> Image.Image:
    """Shrink so the longest side is at most ``max_size`` (never enlarges)."""
    if max_size and max(img.size) > max_size:
        scale = max_size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return img
