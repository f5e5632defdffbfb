"""The half-resolution convs compute what the textbook layers compute, forward and backward, keep the
checkpoint's keys, and export as the textbook operators."""
import copy

import pytest
import torch
from torch import nn

from stylenet.backends import onnx_bytes
from stylenet.checkpoint import load_model
from stylenet.stylize import Stylizer
from stylenet.subpixel import PhaseUpsampleConv2d, SpaceToDepthConv2d, rearrange_convs
from stylenet.transformer import TransformerNet


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
@pytest.mark.parametrize("size", [(36, 44), (37, 53), (1, 5)])
def test_rearranged_network_trains_like_the_textbook_one(norm, size):
    torch.manual_seed(0)
    plain = TransformerNet(norm, width=8).train()
    fast = rearrange_convs(copy.deepcopy(plain))
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert sum(isinstance(m, PhaseUpsampleConv2d) for m in fast.modules()) == 2
    assert sum(isinstance(m, SpaceToDepthConv2d) for m in fast.modules()) == 1
    x = torch.rand(2, 3, *size)
    outs = []
    for net in (plain, fast):
        y = net(x)
        (y.square().mean() + y.mean()).backward()
        outs.append(y)
    assert outs[1].shape == x.shape
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-4)
    # Relative to the whole gradient: a conv bias before IN has a true gradient of 0, so its rounding noise
    # is all there is of it; a wrong rearrangement is off by the gradient's own size.
    grads = [torch.cat([p.grad.flatten() for p in net.parameters()]) for net in (plain, fast)]
    assert (grads[1] - grads[0]).norm() <= 1e-4 * grads[0].norm()


def test_the_rearranged_layers_share_the_original_parameters_and_mode():
    net = TransformerNet("instance", width=4).eval()
    up, out = net.decoder[0].conv, net.decoder[2].conv
    state = torch.random.get_rng_state()
    rearrange_convs(net)
    assert torch.equal(torch.random.get_rng_state(), state)  # no weights drawn and thrown away
    assert net.decoder[0].conv.weight is up.weight and net.decoder[2].conv.bias is out.bias
    assert isinstance(net.decoder[0].pad, nn.Identity) and not net.decoder[0].upsample
    assert not any(m.training for m in net.modules())
    assert type(net.encoder[0].conv) is nn.Conv2d  # 3 -> 4 channels at 9x9: widens, not the output conv


@pytest.mark.parametrize("size", [(1, 1), (1, 3), (3, 2), (7, 5)])
def test_the_phase_conv_alone_matches_upsample_pad_conv_at_odd_sizes(size):
    conv = nn.Conv2d(5, 6, 3)
    x = torch.rand(2, 5, *size)
    textbook = conv(nn.functional.pad(nn.functional.interpolate(x, scale_factor=2), (1, 1, 1, 1), mode="reflect"))
    torch.testing.assert_close(PhaseUpsampleConv2d(conv)(x), textbook, atol=1e-5, rtol=1e-4)


def test_space_to_depth_falls_back_on_an_odd_input_and_refuses_an_even_kernel():
    conv = nn.Conv2d(6, 3, 5)
    s2d = SpaceToDepthConv2d(conv)
    for shape in [(1, 6, 11, 12), (1, 6, 12, 12)]:
        x = torch.rand(shape)
        torch.testing.assert_close(s2d(x), conv(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="odd"):
        SpaceToDepthConv2d(nn.Conv2d(6, 3, 4))
    with pytest.raises(ValueError, match="3x3"):
        PhaseUpsampleConv2d(nn.Conv2d(6, 3, 5))


def test_the_stylizer_runs_rearranged_and_matches_the_plain_network(checkpoints):
    for norm in ["batch", "instance"]:
        model, meta = load_model(checkpoints[norm])
        stylizer = Stylizer(model, meta, torch.device("cpu"), precision="fp32", backend="eager")
        assert any(isinstance(m, PhaseUpsampleConv2d) for m in stylizer.model.modules())
        x = torch.rand(1, 3, 40, 56)
        with torch.inference_mode():
            torch.testing.assert_close(stylizer.forward(x), model.eval()(x), atol=1e-4, rtol=1e-4)


def test_export_writes_the_textbook_operators():
    graph = onnx_bytes(rearrange_convs(TransformerNet("instance", width=4).eval()))
    assert b"Resize" in graph and b"DepthToSpace" not in graph and b"Einsum" not in graph
