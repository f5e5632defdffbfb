"""The "Any painting" tab and Why IN?'s (f): AdaIN in the app, on an untrained (seeded) decoder shipped
into a test weights folder. The tab and (f) exist only where a decoder is shipped."""
import shutil
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from stylenet.adain import DECODER_FILE
from stylenet.evaluate import Score
from stylenet.weights import build_manifest

from . import helpers
from .conftest import ROOT, smooth_image
from .test_adain import make_decoder
from .test_app import (
    STARRY_TITLE,
    app_folders,
    chromium,
    fully_visible,
    make_tiny_weights,
)

PHOTO_SIZE, RESULT_SIZE = (640, 480), (512, 384)  # the tab paints at most 512 px on the long side


def adain_weights(folder: Path) -> Path:
    """Tiny shipped styles (Starry Night: BN, IN, LN; Great Wave: BN, IN), both paintings, and a decoder."""
    folder.mkdir()
    make_tiny_weights(folder)
    shutil.copy(ROOT / "weights" / "styles" / "great_wave.jpg", folder / "styles")
    make_decoder(folder / DECODER_FILE)
    build_manifest(folder)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return adain_weights(tmp_path_factory.mktemp("adain") / "weights")


@pytest.fixture(scope="module")
def models(weights):
    from stylenet.app.any_painting import load_adain

    return load_adain(weights)


@pytest.fixture(scope="module")
def registry(weights):
    from stylenet.app.styles import StyleRegistry, load_styles, user_style

    return StyleRegistry(load_styles(weights), user_style)


def test_the_tab_and_experiment_f_exist_only_where_a_decoder_is_shipped(weights, models, registry, tmp_path, capsys):
    from stylenet.app.any_painting import load_adain
    from stylenet.app.server import HEAVY, build

    demo = build(registry, concurrency=3, adain=models)
    groups = {f.api_name: (f.concurrency_id, f.concurrency_limit) for f in demo.fns.values()}
    assert groups["any_painting"] == groups["why_in_statistics"] == (HEAVY, 3)  # the app-wide limit
    assert not {"any_painting", "why_in_statistics"} & {f.api_name for f in build(registry).fns.values()}
    assert load_adain(tmp_path) is None
    assert capsys.readouterr().err.strip() == ("stylenet app: the Any painting tab is left out: no AdaIN decoder "
                                               "(adain_decoder.safetensors) in the weights folder yet")
    shutil.copy(weights / "starry_night_instance.safetensors", tmp_path / DECODER_FILE)  # not a decoder
    assert load_adain(tmp_path) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("adain_decoder.safetensors: not an AdaIN decoder file")


def test_paint_shows_the_trained_model_beside_a_shipped_painting_and_mixes_two(models, registry, weights, tmp_path):
    from stylenet.app.any_painting import paint, shipped_paintings
    from stylenet.app.uploads import ResultFiles
    from stylenet.weights import sha256_file

    shipped = {sha256_file(style.painting): style for style in shipped_paintings(registry).values()}
    photo, files = tmp_path / "cat.jpg", ResultFiles()
    smooth_image(3, PHOTO_SIZE).save(photo)
    wave = tmp_path / "my copy of the wave.jpg"  # the shipped file's bytes under another name: still that painting
    shutil.copy(weights / "styles" / "great_wave.jpg", wave)
    gallery, note = paint(models, shipped, files, str(photo), str(wave), strength=0.6)
    assert [Image.open(path).size for path, _ in gallery] == [RESULT_SIZE] * 2
    assert [caption.split(" — ")[0] for _, caption in gallery] == ["AdaIN", "IN, great wave (full strength)"]
    assert [Path(path).name for path, _ in gallery] == ["cat_great_wave_adain_alpha60.png",
                                                        "cat_great_wave_instance.png"]
    assert note == "512x384 px · strength 0.6 · painting read at 512 px"

    own, starry = tmp_path / "sunset.png", str(weights / "styles" / "starry_night.jpg")
    smooth_image(8, (90, 70)).save(own)
    gallery, note = paint(models, shipped, files, str(photo), str(own), 1.0, 256, starry, 0.25, True)
    assert [Path(path).name for path, _ in gallery] == [
        "cat_sunset+starry_night_adain_mix25_scale256_photo_colours.png", "cat_starry_night_instance_photo_colours.png"]
    assert note == ("512x384 px · strength 1 · painting read at 256 px · mixed 75% + 25% · no model was trained for "
                    "your painting: only the network for every painting can paint it")
    assert [caption.split(" — ")[0] for _, caption in gallery] == ["AdaIN", "IN, starry night"]  # both at full strength
    alone = Image.open(paint(models, shipped, files, str(photo), str(own), 1.0, 256)[0][0][0])
    assert Image.open(gallery[0][0]).tobytes() != alone.tobytes()  # the second painting changed the result


