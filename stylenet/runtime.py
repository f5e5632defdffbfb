"""Where tensors live and how pixels become tensors: device, dtype, PIL <-> tensor.

Kept apart from training and inference so that each can import these small helpers without
pulling in the other (inference must not load VGG or the trainer).
"""
from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> the CUDA GPU when there is one, else the CPU; asking for a missing GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA GPU is available")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """True where bfloat16 math runs natively (a GPU, or a CPU with AVX512-BF16 or AMX): only there
    does bf16 pay. (oneDNN's own "bf16 supported" check says yes for any AVX-512 CPU, where bf16 is
    emulated with fp32 instructions and conversions on top.)"""
    if device.type == "cuda":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """"auto" -> bfloat16 where the hardware runs it natively, else float32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    return torch.bfloat16 if native_bf16(device) else torch.float32


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float (3, H, W) in [0, 1], the network's pixel convention."""
    return TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] (clamped) -> PIL RGB."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)
