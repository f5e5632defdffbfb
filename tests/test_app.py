"""The web app, launched for real: gradio_client calls and a Chromium browser session."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageChops

from stylenet.checkpoint import read_metadata
from stylenet.jobs import JobStore, estimate
from stylenet.weights import build_manifest, load_manifest

from . import helpers
from .conftest import ROOT, make_checkpoint, make_student, smooth_image

# The README's screenshot:
# STYLENET_SCREENSHOT=docs/figures/app_screenshot.png STYLENET_TEST_WEIGHTS=weights pytest -k browser
REAL_WEIGHTS = os.environ.get("STYLENET_TEST_WEIGHTS")
STARRY_TITLE = "Vincent van Gogh, The Starry Night (1889)"  # the manifest's title, what the style lists show
PRESET_SECONDS = {"quick": 1500.0, "standard": 7500.0}  # what the app shows as "about 25 min", "about 2 h 05 min"


def app_folders(root: Path) -> dict[str, Path]:
    """What an app runs on: shipped weights (tiny ones of its own, two styles, BN/IN/LN for one, unless
    STYLENET_TEST_WEIGHTS names real ones), a folder for styles trained in the app, and training photos."""
    weights = Path(REAL_WEIGHTS) if REAL_WEIGHTS else root / "weights"
    if not REAL_WEIGHTS:
        weights.mkdir()
        make_tiny_weights(weights)
    photos = root / "photos"
    photos.mkdir()
    for i in range(4):
        smooth_image(i, (96, 80)).save(photos / f"p{i}.jpg")
    models = root / "models"
    models.mkdir()  # with the preset times written, as a restarted server has them: no measurement to wait for
    (models / estimate.ESTIMATE_FILE).write_text(json.dumps({"seconds": PRESET_SECONDS,
                                                             "presets": estimate.measured_presets()}))
    return {"weights": weights, "models": models, "photos": photos}


@contextmanager
def running_app(weights, models, photos, log, flags=()):
    """The app on these folders, started as scripts/load_test.py starts it; yields its URL."""
    with helpers.running_app(weights, log, "--models-dir", str(models), "--train-photos", str(photos),
                               *flags) as (url, _):
        yield url


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return app_folders(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def app_log(tmp_path_factory):
    return tmp_path_factory.mktemp("log") / "app.log"


@pytest.fixture(scope="module")
def app_url(folders, app_log):
    with running_app(**folders, log=app_log) as url:
        yield url


def make_tiny_weights(weights: Path) -> None:
    (weights / "styles").mkdir()
    shutil.copy(ROOT / "weights" / "styles" / "starry_night.jpg", weights / "styles")
    (weights / "styles" / "SOURCES.csv").write_text(f"file,painting,license\nstarry_night.jpg,\"{STARRY_TITLE}\",pd\n")
    for style, norms in {"starry_night": ("batch", "instance", "layer"), "great_wave": ("batch", "instance")}.items():
        for norm in norms:
            make_checkpoint(weights / f"{style}_{norm}.safetensors", norm, style=style)
    build_manifest(weights)


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    smooth_image(3, (120, 90)).save(path)
    return path


def test_the_app_builds_and_compares_without_a_server(tmp_path, photo):
    """The builders are plain functions: the whole Blocks, and compare called directly."""
    import gradio as gr

    from stylenet.app.compare import compare, side_limit
    from stylenet.app.server import build
    from stylenet.app.styles import StyleRegistry, load_styles, user_style
    from stylenet.app.uploads import ResultFiles

    weights = tmp_path / "weights"
    weights.mkdir()
    make_tiny_weights(weights)
    registry = StyleRegistry(load_styles(weights), user_style)
    demo = build(registry)
    assert {"compare", "why_in", "why_in_flicker", "video"} <= {f.api_name for f in demo.fns.values()}
    styles = registry.view(None)
    pair, gallery, note, _ = compare(styles, ResultFiles(), str(photo), "starry_night")
    assert [Image.open(p).size for p in pair] == [(120, 90)] * 2
    assert [caption.split(" ")[0] for _, caption in gallery] == ["BN", "IN", "LN"]
    assert note.startswith(f"120x90 px, 3 models · {STARRY_TITLE} · shown at its own size") and "never enlarged" in note
    assert [Path(p).name for p, _ in gallery] == [f"photo_starry_night_{n}.png" for n in ("batch", "instance", "layer")]
    for bad in ({"max_side": float("nan")}, {"max_side": "big"}, {"strength": float("nan")}, {"strength": 2}):
        with pytest.raises(gr.Error):
            compare(styles, ResultFiles(), str(photo), "starry_night", **bad)
    assert [side_limit(v) for v in (10, 800.7, 5000)] == [64, 800, 1024]


def test_compare_runs_the_slim_students_where_shipped_and_says_which_ran_full(tmp_path, photo):
    import gradio as gr

    from stylenet.app.compare import compare
    from stylenet.app.styles import load_styles
    from stylenet.app.uploads import ResultFiles

    weights = tmp_path / "weights"
    weights.mkdir()
    make_tiny_weights(weights)
    make_student(weights / "starry_night_instance.safetensors")
    build_manifest(weights)
    assert len(load_manifest(weights)) == 5 and [e["file"] for e in load_manifest(weights, "fast")] == [
        "starry_night_instance_fast.safetensors"]
    styles = load_styles(weights)
    assert styles["starry_night"].fast["instance"].meta["width"] == 4 and not styles["great_wave"].fast
    pair, gallery, note, kept = compare(styles, ResultFiles(), str(photo), "starry_night", variant="fast")
    assert [caption.split(" —")[0] for _, caption in gallery] == ["BN", "IN (fast)", "LN"]
    assert [Path(p).name for p, _ in gallery] == ["photo_starry_night_batch.png", "photo_starry_night_instance_fast.png",
                                                 "photo_starry_night_layer.png"]
    assert note.endswith("never enlarged\n\n**Fast:** IN ran its slim model, a smaller copy trained to reproduce the "
                         "full model's pictures; BN, LN ran full (no slim model yet), so the slider compares models of "
                         "different sizes, not only different norms.")
    *_, wave_note, _ = compare(styles, ResultFiles(), str(photo), "great_wave", variant="fast")
    assert wave_note.endswith("\n\n**Fast:** no slim model of this style is shipped yet: the full models ran.")
    assert "Fast" not in compare(styles, ResultFiles(), str(photo), "great_wave")[2]
    full = compare(styles, ResultFiles(), str(photo), "starry_night")[3]
    assert Image.open(pair[1]).tobytes() != Image.open(dict((n, p) for n, p, _ in full["results"])["instance"]).tobytes()
    with pytest.raises(gr.Error, match="model size must be one of: full, fast"):
        compare(styles, ResultFiles(), str(photo), "starry_night", variant="tiny")


def test_a_photo_too_small_to_stylize_is_refused_in_one_line(tmp_path):
    """A 1x1 PNG decodes fine but stylizes into a blotch: photos under 32 px a side are refused, with the size,
    and so is one under it once downscaled to the resolution asked for."""
    import gradio as gr

    from stylenet.app.uploads import MIN_PHOTO_SIDE, read_upload

    for size in ((1, 1), (MIN_PHOTO_SIDE - 1, 400)):
        Image.new("RGB", size).save(tmp_path / "tiny.png")
        with pytest.raises(gr.Error, match=rf"{size[0]}x{size[1]} px: too small to stylize \(at least 32 px"):
            read_upload(str(tmp_path / "tiny.png"), 512)
    Image.new("RGB", (MIN_PHOTO_SIDE, MIN_PHOTO_SIDE)).save(tmp_path / "small.png")
    assert read_upload(str(tmp_path / "small.png"), 512).size == (MIN_PHOTO_SIDE, MIN_PHOTO_SIDE)
    Image.new("RGB", (4000, 40)).save(tmp_path / "strip.png")  # wide enough, but 64x1 once downscaled
    with pytest.raises(gr.Error, match=r"4000x40 px, 64x1 px at this resolution: too small to stylize"):
        read_upload(str(tmp_path / "strip.png"), 64)
    assert read_upload(str(tmp_path / "strip.png"), 3200).size == (3200, 32)


def test_the_report_has_a_takeaway_and_a_titled_band_of_the_grid_per_style(tmp_path):
    """The report's one-line takeaway follows its table's IN-vs-BN column; the grid comes as one band of
    rows per style under the painting's title, with the column names as text, not as pixels."""
    import base64

    from stylenet.app.report import grid_columns, grid_html, split_table, takeaway
    from stylenet.figures import contact_sheet

    _, table, notes = split_table((ROOT / "docs" / "figures" / "comparison.md").read_text())
    assert takeaway(table) == ("**In short:** Instance Norm copies every painting's style more closely than Batch "
                               "Norm: its style loss is 0.34x to 0.91x of Batch Norm's (lower is closer).")
    assert "optimization.md" in notes and "optimization.md" not in table  # file names go to the collapsed notes
    mixed = "| style | BN | IN | IN vs BN style loss |\n|---|---|---|---|\n| a | 1 | 2 | 2.00x |\n| b | 2 | 1 | 0.50x |"
    assert "for 1 of 2 paintings (its style loss is 0.50x to 2.00x" in takeaway(mixed)
    assert takeaway("| style | BN | IN |\n|---|---|---|\n| a | 1 | 2 |") is None
    columns = grid_columns(mixed)
    assert columns == ["photo", "painting", "BN", "IN"]
    tile = Image.new("RGB", (20, 20), "red")
    contact_sheet(columns, [[tile] * 4] * 4, tmp_path / "grid.png", side=40)
    page = grid_html(tmp_path / "grid.png", columns, {"a": "Painting A", "b": "Painting B"})
    assert re.findall(r"<h4>(.*?)</h4>", page) == ["Painting A", "Painting B"]
    assert "A blank square: no model of that kind was trained for that painting." in page
    assert page.count("<span>painting</span>") == 2
    bands = [Image.open(io.BytesIO(base64.b64decode(data))) for data in re.findall(r"base64,([^']+)'", page)]
    assert [band.size for band in bands] == [(160, 80)] * 2  # two rows each, the picture's header left out
    uneven = grid_html(tmp_path / "grid.png", columns, {"a": "A", "b": "B", "c": "C"})
    assert "<h4>" not in uneven and "Columns, left to right: photo, painting, BN, IN." in uneven


def test_strength_and_colour_remix_the_kept_results_without_running_a_model(tmp_path, photo, monkeypatch):
    """Compare keeps its full-strength outputs: another strength or colour setting is the photo and those
    outputs mixed again (what the stylizer would give, up to rounding), with no model run."""
    from stylenet.app.compare import compare, finish
    from stylenet.app.styles import StyleRegistry, load_styles, user_style
    from stylenet.app.uploads import ResultFiles
    from stylenet.stylize import Stylizer

    weights = tmp_path / "weights"
    weights.mkdir()
    make_tiny_weights(weights)
    styles, files = StyleRegistry(load_styles(weights), user_style).view(None), ResultFiles()
    *_, kept = compare(styles, files, str(photo), "starry_night")
    monkeypatch.setattr(Stylizer, "forward", lambda *a: pytest.fail("a model ran for a strength change"))
    pair, gallery, _ = finish(files, kept, 0.4, True)
    monkeypatch.undo()
    expected = styles["starry_night"].models["instance"](Image.open(photo).convert("RGB"), 0.4, preserve_color=True)
    shown = Image.open(pair[1]).convert("RGB")
    assert max(hi for _, hi in ImageChops.difference(shown, expected).getextrema()) <= 3
    assert Path(gallery[1][0]).name == "photo_starry_night_instance_strength40_photo_colours.png"
    assert ImageChops.difference(Image.open(finish(files, kept, 0.0)[0][0]).convert("RGB"),
                                 Image.open(photo).convert("RGB")).getbbox() is None  # strength 0: the photo


def test_compare_returns_bn_and_in(app_url, photo):
    client = Client(app_url, verbose=False)
    pair, gallery, note = client.predict(handle_file(str(photo)), "starry_night", api_name="/compare")
    bn, inorm = (Image.open(p) for p in pair)
    assert bn.size == inorm.size == (120, 90)
    assert [item["caption"].split(" ")[0] for item in gallery] == ["BN", "IN", "LN"]
    assert note.startswith("120x90 px, 3 models")


def test_bad_upload_is_a_friendly_error(app_url, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a jpeg")
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match=r"holiday.jpg: not an image in a supported format \(JPEG"):
        client.predict(handle_file(str(bad)), "starry_night", api_name="/compare")


def test_an_upload_reaches_no_decoder_before_the_allowlist(tmp_path, monkeypatch):
    """Gradio's own preprocessing opens an upload with every Pillow plugin (an EPS named .jpg would
    reach the EPS parser); the app passes the file on to read_upload, which opens it allowlisted."""
    import gradio as gr
    from gradio.components.image import ImageData
    from PIL import Image as PILImage

    from stylenet.app import uploads

    eps = tmp_path / "scan.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    component = uploads.photo_input("photo", 100)
    opened = []

    def spy(*args, **kwargs):
        opened.append(kwargs.get("formats"))
        raise AssertionError("decoded during preprocessing")

    monkeypatch.setattr(PILImage, "open", spy)
    assert component.preprocess(ImageData(path=str(eps), orig_name="scan.jpg")) == str(eps)
    assert opened == []
    monkeypatch.undo()
    with pytest.raises(gr.Error, match=r"scan.jpg: not an image in a supported format"):
        uploads.read_upload(str(eps), 512)


def test_eight_users_at_once(app_url, photo):
    def one_user(i):
        client = Client(app_url, verbose=False)
        pair, _, _ = client.predict(handle_file(str(photo)), "great_wave", 0.5 + i / 20, api_name="/compare")
        return Image.open(pair[1]).size

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one_user, range(8))) == [(120, 90)] * 8


def test_over_full_queue_refuses_as_busy_and_nothing_hangs(tmp_path):
    """One request at a time and one waiting: of eight sent together, the rest must be refused at once
    with gradio's busy message (the browser shows "This application is currently busy")."""
    photo = tmp_path / "big.jpg"
    smooth_image(5, (640, 480)).save(photo)  # three models on 640x480: long enough to keep the queue full
    with running_app(**app_folders(tmp_path), log=tmp_path / "app.log",
                     flags=("--concurrency", "1", "--queue-size", "1")) as url:
        clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(8)]
        jobs = [c.submit(handle_file(str(photo)), "starry_night", api_name="/compare") for c in clients]
        outcomes = []
        for job in jobs:
            try:
                pair, _, _ = job.result(timeout=300)
                outcomes.append(Image.open(pair[1]).size)
            except Exception as exc:  # noqa: BLE001 - the refusal is the outcome under test
                outcomes.append(str(exc))
    refused = [o for o in outcomes if isinstance(o, str)]
    assert refused and all(helpers.BUSY in o for o in refused), outcomes
    assert (640, 480) in outcomes  # the running and the waiting request are still served


def test_why_in_experiments(app_url, photo):
    client = Client(app_url, verbose=False)
    result = client.predict(handle_file(str(photo)), "starry_night", api_name="/why_in")
    assert len(result[0]) == 2 and len(result[2]) == 2 and len(result[4]) == 6
    assert result[1].startswith("**Verdict (a):** Batch Norm gives a different picture while training and in use")
    assert result[3].startswith("**Verdict (b):** Batch Norm's picture of your photo changes")
    assert result[3].endswith("Instance Norm 0.000).")  # IN never depends on the batch
    assert result[5].startswith("**Verdict (c):**")


def test_why_in_flicker_experiment(app_url, photo):
    client = Client(app_url, verbose=False)
    gallery, text = client.predict(handle_file(str(photo)), "starry_night", api_name="/why_in_flicker")
    assert [item["caption"].split(":")[0] for item in gallery] == ["BN", "IN", "IN + EMA"]
    assert text.startswith("**Verdict (e):** ") and "\n\nPan over your photo, 8 frames at 160x120: BN 0." in text
    shown = re.search(r"\(Instance Norm (\d\.\d+), Batch Norm (\d\.\d+)\)\.", text.split("\n")[0])
    agrees = float(shown[1]) > float(shown[2])  # the verdict follows the numbers beside it, whichever way
    assert ("Instance Norm flickers more than Batch Norm" in text) == agrees


