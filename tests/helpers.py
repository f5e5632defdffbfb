"""Helpers shared by the tests and the measurement tools (scripts/load_test.py, train_latency.py, scale_bench.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY = "Queue is full"  # what gradio_client raises for a refused call (the browser: "currently busy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(weights_dir: Path, log_path: Path, *flags: str,
                start_timeout: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """``stylenet app`` on a free local port with ``flags``; yields (url, process) once it accepts connections."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}  # no calls home from tests and load runs
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "stylenet", "app", "--weights-dir", str(weights_dir),
                                    "--port", str(port), *flags], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the app did not start:\n{log_path.read_text()[-2000:]}") from None
                    time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/", process
        finally:
            process.terminate()
            process.wait(30)
