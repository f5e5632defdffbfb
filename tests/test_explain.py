"""The "Why IN?" experiments measure what the app says they measure, on private copies of the model."""
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


def test_in_removes_the_photo_contrast(checkpoints):
    bn, _ = load_model(checkpoints["batch"])
    inorm, _ = load_model(checkpoints["instance"])
    x = torch.rand(1, 3, 32, 32)
    _, _, c_bn = explain.contrast_sensitivity(bn, x)
    _, _, c_in = explain.contrast_sensitivity(inorm, x)
    assert c_in < c_bn
    low = explain.with_contrast(x, 0.4)
    assert low.std() < x.std() and torch.allclose(low.mean(), x.mean(), atol=1e-2)