def test_video_tab_returns_bn_and_in_clips_with_their_sound(app_url, tmp_path):
    from .test_video import make_clip, read_clip

    clip = make_clip(tmp_path / "clip.mp4", frames=5, size=(160, 120))
    client = Client(app_url, verbose=False)
    bn, inorm, note = client.predict(handle_file(str(clip)), "starry_night", 128, True, api_name="/video")
    for result in (bn, inorm):
        out = read_clip(Path(result["video"] if isinstance(result, dict) else result))
        assert out["frames"] == 5 and out["size"] == (128, 96) and out["codec"] == "h264"
        assert out["audio"] == read_clip(clip)["audio"]
    assert note.startswith("5 frames at 12 fps, 160x120 source, 128x96 out (longest side 128 px; a clip is never "
                           "enlarged, and is shown at its own size); sound copied.")


def test_video_tab_refuses_bad_clips_in_one_line(app_url, tmp_path):
    from .test_video import make_clip

    client = Client(app_url, verbose=False)
    voice = make_clip(tmp_path / "voice.mp4", video=False)
    with pytest.raises(Exception, match="voice.mp4: no video stream"):
        client.predict(handle_file(str(voice)), "starry_night", 256, False, api_name="/video")
    long_clip = make_clip(tmp_path / "long.mp4", frames=44, fps=4, audio=False)  # 11 s
    with pytest.raises(Exception, match="long.mp4: 11.0 s long, over the limit of 10 s"):
        client.predict(handle_file(str(long_clip)), "starry_night", 256, False, api_name="/video")


def test_a_video_stops_when_its_client_goes_away(app_url, app_log, tmp_path):
    """A client that disconnects mid-clip (its process killed) leaves no work behind: the server stops
    at the next batch of frames instead of stylizing the rest of the clip for nobody."""
    from .test_video import make_clip

    clip = make_clip(tmp_path / "long.mp4", frames=290, fps=Fraction(30), size=(640, 480), audio=False)
    script = ("import sys, time; from gradio_client import Client, handle_file\n"
              "job = Client(sys.argv[1], verbose=False).submit(handle_file(sys.argv[2]), 'starry_night', 480, False, "
              "api_name='/video')\n"
              "while job.status().code.name != 'PROCESSING': time.sleep(0.1)\n"
              "time.sleep(2); print('started', flush=True); time.sleep(600)")
    client = subprocess.Popen([sys.executable, "-c", script, app_url, str(clip)], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "started"
    finally:
        client.kill()
        client.wait()
    wait_for(lambda: "a video stopped: its client went away" in app_log.read_text(), timeout=60, every=0.5)


def test_heavy_work_shares_one_app_wide_limit(tmp_path):
    """Compare, Why IN?, Video, the webcam and a training submission run in one concurrency group:
    ``--concurrency`` is the number of heavy requests at once in the whole app, not per endpoint."""
    from stylenet.app.server import HEAVY, build
    from stylenet.app.styles import StyleRegistry, load_styles, user_style

    weights = tmp_path / "weights"
    weights.mkdir()
    make_tiny_weights(weights)
    store = JobStore(tmp_path / "models", tmp_path)
    demo = build(StyleRegistry(load_styles(weights), user_style, store), store, concurrency=3)
    heavy = {f.api_name or f.name: (f.concurrency_id, f.concurrency_limit) for f in demo.fns.values()
             if f.api_name in ("compare", "why_in", "why_in_flicker", "video", "train")
             or any(getattr(block, "streaming", False) for block in f.inputs)}
    assert len(heavy) == 6 and set(heavy.values()) == {(HEAVY, 3)}, heavy


def chromium(playwright, *extra: str):
    """Debian's chromium, headless, with nothing that calls out (``extra``: more command-line flags)."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                            "--disable-component-update", "--disable-sync", "--no-first-run", *extra])


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Debian chromium (setup.sh installs it)")
def test_browser_webcam_streams_bn_and_in(app_url):
    """Chromium's fake camera streams into the Webcam tab: BN and IN come back live, with the frame rate."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium(p, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(app_url)
        page.get_by_role("tab", name="Webcam").click()
        page.get_by_text("Click to Access Webcam").click()
        page.locator("button:visible", has_text="Record").first.click()
        page.wait_for_function("() => /achieved: [0-9.]+ fps/.test(document.querySelector('#webcam-rate').innerText)",
                               timeout=120000)  # a second result: the stream goes on by itself
        for output in ("#webcam-bn img", "#webcam-in img"):
            assert page.locator(output).first.is_visible()
        assert "256x192 px · BN + IN take" in page.locator("#webcam-rate").inner_text()
        browser.close()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Debian chromium (setup.sh installs it)")
def test_browser_upload_and_compare(app_url, folders, tmp_path):
    """Upload, click, and the page shows what the click computed: BN and IN of the photo's size in the
    slider, one result per model in the row, the note, all beside the inputs."""
    screenshot = Path(os.environ.get("STYLENET_SCREENSHOT", tmp_path / "app.png"))
    photo = ROOT / "examples" / "skimage_chelsea.jpg"
    width, height = Image.open(photo).size
    models = sum(e["style"] == "starry_night" and not e.get("experiment") for e in load_manifest(folders["weights"]))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.wait_for_timeout(1000)
        page.click("#compare-btn")
        page.get_by_text(f"{width}x{height} px, {models} models").wait_for(timeout=60000)
        slider_images = page.locator("#bn-in-slider img")
        slider_images.nth(1).wait_for(timeout=60000)
        shown = [Image.open(io.BytesIO(page.request.get(img.get_attribute("src")).body())).convert("RGB")
                 for img in slider_images.all()]
        assert [im.size for im in shown] == [(width, height)] * 2
        assert ImageChops.difference(*shown).getbbox() is not None  # BN and IN, not one image twice
        assert page.locator("#all-results img").count() == models
        button, slider = page.locator("#compare-btn").bounding_box(), page.locator("#bn-in-slider").bounding_box()
        assert slider["x"] >= button["x"] + button["width"]  # two columns: the results beside the inputs
        page.wait_for_timeout(500)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()


# -- "Train a style": a tiny job (64 px, 3 steps, width 8) trained by the app's own worker ---------------------
TINY_SETTINGS = (3, 64, 8)  # steps, crop size, width


def train_request(painting, name, norms=("batch", "instance"), settings=TINY_SETTINGS):
    return (handle_file(str(painting)), name, "quick", list(norms), *settings, None)


def wait_for(check, timeout=600, every=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"gave up after {timeout} s")


def job_ended(client, job_id):
    events = client.predict(job_id, api_name="/job_events")
    return events if events and events[-1]["event"] == "end" else None


def test_train_a_style_queue_it_and_cancel(app_url, folders, painting, photo):
    client = Client(app_url, verbose=False)
    tiny, _ = client.predict(*train_request(painting, "tiny"), api_name="/train")
    wait_for(lambda: {j["id"]: j for j in client.predict(api_name="/jobs")}[tiny]["state"] != "queued")
    long, note = client.predict(*train_request(painting, "long", ["instance"], (400, 64, 4)), api_name="/train")
    assert note == "Queued **long** (position 1)"

    events = wait_for(lambda: job_ended(client, tiny))
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3] and all(set(e["losses"]) == {"batch", "instance"} for e in steps)
    assert events[-1]["state"] == "done"
    jobs = {j["name"]: j for j in client.predict(api_name="/jobs")}
    assert set(jobs["tiny"]["models"]) == {"batch", "instance"}
    assert str(folders["models"]) not in str(jobs)  # no server path reaches a client
    pair, gallery, _ = client.predict(handle_file(str(photo)), "tiny", api_name="/compare")
    assert [item["caption"].split(" ")[0] for item in gallery] == ["BN", "IN"]
    assert Image.open(pair[1]).size == (120, 90)
    another_client_sees_and_touches_nothing(app_url, folders, tiny, photo)

    wait_for(lambda: any(e["event"] == "step" for e in client.predict(long, api_name="/job_events")))
    client.predict(long, api_name="/cancel")
    events = wait_for(lambda: job_ended(client, long), timeout=120)
    assert events[-1]["state"] == "cancelled"
    stopped_at = read_metadata(folders["models"] / long / "instance.train.safetensors")["step"]
    assert 1 <= stopped_at < 400 and f"cancelled at step {stopped_at}" in events[-1]["message"]
    assert {j["name"]: j for j in client.predict(api_name="/jobs")}["long"]["resumable"]


