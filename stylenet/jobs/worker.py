"""The worker process: trains one job's norms with the library trainer and reports what it does.

    python -m stylenet.jobs.worker JOB_FOLDER     (started by the runner, not by people)

It runs at a lower priority and with one core fewer than it may use, so the server stays
responsive. A cancelled job, or one interrupted by a restart, keeps its last checkpoint.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from ..checkpoint import read_metadata
from ..files import replaced_atomically
from ..images import open_image
from ..runtime import to_pil, to_tensor
from ..train import PRESETS, Listener, Recipe, RunStart, StepEvent, state_path, train
from .job import CANCEL_FILE, Job, append_event
from .runner import worker_threads
from .store import JobStore

WORKER_NICE = 10
PREVIEWS_PER_RUN = 12
STEP_EVENTS_PER_RUN = 400  # keeps events.jsonl (read on every refresh) small however long the run
STOP_GRACE_S = 3.0  # a stop asked for mid-step waits this long for the step (and its checkpoint) to end
CHECK_EVERY_S = 0.2  # how often the layer hook looks at the flag, the signals and the parent


class Stopped(Exception):
    """Raised inside the trainer to stop it between two layers: in the photo scan, the warm-up's
    trial steps, or a step that outlived ``STOP_GRACE_S``. Nothing is saved: the last checkpoint stays."""


class StopCheck:
    """Why the worker should stop: the cancel flag (cancelled), SIGTERM/SIGINT or the app that started
    it going away (interrupted).

    The trainer asks after every step and then checkpoints; but a scan of many photos, the warm-up's
    two trial steps or one step of a big job can take minutes. So the worker also asks while they run
    (``interrupt``: at every scanned photo, and before every layer of every network through a torch
    forward hook) and raises ``Stopped``: at once before the first step, after ``STOP_GRACE_S`` during
    one (a step that ends within it stops at its end, with a checkpoint of that step). Before the first
    step a ``watchdog`` thread also covers a single call too long for the hook to come round.

    A signal's Python handler runs only in the main thread, between two bytecodes: never while the
    main thread is inside one long C call (a torch op). So the signals are also written to a pipe the
    moment they arrive (``signal.set_wakeup_fd``: done by the C-level handler), which ``reason`` reads
    from any thread, the watchdog's included.
    """

    def __init__(self, folder: Path) -> None:
        self.flag = Path(folder) / CANCEL_FILE
        self.parent = os.getppid()
        self.signalled = False
        self.stepping = False  # a first step has ended: from then on a stop waits STOP_GRACE_S for its end
        self.asked: float | None = None  # when a stop was first seen during a step
        self.checked = 0.0
        self.ending = threading.Lock()  # held by whichever of the main thread and the watchdog records the stop
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        self.wakeup, write = os.pipe()
        os.set_blocking(self.wakeup, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watchdog(self, stopped: Callable[[str], None]) -> None:
        """Until the first step ends, a stop the trainer has not honoured within ``STOP_GRACE_S`` (the
        main thread is in one long call: a kernel being compiled, VGG loading) is recorded by
        ``stopped(reason)`` and ends the process. Safe then, and only then: nothing is being written."""
        while not self.stepping:
            reason = self.reason
            if reason is not None:
                self.asked = self.asked or time.monotonic()
                if time.monotonic() - self.asked > STOP_GRACE_S and self.ending.acquire(blocking=False):
                    stopped(reason)
                    os._exit(0)
            time.sleep(CHECK_EVERY_S)

    def interrupt(self, *_: Any) -> None:
        """Raise ``Stopped`` when a stop is due (see the class); cheap enough for every layer."""
        now = time.monotonic()
        if now - self.checked < CHECK_EVERY_S:
            return
        self.checked = now
        if self.reason is None:
            return
        self.asked = self.asked or now
        if not self.stepping or now - self.asked > STOP_GRACE_S:
            raise Stopped(self.reason)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def signal_arrived(self) -> bool:
        """Whether SIGTERM or SIGINT has come, even if its Python handler has not run yet."""
        try:
            arrived = os.read(self.wakeup, 64)
        except BlockingIOError:
            arrived = b""
        self.signalled = self.signalled or any(byte in (signal.SIGTERM, signal.SIGINT) for byte in arrived)
        return self.signalled

    @property
    def reason(self) -> str | None:
        if self.flag.exists():
            return "cancelled"
        if self.signal_arrived() or os.getppid() != self.parent:
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

    def stopped(reason: str) -> None:
        kept = checkpoint_step(job)
        store.finish(job, reason, f"{reason} before step {kept + 1} ended; the checkpoint of step {kept} is kept, "
                                  "resume continues from it" if kept else f"{reason} before its first step")

    threading.Thread(target=stop.watchdog, args=(stopped,), daemon=True).start()
    try:
        last_step = train_job(job, stop)
    except Stopped as exc:
        if stop.ending.acquire(blocking=False):  # else the watchdog is recording it and ends the process
            stopped(str(exc))
        return 0
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
    continues from the states its cancel or interruption left. ``Stopped`` when a stop came while
    the trainer was not between steps (``StopCheck.interrupt``).
    """
    recipe = job_recipe(job)
    hook = register_module_forward_pre_hook(stop.interrupt)
    try:
        written = train(recipe, job.norms, job.folder / "{norm}.safetensors", resume=True,
                        listener=JobListener(job, stop))
    finally:
        hook.remove()
    return min(meta["steps"] for meta in written.values())


