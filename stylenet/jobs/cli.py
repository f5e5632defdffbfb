"""``stylenet jobs``: the job API from a terminal.

``train`` and ``resume`` run the queue until their job ends (or, when an app serves the same
models folder, wait while the app's runner trains it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..norms import NORM_KINDS, norm_label
from ..units import duration
from .job import JobError, Limits, add_memory_argument
from .runner import Runner
from .store import JobStore, trainable_presets


def describe(event: dict[str, Any]) -> str | None:
    """A progress line for the command line (None for events not worth a line)."""
    kind = event["event"]
    if kind == "start":
        return f"training from step {event['start']} on {event['photos']} photos, about {duration(event['eta_s'], estimate=True)}"
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``jobs`` command's flags and its own subcommands."""
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="where jobs and their models live (default: $STYLENET_USER_MODELS or the cache folder)")
    parser.add_argument("--train-photos", type=Path, default=None,
                        help="training photos (default: $STYLENET_DATA or data/train)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_cmd = sub.add_parser("train", help="queue a job and run it until it ends")
    train_cmd.add_argument("painting", type=Path)
    train_cmd.add_argument("--name", default="", help="the style's name (default: the painting's file name)")
    train_cmd.add_argument("--norm", nargs="+", default=["batch", "instance"], choices=NORM_KINDS)
    train_cmd.add_argument("--preset", default="quick", choices=trainable_presets(Limits()),
                           help="the trainer's presets within the default job limits (one over --job-memory is "
                                "refused saying what to lower)")
    add_memory_argument(train_cmd)
    for flag in ("--steps", "--image-size", "--width"):
        train_cmd.add_argument(flag, type=int, default=None, help="override the preset's value")
    sub.add_parser("list", help="every job and its state")
    for command, text in (("cancel", "stop a job, keeping its checkpoint"), ("resume", "continue a stopped job"),
                          ("delete", "remove a job and its models")):
        sub.add_parser(command, help=text).add_argument("job", help="the job's id (see list)")


def run(args: argparse.Namespace) -> int:
    """0 when the command (or the job it ran) succeeded, 1 when the job did not finish, 2 when refused."""
    job = None
    try:
        memory = getattr(args, "job_memory", Limits.memory)  # a flag of train only: the one command that checks it
        store = JobStore(args.models_dir, args.train_photos, Limits(memory=memory))
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
        print(f"interrupted: continue with `stylenet jobs resume {job.id}`" if job else
              "interrupted before the job was queued", file=sys.stderr)
        return 130
    return 0 if job.state == "done" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stylenet jobs", description=__doc__.splitlines()[0].split(": ", 1)[1])
    add_arguments(parser)
    return run(parser.parse_args(argv))
