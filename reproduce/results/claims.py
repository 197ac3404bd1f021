"""The paper's claims, each in its own words, each judged from our runs by tests that noise cannot flatter.

A claim is a set of comparisons, each one of three kinds, each a pair of one-sided tests at LEVEL:
- `below`: A's error is below B's (one-sided Mann–Whitney over seeds; one run against one, a z-test
  with the test sets' binomial noise);
- `close`: A and B are within δ of each other (the same tests on B shifted by ±δ: TOST), δ = DELTA_SDS
  binomial sds at the paper's two numbers;
- `gain`: the gain of pre-activation (original − pre-act error, per seed) is larger on A than on B.
A comparison *supports* the claim when its test is significant the paper's way, *contradicts* it when
the same test is significant the other way, and decides nothing otherwise (a tie never counts). A claim is
- **reproduced** when every comparison ran and supports it (an intersection–union test: the claim
  holds at LEVEL as a whole);
- **contradicted** when any comparison contradicts it;
- **partly tested** when some comparisons have not run (k of m ran) and none contradicts;
- **inconclusive** when all ran and none contradicts but some decide nothing; **not run** when none ran.
The README states how often each status comes out when the paper is right (`python -m reproduce power`).
"""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .paper import paper_errors
from .runs import seed_errors
from .stats import DELTA_SDS, LEVEL, TEST_IMAGES, below, binomial_sd

C10, TOP1_224, TOP1_320 = "test_error", "test_top1_center224", "test_top1_center320"
UNITS = ["original", "bn_after_add", "relu_before_add", "relu_only_preact"]  # Table 2's other units
TABLE3 = ["r110_1layer", "r110", "r164", "r1001", "c100_r164", "c100_r1001"]  # (original, full_preact) pairs
COLUMNS = ["claim", "where", "quote", "status", "comparisons", "ran", "supporting", "contradicting", "max_p",
           "evidence"]


@dataclass(frozen=True)
class Compare:
    kind: str  # below | close | gain
    a: str  # an experiment; for `gain`, a network of TABLE3 (its _original and _full_preact runs)
    b: str
    key: str = C10


@dataclass(frozen=True)
class Claim:
    name: str
    where: str
    quote: str
    comparisons: tuple


def _below(a, others, key=C10):
    return tuple(Compare("below", a, b, key) for b in others)


_TABLE1 = ["t1_scale_0_1", "t1_scale_05_1", "t1_scale_05_05", *(f"t1_exclusive_gate_b{b}" for b in range(8)),
           "t1_shortcut_gate_b0", "t1_conv1x1", "t1_dropout"]