@pytest.mark.parametrize(("change", "message"), [
    ({"painting": None}, "No painting: upload one first."),
    ({"painting": "notes.jpg"}, "notes.jpg: not an image in a supported format"),
    ({"painting": "dot.png"}, "This painting is 1x1 px: too small to stylize (at least 32 px on each side)."),
    ({"photo": None}, "No photo: upload one first."),
    ({"strength": float("nan")}, "The style strength must be a number from 0 to 1."),
    ({"scale": 4096}, "The painting size must be 128 to 1024 px."),
    ({"second": "painting.png", "mix": "half"}, "The mix must be a number from 0 to 1."),
])
def test_paint_refuses_bad_requests_in_one_line(models, tmp_path, painting, change, message):
    from stylenet.app.any_painting import paint
    from stylenet.app.uploads import ResultFiles

    (tmp_path / "notes.jpg").write_text("not an image")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    smooth_image(3).save(tmp_path / "cat.jpg")
    request = {"photo": "cat.jpg", "painting": painting.name} | change
    for key in ("photo", "painting", "second"):  # file names in tmp_path, or None
        if request.get(key):
            request[key] = str(tmp_path / request[key])
    with pytest.raises(gr.Error) as refused:
        paint(models, {}, ResultFiles(), **request)
    assert refused.value.message.startswith(message)
    assert "\n" not in refused.value.message and str(tmp_path) not in refused.value.message


@pytest.mark.parametrize(("own", "batch", "verdict"), [
    (0.5, 0.8, "with its own statistics each painting's result is closer to that painting than with the batch's"),
    (0.7, 0.7, "on this photo the batch's one set came as close")])
def test_experiment_f_is_one_picture_and_a_verdict_that_follows_its_numbers(models, registry, tmp_path, own, batch,
                                                                            verdict):
    from stylenet.app.any_painting import AdaINModels, shipped_paintings
    from stylenet.app.uploads import ResultFiles
    from stylenet.app.why_in import StatisticsPaintings, statistics_swap

    class Evaluator:  # the real one runs VGG19 at 512 px, slow on a CPU: the own pictures are scored first
        calls = 0

        def photo_content(self, photo):
            return None

        def painting_grams(self, painting):
            return None

        def score(self, picture, content, grams):
            Evaluator.calls += 1
            return Score(style=own if Evaluator.calls <= 2 else batch, content=0.0)

    smooth_image(3, PHOTO_SIZE).save(tmp_path / "cat.jpg")
    adain = AdaINModels(models.stylizer, Evaluator())
    paintings = StatisticsPaintings.of(adain, shipped_paintings(registry))
    assert list(paintings.pictures) == ["starry_night", "great_wave"] and len(paintings.targets.stats) == 2
    gallery, text = statistics_swap(adain, paintings, ResultFiles(), str(tmp_path / "cat.jpg"))
    [(sheet, caption)] = gallery
    width, height = Image.open(sheet).size
    assert Evaluator.calls == 4 and height > 2 * 200 and width > 3 * 200  # a row per painting, three columns, labels
    assert caption.startswith("Rows: the paintings")
    assert text.startswith(f"**Verdict (f):** {verdict}")
    assert text.endswith(f"(the batch's statistics {batch:.3f}, each painting's own {own:.3f}).")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, weights):
    root = tmp_path_factory.mktemp("adain_app")
    folders = app_folders(root)  # the models and photos folders (its own weights are not used)
    with helpers.running_app(weights, root / "app.log", "--models-dir", str(folders["models"]), "--train-photos",
                             str(folders["photos"])) as (url, _):
        yield url


