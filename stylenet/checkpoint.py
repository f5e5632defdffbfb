"""Checkpoint files: safetensors tensors + JSON metadata, never pickles.

Two kinds share the format: a *model* file (what ships in weights/, fp16 by default) and a
*training state* file (model + Adam state + step + RNG, fp32) that makes ``--resume`` exact.
Writes go to a temporary file renamed into place, so a kill -9 never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .files import replaced_atomically
from .norms import NORM_KINDS
from .transformer import RESIDUAL_BLOCKS, TransformerNet

FORMAT = "stylenet"
VERSION = 2  # 2: named submodules (conv/norm); version-1 files are migrated on load
READABLE_VERSIONS = (1, 2)
MODEL_KEYS = ("norm", "width", "style")
MAX_WIDTH = 512  # 16x Johnson's 32; the shape check below is the real guard, this keeps its numbers sane
MAX_BLOCKS = 16  # residual blocks; files written before they were recorded have RESIDUAL_BLOCKS
MAX_STYLE_BYTES = 100  # in UTF-8: a file name (NAME.png, NAME_norm.safetensors) stays far below 255 bytes
# A style name becomes part of output file names, a path under weights/styles and a UI label:
# no path separators, no characters Windows file names refuse, no markup.
STYLE_FORBIDDEN = set('/\\<>:"|?*`')
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip archive, raw pickle protocol 2+


class CheckpointError(ValueError):
    """The file is not a stylenet checkpoint; the message says why in one line."""


# Files a training run writes beside a model (x.safetensors): its training state and its best
# checkpoint on the validation photos. Neither is a model to list or ship as it is.
SIDE_SUFFIXES = (".train.safetensors", ".best.safetensors")


def is_side_file(path: Path) -> bool:
    """A training state or best checkpoint beside a model, not the model itself."""
    return Path(path).name.endswith(SIDE_SUFFIXES)


def atomic_save(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with replaced_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata={FORMAT: json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def read_raw_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of any stylenet safetensors file (a model, a training state, an AdaIN decoder),
    checked for format and version only; refuses pickles and foreign files without running them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors starts with an 8-byte header length then "{"; that length may begin with 0x80 too
    if head[8:9] != b"{" and head.startswith(PICKLE_MAGIC):
        raise CheckpointError(f"{path}: looks like a pickled PyTorch checkpoint; stylenet only loads "
                              "safetensors files because pickles can run arbitrary code")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(FORMAT)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without stylenet metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: stylenet metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: unsupported checkpoint format/version")
    return meta


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a style network file (a model or its training state), its norm, width and
    style name checked: what every loader reads before it trusts a file."""
    meta = read_raw_metadata(path)
    missing = [k for k in MODEL_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}")
    width = meta["width"]
    if meta["norm"] not in NORM_KINDS or type(width) is not int or not 1 <= width <= MAX_WIDTH:
        raise CheckpointError(f"{path}: bad norm/width in metadata (width must be 1 to {MAX_WIDTH})")
    blocks = meta.setdefault("blocks", RESIDUAL_BLOCKS)
    if type(blocks) is not int or not 1 <= blocks <= MAX_BLOCKS:
        raise CheckpointError(f"{path}: bad residual blocks in metadata (must be 1 to {MAX_BLOCKS})")
    try:
        check_style_name(meta["style"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return meta


def check_style_name(style: Any) -> None:
    """ValueError saying why, unless ``style`` can name a model: a crafted checkpoint must not turn
    an output file name into a path elsewhere, or a label into markup. (Training can call it before
    it starts, so a painting's file name that would be refused later fails at once.)"""
    if not isinstance(style, str) or not 1 <= len(style.encode("utf-8", "surrogatepass")) <= MAX_STYLE_BYTES:
        raise ValueError(f"style must be a name of 1 to {MAX_STYLE_BYTES} bytes (UTF-8)")
    if style.startswith(".") or not style.isprintable() or STYLE_FORBIDDEN & set(style):
        raise ValueError(f"style {style!r} is not a usable name (no leading dot, control characters "
                         f"or any of {''.join(sorted(STYLE_FORBIDDEN))})")


def blueprint_of(meta: dict[str, Any]) -> TransformerNet:
    """The (untrained) network that checked metadata describes."""
    return TransformerNet(norm=meta["norm"], width=meta["width"], num_residual=meta["blocks"])


def check_tensors(path: Path, meta: dict[str, Any], shapes: dict[str, torch.Size]) -> None:
    """Compare tensor names and shapes (read from the file's header, before any tensor is loaded)
    with the network the metadata describes, built on the meta device (no memory): a crafted file
    can make the loader allocate neither a huge network nor huge extra tensors."""
    with torch.device("meta"):
        blueprint = blueprint_of(meta)
    expected = {k: v.shape for k, v in blueprint.state_dict().items()}
    problems = [f"missing {k}" for k in expected if k not in shapes]
    problems += [f"unexpected {k}" for k in shapes if k not in expected]
    problems += [f"{k} is {tuple(shapes[k])}, expected {tuple(shape)}"
                 for k, shape in expected.items() if k in shapes and shapes[k] != shape]
    if problems:
        raise CheckpointError(f"{path}: tensors do not match a {meta['norm']} width-{meta['width']} "
                              f"{meta['blocks']}-block network "
                              f"({'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''})")


def save_model(model: TransformerNet, meta: dict[str, Any], path: Path, half: bool = True) -> None:
    """Ship a model: fp16 halves the size at no visible cost (inference runs in fp32)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    atomic_save(state, {**meta, "format": FORMAT, "version": VERSION, "kind": "model",
                        "norm": model.norm_kind, "width": model.width, "blocks": model.num_residual}, path)


# Version 1 keys were positional nn.Sequential indices: in a ConvLayer child 1 was the conv and child 2
# the norm; residual blocks held them in ``body.0``/``body.1``; upsampling layers wrapped one in ``.conv``.
V1_KEY_RULES = ((re.compile(r"\.body\.(\d)\."), lambda m: f".conv{int(m[1]) + 1}."),
                (re.compile(r"^(decoder\.[01])\.conv\."), lambda m: f"{m[1]}."),
                (re.compile(r"\.1\.(weight|bias)$"), lambda m: f".conv.{m[1]}"),
                (re.compile(r"\.2\.(\w+)$"), lambda m: f".norm.{m[1]}"))


def migrate_v1_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename version-1 state-dict keys (``encoder.0.1.weight``) to version 2 (``encoder.0.conv.weight``)."""
    renamed = {}
    for key, value in state.items():
        for pattern, replace in V1_KEY_RULES:
            key = pattern.sub(replace, key)
        renamed[key] = value
    return renamed


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[TransformerNet, dict[str, Any]]:
    """Build the network the metadata describes and load its weights (strict: every key must match)."""
    meta = read_metadata(path)
    prefix = "model." if meta.get("kind") == "train_state" else ""
    rename = migrate_v1_keys if meta["version"] == 1 else dict
    with safe_open(str(path), "pt") as f:
        shapes = {k[len(prefix):]: torch.Size(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118 - a safe_open handle, not a dict
    check_tensors(path, meta, rename(shapes))
    tensors = load_file(str(path))
    state = rename({k[len(prefix):]: v.float() if v.is_floating_point() else v
                    for k, v in tensors.items() if k.startswith(prefix)})
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: weights are not finite (NaN or inf in {bad[0]}): a diverged model")
    model = blueprint_of(meta)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def save_train_state(model: TransformerNet, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                     meta: dict[str, Any], path: Path) -> None:
    """Everything ``--resume`` needs, as tensors + JSON (Adam's param_groups go into the JSON)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value)
    tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    atomic_save(tensors, {**meta, "format": FORMAT, "version": VERSION, "kind": "train_state",
                          "norm": model.norm_kind, "width": model.width,
                          "param_groups": opt["param_groups"]}, path)


def load_train_state(path: Path, model: TransformerNet, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> dict[str, Any]:
    """Restore model, optimizer and RNGs in place; returns the metadata (step, recipe, ...)."""
    meta = read_metadata(path)
    if meta.get("kind") != "train_state":
        raise CheckpointError(f"{path}: not a training state file")
    tensors = load_file(str(path))
    device = next(model.parameters()).device
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(migrate_v1_keys(weights) if meta["version"] == 1 else weights)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta
