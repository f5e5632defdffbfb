"""A training job on disk: its request and state (``job.json``), its events, and the queue order.

Everything about a job lives in its folder under the models folder (see ``stylenet.jobs``), so
every process (the app, the worker, the command line) reads the same thing from files.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..files import replaced_atomically
from ..images import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS
from ..norms import norm_label
from .estimate import MEMORY_MARGIN

JOB_FILE, EVENTS_FILE, CANCEL_FILE, LOG_FILE = "job.json", "events.jsonl", "cancel", "worker.log"
WORKER_LOCK, JOBS_LOCK, RUNNER_LOCK = "worker.lock", "jobs.lock", "runner.lock"
JOB_MEMORY_ENV = "STYLENET_JOB_MEMORY"  # the default of --job-memory, in GiB, for the app and `stylenet jobs`
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
RESUMABLE = ("cancelled", "interrupted")


class JobError(ValueError):
    """A request the job API refuses; ``str()`` is the one line shown to the user."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; each is refused with a message naming the limit."""

    painting_bytes: int = MAX_UPLOAD_BYTES
    painting_pixels: int = MAX_UPLOAD_PIXELS
    steps: int = 20_000
    image_size: int = 512
    width: int = 64
    memory: int = 4 * 2**30  # the worker's predicted peak plus its margin (store.job_bytes), in bytes
    queue: int = 3  # jobs one owner may have waiting behind the running one,
    queue_all: int = 20  # and everyone's together (each holds its painting and photos on disk)
    photos: int = 2000  # the user's own training photos: how many,
    photos_bytes: int = 512 * 2**20  # how many bytes in all (a zip's once unpacked),
    photo_pixels: int = 12_000_000  # how many pixels one may have (read from its header),
    photos_pixels: int = 1_000_000_000  # how many all of them decode to (at the reduced scale JPEGs decode to),
    zip_entries: int = 5000  # and how many files one zip may hold


def memory_budget(text: str) -> int:
    """``--job-memory``'s value, a number of GiB, in bytes. Only a positive finite number is one: nan and
    inf would crash at ``int()``, and 0 or less would refuse every job without saying why. Raised as
    argparse's type error, a bad value (the flag's or ``$STYLENET_JOB_MEMORY``'s) is a one-line usage error."""
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not math.isfinite(gib) or int(gib * 2**30) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of GiB (the flag's or ${JOB_MEMORY_ENV}'s)")
    return int(gib * 2**30)


def add_memory_argument(parser: argparse.ArgumentParser) -> None:
    """``--job-memory GiB``, for the app and ``stylenet jobs train`` alike. Its default is the environment's
    text, which argparse passes through ``memory_budget`` only when parsing: a bad value is then a usage
    error, and ``--help`` still works."""
    parser.add_argument("--job-memory", type=memory_budget, default=os.environ.get(JOB_MEMORY_ENV) or "4",
                        metavar="GiB", help="refuse a training job whose predicted peak memory, plus a safety margin "
                                            f"of {MEMORY_MARGIN * 100:g}%%, is over this many GiB (default: ${JOB_MEMORY_ENV} or 4)")


@dataclass(frozen=True)
class Retention:
    """How many finished jobs (done, failed, cancelled, interrupted) each owner keeps, how long any is
    kept and in how many bytes all of them: beyond the count an owner's oldest go, beyond the bytes
    the oldest of whoever holds the most, so no owner's jobs can push out another's. Applied at the
    app's start and then every so often while it runs (``JobStore.prune``). A queued or running job
    is never removed."""

    jobs: int = 50  # per owner
    days: float = 30.0
    bytes: int = 5 * 2**30


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
    owner: str = ""  # who may see and change it (the app's session id); "" = the operator's (command line)
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
    owner: str = ""


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename it, so readers never see half a file."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)


def append_event(folder: Path, event: dict[str, Any]) -> None:
    with open(Path(folder) / EVENTS_FILE, "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")

def read_events(folder: Path) -> list[dict[str, Any]]:
    """The worker's events so far. A line that is not a whole JSON object (one still being written,
    or one a crash cut short) is skipped: the events after it, the end included, still count."""
    path = Path(folder) / EVENTS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events

def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (0 when it is gone; files vanishing meanwhile are skipped)."""
    total = 0
    for path in Path(folder).rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total


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

