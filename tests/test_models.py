"""The model zoo: sizes from the paper, every network of Tables 1–5, the authors' layout, Eqs. 4, 5 and 8."""
import copy
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import committed_params
from reproduce.config import load_params, run_config
from reproduce.errors import UserError
from reproduce.models import UNITS, build_model, describe
from reproduce.models import shortcuts as S
from reproduce.models.batchnorm import group_batch_norm, layout as bn_layout, precise_statistics

TABLE1_SHORTCUTS = [
    dict(shortcut="identity"),
    dict(shortcut="scaling", shortcut_scale=0.0, residual_scale=1.0),
    dict(shortcut="scaling", shortcut_scale=0.5, residual_scale=1.0),
    dict(shortcut="scaling", shortcut_scale=0.5, residual_scale=0.5),
    dict(shortcut="exclusive_gating", gate_bias=0.0),
    dict(shortcut="exclusive_gating", gate_bias=-6.0),
    dict(shortcut="shortcut_only_gating", gate_bias=-6.0),
    dict(shortcut="conv1x1"),
    dict(shortcut="dropout", dropout_p=0.5),
]


@pytest.mark.parametrize("depth,block,millions", [(110, "basic", 1.7), (164, "bottleneck", 1.7),
                                                   (1001, "bottleneck", 10.2), (1202, "basic", 19.4)])
def test_parameter_counts_match_table4(depth, block, millions):
    params = describe(dataset="cifar10", depth=depth, block=block, unit="full_preact")["params"]
    assert params / 1e6 == pytest.approx(millions, rel=0.02)


def test_imagenet_sizes_and_units():
    for depth, units, params in [(101, 33, 44.5e6), (152, 50, 60.2e6), (200, 66, 64.7e6)]:
        info = describe(dataset="imagenet", depth=depth, unit="original")
        assert info["residual_units"] == units and info["params"] == pytest.approx(params, rel=0.01)
    # ResNet-200 = ResNet-152 + 16 bottleneck units on the 28x28 map (footnote 3): multiply-adds grow by 30%.
    ratio = describe(dataset="imagenet", depth=200)["multiply_adds"] / describe(dataset="imagenet", depth=152)["multiply_adds"]
    assert 1.2 < ratio < 1.4


def _train_step(model, size, classes):
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, classes)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("kw", TABLE1_SHORTCUTS, ids=lambda kw: "-".join(map(str, kw.values())))
@pytest.mark.parametrize("unit", list(UNITS))
def test_every_unit_and_shortcut_trains(unit, kw):
    for block, depth in [("basic", 14), ("bottleneck", 20), ("single", 8)]:
        _train_step(build_model(dataset="cifar10", depth=depth, block=block, unit=unit, **kw), 32, 10)


@pytest.mark.parametrize("spec", [
    *[dict(depth=110, block="basic", unit="original", **kw) for kw in TABLE1_SHORTCUTS],
    *[dict(depth=d, block=b, unit=u) for u in UNITS for d, b in [(110, "basic"), (164, "bottleneck")]],
    *[dict(depth=110, block="single", unit=u) for u in ("original", "full_preact")],
    *[dict(dataset="cifar100", depth=d, block="bottleneck", unit=u) for d in (164, 1001) for u in ("original", "full_preact")],
    dict(depth=1001, block="bottleneck", unit="original"), dict(depth=1202, block="basic", unit="original"),
], ids=str)
def test_paper_cifar_networks_build_at_full_depth(spec):
    spec = {"dataset": "cifar10", **spec}
    with torch.device("meta"):
        out = build_model(**spec)(torch.empty(2, 3, 32, 32))
    assert out.shape == (2, 100 if spec["dataset"] == "cifar100" else 10)


@pytest.mark.parametrize("depth,unit", [(101, "original"), (101, "bn_after_add"), (152, "original"),
                                        (152, "full_preact"), (200, "original"), (200, "full_preact")])
def test_imagenet_networks_train_and_accept_320_crops(depth, unit):
    model = build_model(dataset="imagenet", depth=depth, unit=unit)
    _train_step(model, 64, 1000)
    with torch.device("meta"):
        assert build_model(dataset="imagenet", depth=depth, unit=unit).eval()(torch.empty(1, 3, 320, 320)).shape == (1, 1000)


