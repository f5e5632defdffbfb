import pytest
import torch
from torch import nn

from stylenet.norms import NORM_KINDS
from stylenet.transformer import TransformerNet


@pytest.mark.parametrize("norm", NORM_KINDS)
@pytest.mark.parametrize("size", [(32, 32), (37, 53), (1, 5)])
def test_any_size_in_same_size_out(norm, size):
    net = TransformerNet(norm, width=4).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        assert net(x).shape == x.shape


def test_layout_has_no_transposed_convs_and_reflection_padding():
    net = TransformerNet("instance", width=8)
    kinds = [type(m) for m in net.modules()]
    assert nn.ConvTranspose2d not in kinds
    assert kinds.count(nn.ReflectionPad2d) == kinds.count(nn.Conv2d) == 3 + 5 * 2 + 2 + 1
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 3 + 10 + 2
    strides = [m.stride[0] for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert strides.count(2) == 2
    kernels = [m.kernel_size[0] for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert kernels[0] == kernels[-1] == 9


def test_bad_norm_name_fails_at_construction():
    with pytest.raises(ValueError, match="unknown norm"):
        TransformerNet("batchnorm")
