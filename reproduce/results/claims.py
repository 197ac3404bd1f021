"""The paper's claims, each in its own words, each made of the comparisons its sentence makes, no more.

A comparison is one of four kinds (judge.py tests them):
- `below`: A's error (or training loss) is below B's; with `value`, below that fixed number;
- `close`: A and B are within δ of each other (equivalence);
- `not_below`: A is not below B by more than δ (the gain is small: non-superiority).
Keys: the test errors the tables print, and the training metrics the curves show (`train_error`,
`train_loss`: the last log window's; `_early`: the first eighth of training, training/final.py).
"""
from dataclasses import dataclass

C10, TOP1_224, TOP1_320 = "test_error", "test_top1_center224", "test_top1_center320"
TRAIN_ERROR, TRAIN_LOSS = "train_error", "train_loss"
TABLE3 = ["r110_1layer", "r110", "r164", "r1001", "c100_r164", "c100_r1001"]  # (original, full_preact) pairs


@dataclass(frozen=True)
class Compare:
    kind: str  # below | close | not_below
    a: str  # an experiment
    b: str  # an experiment, or the name of `value`
    key: str = C10
    value: float | None = None  # `below` a number quoted from other work


@dataclass(frozen=True)
class Claim:
    name: str
    where: str
    quote: str
    comparisons: tuple

    @property
    def training(self) -> bool:
        return any(c.key.startswith("train_") for c in self.comparisons)


def _below(a, others, key=C10):
    return tuple(Compare("below", a, b, key) for b in others)


def _above(a, others, key=C10):
    """`a` is worse than each of `others`."""
    return tuple(Compare("below", b, a, key) for b in others)


_TABLE1 = ["t1_scale_0_1", "t1_scale_05_1", "t1_scale_05_05", *(f"t1_exclusive_gate_b{b}" for b in range(8)),
           "t1_shortcut_gate_b0", "t1_conv1x1", "t1_dropout"]