def test_authors_layout_cifar_bottleneck_preact():
    """resnet-pre-act.lua: conv1 alone; shared BN-ReLU where a stage starts; stride on the first 1x1;
    projection without BN fed by the activated input; extra BN-ReLU after the last unit."""
    m = build_model(dataset="cifar10", depth=20, block="bottleneck", unit="full_preact")
    assert [type(l) for l in m.stem] == [nn.Conv2d]
    first = m.stages[1][0]
    assert [type(l) for l in first.split] == [nn.BatchNorm2d, nn.ReLU]
    assert isinstance(first.shortcut.match, nn.Conv2d) and first.shortcut.match.stride == (2, 2)
    assert first.residual[0].stride == (2, 2) and first.residual[0].kernel_size == (1, 1)
    assert isinstance(m.stages[0][0].shortcut.match, nn.Conv2d)  # 16 -> 64 at stride 1 projects too
    later = m.stages[1][1]
    assert isinstance(later.split, nn.Identity) and isinstance(later.residual[0], nn.BatchNorm2d)
    assert [type(l) for l in m.final] == [nn.BatchNorm2d, nn.ReLU]


def test_authors_layout_original_and_imagenet():
    orig = build_model(dataset="cifar10", depth=20, block="bottleneck", unit="original")
    assert [type(l) for l in orig.stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] and len(orig.final) == 0
    assert [type(l) for l in orig.stages[1][0].shortcut.match] == [nn.Conv2d, nn.BatchNorm2d]
    basic = build_model(dataset="cifar10", depth=20, block="basic", unit="original")
    assert isinstance(basic.stages[1][0].shortcut.match, S.ZeroPad)  # type A: no parameters
    net = build_model(dataset="imagenet", depth=101, unit="full_preact")
    assert isinstance(net.stages[0][0].split, nn.Identity) and isinstance(net.stages[0][0].residual[0], nn.Conv2d)


def _strides(model):
    """(stride of the first 1x1, stride of the 3x3) of the first unit of the second stage."""
    convs = [m for m in model.stages[1][0].residual if isinstance(m, nn.Conv2d)]
    return convs[0].stride[0], convs[1].stride[0]


@pytest.mark.parametrize("experiment,recipe,strides", [("in_r152_full_preact", "paper", (2, 1)),
                                                       ("in_r200_full_preact_aspect", "fb.resnet.torch", (1, 2)),
                                                       ("r1001_full_preact_b64", "fb.resnet.torch", (2, 1))])
def test_bottleneck_stride_follows_the_recipe(experiment, recipe, strides):
    """[1]'s Caffe models stride the first 1x1 (res3a_branch2a), fb.resnet.torch the 3x3 (preresnet.lua);
    CIFAR bottlenecks stride the 1x1 in both (resnet-pre-act.lua)."""
    params = load_params(committed_params())
    cfg = run_config(params, experiment)
    assert cfg.recipe == recipe
    with torch.device("meta"):
        assert _strides(build_model(**{**cfg.model, "depth": 50 if cfg.model["dataset"] == "imagenet" else 20})) == strides


def test_pool1_windows_follow_the_recipe():
    """[1]'s pool1: 3x3/2, no padding, ceil rounding; fb.resnet.torch: padding 1. Both give 56x56 from
    224 (and 80x80 from 320), with the windows a pixel apart."""
    caffe, torch_ = (build_model(dataset="imagenet", depth=50, pool1=p).stem[3] for p in ("caffe", "torch"))
    assert (caffe.padding, caffe.ceil_mode, torch_.padding, torch_.ceil_mode) == (0, True, 1, False)
    for size, out in ((112, 56), (160, 80)):
        x = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size)
        a, b = caffe(x), torch_(x)
        assert a.shape[-1] == b.shape[-1] == out
        assert a[0, 0, 0, 0] == x[0, 0, 2, 2] and b[0, 0, 0, 0] == x[0, 0, 1, 1]  # each window's largest pixel
    assert describe(dataset="imagenet", depth=50)["pool1"] == "torch"
    with pytest.raises(UserError, match="only ImageNet"):
        build_model(dataset="cifar10", depth=20, block="basic", pool1="caffe")


