"""Perceptual losses of Johnson et al.: content (feature error), style (Gram error), total variation; each a
relative error and a mean of per-image terms."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _Gram(torch.autograd.Function):
    """``f @ f^T`` with a backward of one matmul, ``(g + g^T) @ f``, where autograd's generic bmm
    backward does two (one per operand, not knowing they are the same tensor): a third less work
    on the largest fp32 matmuls of a training step."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        grad = grad.to(f.dtype)  # under autocast the forward's bmm ran in bf16 on fp32 features
        return torch.bmm(grad + grad.transpose(1, 2), f)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) channel co-activations, divided by C*H*W so that the loss does not
    grow with image size or layer width."""
    n, c, h, w = features.shape
    return _Gram.apply(features.reshape(n, c, h * w)) / (c * h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE divided by the target's mean square: a scale-free error (0 = equal, 1 = as far as zero).

    Raw Caffe-scale VGG features make plain MSEs differ by 1000x between layers (measured on
    photos vs Starry Night: Gram MSE 6e2 at relu1_1, 7e5 at relu4_1), so a plain sum would be all
    relu4_1 and loss weights would depend on layer scales. Relative errors let every style layer
    count equally and keep the weights readable.
    """
    return F.mse_loss(x, target) / target.pow(2).mean().clamp_min(1e-12)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The relative feature error of each image, averaged over the batch: a mean of per-image terms
    (like the style and TV terms), so a batch split across data-parallel ranks has, averaged, exactly
    the loss and gradient of the whole batch in one process; each photo counts the same whatever its
    brightness."""
    dims = tuple(range(1, features.dim()))
    error = (features - target).pow(2).mean(dims) / target.pow(2).mean(dims).clamp_min(1e-12)
    return error.mean()


def style_loss(features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over style layers of the relative Gram error; targets broadcast over the batch."""
    total = torch.zeros((), device=next(iter(features.values())).device)
    for name, gram_target in target_grams.items():
        gram = gram_matrix(features[name])
        total = total + relative_mse(gram, gram_target.expand_as(gram))
    return total / len(target_grams)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels: discourages high-frequency noise."""
    dh = image[..., 1:, :] - image[..., :-1, :]
    dw = image[..., :, 1:] - image[..., :, :-1]
    return dh.pow(2).mean() + dw.pow(2).mean()
