"""Skip connections of Fig. 2: how h(x_l) joins the residual branch F(x_l).

Every shortcut is called as ``shortcut(x, fx)`` and returns y = h(x) ⊕ F, because the gated
variants scale F too. ``match`` makes x fit F's shape where a unit changes width or resolution:
- identity where the shapes agree;
- type A (subsample, zero-pad the new channels; no parameters) for the basic CIFAR networks
  (fb.resnet.torch `models/resnet.lua`/`preresnet.lua` with `opts.lua`'s CIFAR default);
- a strided 1x1 projection for bottleneck networks (paper appendix; resnet-1k-layers
  `resnet-pre-act.lua`), followed by BN in post-activation networks (`models/resnet.lua`) and
  without BN in pre-activation ones (`resnet-pre-act.lua`, `models/preresnet.lua`).
The variants of Table 1 modify h on top of ``match``, in every unit, as "for all shortcuts" in Sec. 3.
"""
import torch
from torch import nn
import torch.nn.functional as F


class ZeroPad(nn.Module):
    """Option A of [1]: keep every `stride`-th pixel and append all-zero channels."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def match(cin: int, cout: int, stride: int, kind: str, bn: bool) -> nn.Module:
    """The shape-matching part of h: `kind` is 'pad' (type A) or 'projection' (1x1 conv)."""
    if kind == "projection":
        conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(cout)) if bn else conv
    if cin == cout and stride == 1:
        return nn.Identity()
    return ZeroPad(cout - cin, stride)


class Shortcut(nn.Module):
    """Fig. 2(a) identity, y = x + F; with a projection `match` also Fig. 2(e), the 1x1 conv shortcut."""

    def __init__(self, match: nn.Module):
        super().__init__()
        self.match = match

    def forward(self, x, fx):
        return self.match(x) + fx


class Scaling(Shortcut):
    """Fig. 2(b): y = λ·x + μ·F with constants (λ, μ) = (shortcut_scale, residual_scale)."""

    def __init__(self, match, shortcut_scale: float, residual_scale: float):
        super().__init__(match)
        self.shortcut_scale, self.residual_scale = shortcut_scale, residual_scale

    def forward(self, x, fx):
        return self.shortcut_scale * self.match(x) + self.residual_scale * fx


class Gate(nn.Module):
    """g(x) = σ(W_g x + b_g), a 1x1 conv with one gate per output element (Sec. 3.1)."""

    def __init__(self, cin: int, cout: int, stride: int, bias: float):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=True)
        self.initial_bias = bias  # b_g's initial value, restored by the network's init

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


class ExclusiveGating(Shortcut):
    """Fig. 2(c), Highway-style: y = (1 − g(x))·x + g(x)·F."""

    def __init__(self, match, gate: Gate):
        super().__init__(match)
        self.gate = gate

    def forward(self, x, fx):
        g = self.gate(x)
        return (1 - g) * self.match(x) + g * fx


class ShortcutOnlyGating(ExclusiveGating):
    """Fig. 2(d): y = (1 − g(x))·x + F, F left unscaled."""

    def forward(self, x, fx):
        return (1 - self.gate(x)) * self.match(x) + fx


class DropoutShortcut(Shortcut):
    """Fig. 2(f): dropout on the shortcut's output, y = m ⊙ x + F with m ~ Bernoulli(1 − p).

    Classic (not inverted) dropout: the paper's analysis (Sec. 3.1) rests on dropout imposing "a
    scale of λ with an expectation of 0.5" on the shortcut, so the kept values are not rescaled by
    1/(1 − p) in training; evaluation multiplies by the expectation 1 − p instead.
    """

    def __init__(self, match, p: float):
        super().__init__(match)
        self.p = p

    def forward(self, x, fx):
        h = self.match(x)
        if self.training:
            h = h * torch.bernoulli(torch.full_like(h, 1 - self.p))
        else:
            h = h * (1 - self.p)
        return h + fx
