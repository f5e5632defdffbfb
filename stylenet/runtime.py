"""Where tensors live and how pixels become tensors: device, dtype, PIL <-> tensor.

Kept apart from training and inference so that each can import these small helpers without
pulling in the other (inference must not load VGG or the trainer).
"""
from __future__ import annotations

import os
import platform

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


def cpu_summary() -> str:
    """What a measured speed or loss depends on, for the line a measurement script prints with it: the
    CPU's model, cores and the vector flags that change the maths (AVX2, AVX-512, AVX512-BF16, AMX)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags] or ["no AVX2"]
    return (f"{model}, {os.cpu_count()} cores, flags {' '.join(shown)}, "
            f"bf16 {'on' if native_bf16(torch.device('cpu')) else 'off'}")


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
