"""Many users, one server: who owns a request, what skips the queue, what nobody can bypass."""
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import httpx
from gradio_client import Client, handle_file

from stylenet.app.sessions import (
    COOKIE,
    HOST_COOKIE,
    LOCAL,
    TOKEN,
    OwnerCookie,
    Sessions,
    owner_id,
)

from . import helpers
from .conftest import smooth_image
from .test_app import app_folders, running_app

LIGHT_APIS = ("jobs", "job_events", "cancel", "resume", "delete_job")


def request(session_hash, cookie=None, url="http://app/"):
    return gr.Request(session_hash=session_hash, url=url, headers={"cookie": f"{COOKIE}={cookie}"} if cookie else {})


def test_a_browser_is_its_cookie_and_a_client_without_one_its_session():
    sessions = Sessions()
    token, other = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    # two tabs (two sessions) of one browser, or a reload: one owner
    assert sessions.owner(request("tab-a", token)) == sessions.owner(request("tab-b", token)) == owner_id("browser", token)
    assert sessions.owner(request("tab-a", other)) != sessions.owner(request("tab-a", token))
    assert sessions.owner(request("client")) == sessions.owner(request("client")) == owner_id("session", "client")
    # a malformed cookie is no owner: the request is its session's, as with no cookie
    for forged in ("0123456789ABCDEF" * 2, token[:-1], token + "0", "../" + token, ""):
        assert sessions.owner(request("client", forged)) == owner_id("session", "client"), forged
    # no session: an owner of its own each time, never one shared by every sessionless caller
    sessionless = {sessions.owner(None), sessions.owner(request(None)), sessions.owner(request(""))}
    assert len(sessionless) == 3 and LOCAL not in sessionless