CLAIMS = [
    Claim("Identity shortcuts beat every shortcut modification of Table 1 (shortcut-only gating at b_g = −6: "
          "next claim but one)", "Sec. 1, Table 1",
          "the identity mapping h(x_l) = x_l chosen in [1] achieves the fastest error reduction and lowest training "
          "loss among all variants we investigated, whereas skip connections of scaling, gating, and 1×1 "
          "convolutions all lead to higher training loss and error", _below("r110_original", _TABLE1)),
    Claim("The gate's initial bias decides how well a gated ResNet-110 trains: b_g = −6 is best", "Sec. 3.1, Table 1",
          "We find that the initialization of the biases b_g is critical for training gated models […] The "
          "initialized value of b_g is still essential in this case.",
          _below("t1_exclusive_gate_b6", [f"t1_exclusive_gate_b{b}" for b in (0, 1, 2, 3, 4, 5, 7)])
          + _below("t1_shortcut_gate_b6", ["t1_shortcut_gate_b0"])),
    Claim("Shortcut-only gating at b_g = −6 comes close to the identity baseline", "Sec. 3.1, Table 1",
          "the shortcut connection is nearly an identity mapping. Therefore, the result (6.91%, Table 1) is much "
          "closer to the ResNet-110 baseline.", (Compare("close", "t1_shortcut_gate_b6", "r110_original"),)),
    Claim("BN after addition is worse than the original unit", "Sec. 4.1, Table 2",
          "The results become considerably worse than the baseline (Table 2).",
          (Compare("below", "r110_original", "r110_bn_after_add"), Compare("below", "r164_original", "r164_bn_after_add"))),
    Claim("ReLU before addition is worse than the original unit", "Sec. 4.1, Table 2",
          "This may impact the representational ability, and the result is worse (7.84%, Table 2) than the baseline.",
          (Compare("below", "r110_original", "r110_relu_before_add"),
           Compare("below", "r164_original", "r164_relu_before_add"))),
    Claim("ReLU-only pre-activation performs like the original unit", "Sec. 4.1, Table 2",
          "Table 2 shows that the ReLU-only pre-activation performs very similar to the baseline on ResNet-110/164.",
          (Compare("close", "r110_relu_only_preact", "r110_original"),
           Compare("close", "r164_relu_only_preact", "r164_original"))),
    Claim("Full pre-activation beats every other unit of Table 2 on ResNet-110 and ResNet-164", "Sec. 4.1, Table 2",
          "Somehow surprisingly, when BN and ReLU are both used as pre-activation, the results are improved by "
          "healthy margins (Table 2 and Table 3).",
          sum((_below(f"r{d}_full_preact", [f"r{d}_{u}" for u in UNITS]) for d in (110, 164)), ())),
    Claim("Pre-activation beats the original unit on every network of Table 3", "Sec. 4.1, Table 3",
          "Table 3 shows that our “pre-activation” models are consistently better than the baseline counterparts.",
          tuple(Compare("below", f"{n}_full_preact", f"{n}_original") for n in TABLE3)),
    Claim("Pre-activation gains most on ResNet-1001", "Sec. 4.2, Table 3",
          "First, the optimization is further eased (comparing with the baseline ResNet) because f is an identity "
          "mapping. […] This effect is particularly obvious when training the 1001-layer ResNet.",
          tuple(Compare("gain", "r1001", n) for n in ("r110_1layer", "r110", "r164"))
          + (Compare("gain", "c100_r1001", "c100_r164"),)),
    Claim("With pre-activation, deeper is better: ResNet-1001 beats ResNet-164 on CIFAR-10 and CIFAR-100",
          "Sec. 5, Table 4", "We obtain these results via a simple but essential concept — going deeper.",
          (Compare("below", "r1001_full_preact", "r164_full_preact"),
           Compare("below", "c100_r1001_full_preact", "c100_r164_full_preact"))),
    Claim("On ImageNet, BN after addition is worse than the original ResNet-101 (top-1, 224 crop)", "Sec. 5",
          "But we did finish a “BN after addition” version (Fig. 4(b)) of ResNet-101 on ImageNet and observed "
          "higher training loss and validation error.", _below("in_r101_original", ["in_r101_bn_after_add"], TOP1_224)),
    Claim("The original ResNet-200 is worse than the original ResNet-152 (top-1, 320 crop)", "Sec. 5, Table 5",
          "However, the original ResNet-200 has an error rate of 21.8%, higher than the baseline ResNet-152.",
          _below("in_r152_original", ["in_r200_original"], TOP1_320)),
    Claim("Pre-activation helps ResNet-152 a little (top-1, 320 crop)", "Sec. 5, Table 5",
          "The original ResNet-152 [1] has top-1 error of 21.3% on a 320×320 crop, and our pre-activation "
          "counterpart has 21.1%. The gain is not big on ResNet-152",
          _below("in_r152_full_preact", ["in_r152_original"], TOP1_320)),
    Claim("Pre-activation ResNet-200 beats the original ResNet-200 and both ResNet-152s (top-1, 320 crop)",
          "Sec. 5, Table 5", "Our pre-activation ResNet-200 has an error rate of 20.7%, which is 1.1% lower than the "
          "baseline ResNet-200 and also lower than the two versions of ResNet-152.",
          _below("in_r200_full_preact", ["in_r200_original", "in_r152_original", "in_r152_full_preact"], TOP1_320)),
]


def errors_by_run(runs: pd.DataFrame) -> dict:
    """{(experiment, key): final errors over seeds, by seed (+inf diverged)} of every current run."""
    keys = {c.key for claim in CLAIMS for c in claim.comparisons}
    names = set(runs.experiment[runs.current])
    found = {(e, k): seed_errors(runs, [e], k) for e in names for k in keys}
    return {ek: v for ek, v in found.items() if len(v)}


def side(errors: dict, name: str, kind: str, key: str):
    """(errors over seeds on the last axis, one run's binomial noise sd) of one side of a comparison, or
    None when it has not run. For `gain`, original − pre-activation per seed: independent runs paired by
    seed number, an arbitrary but fixed pairing (seeds that only one of the two ran are dropped)."""
    images = TEST_IMAGES["cifar10" if key == C10 else "imagenet"]
    if kind != "gain":
        v = errors.get((name, key))
        return None if v is None else (np.asarray(v, float), binomial_sd(np.asarray(v, float)[..., 0], images))
    o, p = errors.get((f"{name}_original", key)), errors.get((f"{name}_full_preact", key))
    if o is None or p is None:
        return None
    gains = (o - p).dropna() if isinstance(o, pd.Series) else o - p
    if not len(gains):
        return None
    o, p = np.asarray(o, float), np.asarray(p, float)
    return np.asarray(gains, float), np.hypot(binomial_sd(o[..., 0], images), binomial_sd(p[..., 0], images))


