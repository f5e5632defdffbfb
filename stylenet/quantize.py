"""Static int8 quantization of a stylizing network for ONNX Runtime on the CPU: the ``onnx-int8`` backend.

Why: a CPU without native bf16 runs this network in fp32, and int8 convolutions are what is left there
(issue 24). ONNX Runtime's ``quantize_static`` (QDQ format) quantizes the exported graph
(``backends.onnx_bytes``), with activation ranges calibrated (min/max) on ``CALIBRATION_PHOTOS``, four of
the shipped example photos at 512 px; the other 13 are held out to measure what int8 costs
(``scripts/quantize_eval.py``, docs/benchmarks.md). Each choice below was measured on Starry Night BN and
IN in one-off trials (mean absolute difference to fp32, in [0, 1] pixels, over the held-out photos; 2 AVX2
cores):

- uint8 activations (ReLU outputs are non-negative) and int8 weights per output channel, with
  ``reduce_range`` (7-bit weights): without VNNI, x86 multiplies u8 by s8 with VPMADDUBSW, whose int16
  sums can saturate; 7-bit weights cannot. BN: 0.012 with it, 0.018 without; symmetric int8 activations
  0.044; uint8 weights (no saturation either) were 1.4-1.6x slower.
- The last conv (32 -> 3 channels, 9x9) stays fp32: as int8 it took 3.5x as long (1142 vs 323 ms at 512²).
- The pads run on the int8 tensors (``pad_in_int8``): 1.15x to 1.7x.
- Instance-norm models are standardized first (``standardize_instance_norm_inputs``): Starry Night IN's
  style distance went from 5.0 % worse than fp32 to 1.7 % (the evaluator's, stylenet/evaluate.py).
- Norm layers are not quantized: ONNX Runtime has no int8 kernel for them (they run in fp32 between a
  dequantize and a quantize either way), and quantizing their scale only rounds it.

Quantizing takes seconds (calibration runs the network on every photo), so the result is cached in
``CACHE/int8/``, keyed by everything it depends on (``fingerprint``).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from torch import nn

from .backends import exportable, onnx_bytes
from .evaluate import at_long_side
from .files import replaced_atomically
from .images import open_image
from .paths import cache_dir, examples_dir
from .runtime import to_tensor
from .transformer import ConvLayer

VERSION = 1  # of the recipe in this module: part of the cache key, so a change quantizes again
CALIBRATION_PHOTOS = ("lomiri_Picture_0B_by_freespace.jpg", "lomiri_friends_by_Aitzol_Berasategi.jpg",
                      "lomiri_sunset_by_Aitzol_Berasategi.jpg", "skimage_chelsea.jpg")
CALIBRATION_SIDE = 512  # the long side the photos are calibrated at: the evaluator's (stylenet.evaluate)
QUANTIZED_OPS = ["Conv", "Relu", "Add", "Pad", "Resize"]  # not the norms: see the module's docstring
COPYING_PADS = (b"reflect", b"edge")  # pads whose output values are all input values

log = logging.getLogger(__name__)


def calibration_photos() -> list[torch.Tensor]:
    """The calibration photos as (1, 3, H, W) tensors at ``CALIBRATION_SIDE``."""
    return [to_tensor(at_long_side(open_image(examples_dir() / name)[0], CALIBRATION_SIDE)).unsqueeze(0)
            for name in CALIBRATION_PHOTOS]


def held_out_photos() -> list[Path]:
    """The example photos calibration never sees: what int8's cost is measured on."""
    return sorted(path for path in examples_dir().glob("*.jpg") if path.name not in CALIBRATION_PHOTOS)


@torch.no_grad()
def standardize_instance_norm_inputs(model: nn.Module, photos: list[torch.Tensor]) -> nn.Module:
    """``model`` (changed in place) with the output channels of every conv that an instance norm follows
    shifted and scaled to mean 0 and std 1 on ``photos``.

    int8 puts each activation tensor on one grid, as wide as its widest channel; IN then divides every
    channel by its own std, magnifying the steps of a narrow one (Starry Night IN, one photo: the first
    conv's outputs spanned -3.3 to 3.7, and half its channels had a std under 0.16). IN removes any
    per-channel shift and positive scale of its input, so this changes nothing in fp32 but IN's eps, which
    now weighs less (Starry Night: at most 0.003 off, in [0, 1] pixels)."""
    layers = [layer for layer in model.modules()
              if isinstance(layer, ConvLayer) and isinstance(layer.norm, nn.InstanceNorm2d)]
    stats: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {layer: [] for layer in layers}
    hooks = [layer.conv.register_forward_hook(
        lambda _, __, out, layer=layer: stats[layer].append(torch.std_mean(out, dim=(0, 2, 3)))) for layer in layers]
    try:
        for photo in photos:
            model(photo)
    finally:
        for hook in hooks:
            hook.remove()
    for layer in layers:
        std, mean = (torch.stack(values).mean(0) for values in zip(*stats[layer]))
        # a channel whose variance is near IN's eps (1e-5) is left at its scale: IN does not cancel a
        # rescaling there (and a dead channel's std of 0 would give inf)
        std = torch.where(std > 0.01, std, torch.ones_like(std))
        layer.conv.weight.div_(std.view(-1, 1, 1, 1))
        layer.conv.bias.sub_(mean).div_(std)
    return model


