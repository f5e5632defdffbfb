"""Backends: every one computes eager's pixels; auto's choice is measured once, cached and overridable."""
import json
import logging
import threading

import pytest
import torch

from stylenet import backends, stylize
from stylenet.checkpoint import load_model
from stylenet.stylize import Stylizer
from stylenet.temporal import stabilized

from .conftest import make_checkpoint

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[test]')")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The backend cache file, in a folder of this test's own."""
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "backends.json"


@pytest.fixture
def trials(monkeypatch):
    """The names of the backends measured, in order."""
    names = []
    real = backends.measure

    def counted(runners, setups_s, x):
        names.extend(runners)
        return real(runners, setups_s, x)

    monkeypatch.setattr(backends, "measure", counted)
    return names


@pytest.fixture
def instant_onnx(monkeypatch):
    """"onnx" made as the eager network itself: auto's bookkeeping without an export."""
    monkeypatch.setitem(backends.MAKERS, "onnx", lambda model: model)


def cached_key(stylizer_, side=64):
    """The cache key of ``stylizer_``'s fp32 network at ``side``²."""
    return backends.machine_key(stylizer_.model, stylizer_.meta["norm"], torch.float32, side)


def stylizer(path, backend, **kwargs):
    model, meta = load_model(path)
    return Stylizer(model, meta, torch.device("cpu"), precision="fp32", backend=backend, **kwargs)


def eager_output(path, x):
    return stylizer(path, "eager").forward(x)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_onnx_computes_what_eager_computes(checkpoints, norm):
    x = torch.rand(2, 3, 37, 53)  # a batch, sides not multiples of 4
    onnx = stylizer(checkpoints[norm], "onnx")
    out = onnx.forward(x)
    assert onnx.backend.report() == "onnx at 32² (asked)"
    assert (out - eager_output(checkpoints[norm], x)).abs().max() <= backends.TOLERANCE


def test_compiled_computes_what_eager_computes(checkpoints):
    """The one torch.compile test (compiling takes a while even for this tiny network)."""
    x = torch.rand(1, 3, 36, 44)
    compiled = stylizer(checkpoints["instance"], "compiled")
    out = compiled.forward(x)
    assert compiled.backend.report() == "compiled at 32² (asked)"
    assert (out - eager_output(checkpoints["instance"], x)).abs().max() <= backends.TOLERANCE


def test_auto_measures_once_per_machine_and_size(checkpoints, cache, trials):
    x = torch.rand(1, 3, 64, 64)
    first = stylizer(checkpoints["instance"], "auto")
    out = first.forward(x)
    assert trials == ["eager", "onnx"]
    saved = json.loads(cache.read_text())
    (key, record), = saved.items()
    assert key.endswith("; 64²") and "instance net" in key and "threads" in key and backends.EAGER_VERSION in key
    assert record["backend"] in backends.AUTO_CANDIDATES
    assert first.backend.report() == f"{record['backend']} at 64² ({record['why']})"
    assert (out - eager_output(checkpoints["instance"], x)).abs().max() <= backends.TOLERANCE

    first.forward(torch.rand(1, 3, 60, 70))  # the same size class, the same process
    second = stylizer(checkpoints["instance"], "auto")  # as a new process would: from the cache
    second.forward(x)
    assert trials == ["eager", "onnx"]
    assert second.backend.report() == f"{record['backend']} at 64² ({record['why']}; cached)"

    second.forward(torch.rand(1, 3, 128, 128))  # a new size class is measured, and saved beside the first
    assert trials == ["eager", "onnx"] * 2 and len(json.loads(cache.read_text())) == 2


def test_onnx_sessions_run_without_the_memory_arena(checkpoints):
    session = backends.ort_session(backends.onnx_bytes(load_model(checkpoints["batch"])[0].eval()))
    assert session.get_session_options().enable_cpu_mem_arena is False


@pytest.mark.parametrize("norm", ["batch", "instance", "layer"])
def test_auto_never_measures_int8_which_changes_pixels(tmp_path, cache, trials, instant_onnx, norm):
    """int8 for one norm and fp32 for the other would make the app's BN-vs-IN comparison unfair."""
    auto = stylizer(make_checkpoint(tmp_path / f"{norm}.safetensors", norm), "auto")
    auto.forward(torch.rand(1, 3, 64, 64))
    assert trials == ["eager", "onnx"]
    (key,) = json.loads(cache.read_text())
    assert key == cached_key(auto) and key.endswith("; candidates eager, onnx; 64²")


