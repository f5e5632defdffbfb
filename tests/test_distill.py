"""Distillation: a student of a teacher's norm and a smaller width learns the teacher's pictures."""
import csv

import pytest
import torch

from stylenet.checkpoint import load_model, read_metadata
from stylenet.distill import DistillRecipe, distill
from stylenet.runtime import to_tensor
from stylenet.weights import sha256_file
from tests.conftest import make_checkpoint, smooth_image


def test_a_student_learns_its_teacher_s_pictures_and_records_where_it_came_from(tmp_path, photo_dir):
    teacher = make_checkpoint(tmp_path / "stripes_batch.safetensors", "batch", width=8)
    recipe = DistillRecipe(teacher=str(teacher), content=str(photo_dir), width=4, steps=60, image_size=32,
                           batch_size=2, lr=3e-3, log_every=10, checkpoint_every=30)
    out = tmp_path / "student.safetensors"
    meta = distill(recipe, out, device="cpu")

    student, saved = load_model(out)
    assert (student.norm_kind, student.width) == ("batch", 4)
    assert saved["distill"]["teacher"] == "stripes_batch.safetensors"
    assert saved["distill"]["teacher_sha256"] == sha256_file(teacher)
    assert saved["distill"]["photos"] == 4 and saved["steps"] == 60 == meta["steps"]
    assert str(tmp_path) not in str(read_metadata(out))  # names and hashes, never this machine's paths
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    assert float(rows[-1]["pixel"]) < 0.5 * float(rows[0]["pixel"])

    teacher_net, _ = load_model(teacher)
    x = to_tensor(smooth_image(7, (32, 32))).unsqueeze(0)  # a photo it did not train on
    torch.manual_seed(0)  # the student's own start (recipe.seed 0)
    with torch.no_grad():
        untrained = torch.nn.functional.l1_loss(type(student)("batch", 4).eval()(x), teacher_net(x))
        learned = torch.nn.functional.l1_loss(student.eval()(x), teacher_net(x))
    assert learned < 0.6 * untrained


def test_a_student_never_replaces_its_teacher(tmp_path, photo_dir):
    teacher = make_checkpoint(tmp_path / "stripes_instance.safetensors", "instance", width=8)
    before = sha256_file(teacher)
    with pytest.raises(ValueError, match="would replace its teacher"):
        distill(DistillRecipe(teacher=str(teacher), content=str(photo_dir), steps=2), teacher, device="cpu")
    assert sha256_file(teacher) == before


@pytest.mark.parametrize("field", [{"blocks": 0}, {"blocks": 17}, {"width": 0}])
def test_a_student_that_could_not_be_loaded_is_refused_before_training(tmp_path, photo_dir, field):
    teacher = make_checkpoint(tmp_path / "stripes_instance.safetensors", "instance", width=8)
    with pytest.raises(ValueError, match="width must be 1 to 512 and blocks 1 to 16"):
        distill(DistillRecipe(teacher=str(teacher), content=str(photo_dir), steps=2, **field),
                tmp_path / "s.safetensors", device="cpu")
    assert not (tmp_path / "s.safetensors").exists()


def test_a_student_with_fewer_residual_blocks_records_them(tmp_path, photo_dir):
    teacher = make_checkpoint(tmp_path / "stripes_instance.safetensors", "instance", width=8)
    out = tmp_path / "s.safetensors"
    distill(DistillRecipe(teacher=str(teacher), content=str(photo_dir), width=4, blocks=3, steps=2, image_size=32,
                          batch_size=2), out, device="cpu")
    student, meta = load_model(out)
    assert (len(student.residuals), meta["blocks"], meta["distill"]["blocks"]) == (3, 3, 3)
