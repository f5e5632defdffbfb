"""How long each training preset takes on this server, and how much memory a job needs, before anyone
presses Train.

The trainer estimates a run by timing one step (``step.measure_step``: the second of two steps on
fresh models and a random batch) and multiplying by the steps. This does the same for every preset,
for a BN + IN job, in a process set up like the worker (``nice`` +10, one core fewer than the machine),
so the figure is what a job in the app will take, not what the command line takes on an idle machine.
The app starts it once (``start``) and the Train tab reads the file it writes (``read``).

Memory is not measured per server: ``peak_bytes`` is a model fitted to measured runs
(``scripts/job_memory.py``), which the job store checks every request against, with a margin
(``MEMORY_MARGIN``, ``Limits.memory``).

    python -m stylenet.jobs.estimate OUT.json PAINTING PRESET...   (started by the app, not by people)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..files import replaced_atomically

ESTIMATE_FILE = "preset_times.json"
NORMS = ("batch", "instance")
# A job's peak memory (its worker's RSS, the warm-up's trial steps included), fitted by scripts/job_memory.py
# to 2-step runs on the 2-core CPU (docs/app.md, "Memory of a job"); see peak_bytes.
MEMORY_BASE = 885_854_862  # bytes: torch, VGG, the style targets
MEMORY_PER_PIXEL = 2751  # bytes per pixel of a batch (batch × crop²): one model's graph, through VGG,
MEMORY_PER_PIXEL_WIDTH = 97.9  # and this much more per unit of the transformer's width
MEMORY_PER_PIXEL_HELD = 1050  # with two norms or more: the previous model's output and VGG features
# The model misses the runs it was fitted to by up to 2.4% (under), and a run left out of its fit by up to 4.8%:
# the job store refuses a job whose prediction plus this share of it is over the budget (store.job_bytes).
MEMORY_MARGIN = 0.10
# Not fitted (too small in those runs to tell apart): each model's ~1,630 × width² parameters, 4 bytes each
# for the weight, its gradient, Adam's two moments and the warm-up's copy of the weight.
PARAMETER_BYTES = 1630 * 4 * 5  # per model, times width²


def measure(painting: Path, presets: list[str]) -> dict[str, float]:
    """Seconds a BN + IN job of each preset takes here: the trainer's step time times its steps."""
    from ..runtime import pick_device
    from ..step import StepMode, TrainStep, measure_step, new_run, style_targets
    from ..train import PRESETS, Recipe
    from ..vgg import STYLE_LAYERS, VGGFeatures

    device = pick_device("auto")
    mode = StepMode.fast(device)
    seconds = {}
    for name in presets:
        recipe = Recipe(style=str(painting), content="", **PRESETS[name])
        vgg = VGGFeatures.oxford(STYLE_LAYERS + (recipe.content_layer,)).to(device, memory_format=mode.memory_format)
        step = TrainStep(recipe, vgg, style_targets(vgg, recipe.style, recipe.style_size, device), mode, device, None)
        runs = [new_run(norm, recipe, mode, device, Path(os.devnull), Path(os.devnull)) for norm in NORMS]
        seconds[name] = round(recipe.steps * measure_step(step, runs, recipe, mode), 1)
    return seconds


def peak_bytes(crop: int, batch: int, width: int, models: int) -> float:
    """A training job's predicted peak memory in bytes, which the job store checks a request against:
    ``models`` norms trained together on batches of ``batch`` crops of ``crop`` px by networks of
    ``width``. The models train one after another on each batch, so the pixels' cost is one model's
    graph (plus, with two norms or more, what the previous one's step still holds), not one per norm."""
    pixels = batch * crop**2
    return (MEMORY_BASE + pixels * (MEMORY_PER_PIXEL + MEMORY_PER_PIXEL_WIDTH * width)
            + (models > 1) * pixels * MEMORY_PER_PIXEL_HELD + models * PARAMETER_BYTES * width**2)


def start(folder: Path, painting: Path, presets: list[str]) -> None:
    """Measure the presets in a background process unless this folder already has the figures (a
    restart of the same server); its log goes beside the file."""
    out = Path(folder) / ESTIMATE_FILE
    if (found := read(out)) is not None and found.get("presets") == measured_presets():
        return
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.Popen([sys.executable, "-m", "stylenet.jobs.estimate", str(out), str(painting), *presets],
                         stdout=log, stderr=subprocess.STDOUT)


def measured_presets() -> dict:
    """What the times depend on besides the machine: every preset's full recipe (an upgrade that changes a
    preset or the library's default loss makes the saved times stale, so they are measured again)."""
    from ..recipe import PRESETS, Recipe

    return {name: asdict(Recipe(style="", content="", **values)) for name, values in PRESETS.items()}


def read(path: Path) -> dict | None:
    """What the measurement wrote: {"seconds": {preset: s}} or {"error": one line}; None while it runs."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def exit_with(parent: int) -> None:
    """End this process when the app that started it has gone (a test's short-lived app included)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main(out: Path, painting: Path, presets: list[str]) -> int:
    # imported here: the job store, which the runner and the worker import, imports this module
    from .runner import worker_threads
    from .worker import WORKER_NICE

    threading.Thread(target=exit_with, args=(os.getppid(),), daemon=True).start()
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    torch.set_num_threads(worker_threads())
    try:
        found: dict = {"seconds": measure(painting, presets), "threads": torch.get_num_threads(),
                       "presets": measured_presets()}
    except Exception as exc:  # noqa: BLE001 - no VGG weights, no memory: the tab says so in one line
        found = {"error": (str(exc).splitlines() or [type(exc).__name__])[0]}
    with replaced_atomically(out) as tmp:
        tmp.write_text(json.dumps(found))
    return 0 if "seconds" in found else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))