def another_client_sees_and_touches_nothing(url, folders, job_id, photo):
    """A second client: no other's job listed, followed, cancelled, resumed or deleted, no other's style
    used, and none of the job's files served, whatever path it asks for."""
    import httpx

    other = Client(url, verbose=False)
    assert [j for j in other.predict(api_name="/jobs") if j["id"] == job_id] == []
    for api in ("/job_events", "/cancel", "/resume", "/delete_job"):
        with pytest.raises(Exception, match=f"no job '{job_id}'"):
            other.predict(job_id, api_name=api)
    with pytest.raises(Exception, match="Unknown style 'tiny'"):
        other.predict(handle_file(str(photo)), "tiny", api_name="/compare")
    folder = folders["models"] / job_id
    for name in ("job.json", "tiny.png", "preview_example.png", "batch.safetensors", "events.jsonl", "worker.log"):
        assert (folder / name).is_file()
        response = httpx.get(f"{url}gradio_api/file={folder / name}")
        assert response.status_code == 403, name
    assert httpx.get(f"{url}gradio_api/file={folders['models'] / 'jobs.lock'}").status_code == 403
    assert (folder / "batch.safetensors").is_file()  # still there: nothing was deleted


def test_train_refuses_bad_requests_in_one_line(app_url, tmp_path, painting):
    client = Client(app_url, verbose=False)
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(Exception, match="holiday.jpg: not"):
        client.predict(*train_request(bad, "bad"), api_name="/train")
    with pytest.raises(Exception, match=r"steps must be 1 to 20000 \(got 50000\)"):
        client.predict(*train_request(painting, "greedy", settings=(50000, 64, 8)), api_name="/train")
    with pytest.raises(Exception, match="a style named 'starry_night' already exists"):
        client.predict(*train_request(painting, "starry_night"), api_name="/train")
    import zipfile

    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        archive.writestr("../../outside.jpg", b"\xff\xd8 a photo")
    with pytest.raises(Exception, match="photos.zip: the entry '../../outside.jpg' points outside the archive"):
        client.predict(*train_request(painting, "zipped"), [handle_file(str(tmp_path / "photos.zip"))],
                       api_name="/train")


