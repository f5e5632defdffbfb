"""Batch stylization on Ray Data: ``stylenet stylize ... --engine ray [--address ADDR]``.

The command plans its outputs as the local engine does (``batch.plan``: names, collisions, outputs
that would overwrite inputs; absolute paths), leaves out those that exist (a stopped run resumes),
and hands the rest to ``map_batches`` over a pool of actors. Each actor loads the models once (bf16
and channels_last where its device supports them, as ``Stylizer`` decides; one GPU per actor where the
cluster has GPUs and ``--device`` allows them) and stylizes each file with the local engine's own
``batch.attempt`` (``stylize_file``), so a bad file fails with the same one line. Without an address a local Ray is
started for the run and stopped after it. Local paths must be visible to every node (one machine, or
a shared filesystem); an actor that cannot see the output folder refuses to start.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .batch import Job, Options, attempt
from .sources import Source
from .stylize import Stylizer
from .weights import resolve


class RayUnavailable(RuntimeError):
    """Ray could not run the batch (no cluster at the address, an actor lost or unable to start)."""


class StylizeActor:
    """One Ray actor: the models loaded once, then one row (file, model, target) at a time."""

    def __init__(self, weights: list[str], options: Options, device: str, threads: int, out_dir: str,
                 backend: str | None = None) -> None:
        if not Path(out_dir).is_dir():
            raise RayUnavailable(f"{out_dir} is not visible on this node: use a folder all nodes share")
        torch.set_num_threads(threads)
        self.options = options
        self.stylizers = {s.name: s for s in (Stylizer.load(w, device=device, backend=backend) for w in weights)}

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = []
        for path, root, remote, label, model, target in zip(rows["path"], rows["root"], rows["remote"],
                                                         rows["label"], rows["model"], rows["target"]):
            job = Job(Source(PurePath(path), PurePath(root), remote or None, label or None), model, Path(target))
            errors.append(attempt(job, self.stylizers[model], self.options) or "")
        return {"target": rows["target"], "error": np.array(errors, dtype=object)}


def row(job: Job) -> dict[str, Any]:
    """A job as a row of text columns (Ray Data's blocks are Arrow tables)."""
    source = job.source
    return {"path": str(source.path), "root": str(source.root), "remote": source.remote or "",
            "label": source.label or "", "model": job.model, "target": str(job.target)}


def pool_size(workers: int | None, jobs: int, gpus: int, cpus: int) -> tuple[int, int]:
    """(actors, CPU threads each): one per GPU where GPUs are used, else one per CPU; never more actors
    than files or than the cluster can hold (a larger ``workers`` is capped, not left pending)."""
    limit = gpus or cpus
    actors = max(1, min(jobs, workers or limit, limit))
    return actors, 1 if gpus else max(1, cpus // actors)


def stylize_on_ray(jobs: list[Job], options: Options, weights: list[str], out_dir: Path, device: str = "auto",
                   address: str | None = None, workers: int | None = None, backend: str | None = None) -> list[str]:
    """Run ``jobs`` (their targets inside ``out_dir``) on Ray, a local one or the cluster at ``address``,
    each actor's networks on ``backend`` (None: the actor's ``$STYLENET_BACKEND``, else auto); the
    failure lines of the files that failed. Raises ``RayUnavailable`` when Ray itself fails
    (outputs written so far are kept)."""
    if not jobs:
        return []
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # our progress bar and failure lines, not Ray's logs
    import ray
    import ray.data

    checkpoints = [str(resolve(w).absolute()) for w in weights]  # actors may start in another folder
    started = not ray.is_initialized()
    try:
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        ray.data.DataContext.get_current().enable_progress_bars = False
        resources = ray.cluster_resources()
        gpus = 0 if device == "cpu" else int(resources.get("GPU", 0))
        actors, threads = pool_size(workers, len(jobs), gpus, int(resources.get("CPU", 1)))
        print(f"ray: {actors} actor(s), {'1 GPU' if gpus else f'{threads} CPU thread(s)'} each, "
              f"{len(jobs)} file(s)", flush=True)
        with warnings.catch_warnings():
            # max_restarts=0 as Ray's own code says (a failed actor is a failed run that resumes, not a
            # restart from constructor arguments in the object store); 2.60 calls the keyword form deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            results = ray.data.from_items([row(job) for job in jobs]).map_batches(
                StylizeActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
                num_gpus=1 if gpus else 0, num_cpus=0 if gpus else threads, max_restarts=0,
                fn_constructor_kwargs={"weights": checkpoints, "options": options, "threads": threads,
                                       "device": "cuda" if gpus else "cpu",
                                       "out_dir": str(out_dir.absolute()), "backend": backend})
        failures = []
        with tqdm(total=len(jobs), desc="stylizing (ray)", unit="img") as bar:
            for result in results.iter_rows():
                if result["error"]:
                    failures.append(result["error"])
                bar.update(1)
        return failures
    except (ray.exceptions.RayError, ConnectionError) as exc:
        cause = getattr(exc, "cause", None) or exc  # an actor's own exception, not Ray's wrapper
        lines = str(cause).strip().splitlines()
        raise RayUnavailable(f"ray: {lines[0] if lines else type(cause).__name__}") from None
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
