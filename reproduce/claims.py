"""The paper's four claims, each judged from our runs: reproduced, not reproduced or not run, with its evidence.

A claim compares medians over seeds (`aggregate.summarize`); a network that failed to train (diverged)
counts as worse than every network that trained. Comparisons with a network not run are left out and
named in the evidence; a claim with no comparison left is `not run`.
"""
import math

import pandas as pd

from .aggregate import summarize

UNITS = ["original", "bn_after_add", "relu_before_add", "relu_only_preact"]  # Table 2's other unit orders
# Table 3's (original, pre-activation) pairs on each dataset; the last, ResNet-1001, is the deepest.
DEPTH_PAIRS = {
    "CIFAR-10": [("r110_1layer_original", "r110_1layer_full_preact"), ("r110_original", "r110_full_preact"),
                 ("r164_original", "r164_full_preact"), ("r1001_original", "r1001_full_preact")],
    "CIFAR-100": [("c100_r164_original", "c100_r164_full_preact"),
                  ("c100_r1001_original", "c100_r1001_full_preact")],
}
IMAGENET_KEY = "test_top1_center320"  # Table 5 compares top-1 error on the 320x320 crop


def score(runs, experiment, key="test_error"):
    """Median error; +inf when at least half the seeds diverged (worse than anything that trained); None: not run."""
    s = summarize(runs, [experiment], key)
    return None if not s["runs"] else math.inf if math.isnan(s["median"]) else s["median"]


def shown(value) -> str:
    return "not run" if value is None else "diverged" if math.isinf(value) else f"{value:.2f}%"


def beats(runs, winner, losers, key="test_error"):
    """(holds, evidence) for "winner's error is below each loser's"; holds is None when nothing compares."""
    best = score(runs, winner, key)
    others = {name: score(runs, name, key) for name in losers}
    ran = {name: v for name, v in others.items() if v is not None}
    if best is None or not ran:
        return None, f"{winner} {shown(best)}; " + ", ".join(f"{n} {shown(v)}" for n, v in others.items())
    lost = [n for n, v in ran.items() if not best < v]
    missing = [n for n, v in others.items() if v is None]
    text = f"{winner} {shown(best)} vs " + ", ".join(f"{n} {shown(v)}" for n, v in ran.items())
    text += f"; not below: {', '.join(lost)}" if lost else ""
    text += f"; not run: {', '.join(missing)}" if missing else ""
    return not lost, text


def identity_shortcut(runs, paper):
    cells = paper[(paper.table == "Table 1") & ~paper.literature].experiment.str.split().explode()
    return [beats(runs, "r110_original", [e for e in cells if e != "r110_original"])]


def full_preactivation(runs, paper):
    return [beats(runs, f"r{d}_full_preact", [f"r{d}_{u}" for u in UNITS]) for d in (110, 164)]


def gains_with_depth(runs, paper):
    """On each dataset, ResNet-1001 gains more from pre-activation (original − pre-act) than any shallower net."""
    checks = []
    for dataset, pairs in DEPTH_PAIRS.items():
        gains = {pre.removesuffix("_full_preact"): _gain(runs, orig, pre) for orig, pre in pairs}
        *shallow, (deepest, top) = gains.items()
        ran = {n: g for n, g in shallow if g is not None}
        text = f"{dataset} gains: " + ", ".join(f"{n} {_shown_gain(g)}" for n, g in gains.items())
        checks.append((None if top is None or not ran else all(top > g for g in ran.values()), text))
    return checks


def _gain(runs, original, preact):
    a, b = score(runs, original), score(runs, preact)
    if a is None or b is None or math.isinf(a) and math.isinf(b):
        return None  # not run, or both diverged: no gain to compare
    return a - b


def _shown_gain(gain):
    if gain is None or math.isfinite(gain):
        return "not run" if gain is None else f"{gain:+.2f}"
    return "original diverged" if gain > 0 else "pre-act diverged"


def imagenet_200(runs, paper):
    return [beats(runs, "in_r200_full_preact", ["in_r152_original", "in_r152_full_preact", "in_r200_original"],
                  IMAGENET_KEY)]


CLAIMS = [
    ("The identity shortcut beats every shortcut modification of Table 1 (scaling, gating, 1x1 conv, "
     "dropout) on CIFAR-10 ResNet-110", identity_shortcut),
    ("Full pre-activation beats the other orders of BN, ReLU and addition (Table 2) on ResNet-110 and "
     "ResNet-164", full_preactivation),
    ("The gain of pre-activation grows with depth: ResNet-1001 gains most (Table 3)", gains_with_depth),
    ("On ImageNet, pre-activation ResNet-200 beats both ResNet-152s and the original ResNet-200 "
     "(top-1, 320x320 crop, Table 5)", imagenet_200),
]


def claims(runs: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: claim, status (reproduced / not reproduced / not run), evidence."""
    rows = []
    for claim, check in CLAIMS:
        outcomes = check(runs, paper)
        judged = [holds for holds, _ in outcomes if holds is not None]
        status = "not run" if not judged else "reproduced" if all(judged) else "not reproduced"
        rows.append({"claim": claim, "status": status, "evidence": " | ".join(t for _, t in outcomes)})
    return pd.DataFrame(rows, columns=["claim", "status", "evidence"])
