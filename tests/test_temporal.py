"""Steadier IN for video (stylenet.temporal): statistics smoothed over frames, on a private copy."""
from __future__ import annotations

import copy

import pytest
import torch

from stylenet.stylize import Stylizer
from stylenet.temporal import SmoothedStatsNorm, stabilized


class FirstFrameStats(torch.nn.Module):
    """An IN/GN layer that normalizes every image of the batch with image 0's mean and variance."""

    def __init__(self, norm: torch.nn.InstanceNorm2d | torch.nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm
        self.groups = norm.num_groups if isinstance(norm, torch.nn.GroupNorm) else norm.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.groups, -1)
        var, mean = torch.var_mean(grouped[:1], dim=-1, keepdim=True, correction=0)
        y = ((grouped - mean) / torch.sqrt(var + self.norm.eps)).reshape(n, c, h, w)
        return y * self.norm.weight.view(1, c, 1, 1) + self.norm.bias.view(1, c, 1, 1)


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_smoothed_statistics(checkpoints, tmp_path, norm):
    from .conftest import make_checkpoint

    path = checkpoints.get(norm) or make_checkpoint(tmp_path / f"g_{norm}.safetensors", norm)
    stylizer = Stylizer.load(path, device="cpu", precision="fp32")
    frames = torch.rand(6, 3, 32, 32)
    plain = stylizer.forward(frames)
    assert torch.allclose(stabilized(stylizer, 0.0).forward(frames), plain, atol=1e-5)  # momentum 0 = plain IN
    smoothed = stabilized(stylizer, 0.9)
    whole = smoothed.forward(frames)
    assert (whole - plain).abs().mean() > 1e-3  # later frames use earlier frames' statistics
    assert torch.allclose(whole[0], plain[0], atol=1e-5)  # the first frame has only its own
    in_pieces = stabilized(stylizer, 0.9)
    pieces = torch.cat([in_pieces.forward(frames[:2]), in_pieces.forward(frames[2:5]), in_pieces.forward(frames[5:])])
    assert torch.allclose(pieces, whole, atol=1e-5)  # batching does not change the result
    reference = stabilized(stylizer, 1.0).forward(frames)
    assert torch.allclose(reference[0], plain[0], atol=1e-5)
    assert (reference[1:] - plain[1:]).abs().mean() > 1e-3  # not each frame's own statistics, as plain IN
    frozen = copy.copy(stylizer)  # an independent oracle: every norm uses frame 0's statistics
    frozen.model = copy.deepcopy(stylizer.model)
    for parent in list(frozen.model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, (torch.nn.InstanceNorm2d, torch.nn.GroupNorm)):
                setattr(parent, child_name, FirstFrameStats(child))
    assert torch.allclose(reference, frozen.forward(frames), atol=1e-5)  # frozen at the first frame's statistics
    assert torch.equal(stylizer.forward(frames), plain)  # the shared model is untouched
    assert not any(isinstance(m, SmoothedStatsNorm) for m in stylizer.model.modules())
    assert any(isinstance(m, SmoothedStatsNorm) for m in smoothed.model.modules())


def test_smoothing_leaves_bn_alone(checkpoints):
    stylizer = Stylizer.load(checkpoints["batch"], device="cpu")
    frames = torch.rand(3, 3, 32, 32)
    assert torch.equal(stabilized(stylizer, 0.9).forward(frames), stylizer.forward(frames))
    with pytest.raises(ValueError, match="momentum must be between 0 and 1"):
        stabilized(stylizer, 1.5)
