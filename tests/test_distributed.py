"""Data-parallel training (distributed.py): synchronized BN equals one-process BN, and torchrun's two
gloo processes train IN and synchronized BN as one process does on the same batches, while BN with
per-rank statistics trains a different model."""
import csv
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from stylenet.checkpoint import read_metadata
from stylenet.distributed import DataParallel, SyncBatchNorm2d, synchronize_batchnorms
from stylenet.transformer import TransformerNet

from .helpers import free_port

# The style weight at full strength from step 1: under the default warm-up the first steps' gradients are
# mostly the small content term's, whose float rounding Adam's sign-like first updates amplify past IN's
# tolerance below (measured 2e-3 four steps in, after a resume).
TINY = ["--width", "8", "--image-size", "32", "--batch-size", "4", "--style-size", "64", "--log-every", "1", "--style-warmup", "0",
        "--no-progress"]


@pytest.fixture
def one_rank_group(tmp_path):
    """A process group of one gloo rank: collectives run, and sum over a single rank."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def batchnorm_pair() -> tuple[nn.BatchNorm2d, SyncBatchNorm2d]:
    """A BatchNorm2d with non-trivial affine weights and a synchronized copy of it."""
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(5).train()
    with torch.no_grad():
        plain.weight.uniform_(0.5, 2)
        plain.bias.uniform_(-1, 1)
    sync = SyncBatchNorm2d.replacing(nn.BatchNorm2d(5))
    sync.load_state_dict(plain.state_dict())
    return plain, sync


def test_synchronized_bn_of_one_rank_is_batchnorm_forward_backward_and_running_stats(one_rank_group):
    plain, sync = batchnorm_pair()
    x = (torch.randn(4, 5, 6, 7) * 3 + 1).requires_grad_()
    xs = x.detach().clone().requires_grad_()
    weights = torch.randn(4, 5, 6, 7)
    (plain(x) * weights).sum().backward()
    (sync(xs) * weights).sum().backward()
    torch.testing.assert_close(xs.grad, x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sync.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-5)
    for name, buffer in plain.named_buffers():
        torch.testing.assert_close(getattr(sync, name), buffer, rtol=1e-5, atol=1e-6)
    sync.eval(), plain.eval()
    torch.testing.assert_close(sync(x), plain(x))


def half_of_a_batchnorm_step(rank, rendezvous, results):
    """One rank of two: synchronized BN on its half of a batch whose channel means dwarf their spread,
    against BatchNorm2d on the whole batch (input and weight gradients, running statistics)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    plain, sync = batchnorm_pair()
    x = (torch.randn(4, 5, 6, 7) * 3 + 100).requires_grad_()
    weights = torch.randn(4, 5, 6, 7)
    (plain(x) * weights).sum().backward()
    mine = slice(2 * rank, 2 * rank + 2)
    xs = x.detach()[mine].clone().requires_grad_()
    (sync(xs) * weights[mine]).sum().backward()
    for grad in (sync.weight.grad, sync.bias.grad):  # what DDP would sum (it averages the per-rank sums' halves)
        dist.all_reduce(grad)
    scale = x.grad.abs().max()
    results.put((rank, max(((xs.grad - x.grad[mine]).abs().max() / scale).item(),
                           ((sync.weight.grad - plain.weight.grad).abs().max() / plain.weight.grad.abs().max()).item(),
                           (sync.running_mean - plain.running_mean).abs().max().item(),
                           ((sync.running_var - plain.running_var).abs().max() / plain.running_var.max()).item())))
    dist.destroy_process_group()


def test_synchronized_bn_over_two_ranks_is_batchnorm_over_the_whole_batch(tmp_path):
    spawn = mp.get_context("spawn")
    results = spawn.SimpleQueue()
    ranks = [spawn.Process(target=half_of_a_batchnorm_step, args=(rank, tmp_path / "rendezvous", results))
             for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(120)
    assert [process.exitcode for process in ranks] == [0, 0]
    errors = dict(results.get() for _ in ranks)
    assert max(errors.values()) < 1e-4, errors


def test_synchronizing_keeps_the_tensors_an_optimizer_holds_and_the_checkpoint_keys():
    model = TransformerNet("batch", 8)
    before = {name: id(p) for name, p in model.named_parameters()}
    keys = set(model.state_dict())
    synchronize_batchnorms(model)
    assert any(isinstance(m, SyncBatchNorm2d) for m in model.modules())
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert {name: id(p) for name, p in model.named_parameters()} == before
    assert set(model.state_dict()) == keys


def test_a_rank_trains_on_its_contiguous_share_and_the_batch_must_split_evenly():
    batch = torch.arange(8).view(8, 1, 1, 1)
    assert DataParallel(1, 2).share(batch).flatten().tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        DataParallel(0, 3).share(batch)
    assert DataParallel.from_environment() is None  # no torchrun here: a single process


def train(tmp_path, name, *flags, processes=1):
    """``stylenet train`` (under torchrun with gloo when ``processes`` > 1); the log rows per norm."""
    out = tmp_path / name
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--master-port", str(free_port()), "-m", "stylenet"] if processes > 1
                else [sys.executable, "-m", "stylenet"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "train", *TINY, "--out", str(out), *flags], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def losses(folder, norm):
    with open(next(folder.glob(f"*_{norm}.csv"))) as f:
        return torch.tensor([[float(row[k]) for k in ("content", "style", "tv")] for row in csv.DictReader(f)])


# How close the two-process loss curves come to the one-process ones: IN to float rounding; BN, whose
# float32 gradients are off a float64 reference by ~5e-4 in one process and in two alike (measured),
# drifts by up to ~0.2% after 4 steps as Adam's sign-like first updates amplify that rounding.
CURVE_RTOL = {"instance": 1e-4, "batch": 5e-3}


def test_two_gloo_processes_train_in_and_synchronized_bn_as_one_process_does(tmp_path, photo_dir, painting):
    """IN needs nothing but the gradients averaged; BN matches only with its statistics synchronized
    (with per-rank statistics its loss is 6% off from the first step). The two-process run stops at
    step 2 and a single process resumes it to step 4: the curves go on as the one-process run's."""
    common = ["--style", str(painting), "--content", str(photo_dir)]
    one = train(tmp_path, "one", *common, "--norm", "batch", "instance", "--steps", "4")
    two = train(tmp_path, "two", *common, "--norm", "batch", "instance", "--steps", "2", processes=2)
    per_rank = train(tmp_path, "per_rank", *common, "--norm", "batch", "--steps", "2", "--bn-stats", "per-rank",
                     processes=2)
    for norm, rtol in CURVE_RTOL.items():
        torch.testing.assert_close(losses(two, norm), losses(one, norm)[:2], rtol=rtol, atol=1e-5)
    assert ((losses(per_rank, "batch") - losses(one, "batch")[:2]).abs() / losses(one, "batch")[:2]).max() > 0.02
    assert read_metadata(next(two.glob("*_batch.safetensors")))["data_parallel"] == {"processes": 2,
                                                                                     "bn_stats": "sync"}
    train(tmp_path, "two", *common, "--norm", "batch", "instance", "--steps", "4", "--resume")
    for norm, rtol in CURVE_RTOL.items():
        torch.testing.assert_close(losses(two, norm), losses(one, norm), rtol=rtol, atol=1e-5)
