"""Training jobs: train a style in the background, one job at a time, from the app, a script or a test.

A job trains one model per chosen norm on the same batches (the library trainer, ``train.py``) in a
separate worker process, so a web server that submits it never blocks. Everything about a job lives
in its folder under the models folder, so a reloaded page, a second browser or a restarted app sees
the same thing:

    job.json        the request and its state (queued, running, done, failed, cancelled, interrupted)
    NAME.png        the painting, re-encoded after the safe-image checks (its stem names the style)
    preview_*.png   the photos the live previews are made of
    events.jsonl    what the worker reports, one JSON object a line: steps (losses per norm,
                    images/s, ETA), previews, the end
    cancel          a flag file: the worker checks it every step, stops and keeps its checkpoint
    worker.lock     locked (flock) by the worker for its whole life: a running job whose lock is free
                    has no worker, whatever process now has the pid job.json records
    worker.log      the worker's own output
    NORM.safetensors (+ .train.safetensors, .csv)   the models, in the library's checkpoint format

The folder holding the jobs also has ``jobs.lock``: every read-modify-write of a job.json holds it
(``JobStore.locked``), whichever process makes it, and ``runner.lock``, held by the one runner that
launches jobs.

The worker runs at a lower priority and with one core fewer than it may use, so the server
stays responsive. A cancelled job, or one interrupted by a restart, keeps its last checkpoint and
can be resumed.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .checkpoint import check_style_name
from .data import list_images
from .files import replaced_atomically
from .images import ImageError, limit_size, open_image
from .norms import NORM_KINDS, norm_label
from .runtime import to_pil, to_tensor
from .train import PRESETS, Listener, Recipe, RunStart, StepEvent, train
from .vgg import CACHE_NAME, VGGWeightsMissing, cache_dir, find_h5

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PHOTO = REPO / "examples" / "skimage_chelsea.jpg"  # the fixed photo every job previews on
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "train"
JOB_FILE, EVENTS_FILE, CANCEL_FILE, LOG_FILE = "job.json", "events.jsonl", "cancel", "worker.log"
WORKER_LOCK, JOBS_LOCK = "worker.lock", "jobs.lock"
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
RESUMABLE = ("cancelled", "interrupted")
WORKER_NICE = 10
PAINTING_SIDE = 2048  # longest side kept of a painting: style Grams use its short side at <= 512 px
PREVIEW_SIDE = 256
PREVIEWS_PER_RUN = 12
STEP_EVENTS_PER_RUN = 400  # keeps events.jsonl (read on every refresh) small however long the run


class JobError(ValueError):
    """A request the job API refuses; ``str()`` is the one line shown to the user."""


def default_models_dir() -> Path:
    """User-trained models live in the user's cache folder (``$STYLENET_CACHE`` aware), never in the repo."""
    return cache_dir() / "user_models"


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity, where the OS says), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


def worker_threads() -> int:
    """Leave one core's worth of threads to the server."""
    return max(1, usable_cpus() - 1)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; each is refused with a message naming the limit."""

    painting_bytes: int = 15 * 1024 * 1024
    painting_pixels: int = 40_000_000
    steps: int = 20_000
    image_size: int = 512
    width: int = 64
    queue: int = 3  # jobs waiting behind the running one


def trainable_presets(limits: Limits) -> list[str]:
    """The trainer's presets a request may choose as they are (within ``limits``), in the trainer's order."""
    return [name for name, preset in PRESETS.items()
            if preset["steps"] <= limits.steps and preset["image_size"] <= limits.image_size
            and preset["width"] <= limits.width]


@dataclass
class Job:
    """One request: a painting, the norms to train on it, the settings, and where it stands."""

    id: str
    name: str
    norms: list[str]
    preset: str
    settings: dict[str, int]  # steps, image_size, width: the preset's, or the user's within Limits
    photos: str
    state: str = "queued"
    message: str = ""
    created: float = 0.0
    queued_at: float = 0.0
    pid: int | None = None
    previews: list[str] = field(default_factory=list)  # photo file names in the job folder
    folder: Path = field(default=Path(), repr=False, compare=False)

    @classmethod
    def load(cls, folder: Path) -> Job:
        return cls(**json.loads((Path(folder) / JOB_FILE).read_text()), folder=Path(folder))

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "folder"}
        write_atomic(self.folder / JOB_FILE, json.dumps(data, indent=1))

    @property
    def painting(self) -> Path:
        return self.folder / f"{self.name}.png"

    def model_path(self, norm: str) -> Path:
        return self.folder / f"{norm}.safetensors"

    @property
    def resumable(self) -> bool:
        return self.state in RESUMABLE

    def summary(self) -> str:
        norms = " + ".join(norm_label(n) for n in self.norms)
        return f"{self.name} ({norms}, {self.settings['steps']} steps) — {self.state}"


@dataclass(frozen=True)
class UserStyle:
    """A finished job's models, as the app needs them to offer the style."""

    name: str
    painting: Path
    files: dict[str, Path]
    job_id: str


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename it, so readers never see half a file."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)


