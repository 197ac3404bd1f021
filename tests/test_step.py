"""The CIFAR training step, light on the host (issue 27): few dispatched ops, ghost BN as exact as before."""
import collections
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from reproduce.models.batchnorm import group_batch_norm
from reproduce.training.loop import network, train_step

R110 = dict(dataset="cifar10", depth=110, block="basic", unit="original", shortcut="identity")
PROTOCOL = dict(batch_size=128, bn_batch=64, lr=0.1, momentum=0.9, sgd="caffe", weight_decay=1e-4,
                weight_decay_bn=True, weight_decay_gate_bias=False)


class Count(TorchDispatchMode):
    """Aten ops dispatched, by name; views and aliases (no kernel, no launch) apart."""

    def __init__(self):
        super().__init__()
        self.ops, self.views = collections.Counter(), collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.views if func.is_view else self.ops)[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def test_a_default_resnet110_step_dispatches_at_most_1500_ops():
    """Forward, backward and SGD of the paper's ResNet-110 step (batch 128 in BN groups of 64, channels_last):
    each op is a CUDA launch and ~10 µs of host time on a GPU; ghost BN's share is 7 ops a layer."""
    torch.manual_seed(0)
    fmt = torch.channels_last
    model, opt = network(R110, PROTOCOL, "fp32", torch.device("cpu"), fmt)
    x, y = torch.randn(128, 3, 32, 32).contiguous(memory_format=fmt), torch.randint(0, 10, (128,))
    train_step(model, opt, x, y, 128, 1, nullcontext())  # the velocity exists from here on
    with Count() as count:
        train_step(model, opt, x, y, 128, 1, nullcontext())
    assert sum(count.ops.values()) <= 1500, count.ops.most_common(10)
    assert count.ops["native_batch_norm"] == count.ops["native_batch_norm_backward"] == 2 * 109


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["NCHW", "channels-last"])
def test_ghost_bn_on_a_short_last_batch_is_per_group_batch_norm(fmt):
    """An epoch's short last batch of 7 in 2 groups: slices of 4 and 3, each normalised on its own, forward
    and backward, to fp64's rounding; the running statistics are the first slice's."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).double()
    nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -1, 1)
    group_batch_norm(bn, batch_size=8, bn_batch=4)
    x = (torch.randn(7, 3, 5, 5, dtype=torch.float64) * 3 + 1).contiguous(memory_format=fmt).requires_grad_()
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    y = bn(x)
    parts = [F.batch_norm(x[:4], mean, var, bn.weight, bn.bias, training=True),
             F.batch_norm(x[4:], None, None, bn.weight, bn.bias, training=True)]
    by_hand = torch.cat(parts)
    torch.testing.assert_close(y, by_hand, rtol=1e-12, atol=1e-12)
    assert y.is_contiguous(memory_format=fmt)
    w = torch.randn_like(y)
    for g, h in zip(torch.autograd.grad((y * w).sum(), [x, bn.weight, bn.bias]),
                    torch.autograd.grad((by_hand * w).sum(), [x, bn.weight, bn.bias])):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_mean, mean), torch.testing.assert_close(bn.running_var, var)
