"""BN statistics over the paper's per-GPU batch, whatever the number of processes that train.

The paper's CIFAR batch of 128 ran "on 2 GPUs (64 each)" and its ImageNet batch of 256 on 8 GPUs (32
each): each GPU's BN layers normalised over their own share. `group_batch_norm(model, ...)` makes every
BN layer of a network do the same: in training, the global batch is cut into consecutive groups of the
protocol's `bn_batch` samples (the number of groups stays fixed, so a short last batch is split the
same way, as DataParallelTable splits it) and each group is normalised with its own statistics.

- One process holding several groups normalises each on its own (ghost batch norm): the plain
  `native_batch_norm` kernel on each group's slice, one cat, and likewise backward, 7 dispatched ops a
  layer (each is a launch on a GPU; ResNet-110 steps ~7-11% slower than with one BN on a 2-core CPU).
- A group spread over several processes sums its statistics over them: one all-reduce per layer
  (the traceable functional collective, so torch.compile keeps it in its graph).

Running statistics follow the first group only, as DDP keeps rank 0's buffers and fb.resnet.torch saves
the first GPU's replica (checkpoints.lua); fb's test passes split each test batch over the GPUs, each
normalising its share with its own replica's statistics, which is not emulated here. [1]'s statistics
after training ("average (not moving average) on a sufficiently large training batch after the training
procedure", deep-residual-networks README) are `precise_statistics`.
"""
import contextlib

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


