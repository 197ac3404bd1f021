"""Residual units of Fig. 4: where BN and ReLU sit relative to the weight layers and the addition.

A unit computes x_{l+1} = f(h(x_l) ⊕ F(x_l)) (Eqs. 1–2). Each class lays out F from the unit's
convolutions (two 3x3 for basic, 1x1-3x3-1x1 for bottleneck, one 3x3 for the "1layer" units of
Table 3) and chooses the after-addition activation f. The shortcut (Fig. 2) is passed in.

Pre-activation units start F with their activation. At the first unit of a stage it is moved in
front of the split so the shortcut sees it too (paper appendix, "before splitting into two paths";
fb.resnet.torch `models/preresnet.lua` 'both_preact', resnet-1k-layers `resnet-pre-act.lua`
"common BN, ReLU"), or dropped where the stem already activated the input (ImageNet's first
stage, 'no_preact'). That is the unit's `preact_input`: 'branch', 'shared' or 'none'.
"""
from torch import nn


def bn(channels):
    return nn.BatchNorm2d(channels)


def relu():
    return nn.ReLU()


class ResidualUnit(nn.Module):
    preact = False  # does F begin with an activation (Fig. 4(d), (e))?

    def __init__(self, convs, shortcut, preact_input="branch"):
        super().__init__()
        layers = self.residual_layers(convs)
        first_conv = next(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d))
        lead, rest = layers[:first_conv], layers[first_conv:]
        self.split = nn.Sequential(*lead) if preact_input == "shared" else nn.Identity()
        self.residual = nn.Sequential(*(lead + rest if preact_input == "branch" else rest))
        self.shortcut = shortcut
        self.after_add = self.after_addition(convs[-1].out_channels)

    def forward(self, x):
        x = self.split(x)
        return self.after_add(self.shortcut(x, self.residual(x)))

    def after_addition(self, channels):
        return nn.Identity()

    # What the network puts after its stem conv and after its last unit, so that the whole
    # network is the one Fig. 5 derives (paper appendix on the first and last units).
    @staticmethod
    def stem_tail(channels):
        return [bn(channels), relu()]

    @staticmethod
    def final_activation(channels):
        return []


def _post_activation(convs):
    """conv-BN-ReLU for every weight layer, as in the original unit [1]."""
    return [m for conv in convs for m in (conv, bn(conv.out_channels), relu())]


class Original(ResidualUnit):
    """Fig. 4(a): F = conv-BN-ReLU-...-conv-BN; f = ReLU after the addition."""

    def residual_layers(self, convs):
        return _post_activation(convs)[:-1]

    def after_addition(self, channels):
        return relu()


class BNAfterAddition(ResidualUnit):
    """Fig. 4(b): F = conv-BN-ReLU-...-conv; f = BN-ReLU after the addition."""

    def residual_layers(self, convs):
        return _post_activation(convs)[:-2]

    def after_addition(self, channels):
        return nn.Sequential(bn(channels), relu())


class ReLUBeforeAddition(ResidualUnit):
    """Fig. 4(c): F = conv-BN-ReLU-...-conv-BN-ReLU (so F ≥ 0); f = identity."""

    def residual_layers(self, convs):
        return _post_activation(convs)


class ReLUOnlyPreact(ResidualUnit):
    """Fig. 4(d): F = ReLU-conv-BN-...-ReLU-conv-BN; f = identity."""

    preact = True

    def residual_layers(self, convs):
        return [m for conv in convs for m in (relu(), conv, bn(conv.out_channels))]

    @staticmethod
    def stem_tail(channels):
        return [bn(channels)]  # its ReLU is the first unit's pre-activation

    @staticmethod
    def final_activation(channels):
        return [relu()]


class FullPreact(ResidualUnit):
    """Fig. 4(e), the proposed unit: F = BN-ReLU-conv-...-BN-ReLU-conv; f = identity."""

    preact = True

    def residual_layers(self, convs):
        return [m for conv in convs for m in (bn(conv.in_channels), relu(), conv)]

    @staticmethod
    def stem_tail(channels):
        return []  # conv1 is followed directly by the first unit's BN-ReLU

    @staticmethod
    def final_activation(channels):
        return [bn(channels), relu()]  # the extra activation after the last addition


UNITS = {
    "original": Original,
    "bn_after_add": BNAfterAddition,
    "relu_before_add": ReLUBeforeAddition,
    "relu_only_preact": ReLUOnlyPreact,
    "full_preact": FullPreact,
}
