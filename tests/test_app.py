"""The web app, launched for real: gradio_client calls and a Chromium browser session."""
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from stylenet.weights import build_manifest

from .conftest import ROOT, make_checkpoint, smooth_image

# The README's screenshot:
# STYLENET_SCREENSHOT=docs/figures/app_screenshot.png STYLENET_TEST_WEIGHTS=weights pytest -k browser
REAL_WEIGHTS = os.environ.get("STYLENET_TEST_WEIGHTS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on a tiny weights folder of its own (two styles, BN/IN/LN for one)."""
    weights = Path(REAL_WEIGHTS) if REAL_WEIGHTS else tmp_path_factory.mktemp("weights")
    if not REAL_WEIGHTS:
        make_tiny_weights(weights)
    port = free_port()
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--weights-dir", str(weights), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, Path(log.name).read_text()
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(10)


def make_tiny_weights(weights: Path) -> None:
    (weights / "styles").mkdir()
    shutil.copy(ROOT / "weights" / "styles" / "starry_night.jpg", weights / "styles")
    for style, norms in {"starry_night": ("batch", "instance", "layer"), "great_wave": ("batch", "instance")}.items():
        for norm in norms:
            make_checkpoint(weights / f"{style}_{norm}.safetensors", norm, style=style)
    build_manifest(weights)


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    smooth_image(3, (120, 90)).save(path)
    return path


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
    with pytest.raises(Exception, match="holiday.jpg: not a readable image"):
        client.predict(handle_file(str(bad)), "starry_night", api_name="/compare")


def test_eight_users_at_once(app_url, photo):
    def one_user(i):
        client = Client(app_url, verbose=False)
        pair, _, _ = client.predict(handle_file(str(photo)), "great_wave", 0.5 + i / 20, api_name="/compare")
        return Image.open(pair[1]).size

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one_user, range(8))) == [(120, 90)] * 8


def test_why_in_experiments(app_url, photo):
    client = Client(app_url, verbose=False)
    result = client.predict(handle_file(str(photo)), "starry_night", api_name="/why_in")
    assert len(result[0]) == 2 and len(result[2]) == 2 and len(result[4]) == 6
    assert "IN by 0.0000" in result[3]  # IN never depends on the batch


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Debian chromium (setup.sh installs it)")
def test_browser_upload_and_compare(app_url, tmp_path):
    screenshot = Path(os.environ.get("STYLENET_SCREENSHOT", tmp_path / "app.png"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.locator("input[type=file]").first.set_input_files(str(ROOT / "examples" / "skimage_chelsea.jpg"))
        page.wait_for_timeout(1000)
        page.click("#compare-btn")
        slider_images = page.locator("#bn-in-slider img")
        slider_images.nth(1).wait_for(timeout=60000)
        assert slider_images.count() >= 2
        page.locator("#all-results img").first.wait_for(timeout=60000)
        page.wait_for_timeout(500)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert Image.open(screenshot).size[0] >= 1000
