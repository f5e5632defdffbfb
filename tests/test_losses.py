import numpy as np
import torch

from stylenet.losses import content_loss, gram_matrix, style_loss, total_variation
from stylenet.vgg import keras_kernel_to_torch, layer_sequence


def test_gram_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(f)[0], expected)


def test_gram_backward_is_autograds():
    # the one-matmul backward, checked numerically, on channels_last features as training has them
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(gram_matrix, (f.requires_grad_(),))
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    weights = torch.randn(2, 3, 3)  # not symmetric: both halves of the backward matter
    (gram_matrix(x) * weights).sum().backward()
    reference = x.detach().clone().requires_grad_()
    flat = reference.reshape(2, 3, 20)
    ((flat @ flat.transpose(1, 2) / 60) * weights).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


def test_gram_backward_under_bf16_autocast():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(x)
    gram.float().sum().backward()
    assert x.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad, 2 * x.detach().sum(1, keepdim=True).expand_as(x) / (3 * 64), atol=0.02, rtol=0.02)


def test_gram_is_size_invariant_for_repeated_texture():
    f = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(gram_matrix(f.repeat(1, 1, 2, 2)) * 1, gram_matrix(f), rtol=1e-5, atol=1e-6)


def test_style_and_content_zero_at_target_and_positive_elsewhere():
    f = {"a": torch.rand(2, 3, 5, 5), "b": torch.rand(2, 4, 3, 3)}
    grams = {k: gram_matrix(v[:1]) for k, v in f.items()}
    same = {k: v[:1].repeat(2, 1, 1, 1) for k, v in f.items()}
    assert style_loss(same, grams).item() < 1e-10
    assert style_loss(f, grams).item() > 1e-4
    assert content_loss(f["a"], f["a"]).item() == 0
    # relative: scaling features and target together does not change the content loss
    torch.testing.assert_close(content_loss(f["a"] * 100, f["a"].flip(0) * 100), content_loss(f["a"], f["a"].flip(0)))


def test_every_term_of_a_batch_is_the_mean_of_its_halves():
    """What data-parallel training relies on: ranks averaging the losses of their halves get the
    whole batch's loss (a batch-wide normalizer would not: the content term used to divide by the
    whole batch's mean square)."""
    torch.manual_seed(0)
    out = torch.rand(4, 3, 6, 6)
    target = torch.rand(4, 3, 6, 6) * torch.tensor([1.0, 5.0, 0.2, 3.0]).view(4, 1, 1, 1)  # unequal brightness
    grams = {"a": gram_matrix(torch.rand(1, 3, 6, 6))}
    for term in (lambda a, b: content_loss(a, b), lambda a, b: style_loss({"a": a}, grams),
                 lambda a, b: total_variation(a)):
        halves = (term(out[:2], target[:2]) + term(out[2:], target[2:])) / 2
        torch.testing.assert_close(term(out, target), halves)
    one_by_one = torch.stack([content_loss(out[i:i + 1], target[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(content_loss(out, target), one_by_one.mean())


def test_total_variation_by_hand():
    img = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    assert total_variation(img).item() == 1.0  # vertical diffs 0, horizontal diffs all 1
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0


def test_keras_kernel_conversion_hand_checked():
    # HWIO kernel: 2x2 spatial, 1 input channel, 2 output channels
    kernel = np.zeros((2, 2, 1, 2), dtype=np.float32)
    kernel[0, 1, 0, 0] = 1.0  # out 0 picks the top-right tap
    kernel[1, 0, 0, 1] = 2.0  # out 1 doubles the bottom-left tap
    w = keras_kernel_to_torch(kernel)
    assert w.shape == (2, 1, 2, 2)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    y = torch.nn.functional.conv2d(x, w)  # cross-correlation, like TF
    assert y.flatten().tolist() == [2.0, 6.0]


def test_vgg_layer_sequence_stops_at_requested_relu():
    seq = layer_sequence("relu2_1")
    assert [name for _, name in seq] == ["block1_conv1", "relu1_1", "block1_conv2", "relu1_2", "pool1",
                                         "block2_conv1", "relu2_1"]