def append_event(folder: Path, event: dict[str, Any]) -> None:
    with open(Path(folder) / EVENTS_FILE, "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")


def read_events(folder: Path) -> list[dict[str, Any]]:
    """The worker's events so far; a line still being written is skipped until it is whole."""
    path = Path(folder) / EVENTS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def worker_alive(folder: Path) -> bool:
    """Whether a worker holds the job's ``worker.lock`` (it does from before it starts until it exits).

    A pid alone cannot say: after a restart the pid in job.json may belong to any process, even one
    of the app's own threads.
    """
    try:
        handle = open(Path(folder) / WORKER_LOCK, "rb")  # noqa: SIM115 - closed below, which drops the lock
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def queued_in_order(jobs: list[Job]) -> list[Job]:
    """The waiting ones of ``jobs`` in the order they will run (first in, first out)."""
    return sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.queued_at, j.id))


def queue_positions(jobs: list[Job]) -> dict[str, int]:
    """Job id -> place in the queue (1 = runs next) of the waiting ones of ``jobs``: one pass, no reading."""
    return {job.id: i for i, job in enumerate(queued_in_order(jobs), 1)}


class JobStore:
    """The job API: submit, list, follow, cancel, resume and delete jobs in one models folder.

    Methods are safe to call from several threads (the web server's); the state a worker writes
    goes through files, so other processes (a second app, a script) see the same jobs.
    """

    def __init__(self, root: Path | None = None, photos: Path | None = None, limits: Limits = Limits(),
                 reserved: tuple[str, ...] = ()) -> None:
        self.root = Path(root or default_models_dir()).resolve()
        if (REPO / ".git").exists() and self.root.is_relative_to(REPO):
            raise JobError(f"models folder {self.root} is inside the repository; choose one outside it")
        self.root.mkdir(parents=True, exist_ok=True)
        self.photos = Path(photos or DEFAULT_PHOTOS)
        self.limits = limits
        self.reserved = set(reserved)  # shipped style names a user style may not take
        self.lock = threading.RLock()  # this process's threads; jobs.lock (see locked) other processes
        self.lock_depth, self.lock_handle = 0, None

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
        """Every job, oldest first (a folder whose job.json is unreadable is skipped)."""
        found = []
        for file in self.root.glob(f"*/{JOB_FILE}"):
            try:
                found.append(Job.load(file.parent))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(found, key=lambda j: (j.created, j.id))

    def get(self, job_id: str) -> Job:
        folder = self.root / str(job_id)
        if not job_id or folder.parent != self.root or not (folder / JOB_FILE).is_file():
            raise JobError(f"no job {job_id!r}")
        return Job.load(folder)

    def queued(self) -> list[Job]:
        """Waiting jobs in the order they will run (first in, first out)."""
        return queued_in_order(self.jobs())

    def position(self, job: Job) -> int | None:
        """1 = runs next; None when the job is not waiting (reads every job: for many, see queue_positions)."""
        return queue_positions(self.jobs()).get(job.id)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return read_events(self.get(job_id).folder)

    def user_styles(self, jobs: list[Job] | None = None) -> list[UserStyle]:
        """The models of every finished job, oldest first (of ``jobs`` when given, else read now)."""
        styles = []
        for job in self.jobs() if jobs is None else jobs:
            files = {n: job.model_path(n) for n in job.norms if job.model_path(n).is_file()}
            if job.state == "done" and files:
                styles.append(UserStyle(job.name, job.painting, files, job.id))
        return styles

    # -- requests ---------------------------------------------------------------------------
    def submit(self, painting: str | Path, name: str, norms: list[str], preset: str = "quick",
               overrides: dict[str, int] | None = None, preview_photo: str | Path | None = None) -> Job:
        """Queue a job after checking everything that can be checked now; JobError says what is wrong."""
        name = (name or "").strip() or Path(painting or "").stem
        try:
            check_style_name(name)
        except ValueError as exc:
            raise JobError(f"name: {exc}") from None
        bad = [n for n in norms if n not in NORM_KINDS]
        if not norms or bad:
            raise JobError(f"choose at least one norm of {', '.join(NORM_KINDS)}" + (f" (not {bad[0]!r})" if bad else ""))
        if preset not in PRESETS:
            raise JobError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        settings = self.settings(preset, overrides or {})
        img = self.open_painting(painting)
        problem = check_photos(self.photos) or check_vgg()
        if problem:
            raise JobError(problem)
        with self.locked():
            if name in self.reserved or name in {j.name for j in self.jobs()}:
                raise JobError(f"a style named {name!r} already exists; choose another name")
            self.check_queue_room()
            now = time.time()
            job_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(3)
            job = Job(job_id, name, [n for n in NORM_KINDS if n in norms], preset, settings, str(self.photos),
                      created=now, queued_at=now, folder=self.root / job_id)
            job.folder.mkdir()
            img.save(job.painting)
            job.previews = save_previews(job.folder, preview_photo)
            job.save()
        return job

    def settings(self, preset: str, overrides: dict[str, int]) -> dict[str, int]:
        """The preset's steps, image size and width, with the user's values within the limits."""
        base = {k: int(PRESETS[preset][k]) for k in ("steps", "image_size", "width")}
        chosen = base | {k: int(v) for k, v in overrides.items() if v}
        ranges = {"steps": (1, self.limits.steps), "image_size": (32, self.limits.image_size),
                  "width": (4, self.limits.width)}
        for key, (lo, hi) in ranges.items():
            if not lo <= chosen[key] <= hi:
                raise JobError(f"{key.replace('_', ' ')} must be {lo} to {hi} (got {chosen[key]})")
        return chosen

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

    def check_queue_room(self) -> None:
        if len(self.queued()) >= self.limits.queue:
            raise JobError(f"the queue is full ({self.limits.queue} waiting); try again when one has run")

    def cancel(self, job_id: str) -> Job:
        """A waiting job is cancelled at once; a running one is asked to stop (it keeps its checkpoint)."""
        with self.locked():
            job = self.get(job_id)
            if job.state == "queued":
                job.state, job.message = "cancelled", "cancelled before it started"
                job.save()
            elif job.state == "running":
                (job.folder / CANCEL_FILE).touch()
            else:
                raise JobError(f"job {job.name!r} is {job.state}; only a queued or running job can be cancelled")
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a cancelled or interrupted job again; it continues from its last checkpoint."""
        with self.locked():
            job = self.get(job_id)
            if not job.resumable:
                raise JobError(f"job {job.name!r} is {job.state}; only a cancelled or interrupted job can resume")
            self.check_queue_room()
            (job.folder / CANCEL_FILE).unlink(missing_ok=True)
            job.state, job.message, job.queued_at = "queued", "", time.time()
            job.save()
        return job

    def delete(self, job_id: str) -> Job:
        """Remove a job and its models (a running job must be cancelled first)."""
        with self.locked():
            job = self.get(job_id)
            if job.state == "running":
                raise JobError(f"job {job.name!r} is running; cancel it before deleting it")
            shutil.rmtree(job.folder)
        return job

    # -- used by the runner -----------------------------------------------------------------
    def finish(self, job: Job, state: str, message: str = "") -> None:
        """Record a job's end: its state, and an ``end`` event for whoever follows it."""
        with self.locked():
            current = Job.load(job.folder)
            current.state, current.message, current.pid = state, message, None
            current.save()
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
    for name, source in (("preview_example.png", EXAMPLE_PHOTO), ("preview_yours.png", user_photo)):
        if not source:
            continue
        try:
            img, _ = open_image(source)
        except ImageError:
            continue  # a preview is a bonus: a photo that does not open is simply not previewed
        limit_size(img, PREVIEW_SIDE).save(folder / name)
        names.append(name)
    return names


