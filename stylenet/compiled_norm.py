"""Instance norm for training on the CPU, compiled: same maths, same parameters, fewer memory passes.

PyTorch's CPU instance norm reshapes its input to one image of N*C channels and runs batch norm on
it. On a channels_last activation that reshape is a copy, its result comes back NCHW, and the next
convolution reorders it to channels_last again; backward pays the same twice more. Measured with
``scripts/bench.py --train``, that left IN training 10-15 % slower than BN on the same network.

``CompiledInstanceNorm2d`` computes the same ``(x - mean) / sqrt(var + eps) * weight + bias`` per
image and channel, written as plain tensor maths that ``torch.compile`` turns into one reduction and
one elementwise pass, in whatever memory layout the input has. It is an ``nn.InstanceNorm2d``
(parameters, state-dict keys, isinstance checks are unchanged), so checkpoints of a model trained with
it load into a plain ``TransformerNet``. Inference keeps the stock layer: it is only used in training,
where the few seconds of compiling are paid once per process (and are cached on disk after that).

Compiling needs a C++ compiler; where there is none (or the first compile, tried on a small input in
fp32 and bf16, fails for any other reason) the layer says so once and computes with the stock
instance norm instead.
"""
from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

import torch
from torch import nn

from .norms import instance_norm_like, replace_norms


def instance_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Instance norm of (N, C, H, W) ``x`` with per-channel ``weight`` and ``bias``, statistics in fp32,
    returned in ``x``'s dtype (bf16 under autocast, as the stock layer)."""
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
    y = (xf - mean) * torch.rsqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    return y.to(x.dtype)


@functools.cache
def compiled_instance_norm() -> Callable[..., torch.Tensor] | None:
    """``instance_norm`` compiled, or None where ``torch.compile`` cannot build it on this machine.

    Made on first use, once per process (importing the compiler alone takes seconds), and tried there
    on what training runs: forward and backward, fp32 and bf16, channels_last. Compiled with dynamic
    shapes, so those graphs serve every layer (32, 64, 128 channels at their sizes) and every crop size.
    """
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on a CPU
    compiled = torch.compile(instance_norm, dynamic=True)
    try:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.rand(2, 3, 4, 4, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
            weight, bias = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
            compiled(x, weight, bias, 1e-5).float().sum().backward()
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: use the stock layer
        print(f"torch.compile is not available here ({type(exc).__name__}); training with the stock "
              "instance norm, which is slower on the CPU", file=sys.stderr)
        return None
    return compiled


class CompiledInstanceNorm2d(nn.InstanceNorm2d):
    """An affine, per-image ``nn.InstanceNorm2d`` computed by the compiled ``instance_norm`` in training
    mode; in eval mode (a preview during training, at any size) by the stock layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # inside a compiled step (StepMode.compile): just the maths
            return instance_norm(x, self.weight, self.bias, self.eps)
        compiled = compiled_instance_norm() if self.training and x.dim() == 4 else None
        if compiled is None:
            return super().forward(x)
        return compiled(x, self.weight, self.bias, self.eps)

    @classmethod
    def like(cls, norm: nn.InstanceNorm2d) -> CompiledInstanceNorm2d:
        """A compiled layer holding ``norm``'s own parameter tensors (an optimizer made before the swap
        keeps updating them)."""
        return instance_norm_like(cls, norm)


def compile_instance_norms(model: nn.Module) -> nn.Module:
    """``model`` with each of its instance norms computed by ``CompiledInstanceNorm2d``, in place."""
    replace_norms(model, CompiledInstanceNorm2d.like, kinds=(nn.InstanceNorm2d,))
    return model
