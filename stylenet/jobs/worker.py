"""The worker process: trains one job's norms with the library trainer and reports what it does.

    python -m stylenet.jobs.worker JOB_FOLDER     (started by the runner, not by people)

It runs at a lower priority and with one core fewer than it may use, so the server stays
responsive. A cancelled job, or one interrupted by a restart, keeps its last checkpoint.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from ..files import replaced_atomically
from ..images import open_image
from ..runtime import to_pil, to_tensor
from ..train import PRESETS, Listener, Recipe, RunStart, StepEvent, train
from .job import CANCEL_FILE, Job, append_event
from .runner import worker_threads
from .store import JobStore

WORKER_NICE = 10
PREVIEWS_PER_RUN = 12
STEP_EVENTS_PER_RUN = 400  # keeps events.jsonl (read on every refresh) small however long the run


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



if __name__ == "__main__":
    sys.exit(run_worker(Path(sys.argv[1])))