def test_activation_memory_per_image():
    """Saved for backward, fp32, per 32x32 image: ResNet-110 8.1 MiB, -164 23.9, -1001 147 (counted on
    shapes); activation checkpointing keeps far less."""
    from reproduce.training.memory import activation_bytes

    mib = {d: activation_bytes(tuple(sorted(dict(dataset="cifar10", depth=d, block=b, unit="full_preact").items())), 32)
           / 2**20 for d, b in ((110, "basic"), (164, "bottleneck"), (1001, "bottleneck"))}
    assert mib == pytest.approx({110: 8.07, 164: 23.9, 1001: 147.0}, rel=0.01)
    light = dict(dataset="cifar10", depth=1001, block="bottleneck", unit="full_preact", activation_checkpointing=True)
    assert activation_bytes(tuple(sorted(light.items())), 32) < mib[1001] * 2**20 / 4


def test_imagenet_multiply_adds_are_those_of_1():
    """With the stride on the 1x1, ResNet-101/152 cost what [1]'s Table 1 says (7.6 and 11.3 G); on the
    3x3 they cost more (the later "ResNet v1.5"), and `describe` says where the stride is."""
    for depth, billions in [(101, 7.6), (152, 11.3)]:
        paper = describe(dataset="imagenet", depth=depth, unit="original")
        assert paper["stride_on"] == "1x1" and paper["multiply_adds"] / 1e9 == pytest.approx(billions, abs=0.05)
        v15 = describe(dataset="imagenet", depth=depth, unit="original", stride_on="3x3")
        assert v15["stride_on"] == "3x3" and v15["multiply_adds"] > paper["multiply_adds"] * 1.02
    with pytest.raises(UserError, match="only bottleneck"):
        build_model(dataset="cifar10", depth=20, block="basic", stride_on="3x3")


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["NCHW", "channels-last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_bn_normalises_each_group_of_bn_batch_images(fmt, dtype):
    """The paper's per-GPU BN: a batch of 8 with bn_batch 4 is normalised as its two halves would be, each
    on its own, gradients included; the running statistics are the first half's; evaluation is plain BN
    with them."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).to(dtype)
    nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -1, 1)
    alone = copy.deepcopy(bn)
    group_batch_norm(bn, batch_size=8, bn_batch=4)
    x = (torch.randn(8, 3, 5, 5, dtype=dtype) * 3 + 1).contiguous(memory_format=fmt).requires_grad_()
    y = bn(x)
    by_hand = torch.cat([F.batch_norm(h, None, None, bn.weight, bn.bias, training=True) for h in x.chunk(2)])
    torch.testing.assert_close(y, by_hand)
    assert y.is_contiguous(memory_format=fmt)
    weights = torch.arange(8.0, dtype=dtype)[:, None, None, None]
    grads = torch.autograd.grad((y * weights).sum(), [x, bn.weight, bn.bias])
    by_hand_grads = torch.autograd.grad((by_hand * weights).sum(), [x, bn.weight, bn.bias])
    for g, h in zip(grads, by_hand_grads):
        torch.testing.assert_close(g, h)
    alone(x[:4])
    torch.testing.assert_close(bn.running_mean, alone.running_mean)
    torch.testing.assert_close(bn.running_var, alone.running_var)
    assert not torch.allclose(F.batch_norm(x, None, None, training=True), by_hand)  # the groups matter
    bn.eval(), alone.eval()
    torch.testing.assert_close(bn(x), alone(x))
    assert set(bn.state_dict()) == set(nn.BatchNorm2d(3).state_dict())


def test_precise_statistics_average_each_groups_mean_and_variance():
    """[1]'s after-training statistics: every BN layer's running mean and variance become the averages,
    over the batches, of each group's batch mean and unbiased variance (by hand on the first BN)."""
    torch.manual_seed(0)
    model = build_model(dataset="cifar10", depth=8, block="basic", unit="original").train()
    group_batch_norm(model, batch_size=8, bn_batch=4)
    batches = [torch.randn(8, 3, 12, 12) * 2 + 1 for _ in range(3)]
    first = model.stem[1]  # conv1's BN: its input is conv1's output
    stats = []
    for x in batches:
        h = model.stem[0](x).detach()
        stats += [(part.mean((0, 2, 3)), part.var((0, 2, 3))) for part in h.chunk(2)]
    precise_statistics(model, batches)
    torch.testing.assert_close(first.running_mean, torch.stack([m for m, _ in stats]).mean(0))
    torch.testing.assert_close(first.running_var, torch.stack([v for _, v in stats]).mean(0))
    assert model.training  # as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    precise_statistics(model, batches)  # a function of the batches alone
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if "running" in k)


