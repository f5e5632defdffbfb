"""Every class of bad or odd input gets its documented outcome."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from stylenet.data import load_rgb
from stylenet.images import ImageError, limit_size, open_bytes, open_image

from .conftest import smooth_image


def save(img, path, **kw):
    img.save(path, **kw)
    return path


def test_exif_orientation_applied(tmp_path):
    img = smooth_image(1, (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rgb, alpha = open_image(save(img, tmp_path / "r.jpg", exif=exif))
    assert rgb.size == (20, 40) and alpha is None


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "1", "LA", "RGBA"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = smooth_image(2, (16, 12))
    img = base.convert("RGBA").convert(mode) if mode == "LA" else base.convert(mode)
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    rgb, alpha = open_image(save(img, tmp_path / ("x.tif" if mode == "CMYK" else "x.png")))
    assert rgb.mode == "RGB" and rgb.size == (16, 12)
    assert (alpha is not None) == (mode in ("LA", "RGBA"))
    if mode == "I;16":  # 16-bit is rescaled, not clipped to white
        assert np.asarray(rgb).std() > 10


def test_palette_transparency_kept(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.info["transparency"] = 0
    _, alpha = open_image(save(img, tmp_path / "t.png", transparency=0))
    assert alpha is not None and alpha.getextrema() == (0, 0)


def test_animated_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    rgb, _ = open_image(path)
    r, g, b = rgb.getpixel((5, 5))
    assert r > 200 and b < 50


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = save(Image.new("L", (3000, 3000)), tmp_path / "big.png", optimize=True)

    def no_decoding(self):
        raise AssertionError("the pixels were decoded before the size check")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match="over the limit of 1,000,000"):
        open_image(path, max_pixels=1_000_000)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, I am text", "not an image"),
])
def test_empty_and_non_images(tmp_path, content, reason):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        open_image(path)


def test_truncated_image(tmp_path):
    buf = io.BytesIO()
    smooth_image(3, (64, 64)).save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        open_image(path)


def test_vector_and_missing(tmp_path):
    svg = tmp_path / "v.svg"
    svg.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(ImageError, match="vector images are not supported"):
        open_image(svg)
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="empty file"):
        open_bytes(b"")


def test_limit_size_never_enlarges():
    img = Image.new("RGB", (400, 100))
    assert limit_size(img, 200).size == (200, 50)
    assert limit_size(img, 1000).size == (400, 100)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


@pytest.mark.parametrize("loader", [open_image, load_rgb], ids=["open_image", "load_rgb"])
def test_renamed_vector_file_never_reaches_its_decoder(tmp_path, monkeypatch, loader):
    """Pillow picks the decoder from the bytes: an EPS named .jpg would reach the EPS plugin
    (Ghostscript). The allowlist means that plugin is never even asked, for uploads and training data."""
    from PIL import EpsImagePlugin

    reached = []

    def spy(self):
        reached.append(self)
        raise SyntaxError("spy: EPS plugin reached")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    path = tmp_path / "holiday.jpg"
    path.write_bytes(EPS)
    with pytest.raises(ImageError, match="not an image in a supported format"):
        loader(path)
    assert reached == []


def test_only_allowlisted_raster_formats(tmp_path):
    pcx = save(smooth_image(4, (16, 16)), tmp_path / "x.pcx")
    renamed = tmp_path / "x.jpg"
    renamed.write_bytes(pcx.read_bytes())
    with pytest.raises(ImageError, match=r"supported format \(JPEG, PNG"):
        open_image(renamed)
    png_named_jpg = save(smooth_image(4, (16, 12)), tmp_path / "y.jpg", format="PNG")
    assert open_image(png_named_jpg)[0].size == (16, 12)  # allowed formats are still found by content


def test_phone_mpo_opens_first_picture(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((200, 10, 10), (0, 0, 200))]
    path = tmp_path / "phone.jpg"
    frames[0].save(path, format="MPO", save_all=True, append_images=frames[1:])
    r, _, b = open_image(path)[0].getpixel((5, 5))
    assert r > 180 and b < 40
