"""The feed-forward image transformation network of Johnson et al. (2016).

Layout: reflection-padded 9x9 conv in, two stride-2 convs down, five residual blocks (by default), two
nearest-neighbour upsample + 3x3 conv stages (no transposed convs, which cause checkerboards), and
a 9x9 conv out. Each conv but the last is followed by a pluggable norm (see ``norms.py``) and ReLU.

Pixel convention: input and output are RGB float tensors in [0, 1], shape (N, 3, H, W). The raw
output is not clamped so training gradients flow; ``stylize`` clamps it to [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norms import create_norm_layer, get_norm

DOWNSCALE = 4  # two stride-2 convs: the network works on sizes divisible by 4
MIN_SIZE = 16  # smaller inputs are padded up so every reflection pad has room
RESIDUAL_BLOCKS = 5  # Johnson et al.'s, what training builds; slim students may have fewer


class ConvLayer(nn.Module):
    """[Upsample x2 +] reflection pad + conv (+ norm) (+ ReLU), as named submodules.

    Reflection padding avoids dark borders; nearest-neighbour upsampling before a conv is the
    checkerboard-free replacement for transposed convolution. The names (``conv``, ``norm``) make
    state-dict keys read as what they are and let BN folding find each conv/norm pair by name.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: str = "none",
                 relu: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = create_norm_layer(norm, cout)  # "none": an identity, no parameters
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.act(self.norm(self.conv(self.pad(x))))


class ResidualBlock(nn.Module):
    """Two 3x3 conv+norm layers with an identity shortcut (no ReLU after the sum, as Johnson)."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, norm=norm)
        self.conv2 = ConvLayer(channels, channels, 3, norm=norm, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class TransformerNet(nn.Module):
    """Photo -> stylized photo. ``norm`` picks the normalization (kept as ``norm_kind``: every layer's
    ``norm`` is its norm module), ``width`` the first conv's channels, ``num_residual`` the residual blocks."""

    def __init__(self, norm: str = "instance", width: int = 32, num_residual: int = RESIDUAL_BLOCKS) -> None:
        super().__init__()
        get_norm(norm)  # fail fast on a bad name
        self.norm_kind, self.width, self.num_residual = norm, width, num_residual
        w = width
        self.encoder = nn.Sequential(ConvLayer(3, w, 9, norm=norm), ConvLayer(w, 2 * w, 3, 2, norm=norm),
                                     ConvLayer(2 * w, 4 * w, 3, 2, norm=norm))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w, norm) for _ in range(num_residual)])
        self.decoder = nn.Sequential(ConvLayer(4 * w, 2 * w, 3, norm=norm, upsample=True),
                                     ConvLayer(2 * w, w, 3, norm=norm, upsample=True),
                                     ConvLayer(w, 3, 9, norm="none", relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Any H, W (odd, tiny): pad up to a multiple of 4 (>= 16), run, crop back to the input size."""
        h, w = x.shape[-2:]
        pad_h, pad_w = (max(MIN_SIZE, n + -n % DOWNSCALE) - n for n in (h, w))
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = self.decoder(self.residuals(self.encoder(x)))
        return y[..., :h, :w]