@pytest.mark.parametrize("batch,bn_batch,world,layout", [(128, 64, 1, (2, 1)), (128, 64, 2, (1, 1)),
                                                         (128, 64, 8, (1, 4)), (256, 32, 8, (1, 1)),
                                                         (256, 32, 2, (4, 1))])
def test_bn_groups_spread_over_any_number_of_processes(batch, bn_batch, world, layout):
    assert bn_layout(batch, bn_batch, world) == layout  # (groups per process, processes per group)


def test_bn_groups_that_cannot_be_spread_are_refused():
    with pytest.raises(UserError, match="3 processes cannot hold 2 BN groups of 64"):
        bn_layout(128, 64, 3)


def test_initialisation_follows_the_authors():
    torch.manual_seed(0)
    m = build_model(dataset="cifar10", depth=56, block="basic", shortcut="exclusive_gating", gate_bias=-6)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.out_channels == 64 and c.kernel_size == (3, 3)]
    w = torch.cat([c.weight.flatten() for c in convs])
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.02)
    gates = [g for g in m.modules() if isinstance(g, S.Gate)]
    assert gates and all((g.conv.bias == -6).all() for g in gates)
    others = [c for c in m.modules() if isinstance(c, nn.Conv2d) and all(c is not g.conv for g in gates)]
    assert all(c.bias is None for c in others)
    assert (m.fc.bias == 0).all() and m.fc.weight.abs().max() <= 1 / math.sqrt(64)


def _unit_io(model, x, stage):
    """Inputs x_l and residuals F(x_l) of the same-shape units of one stage, from hooks."""
    xs, fs = [], []
    units = list(model.stages[stage])[1:]
    hooks = [u.register_forward_pre_hook(lambda mod, a: xs.append(a[0])) for u in units]
    hooks += [u.residual.register_forward_hook(lambda mod, a, out: fs.append(out)) for u in units]
    hooks.append(units[-1].register_forward_hook(lambda mod, a, out: xs.append(out)))
    model(x)
    for h in hooks:
        h.remove()
    return xs, fs


def test_eq4_forward_signal_is_x_l_plus_sum_of_residuals():
    torch.manual_seed(0)
    model = build_model(dataset="cifar10", depth=56, block="basic", unit="full_preact").eval()
    xs, fs = _unit_io(model, torch.randn(4, 3, 32, 32), stage=1)
    for l in (0, 3):
        acc = xs[l]
        for f in fs[l:]:
            acc = acc + f  # the same additions in the same order: Eq. 4 holds bit for bit
        assert torch.equal(acc, xs[-1])
    # with the original unit f = ReLU breaks Eq. 4
    orig = build_model(dataset="cifar10", depth=56, block="basic", unit="original").eval()
    xs, fs = _unit_io(orig, torch.randn(4, 3, 32, 32), stage=1)
    assert not torch.allclose(xs[0] + sum(fs), xs[-1])


def _gradient_ratio(depth, **kw):
    """‖∂E/∂x_l‖ / ‖∂E/∂x_L‖ between the first and last same-shape unit of the last stage, at init."""
    torch.manual_seed(0)
    model = build_model(dataset="cifar10", depth=depth, block="basic", unit="full_preact", **kw)
    grads = {}
    units = list(model.stages[2])[1:]
    units[0].register_forward_pre_hook(lambda m, a: a[0].register_hook(lambda g: grads.setdefault("first", g)) and None)
    units[-1].register_forward_hook(lambda m, a, o: o.register_hook(lambda g: grads.setdefault("last", g)) and None)
    nn.functional.cross_entropy(model(torch.randn(16, 3, 32, 32)), torch.randint(0, 10, (16,))).backward()
    return (grads["first"].norm() / grads["last"].norm()).item(), len(units)


def test_eq5_vs_eq8_gradient_propagation_at_init():
    # Identity shortcuts (Eq. 5): the ratio grows only slowly (here at most linearly) with depth.
    for depth in (110, 218):
        ratio, units = _gradient_ratio(depth)
        assert 1 <= ratio <= 1 + units
    # λ = 0.5 on every shortcut (Eq. 8): with BN inside F the factor does not vanish but explodes;
    # either way log ratio deviates from 0 in proportion to the number of units: exponentially.
    logs = {}
    for depth in (110, 218):
        ratio, units = _gradient_ratio(depth, shortcut="scaling", shortcut_scale=0.5, residual_scale=1.0)
        logs[units] = abs(math.log(ratio))
        assert logs[units] > 0.15 * units
    (u1, l1), (u2, l2) = sorted(logs.items())
    assert l2 / l1 == pytest.approx(u2 / u1, rel=0.3)