def test_a_restarted_app_lists_finished_models_and_resumable_jobs(tmp_path, painting, photo):
    folders = app_folders(tmp_path)
    store = JobStore(folders["models"], folders["photos"])
    mine = store.submit(painting, "mine", ["batch", "instance"], "quick", dict(zip(("steps", "image_size", "width"),
                                                                                  TINY_SETTINGS)))
    for norm in mine.norms:  # a job that finished before the restart
        make_checkpoint(mine.model_path(norm), norm, style="mine")
    store.finish(mine, "done")
    crashed = store.submit(painting, "crashed", ["instance"])
    crashed.state, crashed.pid = "running", spawn_and_reap()  # running when the app went down
    crashed.save()
    reused = store.submit(painting, "reused", ["instance"])
    reused.state, reused.pid = "running", os.getpid()  # its worker's pid now another live process's
    reused.save()
    # jobs the operator queued (the command line) are no client's; --share-styles offers their styles to all
    with running_app(**folders, log=tmp_path / "app.log", flags=("--share-styles",)) as url:
        client = Client(url, verbose=False)

        def none_running():
            found = {j.name: j for j in store.jobs()}
            return found if all(j.state != "running" for j in found.values()) else None

        jobs = wait_for(none_running, timeout=30)
        assert jobs["mine"].state == "done"
        for name in ("crashed", "reused"):
            assert jobs[name].state == "interrupted" and jobs[name].resumable, jobs[name]
        assert client.predict(api_name="/jobs") == []
        _, gallery, note = client.predict(handle_file(str(photo)), "mine", api_name="/compare")
        assert [item["caption"].split(" ")[0] for item in gallery] == ["BN", "IN"] and "2 models" in note
    with helpers.running_app(folders["weights"], tmp_path / "app2.log", "--models-dir", str(folders["models"]),
                             "--train-photos", str(folders["photos"])) as (url, process):  # not shared: the default
        with pytest.raises(Exception, match="Unknown style 'mine'"):
            Client(url, verbose=False).predict(handle_file(str(photo)), "mine", api_name="/compare")
        assert list(Path(tempfile.gettempdir()).glob(f"stylenet-results-{process.pid}-*"))
    # helpers.running_app stops the app with SIGTERM: its results area goes all the same
    assert not list(Path(tempfile.gettempdir()).glob(f"stylenet-results-{process.pid}-*"))


def spawn_and_reap() -> int:
    """The pid of a process that has exited: what a worker killed with the app leaves in job.json."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Debian chromium (setup.sh installs it)")
def test_browser_trains_a_style_and_shows_it_live(app_url, folders, painting, tmp_path):
    """One browser trains a style and sees it live; a second browser (``second_browser_sees_and_touches_nothing``)
    cannot see or change it."""
    screenshot = Path(os.environ.get("STYLENET_TRAIN_SCREENSHOT", tmp_path / "train.png"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.get_by_role("tab", name="Train a style").click()
        page.locator("#train-painting input[type=file]").set_input_files(str(painting))
        page.get_by_label("Style name").fill("browser_tiny")
        presets = page.locator('#train-preset [data-testid$="-radio-label"]').all_inner_texts()
        assert [text.strip() for text in presets] == ["quick", "standard"]  # "full" is over the 20,000-step limit
        page.get_by_role("button", name="Training settings").click()
        tiny = dict(zip(("Steps", "Training crop size", "Network width"), map(str, TINY_SETTINGS)))
        for _ in range(5):  # typed, committed (Tab) and still there a second later: nothing reset them
            for label, value in tiny.items():
                page.get_by_label(label).fill(value)
                page.get_by_label(label).press("Tab")
            page.wait_for_timeout(1000)
            if all(page.get_by_label(label).input_value() == value for label, value in tiny.items()):
                break
        page.click("#train-btn")
        status = page.locator("#job-status")
        status.get_by_text("browser_tiny — done").wait_for(timeout=600_000)
        page.locator("#job-previews img").first.wait_for(timeout=30_000)
        page.locator("#loss-plot canvas, #loss-plot svg").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        assert "step 3 / 3" in status.inner_text()
        assert page.locator("#job-previews img").count() >= 2  # a preview of each norm, BN and IN
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        page.get_by_role("tab", name="Compare").click()
        page.get_by_label("Style", exact=True).first.click()  # the new style is offered without a restart, marked
        page.get_by_role("option", name="browser_tiny (user-trained)").wait_for(timeout=30_000)
        second_browser_sees_and_touches_nothing(browser, app_url, folders)
        page.reload()  # the first browser keeps its job across a reload (its owner cookie)
        page.get_by_role("tab", name="Train a style").click()
        page.locator("#job-status").get_by_text("browser_tiny — done").wait_for(timeout=30_000)
        browser.close()


def second_browser_sees_and_touches_nothing(browser, url, folders):
    """Another browser (a context of its own: its own storage and session): no job, no history, no
    previews, the style not offered; typing the job's id offers no Cancel, Resume or Delete, the job stays."""
    [job_id] = [p.name for p in folders["models"].iterdir() if (p / "job.json").is_file()
                and json.loads((p / "job.json").read_text())["name"] == "browser_tiny"]
    page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
    page.goto(url)
    page.get_by_role("tab", name="Train a style").click()
    page.locator("#job-status").get_by_text("No job yet").wait_for(timeout=30_000)
    page.wait_for_timeout(2500)  # a refresh or two
    assert page.locator("#job-previews img").count() == 0 and "browser_tiny" not in page.content()
    page.locator("#job-select input").fill(job_id)  # another's id typed in: nothing to press is offered
    page.locator("#job-select input").press("Enter")
    page.wait_for_timeout(3000)
    for button in ("#cancel-btn", "#resume-btn", "#delete-btn"):  # (the server's own refusal: test_app_owners.py)
        assert not page.locator(button).is_visible(), button
    assert (folders["models"] / job_id / "job.json").is_file()
    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Style", exact=True).first.click()
    page.get_by_role("option", name=STARRY_TITLE).first.wait_for(timeout=30_000)
    page.wait_for_timeout(6000)  # past a tick of the style lists
    assert page.get_by_role("option", name="browser_tiny (user-trained)").count() == 0
    page.context.close()