class Runner:
    """Runs queued jobs one at a time, each in a worker process, from a background thread.

    Only one runner per models folder launches jobs (an advisory lock file decides); a second app
    on the same folder shows and queues jobs, and the first one runs them.
    """

    def __init__(self, store: JobStore, poll: float = 1.0, on_change: Callable[[], None] | None = None) -> None:
        self.store, self.poll, self.on_change = store, poll, on_change
        self.process: subprocess.Popen | None = None
        self.lock_file = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> Runner:
        self.thread = threading.Thread(target=self.loop, name="stylenet-jobs", daemon=True)
        self.thread.start()
        return self

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick (a folder deleted meanwhile, a failed start) must not stop the queue
                print("stylenet.jobs: a runner tick failed; the runner goes on", file=sys.stderr, flush=True)
                traceback.print_exc()
            self.stopping.wait(self.poll)

    def holds_lock(self) -> bool:
        if self.lock_file is None:
            handle = open(self.store.root / "runner.lock", "a")  # noqa: SIM115 - held open: the lock is the handle
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self.lock_file = handle
        return True

    def tick(self) -> None:
        """Reap a finished worker, mark running jobs without a worker interrupted, start the next queued job."""
        if not self.holds_lock():
            return
        changed = False
        with self.store.locked():
            if self.process and self.process.poll() is not None:
                self.process = None  # reaped: its job has ended, so the user styles may have changed
                changed = True
            for job in self.store.jobs():
                if job.state == "running" and not worker_alive(job.folder):
                    self.store.finish(job, "interrupted", "the worker stopped unexpectedly; resume continues "
                                                          "from the last checkpoint")
                    changed = True
            jobs = self.store.jobs()
            queued = queued_in_order(jobs)
            if not any(j.state == "running" for j in jobs) and queued and not self.stopping.is_set():
                changed = self.launch(queued[0]) or changed
        if changed and self.on_change:
            self.on_change()

    def launch(self, job: Job) -> bool:
        """Start a worker on a queued job (the caller holds the store); False when the job's previous
        worker still holds its lock (it is exiting: the next tick tries again).

        worker.lock is locked here and handed to the worker as an open file, so it is held from before
        the worker starts until it exits. job.json says "running" before the worker starts, and what the
        worker records waits for the store lock the caller holds, so neither overwrites the other.
        """
        handle = open(job.folder / WORKER_LOCK, "a")  # noqa: SIM115 - closed below; the worker keeps its copy
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            job.state, job.pid, job.message = "running", None, ""
            job.save()
            threads = str(worker_threads())
            env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            try:
                with open(job.folder / LOG_FILE, "a") as log:
                    self.process = subprocess.Popen(
                        [sys.executable, "-m", "stylenet.jobs", "worker", str(job.folder)], stdout=log,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, pass_fds=(handle.fileno(),))
            except OSError as exc:
                self.store.finish(job, "failed", f"could not start the worker: {exc}")
                return True
            job.pid = self.process.pid  # for people and tools: whether it lives is the lock's to say
            job.save()
            return True
        finally:
            handle.close()

    def wait(self, job_id: str, timeout: float = 600,
             report: Callable[[dict[str, Any]], None] | None = None) -> Job:
        """Run the queue until ``job_id`` has ended (for scripts and tests without the thread);
        ``report`` gets each of the job's events as it arrives."""
        deadline, reported = time.time() + timeout, 0
        while time.time() < deadline:
            self.tick()
            job = self.store.get(job_id)
            if report:
                events = read_events(job.folder)
                for event in events[reported:]:
                    report(event)
                reported = len(events)
            if job.state not in ("queued", "running"):
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still {self.store.get(job_id).state} after {timeout} s")


