"""Version-1 checkpoints (positional Sequential keys) load into today's named layers unchanged."""
from pathlib import Path

import pytest
import torch

from stylenet.checkpoint import (
    VERSION,
    load_model,
    migrate_v1_keys,
    read_metadata,
    save_model,
)
from stylenet.transformer import TransformerNet

FIXTURE = Path(__file__).parent / "fixtures" / "v1_batch_width2.safetensors"
# Written by the version-1 code (git 8aa0d88): a width-2 BN network, random weights and running
# statistics, fp32. Its output on the ramp input below, as the version-1 code computed it:
V1_PIXEL_5_7 = [-0.1575612723827362, -0.6956579089164734, 0.15195511281490326]
V1_MEAN = -0.23345951735973358


def ramp() -> torch.Tensor:
    return torch.linspace(0, 1, 3 * 24 * 20).reshape(1, 3, 24, 20)


def test_v1_file_loads_and_computes_what_v1_computed():
    model, meta = load_model(FIXTURE)
    assert meta["version"] == 1
    with torch.no_grad():
        y = model(ramp())
    torch.testing.assert_close(y[0, :, 5, 7], torch.tensor(V1_PIXEL_5_7), atol=1e-6, rtol=0)
    assert abs(float(y.mean()) - V1_MEAN) < 1e-6


@pytest.mark.parametrize("old, new", [
    ("encoder.0.1.weight", "encoder.0.conv.weight"),
    ("encoder.2.2.running_var", "encoder.2.norm.running_var"),
    ("residuals.4.body.0.1.bias", "residuals.4.conv1.conv.bias"),
    ("residuals.0.body.1.2.num_batches_tracked", "residuals.0.conv2.norm.num_batches_tracked"),
    ("decoder.1.conv.1.weight", "decoder.1.conv.weight"),
    ("decoder.0.conv.2.bias", "decoder.0.norm.bias"),
    ("decoder.2.1.bias", "decoder.2.conv.bias"),
])
def test_key_mapping(old, new):
    assert list(migrate_v1_keys({old: torch.zeros(1)})) == [new]


def test_resaved_file_is_current_version_with_named_keys(tmp_path):
    model, meta = load_model(FIXTURE)
    save_model(model, meta, tmp_path / "v2.safetensors", half=False)
    assert read_metadata(tmp_path / "v2.safetensors")["version"] == VERSION == 2
    again, _ = load_model(tmp_path / "v2.safetensors")
    assert set(again.state_dict()) == set(TransformerNet("batch", 2).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(ramp()), model(ramp()), atol=0, rtol=0)
