"""Which code runs a Stylizer's network: PyTorch eager, torch.compile (inductor), ONNX Runtime, or
ONNX Runtime in int8 (``stylenet.quantize``).

Which one is fastest depends on the CPU (on one with native bf16, bf16 eager won; on one without, ONNX
Runtime's fp32 kernels mostly beat PyTorch's: docs/stylize.md), so ``backend="auto"`` (the default) measures instead of
guessing: on the first photo of a size class (the side of a square of the same area, rounded to a power
of two: 512², 1024², ...) it sets up each candidate, times ``REPEATS`` interleaved calls of each, and
keeps the one with the least *cost*: the seconds of ``AMORTIZED_CALLS`` calls in a fresh process, setup
included (the ONNX export and session take seconds, more than the saving on one small photo), its
fastest call standing for each of the rest. Eager stays unless another wins by ``CLEAR_WIN``. The
choice is saved in ``CACHE/backends.json`` (``stylenet.paths.cache_dir``) under a key of everything the
speeds depend on (CPU model and vector flags, core and thread counts, torch and onnxruntime versions, the
network, its precision, the candidates, the size class), so each machine measures once; any change of
those measures again.

int8 (``onnx-int8``) runs only when asked, never by auto: it changes pixels beyond float rounding (mean
0.006 to 0.033 off fp32, in [0, 1] units; docs/figures/quantize.md), by more for IN than for BN, and the
app shows BN and IN side by side: auto picking int8 for one and fp32 for the other would make that
comparison unfair by construction. Its calibration and quantization (seconds, once per network) are saved
to disk (stylenet/quantize.py).

Why auto leaves torch.compile out (it is there on request, ``backend="compiled"``): its setup is a
compilation, paid again in every new process (seconds with inductor's on-disk cache, a minute or more
without: 84 s measured for the IN network on 2 cores, against 8 s for the ONNX export and session) and
again at each new image shape until dynamo switches to dynamic shapes. Its gain over the optimized eager
model was 1.1x at 512² there, ONNX Runtime's 1.8x. Counted against ``AMORTIZED_CALLS`` calls it cannot
win, and merely trying it would cost the first photo that minute. Long-running processes (the app,
a video job) may still ask for it.

Every backend but int8 computes what eager computes (tests/test_backends.py: within ``TOLERANCE`` in
fp32; a bf16 Stylizer's eager differs from fp32 by bf16's own rounding; int8: tests/test_quantize.py).
Instance-norm models keep whole-image statistics: a backend runs only whole images; tiled photos (``stylize.TILE_ABOVE_PIXELS``) always run
eagerly, since ``tiling.run_tiled`` swaps the norms of an eager module. A backend that fails (not
installed, a compile or export error) is replaced by eager, with one logged line.
"""
from __future__ import annotations

import copy
import importlib.metadata
import io
import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .files import replaced_atomically
from .paths import cache_dir
from .runtime import cpu_summary
from .transformer import DOWNSCALE, MIN_SIZE

if TYPE_CHECKING:  # an optional dependency, imported where it is used
    import onnxruntime

BACKENDS = ("eager", "compiled", "onnx", "onnx-int8")
CHOICES = ("auto", *BACKENDS)
AUTO_CANDIDATES = ("eager", "onnx")  # torch.compile left out: see the module's docstring
AMORTIZED_CALLS = 10  # the calls a process is assumed to make: a folder of photos, a video, an app session
TOLERANCE = 1e-4  # max abs difference to eager, pixels in [0, 1]: float rounding only (1/255 = 0.0039)
# What the eager candidate computes, in the cache key: choices measured against an older eager network are
# measured again ("image IN": instance norms by the channels_last batch-norm kernel, stylize.ImageInstanceNorm;
# "subpixel": upsampling and output convs at half resolution, stylenet.subpixel).
EAGER_VERSION = "eager 3 (image IN, subpixel)"
REPEATS = 3  # timed calls of each candidate after its setup, interleaved; the fastest counts
CLEAR_WIN = 1.15
"""How many times cheaper than eager another backend must measure to be chosen. One measurement, on a CPU
often shared with other work, is saved for good (``CACHE/backends.json``): a near-tie is as likely noise
as a real gain, and eager, the network the tests define, needs no export and no second copy in memory."""

log = logging.getLogger(__name__)
Runner = Callable[[torch.Tensor], torch.Tensor]