# -- the worker process ------------------------------------------------------------------------
class StopCheck:
    """Why the worker should stop, checked every step: the cancel flag (cancelled), SIGTERM/SIGINT
    or the app that started it going away (interrupted). Either way the trainer checkpoints first."""

    def __init__(self, folder: Path) -> None:
        self.flag = Path(folder) / CANCEL_FILE
        self.parent = os.getppid()
        self.signalled = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = True

    @property
    def reason(self) -> str | None:
        if self.flag.exists():
            return "cancelled"
        if self.signalled or os.getppid() != self.parent:
            return "interrupted"
        return None

    def __call__(self) -> bool:
        return self.reason is not None


def run_worker(folder: Path) -> int:
    """The worker process: train the job's norms with the library trainer, report events, record the end.

    It holds the job's worker.lock until it exits, with no code of its own for that: the runner locked
    the file and passed it on open (``pass_fds``), and the lock lasts while any process has it open.
    """
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    torch.set_num_threads(worker_threads())
    folder = Path(folder)
    job = Job.load(folder)
    store = JobStore(folder.parent, Path(job.photos))
    stop = StopCheck(folder)
    try:
        last_step = train_job(job, stop)
    except Exception as exc:  # noqa: BLE001 - any failure becomes one line for the user; the log keeps the rest
        traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        store.finish(job, "failed", message)
        return 1
    reason = stop.reason if last_step < job.settings["steps"] else None
    if reason == "cancelled":
        store.finish(job, "cancelled", f"cancelled at step {last_step}; the checkpoint is kept, resume continues")
    elif reason == "interrupted":
        store.finish(job, "interrupted", f"interrupted at step {last_step}; resume continues from the checkpoint")
    else:
        store.finish(job, "done", f"finished {last_step} steps")
    return 0


