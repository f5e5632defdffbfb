"""The shipped checkpoints: ``weights/manifest.json`` lists every model by style and norm,
like torchvision's weight enums, so callers can say ``starry_night/instance`` instead of a path."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def load_manifest(weights_dir: Path = WEIGHTS_DIR) -> list[dict[str, Any]]:
    """The manifest's model entries (empty when no manifest exists yet)."""
    path = Path(weights_dir) / "manifest.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())["models"]


def resolve(ref: str | Path, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """A checkpoint path from a path or a ``style/norm`` manifest name; ValueError if neither."""
    if Path(ref).is_file():
        return Path(ref)
    for entry in load_manifest(weights_dir):
        if f"{entry['style']}/{entry['norm']}" == str(ref):
            return Path(weights_dir) / entry["file"]
    names = ", ".join(f"{e['style']}/{e['norm']}" for e in load_manifest(weights_dir)) or "none shipped"
    raise ValueError(f"{ref}: neither a checkpoint file nor a shipped model ({names})")
