"""Tiled inference gives the whole-image output: exact statistics, enough context, no shared state."""
import threading

import numpy as np
import pytest
import torch

from stylenet import stylize
from stylenet.checkpoint import load_model
from stylenet.runtime import to_tensor
from stylenet.stylize import Stylizer
from stylenet.tiling import MARGIN, WholeImageNorm, run_tiled, with_whole_image_norms
from stylenet.transformer import TransformerNet

from .conftest import make_checkpoint, smooth_image


def test_margin_covers_the_receptive_field():
    """A core is exact only if its margin holds every input pixel its outputs depend on."""
    torch.manual_seed(0)
    net = TransformerNet("batch", width=8).eval()  # eval BN: no per-image statistics to spread a change
    reach = 0
    for offset in range(4):  # every phase of the stride-4 grid
        x = torch.rand(1, 3, 256, 256)
        poked = x.clone()
        poked[..., 128 + offset, 128 + offset] += 1
        with torch.no_grad():
            changed = (net(poked) - net(x)).abs().sum(1)[0].nonzero() - (128 + offset)
        reach = max(reach, int(changed.abs().max()))
    assert 40 < reach < MARGIN


@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "group"])
def test_tiled_equals_untiled(tmp_path, norm):
    """2 x 2 tiles of a photo whose sides are not multiples of 4: the same pixels as one pass, to float
    rounding. (IN, LN and GN statistics from a copy downscaled 1.5x, the old way: 0.005-0.07 mean error.)"""
    model, _ = load_model(make_checkpoint(tmp_path / "m.safetensors", norm))
    x = to_tensor(smooth_image(5, (258, 182))).unsqueeze(0)
    with torch.no_grad():
        whole = model(x)
    tiled = run_tiled(model, x, tile=160)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-4


def test_per_tile_statistics_would_seam(checkpoints):
    """Why the whole image's statistics: tiles normalized by their own differ a lot from one pass."""
    model, _ = load_model(checkpoints["instance"])
    x = to_tensor(smooth_image(5, (258, 182))).unsqueeze(0)
    with torch.no_grad():
        whole = model(x)
    naive = run_tiled(model, x, tile=160, freeze=False)
    assert (naive - whole).abs().mean() > 0.01


def test_stylizer_above_the_threshold_matches_one_pass(checkpoints, monkeypatch):
    """The real path (BN folded, channels_last) on a photo whose long side exceeds the 1024 px the
    statistics used to be measured at: every output pixel within one 8-bit level of the untiled one
    (with the old thumbnail statistics: up to 65 levels off, 0.014 on average)."""
    stylizer = Stylizer.load(checkpoints["instance"], device="cpu", precision="fp32")
    photo = smooth_image(11, (1100, 64))
    whole = np.asarray(stylizer(photo), dtype=int)
    monkeypatch.setattr(stylize, "TILE_ABOVE_PIXELS", 0)
    tiled = np.asarray(stylizer(photo), dtype=int)
    assert np.abs(tiled - whole).max() <= 1


def test_a_batch_above_the_threshold_is_tiled_image_by_image(checkpoints, monkeypatch):
    """Video frames arrive in batches: each frame gets its own whole-image statistics."""
    stylizer = Stylizer.load(checkpoints["instance"], device="cpu", precision="fp32")
    frames = torch.stack([to_tensor(smooth_image(i, (96, 64))) for i in (1, 2)])
    with torch.no_grad():
        alone = torch.cat([stylizer.forward(f.unsqueeze(0)) for f in frames])
        monkeypatch.setattr(stylize, "TILE_ABOVE_PIXELS", 0)
        tiled = stylizer.forward(frames)
    assert tiled.shape == frames.shape
    assert (tiled - alone).abs().max() < 1e-4


def test_tiling_leaves_a_shared_model_alone(checkpoints):
    """The app serves two requests at once with one model: while one photo runs tiled, the model
    must keep giving the other request its own, untiled result."""
    model, _ = load_model(checkpoints["instance"])
    big = to_tensor(smooth_image(5, (258, 182))).unsqueeze(0)
    small = to_tensor(smooth_image(6, (64, 48))).unsqueeze(0)
    with torch.no_grad():
        expected = model(small)
    worker = threading.Thread(target=run_tiled, args=(model, big), kwargs={"tile": 160})
    worker.start()
    outputs = []
    while worker.is_alive():
        with torch.no_grad():
            outputs.append(model(small))
    worker.join()
    assert outputs and all(torch.equal(out, expected) for out in outputs)
    assert not any(isinstance(m, WholeImageNorm) for m in model.modules())


def test_only_models_with_per_image_norms_are_copied():
    bn = TransformerNet("batch", width=4).eval()
    assert with_whole_image_norms(bn) == (bn, [])  # nothing to stand in for: no copy of the weights
    net = TransformerNet("layer", width=4).eval()
    copy, norms = with_whole_image_norms(net)
    assert copy is not net and len(norms) == 3 + 10 + 2
    assert all(isinstance(m, WholeImageNorm) for m in norms)
