import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from stylenet import checkpoint
from stylenet.checkpoint import (
    FORMAT,
    CheckpointError,
    load_model,
    read_metadata,
    read_raw_metadata,
    save_model,
)
from stylenet.transformer import TransformerNet


class Exploit:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_roundtrip_fp16_keeps_outputs(tmp_path):
    torch.manual_seed(0)
    net = TransformerNet("batch", width=8).eval()
    net.encoder[0].norm.running_mean.fill_(0.1)
    path = tmp_path / "m.safetensors"
    save_model(net, {"style": "stripes", "steps": 3}, path)
    loaded, meta = load_model(path)
    assert (meta["norm"], meta["width"], meta["style"], meta["steps"]) == ("batch", 8, "stripes", 3)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=2e-2, rtol=0)
    assert path.stat().st_size < 0.6 * sum(t.numel() * 4 for t in net.state_dict().values())


@pytest.mark.parametrize("how", ["torch_save", "raw_pickle"])
def test_pickle_is_refused_and_never_executed(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    if how == "torch_save":
        torch.save({"x": Exploit(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(path)
    assert not marker.exists()


def test_foreign_and_corrupt_files_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="without stylenet metadata"):
        read_metadata(plain)
    bad_meta = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad_meta), metadata={"stylenet": json.dumps(
        {"format": "stylenet", "version": 1, "norm": "quantum", "width": 8, "style": "x"})})
    with pytest.raises(CheckpointError, match="bad norm"):
        read_metadata(bad_meta)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_metadata(garbage)
    with pytest.raises(CheckpointError, match="no such"):
        read_metadata(tmp_path / "missing.safetensors")


def crafted(tmp_path, **changes):
    """A real width-8 instance-norm checkpoint whose JSON is then changed: what a crafted file looks like."""
    from safetensors.torch import load_file
    path = tmp_path / "m.safetensors"
    save_model(TransformerNet("instance", width=8), {"style": "s"}, path)
    meta = {**read_metadata(path), **changes}
    save_file(load_file(str(path)), str(path), metadata={"stylenet": json.dumps(meta)})
    return path


def test_mismatched_tensors_refused(tmp_path):
    path = crafted(tmp_path, width=16)
    with pytest.raises(CheckpointError, match=r"do not match .*encoder.0.conv.weight is \(8, 3, 9, 9\), "
                                              r"expected \(16, 3, 9, 9\)"):
        load_model(path)


def test_crafted_width_refused_before_the_network_is_built(tmp_path, monkeypatch):
    """Width 400 claims a 260 M-parameter network over 0.1 M parameters of tensors: the names and
    shapes are checked against a meta-device blueprint before any real network is allocated."""
    path = crafted(tmp_path, width=400)
    built = []

    def guarded(*args, **kwargs):
        if torch.get_default_device().type != "meta":
            built.append(kwargs)
            raise MemoryError("the crafted network would have been allocated")
        return TransformerNet(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "TransformerNet", guarded)
    with pytest.raises(CheckpointError, match="do not match a instance width-400 5-block network"):
        load_model(path)
    assert built == []


def test_extra_tensors_refused_before_any_tensor_is_loaded(tmp_path, monkeypatch):
    """Names and shapes come from the file's header: a crafted file's extra (huge) tensors are
    refused without reading a byte of tensor data."""
    path = tmp_path / "padded.safetensors"
    save_model(TransformerNet("instance", 8), {"style": "x", "steps": 1}, path)
    metadata = {"stylenet": json.dumps(read_metadata(path))}
    save_file(checkpoint.load_file(str(path)) | {"padding": torch.zeros(1000, 1000)}, str(path), metadata=metadata)

    def no_loading(*args, **kwargs):
        raise AssertionError("tensors were loaded before the check")

    monkeypatch.setattr(checkpoint, "load_file", no_loading)
    with pytest.raises(CheckpointError, match=r"unexpected padding"):
        load_model(path)


@pytest.mark.parametrize("width", [0, 10**9, True, 8.0])
def test_width_outside_range_refused(tmp_path, width):
    with pytest.raises(CheckpointError, match="width must be 1 to 512"):
        read_metadata(crafted(tmp_path, width=width))


@pytest.mark.parametrize("style", ["../../home/user/.bashrc", "a/b", "a\\b", ".hidden", "", "x" * 101, "é" * 51, "😀" * 26,
                                   "line\nbreak", "<img src=x onerror=alert(1)>", 7, None])
def test_style_that_is_not_a_safe_name_refused(tmp_path, style):
    """The style becomes part of output file names ({photo}_{style}_{norm}.png) and UI labels."""
    with pytest.raises(CheckpointError, match="style"):
        read_metadata(crafted(tmp_path, style=style))


@pytest.mark.parametrize("style", ["starry_night", "Mona Lisa (1503)", "Der Schrei", "神奈川沖浪裏", "v2.1",
                                   "x" * 100, "😀" * 25])
def test_ordinary_painting_names_accepted(tmp_path, style):
    path = tmp_path / "m.safetensors"
    save_model(TransformerNet("instance", width=8), {"style": style}, path)
    assert load_model(path)[1]["style"] == style


def test_header_length_that_looks_like_pickle_magic_still_loads(tmp_path):
    """A safetensors header length whose low byte is 0x80 starts the file like a pickle would."""
    net = TransformerNet("instance", width=8)
    path = tmp_path / "m.safetensors"
    for pad in range(256):
        save_model(net, {"style": "s", "pad": "x" * pad}, path)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load_model(path)[1]["style"] == "s"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_refused(tmp_path, bad):
    """A diverged model would render black pictures: it is refused with one line at load."""
    net = TransformerNet("instance", width=8)
    with torch.no_grad():
        net.decoder[0].conv.weight[0, 0, 0, 0] = bad
    path = tmp_path / "m.safetensors"
    save_model(net, {"style": "diverged"}, path)
    with pytest.raises(CheckpointError, match="not finite .* decoder.0.conv.weight"):
        load_model(path)


def test_residual_blocks_are_recorded_and_a_file_without_them_has_five(tmp_path):
    slim = tmp_path / "slim.safetensors"
    save_model(TransformerNet("instance", 4, num_residual=3), {"style": "x"}, slim)
    model, meta = load_model(slim)
    assert meta["blocks"] == model.num_residual == len(model.residuals) == 3
    old = tmp_path / "old.safetensors"
    save_model(TransformerNet("instance", 4), {"style": "x"}, old)
    state, raw = load_file(str(old)), read_raw_metadata(old)
    del raw["blocks"]
    save_file(state, str(old), metadata={FORMAT: json.dumps(raw)})
    assert len(load_model(old)[0].residuals) == 5
    for bad in (0, 17, 3.0, True, None):
        raw["blocks"] = bad
        save_file(state, str(old), metadata={FORMAT: json.dumps(raw)})
        with pytest.raises(CheckpointError, match="bad residual blocks"):
            load_model(old)