def test_the_api_paints_an_uploaded_painting(app_url, tmp_path, painting):
    from gradio_client import Client, handle_file

    smooth_image(4, (300, 200)).save(tmp_path / "street.jpg")
    gallery, note = Client(app_url, verbose=False).predict(handle_file(str(tmp_path / "street.jpg")),
                                                           handle_file(str(painting)), 0.8, 256, None, 0.5, False,
                                                           api_name="/any_painting")
    assert [Image.open(item["image"]).size for item in gallery] == [(300, 200)]  # never enlarged; no trained model
    assert note.startswith("300x200 px · strength 0.8 · painting read at 256 px · no model was trained")


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Debian chromium (setup.sh installs it)")
@pytest.mark.parametrize("width", [1280, 390])
def test_browser_paints_with_any_painting_and_mixes_a_second(app_url, tmp_path, width):
    """Upload a photo, pick a shipped painting, lower the strength, mix in a second painting: the result
    comes back at 512 px on its long side, beside both paintings' trained IN models; on a phone every tab
    stays on the bar, the results come first and nothing scrolls sideways. A refused painting is one line,
    and no earlier result stays under it."""
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "holiday.jpg"
    smooth_image(5, PHOTO_SIZE).save(photo)
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        page.goto(app_url)
        page.get_by_role("tab", name="Any painting").click()
        assert [t.inner_text().strip() for t in page.get_by_role("tab").all() if t.is_visible()] == [
            "Compare", "Any painting", "Why IN?", "Video", "Webcam", "Train a style", "Training report"]
        assert not page.locator("#any-painting-gallery").is_visible()  # no empty box before a run
        page.locator("#any-painting-row input[type=file]").first.set_input_files(str(photo))
        page.locator("#any-painting-examples .gallery-item").nth(1).click()  # The Great Wave
        strength = page.locator("#any-strength input[type=number]")
        strength.fill("0.6")
        strength.press("Tab")
        page.get_by_text("Mix in a second painting").click()
        page.locator("#any-second-examples .gallery-item").first.click()  # The Starry Night
        page.wait_for_timeout(1000)
        assert page.locator("#any-strength input[type=range]").input_value() == "0.6"
        page.click("#any-painting-btn")
        page.locator("#any-painting-note").get_by_text("512x384 px · strength 0.6").wait_for(timeout=120_000)
        assert "mixed 50% + 50%" in page.locator("#any-painting-note").inner_text()
        page.wait_for_function("() => { const i = [...document.querySelectorAll('#any-painting-gallery img')];"
                               " return i.length == 3 && i.every(x => x.naturalWidth); }", timeout=30_000)
        sizes = page.evaluate("[...document.querySelectorAll('#any-painting-gallery img')].map(i => [i.naturalWidth, "
                              "i.naturalHeight])")
        assert [tuple(s) for s in sizes] == [RESULT_SIZE] * 3
        captions = page.locator("#any-painting-gallery .caption-label").all_inner_texts()
        assert [c.split(" — ")[0] for c in captions] == ["AdaIN", "IN, great wave (full strength)",
                                                         "IN, starry night (full strength)"]
        assert fully_visible(page, "#any-painting-gallery .caption-label")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        results, button = (page.locator(s).bounding_box() for s in ("#any-painting-results", "#any-painting-btn"))
        if width < 640:
            assert results["y"] < button["y"]  # on a phone the results come before the inputs
        else:
            assert results["x"] >= button["x"] + button["width"]  # beside the inputs
        page.screenshot(path=str(tmp_path / f"any_painting_{width}.png"), full_page=True)
        Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
        page.locator("#any-painting-input input[type=file]").set_input_files(str(tmp_path / "dot.png"))
        page.wait_for_timeout(1000)
        page.click("#any-painting-btn")
        page.get_by_text("This painting is 1x1 px: too small to stylize").first.wait_for(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('#any-painting-note').innerText.trim()", timeout=10_000)
        assert not page.locator("#any-painting-gallery").is_visible()
        browser.close()


def test_the_painting_list_starts_on_the_flagship(registry):
    from stylenet.app.any_painting import shipped_paintings

    paintings = shipped_paintings(registry)
    assert list(paintings) == ["starry_night", "great_wave"] and paintings["starry_night"].title == STARRY_TITLE
