"""Shared fixtures: tiny generated photos and a painting, so tests never need ../shared."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def eager_backend(monkeypatch):
    """Every Stylizer runs eagerly unless a test asks for another backend: "auto" would measure (and
    write the user's cache) on the first photo of each size. tests/test_backends.py tests the others."""
    monkeypatch.setenv("STYLENET_BACKEND", "eager")


def smooth_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A photo-like image: smooth colour gradients plus a few shapes (noise alone is not a photo)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [np.sin(xx * rng.uniform(2, 8) + rng.uniform(0, 6)) * np.cos(yy * rng.uniform(2, 8)) for _ in range(3)]
    arr = (np.stack(channels, -1) * 0.5 + 0.5) * 255
    return Image.fromarray(arr.astype(np.uint8))


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for i in range(3):
        smooth_image(i).save(folder / f"p{i}.jpg")
    smooth_image(9).save(folder / "nested" / "deep.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


@pytest.fixture
def painting(tmp_path: Path) -> Path:
    rng = np.random.default_rng(42)
    stripes = (np.indices((64, 64)).sum(0) // 4 % 2)[..., None] * np.array([200, 120, 30])
    arr = np.clip(stripes + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "painting.png"
    Image.fromarray(arr).save(path)
    return path


def make_checkpoint(path: Path, norm: str, style: str = "stripes", width: int = 8) -> Path:
    """A small untrained checkpoint with realistic (non-default) BN running statistics."""
    import torch

    from stylenet.checkpoint import save_model
    from stylenet.transformer import TransformerNet

    torch.manual_seed(1)
    net = TransformerNet(norm, width).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, 3, 32, 32))
    save_model(net.eval(), {"style": style, "steps": 0}, path)
    return path


def make_student(teacher: Path, width: int = 4) -> Path:
    """An untrained slim student of ``teacher`` with the metadata distillation writes, saved beside it
    as ``<teacher>_fast.safetensors`` (what ships as ``style/norm/fast``)."""
    from stylenet.checkpoint import read_metadata, save_model
    from stylenet.distill import DistillRecipe, student_provenance
    from stylenet.transformer import TransformerNet

    meta = read_metadata(teacher)
    recipe = DistillRecipe(teacher=str(teacher), content="train", width=width, steps=3)
    path = teacher.with_name(f"{teacher.stem}_fast.safetensors")
    save_model(TransformerNet(meta["norm"], width), student_provenance(meta, recipe, 4) | {"steps": 3}, path)
    return path


@pytest.fixture
def checkpoints(tmp_path: Path) -> dict[str, Path]:
    return {norm: make_checkpoint(tmp_path / f"stripes_{norm}.safetensors", norm) for norm in ("batch", "instance")}
