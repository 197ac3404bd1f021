"""BN statistics over the paper's per-GPU batch, whatever the number of processes that train.

The paper's CIFAR batch of 128 ran "on 2 GPUs (64 each)" and its ImageNet batch of 256 on 8 GPUs (32
each): each GPU's BN layers normalised over their own share. `group_batch_norm(model, ...)` makes every
BN layer of a network do the same: in training, the global batch is cut into consecutive groups of the
protocol's `bn_batch` samples (the number of groups stays fixed, so a short last batch is split the
same way, as DataParallelTable splits it) and each group is normalised with its own statistics.

- One process holding several groups normalises each on its own (ghost batch norm).
- A group spread over several processes (more processes than groups) sums its statistics over them.

Running statistics follow the first group only: fb.resnet.torch saves, and tests, the first GPU's
replica (checkpoints.lua: `model:get(1)` of the DataParallelTable), as Caffe tests with the root
solver's net; DDP broadcasts rank 0's buffers likewise, so every layout ends with the same ones.
Evaluation uses them as any BN layer does: the state dict is that of nn.BatchNorm2d.
"""
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


class GroupBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics are those of each of `groups` slices of its input, or of
    the input of every process in `process_group` together."""

    groups: int = 1
    process_group = None

    def forward(self, x):
        if not self.training or (self.groups == 1 and self.process_group is None):
            return super().forward(x)
        if self.process_group is not None:
            return self._across_processes(x)
        first, *rest = x.chunk(self.groups)
        # The first group moves the running statistics (and honours checkpointing's frozen momentum).
        out = [super().forward(first)] + [F.batch_norm(part, None, None, self.weight, self.bias, True, 0.0,
                                                       self.eps) for part in rest]
        return torch.cat(out)

    def _across_processes(self, x):
        """Batch statistics of the whole group: sums over its processes (autograd flows through them)."""
        from torch.distributed.nn.functional import all_reduce

        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # statistics in fp32 at least (bf16 autocast)
        count = torch.tensor(float(x.numel() // x.size(1)), device=x.device)
        total = all_reduce(torch.cat([x.sum((0, 2, 3)), count[None]]), group=self.process_group)
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean[None, :, None, None]
        var = all_reduce(centred.pow(2).sum((0, 2, 3)), group=self.process_group) / n
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked + 1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), momentum)  # unbiased, as BN keeps it
                self.num_batches_tracked += 1
        scale = torch.rsqrt(var + self.eps) * self.weight
        return (centred * scale[None, :, None, None] + self.bias[None, :, None, None]).to(dtype)


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