def job_recipe(job: Job) -> Recipe:
    """Today's preset and the job's settings for a fresh job; for one with a training state, the loss
    that state was trained with: the library's defaults may have changed since (an upgrade), and a
    paused job must stay resumable."""
    base: dict[str, Any] = dict(PRESETS[job.preset])
    states = [state_path(job.model_path(norm)) for norm in job.norms if state_path(job.model_path(norm)).is_file()]
    if states:
        saved = asdict(Recipe.from_metadata(read_metadata(states[0])["recipe"]))
        base = {k: v for k, v in saved.items() if k not in ("style", "content", "style_sha256")}
    steps = job.settings["steps"]
    return Recipe(style=str(job.painting), content=job.photos,
                  **{**base, **job.settings, "checkpoint_every": max(1, min(100, steps // 10))})


def checkpoint_step(job: Job) -> int:
    """The step of the job's last checkpoint (0 when it has none): where a resume continues."""
    steps = [read_metadata(state_path(job.model_path(norm))).get("step", 0)
             for norm in job.norms if state_path(job.model_path(norm)).is_file()]
    return min(steps) if len(steps) == len(job.norms) else 0


class JobListener(Listener):
    """Turns the trainer's progress into events.jsonl lines and preview images; stops on ``stop``."""

    def __init__(self, job: Job, stop: StopCheck) -> None:
        self.job, self.stop = job, stop
        steps = job.settings["steps"]
        self.event_every = max(1, steps // STEP_EVENTS_PER_RUN)
        self.preview_every = max(1, steps // PREVIEWS_PER_RUN)
        self.previewed = False  # a first preview after this process's first step, not 1/12 of the run later
        self.photos = {Path(name).stem: to_tensor(open_image(job.folder / name)[0]).unsqueeze(0)
                       for name in job.previews}

    def on_scan(self, done: int, total: int) -> None:
        self.stop.interrupt()
        if done == total or done % max(1, total // 20) == 0:
            append_event(self.job.folder, {"event": "scan", "done": done, "total": total})

    def on_start(self, start: RunStart) -> None:
        append_event(self.job.folder, {"event": "start", "start": start.start, "steps": start.steps,
                                       "photos": start.photos, "skipped": len(start.skipped),
                                       "eta_s": round(start.eta_seconds, 1), "nice": os.nice(0),
                                       "threads": torch.get_num_threads()})

    def on_step(self, event: StepEvent) -> None:
        self.stop.stepping, self.stop.asked = True, None
        last = event.step == event.steps
        if last or event.step % self.event_every == 0:
            append_event(self.job.folder, {"event": "step", "step": event.step, "steps": event.steps,
                                           "losses": event.losses, "images_per_s": round(event.images_per_s, 3),
                                           "eta_s": round(event.eta_seconds, 1),
                                           "elapsed_s": round(event.elapsed_seconds, 1)})
        if last or event.step % self.preview_every == 0 or not self.previewed:  # the first within a step or two
            self.preview(event.step, event.models)
            self.previewed = True

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