class _GhostNorm(torch.autograd.Function):
    """Each of `groups` consecutive slices of x normalised with its own batch statistics; the first one
    moves the running statistics (in the kernel, as nn.BatchNorm2d's do). Few ops per layer, as a step's
    host time is their count on a GPU: one plain kernel per group each way, one cat, one foreach add."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, groups, eps):
        parts = x.chunk(groups)  # (a batch smaller than `groups`: fewer parts)
        outs, stats = [], []
        for k, part in enumerate(parts):
            first = k == 0 and running_mean is not None
            out, mean, invstd = torch.ops.aten.native_batch_norm(part, weight, bias, running_mean if first else None,
                                                                 running_var if first else None, True, momentum, eps)
            outs.append(out)
            stats += [mean, invstd]
        ctx.save_for_backward(x, weight, *stats)
        ctx.groups, ctx.eps = groups, eps
        return torch.cat(outs)

    @staticmethod
    def backward(ctx, grad):
        x, weight, *stats = ctx.saved_tensors
        grad = grad.contiguous(memory_format=_format(x))
        grads = [torch.ops.aten.native_batch_norm_backward(g, part, weight, None, None, stats[2 * k], stats[2 * k + 1],
                                                           True, ctx.eps, [True, True, True])
                 for k, (g, part) in enumerate(zip(grad.chunk(ctx.groups), x.chunk(ctx.groups)))]
        grad_x = torch.cat([g[0] for g in grads])
        params = list(grads[0][1:])
        for g in grads[1:]:  # the groups' weight and bias gradients summed, one op per group
            params = torch._foreach_add(params, list(g[1:]))
        return grad_x, *params, None, None, None, None, None


def _format(x):
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


class GroupBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics are those of each of `groups` consecutive slices of its
    input, or of the input of every process in `process_group` together."""

    groups: int = 1
    process_group = None

    def forward(self, x):
        if not self.training or (self.groups == 1 and self.process_group is None):
            return super().forward(x)
        if self.process_group is not None:
            return self._across_processes(x)
        tracked = self.track_running_stats
        return _GhostNorm.apply(x.contiguous(memory_format=_format(x)), self.weight, self.bias,
                                self.running_mean if tracked else None, self.running_var if tracked else None,
                                self._factor() if tracked else 0.0, self.groups, self.eps)

    def _factor(self) -> float:
        """Count a batch and return how far the running statistics move toward it, as nn.BatchNorm2d: the
        momentum (0 in checkpointing's recompute: they stay), or 1/batches so far when it is None."""
        self.num_batches_tracked.add_(1)
        return self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)

    def _track(self, mean, var):
        """Move the running statistics toward (mean, unbiased var)."""
        if not self.track_running_stats:
            return
        factor = self._factor()
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(var.to(self.running_var.dtype), factor)

    def group_sums(self, x):
        """(mean, biased var, count) of the whole group across its processes, with autograd: one
        all-reduce of [sum, sum of squares, count], shifted by the running mean (the same on every
        process: DDP broadcasts rank 0's buffers) so that the variance loses no digits."""
        from torch.distributed._functional_collectives import all_reduce

        c = x.size(1)
        d = x - self.running_mean.detach().to(x.dtype)[None, :, None, None]
        count = x.new_full((1,), x.numel() // c)  # a fill on the device: no host-to-device copy
        total = all_reduce(torch.cat([d.sum((0, 2, 3)), d.pow(2).sum((0, 2, 3)), count]), "sum", self.process_group)
        n = total[-1]
        shifted = total[:c] / n
        return self.running_mean.detach().to(x.dtype) + shifted, total[c:2 * c] / n - shifted.pow(2), n

    def _across_processes(self, x):
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # statistics in fp32 at least (bf16 autocast)
        mean, var, n = self.group_sums(x)
        with torch.no_grad():
            self._track(mean, var * n / (n - 1).clamp_min(1))
        scale = torch.rsqrt(var + self.eps) * self.weight
        return ((x - mean[None, :, None, None]) * scale[None, :, None, None] + self.bias[None, :, None, None]).to(dtype)


def _mean_var(x):
    """Per channel: mean and unbiased variance of a batch (what BN's running statistics take)."""
    var, mean = torch.var_mean(x.to(torch.promote_types(x.dtype, torch.float32)), dim=(0, 2, 3), correction=1)
    return mean, var


def group_statistics(bn: nn.BatchNorm2d, x):
    """[groups, C] means and unbiased variances of the groups `bn` normalises `x` in, in training."""
    if getattr(bn, "process_group", None) is not None:
        mean, var, n = bn.group_sums(x.to(torch.promote_types(x.dtype, torch.float32)))
        return mean[None], (var * n / (n - 1).clamp_min(1))[None]
    means, variances = zip(*(_mean_var(part) for part in x.chunk(getattr(bn, "groups", 1))))
    return torch.stack(means), torch.stack(variances)


@torch.no_grad()
def precise_statistics(model: nn.Module, batches, world: int = 1, autocast=None):
    """[1]'s BN statistics after training: each BN layer's running mean and variance become the averages,
    over `batches` of training images in training mode, of every group's batch mean and unbiased
    variance (what a group normalises with in training, and what BN's running statistics take). With
    several processes, the averages are over the groups of all of them."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {m: [0.0, 0.0, 0] for m in bns}

    def add(m, inputs):
        mean, var = group_statistics(m, inputs[0])
        s = sums[m]
        s[0], s[1], s[2] = s[0] + mean.sum(0), s[1] + var.sum(0), s[2] + len(mean)

    hooks = [m.register_forward_pre_hook(add) for m in bns]
    mode = model.training
    try:
        model.train()
        for x in batches:
            with autocast or contextlib.nullcontext():  # the run's precision (bf16 images need autocast)
                model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(mode)
    for m, (mean, var, k) in sums.items():
        if not k:
            raise UserError("no training batches for BN's after-training statistics (bn_stats_images)")
        total = torch.cat([mean, var, mean.new_full((1,), k)])
        if world > 1:
            dist.all_reduce(total)
        c = m.num_features
        m.running_mean.copy_(total[:c] / total[-1])
        m.running_var.copy_(total[c:2 * c] / total[-1])


def bn_buffers(model: nn.Module) -> dict:
    """Copies of every BN layer's running statistics, by state-dict name."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def layout(batch_size: int, bn_batch: int, world: int) -> tuple[int, int]:
    """(groups held by each process, processes sharing each group) for `world` processes training a
    global batch of `batch_size` with BN over `bn_batch`; one of the two is 1."""
    if batch_size % bn_batch:
        raise UserError(f"bn_batch {bn_batch} does not divide batch_size {batch_size}: BN groups are "
                        "equal slices of the batch, as on the paper's GPUs")
    groups = batch_size // bn_batch
    if groups % world == 0:
        return groups // world, 1
    if world % groups == 0:
        return 1, world // groups
    raise UserError(f"{world} processes cannot hold {groups} BN groups of {bn_batch} (batch_size "
                    f"{batch_size}) evenly: use a number of processes that divides {groups} or is a multiple of it")


def group_batch_norm(model: nn.Module, batch_size: int, bn_batch: int, rank: int = 0, world: int = 1):
    """Make every BN layer of `model` normalise over groups of `bn_batch` samples of the global batch."""
    local, span = layout(batch_size, bn_batch, world)
    group = None
    if span > 1:  # every process creates every subgroup, in the same order (torch.distributed's rule)
        for first in range(0, world, span):
            ranks = list(range(first, first + span))
            made = dist.new_group(ranks)
            if rank in ranks:
                group = made
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.__class__ = GroupBatchNorm2d  # same parameters, buffers and state dict
            m.groups, m.process_group = local, group
    return model
