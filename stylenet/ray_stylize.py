"""Batch stylization on Ray Data: ``stylenet stylize ... --engine ray [--address ADDR]``.

The command plans its outputs as the local engine does (``cli/stylize.plan``: names, collisions,
outputs that would overwrite inputs), leaves out those that exist (a stopped run resumes), and hands
the rest to ``map_batches`` over a pool of actors. Each actor loads the models once (bf16 and
channels_last where its device supports them, as ``Stylizer`` decides; a GPU per actor where the
cluster has GPUs) and stylizes each file with the local engine's own ``stylize_file``, so a bad file
fails with the same one line. Without --address a local Ray is started for the run and stopped after.
"""
from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .cli.stylize import Job, failure_line, stylize_file
from .images import ImageError
from .sources import Source
from .stylize import Stylizer
from .video import VideoError


class StylizeActor:
    """One Ray actor: the models loaded once, then one row (file, model, target) at a time."""

    def __init__(self, weights: list[str], args: argparse.Namespace, threads: int, cwd: str) -> None:
        if os.path.isdir(cwd):  # relative inputs and outputs mean what they meant to the command
            os.chdir(cwd)
        torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.args = args
        self.stylizers = {s.name: s for s in (Stylizer.load(w, device=device) for w in weights)}

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = []
        for path, root, uri, model, target in zip(rows["path"], rows["root"], rows["uri"], rows["model"],
                                                  rows["target"]):
            source = Source(pure_path(path), pure_path(root), uri or None)
            try:
                stylize_file(source, Path(target), self.stylizers[model], self.args)
                errors.append("")
            except (ImageError, VideoError, OSError, RuntimeError) as exc:
                errors.append(failure_line(source, exc))
        return {"target": rows["target"], "error": np.array(errors, dtype=object)}


def pure_path(text: str) -> PurePosixPath | PureWindowsPath:
    """A path as the driver wrote it (rows carry text; only names are taken from it)."""
    return PureWindowsPath(text) if os.name == "nt" else PurePosixPath(text)


def row(job: Job) -> dict[str, Any]:
    return {"path": str(job.source.path), "root": str(job.source.root), "uri": job.source.uri or "",
            "model": job.model, "target": str(job.target)}


def stylize_on_ray(jobs: list[Job], args: argparse.Namespace) -> list[str]:
    """Run ``jobs`` on Ray (a local one, or the cluster at ``args.address``); the failure lines."""
    if not jobs:
        return []
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # our progress bar and failure lines, not Ray's logs
    try:
        import ray
        import ray.data
    except ImportError:
        return [f"--engine ray needs Ray: pip install 'stylenet[ray]' ({len(jobs)} files not stylized)"]
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        actors = min(len(jobs), args.workers or gpus or cpus)
        threads = max(1, cpus // actors) if not gpus else 1
        print(f"ray: {actors} actor(s), {'1 GPU' if gpus else f'{threads} CPU thread(s)'} each, "
              f"{len(jobs)} file(s)", flush=True)
        with warnings.catch_warnings():
            # max_restarts=0 as Ray's own code says (a failed actor is a failed file, not a restart from
            # constructor arguments in the object store), though 2.60 calls the keyword form deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            results = ray.data.from_items([row(job) for job in jobs], override_num_blocks=len(jobs)).map_batches(
                StylizeActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
                num_gpus=1 if gpus else 0, num_cpus=0 if gpus else threads, max_restarts=0, fn_constructor_kwargs={
                    "weights": list(args.weights), "args": args, "threads": threads, "cwd": os.getcwd()})
        failures = []
        with tqdm(total=len(jobs), desc="stylizing (ray)", unit="img") as bar:
            for result in results.iter_rows():
                if result["error"]:
                    failures.append(result["error"])
                bar.update(1)
        return failures
    finally:
        if started:
            ray.shutdown()
