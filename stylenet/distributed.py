"""Data-parallel training under torchrun: the ranks of a run, each rank's share of every batch, and
batch norm's statistics across ranks.

    torchrun --nproc-per-node 2 -m stylenet train --style p.jpg --content photos/ --norm batch instance --out m/

Every rank draws the same global batch from the run's one generator and trains on its own contiguous
share of it; DistributedDataParallel averages the gradients. Because every loss term is a mean of
per-image terms (``losses.py``), N ranks then compute exactly the gradient of the whole batch in one
process, for every norm whose statistics are per image: IN, LN, GN and none need no communication
beyond the gradients. BN is the exception: its statistics are over the batch, so each rank would
normalize with the statistics of its own share (a different model from the one-process one, and one
that changes with the number of ranks) unless the statistics are summed across ranks in every BN
layer, forward and backward (``SyncBatchNorm2d``: two all-reduces per layer per step).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

BN_STATS = ("sync", "per-rank")  # how BN layers get their statistics under data parallelism


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the gradients across ranks too: every rank's loss
    depends on every rank's share of a synchronized statistic."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch across all ranks.

    torch's ``nn.SyncBatchNorm`` refuses CPU tensors, so the gloo runs of a CPU machine could not use
    it; this one sums (count, sum, sum of squares) per channel with one differentiable all-reduce, so
    the backward pass sums the gradients of the statistics across ranks as well. The sums are in
    float64: the variance as E[x²] - E[x]² loses float32's digits when a channel's mean dwarfs its
    spread (smooth photos through the first conv), enough to move training off the one-process
    curve. Its parameters and buffers are those of BatchNorm2d (checkpoints are interchangeable); at
    eval time it is plain BN.
    """

    @classmethod
    def replacing(cls, bn: nn.BatchNorm2d) -> SyncBatchNorm2d:
        """A synchronized layer holding ``bn``'s own parameter and buffer tensors (an optimizer made
        for ``bn`` goes on updating them)."""
        sync = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        sync.weight, sync.bias = bn.weight, bn.bias
        for name, buffer in bn.named_buffers(recurse=False):
            setattr(sync, name, buffer)
        return sync

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        c = self.num_features
        x64 = x.double()
        local = torch.cat([x64.sum((0, 2, 3)), x64.pow(2).sum((0, 2, 3)), x64.new_full((1,), x.numel() // c)])
        total = _SumAcrossRanks.apply(local)
        count = total[-1]
        mean = total[:c] / count
        var = (total[c:2 * c] / count - mean.pow(2)).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.float(), momentum)
                self.running_var.lerp_((var * count / (count - 1).clamp_min(1)).float(), momentum)
        scale = torch.rsqrt(var + self.eps).float()
        y = (x.float() - mean.float().view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def synchronize_batchnorms(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d of ``model`` in place by a synchronized layer sharing its tensors:
    torch's ``nn.SyncBatchNorm`` on a GPU (its fused kernels, no float64 copy of the activations),
    ``SyncBatchNorm2d`` elsewhere."""
    if next(model.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                setattr(module, name, SyncBatchNorm2d.replacing(child))
    return model


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run: its rank, the number of ranks, and how BN layers
    get their statistics (``sync``: over the whole batch, the one-process model; ``per-rank``: over
    each rank's share, as plain DDP does)."""

    rank: int
    world: int
    bn_stats: str = "sync"

    @classmethod
    def from_environment(cls, bn_stats: str = "sync", device: str = "auto") -> DataParallel | None:
        """Join the process group torchrun describes in the environment (NCCL when the run uses CUDA,
        each rank on the GPU of its local rank; gloo on the CPU); None when this is a single process.
        ``device`` is the run's ``--device``: ``cpu`` keeps a GPU machine's run on gloo."""
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {', '.join(BN_STATS)}, not {bn_stats!r}")
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        if not dist.is_initialized():
            cuda = device != "cpu" and torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), bn_stats)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints and logs and reports progress."""
        return self.rank == 0

    def check_batch(self, size: int) -> int:
        """Each rank's share of a global batch of ``size``; ValueError unless it splits evenly."""
        if size % self.world:
            raise ValueError(f"the batch size {size} must be a multiple of the {self.world} processes")
        return size // self.world

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch that every rank drew alike."""
        size = self.check_batch(len(batch))
        return batch[self.rank * size:(self.rank + 1) * size]

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` for training across the ranks: BN layers synchronized when ``bn_stats`` is
        ``sync``, gradients averaged by DistributedDataParallel (which also starts every rank from
        rank 0's weights and buffers). Synchronized BN keeps every rank's running statistics equal, so
        DDP's broadcast of rank 0's buffers before each forward is left out there; per-rank BN keeps it
        (the statistics that ship are rank 0's). Checkpoints are written from ``model`` itself."""
        if self.bn_stats == "sync":
            model = synchronize_batchnorms(model)
        return DistributedDataParallel(model, broadcast_buffers=self.bn_stats != "sync")

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The average of ``values`` over the ranks (one all-reduce, no gradient): the losses every
        rank logs and guards against spikes with, so that all ranks decide alike."""
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.world

    def anyone(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a stop asked on one rank stops all at one step)."""
        value = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        """Leave the process group (the end of the run)."""
        if dist.is_initialized():
            dist.destroy_process_group()
