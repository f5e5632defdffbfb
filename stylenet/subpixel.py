"""Two of the transformer's full-resolution convolutions, computed exactly at half resolution.

Why: on a CPU without bf16 the full-resolution layers are where the time goes, and not for their FLOPs.
At 1024² (2 threads, AVX2, BN folded, channels_last) the 9x9 output conv (32 -> 3 channels) took 0.73 s
of 3.9 s for 8 GMAC, a fifth of the residual blocks' rate: three output channels leave the vector units
idle. The two nearest-upsample + 3x3 stages took 1.1 s, a third of it spent on the upsampled copy.

* ``PhaseUpsampleConv2d``: a nearest x2 upsample followed by a reflection-padded 3x3 conv gives each of
  the four output phases (even/odd row, even/odd column) a 2x2 conv of the *low*-resolution input (the
  3x3 taps that land on the same low-res pixel add up; reflection by one pixel of the upsampled image is
  replication of the low-res one). One 2x2 conv with 4x the output channels computes all phases:
  4 phases x 4 taps against 4 pixels x 9 taps, 2.25x fewer MACs, and no upsampled copy.
* ``SpaceToDepthConv2d``: a stride-1 kxk conv (k odd) of an even-sized image equals a (k//2 + 1)-square conv
  of its 2x2 space-to-depth rearrangement (4x the input channels, a quarter of the pixels) whose output is
  rearranged back: 9x9 32 -> 3 becomes 5x5 128 -> 12, more MACs but a shape the CPU kernels run well.

Both take over the conv's own parameters (the state-dict keys, BN folding and quantization see a
``Conv2d``) and derive the rearranged weights from them on every call, so gradients reach the original
weights and training can use them too. Results equal the stock layers up to float rounding (tested);
ONNX export takes the stock path, so exported graphs keep the textbook operators.
``scripts/bench.py`` measures what they are worth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import ConvLayer

# PHASE_TAPS[a, d, j] = 1 where row d of the 3x3 kernel lands, for output phase a, on tap j of the 2-pixel
# low-res window: phase 0 (rows i-1, i, i) reads window (i-1, i), phase 1 (rows i, i, i+1) window (i, i+1).
PHASE_TAPS = torch.tensor([[[1., 0.], [0., 1.], [0., 1.]],
                           [[1., 0.], [1., 0.], [0., 1.]]])


def pays_on(device: torch.device) -> bool:
    """Whether to rearrange a network that runs on ``device``: on the CPU, the one place it was measured
    faster (docs/benchmarks.md)."""
    return device.type == "cpu"


class PhaseUpsampleConv2d(nn.Conv2d):
    """Nearest x2 upsample + reflection pad 1 + this 3x3 conv, computed as one 2x2 conv at low resolution."""

    def __init__(self, conv: nn.Conv2d) -> None:
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.groups != 1:
            raise ValueError("only a 3x3, stride-1 convolution follows an upsample here")
        super().__init__(conv.in_channels, conv.out_channels, 3, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias  # meta placeholders above: no memory, no random draws
        self.register_buffer("taps", PHASE_TAPS.to(conv.weight), persistent=False)
        self.train(conv.training)

    def phase_weight(self) -> torch.Tensor:
        """(4 * out, in, 2, 2): phase-major (phase 2a+b holds the output rows 2i+a, columns 2j+b)."""
        t = self.taps
        w = torch.einsum("ayi,ocyx,bxj->abocij", t, self.weight, t)
        return w.reshape(4 * self.out_channels, self.in_channels, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            up = F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect")
            return F.conv2d(up, self.weight, self.bias)
        n, _, h, w = x.shape
        bias = None if self.bias is None else self.bias.repeat(4)
        z = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.phase_weight(), bias)  # (n, 4c, h+1, w+1)
        # Phase (a, b) of output pixel (i, j) sits at window (i + a, j + b): four shifted slices, interleaved.
        zt = z.permute(0, 2, 3, 1).reshape(n, h + 1, w + 1, 2, 2, self.out_channels)
        rows = [torch.stack([zt[:, a:a + h, b:b + w, a, b] for b in range(2)], dim=3) for a in range(2)]
        return torch.stack(rows, dim=2).view(n, 2 * h, 2 * w, self.out_channels).permute(0, 3, 1, 2)


class SpaceToDepthConv2d(nn.Conv2d):
    """This stride-1 conv (already padded input) computed on the 2x2 space-to-depth of an even-sized input."""

    def __init__(self, conv: nn.Conv2d) -> None:
        k = conv.kernel_size[0]
        square_odd = conv.kernel_size == (k, k) and k % 2 == 1
        if not square_odd or conv.stride != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
            raise ValueError("only a square, odd, stride-1, unpadded convolution is rearranged")
        super().__init__(conv.in_channels, conv.out_channels, k, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.train(conv.training)
        # taps[a, d, q, u] = 1 where output phase a's kernel row d reads input phase q at block offset u.
        taps = torch.zeros(2, k, 2, k // 2 + 1)
        for a in range(2):
            for d in range(k):
                taps[a, d, (a + d) % 2, (a + d) // 2] = 1
        self.register_buffer("taps", taps.to(conv.weight), persistent=False)

    def blocked_weight(self) -> torch.Tensor:
        """(out * 4, in * 4, k//2 + 1, same), in pixel_unshuffle / pixel_shuffle channel order."""
        t = self.taps
        w = torch.einsum("ayqu,ocyx,bxrv->oabcqruv", t, self.weight, t)
        size = self.kernel_size[0] // 2 + 1
        return w.reshape(4 * self.out_channels, 4 * self.in_channels, size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2 or x.shape[-1] % 2 or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        blocks = F.pixel_unshuffle(x, 2)
        return F.pixel_shuffle(F.conv2d(blocks, self.blocked_weight(), bias), 2)


def rearrange_convs(model: nn.Module) -> nn.Module:
    """In place: every upsampling ``ConvLayer``'s conv computed by phases, and a large-kernel layer that
    narrows to a few output channels (the 9x9 output conv) by space-to-depth. Same parameters, same keys."""
    for layer in model.modules():
        if not isinstance(layer, ConvLayer) or type(layer.conv) is not nn.Conv2d:
            continue
        if layer.upsample:
            layer.conv, layer.pad, layer.upsample = PhaseUpsampleConv2d(layer.conv), nn.Identity(), False
            layer.pad.train(layer.training)
        elif (layer.conv.out_channels <= 4 < layer.conv.in_channels and layer.conv.kernel_size[0] >= 5
              and layer.conv.stride == (1, 1)):
            layer.conv = SpaceToDepthConv2d(layer.conv)
    return model
