"""scripts/stylize.py end to end on a temp folder with good, broken and odd files."""
import subprocess
import sys

import pytest
from PIL import Image, ImageChops

from .conftest import ROOT, make_student, smooth_image


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "stylize.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_folder_with_failures_then_skip_existing(tmp_path, checkpoints):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    smooth_image(1).save(src / "a.jpg")
    smooth_image(2).convert("RGBA").save(src / "b.png")
    smooth_image(3).save(src / "sub" / "c.webp")
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.png").write_text("not an image")
    (src / "logo.svg").write_text("<svg/>")
    out = tmp_path / "out" / "nested"
    args = [src, "--weights", checkpoints["batch"], "--weights", checkpoints["instance"], "--out", out,
            "--recursive", "--device", "cpu"]
    first = run(*args)
    assert first.returncode == 1, first.stderr
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert made == sorted(f"{s}_stripes_{n}.png" for s in ("a", "b", "sub/c") for n in ("batch", "instance"))
    assert Image.open(out / "b_stripes_instance.png").mode == "RGBA"  # alpha kept
    assert Image.open(out / "a_stripes_batch.png").size == (48, 40)
    failed = [line for line in first.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 6  # 3 bad files x 2 models, one line each
    assert any("empty file" in line for line in failed) and any("not an image" in line for line in failed)
    assert any("vector images are not supported" in line for line in failed)
    assert "Traceback" not in first.stderr
    assert "done: 6 written, 0 skipped (existing), 6 failed" in first.stdout

    (src / "empty.jpg").unlink()
    (src / "notes.png").unlink()
    (src / "logo.svg").unlink()
    again = run(*args, "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert "done: 0 written, 6 skipped (existing), 0 failed" in again.stdout


def test_a_slim_student_s_outputs_are_named_apart_from_its_teacher_s(tmp_path, checkpoints):
    photo = tmp_path / "p.jpg"
    smooth_image(4).save(photo)
    result = run(photo, "--weights", checkpoints["instance"], "--weights", make_student(checkpoints["instance"]),
                 "--out", tmp_path / "out", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p_stripes_instance.png", "p_stripes_instance_fast.png"]


def test_usage_errors_exit_2(tmp_path, checkpoints):
    photo = tmp_path / "p.jpg"
    smooth_image(4).save(photo)
    assert run(photo, "--weights", "nowhere/instance", "--out", tmp_path).returncode == 2
    assert run(photo, "--weights", checkpoints["batch"], "--out", tmp_path, "--strength", "2").returncode == 2
    assert run("--out", tmp_path).returncode == 2
    pickled = tmp_path / "evil.pth"
    pickled.write_bytes(b"\x80\x04K\x01.")
    result = run(photo, "--weights", pickled, "--out", tmp_path)
    assert result.returncode == 2 and "pickle" in result.stderr
    twice = run(photo, "--weights", checkpoints["batch"], "--weights", checkpoints["batch"], "--out", tmp_path)
    assert twice.returncode == 2 and "both stripes/batch" in twice.stderr


def test_jpeg_format_never_overwrites_input(tmp_path, checkpoints):
    src = tmp_path / "x_stripes_batch.jpg"
    smooth_image(5).save(src)
    original = src.read_bytes()
    result = run(tmp_path / "x.jpg", src, "--weights", checkpoints["batch"], "--out", tmp_path, "--format", "jpg")
    assert src.read_bytes() == original
    assert result.returncode == 1 and "would overwrite an input" in result.stderr


def test_no_output_replaces_another(tmp_path, checkpoints):
    """Equal stems in one folder keep their extension; equal names in two folders stay apart."""
    src = tmp_path / "in"
    for folder in ("a", "b"):
        (src / folder).mkdir(parents=True)
    smooth_image(1).save(src / "image.tiff")
    smooth_image(2).save(src / "image.webp", lossless=True)
    smooth_image(3).save(src / "a" / "x.png")
    smooth_image(4).save(src / "b" / "x.png")
    out = tmp_path / "out"
    result = run(src, "--weights", checkpoints["instance"], "--out", out, "--recursive", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert made == ["a/x_stripes_instance.png", "b/x_stripes_instance.png",
                    "image_stripes_instance.png", "image_webp_stripes_instance.png"]
    assert "done: 4 written" in result.stdout
    pixels = {Image.open(out / name).tobytes() for name in made}
    assert len(pixels) == 4  # four different photos, four different results


def test_same_output_name_from_two_folders_is_refused(tmp_path, checkpoints):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        smooth_image(len(folder)).save(tmp_path / folder / "x.jpg")
    out = tmp_path / "out"
    result = run(tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", "--weights", checkpoints["batch"],
                 "--out", out, "--device", "cpu")
    assert result.returncode == 1
    assert [p.name for p in out.iterdir()] == ["x_stripes_batch.png"]
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "b/x.jpg" in failed[0] and "a/x.jpg" in failed[0] and "Traceback" not in result.stderr
    assert "done: 1 written, 0 skipped (existing), 1 failed" in result.stdout


def test_globs_and_file_uris_name_outputs_as_folders_do(tmp_path, checkpoints):
    pytest.importorskip("pyarrow")
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    smooth_image(1).save(src / "a" / "x.jpg")
    smooth_image(2).save(src / "b" / "x.jpg")
    (src / "a" / "notes.txt").write_text("not wanted")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    model = ["--weights", checkpoints["instance"], "--device", "cpu"]
    by_glob = run(f"{src}/**/*", *model, "--recursive", "--out", tmp_path / "glob")
    assert by_glob.returncode == 1, by_glob.stderr  # the broken file; notes.txt is not taken
    made = sorted(str(p.relative_to(tmp_path / "glob")) for p in (tmp_path / "glob").rglob("*.png"))
    assert made == ["a/x_stripes_instance.png", "b/x_stripes_instance.png"]  # mirrored below the fixed folders
    by_uri = run(f"file://{src}", *model, "--recursive", "--out", tmp_path / "uri")
    made = sorted(str(p.relative_to(tmp_path / "uri")) for p in (tmp_path / "uri").rglob("*.png"))
    assert by_uri.returncode == 1 and made == ["a/x_stripes_instance.png", "b/x_stripes_instance.png"]
    assert f"failed: file://{src}/broken.jpg: not an image" in by_uri.stderr
    nothing = run(f"{src}/*.webp", *model, "--out", tmp_path / "none")
    assert nothing.returncode == 1 and "*.webp: no such file" in nothing.stderr
    for uri, reason in [("file:///no/such/folder", "no such file or folder"), ("nope://x/y", "cannot open")]:
        missing = run(uri, *model, "--out", tmp_path / "none")
        assert missing.returncode == 2 and missing.stderr.startswith(f"error: {uri}") and reason in missing.stderr
        assert "Traceback" not in missing.stderr


def test_ray_engine_without_ray_is_a_usage_error_before_any_work(tmp_path, checkpoints):
    smooth_image(1).save(tmp_path / "a.jpg")
    hide_ray = "import sys; sys.modules['ray'] = None; from stylenet.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", hide_ray, "stylize", str(tmp_path / "a.jpg"), "--weights",
                           str(checkpoints["instance"]), "--out", str(tmp_path / "out"), "--engine", "ray"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == "error: --engine ray needs Ray: pip install 'stylenet[ray]'"
    assert not (tmp_path / "out").exists()


def test_backend_auto_by_default_measures_once_and_says_what_it_chose(tmp_path, checkpoints, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.delenv("STYLENET_BACKEND")  # the CLI's own default, not the test suite's pin
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    smooth_image(1, (64, 64)).save(tmp_path / "a.jpg")
    args = [tmp_path / "a.jpg", "--weights", checkpoints["instance"], "--out", tmp_path / "out", "--device", "cpu"]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    chosen = next(line for line in first.stdout.splitlines() if line.startswith("backend: "))
    assert chosen.startswith(("backend: eager at 64² (nothing measured ", "backend: onnx at 64² (measured "))
    assert (tmp_path / "cache" / "backends.json").is_file()
    cached = run(*args, "--backend", "auto")  # a new process: the choice is read, not measured again
    assert f"{chosen.removesuffix(')')}; cached)\n" in cached.stdout


def test_style_image_paints_photos_and_folders_with_any_painting(tmp_path, painting, monkeypatch):
    """--style-image takes the batch path of --weights (folders, names, one line per bad file); clips are
    refused one by one; the painting, weights, --alpha and --style-scale reach the library as given."""
    from stylenet.adain import DECODER_FILE, AdaINStylizer

    from .test_adain import make_decoder

    weights = tmp_path / "weights"
    weights.mkdir()
    decoder = make_decoder(weights / DECODER_FILE)
    monkeypatch.setenv("STYLENET_WEIGHTS", str(weights))  # the shipped decoder is this one
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    smooth_image(1).save(src / "a.jpg")
    smooth_image(2, (40, 56)).convert("RGBA").save(src / "sub" / "b.png")
    (src / "clip.mp4").write_bytes(b"never read")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (12, 40)).save(src / "tiny.png")
    out = tmp_path / "out"
    first = run(src, "--style-image", painting, "--out", out, "--recursive", "--device", "cpu", "--style-scale", "64")
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert made == ["a_painting_adain.png", "sub/b_painting_adain.png"]
    assert Image.open(out / "a_painting_adain.png").size == (48, 40)
    assert Image.open(out / "sub" / "b_painting_adain.png").mode == "RGBA"  # alpha kept
    failed = sorted(line for line in first.stderr.splitlines() if line.startswith("failed:"))
    assert len(failed) == 3 and "broken.jpg: not an image" in failed[0]
    assert failed[1].endswith("clip.mp4: a clip; --style-image paints photos only (use --weights for clips)")
    assert failed[2] == (f"failed: {src / 'tiny.png'}: the photo is 12x40 px: too small to paint (at least 16 px on "
                         "each side)")  # the file named once
    assert "done: 2 written, 0 skipped (existing), 3 failed" in first.stdout and "backend:" not in first.stdout

    waves = tmp_path / "waves.jpg"
    smooth_image(7, (64, 56)).save(waves)
    mixed = run(src / "a.jpg", "--style-image", painting, waves, "--style-weights", "0.7", "0.3", "--alpha", "0.5",
                "--style-scale", "96", "--out", out, "--device", "cpu")
    assert mixed.returncode == 0, mixed.stderr
    expected = AdaINStylizer.load(decoder, "cpu").stylize(
        Image.open(src / "a.jpg"), [(Image.open(painting), 0.7), (Image.open(waves), 0.3)], alpha=0.5, style_scale=96)
    shown = Image.open(out / "a_painting+waves_adain.png")
    assert max(hi for _, hi in ImageChops.difference(shown, expected).getextrema()) <= 1  # float rounding at most


@pytest.mark.parametrize(("flags", "message"), [
    (["--style-image", "PAINTING"], ("error: no AdaIN decoder is shipped yet (adain_decoder.safetensors in the "
                                     "weights folder): train one (scripts/train_adain.py) and pass --decoder PATH")),
    (["--style-image", "NOTES"], "notes.jpg: not an image in a supported format"),
    (["--style-image", "PAINTING", "--decoder", "CHECKPOINT"], "not an AdaIN decoder file"),
    (["--style-image", "PAINTING", "PAINTING", "--style-weights", "1"], "error: give one --style-weights per --style-image"),
    (["--style-image", "PAINTING", "--alpha", "1.5"], "error: --alpha must be between 0 and 1"),
    (["--style-image", "PAINTING", "--style-scale", "10"], "error: --style-scale must be 64 to 2048 px"),
    (["--style-image", "PAINTING", "--engine", "ray"], "error: --style-image runs in this process only (--engine local)"),
    (["--weights", "CHECKPOINT", "--alpha", "0.5"],
     "error: --alpha, --style-scale, --style-weights and --decoder go with --style-image"),
])
def test_style_image_usage_errors_are_one_line(tmp_path, painting, checkpoints, monkeypatch, capsys, flags, message):
    from stylenet.cli.stylize import main

    monkeypatch.setenv("STYLENET_WEIGHTS", str(tmp_path))  # no decoder shipped here
    (tmp_path / "notes.jpg").write_text("not an image")
    smooth_image(1).save(tmp_path / "a.jpg")
    names = {"PAINTING": painting, "NOTES": tmp_path / "notes.jpg", "CHECKPOINT": checkpoints["instance"]}
    assert main([str(tmp_path / "a.jpg"), *(str(names.get(f, f)) for f in flags), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_weights_and_style_image_exclude_each_other(tmp_path, painting, checkpoints):
    both = run(tmp_path / "a.jpg", "--weights", checkpoints["instance"], "--style-image", painting, "--out", tmp_path)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    neither = run(tmp_path / "a.jpg", "--out", tmp_path)
    assert neither.returncode == 2 and "one of the arguments --weights --style-image is required" in neither.stderr