class PadToGrid(nn.Module):
    """The model behind an unconditional pad to a multiple of 4 (cropped off again).

    TransformerNet pads only when the size needs it; an exporter traces one size and bakes that
    branch in, so the graph would skip the pad for every other size and give wrong pixels (measured
    on Starry Night: up to 0.55 off, in [0, 1] units, at the three check sizes). Padding always, by
    amounts computed from the input's shape, keeps the graph right for every size.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % DOWNSCALE, 0, -h % DOWNSCALE), mode="replicate")
        return self.model(padded)[..., :h, :w]


def onnx_bytes(model: nn.Module) -> bytes:
    """``model`` (eval mode, fp32) as an ONNX graph with dynamic batch, height and width.

    The TorchScript-based exporter (``dynamo=False``): it exports in seconds, where the dynamo
    exporter takes about 30 s here and needs onnxscript; both give the same pixels. Its tracer
    warnings are about the crop's slices and are silenced: the check against PyTorch is the test.
    """
    buffer = io.BytesIO()
    sample = torch.rand(1, 3, 4 * MIN_SIZE, 4 * MIN_SIZE)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(PadToGrid(model).eval(), (sample,), buffer, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes}, opset_version=17, dynamo=False)
    return buffer.getvalue()


def ort_session(model_bytes: bytes) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session with all graph optimizations (BN folding among them), on as many
    threads as torch uses, so that the two are compared on the same cores.

    Without the CPU memory arena: the arena grows to the largest input's buffers and never gives them
    back (three sessions, one 1024² forward each, took a process from 675 MB to 5.4 GB RSS); without
    it a session kept 34 MB instead of about 1.5 GB, and ran no slower."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def exportable(model: nn.Module) -> nn.Module:
    """An fp32, contiguous copy of ``model``: what the exporter is given (a Stylizer's network may be bf16
    and channels_last, and is shared with its eager runner)."""
    return copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)


def session_runner(session: onnxruntime.InferenceSession) -> Runner:
    """A runner of an exported network's ONNX Runtime session, on the CPU."""

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError("the ONNX backends run on the CPU only")
        return torch.from_numpy(session.run(None, {"x": x.float().contiguous().numpy()})[0])

    return run


def onnx_runner(model: nn.Module) -> Runner:
    """``model`` exported and run by ONNX Runtime in fp32."""
    return session_runner(ort_session(onnx_bytes(exportable(model))))


def int8_bytes(model: nn.Module) -> bytes:
    """``model`` quantized to int8 (``stylenet.quantize``; cached on disk). Imported here, so that onnx and
    the quantizer load only where int8 is asked for."""
    from .quantize import int8_onnx_bytes

    return int8_onnx_bytes(model)


def int8_runner(model: nn.Module) -> Runner:
    """``model`` quantized to int8 and run by ONNX Runtime."""
    return session_runner(ort_session(int8_bytes(model)))


MAKERS: dict[str, Callable[[nn.Module], Runner]] = {
    "eager": lambda model: model,
    "compiled": torch.compile,
    "onnx": onnx_runner,
    "onnx-int8": int8_runner,
}


def default_backend() -> str:
    """``$STYLENET_BACKEND`` where set (a deployment, or the test suite, pins one), else "auto"."""
    return os.environ.get("STYLENET_BACKEND") or "auto"


def size_class(x: torch.Tensor) -> int:
    """The side of a square with one image's area, rounded to a power of two (a 640x480 photo: 512)."""
    return 2 ** round(math.log2(math.sqrt(x.shape[-2] * x.shape[-1])))


def machine_key(model: nn.Module, norm: str, dtype: torch.dtype, side: int) -> str:
    """Everything a measured speed depends on, as one readable line (the cache file's key)."""
    try:
        ort = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        ort = "none"
    params = sum(p.numel() for p in model.parameters())
    return (f"{cpu_summary()}; {torch.get_num_threads()} threads; torch {torch.__version__}; onnxruntime {ort}; "
            f"{norm} net, {params} parameters, {str(dtype).removeprefix('torch.')}; "
            f"{EAGER_VERSION}; candidates {', '.join(AUTO_CANDIDATES)}; {side}²")


def cache_file() -> Path:
    return cache_dir() / "backends.json"


def read_cache() -> dict[str, dict]:
    """The saved choices; a missing, unreadable or non-object file holds none (it is measured again)."""
    try:
        saved = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def saved_choice(key: str) -> dict[str, str] | None:
    """The cached record for ``key`` where it names a backend and why; anything else (a hand edit, another
    version's format) is measured again rather than crash every forward pass."""
    record = read_cache().get(key)
    if isinstance(record, dict) and record.get("backend") in BACKENDS and isinstance(record.get("why"), str):
        return record
    return None


def save_choice(key: str, record: dict) -> None:
    """Add one choice to the cache file (rewritten whole: concurrent writers lose an entry, never the file)."""
    try:
        with replaced_atomically(cache_file()) as tmp:
            tmp.write_text(json.dumps(read_cache() | {key: record}, indent=1, ensure_ascii=False))
    except OSError as exc:  # a read-only cache folder: this machine measures again next time
        log.warning("backend choice not saved (%s)", exc)


def timed(call: Callable[[], object]) -> float:
    """The seconds ``call()`` took."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Trial:
    """One backend's measurement on one input."""

    setup_s: float  # making the runner (whenever this process made it) and its first call on this input
    call_s: float  # the fastest of REPEATS more calls

    @property
    def cost_s(self) -> float:
        """Seconds for AMORTIZED_CALLS calls in a fresh process."""
        return self.setup_s + (AMORTIZED_CALLS - 1) * self.call_s


