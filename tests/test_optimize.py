"""The optimization reference (Gatys et al.) with the real Oxford VGG19 on tiny images."""
import pytest
import torch
from PIL import Image

from stylenet.cli.optimize import main
from stylenet.optimize import LossWeights, Objective, optimize
from stylenet.runtime import to_tensor
from stylenet.train import style_targets
from stylenet.vgg import VGGFeatures

from .conftest import smooth_image

WEIGHTS = LossWeights(content=1.0, style=3.0, tv=10.0)


@pytest.fixture(scope="module")
def vgg():
    return VGGFeatures.oxford()


def test_two_iterations_lower_the_loss_and_the_history_is_the_returned_image(vgg, painting):
    grams = style_targets(vgg, str(painting), 64, torch.device("cpu"))
    photo = to_tensor(smooth_image(0, (40, 32))).unsqueeze(0)
    result = optimize(photo, grams, vgg, WEIGHTS, iters=2, progress=False)
    assert len(result.history) == 3  # the photo, then after each iteration
    assert result.history[0]["content"] == 0  # it starts from the photo
    totals = [h["total"] for h in result.history]
    assert totals[2] < totals[1] <= totals[0] and totals[2] < 0.995 * totals[0]  # the first step is short
    assert result.image.shape == photo.shape and 0 <= result.image.min() and result.image.max() <= 1
    assert (result.image - photo).abs().max() > 1e-3
    terms = Objective(vgg, photo, grams).terms(result.image)
    assert WEIGHTS.total(terms).item() == pytest.approx(result.history[-1]["total"], rel=1e-4)


def test_clamped_scores_are_those_of_the_clamped_image(vgg, painting):
    grams = style_targets(vgg, str(painting), 64, torch.device("cpu"))
    photo = to_tensor(smooth_image(2, (40, 32))).unsqueeze(0)
    heavy = LossWeights(content=1.0, style=1e4, tv=0.0)  # big steps: pixels overshoot [0, 1]
    result = optimize(photo, grams, vgg, heavy, iters=3, progress=False, measure_clamped=True)
    assert len(result.clamped) == len(result.history) == 4
    assert result.clamped[0] == result.history[0] and result.clamped[-1] == result.history[-1]
    assert any(c["total"] != h["total"] for c, h in zip(result.clamped[1:-1], result.history[1:-1]))
    assert optimize(photo, grams, vgg, heavy, iters=1, progress=False).clamped == []


def test_weights_come_from_a_checkpoint_recipe():
    weights = LossWeights.from_recipe({"content_weight": 1.0, "style_weight": 3.0, "tv_weight": 10.0, "lr": 1e-3})
    assert weights == WEIGHTS
    terms = {"content": torch.tensor(0.5), "style": torch.tensor(0.25), "tv": torch.tensor(0.01)}
    assert weights.total(terms).item() == pytest.approx(0.5 + 0.75 + 0.1)


def test_cli_writes_the_image(tmp_path, painting, capsys):
    photo = tmp_path / "photo.jpg"
    smooth_image(1, (40, 32)).save(photo)
    out = tmp_path / "out" / "result.png"
    assert main([str(photo), "--style", str(painting), "--iters", "2", "--style-size", "64", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert Image.open(out).size == (40, 32)
    assert f"wrote {out} (2 iterations" in capsys.readouterr().out


@pytest.mark.parametrize("photo, painting, out, message", [
    ("nope.jpg", "painting.png", "o.png", "nope.jpg: no such file"),
    ("broken.jpg", "painting.png", "o.png", "broken.jpg: not an image"),
    ("photo.jpg", "broken.jpg", "o.png", "broken.jpg: not an image"),
    ("photo.jpg", "painting.png", "photo.jpg", "would overwrite an input"),
    ("photo.jpg", "painting.png", "o.txt", "--out must end in .png"),
])
def test_cli_bad_input_is_one_line(tmp_path, photo, painting, out, message, capsys):
    smooth_image(1).save(tmp_path / "photo.jpg")
    smooth_image(2).save(tmp_path / "painting.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert main([str(tmp_path / photo), "--style", str(tmp_path / painting), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.png").exists()
