"""What comes in and goes out of the app: uploaded photos, results as files, the example photos.

Limits are the library's (``images.MAX_UPLOAD_BYTES``, ``MAX_UPLOAD_PIXELS``): the web form refuses a
bigger file, ``read_upload`` a picture of more pixels before decoding it. Every picture input (uploads,
pastes, webcam frames) is decoded by ``read_upload`` alone (``safe_preprocess``).
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Collection
from pathlib import Path

import gradio as gr
from PIL import Image

from .. import paths
from ..images import (
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    ImageError,
    limit_size,
    open_image,
)
from ..jobs.job import folder_bytes
from .errors import user_error

PREFIX = "stylenet-results-"
CACHE_PREFIX = "stylenet-gradio-"
EXAMPLE = "skimage_chelsea.jpg"  # the first-load example: a familiar photo, small enough to render at start
MIN_PHOTO_SIDE = 32  # below this the network's two halvings leave under 8x8 features: a few blotches of colour
CACHE_GRACE_S = 300.0  # the cache cap spares files younger than this: a request may still be reading or serving them


def read_upload(path: str | None, max_side: int, what: str = "photo") -> Image.Image:
    """The user's photo (or another picture: ``what`` names it in the messages), safely opened, capped at
    ``max_side``; gr.Error (shown in the UI) otherwise.

    The minimum side is checked after the downscaling: a 4000x40 photo at max side 64 would go through
    the network as 64x1."""
    if not path:
        raise user_error(f"No {what}: upload one first.")
    try:
        img, _ = open_image(path, max_pixels=MAX_UPLOAD_PIXELS)
    except ImageError as exc:
        raise user_error(str(exc).replace(str(path), Path(path).name)) from None
    small = limit_size(img, max_side)
    if min(small.size) < MIN_PHOTO_SIDE:
        scaled = f", {small.width}x{small.height} px at this resolution" if small.size != img.size else ""
        raise user_error(f"This {what} is {img.width}x{img.height} px{scaled}: too small to stylize (at least "
                         f"{MIN_PHOTO_SIDE} px on each side).")
    return small


def safe_preprocess(component: gr.Image) -> gr.Image:
    """Make ``component`` hand its handler a file path that Gradio has not decoded, for ``read_upload``.

    Gradio's own preprocessing calls ``PIL.Image.open`` with every plugin enabled and no pixel cap
    of ours. An uploaded file's path is passed on as it is; a picture sent inline (a data: URL: a
    paste from the clipboard, a webcam frame) is written, undecoded and within the upload byte limit,
    to a file in Gradio's cache, registered as the component's own temporary file so that the cache's
    retention (``delete_cache``: files over an hour old) removes it like any upload. Either way it is decoded once, in ``read_upload``,
    through the raster-format allowlist and behind the pixel-count guard.
    """
    def preprocess(payload):
        if payload is None:
            return None
        url = payload.url or ""
        if not url.startswith("data:"):
            return str(payload.path) if payload.path else None
        name = getattr(payload, "orig_name", None) or "upload"
        if len(url) > MAX_UPLOAD_BYTES * 4 // 3 + 1024:
            raise user_error(f"{name}: over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB upload limit")
        try:
            data = base64.b64decode(url.partition(",")[2], validate=True)
        except ValueError:
            raise user_error(f"{name}: not a readable image (bad data URL)") from None
        folder = Path(component.GRADIO_CACHE) / "inline"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.img"
        path.write_bytes(data)
        component.temp_files.add(str(path))
        return str(path)

    component.preprocess = preprocess
    return component


def photo_input(label: str, height: int, elem_id: str | None = None, value: str | None = None) -> gr.Image:
    """An image upload (or paste) whose file reaches ``read_upload`` undecoded (see ``safe_preprocess``);
    ``value``: a photo already in place (an example), so the tab works before anything is uploaded."""
    return safe_preprocess(gr.Image(value=value, type="filepath", image_mode=None, label=label,
                                    sources=["upload", "clipboard"], height=height, elem_id=elem_id))


class ResultFiles:
    """Results go to gradio as files in their owner's own area, never as PIL images, and are pruned.

    Each owner (a browser or API client, ``sessions``) has a folder of its own under ``root``; what
    a view returns, and any file of a job it shows (a preview, a painting), is written or copied
    there first, so nothing is ever served from the models folder. Gradio then copies the file into
    its cache as the request ends (and serves that copy).

    Why files: Gradio writes a returned PIL image in place, to ``cache/<hash of its bytes>/image.png``:
    two requests with the same result rewrite that file while the first one's client downloads it,
    and the download comes back truncated. A returned file is copied under a temporary name and renamed.

    Retention: only the newest ``keep`` request folders, at most ``max_bytes`` in all, none older than
    ``max_age_s``. ``root`` is private to this process (``mkdtemp``, its pid in the name) and removed
    when it exits; one left by a process that was killed is removed by the next start (``sweep_stale``).
    """

    def __init__(self, keep: int = 256, max_bytes: int = 1 << 30, max_age_s: float = 3600.0) -> None:
        sweep_stale(PREFIX)
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.keep, self.max_bytes, self.max_age_s = keep, max_bytes, max_age_s
        self.folders: deque[tuple[Path, float]] = deque()  # (folder, time made), oldest first
        self.lock = threading.Lock()

    def folder(self, owner: str) -> Path:
        """A new folder of the request's own in ``owner``'s area (the oldest beyond the limits go)."""
        area = self.root / owner
        area.mkdir(mode=0o700, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=area))
        with self.lock:
            self.folders.append((folder, time.time()))
        self.prune()
        return folder

    def prune(self) -> None:
        """Apply the retention limits: count, age, then bytes, oldest first (never the newest folder)."""
        with self.lock:
            now, sizes = time.time(), [folder_bytes(f) for f, _ in self.folders]
            total = sum(sizes)
            while len(self.folders) > 1 and (len(self.folders) > self.keep or total > self.max_bytes
                                              or now - self.folders[0][1] > self.max_age_s):
                old, _ = self.folders.popleft()
                total -= sizes.pop(0)
                shutil.rmtree(old, ignore_errors=True)

    def gallery(self, items: list[tuple[Image.Image, str]], owner: str | Path,
                names: list[str] | None = None) -> list[tuple[str, str]]:
        """(image, caption) pairs as (PNG path, caption) pairs, in a new folder of the owner's (or in
        ``owner`` when it is a folder, see ``kept``). ``names``: the files' names without ``.png``,
        what a download is called (default 0, 1, ...)."""
        folder = owner if isinstance(owner, Path) else self.folder(owner)
        saved = []
        for i, (img, caption) in enumerate(items):
            path = folder / f"{names[i] if names else i}.png"
            img.save(path)
            saved.append((str(path), caption))
        return saved

    def kept(self, name: str) -> Path:
        """A folder that retention never removes (it goes with the app): what every page starts from,
        such as the first-load example's renders."""
        folder = self.root / "kept" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def copies(self, items: list[tuple[Path, str]], owner: str) -> list[tuple[str, str]]:
        """(file, caption) pairs copied into a new folder of the owner's (a job's previews, a painting)."""
        folder = self.folder(owner)
        copied = []
        for i, (path, caption) in enumerate(items):
            target = folder / f"{i}{Path(path).suffix}"
            try:
                shutil.copyfile(path, target)
            except OSError:  # a job deleted meanwhile: one picture fewer, not an error
                continue
            copied.append((str(target), caption))
        return copied