def test_a_new_size_class_reuses_the_onnx_runner(checkpoints, cache, trials, monkeypatch):
    made = []

    def counted(model):
        made.append(model)
        return backends.onnx_runner(model)

    monkeypatch.setitem(backends.MAKERS, "onnx", counted)
    auto = stylizer(checkpoints["instance"], "auto")
    auto.forward(torch.rand(1, 3, 64, 64))
    auto.forward(torch.rand(1, 3, 128, 128))
    assert trials == ["eager", "onnx"] * 2 and len(made) == 1


def test_measure_interleaves_the_candidates_and_keeps_each_ones_fastest_call(monkeypatch):
    ran, durations = [], iter([5.0, 1.0, 3.0, 2.0, 4.0, 6.0])
    monkeypatch.setattr(backends, "REPEATS", 3)
    monkeypatch.setattr(backends, "timed", lambda call: (call(), next(durations))[1])
    runners = {name: lambda x, name=name: ran.append(name) for name in ("eager", "onnx")}
    trials = backends.measure(runners, {"eager": 0.0, "onnx": 7.0}, torch.rand(1, 3, 8, 8))
    assert ran == ["eager", "onnx"] * 3
    assert trials == {"eager": backends.Trial(0.0, 3.0), "onnx": backends.Trial(7.0, 1.0)}


@pytest.mark.parametrize(("onnx_cost", "chosen"), [(1 / 1.1, "eager"), (1 / 1.3, "onnx")])
def test_auto_keeps_eager_unless_another_backend_wins_clearly(checkpoints, cache, monkeypatch, instant_onnx,
                                                              onnx_cost, chosen):
    costs = {"eager": backends.Trial(1.0, 0.0), "onnx": backends.Trial(onnx_cost, 0.0)}
    monkeypatch.setattr(backends, "measure", lambda runners, setups_s, x: costs)
    auto = stylizer(checkpoints["batch"], "auto")
    auto.forward(torch.rand(1, 3, 64, 64))
    assert auto.backend.report().startswith(f"{chosen} at 64² (")
    assert [record["backend"] for record in json.loads(cache.read_text()).values()] == [chosen]


def test_a_chosen_size_class_never_waits_behind_another_class_measuring(checkpoints, cache, monkeypatch, instant_onnx):
    auto = stylizer(checkpoints["batch"], "auto")
    cache.parent.mkdir()
    cache.write_text(json.dumps({cached_key(auto): {"backend": "eager", "why": "measured fastest"}}))
    auto.forward(torch.rand(1, 3, 64, 64))  # 64² chosen, from the cache
    measuring, release = threading.Event(), threading.Event()

    def held(model):
        measuring.set()
        release.wait(timeout=60)
        return model

    monkeypatch.setitem(backends.MAKERS, "onnx", held)
    new_class = threading.Thread(target=auto.forward, args=(torch.rand(1, 3, 128, 128),))
    new_class.start()
    assert measuring.wait(timeout=60)
    chosen_class = threading.Thread(target=auto.forward, args=(torch.rand(1, 3, 64, 64),))
    chosen_class.start()
    chosen_class.join(timeout=30)  # a guard against hanging on a shared lock, not a speed check
    finished = not chosen_class.is_alive()
    release.set()
    new_class.join()
    assert finished and auto.backend.report().startswith("eager at 64² (measured fastest; cached), ")


def test_concurrent_first_calls_of_a_size_class_measure_once(checkpoints, cache, trials, instant_onnx):
    auto = stylizer(checkpoints["batch"], "auto")
    together = threading.Barrier(4)

    def call():
        together.wait()
        auto.forward(torch.rand(1, 3, 64, 64))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trials == ["eager", "onnx"]


@pytest.mark.parametrize("saved", ["[]", '"text"', '{KEY: "onnx"}', '{KEY: {"why": "measured 9.9x eager"}}',
                                   '{KEY: {"backend": "tpu", "why": "measured 9.9x eager"}}'])
def test_a_malformed_cache_is_measured_again_and_rewritten(checkpoints, cache, trials, instant_onnx, saved):
    auto = stylizer(checkpoints["batch"], "auto")
    cache.parent.mkdir()
    cache.write_text(saved.replace("KEY", json.dumps(cached_key(auto))))
    auto.forward(torch.rand(1, 3, 64, 64))
    assert trials == ["eager", "onnx"]
    assert json.loads(cache.read_text())[cached_key(auto)]["backend"] in backends.AUTO_CANDIDATES


