"""Inference: folding, strength, colour preservation, alpha (tiling: test_tiling.py)."""
import numpy as np
import pytest
import torch
from PIL import Image

from stylenet.checkpoint import load_model
from stylenet.stylize import ImageInstanceNorm, Stylizer, fold_batchnorm

from .conftest import smooth_image


def test_folded_batchnorm_matches_plain_forward(checkpoints):
    plain, _ = load_model(checkpoints["batch"])
    folded, _ = load_model(checkpoints["batch"])
    fold_batchnorm(folded)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), plain(x), atol=1e-4, rtol=1e-4)


def test_instance_norms_run_image_by_image_on_channels_last_and_match_the_stock_layer(checkpoints):
    model, meta = load_model(checkpoints["instance"])
    stylizer = Stylizer(model, meta, torch.device("cpu"), precision="fp32", backend="eager")
    swapped = [m for m in stylizer.model.modules() if isinstance(m, ImageInstanceNorm)]
    assert len(swapped) == sum(isinstance(m, torch.nn.InstanceNorm2d) for m in model.modules()) > 0
    x = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = stylizer.forward(x)
        assert torch.allclose(out, model.eval()(x), atol=1e-4)  # each image by its own statistics, not the batch's
        layer = swapped[0]
        features = torch.rand(2, layer.num_features, 9, 7) * 5 + 3
        stock = torch.nn.functional.instance_norm(features, weight=layer.weight, bias=layer.bias, eps=layer.eps)
        assert torch.allclose(layer(features.contiguous(memory_format=torch.channels_last)), stock, atol=1e-5)


def test_strength_zero_is_the_photo_and_size_kept(checkpoints):
    stylizer = Stylizer.load(checkpoints["instance"], device="cpu")
    photo = smooth_image(7, (45, 31))
    assert np.array_equal(np.asarray(stylizer(photo, strength=0)), np.asarray(photo))
    full, half = stylizer(photo), stylizer(photo, strength=0.5)
    assert full.size == photo.size
    mid = (np.asarray(full, float) + np.asarray(photo, float)) / 2
    assert np.abs(np.asarray(half, float) - mid).max() <= 1.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        stylizer(photo, strength=1.5)


def test_blend_mixes_clamped_output_and_skips_the_network_at_zero(checkpoints, monkeypatch):
    stylizer = Stylizer.load(checkpoints["instance"], device="cpu", precision="fp32")
    x = torch.rand(2, 3, 20, 24)
    styled = stylizer.forward(x).clamp(0, 1)
    torch.testing.assert_close(stylizer.blend(x), styled)
    torch.testing.assert_close(stylizer.blend(x, 0.25), 0.25 * styled + 0.75 * x)
    with pytest.raises(ValueError, match="strength must be between 0 and 1, got -0.1"):
        stylizer.blend(x, -0.1)
    monkeypatch.setattr(stylizer, "forward", lambda _: pytest.fail("the network ran at strength 0"))
    photo = stylizer.blend(x, 0.0)
    assert torch.equal(photo, x) and photo.data_ptr() != x.data_ptr()  # the photo, as a copy


class Greyish(torch.nn.Module):
    """A stand-in 'style' that drains colour and lowers contrast, with a known output range."""

    def forward(self, x):
        return x.mean(1, keepdim=True).expand_as(x) * 0.6 + 0.2


def test_preserve_color_keeps_chroma():
    stylizer = Stylizer(Greyish(), {"style": "grey", "norm": "none"}, torch.device("cpu"))
    photo = smooth_image(8, (40, 40))
    chroma_in = np.asarray(photo.convert("YCbCr"), float)[..., 1:]
    grey = np.asarray(stylizer(photo).convert("YCbCr"), float)
    kept = np.asarray(stylizer(photo, preserve_color=True).convert("YCbCr"), float)
    assert np.abs(grey[..., 1:] - 128).max() <= 1  # without the flag: no colour at all
    assert np.abs(kept[..., 1:] - chroma_in).mean() < 2.0  # with it: the photo's colour
    assert np.abs(kept[..., 0] - grey[..., 0]).mean() < 2.0  # and the style's luminance


def test_alpha_reattached_and_max_size(checkpoints):
    stylizer = Stylizer.load(checkpoints["instance"], device="cpu")
    photo = smooth_image(9, (80, 40))
    alpha = Image.linear_gradient("L").resize((80, 40))
    out = stylizer(photo, alpha=alpha, max_size=40)
    assert out.mode == "RGBA" and out.size == (40, 20)


def test_unknown_weights_name(tmp_path):
    with pytest.raises(ValueError, match="neither a checkpoint file nor a shipped model"):
        Stylizer.load("nowhere/instance", weights_dir=tmp_path)
