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


TINY = dict(dataset="cifar10", depth=8, block="basic", unit="full_preact")
TINY_PROTOCOL = {**PROTOCOL, "batch_size": 16, "bn_batch": 8}


def test_compile_auto_is_cuda_graphs_for_the_papers_cifar_runs_on_a_gpu_only():
    from reproduce.config import load_params, run_config
    from reproduce.training.speed import compile_mode

    from conftest import committed_params

    params = load_params(committed_params())
    paper, smoke = params.model_copy(update={"profile": "paper"}), params.model_copy(update={"profile": "smoke"})
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert compile_mode("auto", cuda, run_config(paper, "r110_original")) == "reduce-overhead"
    assert compile_mode("auto", cpu, run_config(paper, "r110_original")) is False
    assert compile_mode("auto", cuda, run_config(smoke, "r110_original")) is False
    assert compile_mode("auto", cuda, run_config(paper, "in_r200_full_preact")) is False
    assert compile_mode("max-autotune", cpu, run_config(paper, "r110_original")) == "max-autotune"


def test_the_network_compiles_whole_and_a_compiled_step_is_the_eager_step():
    """What CUDA graphs need, checked on the CPU: Dynamo traces the training forward (ghost BN and its
    running statistics included) with no graph break; compiled steps (aot_eager: Dynamo and AOTAutograd,
    no code generation) give eager's numbers; `batches: continuous` keeps one shape, so no recompile."""
    from reproduce.data.augment import CifarStream

    torch.manual_seed(0)
    fmt, cpu = torch.channels_last, torch.device("cpu")
    eager, eager_opt = network(TINY, TINY_PROTOCOL, "fp32", cpu, fmt)
    model, opt = network(TINY, TINY_PROTOCOL, "fp32", cpu, fmt)
    images, labels = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (40,))
    stream = CifarStream(images, labels, "cifar10", 16, memory_format=fmt, batches="continuous")
    explained = torch._dynamo.explain(model.train())(stream.batch(0)[0])
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    model.load_state_dict(eager.state_dict())  # (explain ran a forward: BN statistics moved)
    torch._dynamo.reset()
    net = torch.compile(model, backend="aot_eager")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for it in range(6):  # 40 images in batches of 16: two epoch boundaries crossed
            x, y = stream.batch(it)
            assert len(y) == 16
            ours, _ = train_step(net, opt, x, y, 16, 1, nullcontext())
            theirs, _ = train_step(eager, eager_opt, x, y, 16, 1, nullcontext())
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(model.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_a_network_that_fails_to_compile_trains_eagerly_from_where_it_was(capsys):
    """The first compiled step fails after its forward moved BN's running statistics and drew random
    numbers: both are put back, the eager step is taken instead, and one line says why."""
    from reproduce.training.loop import first_step

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    model, opt = network(TINY, TINY_PROTOCOL, "fp32", cpu, torch.contiguous_format)
    twin, twin_opt = network(TINY, TINY_PROTOCOL, "fp32", cpu, torch.contiguous_format)
    twin.load_state_dict(model.state_dict())
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))

    def broken(images):
        model(images)
        torch.rand(3)
        raise RuntimeError("InductorError: no working C++ compiler\nmore detail")

    state = torch.random.get_rng_state()
    net, (loss, _) = first_step(broken, model, model, opt, x, y, 16, 1, nullcontext())
    torch.random.set_rng_state(state)
    expected, _ = train_step(twin, twin_opt, x, y, 16, 1, nullcontext())
    assert net is model and torch.equal(loss, expected)
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)
    assert capsys.readouterr().out == ("speed.compile: compiling failed (RuntimeError: InductorError: no working "
                                       "C++ compiler); training eagerly\n")
