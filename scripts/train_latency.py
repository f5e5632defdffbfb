"""Compare's latency with and without a training job running in the app (docs/app.md).

    python -m scripts.train_latency [--calls 10] [--max-side 512] [--train-photos DIR]

Run from the repository root. Starts the app on the shipped weights and a temporary models folder; times --calls /compare requests
(every shipped norm of Starry Night on one photo), one after another, while the app is idle; then
submits a quick-preset BN + IN job, waits for its first training step, times the same requests while
it trains, cancels the job and prints the median and 90th percentile of both, with the load average.
A job that ends before its first step, or takes over --start-timeout seconds to reach it, stops the
script with a one-line error.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradio_client import Client, handle_file

from stylenet import paths
from tests.helpers import running_app


def time_compare(client: Client, photo: Path, calls: int, max_side: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        client.predict(handle_file(str(photo)), "starry_night", 1.0, False, max_side, api_name="/compare")
        seconds.append(time.perf_counter() - started)
    return seconds


def wait_for_training(events: Callable[[], list[dict[str, Any]]], timeout: float, every: float = 2.0) -> str | None:
    """Poll ``events`` (the job's) until it reports a training step: None then; else one line saying
    why not: the job ended (failed, cancelled...) or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = events()
        end = next((e for e in found if e["event"] == "end"), None)
        if end:
            return f"the job ended {end['state']} before training: {end['message']}"
        if any(e["event"] == "step" for e in found):
            return None
        if time.monotonic() >= deadline:
            return f"the job reached no training step in {timeout:g} s"
        time.sleep(every)


def summary(label: str, seconds: list[float]) -> str:
    p90 = statistics.quantiles(seconds, n=10)[-1] if len(seconds) > 1 else seconds[0]
    return (f"{label}: median {statistics.median(seconds):.2f} s, p90 {p90:.2f} s over {len(seconds)} calls "
            f"(load average {os.getloadavg()[0]:.1f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--photo", type=Path, default=paths.examples_dir() / "skimage_chelsea.jpg")
    p.add_argument("--painting", type=Path, default=paths.weights_dir() / "styles" / "the_scream.jpg")
    p.add_argument("--train-photos", type=Path, default=paths.data_dir())
    p.add_argument("--start-timeout", type=float, default=1800,
                   help="seconds the job may take to reach its first step (scanning the photos, loading VGG)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        flags = ("--models-dir", str(Path(tmp) / "models"), "--train-photos", str(args.train_photos))
        with running_app(paths.weights_dir(), Path(tmp) / "app.log", *flags) as (url, _):
            client = Client(url, verbose=False)
            time_compare(client, args.photo, 1, args.max_side)  # warm-up
            print(summary("idle", time_compare(client, args.photo, args.calls, args.max_side)), flush=True)
            job, _ = client.predict(handle_file(str(args.painting)), "latency_probe", "quick", ["batch", "instance"],
                                    0, 0, 0, None, api_name="/train")
            problem = wait_for_training(lambda: client.predict(job, api_name="/job_events"), args.start_timeout)
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                try:
                    client.predict(job, api_name="/cancel")  # still starting: the worker stops after its first step
                except Exception:  # noqa: BLE001, S110 - it had ended: nothing to cancel
                    pass
                return 1
            busy = time_compare(client, args.photo, args.calls, args.max_side)
            step = [e for e in client.predict(job, api_name="/job_events") if e["event"] == "step"][-1]
            print(summary("while training", busy), flush=True)
            print(f"the job meanwhile: step {step['step']}, {step['images_per_s']:.2f} images/s", flush=True)
            client.predict(job, api_name="/cancel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