_TABLE2 = ["r110", "r164"]
CLAIMS = [
    Claim("Identity shortcuts beat every shortcut modification of Table 1 (shortcut-only gating at b_g = −6 "
          "aside: the paper calls it much closer)", "Sec. 1, Table 1",
          "the identity mapping h(x_l) = x_l chosen in [1] achieves the fastest error reduction and lowest training "
          "loss among all variants we investigated, whereas skip connections of scaling, gating, and 1×1 "
          "convolutions all lead to higher training loss and error", _below("r110_original", _TABLE1)),
    Claim("Exclusive gating: the best initial bias, b_g = −6, beats the other biases", "Sec. 3.1, Table 1",
          "We find that the initialization of the biases b_g is critical for training gated models […] The best "
          "value (−6 here) is then used for training on the training set, leading to a test result of 8.70%",
          _below("t1_exclusive_gate_b6", [f"t1_exclusive_gate_b{b}" for b in (0, 1, 2, 3, 4, 5, 7)])),
    Claim("Shortcut-only gating at b_g = −6 is much closer to the baseline than at b_g = 0", "Sec. 3.1, Table 1",
          "The initialized value of b_g is still essential in this case. When the initialized b_g is 0 […] the "
          "network converges to a poor result of 12.86% […] the shortcut connection is nearly an identity mapping. "
          "Therefore, the result (6.91%, Table 1) is much closer to the ResNet-110 baseline.",
          _below("t1_shortcut_gate_b6", ["t1_shortcut_gate_b0"])),
    Claim("BN after addition is worse than the original unit", "Sec. 4.1, Table 2",
          "The results become considerably worse than the baseline (Table 2).",
          sum((_above(f"{d}_bn_after_add", [f"{d}_original"]) for d in _TABLE2), ())),
    Claim("ReLU before addition is worse than the original unit on ResNet-110", "Sec. 4.1, Table 2",
          "This may impact the representational ability, and the result is worse (7.84%, Table 2) than the baseline.",
          _above("r110_relu_before_add", ["r110_original"])),
    Claim("ReLU-only pre-activation performs like the original unit", "Sec. 4.1, Table 2",
          "Table 2 shows that the ReLU-only pre-activation performs very similar to the baseline on ResNet-110/164.",
          tuple(Compare("close", f"{d}_relu_only_preact", f"{d}_original") for d in _TABLE2)),
    Claim("Full pre-activation improves on the original unit (ResNet-110 and ResNet-164)", "Sec. 4.1, Table 2",
          "Somehow surprisingly, when BN and ReLU are both used as pre-activation, the results are improved by "
          "healthy margins (Table 2 and Table 3).",
          sum((_below(f"{d}_full_preact", [f"{d}_original"]) for d in _TABLE2), ())),
    Claim("Pre-activation beats the original unit on every network of Table 3", "Sec. 4.1, Table 3",
          "Table 3 shows that our “pre-activation” models are consistently better than the baseline counterparts.",
          tuple(Compare("below", f"{n}_full_preact", f"{n}_original") for n in TABLE3)),
    Claim("Pre-activation eases optimisation of ResNet-1001: lower training error early", "Sec. 4.2, Fig. 1",
          "This effect is particularly obvious when training the 1001-layer ResNet. Fig. 1 shows the curves. Using "
          "the original design in [1], the training error is reduced very slowly at the beginning of training.",
          _below("r1001_full_preact", ["r1001_original"], f"{TRAIN_ERROR}_early")),
    Claim("With pre-activation, deeper is better: ResNet-1001 beats ResNet-164 on CIFAR-10 and CIFAR-100",
          "Sec. 5, Table 4", "We obtain these results via a simple but essential concept — going deeper.",
          (Compare("below", "r1001_full_preact", "r164_full_preact"),
           Compare("below", "c100_r1001_full_preact", "c100_r164_full_preact"))),
    Claim("On ImageNet, BN after addition is worse than the original ResNet-101 (top-1, 224 crop)", "Sec. 5",
          "But we did finish a “BN after addition” version (Fig. 4(b)) of ResNet-101 on ImageNet and observed "
          "higher training loss and validation error.", _above("in_r101_bn_after_add", ["in_r101_original"], TOP1_224)),
    Claim("The original ResNet-200 is worse than the original ResNet-152 (top-1, 320 crop)", "Sec. 5, Table 5",
          "However, the original ResNet-200 has an error rate of 21.8%, higher than the baseline ResNet-152.",
          _above("in_r200_original", ["in_r152_original"], TOP1_320)),
    Claim("Pre-activation's gain on ResNet-152 is not big (top-1, 320 crop; at most δ)", "Sec. 5, Table 5",
          "The original ResNet-152 [1] has top-1 error of 21.3% on a 320×320 crop, and our pre-activation "
          "counterpart has 21.1%. The gain is not big on ResNet-152",
          (Compare("not_below", "in_r152_full_preact", "in_r152_original", TOP1_320),)),
    Claim("Pre-activation ResNet-200 beats the original ResNet-200 and both ResNet-152s (top-1, 320 crop)",
          "Sec. 5, Table 5", "Our pre-activation ResNet-200 has an error rate of 20.7%, which is 1.1% lower than the "
          "baseline ResNet-200 and also lower than the two versions of ResNet-152.",
          _below("in_r200_full_preact", ["in_r200_original", "in_r152_original", "in_r152_full_preact"], TOP1_320)),
    Claim("Pre-activation ResNet-200 with scale and aspect-ratio augmentation beats Inception v3's 21.2% "
          "(top-1; ours on a 320 crop, theirs 299)", "Sec. 5, Table 5",
          "When using the scale and aspect ratio augmentation of [20, 19], our ResNet-200 has a result better than "
          "Inception v3 [19] (Table 5).",
          (Compare("below", "in_r200_full_preact_aspect", "Inception v3 [19]", TOP1_320, 21.2),)),
    # The training claims (Figs. 3 and 6, Sec. 5): from the runs' training error and loss.
    Claim("Constant scaling (0.5, 0.5) has higher training error than the original ResNet-110", "Sec. 3.1, Fig. 3(a)",
          "Fig 3(a) shows that the training error is higher than that of the original ResNet-110, suggesting that "
          "the optimization has difficulties when the shortcut signal is scaled down.",
          _above("t1_scale_05_05", ["r110_original"], TRAIN_ERROR)),
    Claim("Shortcut-only gating at b_g = 0 has higher training error than the original ResNet-110",
          "Sec. 3.1, Fig. 3(c)", "the network converges to a poor result of 12.86% (Table 1). This is also caused by "
          "higher training error (Fig 3(c)).", _above("t1_shortcut_gate_b0", ["r110_original"], TRAIN_ERROR)),
    Claim("The 1×1 conv shortcut has higher training error than the original ResNet-110", "Sec. 3.1, Fig. 3(d)",
          "The 110-layer ResNet has a poorer result (12.22%, Table 1) when using 1×1 convolutional shortcuts. "
          "Again, the training error becomes higher (Fig 3(d)).", _above("t1_conv1x1", ["r110_original"], TRAIN_ERROR)),
    Claim("Shortcut-only gating and 1×1 conv shortcuts train worse than identity, though they cover it",
          "Sec. 3.2", "In fact, the shortcut-only gating and 1×1 convolution cover the solution space of identity "
          "shortcuts […] However, their training error is higher than that of identity shortcuts",
          _below("r110_original", ["t1_shortcut_gate_b6", "t1_conv1x1"], TRAIN_ERROR)),
    Claim("BN after addition has trouble reducing the training loss early (ResNet-110)", "Sec. 4.1, Fig. 6 left",
          "now the BN layer alters the signal that passes through the shortcut and impedes information propagation, "
          "as reflected by the difficulties on reducing training loss at the beginning of training (Fib. 6 left).",
          _above("r110_bn_after_add", ["r110_original"], f"{TRAIN_LOSS}_early")),
    Claim("Pre-activation reaches a slightly higher training loss at convergence", "Sec. 4.2, Fig. 6 right",
          "The pre-activation version reaches slightly higher training loss at convergence, but produces lower test "
          "error. This phenomenon is observed on ResNet-110, ResNet-110(1-layer), and ResNet-164 on both CIFAR-10 "
          "and 100.", tuple(Compare("below", f"{n}_original", f"{n}_full_preact", TRAIN_LOSS)
                            for n in ("r110", "r110_1layer", "r164", "c100_r164"))),
    Claim("The original ResNet-200 has lower training error than the original ResNet-152", "Sec. 5",
          "But we find that the original ResNet-200 has lower training error than ResNet-152, suggesting that it "
          "suffers from overfitting.", _below("in_r200_original", ["in_r152_original"], TRAIN_ERROR)),
]