def pvalues(c: Compare, a, b, sd, paper: dict):
    """(p the paper's way, p the other way) of comparison `c` between sides a and b (seeds on the last
    axis), and the margin of a `close` comparison; `sd`: the noise of one run against one."""
    if c.kind == "below":
        return below(a, b, sd), below(b, a, sd), None
    if c.kind == "gain":
        return below(b, a, sd), below(a, b, sd), None
    delta = DELTA_SDS * binomial_sd((paper[c.a, c.key] + paper[c.b, c.key]) / 2, TEST_IMAGES["cifar10"])
    return (np.maximum(below(a, b + delta, sd), below(b, a + delta, sd)),
            np.minimum(below(a + delta, b, sd), below(b + delta, a, sd)), delta)


def outcome(p, q):
    """What a comparison says: it supports the claim, contradicts it (the same test, the other side) or
    decides nothing."""
    return np.select([np.asarray(p) <= LEVEL, np.asarray(q) <= LEVEL], ["supports", "contradicts"], "decides nothing")


def status_of(outcomes):
    """A claim's status from its comparisons' outcomes (the last axis; "not run" for one that did not run)."""
    o = np.asarray(outcomes)
    ran = o != "not run"
    status = np.select([~ran.any(-1), (o == "contradicts").any(-1), ~ran.all(-1), (o == "supports").all(-1)],
                       ["not run", "contradicted", "partly tested", "reproduced"], "inconclusive")
    return str(status) if status.ndim == 0 else status


def judge(c: Compare, errors: dict, paper: dict) -> dict:
    """One comparison of the report: its outcome, both p-values and the line the evidence shows."""
    sides = side(errors, c.a, c.kind, c.key), side(errors, c.b, c.kind, c.key)
    if None in sides:
        missing = " and ".join(n for n, s in zip((c.a, c.b), sides) if s is None)
        return {"outcome": "not run", "text": f"not run: {missing}"}
    (a, sa), (b, sb) = sides
    p, q, delta = pvalues(c, a, b, float(np.hypot(sa, sb)), paper)
    unit = "pp" if c.kind == "gain" else "%"
    claim = {"below": f"{c.a} {_shown(a)} < {c.b} {_shown(b)}",
             "gain": f"{c.a} gain {_shown(a, unit)} > {c.b} gain {_shown(b, unit)}",
             "close": f"|{c.a} {_shown(a)} − {c.b} {_shown(b)}| < δ = {delta or 0:.2f}"}[c.kind]
    said = str(outcome(p, q))
    runs = "seed pairs" if c.kind == "gain" else "runs"
    return {"outcome": said, "p": float(p), "q": float(q),
            "text": f"{claim}: p = {p:.3g} (the other way {q:.3g}), {len(a)} vs {len(b)} {runs}: {said}"}


def claims(runs: pd.DataFrame, paper: pd.DataFrame, errors: dict | None = None) -> pd.DataFrame:
    """One row per claim: its words, status, comparisons run, supporting and contradicting, the largest p
    the paper's way, and each comparison as evidence. `errors`: `errors_by_run(runs)`, if at hand."""
    errors = errors_by_run(runs) if errors is None else errors
    printed = paper_errors(paper)
    rows = []
    for claim in CLAIMS:
        judged = [judge(c, errors, printed) for c in claim.comparisons]
        ran = [j for j in judged if j["outcome"] != "not run"]
        rows.append({"claim": claim.name, "where": claim.where, "quote": claim.quote,
                     "status": status_of([j["outcome"] for j in judged]),
                     "comparisons": len(judged), "ran": len(ran),
                     "supporting": sum(j["outcome"] == "supports" for j in ran),
                     "contradicting": sum(j["outcome"] == "contradicts" for j in ran),
                     "max_p": max((j["p"] for j in ran), default=math.nan),
                     "evidence": "; ".join(j["text"] for j in judged)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _shown(values, unit="%") -> str:
    """A side's median, as the report prints it."""
    m = float(np.median(values))
    if math.isinf(m):
        return "diverged" if unit == "%" else ("original diverged" if m > 0 else "pre-act diverged")
    return f"{m:.2f}%" if unit == "%" else f"{m:+.2f} pp"
