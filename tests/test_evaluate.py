"""The independent evaluator: fixed layers, relative distances at 512 px, identities where they must hold."""
import pytest
import torch
from PIL import Image

from stylenet.evaluate import (
    LONG_SIDE,
    Evaluator,
    Targets,
    at_long_side,
    relative_distance,
    score_method,
)

from .conftest import smooth_image


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator()


def test_at_long_side_scales_up_and_down_keeping_the_aspect():
    assert at_long_side(Image.new("RGB", (300, 200))).size == (LONG_SIDE, 341)
    assert at_long_side(Image.new("L", (200, 1024))).size == (100, LONG_SIDE)
    assert at_long_side(Image.new("L", (200, 1024))).mode == "RGB"


def test_relative_distance():
    t = torch.ones(4)
    assert relative_distance(t, t) == 0
    assert relative_distance(torch.zeros(4), t) == pytest.approx(1.0)
    assert relative_distance(3 * t, t) == pytest.approx(2.0)


def test_the_photo_keeps_its_content_and_the_painting_is_its_own_style(evaluator):
    photo, painting = smooth_image(1, (120, 80)), smooth_image(7, (120, 80))
    grams = evaluator.painting_grams(painting)
    itself = evaluator.score(photo, evaluator.photo_content(photo), grams)
    assert itself.content == pytest.approx(0, abs=1e-6) and itself.style > 0.1
    as_painting = evaluator.score(painting, evaluator.photo_content(photo), grams)
    assert as_painting.style == pytest.approx(0, abs=1e-6) and as_painting.content > 0.1


def test_a_picture_of_another_size_is_scored_on_the_photo_grid(evaluator):
    photo = smooth_image(1, (120, 80))
    content = evaluator.photo_content(photo)
    score = evaluator.score(photo.resize((121, 79)), content, evaluator.painting_grams(smooth_image(7)))
    assert score.content < 0.2


def test_score_method_averages_and_keeps_the_pictures(evaluator):
    photos = [smooth_image(1, (120, 80)), smooth_image(2, (80, 120))]
    seen = []
    targets = Targets.of(evaluator, photos, smooth_image(7))
    result = score_method(lambda p: seen.append(p.size) or p, targets, evaluator)
    assert seen == [(LONG_SIDE, 341), (341, LONG_SIDE)]  # each method gets the photo at 512 px
    assert result.content == pytest.approx(0, abs=1e-6) and len(result.pictures) == 2


def test_the_evaluator_refuses_a_vgg_without_its_layers():
    from stylenet.vgg import VGGFeatures, load_oxford_weights

    with pytest.raises(ValueError, match="relu5_1"):
        Evaluator(VGGFeatures(load_oxford_weights(), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2")))


def test_pixel_difference_is_the_mean_absolute_difference_in_unit_pixels():
    from PIL import Image

    from stylenet.evaluate import Scored

    black, white, grey = (Image.new("RGB", (4, 3), (v, v, v)) for v in (0, 255, 51))
    a, b = Scored(0.0, 0.0, [black, black]), Scored(0.0, 0.0, [white, grey])
    assert a.pixel_difference(a) == 0.0 and abs(a.pixel_difference(b) - (1.0 + 0.2) / 2) < 1e-6
