"""The first-run conversion of the VGG19 weights into the cache."""
import numpy as np
import torch
from safetensors.torch import load_file

from stylenet import vgg


def tiny_keras_file(path):
    """An .h5 laid out like the Keras VGG19 file, with 1x1 kernels so it is small."""
    import h5py

    with h5py.File(path, "w") as f:
        for i, name in enumerate(vgg.conv_names()):
            group = f.create_group(name)
            group[f"{name}_W_1:0"] = np.full((1, 1, 2, 3), i, dtype=np.float32)
            group[f"{name}_b_1:0"] = np.zeros(3, dtype=np.float32)
    return path


def test_two_conversions_interleaved_both_succeed(tmp_path, monkeypatch):
    """Two trainers on a fresh cache: the second converts while the first has written its temporary
    file but not yet renamed it. With one fixed temporary name the second renames the first's file
    away and the first fails; with a temporary file each, both finish and leave one valid cache."""
    h5 = tiny_keras_file(tmp_path / "vgg.h5")
    monkeypatch.setattr(vgg, "H5_MD5", vgg.md5sum(h5))
    out = tmp_path / "cache" / vgg.CACHE_NAME
    real_save = vgg.save_file
    written = []

    def save_then_let_the_other_trainer_run(tensors, filename, metadata):
        real_save(tensors, filename, metadata=metadata)
        written.append(filename)
        if len(written) == 1:
            vgg.convert_h5(h5, out)  # the other trainer, start to finish

    monkeypatch.setattr(vgg, "save_file", save_then_let_the_other_trainer_run)
    vgg.convert_h5(h5, out)
    assert len(set(written)) == 2
    weights = load_file(str(out))
    assert weights["block5_conv4.weight"].shape == (3, 2, 1, 1)
    assert torch.all(weights["block5_conv4.weight"] == len(vgg.conv_names()) - 1)
    assert [p.name for p in out.parent.iterdir()] == [vgg.CACHE_NAME]  # no temporary file left behind