def measure(runners: dict[str, Runner], setups_s: dict[str, float], x: torch.Tensor) -> dict[str, Trial]:
    """Each runner's trial on ``x``, set up already: ``REPEATS`` rounds of one call each, the fastest call
    kept. Interleaved, a busy spell of the shared CPU slows every candidate rather than one, and the
    minimum is the call least disturbed."""
    calls_s = {name: math.inf for name in runners}
    for _ in range(REPEATS):
        for name, runner in runners.items():
            calls_s[name] = min(calls_s[name], timed(partial(runner, x)))
    return {name: Trial(setups_s[name], calls_s[name]) for name in runners}


def pick(trials: dict[str, Trial]) -> str:
    """The cheapest trial's backend where it beats eager by ``CLEAR_WIN``, else eager."""
    best = min(trials, key=lambda name: trials[name].cost_s)
    return best if trials["eager"].cost_s > CLEAR_WIN * trials[best].cost_s else "eager"


@dataclass(frozen=True)
class Choice:
    """The backend that runs one size class, and why (for the line the CLI prints)."""

    backend: str
    side: int
    why: str
    cached: bool = False

    def __str__(self) -> str:
        return f"{self.backend} at {self.side}² ({self.why}{'; cached' if self.cached else ''})"


class Backend:
    """Runs one model's whole-image forward passes on the backend asked for, or, for "auto", on the
    one measured (or cached) fastest for each size class.

    Thread-safe: one lock per size class, so concurrent first calls of a class measure once, and a call
    of a class already chosen never waits behind another class's measurement; each runner is made once
    (one more ONNX session is another export and another copy of the network in memory).
    """

    def __init__(self, model: nn.Module, asked: str, norm: str, device: torch.device) -> None:
        if asked not in CHOICES:
            raise ValueError(f"backend must be one of {', '.join(CHOICES)}, not {asked!r}")
        self.model, self.asked, self.norm, self.device = model, asked, norm, device
        self.runners: dict[str, Runner] = {"eager": model}
        self.made_s: dict[str, float] = {"eager": 0.0}  # the seconds making each runner took
        self.choices: dict[int, Choice] = {}
        self.failed: set[str] = set()
        self.locks: dict[int, threading.Lock] = {}
        self.making = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        side = size_class(x)
        if side not in self.choices:
            with self.locks.setdefault(side, threading.Lock()):  # setdefault is atomic: one lock per class
                if side not in self.choices:
                    self.choices[side] = self.choose(x, side)
        return self.runners[self.choices[side].backend](x)

    def report(self) -> str:
        """What ran, per size class, e.g. "onnx at 512² (measured 1.8x eager; cached)"."""
        return ", ".join(str(choice) for _, choice in sorted(self.choices.items())) or f"{self.asked} (not run)"

    def choose(self, x: torch.Tensor, side: int) -> Choice:
        if self.asked != "auto":
            return self.chosen(self.asked, side, "asked", x)
        if self.device.type != "cpu":
            return Choice("eager", side, "auto measures on the CPU only")
        key = machine_key(self.model, self.norm, x.dtype, side)
        if saved := saved_choice(key):
            return self.chosen(saved["backend"], side, saved["why"], x, cached=True)
        setups_s = {"eager": self.set_up("eager", x)}  # eager's errors are the caller's to see
        for name in AUTO_CANDIDATES:
            if name not in setups_s and name not in self.failed:
                try:
                    setups_s[name] = self.set_up(name, x)
                except Exception as exc:  # noqa: BLE001 - any failure of an optional backend means: not this one
                    self.fail(name, exc)
        trials = measure({name: self.runners[name] for name in setups_s}, setups_s, x)
        best = pick(trials)
        speedup = trials["eager"].cost_s / trials[best].cost_s
        why = f"nothing measured {CLEAR_WIN}x cheaper" if best == "eager" else f"measured {speedup:.1f}x eager"
        save_choice(key, {"backend": best, "why": why})
        return Choice(best, side, why)

    def set_up(self, name: str, x: torch.Tensor) -> float:
        """Seconds of setup for ``name`` in a fresh process: making its runner (timed when this Backend
        made it, reused since) and a first call on ``x`` (where compiling and lazy setup happen)."""
        runner = self.runner(name)  # first: it times the making
        return self.made_s[name] + timed(partial(runner, x))

    def runner(self, name: str) -> Runner:
        """``name``'s runner, made on first use; raises what making it raises."""
        with self.making:
            if name not in self.runners:
                start = time.perf_counter()
                runner = MAKERS[name](self.model)
                self.made_s[name] = time.perf_counter() - start
                self.runners[name] = runner
        return self.runners[name]

    def chosen(self, name: str, side: int, why: str, x: torch.Tensor, cached: bool = False) -> Choice:
        """``name`` for this size class once its runner is made and has run on ``x`` (a compile error
        shows at the first call); eager where that fails."""
        if name not in self.runners and name not in self.failed:
            try:
                self.set_up(name, x)
            except Exception as exc:  # noqa: BLE001 - see choose()
                self.fail(name, exc)
        if name in self.failed:
            return Choice("eager", side, f"{name} failed")
        return Choice(name, side, why, cached)

    def fail(self, name: str, exc: Exception) -> None:
        """Never try ``name`` again in this process; say so in one logged line."""
        self.failed.add(name)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning("backend %s failed (%s: %s); using eager", name, type(exc).__name__, message)
