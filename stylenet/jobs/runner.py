"""The runner: launches queued jobs one at a time, each in a worker process, from a background thread.

Only one runner per models folder launches jobs: it holds ``runner.lock`` in that folder.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .job import (
    LOG_FILE,
    RUNNER_LOCK,
    WORKER_LOCK,
    Job,
    queued_in_order,
    read_events,
    worker_alive,
)
from .store import JobStore


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity, where the OS says), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


def worker_threads() -> int:
    """Leave one core's worth of threads to the server."""
    return max(1, usable_cpus() - 1)


class Runner:
    """Runs queued jobs one at a time, each in a worker process, from a background thread.

    Only one runner per models folder launches jobs (an advisory lock file decides); a second app
    on the same folder shows and queues jobs, and the first one runs them.
    """

    def __init__(self, store: JobStore, poll: float = 1.0, on_change: Callable[[], None] | None = None,
                 prune_every: float = 600.0) -> None:
        self.store, self.poll, self.on_change = store, poll, on_change
        self.prune_every, self.pruned = prune_every, time.monotonic()
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
            handle = open(self.store.root / RUNNER_LOCK, "a")  # noqa: SIM115 - held open: the lock is the handle
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self.lock_file = handle
        return True

    def tick(self) -> None:
        """Reap a finished worker, mark running jobs without a worker interrupted, start the next queued job,
        and every ``prune_every`` seconds apply the retention policy (``JobStore.prune``)."""
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
        if time.monotonic() - self.pruned > self.prune_every:  # the retention policy, while running
            self.pruned = time.monotonic()
            changed = bool(self.store.prune()) or changed
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
                        [sys.executable, "-m", "stylenet.jobs.worker", str(job.folder)], stdout=log,
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

