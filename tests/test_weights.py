"""The manifest: shipped files carry names, counts and hashes, never the training machine's paths."""
import json
from pathlib import Path

import pytest

from stylenet.checkpoint import read_metadata, save_model
from stylenet.transformer import TransformerNet
from stylenet.weights import WEIGHTS_DIR, build_manifest, resolve


def save(path: Path, recipe: dict) -> None:
    save_model(TransformerNet("instance", 4), {"style": "stripes", "steps": 1, "recipe": recipe}, path)


def test_manifest_refuses_absolute_paths(tmp_path):
    save(tmp_path / "stripes_instance.safetensors", {"style": "/home/me/stripes.png", "content": "train"})
    with pytest.raises(ValueError, match="absolute paths.*style=/home/me/stripes.png"):
        build_manifest(tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_lists_models_by_style_and_norm(tmp_path):
    save(tmp_path / "stripes_instance.safetensors", {"style": "stripes.png", "content": "train"})
    models = build_manifest(tmp_path)
    assert [(m["style"], m["norm"], m["file"]) for m in models] == [("stripes", "instance", "stripes_instance.safetensors")]
    assert json.loads((tmp_path / "manifest.json").read_text())["models"] == models
    assert resolve("stripes/instance", tmp_path) == tmp_path / "stripes_instance.safetensors"


def test_shipped_files_hold_no_machine_paths():
    text = (WEIGHTS_DIR / "manifest.json").read_text()
    models = json.loads(text)["models"]
    assert len(models) >= 6  # 3 styles x BN/IN at least: an empty manifest must not pass
    for entry in models:
        meta = read_metadata(WEIGHTS_DIR / entry["file"])
        assert meta["version"] == 2
        assert not any(Path(v).is_absolute() for v in meta["recipe"].values() if isinstance(v, str)), entry["file"]
        assert meta["painting"]["file"] == f"{meta['style']}.jpg" and len(meta["painting"]["sha256"]) == 64
        assert meta["training_set"]["photos"] > 1000
    assert "/work/" not in text and "/home/" not in text
