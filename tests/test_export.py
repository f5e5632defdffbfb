"""scripts/export.py: one ONNX file for every size, with the PyTorch model's pixels."""
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[test]')")

from stylenet import backends
from stylenet.checkpoint import load_model
from stylenet.cli import export


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_export_runs_any_size_like_pytorch(tmp_path, checkpoints, norm, capsys):
    out = tmp_path / "m.onnx"
    assert export.main([str(checkpoints[norm]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("max abs difference to PyTorch") == 3 and "check: within the tolerance of 0.0001" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    model, _ = load_model(checkpoints[norm])
    x = torch.rand(2, 3, 37, 53)  # a batch of two, sides not multiples of 4, not the traced size
    y = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert y.shape == (2, 3, 37, 53)
    assert abs(y - expected).max() <= export.TOLERANCE


def test_the_check_catches_an_export_fixed_to_one_size(tmp_path, checkpoints, monkeypatch, capsys):
    """Without the unconditional pad the exporter bakes in the traced size's padding: the three-size
    check must then fail, and loudly."""
    monkeypatch.setattr(backends, "PadToGrid", lambda model: model)
    assert export.main([str(checkpoints["instance"]), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "check: OVER the tolerance of 0.0001; nothing written" in capsys.readouterr().out
    assert not list(tmp_path.glob("*onnx*"))  # no unchecked file where a good one is expected


def test_bad_input_is_one_line(tmp_path, checkpoints, capsys):
    assert export.main([str(checkpoints["batch"]), "--out", str(tmp_path / "m.txt")]) == 2
    assert capsys.readouterr().err.strip() == "error: --out must end in .onnx"
    assert export.main(["nowhere/instance", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "neither a checkpoint file nor a shipped model" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))
