"""AdaIN arbitrary style transfer: the statistics swap, strength and interpolation in feature space,
the decoder's shapes, tiled inference, training with hold-outs, exact resume and safe checkpoints.
Real Oxford VGG19, tiny generated images, one CPU thread."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from stylenet import adain
from stylenet.adain import (
    AdaINStylizer,
    Decoder,
    adain_with_stats,
    blend_stats,
    channel_stats,
    load_decoder,
    read_adain_metadata,
)
from stylenet.adain_train import Recipe, train
from stylenet.checkpoint import CheckpointError
from stylenet.images import ImageError
from stylenet.runtime import to_tensor
from stylenet.stylize import keep_colors

from .conftest import make_checkpoint, smooth_image


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stylizer():
    torch.manual_seed(0)
    return AdaINStylizer(Decoder(width=0.125), device="cpu")


@pytest.fixture
def styles_dir(tmp_path, painting):
    folder = tmp_path / "styles"
    folder.mkdir()
    Image.open(painting).save(folder / "stripes.png")
    smooth_image(7, (64, 56)).save(folder / "waves.jpg")
    smooth_image(8, (60, 64)).save(folder / "held.jpg")
    return folder


def test_adain_has_the_style_statistics_and_the_content_pattern():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(2, 8, 5, 7, generator=gen) * 4 - 1
    style = torch.rand(2, 8, 9, 4, generator=gen) * torch.arange(1, 9).view(1, 8, 1, 1) + 3
    out = adain.adain(content, style)
    (out_mean, out_std), (style_mean, style_std) = channel_stats(out), channel_stats(style)
    assert torch.allclose(out_mean, style_mean, atol=1e-5) and torch.allclose(out_std, style_std, rtol=1e-4)
    assert not torch.allclose(style_mean[0], style_mean[1])  # per image, not over the batch
    normalized = [(f - m) / s for f, (m, s) in ((out, (out_mean, out_std)), (content, channel_stats(content)))]
    assert torch.allclose(*normalized, atol=1e-4)


def test_interpolation_weights_are_scaled_to_sum_to_one_and_mix_adain_targets():
    gen = torch.Generator().manual_seed(1)
    content, s1, s2 = (torch.rand(1, 4, 6, 6, generator=gen) * k for k in (1, 2, 5))
    mixed = adain_with_stats(content, *blend_stats([channel_stats(s1), channel_stats(s2)], [3, 1]))
    paper = 0.75 * adain.adain(content, s1) + 0.25 * adain.adain(content, s2)  # Huang & Belongie's mix
    assert torch.allclose(mixed, paper, atol=1e-5)
    same = blend_stats([channel_stats(s1)] * 2, [0.2, 0.2])
    assert all(torch.allclose(a, b) for a, b in zip(same, channel_stats(s1)))
    for weights in ([1, -1], [0, 0], [1]):
        with pytest.raises(ValueError):
            blend_stats([channel_stats(s1), channel_stats(s2)], weights)


@pytest.mark.parametrize("width", [1.0, 0.5, 0.125])
def test_decoder_upsamples_8x_for_any_size(width):
    decoder = Decoder(width)
    assert decoder(torch.rand(1, 512, 3, 5)).shape == (1, 3, 24, 40)
    first = next(m for m in decoder.net if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == round(256 * width)


def test_alpha_blends_in_feature_space(stylizer, monkeypatch):
    photo, painting = smooth_image(1, (37, 29)), smooth_image(2, (50, 40))
    targets = []
    decode = stylizer.decode
    monkeypatch.setattr(stylizer, "decode", lambda feat: targets.append(feat) or decode(feat))
    for alpha in (0.0, 0.5, 1.0):
        out = stylizer.stylize(photo, painting, alpha=alpha, style_scale=64)
        assert out.size == photo.size and out.mode == "RGB"
    padded = adain.to_cells(to_tensor(photo).unsqueeze(0))
    assert padded.shape[-2:] == (32, 40) and torch.equal(padded[..., 28:, 36:], padded[..., 28:29, 36:37].expand(-1, -1, 4, 4))
    content = stylizer.encode(padded)
    assert torch.equal(targets[0], content)  # alpha 0: the photo's own features
    style_mean, style_std = stylizer.painting_stats(painting, 64)
    mean, std = channel_stats(targets[2])
    varied = channel_stats(content)[1] > 1  # a channel dead (all 0) on this tiny photo stays flat: 0 * std
    assert 400 < varied.sum() < 512
    assert torch.allclose(mean, style_mean, atol=1e-3 * style_mean.abs().max())
    assert torch.allclose(std[varied], style_std[varied], rtol=1e-3, atol=0.01)  # a flat painting channel: sqrt(eps)
    assert torch.allclose(targets[1], (targets[0] + targets[2]) / 2, atol=1e-4)
    with pytest.raises(ValueError):
        stylizer.stylize(photo, painting, alpha=1.5)


def test_stylize_keeps_size_colours_and_interpolates(stylizer):
    photo, a, b = smooth_image(3, (45, 31)), smooth_image(4), Image.new("RGB", (40, 40), (200, 30, 30))
    one = np.asarray(stylizer.stylize(photo, a, style_scale=64), dtype=float)
    same = np.asarray(stylizer.stylize(photo, [(a, 2.0), (a, 5.0)], style_scale=64), dtype=float)
    mixed = np.asarray(stylizer.stylize(photo, [(a, 1.0), (b, 1.0)], style_scale=64), dtype=float)
    assert stylizer.stylize(photo, Image.new("RGB", (300, 10)), style_scale=64).size == photo.size  # 64 x 2 px
    assert one.shape == (31, 45, 3) and np.abs(one - same).max() <= 1 and np.abs(one - mixed).mean() > 0.5
    kept = stylizer.stylize(photo, a, style_scale=64, preserve_color=True)
    assert kept.tobytes() == keep_colors(photo, stylizer.stylize(photo, a, style_scale=64)).tobytes()
    assert kept.tobytes() != stylizer.stylize(photo, a, style_scale=64).tobytes()


def test_a_photo_too_small_for_the_decoder_is_refused_in_one_line(stylizer):
    painting = smooth_image(4)
    assert stylizer.stylize(Image.new("RGB", (16, 40)), painting, style_scale=64).size == (16, 40)
    with pytest.raises(ImageError, match=r"^the photo is 15x40 px: too small to paint \(at least 16 px"):
        stylizer.stylize(Image.new("RGB", (15, 40)), painting, style_scale=64)


def test_tiled_inference_matches_the_whole_image(stylizer, monkeypatch):
    x = torch.rand(1, 3, 136, 200, generator=torch.Generator().manual_seed(2))
    whole = stylizer.decode(stylizer.encode(x))
    monkeypatch.setattr(adain, "TILE_ABOVE_PIXELS", 0)  # tile everything, in 64 px cores
    feat = stylizer.encode(x, tile=64)
    assert len(adain.pixel_tiles(136, 200, 64, adain.MARGIN)) == 3 * 4
    tiled = stylizer.decode(feat, tile=64)
    assert tiled.shape == whole.shape == (1, 3, 136, 200)
    assert (tiled - whole).abs().max() < 1e-3 * whole.abs().max()


def tiny_recipe(photo_dir, styles_dir, steps):
    return Recipe(content=str(photo_dir), styles=[str(styles_dir)], hold_out=["held"], width=0.125, batch_size=2,
                  crop=32, scale_min=32, scale_max=48, steps=steps, checkpoint_every=1)


def test_training_writes_a_loadable_checkpoint_recording_hold_outs(tmp_path, photo_dir, styles_dir):
    meta = train(tiny_recipe(photo_dir, styles_dir, 2), tmp_path / "run", quiet=True)
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(0 < float(r[k]) < 1e12 for r in rows for k in ("content", "style", "total"))
    assert float(rows[0]["total"]) == pytest.approx(float(rows[0]["content"]) + float(rows[0]["style"]), rel=1e-4)
    decoder, saved = load_decoder(tmp_path / "run" / "decoder.safetensors")
    assert saved["hold_out"] == ["held"] and saved["paintings"] == ["stripes", "waves"] and saved["step"] == 2
    assert saved["recipe"]["content"] == "photos" and meta["step"] == 2  # folder names, not paths
    assert all(v.dtype == torch.float16 for v in load_file(str(tmp_path / "run" / "decoder.safetensors")).values())
    assert decoder(torch.rand(1, 512, 2, 2)).isfinite().all()
    with pytest.raises(ValueError, match="no such painting"):
        train(Recipe(content=str(photo_dir), styles=[str(styles_dir)], hold_out=["typo"]), tmp_path / "x", quiet=True)


def test_resume_continues_exactly(tmp_path, photo_dir, styles_dir):
    train(tiny_recipe(photo_dir, styles_dir, 3), tmp_path / "straight", quiet=True)
    train(tiny_recipe(photo_dir, styles_dir, 1), tmp_path / "resumed", quiet=True)
    assert read_adain_metadata(tmp_path / "resumed" / "decoder.train.safetensors", adain.STATE_KIND)["step"] == 1
    meta = train(tiny_recipe(photo_dir, styles_dir, 3), tmp_path / "resumed", resume=True, quiet=True)
    assert meta["step"] == 3
    a, b = (load_file(str(tmp_path / run / "decoder.train.safetensors")) for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with open(tmp_path / "resumed" / "log.csv") as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["1", "2", "3"]
    changed = tiny_recipe(photo_dir, styles_dir, 4)
    changed.lr = 1e-3
    with pytest.raises(ValueError, match="lr"):
        train(changed, tmp_path / "resumed", resume=True, quiet=True)


def test_pickles_and_other_checkpoints_are_refused(tmp_path):
    pickled = tmp_path / "decoder.pth"
    torch.save(Decoder(0.125).state_dict(), pickled)
    with pytest.raises(CheckpointError, match="pickle"):
        load_decoder(pickled)
    with pytest.raises(CheckpointError, match="not an AdaIN decoder"):
        load_decoder(make_checkpoint(tmp_path / "johnson.safetensors", "instance"))
    path = tmp_path / "d.safetensors"
    adain.save_decoder(Decoder(0.125), {}, path)
    meta = read_adain_metadata(path)
    meta["width"] = 0.25  # a header that lies about the tensors' shapes
    adain.atomic_save(load_file(str(path)), meta, path)
    with pytest.raises(CheckpointError, match="do not match"):
        load_decoder(path)


def make_decoder(path, width=0.125):
    """An untrained (seeded) decoder saved as the shipped one is: what the CLI and app tests paint with
    until a trained one ships."""
    torch.manual_seed(0)
    adain.save_decoder(Decoder(width), {"step": 0, "hold_out": ["held"], "paintings": ["stripes", "waves"]}, path)
    return path


def test_the_shipped_decoder_is_found_by_name_and_described_apart_in_the_manifest(tmp_path, capsys):
    from stylenet.app.styles import load_styles
    from stylenet.weights import build_manifest, sha256_file

    assert adain.shipped_decoder(tmp_path) is None  # none shipped yet
    make_checkpoint(tmp_path / "stripes_instance.safetensors", "instance")
    decoder = make_decoder(tmp_path / adain.DECODER_FILE)
    assert adain.shipped_decoder(tmp_path) == decoder
    models = build_manifest(tmp_path)
    assert [m["file"] for m in models] == ["stripes_instance.safetensors"]  # only per-style models are listed
    entry = json.loads((tmp_path / "manifest.json").read_text())["adain_decoder"]
    assert entry == {"file": adain.DECODER_FILE, "width": 0.125, "steps": 0, "recipe": None, "hold_out": ["held"],
                     "paintings": 2, "sha256": sha256_file(decoder), "bytes": decoder.stat().st_size}
    assert list(load_styles(tmp_path)) == ["stripes"] and "skipped" not in capsys.readouterr().err


def test_painting_style_paints_files_like_the_stylizer_and_encodes_the_paintings_once(stylizer, monkeypatch):
    photo, a, b = smooth_image(5, (45, 31)), smooth_image(6), smooth_image(7, (30, 50))
    encoded = []
    painting_stats = stylizer.painting_stats
    monkeypatch.setattr(stylizer, "painting_stats", lambda *args: encoded.append(1) or painting_stats(*args))
    style = adain.PaintingStyle(stylizer, [("a", a, 0.7), ("b", b, 0.3)], alpha=0.5, style_scale=64)
    assert (style.name, style.meta) == ("a+b/adain", {"style": "a+b", "norm": "adain"}) and len(encoded) == 2
    out = style(photo)
    assert out.tobytes() == stylizer.stylize(photo, [(a, 0.7), (b, 0.3)], alpha=0.5, style_scale=64).tobytes()
    assert len(encoded) == 4  # the reference above encoded both again; the style's call encoded none
    assert style(photo, strength=0.0).tobytes() == photo.tobytes()  # pixel strength 0: the photo
    kept = style(photo, preserve_color=True)
    assert kept.tobytes() == keep_colors(photo, out).tobytes()
    transparency = Image.new("L", photo.size, 77)
    small = style(photo, max_size=32, alpha=transparency)
    assert small.size == (32, 22) and small.mode == "RGBA" and small.getchannel("A").getextrema() == (77, 77)
    with pytest.raises(ValueError):
        adain.PaintingStyle(stylizer, [("a", a, 1.0)], alpha=1.5)