def gradio_cache(max_bytes: int, max_files: int, every_s: float, kept: Collection[str] = frozenset()) -> Path:
    """Give Gradio a cache folder of this process's own, kept within ``max_bytes`` and ``max_files``.

    Gradio's ``delete_cache`` bounds its cache by age only, so anyone may fill it with uploads
    (15 MB each) for an hour. This folder (``GRADIO_TEMP_DIR``, read by Gradio whenever it makes a
    component or the server) is capped once at start and then every ``every_s`` seconds
    (``cap_files``) until it is gone (removed when the app exits; one left by a killed app goes at the
    next start). Call it before the Blocks are built; ``kept``: the files the cap never removes, a set
    the caller fills with ``kept_files`` once they are. A failed pass is logged and the next one runs
    as planned: an uncapped cache would fill the disk."""
    sweep_stale(CACHE_PREFIX)
    folder = Path(tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)

    def keep_capped() -> None:
        while folder.is_dir():
            try:
                cap_files(folder, max_bytes, max_files, kept)
            except Exception as exc:  # noqa: BLE001 - one bad pass must not end the cap: the cache would grow unbounded
                print(f"stylenet app: capping Gradio's cache failed, retrying in {every_s:g} s: {exc!r}",
                      file=sys.stderr, flush=True)
            time.sleep(every_s)

    threading.Thread(target=keep_capped, name="gradio-cache-cap", daemon=True).start()
    return folder


def kept_files(blocks: gr.Blocks) -> set[str]:
    """The files Gradio keeps in its cache for ``blocks`` (components' starting values, gr.Examples):
    the page's own pictures, which every new visitor loads. Gradio's own cleanup spares them, and so
    must the cap."""
    return {os.path.realpath(path) for block in blocks.blocks.values()
            for path in getattr(block, "keep_in_cache", ())}


def cap_files(folder: Path, max_bytes: int, max_files: int, kept: Collection[str] = frozenset()) -> None:
    """Remove the oldest files under ``folder`` until at most ``max_files`` remain, holding at most
    ``max_bytes`` together; a folder a removal empties goes too. Never the files in ``kept`` (real
    paths) nor any younger than ``CACHE_GRACE_S``, which may leave the folder over the caps.

    Oldest by change time, as Gradio's own cleanup: Gradio copies a file in with ``shutil.copy2``,
    which keeps the source's modification time, and touches a cached file when it hands it out again."""
    folder, files = folder.resolve(), []
    for path in folder.rglob("*"):
        try:
            st = path.lstat()
        except OSError:  # removed meanwhile (Gradio's own retention)
            continue
        if stat.S_ISREG(st.st_mode):
            files.append((st.st_ctime, str(path), st.st_size))
    files.sort()
    count, total = len(files), sum(size for _, _, size in files)
    young = time.time() - CACHE_GRACE_S
    for ctime, name, size in files:
        if count <= max_files and total <= max_bytes:
            break
        if name in kept or ctime > young:
            continue
        path = Path(name)
        path.unlink(missing_ok=True)
        count, total = count - 1, total - size
        if path.parent != folder:
            with contextlib.suppress(OSError):  # not empty: other files of the same upload
                path.parent.rmdir()


def sweep_stale(prefix: str) -> None:
    """Remove the temporary folders (``PREFIX<pid>-*``) of app processes that no longer run: the
    ``atexit`` cleanup does not run when a process is killed."""
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = folder.name[len(prefix):].partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to clean up after
        return True
    return True


def example_photo() -> str | None:
    """The photo a first visit finds in place (``EXAMPLE``), so a tab works before any upload; None
    where the examples are missing."""
    photo = paths.examples_dir() / EXAMPLE
    return str(photo) if photo.is_file() else None


def example_photos(count: int) -> list[Path]:
    """The first ``count`` example photos (the scikit-image ones first: small and familiar)."""
    folder = paths.examples_dir()
    return sorted(folder.glob("skimage_*.jpg"))[:count] or sorted(folder.glob("*.jpg"))[:count]