# -- A first visit, at a desktop's width and a phone's: one app, one browser, every tab read as a newcomer -------
@pytest.fixture(scope="module")
def browser():
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no Debian chromium (setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = chromium(p)
        yield launched
        launched.close()


def fully_visible(page, selector: str) -> bool:
    """Every element ``selector`` matches is shown and lies inside the box of its nearest block."""
    return page.evaluate("""s => [...document.querySelectorAll(s)].every(e => {
        const r = e.getBoundingClientRect(), b = e.closest('.block').getBoundingClientRect();
        return r.width > 0 && r.height > 0 && r.left >= b.left - 1 && r.right <= b.right + 1
            && r.top >= b.top - 1 && r.bottom <= b.bottom + 1; })""", selector)


def apart(page, first: str, second: str) -> bool:
    """The first element ``first`` matches and the first ``second`` matches do not overlap on the page."""
    return page.evaluate("""([a, b]) => { const r = document.querySelector(a).getBoundingClientRect(),
        s = document.querySelector(b).getBoundingClientRect();
        return r.bottom <= s.top || s.bottom <= r.top || r.right <= s.left || s.right <= r.left; }""", [first, second])


def no_file_names(page) -> bool:
    """The page's visible text names no repository file (a script, a weights or docs path); commands
    may stay inside collapsed sections, which innerText leaves out."""
    return not re.search(r"scripts/|weights/|docs/|\.py\b|\.md\b", page.locator("body").inner_text())


@pytest.mark.parametrize("width", [1280, 390])
def test_browser_first_visit_explains_itself(app_url, folders, browser, width, tmp_path):
    """What a newcomer sees before doing anything, then one run of Why IN?: an example result with what
    to look for, BN and IN named on the picture, the painting's title, no empty result boxes, captions
    inside their pictures, a verdict per experiment, why the webcam cannot start, where training photos
    come from and how long each preset takes here, only the buttons that apply, and no sideways scrolling."""
    example = Image.open(ROOT / "examples" / "skimage_chelsea.jpg").size
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(app_url)
    page.locator("#bn-in-slider img").nth(1).wait_for(timeout=60_000)
    assert [t.inner_text().strip() for t in page.get_by_role("tab").all() if t.is_visible()] == [
        "Compare", "Why IN?", "Video", "Webcam", "Train a style", "Training report"]  # none behind "…"
    page.wait_for_function("() => [...document.querySelectorAll('#bn-in-slider img')].every(i => i.naturalWidth)")
    sizes = page.evaluate("[...document.querySelectorAll('#bn-in-slider img')].map(i => [i.naturalWidth, "
                          "i.naturalHeight, i.getBoundingClientRect().width])")
    assert [tuple(s[:2]) for s in sizes] == [example] * 2
    assert all(shown <= natural + 1 for natural, _, shown in sizes)  # never enlarged
    halves = page.evaluate("""() => { const w = document.querySelector('#bn-in-slider .slider-wrap > .wrap');
        return [getComputedStyle(w, '::before').content, getComputedStyle(w, '::after').content]; }""")
    assert halves == ['"Batch Norm"', '"Instance Norm"']
    badges = page.evaluate("""() => { const w = document.querySelector('#bn-in-slider .slider-wrap > .wrap'),
        r = w.getBoundingClientRect(), s = getComputedStyle(w, '::before'), top = r.top + parseFloat(s.top);
        return [top, top + parseFloat(s.height), document.querySelector('#bn-in-slider [data-testid=block-label]')
                .getBoundingClientRect().bottom]; }""")
    assert badges[0] >= badges[2]  # the "Batch Norm" badge lies below the block label, not under it
    assert "What to look for" in page.locator("#look-for").inner_text()
    assert f"{example[0]}x{example[1]} px, 3 models · {STARRY_TITLE}" in page.locator("#compare-note").inner_text()
    assert page.get_by_label("Style", exact=True).first.input_value() == STARRY_TITLE
    assert page.locator("#all-results img").count() == 3 and fully_visible(page, "#all-results .caption-label")
    page.screenshot(path=str(tmp_path / f"compare_{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width and no_file_names(page)
    other = ROOT / "examples" / "skimage_astronaut.jpg"  # pressed at the button, the result is brought into view
    page.locator("#compare-row input[type=file]").first.set_input_files(str(other))
    page.wait_for_timeout(1000)
    page.locator("#compare-btn").scroll_into_view_if_needed()
    page.click("#compare-btn")
    page.locator("#compare-note").get_by_text("{}x{} px, 3 models".format(*Image.open(other).size)).wait_for(timeout=60_000)
    assert 0 <= page.evaluate("document.querySelector('#bn-in-slider').getBoundingClientRect().top") < 900
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")  # refused: no earlier result or caption stays under the error
    page.locator("#compare-row input[type=file]").first.set_input_files(str(tmp_path / "dot.png"))
    page.wait_for_timeout(1000)
    page.click("#compare-btn")
    page.get_by_text("1x1 px: too small to stylize").first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#compare-note').innerText.trim()", timeout=10_000)
    assert page.locator("#bn-in-slider img").count() == 0 and page.locator("#all-results img").count() == 0

    page.get_by_role("tab", name="Why IN?").click()
    assert not page.locator("#why-in-results").is_visible()  # no empty boxes before a run
    page.click("#why-in-btn")
    page.get_by_text("Verdict (e):").wait_for(timeout=120_000)
    for name in "abce":
        assert page.get_by_text(f"Verdict ({name}):").is_visible()
    page.wait_for_function("() => document.querySelectorAll('.whole-gallery .caption-label').length == 13")
    assert fully_visible(page, ".whole-gallery .caption-label")
    assert page.get_by_text("BN while training").is_visible() and page.get_by_text("BN in use, after training").is_visible()
    page.screenshot(path=str(tmp_path / f"why_in_{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    page.get_by_role("tab", name="Webcam").click()
    assert "No camera found on this device" in page.locator("#webcam-help").inner_text()  # no fake camera here
    assert re.search(r"expect about \d+\.\d frames a second", page.get_by_text("Live stylization").inner_text())

    page.get_by_role("tab", name="Train a style").click()
    intro = page.locator("#train-intro").inner_text()
    assert "Training photos: unless you add your own below, the 4 photos of this server's training folder (photos)" in intro
    assert "quick about 25 min · standard about 2 h 05 min" in page.locator("#preset-times").inner_text()
    page.locator("#job-status").get_by_text("No job yet").wait_for(timeout=30_000)
    assert not any(page.locator(b).is_visible() for b in ("#cancel-btn", "#resume-btn", "#delete-btn"))
    assert page.locator("#train-preview-photo").is_visible()
    assert apart(page, "#train-photos [data-testid=block-label]", "#train-photos [data-testid=upload-text]")
    assert page.evaluate("document.documentElement.scrollWidth") <= width and no_file_names(page)

    page.get_by_role("tab", name="Training report").click()
    assert page.locator("#report-takeaway").inner_text().startswith("In short: Instance Norm copies")
    cells = page.evaluate("[...document.querySelectorAll('#report-table td')].map(c => c.getBoundingClientRect().height)")
    assert cells and max(cells) < 60  # one line a cell: the table scrolls inside its box, never breaks digit by digit
    assert [h.inner_text() for h in page.locator("#report-grid h4").all()] == [
        STARRY_TITLE, "Katsushika Hokusai, The Great Wave off Kanagawa (c. 1831)", "Edvard Munch, The Scream (1893)"]
    heads = page.evaluate("[...document.querySelectorAll('#report-grid .grid-head span')].map(s => "
                          "[s.innerText, parseFloat(getComputedStyle(s).fontSize), s.getBoundingClientRect().width])")
    assert [name for name, _, _ in heads[:3]] == ["photo", "painting", "BN"]
    assert all(px >= 13 and wide >= 90 for _, px, wide in heads)  # readable names over pictures of readable size
    page.screenshot(path=str(tmp_path / f"report_{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width and no_file_names(page)
    page.context.close()


def test_browser_video_says_an_unplayable_upload_is_fine_and_keeps_a_small_clip_small(app_url, browser, tmp_path):
    """An MPEG-4 Part 2 upload (Gradio: "Video not playable") gets a note that it will be stylized; a 96x64
    clip comes back shown at 96x64, never enlarged; the progress shows, readable, in the note under both
    videos, never as "IN: …" on the BN box."""
    from .test_app_video import mp4v_clip

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(app_url)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input input[type=file]").set_input_files(str(mp4v_clip(tmp_path / "old_camera.mp4")))
    page.locator("#video-input-note").get_by_text("the app reads it").wait_for(timeout=30_000)
    # the progress of a short clip may last less than a poll: an observer sees every change of the note
    page.evaluate("""() => { window.progressSeen = false; const n = document.querySelector('#video-note');
        new MutationObserver(() => { const r = n.getBoundingClientRect();
            if (/BN: stylizing frames/.test(n.innerText) && r.height >= 40 && r.width >= 200) window.progressSeen = true;
        }).observe(n, {childList: true, subtree: true, characterData: true}); }""")
    page.click("#video-btn")
    bn_texts = set()
    while page.locator("#video-bn video, #video-in video").count() < 2:
        bn_texts.add(page.locator("#video-bn").inner_text())
        page.wait_for_timeout(200)
    assert not any("stylizing frames" in text for text in bn_texts)
    assert page.evaluate("window.progressSeen")  # shown in the note, in a box large enough to be read
    page.wait_for_function("() => [...document.querySelectorAll('#video-bn video, #video-in video')].every(v => v.videoWidth)")
    shown = page.evaluate("[...document.querySelectorAll('#video-bn video, #video-in video')].map(v => "
                          "[v.videoWidth, v.getBoundingClientRect().width])")
    assert shown == [[96, 96]] * 2
    page.context.close()
