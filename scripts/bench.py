"""Inference speed and memory: python scripts/bench.py [--sizes 512 1024 2048] [--norms batch instance]

For each norm kind it times, in the same process and on the same weights:
  eager      plain fp32 NCHW forward, BatchNorm unfolded (the baseline)
  stylenet   what Stylizer runs: BN folded into convs, channels_last, inference mode, and bf16
             where the CPU has native bf16 (printed below)
  compiled   stylenet + torch.compile (inductor)
  onnxrt     ONNX Runtime (fp32, all graph optimizations) on the file scripts/export.py writes,
             one export for every size (if onnxruntime is installed)
  auto       what the default Stylizer runs: the backend it measures fastest on this machine at that
             size, or finds in its cache (stylenet.backends); the choice is printed under the table
and prints ms per megapixel and the speed-up against eager, under a header line with the CPU's model,
cores and vector flags (AVX2, AVX-512, AVX512-BF16, AMX). With --memory it stylizes a 4096x4096 photo
through the public API in a fresh process and prints the peak RSS.

With --train it times training steps instead (--train-setups SIZExBATCH ..., default 256x4 128x8;
--norms, default batch instance): the plain step (eager fp32 NCHW, the photo through the whole VGG,
Adam's loop) against the trainer's step (StepMode.fast), on the same random batch, alternating
between them --repeats times and taking each one's median; --candidates adds every single change
on top of the plain step, --ablations the trainer's step without each of its changes in turn.
Prints images/s and achieved GFLOP/s (convolution and matmul FLOPs of forward and backward, counted
by torch's FlopCounterMode).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from stylenet import paths
from stylenet.backends import onnx_runner
from stylenet.checkpoint import load_model
from stylenet.runtime import cpu_summary
from stylenet.stylize import Stylizer
from stylenet.train import Recipe, StepMode, TrainStep, new_run, style_targets
from stylenet.vgg import VGGFeatures
from stylenet.weights import resolve


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def bench_norm(ref: str, sizes: list[int], repeats: int, compile_: bool) -> None:
    plain, meta = load_model(resolve(ref))
    stylizer = Stylizer(plain, meta, torch.device("cpu"), backend="eager")
    auto = Stylizer(plain, meta, torch.device("cpu"), backend="auto")
    variants: dict[str, Callable[[torch.Tensor], object]] = {
        "eager": lambda x: plain(x),
        "stylenet": lambda x: stylizer.forward(x),
    }
    if compile_:
        compiled = torch.compile(stylizer.model)
        variants["compiled"] = lambda x: compiled(x.to(stylizer.dtype).contiguous(memory_format=torch.channels_last))
    try:
        variants["onnxrt"] = onnx_runner(plain)
    except ImportError:
        pass  # onnxruntime is not installed
    variants["auto"] = lambda x: auto.forward(x)
    print(f"\n{ref} ({meta['norm']}, width {meta['width']}), {torch.get_num_threads()} threads, "
          f"stylenet dtype {stylizer.dtype}")
    print(f"{'size':>6} " + " ".join(f"{name:>16}" for name in variants))
    for size in sizes:
        x = torch.rand(1, 3, size, size)
        results = {}
        with torch.inference_mode():
            for name, fn in variants.items():
                results[name] = best_ms(lambda fn=fn, x=x: fn(x), repeats) / (size * size / 1e6)
        base = results["eager"]
        print(f"{size:>5}² " + " ".join(f"{ms:8.0f} ms/MP {base / ms:4.2f}x".rjust(16) for ms in results.values()))
    print(f"auto: {auto.backend.report()}")


def peak_memory_child(ref: str, side: int) -> None:
    """Runs in a fresh process: stylize a side x side photo through the public API."""
    from PIL import Image

    img = Image.effect_noise((side, side), 64).convert("RGB")
    start = time.perf_counter()
    Stylizer.load(ref, device="cpu")(img)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork + exec
    status = Path("/proc/self/status").read_text()
    rss_gb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024 / 1024
    print(f"{ref}: {side}x{side} stylized in {time.perf_counter() - start:.1f} s, peak RSS {rss_gb:.2f} GB")


NO_FILES = (Path(), Path())  # a benchmarked run writes nothing


def train_variants(candidates: bool, ablations: bool, compile_: bool) -> dict[str, StepMode]:
    """The step modes --train compares: plain, the trainer's, optionally each change alone on top of
    plain (``+name``) and the trainer's without each of its changes (``-name``). torch.compile of the
    whole forward only with ``compile_``: it costs a minute or more of compiling per variant."""
    plain, fast = StepMode(), StepMode.fast(torch.device("cpu"))
    variants = {"plain": plain, "stylenet": fast}
    if candidates:
        variants |= {f"+{f.name}": replace(plain, **{f.name: True}) for f in fields(StepMode)
                     if compile_ or f.name != "compile"}
    if ablations:
        variants |= {f"-{f.name}": replace(fast, **{f.name: False}) for f in fields(StepMode) if getattr(fast, f.name)}
    return variants


def bench_train(norms: list[str], setups: list[str], repeats: int, candidates: bool, ablations: bool,
                compile_: bool) -> None:
    device = torch.device("cpu")
    painting = paths.weights_dir() / "styles" / "starry_night.jpg"
    variants = train_variants(candidates, ablations, compile_)
    # one VGG per memory layout (``to`` changes a module in place), and the painting's Grams once
    vggs = {fmt: VGGFeatures.oxford().to(memory_format=fmt) for fmt in {m.memory_format for m in variants.values()}}
    grams = style_targets(next(iter(vggs.values())), str(painting), Recipe(style="", content="").style_size, device)
    print(f"training steps, {torch.get_num_threads()} threads; stylenet = {variants['stylenet']}")
    print(f"{'norm':>8} {'crop x batch':>12} " + " ".join(f"{name:>28}" for name in variants))
    for norm in norms:
        for setup in setups:
            size, batch = map(int, setup.split("x"))
            recipe = Recipe(style=str(painting), content="", image_size=size, batch_size=batch)
            x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
            steps, flops, times = {}, {}, {name: [] for name in variants}
            for name, mode in variants.items():
                vgg = vggs[mode.memory_format]
                eager = replace(mode, compile=False)  # same FLOPs; the counter sees eager ops only
                with FlopCounterMode(display=False) as counter:
                    counted = [new_run(norm, recipe, eager, device, *NO_FILES)]
                    TrainStep(recipe, vgg, grams, eager, device)(counted, x, 0)
                flops[name] = counter.get_total_flops()
                steps[name] = (TrainStep(recipe, vgg, grams, mode, device), [new_run(norm, recipe, mode, device, *NO_FILES)])
                steps[name][0](steps[name][1], x, 0)  # warm-up (and compilation)
            for i in range(repeats):
                for name, (step, runs) in steps.items():
                    start = time.perf_counter()
                    step(runs, x, i + 1)
                    times[name].append(time.perf_counter() - start)
            median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
            cells = [f"{batch / median[n]:5.2f} img/s {flops[n] / median[n] / 1e9:4.0f} GFLOP/s "
                     f"{median['plain'] / median[n]:4.2f}x" for n in variants]
            print(f"{norm:>8} {setup:>12} " + " ".join(f"{c:>28}" for c in cells), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", nargs="+", help="checkpoint files instead of shipped styles")
    p.add_argument("--styles", nargs="+", default=["starry_night"])
    p.add_argument("--norms", nargs="+", help="default: batch instance layer group; with --train batch instance")
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--memory", type=int, nargs="?", const=4096, help="peak RSS for a SIDE x SIDE photo")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--train", action="store_true", help="time training steps instead (see above)")
    p.add_argument("--train-setups", nargs="+", default=["256x4", "128x8"], metavar="SIZExBATCH")
    p.add_argument("--candidates", action="store_true", help="with --train: also each speed change alone")
    p.add_argument("--ablations", action="store_true", help="with --train: also the trainer's step without each change")
    args = p.parse_args()
    if args.child:
        peak_memory_child(args.child, args.memory)
        return
    print(cpu_summary())
    if args.train:
        bench_train(args.norms or ["batch", "instance"], args.train_setups, args.repeats, args.candidates,
                    args.ablations, not args.no_compile)
        return
    norms = args.norms or ["batch", "instance", "layer", "group"]
    refs = args.files or [f"{s}/{n}" for s in args.styles for n in norms]
    for ref in refs:
        bench_norm(ref, args.sizes, args.repeats, not args.no_compile)
    if args.memory:
        print()
        for ref in refs:
            subprocess.run([sys.executable, __file__, "--child", ref, "--memory", str(args.memory)], check=True)


if __name__ == "__main__":
    main()