def pad_in_int8(graph: onnx.GraphProto) -> None:
    """Let every reflect or edge pad run on the quantized tensor itself, in place.

    The quantizer leaves each pad between a DequantizeLinear and a QuantizeLinear: float work on every
    activation, before every conv. Such a pad only copies values, so its input and output were calibrated
    to the same range and share one grid; where the two scales and zero points are equal, dropping the pair
    changes no value (tests/test_quantize.py: the outputs are equal)."""
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def same_grid(dequantize: onnx.NodeProto, quantize: onnx.NodeProto) -> bool:
        pairs = zip(dequantize.input[1:], quantize.input[1:], strict=True)
        return all(a in constants and b in constants and np.array_equal(constants[a], constants[b]) for a, b in pairs)

    dropped = []
    for pad in graph.node:
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if pad.op_type != "Pad" or mode not in COPYING_PADS:
            continue
        dequantize, users = producers.get(pad.input[0]), consumers.get(pad.output[0], [])
        if (dequantize is None or dequantize.op_type != "DequantizeLinear" or len(users) != 1
                or users[0].op_type != "QuantizeLinear" or not same_grid(dequantize, users[0])):
            continue
        pad.input[0], pad.output[0] = dequantize.input[0], users[0].output[0]
        dropped.append(users[0])
        if len(consumers[dequantize.output[0]]) == 1:
            dropped.append(dequantize)
    for node in dropped:
        graph.node.remove(node)


class Photos(CalibrationDataReader):
    """Calibration inputs as the quantizer reads them: one at a time, then None."""

    def __init__(self, photos: list[torch.Tensor]) -> None:
        self.inputs = iter([{"x": photo.numpy()} for photo in photos])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.inputs, None)


def quantized(model: nn.Module, photos: list[torch.Tensor]) -> bytes:
    """``model`` (eval mode, fp32; changed in place where it has instance norms) as an int8 ONNX graph
    calibrated on ``photos``, by the recipe in the module's docstring."""
    exported = onnx.load_from_string(onnx_bytes(standardize_instance_norm_inputs(model, photos)))
    last_conv = [node.name for node in exported.graph.node if node.op_type == "Conv"][-1]
    # The tag says "pre-processed": only to silence the quantizer's advice to run its pre-processing,
    # whose symbolic shape inference fixed sizes in this any-size graph (ORT warned at other sizes).
    onnx.helper.set_model_props(exported, {"onnx.quant.pre_process": "onnxruntime.quant"})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "int8.onnx"
        quantize_static(exported, path, Photos(photos), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=[last_conv])
        model_int8 = onnx.load(path)
    pad_in_int8(model_int8.graph)
    return model_int8.SerializeToString()


def fingerprint(model: nn.Module) -> str:
    """A digest of everything the quantized graph depends on: the network's layers and weights, this
    module's ``VERSION`` and photos, torch (the exporter) and ONNX Runtime (the quantizer)."""
    digest = hashlib.sha256(f"{VERSION} {CALIBRATION_PHOTOS} {CALIBRATION_SIDE} {torch.__version__} "
                            f"{importlib.metadata.version('onnxruntime')} {model!r}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def int8_onnx_bytes(model: nn.Module) -> bytes:
    """``model`` quantized (``quantized``, on the calibration photos), read from ``CACHE/int8/`` where an
    earlier call made it: export, calibration and quantization take about 10 s on 2 cores, the time of
    several 512² photos."""
    fp32 = exportable(model).eval()
    path = cache_dir() / "int8" / f"{fingerprint(fp32)}.onnx"
    if path.is_file():
        return path.read_bytes()
    data = quantized(fp32, calibration_photos())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:  # a read-only cache folder: quantized again next time
        log.warning("int8 model not cached (%s)", exc)
    return data