def test_activation_checkpointing_gives_the_same_step():
    torch.manual_seed(0)
    spec = dict(dataset="cifar10", depth=20, block="bottleneck", unit="full_preact", shortcut="dropout")
    plain = build_model(**spec)
    ckpt = build_model(**spec, activation_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(8, 3, 32, 32)
    for m in (plain, ckpt):
        torch.manual_seed(1)
        m(x).square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(a, b, msg=name)  # BN statistics moved once, not twice


def test_activation_checkpointing_recomputes_all_but_the_last_stage():
    model = build_model(dataset="cifar10", depth=56, block="basic", activation_checkpointing=True)
    calls = {}
    for i, unit in enumerate(model.units()):
        unit.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert [calls[i] for i in range(27)] == [2] * 18 + [1] * 9  # stages of 9 units: 1 and 2 run twice
    calls.clear()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert set(calls.values()) == {1}


def test_describe_counts_what_checkpointing_recomputes():
    spec = dict(dataset="cifar10", depth=1001, block="bottleneck")
    plain, ckpt = describe(**spec), describe(**spec, activation_checkpointing=True)
    assert plain["multiply_adds_recomputed"] == 0 and ckpt["multiply_adds"] == plain["multiply_adds"]
    # Three stages of equal multiply-adds: the first two run a second time.
    assert ckpt["multiply_adds_recomputed"] / ckpt["multiply_adds"] == pytest.approx(2 / 3, rel=0.01)


def test_dropout_shortcut_scales_by_its_expectation():
    sc = S.DropoutShortcut(nn.Identity(), p=0.5)
    x, zero = torch.ones(10000), torch.zeros(10000)
    assert sc.train()(x, zero).mean().item() == pytest.approx(0.5, abs=0.03)
    assert torch.equal(sc.eval()(x, zero), x * 0.5)


@pytest.mark.parametrize("spec,words", [
    (dict(dataset="cifar10", depth=100, block="basic"), ["depth", "6n+2"]),
    (dict(dataset="cifar10", depth=164, block="single", unit="full"), ["unit", "full_preact"]),
    (dict(dataset="cifar10", depth=110, block="basic", shortcut="gate"), ["shortcut", "exclusive_gating"]),
    (dict(dataset="cifar10", depth=110, block="basic", gate_bias=-6), ["gate_bias", "identity"]),
    (dict(dataset="cifar10", depth=110, block="basic", shortcut="scaling", dropout_p=0.5), ["dropout_p"]),
    (dict(dataset="cifar10", depth=110), ["block"]),
    (dict(depth=110, block="basic"), ["dataset"]),
    (dict(dataset="imagenet", depth=110), ["depth", "152"]),
    (dict(dataset="imagenet", depth=152, block="basic"), ["bottleneck"]),
    (dict(dataset="mnist", depth=110, block="basic"), ["dataset", "cifar10"]),
    (dict(dataset="cifar10", depth=110, blok="basic"), ["blok", "did you mean 'block'"]),
])
def test_bad_specs_give_one_clear_error(spec, words):
    with pytest.raises(UserError) as e:
        build_model(**spec)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_describe_cli():
    cmd = [sys.executable, "-m", "reproduce", "describe", "--dataset", "cifar10", "--depth", "1001",
           "--block", "bottleneck", "--unit", "full_preact", "--shortcut", "identity", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert '"params": 10327706' in out and '"multiply_adds"' in out
    bad = subprocess.run(cmd[:8] + ["--block", "basic"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "6n+2" in bad.stderr


@pytest.mark.parametrize("experiment,recipe,stride,sgd", [("in_r152_original", "paper", "1x1", "caffe"),
                                                          ("in_r200_full_preact_aspect", "fb.resnet.torch", "3x3", "nesterov")])
def test_describe_names_an_experiments_recipe(experiment, recipe, stride, sgd):
    cmd = [sys.executable, "-m", "reproduce", "describe", "--experiment", experiment, "--params",
           str(committed_params()), "--json"]
    info = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert (info["recipe"], info["stride_on"], info["sgd"], info["bn_batch"]) == (recipe, stride, sgd, 32)
