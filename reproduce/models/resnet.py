"""One builder for every network the paper trains: CIFAR ResNet-110/164/1001/1202, ImageNet 101/152/200."""
import math
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

from . import shortcuts as S
from .spec import CIFAR_LAYERS, IMAGENET_STAGES, ModelSpec, parse_spec
from .units import UNITS


class ResNet(nn.Module):
    """stem → stages of residual units → final activation → global average pool → linear."""

    def __init__(self, stem, stages, final, features, classes, activation_checkpointing=False):
        super().__init__()
        self.stem = nn.Sequential(*stem)
        self.stages = nn.Sequential(*(nn.Sequential(*units) for units in stages))
        self.final = nn.Sequential(*final)
        self.fc = nn.Linear(features, classes)
        self.activation_checkpointing = activation_checkpointing

    def units(self):
        return [unit for stage in self.stages for unit in stage]

    def forward(self, x):
        x = self.stem(x)
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            # Keep only the inputs of segments of ~√n units and recompute each segment in backward.
            # The last stage is never recomputed: backward needs its activations first anyway, and
            # a stage halves the resolution and doubles the width, so its units cost the same
            # multiply-adds for half the activations of the stage before. Keeping them saves a third
            # of the recompute (CIFAR) for a few segments' memory (bench: ResNet-1001 1.45× → 1.25×
            # the plain step time, 6.2× → 5.2× less peak memory). Reentrant: no per-tensor hooks in
            # its recompute, ~15% less time than the non-reentrant variant on CPU.
            *early, last = self.stages
            units = [unit for stage in early for unit in stage]
            size = math.ceil(math.sqrt(len(units)))
            for i in range(0, len(units), size):
                x = checkpoint(_forward_once, nn.Sequential(*units[i:i + size]), x, use_reentrant=True)
            x = last(x)
        else:
            x = self.stages(x)
        # Global average pooling equals the authors' 8x8 (CIFAR) / 7x7 (ImageNet) pool at training
        # size, and lets the fully convolutional net be tested on 320x320 crops (Table 5). A mean over
        # H, W rather than AdaptiveAvgPool2d: its CUDA backward is nondeterministic (same bits on a CPU).
        return self.fc(self.final(x).mean((2, 3)))


def _forward_once(segment, x):
    """A checkpointed segment's forward: first without autograd (statistics move), then again with it
    inside backward (the recompute: statistics stay)."""
    with _bn_stats_frozen(segment) if torch.is_grad_enabled() else nullcontext():
        return segment(x)


@contextmanager
def _bn_stats_frozen(module):
    """Checkpointing runs a unit's forward twice; its BN running statistics must move only once."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 − 0)·running + 0·batch: unchanged
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)  # no conv bias: BN follows


def unit_convs(block, cin, cout, stride, stride_on):
    if block == "basic":
        return [conv(cin, cout, 3, stride), conv(cout, cout, 3)]
    if block == "single":
        return [conv(cin, cout, 3, stride)]
    mid = cout // 4  # bottleneck width is a quarter of the output (resnet-pre-act.lua)
    s1, s3 = (1, stride) if stride_on == "3x3" else (stride, 1)
    return [conv(cin, mid, 1, s1), conv(mid, mid, 3, s3), conv(mid, cout, 1)]


def make_shortcut(spec: ModelSpec, preact: bool, cin, cout, stride):
    changes_shape = cin != cout or stride != 1
    projection = spec.shortcut == "conv1x1" or (spec.block == "bottleneck" and changes_shape)
    match = S.match(cin, cout, stride, "projection" if projection else "pad", bn=not preact)
    if spec.shortcut == "scaling":
        return S.Scaling(match, spec.shortcut_scale, spec.residual_scale)
    if spec.shortcut in ("exclusive_gating", "shortcut_only_gating"):
        gate = S.Gate(cin, cout, stride, spec.gate_bias)
        cls = S.ExclusiveGating if spec.shortcut == "exclusive_gating" else S.ShortcutOnlyGating
        return cls(match, gate)
    if spec.shortcut == "dropout":
        return S.DropoutShortcut(match, spec.dropout_p)
    return S.Shortcut(match)


def build_model(**spec) -> ResNet:
    """Build and initialise a network from a spec (keys: see `ModelSpec`); bad specs raise UserError."""
    spec = parse_spec(spec)
    Unit = UNITS[spec.unit]
    if spec.dataset == "imagenet":
        # conv1 7x7/2, BN, ReLU, max-pool (models/resnet.lua and models/preresnet.lua alike); the
        # first stage's first unit then needs no pre-activation ('no_preact').
        pool = nn.MaxPool2d(3, 2, 0, ceil_mode=True) if spec.stem_pool == "caffe" else nn.MaxPool2d(3, 2, 1)
        stem = [conv(3, 64, 7, 2), nn.BatchNorm2d(64), nn.ReLU(), pool]
        counts, widths, strides = IMAGENET_STAGES[spec.depth], (256, 512, 1024, 2048), (1, 2, 2, 2)
        first_input, cin = ("none", "shared", "shared", "shared"), 64
    else:
        n = (spec.depth - 2) // (3 * CIFAR_LAYERS[spec.block])
        widths = (64, 128, 256) if spec.block == "bottleneck" else (16, 32, 64)
        stem = [conv(3, 16, 3), *Unit.stem_tail(16)]
        counts, strides, first_input, cin = (n,) * 3, (1, 2, 2), ("shared",) * 3, 16
    stages = []
    for count, cout, stride, first in zip(counts, widths, strides, first_input):
        units = []
        for i in range(count):
            s = stride if i == 0 else 1
            units.append(Unit(unit_convs(spec.block, cin, cout, s, spec.stride),
                              make_shortcut(spec, Unit.preact, cin, cout, s),
                              preact_input=first if i == 0 else "branch"))
            cin = cout
        stages.append(units)
    model = ResNet(stem, stages, Unit.final_activation(cin), cin, spec.classes, spec.activation_checkpointing)
    if not model.fc.weight.is_meta:  # a network of shapes only (`describe`) has no values to initialise
        init_weights(model)
    model.spec = spec
    return model


def init_weights(model: nn.Module):
    """The authors' ConvInit/BNInit (resnet-pre-act.lua, models/preresnet.lua): He normal with fan-out."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            # The weight keeps PyTorch's U(±1/√fan_in), which is Torch7's nn.Linear reset; bias 0.
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, S.Gate):
            nn.init.constant_(m.conv.bias, m.initial_bias)


def describe(**spec) -> dict:
    """Parameter count and multiply-adds of one forward pass at the dataset's input size (32 or 224)."""
    spec = parse_spec(spec)
    with torch.device("meta"):  # shapes only: a 1001-layer net is described without computing it
        model = build_model(**spec.model_dump()).eval()
        x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    by_module = counter.get_flop_counts()
    early = sum(sum(by_module[f"ResNet.stages.{i}"].values()) for i in range(len(model.stages) - 1))
    return {
        **spec.model_dump(exclude_none=True),
        **({"stride_on": spec.stride} if spec.stride else {}),
        **({"pool1": spec.stem_pool} if spec.stem_pool else {}),
        "input_size": spec.input_size,
        "params": sum(p.numel() for p in model.parameters()),
        "multiply_adds": counter.get_total_flops() // 2,  # the counter reports 2 FLOPs per multiply-add
        "residual_units": len(model.units()),
        # what a training step with activation checkpointing runs a second time: every stage but the last
        "multiply_adds_recomputed": early // 2 if spec.activation_checkpointing else 0,
    }
