"""The manifest: shipped files carry names, counts and hashes, never the training machine's paths."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from stylenet.checkpoint import read_metadata, save_model
from stylenet.transformer import TransformerNet
from stylenet.weights import WEIGHTS_DIR, build_manifest, resolve, sha256_file


def save(path: Path, recipe: dict) -> None:
    save_model(TransformerNet("instance", 4), {"style": "stripes", "steps": 1, "recipe": recipe}, path)


def test_a_slim_student_is_listed_apart_and_named_style_norm_fast(tmp_path, capsys):
    from stylenet.stylize import Stylizer

    from .conftest import make_checkpoint, make_student

    teacher = make_checkpoint(tmp_path / "stripes_instance.safetensors", "instance")
    student = make_student(teacher)
    student.with_suffix(".csv").write_text("step,pixel\n3,0.1\n")
    models = build_manifest(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [m["file"] for m in models] == [m["file"] for m in manifest["models"]] == [teacher.name]
    [fast] = manifest["fast"]
    assert fast | {"sha256": "", "bytes": 0} == {
        "style": "stripes", "norm": "instance", "variant": "fast", "file": student.name, "width": 4, "blocks": 5, "steps": 3,
        "teacher": teacher.name, "teacher_sha256": sha256_file(teacher), "teacher_width": 8, "final_losses": None,
        "sha256": "", "bytes": 0, "log": "stripes_instance_fast.csv"}
    assert resolve("stripes/instance/fast", tmp_path) == student and resolve("stripes/instance", tmp_path) == teacher
    assert Stylizer.load("stripes/instance/fast", "cpu", tmp_path).name == "stripes/instance/fast"
    assert Stylizer.load("stripes/instance", "cpu", tmp_path).variant == "full"
    with pytest.raises(ValueError, match=r"stripes/batch/fast: neither .* \(stripes/instance, stripes/instance/fast\)"):
        resolve("stripes/batch/fast", tmp_path)

    shutil.copy(student, tmp_path / "stripes_instance_slim.safetensors")  # two students of one model: refused
    with pytest.raises(ValueError, match="stripes_instance_slim.safetensors and stripes_instance_fast.safetensors "
                                         "are both stripes/instance/fast: keep one"):
        build_manifest(tmp_path)
    (tmp_path / "stripes_instance_slim.safetensors").unlink()
    make_checkpoint(teacher, "instance", width=6)  # the teacher retrained: the student is of another model now
    build_manifest(tmp_path)
    assert "fast" not in json.loads((tmp_path / "manifest.json").read_text())
    assert capsys.readouterr().err.strip() == ("stripes_instance_fast.safetensors is left out of the manifest: "
                                               "stripes_instance.safetensors is not the model it learned from (distill it again)")


def test_manifest_refuses_absolute_paths(tmp_path):
    save(tmp_path / "stripes_instance.safetensors", {"style": "/home/me/stripes.png", "content": "train"})
    with pytest.raises(ValueError, match="absolute paths.*style=/home/me/stripes.png"):
        build_manifest(tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_lists_models_by_style_and_norm(tmp_path):
    save(tmp_path / "stripes_instance.safetensors", {"style": "stripes.png", "content": "train"})
    models = build_manifest(tmp_path)
    assert [(m["style"], m["norm"], m["file"]) for m in models] == [("stripes", "instance", "stripes_instance.safetensors")]
    assert json.loads((tmp_path / "manifest.json").read_text())["models"] == models
    assert resolve("stripes/instance", tmp_path) == tmp_path / "stripes_instance.safetensors"


def test_shipped_files_hold_no_machine_paths():
    text = (WEIGHTS_DIR / "manifest.json").read_text()
    models = json.loads(text)["models"]
    assert len(models) >= 6  # 3 styles x BN/IN at least: an empty manifest must not pass
    for entry in models:
        meta = read_metadata(WEIGHTS_DIR / entry["file"])
        assert meta["version"] == 2
        assert not any(Path(v).is_absolute() for v in meta["recipe"].values() if isinstance(v, str)), entry["file"]
        assert meta["painting"]["file"] == f"{meta['style']}.jpg" and len(meta["painting"]["sha256"]) == 64
        assert meta["training_set"]["photos"] > 1000
    for entry in json.loads(text).get("fast", []):  # a student of the model shipped now, not of one it replaced
        assert entry["teacher_sha256"] == sha256_file(WEIGHTS_DIR / entry["teacher"]), f"{entry['file']}: distill again"
        assert read_metadata(WEIGHTS_DIR / entry["file"])["distill"]["content"] == "train"
    assert "/work/" not in text and "/home/" not in text


def write_log(path: Path, steps: range, style: float) -> None:
    path.write_text("step,content,style,tv,total,images_per_s,seconds\n"
                    + "".join(f"{s},1.0,{style},0.1,2.0,3.0,{s * 2.0}\n" for s in steps))


def test_promoting_a_continuation_stacks_its_log_and_counts_all_steps(tmp_path):
    from scripts.train_zoo import promote

    weights, continued = tmp_path / "weights", tmp_path / "continued"
    weights.mkdir(), continued.mkdir()
    first = {"style": "stripes.png", "content": "train", "steps": 4, "style_warmup": 2}
    save(weights / "stripes_instance.safetensors", first)
    write_log(weights / "stripes_instance.csv", range(2, 5, 2), style=0.5)
    init = {"file": "stripes_instance.safetensors", "sha256": sha256_file(weights / "stripes_instance.safetensors"),
            "style": "stripes", "steps": 4}  # no recipe: as written before the trainer recorded it
    save_model(TransformerNet("instance", 4), {"style": "stripes", "steps": 6, "init": init,
                                               "recipe": first | {"steps": 6, "style_warmup": 0}},
               continued / "stripes_instance.safetensors")
    write_log(continued / "stripes_instance.csv", range(2, 7, 2), style=0.25)

    promote(continued, weights)
    [entry] = json.loads((weights / "manifest.json").read_text())["models"]
    assert (entry["steps"], entry["total_steps"]) == (6, 10)
    assert entry["init"]["recipe"]["style_warmup"] == 2  # filled in from the model it replaced
    rows = (weights / "stripes_instance.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [2, 4, 6, 8, 10]
    assert [float(r.split(",")[2]) for r in rows] == [0.5, 0.5, 0.25, 0.25, 0.25]
    assert float(rows[-1].split(",")[-1]) == 8.0 + 12.0  # seconds counted on too

    with pytest.raises(SystemExit, match="did not start from"):  # the shipped file is no longer its init
        promote(continued, weights)


def test_shipping_a_run_takes_each_norm_s_best_checkpoint_and_its_log(tmp_path):
    from scripts.train_zoo import ship

    weights, trained = tmp_path / "weights", tmp_path / "trained"
    weights.mkdir(), trained.mkdir()
    recipe = {"style": "stripes.png", "content": "train", "steps": 8}
    for norm, last, best in (("instance", 6, 4), ("batch", 6, None)):
        save_model(TransformerNet(norm, 4), {"style": "stripes", "steps": last, "recipe": recipe},
                   trained / f"stripes_{norm}.safetensors")
        if best:
            save_model(TransformerNet(norm, 4), {"style": "stripes", "steps": best, "recipe": recipe},
                       trained / f"stripes_{norm}.best.safetensors")
    write_log(trained / "stripes_batch.csv", range(2, 7, 2), style=0.5)
    with pytest.raises(SystemExit, match="stripes_instance.csv is missing"):
        ship(trained, weights)
    assert list(weights.iterdir()) == []  # nothing half-shipped

    write_log(trained / "stripes_instance.csv", range(2, 7, 2), style=0.25)
    ship(trained, weights)
    entries = json.loads((weights / "manifest.json").read_text())["models"]
    assert {(e["norm"], e["steps"]) for e in entries} == {("instance", 4), ("batch", 6)}
    steps = [int(r.split(",")[0]) for r in (weights / "stripes_instance.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4]  # the log of the shipped (best) checkpoint, not of the run after it
    assert not (weights / "stripes_instance.best.safetensors").exists()


def test_a_stacked_log_is_unweighted_with_each_part_s_own_recipe(tmp_path):
    from scripts.compare import read_log

    log = tmp_path / "log.csv"
    write_log(log, range(1, 5), style=0.6)  # steps 1-2 from the warm start (style weight 3 ramped over 2 steps)
    base = {"style": "s.png", "content": "train"}
    init = {"steps": 2, "recipe": base | {"style_weight": 3.0, "content_weight": 1.0, "style_warmup": 2}}
    continued = base | {"style_weight": 6.0, "content_weight": 2.0, "style_warmup": 4}  # ramped again, 1.5 a step
    curves = read_log(log, continued, init)
    assert curves["step"] == [1, 2, 3, 4]
    assert curves["style"] == pytest.approx([0.6 / 1.5, 0.6 / 3.0, 0.6 / 1.5, 0.6 / 3.0])
    assert curves["content"] == pytest.approx([1.0, 1.0, 0.5, 0.5])


def test_manifest_entries_are_checked_one_by_one_and_stay_inside_the_weights_folder(tmp_path, capsys):
    """One bad entry (a path outside the folder, a corrupt or missing model, no norm) is skipped with its
    reason; the good ones load and the app starts."""
    from stylenet.app.styles import load_styles

    weights = tmp_path / "weights"
    weights.mkdir()
    save(weights / "stripes_instance.safetensors", {"style": "stripes.png"})
    save(tmp_path / "outside.safetensors", {"style": "stripes.png"})
    (weights / "corrupt.safetensors").write_bytes(b"not a checkpoint")
    good = {"style": "stripes", "norm": "instance", "file": "stripes_instance.safetensors"}
    entries = [good, {**good, "norm": "batch", "file": str(tmp_path / "outside.safetensors")},
               {**good, "style": "up", "file": "../outside.safetensors"},
               {**good, "style": "bad", "file": "corrupt.safetensors"}, {**good, "style": "gone", "file": "gone.safetensors"},
               {"style": "nonorm", "file": "stripes_instance.safetensors"}, "not an entry"]
    (weights / "manifest.json").write_text(json.dumps({"models": entries}))
    styles = load_styles(weights)
    assert list(styles) == ["stripes"] and list(styles["stripes"].models) == ["instance"]
    err = capsys.readouterr().err
    assert err.count("skipped") == 5 and err.count("is outside the weights folder") == 2
    with pytest.raises(ValueError, match="outside the weights folder"):
        resolve("up/instance", weights)


def test_a_warm_start_skips_the_jobs_whose_models_are_not_all_in_its_folder(tmp_path, capsys, monkeypatch):
    from scripts import train_zoo

    calls: list[list[str]] = []
    monkeypatch.setattr(train_zoo.subprocess, "call", lambda cmd, **_: calls.append(cmd) or 0)
    init = tmp_path / "in_progress"
    init.mkdir()
    (init / "starry_night_instance.safetensors").write_bytes(b"model")
    job = ("starry_night", ["instance", "batch"], 10, [])
    assert train_zoo.run(job, tmp_path / "data", tmp_path, "cpu", init, 1) == 0
    assert calls == [] and "starry_night (instance, batch): skipped, no warm start for every norm" in capsys.readouterr().out
    (init / "starry_night_batch.safetensors").write_bytes(b"model")
    monkeypatch.setattr(sys, "argv", ["train_zoo.py", "--continue-from", str(tmp_path / "typo")])
    with pytest.raises(SystemExit):  # a mistyped folder is an error, not every job skipped
        train_zoo.main()
    assert "--continue-from" in capsys.readouterr().err and calls == []
    assert train_zoo.run(job, tmp_path / "data", tmp_path, "cpu", init, 1) == 0
    [cmd] = calls
    assert cmd[cmd.index("--init") + 1:] == [str(init / "starry_night_instance.safetensors"),
                                              str(init / "starry_night_batch.safetensors")]