def owner_cookie_client(base_url: str = "http://testserver"):
    """A client of a page behind ``OwnerCookie``."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("page"))],
                    middleware=[Middleware(OwnerCookie)])
    return TestClient(app, base_url=base_url)


def test_the_owner_cookie_is_set_once_http_only_and_a_malformed_one_is_replaced():
    def get(**headers):  # a fresh client each time: no cookie jar carries one request's cookie to the next
        response = owner_cookie_client().get("/", headers=headers)
        assert response.text == "page"
        return response.headers.get("set-cookie")

    name, _, rest = get().partition("=")
    value, *flags = [part.strip() for part in rest.split(";")]
    assert name == COOKIE and TOKEN.fullmatch(value)
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(flags) and "Secure" not in flags
    assert get(cookie=f"{COOKIE}={value}") is None  # kept: one owner for good
    assert "Secure" in get(**{"x-forwarded-proto": "https"})
    replaced = get(cookie=f"{COOKIE}={value.upper()}")
    assert TOKEN.fullmatch(replaced.split(";")[0].partition("=")[2]) and value not in replaced
    # two owner cookies (one tossed in by a sibling subdomain, or set on another path): neither is trusted
    other = "fedcba9876543210" * 2
    assert get(cookie=f"{COOKIE}={value}; {COOKIE}={other}").startswith(f"{COOKIE}=")


def test_over_https_the_owner_cookie_is_one_only_this_host_can_set():
    """``__Host-`` (Secure, Path=/, no Domain): an app on a sibling subdomain (``--share``'s *.gradio.live)
    cannot set it, and the plain name it could set is no owner over https; a duplicated one is none either."""
    minted = owner_cookie_client("https://app.example").get("/").headers["set-cookie"]
    name, _, rest = minted.partition("=")
    flags = [part.strip() for part in rest.split(";")][1:]
    assert name == HOST_COOKIE == "__Host-stylenet-owner"
    assert {"Secure", "Path=/", "HttpOnly", "SameSite=Lax"} <= set(flags)
    assert not any(flag.lower().startswith("domain") for flag in flags)

    sessions, token, other = Sessions(), "0123456789abcdef" * 2, "fedcba9876543210" * 2

    def owner(cookie: str, url: str = "https://app.example/") -> str:
        return sessions.owner(gr.Request(session_hash="tab", url=url, headers={"cookie": cookie}))

    assert owner(f"{HOST_COOKIE}={token}") == owner(f"x=1; {HOST_COOKIE}={token}") == owner_id("browser", token)
    assert owner(f"{COOKIE}={token}") == owner_id("session", "tab")  # the name a sibling could have tossed
    assert owner(f"{HOST_COOKIE}={token}; {HOST_COOKIE}={other}") == owner_id("session", "tab")
    assert owner(f"{COOKIE}={token}; {COOKIE}={token}", "http://app/") == owner_id("session", "tab")
    assert owner(f"{COOKIE}={token}", "http://app/") == owner_id("browser", token)
    kept = owner_cookie_client("https://app.example").get("/", headers={"cookie": f"{HOST_COOKIE}={token}"})
    assert kept.headers.get("set-cookie") is None


def test_through_the_app_one_cookie_is_one_owner_and_another_sees_nothing(tmp_path):
    """Two requests with a browser's cookie (two tabs: two sessions) list the same jobs; another cookie,
    a malformed one or none lists none of them. The page's first response sets the cookie, HttpOnly."""
    from stylenet.jobs import JobStore

    folders = app_folders(tmp_path)
    token = "0123456789abcdef" * 2
    store = JobStore(folders["models"], folders["photos"])
    job = store.queue_job("mine", ["instance"], "quick", {"steps": 3, "image_size": 64, "width": 8},
                          smooth_image(0, (64, 64)), None, owner_id("browser", token), None)
    store.cancel(job.id)  # nothing for the app's runner to train
    with running_app(**folders, log=tmp_path / "app.log") as url:
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        minted = page.cookies[COOKIE]

        def listed(session: str, cookie: str | None = None) -> list[str]:
            response = httpx.post(f"{url}gradio_api/run/jobs", json={"data": [], "session_hash": session},
                                  headers={"cookie": f"{COOKIE}={cookie}"} if cookie else {}, timeout=30)
            return [j["id"] for j in response.json()["data"][0]]

        assert listed("tab-a", token) == listed("tab-b", token) == [job.id]
        assert listed("tab-a", minted) == listed("tab-a") == listed("tab-a", token.upper()) == []


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


def test_capping_a_folder_removes_its_oldest_files_beyond_a_count_and_bytes(tmp_path, monkeypatch):
    """Oldest by change time: Gradio's ``shutil.copy2`` gives a new copy its source's old modification time."""
    from stylenet.app import uploads
    from stylenet.app.uploads import cap_files

    monkeypatch.setattr(uploads, "CACHE_GRACE_S", 0.0)
    for i, size in enumerate((100, 100, 100, 500, 100)):  # one file a folder, as Gradio's cache keeps uploads
        (tmp_path / f"u{i}").mkdir()
        (tmp_path / f"u{i}" / "photo.png").write_bytes(b"x" * size)
        os.utime(tmp_path / f"u{i}" / "photo.png", (2000 - i, 2000 - i))  # the newest copy of the oldest photo
        time.sleep(0.02)  # past the clock's tick: each file its own change time

    def left():
        return sorted(p.parent.name for p in tmp_path.rglob("*.png"))

    cap_files(tmp_path, max_bytes=10_000, max_files=4)
    assert left() == ["u1", "u2", "u3", "u4"] and not (tmp_path / "u0").exists()  # its emptied folder too
    cap_files(tmp_path, max_bytes=650, max_files=4)
    assert left() == ["u3", "u4"]
    cap_files(tmp_path, max_bytes=650, max_files=4)  # within both: nothing more goes
    assert left() == ["u3", "u4"]


def test_capping_spares_the_page_s_own_pictures_and_files_a_request_may_still_use(tmp_path, monkeypatch):
    """A component's starting value (Compare's example photo, a painting, gr.Examples) is copied into the
    cache once, when the page is built: removing it breaks the page for every new visitor. A file younger
    than ``CACHE_GRACE_S`` may be an upload a request is still reading."""
    from PIL import Image

    from stylenet.app import uploads

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    Image.new("RGB", (8, 8)).save(tmp_path / "example.png")
    with gr.Blocks() as demo:
        gr.Image(value=str(tmp_path / "example.png"))
    kept = uploads.kept_files(demo)
    (example,) = kept
    time.sleep(0.02)
    for i in range(3):
        (cache / f"u{i}").mkdir()
        (cache / f"u{i}" / "photo.png").write_bytes(b"x" * 100)
        time.sleep(0.02)
    files = sorted(str(p) for p in cache.rglob("*.png"))
    uploads.cap_files(cache, max_bytes=10_000, max_files=2, kept=kept)
    assert sorted(str(p) for p in cache.rglob("*.png")) == files  # all young: none goes
    monkeypatch.setattr(uploads, "CACHE_GRACE_S", 0.0)
    uploads.cap_files(cache, max_bytes=10_000, max_files=2, kept=kept)
    assert Path(example).is_file() and [p.parent.name for p in cache.glob("u*/*.png")] == ["u2"]


def test_the_cache_cap_outlives_a_pass_that_fails(tmp_path, monkeypatch, capsys):
    """One failed pass (a permission, a file system error) is logged, and the cap goes on."""
    import tempfile

    from stylenet.app import uploads

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    passes = []

    def cap_files(*args) -> None:
        passes.append(args)
        if len(passes) == 1:
            raise PermissionError("denied")

    monkeypatch.setattr(uploads, "cap_files", cap_files)
    folder = uploads.gradio_cache(max_bytes=250, max_files=10, every_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while len(passes) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(passes) >= 3
    finally:
        shutil.rmtree(folder)
    assert capsys.readouterr().err.count("capping Gradio's cache failed") == 1


def test_gradio_s_cache_is_the_app_s_own_and_capped_at_start_and_while_running(tmp_path, monkeypatch):
    import tempfile

    from stylenet.app import uploads
    from stylenet.app.uploads import CACHE_PREFIX, gradio_cache

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(uploads, "CACHE_GRACE_S", 0.0)
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # restored when the test ends
    killed = tmp_path / f"{CACHE_PREFIX}999999999-abc"  # a killed app's cache: no such process
    (killed / "upload").mkdir(parents=True)
    (killed / "upload" / "photo.png").write_bytes(b"x" * 100)
    folder = gradio_cache(max_bytes=250, max_files=10, every_s=0.05)
    assert not killed.exists() and os.environ["GRADIO_TEMP_DIR"] == str(folder)
    assert gr.Image().GRADIO_CACHE == str(folder)  # where Gradio now keeps uploads
    try:
        for i in range(4):
            (folder / f"{i}.png").write_bytes(b"x" * 100)
            os.utime(folder / f"{i}.png", (1000 + i, 1000 + i))
        deadline = time.monotonic() + 10
        while len(list(folder.iterdir())) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p.name for p in folder.iterdir()) == ["2.png", "3.png"]
    finally:
        shutil.rmtree(folder)  # which also ends its capping thread
