"""Load check of the web app: many clients call /compare at the same moment.

    python -m scripts.load_test [--clients 16] [--photo examples/skimage_chelsea.jpg] [--style starry_night]
                                [--max-side 512] [--concurrency 2] [--queue-size 32] [--timeout 900]

Run from the repository root. Starts the app in a subprocess on the shipped weights and fires every call at once. Each call must end
within --timeout, either served or refused as busy (the queue is bounded); it prints the counts, the
p50/p95 latency of the served calls and the server's peak resident memory. Exit code 0 if no call hung
or failed otherwise, 1 if any did.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from stylenet import paths
from tests.helpers import BUSY, running_app


def memory_mb(pid: int, field: str) -> float:
    """A /proc/PID/status memory field in MB: VmRSS (now) or VmHWM (peak so far)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field))) / 1024


def call_at_once(url: str, clients: int, photo: Path, style: str, max_side: int,
                 timeout: float) -> list[tuple[str, float]]:
    """(outcome, seconds) per client: 'served', 'busy', 'hung' or the error's text."""
    connected = [Client(url, verbose=False, analytics_enabled=False) for _ in range(clients)]
    start = threading.Barrier(clients)
    outcomes: list[tuple[str, float]] = [("hung", timeout)] * clients

    def one(i: int) -> None:
        start.wait()
        began = time.perf_counter()
        job = connected[i].submit(handle_file(str(photo)), style, 1.0, False, max_side, api_name="/compare")
        try:
            job.result(timeout=timeout)
            outcomes[i] = ("served", time.perf_counter() - began)
        except concurrent.futures.TimeoutError:
            pass
        except Exception as exc:  # noqa: BLE001 - every other ending is reported, not raised
            outcomes[i] = ("busy" if BUSY in str(exc) else f"{type(exc).__name__}: {exc}",
                           time.perf_counter() - began)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in connected:
        client.close()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--photo", type=Path, default=paths.examples_dir() / "skimage_chelsea.jpg")
    p.add_argument("--style", default="starry_night")
    p.add_argument("--max-side", type=int, default=512, help="the app's resolution cap for these calls")
    p.add_argument("--concurrency", default="2")
    p.add_argument("--queue-size", default="32")
    p.add_argument("--timeout", type=float, default=900, help="seconds a call may take before it counts as hung")
    p.add_argument("--weights-dir", type=Path, default=paths.weights_dir())
    p.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "stylenet_load_test_app.log",
                   help="where the app's output goes")
    args = p.parse_args(argv)
    # an empty models folder of its own: a training job queued in the user's folder must not run
    # (and take CPU) during the measurement
    with tempfile.TemporaryDirectory(prefix="stylenet-load-test-models-") as models, \
            running_app(args.weights_dir, args.log, "--concurrency", args.concurrency, "--queue-size",
                        args.queue_size, "--models-dir", models) as (url, server):
        Client(url, verbose=False, analytics_enabled=False).predict(  # warm-up: first-call costs are not load
            handle_file(str(args.photo)), args.style, 1.0, False, 128, api_name="/compare")
        at_rest = memory_mb(server.pid, "VmRSS")
        outcomes = call_at_once(url, args.clients, args.photo, args.style, args.max_side, args.timeout)
        peak = memory_mb(server.pid, "VmHWM")
    served = [seconds for outcome, seconds in outcomes if outcome == "served"]
    refused = [seconds for outcome, seconds in outcomes if outcome == "busy"]
    counts = {kind: sum(outcome == kind for outcome, _ in outcomes) for kind in ("served", "busy", "hung")}
    others = [outcome for outcome, _ in outcomes if outcome not in counts]
    print(f"{args.clients} clients at once: /compare {args.style} on {args.photo.name} (cap {args.max_side} px), "
          f"{args.concurrency} at a time, queue {args.queue_size}")
    print(f"served {counts['served']}, refused as busy {counts['busy']}, hung {counts['hung']}, "
          f"failed otherwise {len(others)}")
    if served:
        p50, p95 = np.percentile(served, [50, 95])
        print(f"latency of served calls: p50 {p50:.1f} s, p95 {p95:.1f} s, max {max(served):.1f} s")
    if refused:
        print(f"refusals came within {max(refused):.1f} s")
    print(f"server memory: {at_rest:.0f} MB at rest after a warm-up call, peak {peak:.0f} MB")
    for line in sorted(set(others)):
        print(f"  failed: {line}")
    return 1 if counts["hung"] or others else 0


if __name__ == "__main__":
    sys.exit(main())
