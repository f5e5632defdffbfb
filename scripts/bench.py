"""Inference speed and memory: python scripts/bench.py [--sizes 512 1024 2048] [--norms batch instance]

For each norm kind it times, in the same process and on the same weights:
  eager      plain fp32 NCHW forward, BatchNorm unfolded (the baseline)
  stylenet   what Stylizer runs: BN folded into convs, channels_last, inference mode, and bf16
             where the CPU has native bf16 (printed below)
  compiled   stylenet + torch.compile (inductor)
  onnxrt     ONNX Runtime on the folded model (if onnxruntime is installed)
and prints ms per megapixel and the speed-up against eager. With --memory it stylizes a
4096x4096 photo through the public API in a fresh process and prints the peak RSS.
"""
from __future__ import annotations

import argparse
import copy
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from stylenet.checkpoint import load_model  # noqa: E402
from stylenet.stylize import Stylizer, fold_batchnorm  # noqa: E402
from stylenet.weights import resolve  # noqa: E402


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def onnx_runner(model: torch.nn.Module, size: int) -> Callable[[torch.Tensor], object] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    buf = io.BytesIO()
    torch.onnx.export(model, torch.rand(1, 3, size, size), buf, input_names=["x"], output_names=["y"],
                      dynamo=False, opset_version=17)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.numpy()})


def bench_norm(ref: str, sizes: list[int], repeats: int, compile_: bool) -> None:
    plain, meta = load_model(resolve(ref))
    stylizer = Stylizer(copy.deepcopy(plain), meta, torch.device("cpu"))
    variants: dict[str, Callable[[torch.Tensor], object]] = {
        "eager": lambda x: plain(x),
        "stylenet": lambda x: stylizer.forward(x),
    }
    if compile_:
        compiled = torch.compile(stylizer.model)
        variants["compiled"] = lambda x: compiled(x.to(stylizer.dtype).contiguous(memory_format=torch.channels_last))
    print(f"\n{ref} ({meta['norm']}, width {meta['width']}), {torch.get_num_threads()} threads, "
          f"stylenet dtype {stylizer.dtype}")
    print(f"{'size':>6} " + " ".join(f"{name:>16}" for name in variants) + f" {'onnxrt':>16}")
    for size in sizes:
        x = torch.rand(1, 3, size, size)
        runs = dict(variants)
        runner = onnx_runner(fold_batchnorm(copy.deepcopy(plain)), size)
        if runner:
            runs["onnxrt"] = runner
        results = {}
        with torch.inference_mode():
            for name, fn in runs.items():
                results[name] = best_ms(lambda fn=fn, x=x: fn(x), repeats) / (size * size / 1e6)
        base = results["eager"]
        print(f"{size:>5}² " + " ".join(f"{ms:8.0f} ms/MP {base / ms:4.2f}x".rjust(16) for ms in results.values()))


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", nargs="+", help="checkpoint files instead of shipped styles")
    p.add_argument("--styles", nargs="+", default=["starry_night"])
    p.add_argument("--norms", nargs="+", default=["batch", "instance", "layer", "group"])
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--memory", type=int, nargs="?", const=4096, help="peak RSS for a SIDE x SIDE photo")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        peak_memory_child(args.child, args.memory)
        return
    refs = args.files or [f"{s}/{n}" for s in args.styles for n in args.norms]
    for ref in refs:
        bench_norm(ref, args.sizes, args.repeats, not args.no_compile)
    if args.memory:
        print()
        for ref in refs:
            subprocess.run([sys.executable, __file__, "--child", ref, "--memory", str(args.memory)], check=True)


if __name__ == "__main__":
    main()
