"""The job API: submit, list, follow, cancel, resume and delete training jobs in one models folder.

The folder holding the jobs has ``jobs.lock``: every read-modify-write of a job.json holds it
(``JobStore.locked``), whichever process makes it.
"""
from __future__ import annotations

import copy
import fcntl
import math
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from .. import paths
from ..checkpoint import check_style_name
from ..data import list_images
from ..images import ImageError, limit_size, open_image
from ..norms import NORM_KINDS
from ..train import PRESETS, Recipe, state_path
from ..vgg import CACHE_NAME, VGGWeightsMissing, cache_dir, find_h5
from . import estimate
from .job import (
    CANCEL_FILE,
    JOB_FILE,
    JOBS_LOCK,
    Job,
    JobError,
    Limits,
    Retention,
    UserStyle,
    append_event,
    folder_bytes,
    queue_positions,
    queued_in_order,
    read_events,
)
from .photos import import_photos

PAINTING_SIDE = 2048  # longest side kept of a painting: style Grams use its short side at <= 512 px
PREVIEW_SIDE = 256
PREVIEW_PHOTO = "skimage_chelsea.jpg"  # the fixed example photo every job previews on
# The preview photos' file stems: they sit beside the painting (NAME.png), so no style may take them.
PREVIEW_STEMS = ("preview_example", "preview_yours")
RESERVED_NAMES = frozenset(PREVIEW_STEMS)
JOB_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # what submit makes: time, then six hex digits


def trainable_presets(limits: Limits) -> list[str]:
    """The trainer's presets a request may choose as they are (within ``limits``), in the trainer's order.
    Memory counts for the BN + IN job the Train tab starts with (``estimate.NORMS``): a preset it offers
    is not then refused for the memory it needs."""
    return [name for name, preset in PRESETS.items()
            if preset["steps"] <= limits.steps and preset["image_size"] <= limits.image_size
            and preset["width"] <= limits.width
            and job_bytes(name, preset["image_size"], preset["width"], len(estimate.NORMS)) <= limits.memory]


def job_bytes(preset: str, crop: int, width: int, models: int) -> float:
    """The memory a job must find within the budget: its predicted peak (``estimate.peak_bytes``, at the
    preset's batch size) plus ``estimate.MEMORY_MARGIN``, since the model under-predicts some runs."""
    batch = int(PRESETS[preset].get("batch_size", Recipe.batch_size))
    return estimate.peak_bytes(crop, batch, width, models) * (1 + estimate.MEMORY_MARGIN)