def test_a_cache_file_that_is_not_an_object_reads_as_empty_and_is_replaced(cache):
    cache.parent.mkdir()
    cache.write_text("[]")
    assert backends.read_cache() == {}
    backends.save_choice("key", {"backend": "eager", "why": "measured fastest"})
    assert json.loads(cache.read_text()) == {"key": {"backend": "eager", "why": "measured fastest"}}


def test_a_cached_choice_is_used_and_an_explicit_backend_overrides_it(checkpoints, cache, trials):
    x = torch.rand(1, 3, 64, 64)
    cache.parent.mkdir()
    cache.write_text(json.dumps({cached_key(stylizer(checkpoints["batch"], "eager")): {"backend": "onnx", "why": "measured 9.9x eager"}}))

    auto = stylizer(checkpoints["batch"], "auto")
    out = auto.forward(x)
    assert auto.backend.report() == "onnx at 64² (measured 9.9x eager; cached)" and not trials
    assert (out - eager_output(checkpoints["batch"], x)).abs().max() <= backends.TOLERANCE

    asked = stylizer(checkpoints["batch"], "eager")
    asked.forward(x)
    assert asked.backend.report() == "eager at 64² (asked)" and not trials


def test_the_environment_sets_the_default_and_an_argument_overrides_it(checkpoints, monkeypatch):
    monkeypatch.setenv("STYLENET_BACKEND", "onnx")
    assert stylizer(checkpoints["batch"], None).backend.asked == "onnx"
    assert stylizer(checkpoints["batch"], "eager").backend.asked == "eager"
    monkeypatch.delenv("STYLENET_BACKEND")
    assert stylizer(checkpoints["batch"], None).backend.asked == "auto"
    with pytest.raises(ValueError, match="backend must be one of auto, eager, compiled, onnx, onnx-int8, not 'fast'"):
        stylizer(checkpoints["batch"], "fast")


def broken(model):
    raise RuntimeError("no kernel for this op\nand a long traceback-like tail")


@pytest.mark.parametrize("asked", ["onnx", "auto"])
def test_a_failing_backend_falls_back_to_eager_with_one_logged_line(checkpoints, cache, monkeypatch, caplog, asked):
    monkeypatch.setitem(backends.MAKERS, "onnx", broken)
    failing = stylizer(checkpoints["instance"], asked)
    x = torch.rand(1, 3, 40, 48)
    with caplog.at_level(logging.WARNING, logger="stylenet.backends"):
        outs = [failing.forward(x), failing.forward(torch.rand(1, 3, 128, 128)), failing.forward(x)]
    assert [r.getMessage() for r in caplog.records] == [
        "backend onnx failed (RuntimeError: no kernel for this op); using eager"]
    assert torch.equal(outs[0], outs[2]) and torch.equal(outs[0], eager_output(checkpoints["instance"], x))
    assert failing.backend.report().startswith("eager at 32² (")


def test_tiled_photos_and_swapped_in_networks_run_eagerly(checkpoints, monkeypatch):
    """A backend runs whole images only: tiling takes IN's whole-image statistics with the eager
    network, and a network swapped in (video smoothing) is not the one the backend was made from."""
    ran = []

    def spy(model):
        runner = backends.onnx_runner(model)
        return lambda x: ran.append(x.shape) or runner(x)

    monkeypatch.setitem(backends.MAKERS, "onnx", spy)
    onnx = stylizer(checkpoints["instance"], "onnx")
    monkeypatch.setattr(stylize, "TILE_ABOVE_PIXELS", 64 * 64)
    x = torch.rand(1, 3, 96, 80)
    torch.testing.assert_close(onnx.forward(x), eager_output(checkpoints["instance"], x))
    assert not ran

    frames = torch.rand(3, 3, 40, 48)
    smoothed = stabilized(onnx, 0.9).forward(frames)
    assert not ran and onnx.backend.asked == "onnx"
    torch.testing.assert_close(smoothed, stabilized(stylizer(checkpoints["instance"], "eager"), 0.9).forward(frames))

    onnx.forward(frames)  # the same network, untiled and not swapped: the spy runs it
    assert ran and set(ran) == {frames.shape}
