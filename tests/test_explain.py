"""The "Why IN?" experiments measure what the app says they measure, on private copies of the model."""
import pytest
import torch

from stylenet import explain
from stylenet.checkpoint import load_model


def test_bn_depends_on_the_batch_and_the_mode_in_does_not(checkpoints):
    bn, _ = load_model(checkpoints["batch"])
    inorm, _ = load_model(checkpoints["instance"])
    x, others = torch.rand(1, 3, 32, 32), torch.rand(3, 3, 32, 32)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    _, _, d_mode = explain.train_vs_eval(bn, x)
    _, _, d_bn = explain.batch_dependence(bn, x, others)
    _, _, d_in = explain.batch_dependence(inorm, x, others)
    assert d_mode > 0 and d_bn > 0 and d_in < 1e-6
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())  # the shared model is untouched


def test_the_contrast_test_compares_a_flattened_and_a_boosted_photo(checkpoints):
    model, _ = load_model(checkpoints["instance"])
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25  # within [0, 1] at both contrasts: no clamping
    low, high, difference = explain.contrast_sensitivity(model, x)
    assert difference == pytest.approx(explain.mad(low, high)) and low.shape == high.shape == x.shape
    assert torch.allclose(explain.with_contrast(x, 1.0), x)
    flat = explain.with_contrast(x, 0.4)
    assert flat.std() < x.std() and torch.allclose(flat.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)


def test_statistics_around_the_first_norm_become_a_figure(checkpoints):
    models = {label: load_model(checkpoints[norm])[0] for label, norm in (("BN", "batch"), ("IN", "instance"))}
    x = torch.rand(1, 3, 32, 32)
    stats = {label: explain.first_norm_statistics(model, x) for label, model in models.items()}
    assert explain.statistics_figure(stats).axes and explain.norm_axes_figure().axes