class JobStore:
    """The job API: submit, list, follow, cancel, resume and delete jobs in one models folder.

    Methods are safe to call from several threads (the web server's); the state a worker writes
    goes through files, so other processes (a second app, a script) see the same jobs.
    """

    def __init__(self, root: Path | None = None, photos: Path | None = None, limits: Limits = Limits(),
                 reserved: tuple[str, ...] = (), retention: Retention = Retention()) -> None:
        self.root = Path(root or paths.user_models_dir()).resolve()
        if (paths.CHECKOUT / ".git").exists() and self.root.is_relative_to(paths.CHECKOUT):
            raise JobError(f"models folder {self.root} is inside the repository; choose one outside it")
        self.root.mkdir(parents=True, exist_ok=True)
        self.photos = Path(photos or paths.data_dir())
        self.limits, self.retention = limits, retention
        self.reserved = set(reserved)  # shipped style names a user style may not take
        self.lock = threading.RLock()  # this process's threads; jobs.lock (see locked) other processes
        self.lock_depth, self.lock_handle = 0, None
        self.read: dict[Path, tuple[tuple[int, int, int], Job]] = {}  # job.json -> (its stat, the job read)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store for a read-modify-write of job files: against this process's other threads
        and, through an flock on ``jobs.lock``, against other processes (the worker, the command line,
        a second app). Re-entrant within a thread."""
        with self.lock:
            if self.lock_depth == 0:
                handle = open(self.root / JOBS_LOCK, "a")  # noqa: SIM115 - closed when the outermost use ends
                fcntl.flock(handle, fcntl.LOCK_EX)
                self.lock_handle = handle
            self.lock_depth += 1
            try:
                yield
            finally:
                self.lock_depth -= 1
                if self.lock_depth == 0:
                    self.lock_handle.close()  # drops the flock
                    self.lock_handle = None

    @property
    def presets(self) -> list[str]:
        """The presets offered to users: the trainer's, less those over this store's limits."""
        return trainable_presets(self.limits)

    # -- reading ----------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Every job, oldest first (a folder whose job.json is unreadable is skipped).

        Every open page asks every few seconds, so a job.json is parsed again only when its stat
        changed (job.json is always replaced whole, by a rename: a new inode); callers get copies.
        """
        found, read = [], {}
        for file in self.root.glob(f"*/{JOB_FILE}"):
            try:
                st = file.stat()
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
                known = self.read.get(file)
                job = known[1] if known and known[0] == key else Job.load(file.parent)
            except (OSError, ValueError, TypeError):
                continue
            read[file] = (key, job)
            found.append(copy.deepcopy(job))
        self.read = read
        return sorted(found, key=lambda j: (j.created, j.id))

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job of an id that ``submit`` made; anything else (a path, "..") is no job. With ``owner``
        (the app's session), another owner's job is no job either: the same words, so an id says nothing."""
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id) or not (self.root / job_id / JOB_FILE).is_file():
            raise JobError(f"no job {job_id!r}")
        job = Job.load(self.root / job_id)
        if owner is not None and job.owner != owner:
            raise JobError(f"no job {job_id!r}")
        return job

    def queued(self) -> list[Job]:
        """Waiting jobs in the order they will run (first in, first out)."""
        return queued_in_order(self.jobs())

    def position(self, job: Job) -> int | None:
        """1 = runs next; None when the job is not waiting (reads every job: for many, see queue_positions)."""
        return queue_positions(self.jobs()).get(job.id)

    def events(self, job_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        return read_events(self.get(job_id, owner).folder)

    def user_styles(self, jobs: list[Job] | None = None) -> list[UserStyle]:
        """The models of every finished job, oldest first (of ``jobs`` when given, else read now)."""
        styles = []
        for job in self.jobs() if jobs is None else jobs:
            files = {n: job.model_path(n) for n in job.norms if job.model_path(n).is_file()}
            if job.state == "done" and files:
                styles.append(UserStyle(job.name, job.painting, files, job.id, job.owner))
        return styles

    # -- requests ---------------------------------------------------------------------------
    def submit(self, painting: str | Path, name: str, norms: list[str], preset: str = "quick",
               overrides: dict[str, int] | None = None, preview_photo: str | Path | None = None,
               owner: str = "", photos: list[str | Path] | None = None,
               stop: Callable[[], bool] = lambda: False) -> Job:
        """Queue a job after checking everything that can be checked now; JobError says what is wrong.
        ``owner``: who may see and change it (the app passes its session's id; "" is the operator).
        ``photos``: the user's own training photos (files, zips), else the store's folder; ``stop``: asked
        between two of them, True ends the request (its client has gone)."""
        img = self.open_painting(painting)  # first: an empty form is told what it lacks first
        name = (name or "").strip() or Path(painting).stem
        try:
            check_style_name(name)
        except ValueError as exc:
            raise JobError(f"name: {exc}") from None
        if name.casefold() in RESERVED_NAMES:
            raise JobError(f"name: {name!r} is the name of a file the job keeps; choose another name")
        bad = [n for n in norms if n not in NORM_KINDS]
        if not norms or bad:
            raise JobError(f"choose at least one norm of {', '.join(NORM_KINDS)}" + (f" (not {bad[0]!r})" if bad else ""))
        if preset not in PRESETS:
            raise JobError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        settings = self.settings(preset, overrides or {})
        self.check_memory(preset, settings, len(set(norms)))
        problem = (None if photos else check_photos(self.photos)) or check_vgg()
        if problem:
            raise JobError(problem)
        upload = self.root / f".photos-{secrets.token_hex(8)}"  # decoded before the lock: it can take a while
        try:
            if photos:
                import_photos(photos, upload, self.limits, stop)
            return self.queue_job(name, norms, preset, settings, img, preview_photo, owner, upload if photos else None)
        finally:
            shutil.rmtree(upload, ignore_errors=True)

    def queue_job(self, name: str, norms: list[str], preset: str, settings: dict[str, int], img: Image.Image,
                  preview_photo: str | Path | None, owner: str, photos: Path | None) -> Job:
        """The checked request, as a job in the queue (``photos``: the user's, moved into the job)."""
        with self.locked():
            # a name is unique among the owner's own styles (and the shipped ones): another owner's
            # names are neither refused nor revealed
            if name in self.reserved or any(j.name == name and j.owner == owner for j in self.jobs()):
                raise JobError(f"a style named {name!r} already exists; choose another name")
            self.check_queue_room(owner)
            now = time.time()
            job_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(3)
            folder = self.root / job_id
            job = Job(job_id, name, [n for n in NORM_KINDS if n in norms], preset, settings,
                      str(folder / "photos" if photos else self.photos), created=now, queued_at=now, owner=owner,
                      folder=folder)
            job.folder.mkdir()
            if photos:
                photos.rename(folder / "photos")
            img.save(job.painting)
            job.previews = save_previews(job.folder, preview_photo)
            job.save()
        return job

    def settings(self, preset: str, overrides: dict[str, int]) -> dict[str, int]:
        """The preset's steps, image size and width, with the user's values within the limits."""
        base: dict[str, float] = {k: int(PRESETS[preset][k]) for k in ("steps", "image_size", "width")}
        chosen = base | {k: v for k, v in overrides.items() if v is not None}  # None: an empty field
        ranges = {"steps": (1, self.limits.steps), "image_size": (32, self.limits.image_size),
                  "width": (4, self.limits.width)}
        for key, (lo, hi) in ranges.items():
            value = chosen[key]
            whole = isinstance(value, (int, float)) and math.isfinite(value) and value == int(value)
            if not whole or not lo <= value <= hi:
                raise JobError(f"{key.replace('_', ' ')} must be {lo} to {hi} (got {value})")
        return {key: int(chosen[key]) for key in ranges}

    def check_memory(self, preset: str, settings: dict[str, int], models: int) -> None:
        """Refuse a job whose memory (``job_bytes``: the predicted peak plus its margin) is over
        ``limits.memory``, naming what to lower (the crop size and width; a second norm adds a fifth or so,
        more norms little): the largest job the other limits allow needs about 12 GiB, enough to push the
        app (or the machine) out of memory."""
        crop, width, budget = settings["image_size"], settings["width"], self.limits.memory
        need = job_bytes(preset, crop, width, models)
        if need <= budget:
            return
        fits = [c for c in range(32, crop, 32) if job_bytes(preset, c, width, models) <= budget]
        raise JobError(f"this job needs about {need / 2**30:.1f} GiB of memory (with a "
                       f"{estimate.MEMORY_MARGIN:.0%} margin), over the {budget / 2**30:g} GiB this server allows "
                       f"one; lower the crop size{f' (to {fits[-1]} px)' if fits else ''} or the width")

    def open_painting(self, painting: str | Path | None) -> Image.Image:
        """The painting through the project's safe image rules, within the upload limits."""
        if not painting:
            raise JobError("upload a painting first")
        path = Path(painting)
        if path.is_file() and path.stat().st_size > self.limits.painting_bytes:
            raise JobError(f"{path.name}: {path.stat().st_size / 2**20:.1f} MB is over the "
                           f"{self.limits.painting_bytes / 2**20:.0f} MB limit for paintings")
        try:
            img, _ = open_image(path, max_pixels=self.limits.painting_pixels)
        except ImageError as exc:
            raise JobError(str(exc).replace(str(path), path.name)) from None
        return limit_size(img, PAINTING_SIDE)

    def check_queue_room(self, owner: str) -> None:
        """Refuse a job beyond ``owner``'s share of the queue, or beyond the queue's whole length."""
        queued = self.queued()
        if sum(j.owner == owner for j in queued) >= self.limits.queue:
            raise JobError(f"you have {self.limits.queue} jobs waiting, the most one user may; try again when "
                           "one has run")
        if len(queued) >= self.limits.queue_all:
            raise JobError(f"the queue is full ({len(queued)} waiting); try again when one has run")

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """A waiting job is cancelled at once; a running one is asked to stop (it keeps its checkpoint)."""
        with self.locked():
            job = self.get(job_id, owner)
            if job.state == "queued":
                job.state, job.message = "cancelled", "cancelled before it started"
                job.save()
            elif job.state == "running":
                (job.folder / CANCEL_FILE).touch()
            else:
                raise JobError(f"job {job.name!r} is {job.state}; only a queued or running job can be cancelled")
        return job

    def resume(self, job_id: str, owner: str | None = None) -> Job:
        """Queue a cancelled or interrupted job again; it continues from its last checkpoint."""
        with self.locked():
            job = self.get(job_id, owner)
            if not job.resumable:
                raise JobError(f"job {job.name!r} is {job.state}; only a cancelled or interrupted job can resume")
            self.check_queue_room(job.owner)
            (job.folder / CANCEL_FILE).unlink(missing_ok=True)
            job.state, job.message, job.queued_at = "queued", "", time.time()
            job.save()
        return job

    def delete(self, job_id: str, owner: str | None = None) -> Job:
        """Remove a job and its models (a running job must be cancelled first)."""
        with self.locked():
            job = self.get(job_id, owner)
            if job.state == "running":
                raise JobError(f"job {job.name!r} is running; cancel it before deleting it")
            shutil.rmtree(job.folder)
        return job

    def prune(self, now: float | None = None) -> list[Job]:
        """Apply the retention policy (``Retention``): remove finished jobs older than its age, an owner's
        oldest beyond its count, then, while all of them are over its bytes, the oldest of the owner
        holding the most; returns those removed, oldest first."""
        now, keep = time.time() if now is None else now, self.retention
        with self.locked():
            finished = [j for j in self.jobs() if j.state not in ("queued", "running")]  # oldest first
            left = [j for j in finished if now - j.created <= keep.days * 86400]
            for owner in {j.owner for j in left}:
                theirs = [j.id for j in left if j.owner == owner]
                beyond = set(theirs[:max(0, len(theirs) - keep.jobs)])
                left = [j for j in left if j.id not in beyond]
            sizes = {j.id: folder_bytes(j.folder) for j in left}
            while left and sum(sizes[j.id] for j in left) > keep.bytes:
                held = Counter()
                for job in left:
                    held[job.owner] += sizes[job.id]
                heaviest = held.most_common(1)[0][0]
                left.remove(next(j for j in left if j.owner == heaviest))
            kept = {j.id for j in left}
            removed = [j for j in finished if j.id not in kept]
            for job in removed:
                shutil.rmtree(job.folder, ignore_errors=True)
        return removed

    # -- used by the runner -----------------------------------------------------------------
    def finish(self, job: Job, state: str, message: str = "") -> None:
        """Record a job's end: its state, and an ``end`` event for whoever follows it. A finished job
        no longer needs its training states (optimizer and all: twice its models' size)."""
        with self.locked():
            current = Job.load(job.folder)
            current.state, current.message, current.pid = state, message, None
            current.save()
            if state == "done":
                for norm in current.norms:
                    state_path(current.model_path(norm)).unlink(missing_ok=True)
        append_event(job.folder, {"event": "end", "state": state, "message": message})


def check_photos(folder: Path) -> str | None:
    """Why ``folder`` cannot serve as training photos, or None. Unreadable files are found later
    (the worker decodes every photo and fails with a clear line if none is readable)."""
    if not Path(folder).is_dir():
        return f"training photos: folder {folder} does not exist (start the app with --train-photos DIR)"
    if not list_images(Path(folder)):
        return f"training photos: no jpg/png/webp photo in {folder} (start the app with --train-photos DIR)"
    return None


def check_vgg() -> str | None:
    """Why training cannot start on this machine (no VGG19 weights), or None: said at submit, not by a failed job."""
    if (cache_dir() / CACHE_NAME).is_file():
        return None
    try:
        find_h5()
    except VGGWeightsMissing as exc:
        return str(exc)
    return None


def save_previews(folder: Path, user_photo: str | Path | None) -> list[str]:
    """Copy the fixed example photo (and the user's, when given) into the job, small, as PNG."""
    names = []
    for stem, source in zip(PREVIEW_STEMS, (paths.examples_dir() / PREVIEW_PHOTO, user_photo)):
        name = f"{stem}.png"
        if not source:
            continue
        try:
            img, _ = open_image(source)
        except ImageError:
            continue  # a preview is a bonus: a photo that does not open is simply not previewed
        limit_size(img, PREVIEW_SIDE).save(folder / name)
        names.append(name)
    return names