def train_job(job: Job, stop: StopCheck) -> int:
    """Train every norm of the job on the same batches with the library trainer; returns the last step.

    Always ``resume=True``: a fresh job has no training state and starts at step 0; a resumed one
    continues from the states its cancel or interruption left.
    """
    steps = job.settings["steps"]
    recipe = Recipe(style=str(job.painting), content=job.photos,
                    **{**PRESETS[job.preset], **job.settings, "checkpoint_every": max(1, min(100, steps // 10))})
    written = train(recipe, job.norms, job.folder / "{norm}.safetensors", resume=True,
                    listener=JobListener(job, stop))
    return min(meta["steps"] for meta in written.values())


class JobListener(Listener):
    """Turns the trainer's progress into events.jsonl lines and preview images; stops on ``stop``."""

    def __init__(self, job: Job, stop: StopCheck) -> None:
        self.job, self.stop = job, stop
        steps = job.settings["steps"]
        self.event_every = max(1, steps // STEP_EVENTS_PER_RUN)
        self.preview_every = max(1, steps // PREVIEWS_PER_RUN)
        self.photos = {Path(name).stem: to_tensor(open_image(job.folder / name)[0]).unsqueeze(0)
                       for name in job.previews}

    def on_scan(self, done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            append_event(self.job.folder, {"event": "scan", "done": done, "total": total})

    def on_start(self, start: RunStart) -> None:
        append_event(self.job.folder, {"event": "start", "start": start.start, "steps": start.steps,
                                       "photos": start.photos, "skipped": len(start.skipped),
                                       "eta_s": round(start.eta_seconds, 1), "nice": os.nice(0),
                                       "threads": torch.get_num_threads()})

    def on_step(self, event: StepEvent) -> None:
        last = event.step == event.steps
        if last or event.step % self.event_every == 0:
            append_event(self.job.folder, {"event": "step", "step": event.step, "steps": event.steps,
                                           "losses": event.losses, "images_per_s": round(event.images_per_s, 3),
                                           "eta_s": round(event.eta_seconds, 1),
                                           "elapsed_s": round(event.elapsed_seconds, 1)})
        if last or event.step % self.preview_every == 0:
            self.preview(event.step, event.models)

    def preview(self, step: int, models: dict[str, Any]) -> None:
        """Each model, in eval mode (BN on its running statistics, as it will be used), on each photo."""
        folder = self.job.folder / "previews"
        folder.mkdir(exist_ok=True)
        images: dict[str, list[str]] = {}
        for norm, model in models.items():
            device = next(model.parameters()).device
            model.eval()
            try:
                with torch.no_grad():
                    for stem, photo in self.photos.items():
                        name = f"previews/{norm}_{stem}.png"
                        with replaced_atomically(self.job.folder / name) as tmp:
                            to_pil(model(photo.to(device))).save(tmp, format="PNG")
                        images.setdefault(norm, []).append(name)
            finally:
                model.train()
        append_event(self.job.folder, {"event": "preview", "step": step, "images": images})

    def should_stop(self) -> bool:
        return self.stop()


def describe(event: dict[str, Any]) -> str | None:
    """A progress line for the command line (None for events not worth a line)."""
    kind = event["event"]
    if kind == "start":
        return f"training from step {event['start']} on {event['photos']} photos, about {event['eta_s'] / 60:.0f} min"
    if kind == "step" and (event["step"] % max(1, event["steps"] // 20) == 0 or event["step"] == event["steps"]):
        losses = ", ".join(f"{norm_label(n)} style {v['style']:.3f}" for n, v in event["losses"].items())
        return f"step {event['step']}/{event['steps']}: {losses}; {event['images_per_s']:.1f} img/s"
    if kind == "end":
        return f"{event['state']}: {event['message']}"
    return None


def print_event(event: dict[str, Any]) -> None:
    line = describe(event)
    if line:
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The job API from a terminal; ``train`` and ``resume`` run the queue until their job ends
    (or, when an app serves the same models folder, wait while the app runs it)."""
    parser = argparse.ArgumentParser(prog="python -m stylenet.jobs", description="stylenet training jobs")
    parser.add_argument("--models-dir", type=Path, default=None, help="default: in the user's cache folder")
    parser.add_argument("--train-photos", type=Path, default=DEFAULT_PHOTOS)
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd = sub.add_parser("train", help="queue a job and run it")
    train_cmd.add_argument("painting", type=Path)
    train_cmd.add_argument("--name", default="", help="the style's name (default: the painting's file name)")
    train_cmd.add_argument("--norm", nargs="+", default=["batch", "instance"], choices=NORM_KINDS)
    train_cmd.add_argument("--preset", default="quick", choices=trainable_presets(Limits()),
                           help="the trainer's presets within the job limits")
    for flag in ("--steps", "--image-size", "--width"):
        train_cmd.add_argument(flag, type=int, default=0, help="override the preset's value")
    sub.add_parser("list", help="every job and its state")
    for command in ("cancel", "resume", "delete"):
        sub.add_parser(command).add_argument("job")
    sub.add_parser("worker", help="(internal) run one job folder").add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker(args.folder)
    job = None
    try:
        store = JobStore(args.models_dir, args.train_photos)
        if args.command == "list":
            for job in store.jobs():
                print(f"{job.id}  {job.summary()}" + (f": {job.message}" if job.message else ""))
            return 0
        if args.command in ("cancel", "delete"):
            job = getattr(store, args.command)(args.job)
            print(f"{args.command}: {job.summary()}")
            return 0
        if args.command == "resume":
            job = store.resume(args.job)
        else:
            job = store.submit(args.painting, args.name, args.norm, args.preset,
                               {"steps": args.steps, "image_size": args.image_size, "width": args.width})
        print(f"job {job.id} in {job.folder}")
        job = Runner(store).wait(job.id, timeout=float("inf"), report=print_event)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the worker got the Ctrl-C too: it checkpoints and marks itself interrupted
        print(f"interrupted: continue with `python -m stylenet.jobs resume {job.id}`" if job else
              "interrupted before the job was queued", file=sys.stderr)
        return 130
    return 0 if job.state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
