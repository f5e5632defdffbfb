"""``stylenet stylize --engine ray`` on a local Ray: the same outputs, names and failure lines as the
local engine, outputs that exist skipped on a rerun."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet import ray_stylize
from stylenet.batch import Options
from stylenet.cli import stylize as stylize_cli

from .conftest import smooth_image

pytest.importorskip("ray")


def stylize(*args):
    done = subprocess.run([sys.executable, "-m", "stylenet", "stylize", *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def outputs(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))


def failures(done):
    return sorted(line for line in done.stderr.splitlines() if line.startswith("failed:"))


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    smooth_image(1).save(src / "a.jpg")
    smooth_image(2).save(src / "sub" / "b.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    return src


def test_ray_makes_what_the_local_engine_makes_and_a_rerun_resumes(tmp_path, photos, checkpoints):
    models = ["--weights", checkpoints["batch"], "--weights", checkpoints["instance"], "--recursive"]
    local = stylize(photos, *models, "--out", tmp_path / "local")
    on_ray = stylize(photos, *models, "--out", tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert local.returncode == on_ray.returncode == 1
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local") == sorted(
        f"{name}_stripes_{norm}.png" for name in ("a", "sub/b") for norm in ("batch", "instance"))
    assert failures(on_ray) == failures(local) and len(failures(on_ray)) == 2  # the broken file, once a model
    assert "ray: 2 actor(s)" in on_ray.stdout and "done: 4 written, 0 skipped (existing), 2 failed" in on_ray.stdout
    for name in outputs(tmp_path / "local"):
        here = np.asarray(Image.open(tmp_path / "local" / name), dtype=float)
        there = np.asarray(Image.open(tmp_path / "ray" / name), dtype=float)
        assert np.abs(here - there).mean() < 1.0  # the same model: at most rounding apart

    (tmp_path / "ray" / "a_stripes_batch.png").unlink()  # as if the run had stopped before this file
    again = stylize(photos, *models, "--out", tmp_path / "ray", "--engine", "ray")
    assert "done: 1 written, 3 skipped (existing), 2 failed" in again.stdout
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")


def test_the_cli_hands_backend_to_ray_and_the_actors_load_their_models_on_it(tmp_path, checkpoints, monkeypatch):
    """In this process, without a Ray cluster: ``stylize_on_ray`` stubbed, then one actor made directly."""
    handed = {}
    monkeypatch.setattr(ray_stylize, "stylize_on_ray", lambda *args, **kwargs: handed.update(kwargs) or [])
    smooth_image(1).save(tmp_path / "a.jpg")
    argv = [str(tmp_path / "a.jpg"), "--weights", str(checkpoints["batch"]), "--out", str(tmp_path / "out"),
            "--engine", "ray", "--backend", "eager"]
    assert stylize_cli.main(argv) == 0 and handed["backend"] == "eager"

    monkeypatch.setenv("STYLENET_BACKEND", "onnx")  # the default the argument must override
    actor = ray_stylize.StylizeActor([str(path) for path in checkpoints.values()], Options(), "cpu",
                                     torch.get_num_threads(), str(tmp_path), backend="eager")
    assert [s.backend.asked for s in actor.stylizers.values()] == ["eager", "eager"]
