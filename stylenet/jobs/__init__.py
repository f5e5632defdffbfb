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
    NORM.safetensors (+ .train.safetensors, .best.safetensors, .csv)   the models, in the library's
                    checkpoint format (the best checkpoint only when the run holds validation photos)

The folder holding the jobs also has ``jobs.lock`` (held for every read-modify-write of a job.json)
and ``runner.lock`` (held by the one runner that launches jobs).

    job.py      the job on disk: Job, its events, the queue order
    store.py    JobStore, the job API: submit, list, follow, cancel, resume, delete
    runner.py   Runner: launches queued jobs one at a time, from a thread
    worker.py   the worker process: the library trainer, events and previews
    cli.py      ``stylenet jobs``
"""
from .job import Job, JobError, Limits, Retention, UserStyle
from .runner import Runner
from .store import JobStore

__all__ = ["Job", "JobError", "JobStore", "Limits", "Retention", "Runner", "UserStyle"]
