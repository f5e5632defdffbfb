"""Many users, one server: who owns a request, what skips the queue, what nobody can bypass."""
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import httpx
from gradio_client import Client, handle_file

from stylenet.app.sessions import LOCAL, TOKEN, Sessions, owner_id

from . import helpers
from .conftest import smooth_image
from .test_app import app_folders, running_app

LIGHT_APIS = ("jobs", "job_events", "cancel", "resume", "delete_job")


def request(session_hash):
    return gr.Request(session_hash=session_hash)


def test_sessions_tokens_owners_and_eviction():
    sessions = Sessions(keep=2)
    token = sessions.start("not a token", request("page-a"))  # a bad token is replaced, never used
    assert TOKEN.fullmatch(token) and token != "not a token"
    assert sessions.start(token, request("page-b")) == token  # a reload: the same token, the same owner
    assert sessions.owner(request("page-a")) == sessions.owner(request("page-b")) == owner_id("browser", token)
    sessions.start(None, request("page-c"))  # the oldest page mapping goes beyond ``keep``
    assert sessions.owner(request("page-a")) == owner_id("session", "page-a")
    sessions.forget(request("page-b"))
    assert sessions.owner(request("page-b")) == owner_id("session", "page-b")
    # no session: an owner of its own each time, never one shared by every sessionless caller
    sessionless = {sessions.owner(None), sessions.owner(request(None)), sessions.owner(request(""))}
    assert len(sessionless) == 3 and LOCAL not in sessionless


def test_no_request_skips_the_queue_and_light_answers_never_wait_in_it(tmp_path):
    """Heavy handlers are reached only through the queue (``/gradio_api/run/<api>`` is refused, so the
    app-wide limit holds); the light ones skip it, so a queue filled with heavy requests leaves every
    page's job list, Cancel and refreshes answering at once."""
    big = tmp_path / "big.jpg"
    smooth_image(5, (640, 480)).save(big)
    with running_app(**app_folders(tmp_path), log=tmp_path / "app.log",
                     flags=("--concurrency", "1", "--queue-size", "1")) as url:
        config = httpx.get(f"{url}config").json()
        queued = {d["api_name"]: d["queue"] for d in config["dependencies"] if d["backend_fn"]}
        assert not any(queued[api] for api in LIGHT_APIS), queued
        ticks = [d["queue"] for d in config["dependencies"] if any(t[1] in ("tick", "load") for t in d["targets"])
                 and d["backend_fn"]]
        assert ticks and not any(ticks)  # the timers' refreshes and the page load
        for api in ("compare", "train", "video", "why_in"):
            response = httpx.post(f"{url}gradio_api/run/{api}", json={"data": []})
            assert response.status_code == 404 and "join the queue" in response.text, (api, response.text)

        clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(c.predict, handle_file(str(big)), "starry_night", api_name="/compare")
                     for c in clients]
            refused = []
            for call in calls:  # one runs, one waits, the rest are refused: the queue is full
                try:
                    call.result(timeout=1)
                except Exception as exc:  # noqa: BLE001 - a refusal or a timeout, both expected here
                    refused.append(str(exc))
                if any(helpers.BUSY in r for r in refused):
                    break
            assert any(helpers.BUSY in r for r in refused), refused
            start = time.monotonic()
            jobs = httpx.post(f"{url}gradio_api/run/jobs", json={"data": [], "session_hash": "abc"}, timeout=30)
            cancel = httpx.post(f"{url}gradio_api/run/cancel", json={"data": ["20240101-000000-abcdef"],
                                                                     "session_hash": "abc"}, timeout=30)
            assert time.monotonic() - start < 10
            assert jobs.status_code == 200 and jobs.json()["data"] == [[]], jobs.text
            assert "no job '20240101-000000-abcdef'" in cancel.text, cancel.text


def test_two_owners_may_name_a_style_alike_and_a_painting_loads_no_model(tmp_path):
    from stylenet.app.styles import StyleRegistry
    from stylenet.jobs import UserStyle

    loads = []
    registry = StyleRegistry({}, lambda style: loads.append(style.job_id) or style.job_id, keep_loaded=2)
    alices = UserStyle("sunset", tmp_path / "a.png", {"instance": tmp_path / "a"}, "job-a", "alice")
    bobs = UserStyle("sunset", tmp_path / "b.png", {"instance": tmp_path / "b"}, "job-b", "bob")
    registry.sync([alices, bobs])
    assert registry.view("alice")["sunset"] == "job-a" and registry.view("bob")["sunset"] == "job-b"
    loads.clear()
    assert registry.painting("bob", "sunset") == tmp_path / "b.png" and registry.painting("carol", "sunset") is None
    assert loads == []  # the dropdown's thumbnail is a light request: no model read for it
    registry.shared = True  # everyone's styles for all: the owner's own comes first, else the oldest
    assert registry.view("bob")["sunset"] == "job-b" and registry.view("carol")["sunset"] == "job-a"


def test_no_server_path_reaches_a_client_in_an_error():
    from stylenet.app.errors import hide_paths, user_error

    assert hide_paths("training photos: folder /srv/my photos/train does not exist (start the app with "
                      "--train-photos DIR)") == ("training photos: folder train does not exist (start the app "
                                                 "with --train-photos DIR)")
    assert hide_paths("STYLENET_VGG_H5 points to /home/a b/nope.h5, which does not exist") == (
        "STYLENET_VGG_H5 points to nope.h5, which does not exist")
    assert hide_paths("a jpg/png/webp photo; 1/2 done; 'x/y'") == "a jpg/png/webp photo; 1/2 done; 'x/y'"
    assert user_error("cannot read '/tmp/gradio/ab cd/holiday.jpg'").message == "cannot read 'holiday.jpg'"


def test_a_client_watch_follows_this_request_s_own_event():
    """Two events of one session and endpoint (two tabs, or one tab twice): each request watches its own."""
    from types import SimpleNamespace

    from stylenet.app.sessions import client_watch

    first, second = (SimpleNamespace(request=object(), alive=True, session_hash="s") for _ in range(2))
    queue = SimpleNamespace(active_jobs=[[first], [second]])
    blocks = SimpleNamespace(_queue=queue)
    watch = client_watch(blocks, SimpleNamespace(request=second.request, session_hash="s"))
    assert not watch()
    second.alive = False  # the second client left; the first is still there
    assert watch()
    assert not client_watch(blocks, SimpleNamespace(request=first.request, session_hash="s"))()
    assert not client_watch(blocks, SimpleNamespace(request=object(), session_hash="s"))()  # unknown: there


def test_a_pasted_picture_s_file_goes_with_the_cache_retention():
    import base64
    import io

    from gradio.data_classes import FileData
    from gradio.route_utils import delete_files_created_by_app
    from PIL import Image

    from stylenet.app.uploads import safe_preprocess

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    with gr.Blocks() as demo:
        image = safe_preprocess(gr.Image(type="filepath", sources=["clipboard"]))
    path = image.preprocess(FileData(path="paste.png", url="data:image/png;base64,"
                                     + base64.b64encode(png.getvalue()).decode()))
    assert Image.open(path).size == (8, 8)
    delete_files_created_by_app(demo, None)  # what the app's delete_cache runs for files past their age
    assert not Path(path).exists()
